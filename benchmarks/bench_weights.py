"""Sequence-weight speed (and peak memory) of ``deepseqvae.weights.compute_weights``.

    python -m benchmarks.bench_weights [--data-dir ../shared/data] [--device cpu|cuda] [--repeats 3]
        [--synthetic-n 200000] [--synthetic-l 250] [--memory-budget-mb 512]

1. BLAT_ECOLX (N = 8,355, L = 253): best of --repeats runs with each product kernel ("int8" and
   "float32"; int8 exists on the CPU only), the Neff, and a check that both kernels agree.
2. PTEN_HUMAN and GFP_AEQVI: best of --repeats runs with the default kernel (PTEN is also checked
   against EVE's own weights file).
3. A synthetic N x L alignment (mutated copies of a few hundred random ancestors, some fragments;
   seeded) weighted in a worker process, which reports its time and peak resident memory (goal
   ≤ 2 GB on the CPU; ``VmHWM``, the peak of its own address space, see
   :func:`benchmarks._common.peak_rss_mb`) and, on a GPU, the peak GPU memory.

Writes benchmarks/results/weights-<device>-<date>.md (or --out) and prints the table.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import numpy as np
import torch

from benchmarks._common import add_data_dir, header, peak_rss_mb, run_worker, worker_main, write_result
from deepseqvae.alignment import read_alignment
from deepseqvae.alphabet import GAP_CODE, N_AA
from deepseqvae.weights import compute_weights, resolve_kernel

GOAL_MB = 2048


def synthetic_codes(n: int, length: int, n_ancestors: int = 300, seed: int = 0,
                    chunk: int = 20_000) -> np.ndarray:
    """``(n, length)`` int8 codes: mutated copies of ``n_ancestors`` random ancestors.

    Each sequence copies a random ancestor and replaces each residue with probability ``r`` by a
    random residue or gap, ``r`` drawn per sequence from U(0.02, 0.25); 10 % lose a leading
    stretch of up to L/3 columns (fragments). With theta = 0.2 (identity > 0.8) sequences have
    anything from one to hundreds of neighbours. Built in chunks, so the only large array is
    the int8 result.
    """
    rng = np.random.default_rng(seed)
    anc = rng.integers(0, N_AA, size=(n_ancestors, length), dtype=np.int8)
    out = np.empty((n, length), dtype=np.int8)
    cols = np.arange(length)[None, :]
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        m = hi - lo
        rows = anc[rng.integers(0, n_ancestors, size=m)]  # (m, L) copy
        rate = rng.uniform(0.02, 0.25, size=(m, 1)).astype(np.float32)
        mutate = rng.random((m, length), dtype=np.float32) < rate
        rows[mutate] = rng.integers(0, N_AA + 1, size=int(mutate.sum()), dtype=np.int8)
        fragment = rng.random(m) < 0.1
        cut = rng.integers(1, max(2, length // 3), size=m)
        rows[fragment[:, None] & (cols < cut[:, None])] = GAP_CODE
        out[lo:hi] = rows
    return out


def best_of(fn, repeats: int) -> tuple[float, list[float], np.ndarray]:
    """Best wall time of ``repeats`` calls of ``fn`` (its result is a NumPy array, so a GPU is synced)."""
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), times, result


def weigh_synthetic(spec: dict) -> dict:
    """Worker: generate the synthetic alignment and weight it; time, Neff and own peak memory."""
    rss_start = peak_rss_mb()
    t0 = time.perf_counter()
    codes = synthetic_codes(spec["n"], spec["length"], spec["ancestors"], spec["seed"])
    t_gen = time.perf_counter() - t0
    rss_data = peak_rss_mb()
    device = torch.device(spec["device"])
    if device.type == "cuda":
        torch.zeros(1, device=device)  # CUDA context outside the timing
        torch.cuda.reset_peak_memory_stats(device)
    t1 = time.perf_counter()
    weights = compute_weights(codes, spec["theta"], device=device, kernel=spec["kernel"],
                              memory_budget_bytes=spec["budget_mb"] * 2**20)
    seconds = time.perf_counter() - t1
    result = {
        "n": spec["n"], "length": spec["length"], "device": str(device),
        "kernel": resolve_kernel(spec["kernel"], device), "threads": torch.get_num_threads(),
        "seconds": seconds, "generate_seconds": t_gen, "neff": float(weights.sum()),
        "max_neighbours": int(round(1 / weights[weights > 0].min())),
        "peak_rss_mb": peak_rss_mb(),
        "rss_after_import_mb": rss_start, "rss_with_data_mb": rss_data,
        "gpu_peak_mb": (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None),
    }
    return result


def run_synthetic(args) -> dict:
    spec = {"n": args.synthetic_n, "length": args.synthetic_l, "ancestors": args.synthetic_ancestors,
            "seed": args.seed, "theta": args.theta, "device": args.device, "kernel": args.synthetic_kernel,
            "budget_mb": args.memory_budget_mb}
    try:
        return run_worker("bench_weights", spec)
    except subprocess.CalledProcessError as exc:
        sys.exit(f"synthetic worker failed (exit {exc.returncode}; its error is above)")


def main() -> None:
    if worker_main(weigh_synthetic):
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_dir(ap)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--repeats", type=int, default=3, help="runs per measurement; the best is reported")
    ap.add_argument("--theta", type=float, default=0.2)
    ap.add_argument("--memory-budget-mb", type=int, default=512,
                    help="memory_budget_bytes of compute_weights for the synthetic run [default: the library's "
                         "default, 512 MiB]")
    ap.add_argument("--synthetic-n", type=int, default=200_000, help="sequences of the synthetic alignment (0 = skip)")
    ap.add_argument("--synthetic-l", type=int, default=250, help="length of the synthetic alignment")
    ap.add_argument("--synthetic-ancestors", type=int, default=300)
    ap.add_argument("--synthetic-kernel", default="auto", choices=["auto", "int8", "float32"])
    ap.add_argument("--seed", type=int, default=0, help="seed of the synthetic alignment")
    ap.add_argument("--skip-real", action="store_true", help="only the synthetic alignment (no data needed)")
    ap.add_argument("--out", default=None, help="result file [default: benchmarks/results/weights-<device>-<date>.md]")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: CUDA is not available")
    data = args.data_dir
    # int8 only where the library's own choice takes it (native units): emulated (AVX2-only CPUs) it is ~50x slower
    kernels = ["int8", "float32"] if resolve_kernel("auto", device) == "int8" else ["float32"]

    # first, before this process holds the real alignments
    synth = None
    if args.synthetic_n > 0:
        print(f"synthetic {args.synthetic_n:,} x {args.synthetic_l} on {device} (worker) ...", flush=True)
        synth = run_synthetic(args)
        print(f"synthetic: {synth['seconds']:.1f} s, peak RSS {synth['peak_rss_mb']:.0f} MB, "
              f"Neff {synth['neff']:.1f}", flush=True)

    compute_weights(np.zeros((4, 3), dtype=np.int8), 0.2, device=device)  # warm-up (CUDA context, int8 self-check)

    rows: list[tuple] = []  # (alignment, N, L, kernel, best, runs, neff, note)
    if not args.skip_real:
        blat = read_alignment(data / "BLAT_ECOLX" / "msa.a2m")
        per_kernel = {}
        for kernel in kernels:
            best, runs, w = best_of(lambda k=kernel: compute_weights(blat.codes, args.theta, device=device, kernel=k),
                                    args.repeats)
            per_kernel[kernel] = w
            rows.append(("BLAT_ECOLX", blat.N, blat.L, kernel, best, runs, float(w.sum()), ""))
            print(f"BLAT_ECOLX {kernel}: best {best:.3f} s of {[round(t, 3) for t in runs]}, "
                  f"Neff {w.sum():.2f}", flush=True)
        ws = list(per_kernel.values())
        agree = all(np.array_equal(ws[0], w) for w in ws[1:])
        if len(ws) > 1:
            rows[-1] = rows[-1][:-1] + (f"identical to {kernels[0]}: {'yes' if agree else '**NO**'}",)
        for name in ("PTEN_HUMAN", "GFP_AEQVI"):
            aln = read_alignment(data / name / "msa.a2m")
            kernel = resolve_kernel("auto", device)
            best, runs, w = best_of(lambda a=aln: compute_weights(a.codes, args.theta, device=device), args.repeats)
            note = ""
            eve = data / name / f"{name}_theta_{args.theta:g}.npy"
            if eve.exists():
                ref = np.load(eve)
                diff = np.abs(w - ref).max() if ref.shape == w.shape else float("nan")
                note = f"EVE's weights file: max abs diff {diff:.3g}"
            rows.append((name, aln.N, aln.L, kernel, best, runs, float(w.sum()), note))
            print(f"{name} {kernel}: best {best:.3f} s of {[round(t, 3) for t in runs]}, Neff {w.sum():.2f}",
                  flush=True)

    text = header("Sequence-weight speed (compute_weights)")
    text += f"Device: {device}; theta = {args.theta:g}.\n\n"
    if rows:
        text += (f"Real alignments: best of {args.repeats} runs of `compute_weights(aln.codes)` after reading "
                 "(reading not timed).\n\n"
                 "| alignment | N | L | kernel | best (s) | all runs (s) | Neff | note |\n"
                 "|---|---|---|---|---|---|---|---|\n")
        for name, n, length, kernel, best, runs, neff, note in rows:
            text += (f"| {name} | {n:,} | {length} | {kernel} | {best:.3f} | "
                     f"{', '.join(f'{t:.3f}' for t in runs)} | {neff:.2f} | {note} |\n")
        if "int8" not in kernels:
            text += (f"\nThe int8 kernel (torch._int_mm) was not run: not available natively on {device} "
                     "(`python -m benchmarks.bench_hardware` measures it emulated).\n")
        text += "\n"
    if synth is not None:
        gpu = f"{synth['gpu_peak_mb']:,.0f} MB" if synth["gpu_peak_mb"] is not None else "-"
        goal = (" (goal ≤ 2,048 MB: " + ("met" if synth["peak_rss_mb"] <= GOAL_MB else "**missed**") + ")"
                if device.type == "cpu" else "")
        text += (f"Synthetic alignment ({args.synthetic_ancestors} ancestors, seed {args.seed}) weighted in a "
                 f"worker process with `memory_budget_bytes = {args.memory_budget_mb} MiB`; peak RSS is the "
                 "worker's own high-water mark (`VmHWM`; Python, torch, the int8 codes and the weighting).\n\n"
                 "| N × L | device | kernel | threads | time (s) | peak RSS (MB) "
                 "| peak RSS after imports / with data (MB) | peak GPU memory | Neff | max neighbours |\n"
                 "|---|---|---|---|---|---|---|---|---|---|\n"
                 f"| {synth['n']:,} × {synth['length']} | {synth['device']} | {synth['kernel']} | {synth['threads']} "
                 f"| {synth['seconds']:.1f} | **{synth['peak_rss_mb']:,.0f}**{goal} | "
                 f"{synth['rss_after_import_mb']:,.0f} / {synth['rss_with_data_mb']:,.0f} | {gpu} | "
                 f"{synth['neff']:,.1f} | {synth['max_neighbours']:,} |\n")
    print()
    print(text)
    write_result(text, args.out, f"weights-{device.type}")


if __name__ == "__main__":
    main()
