"""Reduced-precision products on this CPU: what they cost and what the package chooses, in one run.

    python -m benchmarks.bench_hardware [--data-dir ../shared/data] [--weight-rows 2000] [--steps 20]

Two of the package's speed-ups use reduced-precision matrix units: int8 one-hot products for the
sequence weights and the held-out split, bfloat16 inputs to the fast recipe's decoder products.
Where the CPU lacks the units (AVX-512 VNNI / BF16, AMX) the library emulates them and they are far
slower than float32. This measures, on this machine and in this run:

* GEMM rates: float32, bfloat16 and int8 (``torch._int_mm``) at the shapes the package multiplies;
* the BLAT_ECOLX sequence weights of the first ``--weight-rows`` sequences with each kernel (and that
  both give the same weights);
* fast-recipe training steps/s on BLAT_ECOLX with float32 and with bfloat16 decoder products
  (``--steps`` timed steps after a warm-up, alternated over two rounds, best of each);

and what ``"auto"`` resolves to here (:mod:`deepseqvae.hardware`). Writes
benchmarks/results/hardware-<date>.md.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
import torch

from benchmarks._common import add_data_dir, header, write_result


def gemm_rate(m: int, k: int, n: int, dtype: torch.dtype, seconds: float = 2.0) -> float:
    """G(FL)OP/s of an (m, k) @ (k, n) product in ``dtype`` (int8: ``torch._int_mm`` of 0/1 matrices)."""
    if dtype == torch.int8:
        a = (torch.rand(m, k) < 0.05).to(torch.int8)
        b = (torch.rand(k, n) < 0.05).to(torch.int8)

        def f():
            return torch._int_mm(a, b)
    else:
        a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)

        def f():
            return a @ b
    f()
    reps, t0 = 0, time.perf_counter()
    while reps == 0 or time.perf_counter() - t0 < seconds:
        f()
        reps += 1
    return 2 * m * k * n * reps / (time.perf_counter() - t0) / 1e9


def weights_times(codes: np.ndarray) -> dict[str, tuple[float, np.ndarray]]:
    from deepseqvae.weights import compute_weights, int8_matmul_available

    out = {}
    for kernel in ("float32", "int8"):
        if kernel == "int8" and not int8_matmul_available("cpu"):
            continue
        t0 = time.perf_counter()
        w = compute_weights(codes, 0.2, kernel=kernel)
        out[kernel] = (time.perf_counter() - t0, w)
    return out


def step_rates(msa, steps: int, rounds: int = 2) -> dict[str, float]:
    """Best fast-recipe steps/s of each decoder-product precision on alignment ``msa``."""
    from deepseqvae.checkpoint import ModelInfo
    from deepseqvae.model import VAE
    from deepseqvae.recipes import recipe_configs
    from deepseqvae.train import train
    from deepseqvae.weights import compute_weights

    w = compute_weights(msa.codes, 0.2, kernel="float32")
    info = ModelInfo.from_alignment(msa, w, 0.2)
    best: dict[str, float] = {}
    for r in range(rounds):
        for dtype in ("float32", "bfloat16"):
            mcfg, tcfg = recipe_configs("fast", msa.L, neff=float(w.sum()), train_overrides={
                "matmul_dtype": dtype, "holdout_fraction": 0.0, "refit": False, "early_stopping": 0,
                "checkpoint_every": 0, "log_every": 10})
            runs = [(3, False), (steps, True)] if r == 0 else [(steps, True)]
            for n, timed in runs:  # the first round warms up each precision (compiled kernels, caches)
                torch.manual_seed(0)
                res = train(VAE(mcfg), msa.codes, w, replace(tcfg, steps=n), info)
                if timed:
                    best[dtype] = max(best.get(dtype, 0.0), n / res.seconds)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_dir(ap)
    ap.add_argument("--weight-rows", type=int, default=2000, help="BLAT_ECOLX rows whose weights are timed")
    ap.add_argument("--steps", type=int, default=20, help="timed training steps per precision and round")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    from deepseqvae.alignment import read_alignment
    from deepseqvae.hardware import cpu_flags, native_bf16_matmul, native_int8_matmul, resolve_matmul_dtype
    from deepseqvae.weights import resolve_kernel

    cpu = torch.device("cpu")
    text = header("Reduced-precision products on this CPU (int8 weights, bfloat16 training)")
    flags = cpu_flags()
    text += (f"torch's CPU capability: {torch.backends.cpu.get_cpu_capability()}; matrix features: "
             + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in flags.items()) + "\n\n"
             f"Chosen here: weights kernel `auto` → **{resolve_kernel('auto', cpu)}** (native int8: "
             f"{native_int8_matmul('cpu')}); fast recipe's `matmul_dtype` `auto` → "
             f"**{resolve_matmul_dtype('auto', cpu)}** (native bfloat16: {native_bf16_matmul(cpu)}).\n\n")

    shapes = [("decoder output, fast recipe (100 × 500) @ (500 × 5060)", (100, 500, 5060)),
              ("decoder output, paper size (100 × 2000) @ (2000 × 5060)", (100, 2000, 5060)),
              ("one-hot identity block (1024 × 5060) @ (5060 × 1024)", (1024, 5060, 1024))]
    text += ("## GEMM rates (G(FL)OP/s, 2 s each)\n\n"
             "| product | float32 | bfloat16 | int8 (`_int_mm`) |\n|---|---|---|---|\n")
    for name, (m, k, n) in shapes:
        rates = [gemm_rate(m, k, n, dt) for dt in (torch.float32, torch.bfloat16, torch.int8)]
        text += f"| {name} | " + " | ".join(f"{r:.1f}" for r in rates) + " |\n"
        print(name, rates, flush=True)

    msa = read_alignment(args.data_dir / "BLAT_ECOLX" / "msa.a2m")
    codes = msa.codes[:args.weight_rows]
    times = weights_times(codes)
    text += (f"\n## Sequence weights, first {codes.shape[0]:,} BLAT_ECOLX rows (L = {msa.L})\n\n"
             "| kernel | seconds |\n|---|---|\n")
    text += "".join(f"| {k} | {t:.2f} |\n" for k, (t, _) in times.items())
    if len(times) == 2:
        same = np.array_equal(times["float32"][1], times["int8"][1])
        text += (f"\nint8 / float32 time: **{times['int8'][0] / times['float32'][0]:.1f}x**; "
                 f"identical weights: {same}.\n")
    print(times and {k: t for k, (t, _) in times.items()}, flush=True)

    rates = step_rates(msa, args.steps)
    text += (f"\n## Fast-recipe training steps/s on BLAT_ECOLX (decoder 100-500, batch 100; best of 2 rounds of "
             f"{args.steps} steps)\n\n| decoder products | steps/s |\n|---|---|\n")
    text += "".join(f"| {k} | {v:.2f} |\n" for k, v in rates.items())
    text += f"\nfloat32 / bfloat16 steps/s: **{rates['float32'] / rates['bfloat16']:.2f}x**.\n"
    print(rates, flush=True)
    write_result(text, args.out, "hardware")


if __name__ == "__main__":
    main()
