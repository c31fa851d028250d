"""Training speed: the old step (commit 3dc5b14) against today's, in one run, on BLAT_ECOLX.

    python -m benchmarks.bench_train [--data-dir ../shared/data] [--steps 20] [--rounds 2]

Each configuration runs in its own worker process (the heap setting of a training process is
process-wide) and the workers alternate old / new for ``--rounds`` rounds; the best rate of each
is kept. The old code is the package as it was at ``--old-commit``, extracted with ``git
archive`` into a temporary folder. Reported per model size (the paper's 100-2000 decoder and the
fast recipe's 100-500):

* old: 3dc5b14's step (dense one-hot first layer, one shared weight sample, float32, torch Adam);
* paper recipe: today's step with DeepSequence's estimator and optimiser (gather-sum encoder,
  the training heap, split noise draws, compiled sampling + KL kernels), in float32 and with
  bfloat16 decoder products;
* fast recipe: one shared weight sample, bfloat16 products, torch's fused Adam and the moving
  average of the weights (``--recipe fast``), with the compiled kernels (the default) and
  without them (``--no-compile``: the eager kernels);
* the local-reparameterisation option (``TrainConfig.local_reparam``), not in either recipe.

Next to each rate: the matrix-multiply FLOPs of one step (torch's FLOP counter, forward and
backward, counted on an eager step) and the rate they were done at, beside the GEMM rate of this
CPU measured in the same run. Writes benchmarks/results/train-cpu-<date>.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks._common import REPO, add_data_dir, header, peak_rss_mb, run_worker, worker_main, write_result
from deepseqvae.alignment import read_alignment
from deepseqvae.hardware import native_bf16_matmul
from deepseqvae.weights import compute_weights

#: the step that issue 11 set out to speed up
OLD_COMMIT = "3dc5b14"
SIZES = {"paper size (decoder 100-2000)": (100, 2000), "fast-recipe size (decoder 100-500)": (100, 500)}
#: name -> (old code?, loss_terms keywords, optimiser, training heap, weight averaging)
PATHS = {
    "old (3dc5b14)": (True, {}, "adam", False, False),
    "paper recipe, float32": (False, {"compiled": True}, "deepsequence", True, False),
    "paper recipe, bf16 products": (False, {"matmul_dtype": "bfloat16", "compiled": True}, "deepsequence", True, False),
    "fast recipe (bf16 products, weight average)": (False, {"matmul_dtype": "bfloat16", "compiled": True}, "adam",
                                                    True, True),
    "fast recipe, eager kernels (--no-compile)": (False, {"matmul_dtype": "bfloat16"}, "adam", True, True),
    "option: local reparam., bf16": (False, {"local": True, "matmul_dtype": "bfloat16", "compiled": True}, "adam",
                                     True, False),
}



def planned_paths(native_bf16: bool) -> dict[str, tuple]:
    """:data:`PATHS` as this CPU runs them: without native bfloat16 units the fast recipe's products are
    float32 (its ``auto`` choice) and the other bfloat16 paths are not run (emulated, ~40x slower GEMMs)."""
    if native_bf16:
        return dict(PATHS)
    out = {}
    for name, (old, kw, *rest) in PATHS.items():
        if kw.get("matmul_dtype") != "bfloat16":
            out[name] = (old, kw, *rest)
        elif name.startswith("fast recipe"):
            kw = {k: v for k, v in kw.items() if k != "matmul_dtype"}
            out[name.replace("bf16 products", "float32 products here")] = (old, kw, *rest)
    return out


WORKER = r'''
import json, sys, time
import torch
job = json.loads(sys.argv[1])
if job["heap"]:
    from deepseqvae.runtime import keep_heap
    keep_heap()
from deepseqvae.alignment import read_alignment
from deepseqvae.model import VAE, VAEConfig, loss_terms
import numpy as np
aln = read_alignment(job["msa"])
w = np.load(job["weights"])  # computed once by the parent: the old code's default kernel may be emulated here
codes, probs, neff = torch.tensor(aln.codes), torch.tensor(w / w.sum()), float(w.sum())
torch.manual_seed(0)
model = VAE(VAEConfig(seq_len=aln.L, decoder_hidden=tuple(job["decoder"]))).train()
if job["optimizer"] == "deepsequence":
    from deepseqvae.optim import DeepSequenceAdam
    opt = DeepSequenceAdam(model.parameters(), lr=1e-3)
else:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
kw = dict(job["kw"])
if "matmul_dtype" in kw:
    kw["matmul_dtype"] = getattr(torch, kw["matmul_dtype"])
gen = torch.Generator().manual_seed(0)
params = list(model.parameters())
ema = [p.detach().clone() for p in params] if job["ema"] else None
def step(kw=kw):
    idx = torch.multinomial(probs, 100, replacement=True, generator=gen)
    loss, _ = loss_terms(model, codes[idx], neff, generator=gen, **kw)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if ema is not None:
        torch._foreach_lerp_(ema, [p.detach() for p in params], 0.002)
for _ in range(job["warmup"]):
    step()
from torch.utils.flop_counter import FlopCounterMode
with FlopCounterMode(display=False) as fc:  # an eager step: the same products, no compiled code under the mode
    step({k: v for k, v in kw.items() if k != "compiled"})
t0 = time.perf_counter()
for _ in range(job["steps"]):
    step()
rate = job["steps"] / (time.perf_counter() - t0)
failure = None
if kw.get("compiled"):
    from deepseqvae import kernels
    failure = kernels.compile_failure()
print(json.dumps({"rate": rate, "flops": fc.get_total_flops(), "compile_failure": failure}))
'''


def old_package(commit: str, into: Path) -> Path:
    """Extract ``deepseqvae/`` as it was at ``commit`` into ``into``; return the folder to import from."""
    data = subprocess.run(["git", "archive", commit, "deepseqvae"], cwd=REPO, capture_output=True,
                          check=True).stdout
    with tarfile.open(fileobj=__import__("io").BytesIO(data)) as tar:
        tar.extractall(into, filter="data")
    return into


def run_path(job: dict, cwd: Path) -> dict:
    """One timing worker, importing deepseqvae from ``cwd`` (old code) or from the repository."""
    env = dict(os.environ, PYTHONPATH=str(cwd))
    proc = subprocess.run([sys.executable, "-c", WORKER, json.dumps(job)], cwd=cwd, env=env, capture_output=True,
                          text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def gemm_rates(repeats: int = 20, native_bf16: bool = True) -> dict[str, float]:
    """GFLOP/s of the decoder's output product (100 x 2000) @ (2000 x 5060), float32 and bfloat16
    (emulated bfloat16, ~3 s a product: timed once)."""
    out = {}
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        a, b = torch.randn(100, 2000, dtype=dtype), torch.randn(2000, 5060, dtype=dtype)
        best = float("inf")
        slow = dtype == torch.bfloat16 and not native_bf16
        for _ in range(1 if slow else 3):
            t0 = time.perf_counter()
            n = 1 if slow else repeats
            for _ in range(n):
                a @ b
            best = min(best, (time.perf_counter() - t0) / n)
        out[name] = 2 * 100 * 2000 * 5060 / best / 1e9
    return out


def peak_run(job: dict) -> dict:
    """Worker: a whole paper-recipe ``train_file`` run; its own peak memory, seconds and steps/s."""
    from deepseqvae.pipeline import train_file

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        s = train_file(job["msa"], Path(tmp) / "peak.pt", recipe="paper",
                       train_options=dict(steps=job["steps"], checkpoint_every=0), device="cpu")
    return {"peak_mb": peak_rss_mb(), "seconds": time.perf_counter() - t0, "steps_per_s": s.steps_per_second}


def main() -> None:
    if worker_main(peak_run):
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_dir(ap)
    ap.add_argument("--steps", type=int, default=20, help="timed steps per worker")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds; the best rate of each path is kept")
    ap.add_argument("--old-commit", default=OLD_COMMIT)
    ap.add_argument("--peak-steps", type=int, default=50, help="steps of the peak-memory run")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    msa = args.data_dir / "BLAT_ECOLX" / "msa.a2m"
    text = header("Training speed on BLAT_ECOLX (N = 8,355, L = 253, batch 100): old step against new")
    native = native_bf16_matmul(torch.device("cpu"))
    gemm_before = gemm_rates(native_bf16=native)
    paths = planned_paths(native)
    best: dict[tuple[str, str], dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        old_dir = old_package(args.old_commit, Path(tmp))
        weights = Path(tmp) / "weights.npy"
        np.save(weights, compute_weights(read_alignment(msa).codes, 0.2))
        for r in range(args.rounds):
            for size, decoder in SIZES.items():
                for name, (old, kw, optimizer, heap, ema) in paths.items():
                    job = {"msa": str(msa), "weights": str(weights), "decoder": decoder, "kw": kw,
                           "optimizer": optimizer, "heap": heap, "ema": ema, "steps": args.steps,
                           "warmup": args.warmup}
                    res = run_path(job, old_dir if old else REPO)
                    print(f"round {r + 1} {size} {name}: {res['rate']:.2f} steps/s", flush=True)
                    key = (size, name)
                    if key not in best or res["rate"] > best[key]["rate"]:
                        best[key] = res
    gemm = {k: max(v, gemm_rates(native_bf16=native)[k]) for k, v in gemm_before.items()}
    text += (f"Each path ran in its own worker process, {args.steps} timed steps after {args.warmup} warm-up steps, "
             f"old and new alternating for {args.rounds} rounds; best rate of each. GEMM rate of this CPU measured in "
             f"the same run, (100 x 2000) @ (2000 x 5060): float32 **{gemm['float32']:.0f} GFLOP/s**, bfloat16 "
             f"**{gemm['bfloat16']:.0f} GFLOP/s**.\n\n")
    if not native:
        text += ("This CPU has no native bfloat16 units (no AVX-512 BF16 or AMX): the fast recipe runs its products "
                 "in float32 here (`matmul_dtype` auto) and the other bfloat16 paths were not run.\n\n")
    for size in SIZES:
        old_rate = best[(size, "old (3dc5b14)")]["rate"]
        text += (f"## {size}\n\n| step | steps/s | vs old | matmul GFLOP per step | achieved GFLOP/s |\n"
                 "|---|---|---|---|---|\n")
        for name in paths:
            res = best[(size, name)]
            gf = res["flops"] / 1e9
            failed = f" (compile failed: {res['compile_failure']}; eager kernels)" if res.get("compile_failure") else ""
            text += (f"| {name}{failed} | {res['rate']:.2f} | **{res['rate'] / old_rate:.2f}x** | {gf:.1f} | "
                     f"{gf * res['rate']:.0f} |\n")
        text += "\n"
    peak = run_worker("bench_train", {"msa": str(msa), "steps": args.peak_steps})
    text += (f"Peak memory of a whole paper-recipe BLAT_ECOLX training run (`train_file`, {args.peak_steps} steps: "
             f"reading, weights, model, optimiser state, checkpoint): **{peak['peak_mb']:.0f} MB**; "
             f"{peak['seconds']:.0f} s.\n")
    write_result(text, args.out, "train-cpu")


if __name__ == "__main__":
    main()
