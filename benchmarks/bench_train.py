"""Training speed (steps/s) and peak memory on BLAT_ECOLX (L = 253, batch 100).

    python -m benchmarks.bench_train [--data-dir ../shared/data] [--device cpu|cuda] [--steps 30]

Times optimisation steps after a warm-up for the paper's model and for the quick profile's
smaller decoder, and measures the peak memory of a whole BLAT training run (reading, weights,
training) in a worker process. Writes benchmarks/results/train-<device>-<date>.md.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from benchmarks._common import add_data_dir, header, peak_rss_mb, run_worker, worker_main, write_result
from deepseqvae.alignment import read_alignment
from deepseqvae.model import VAE, VAEConfig, loss_terms
from deepseqvae.weights import compute_weights

CONFIGS = {
    "paper (svi, decoder 100-2000, dictionary 40)": {},
    "paper, mle decoder": {"decoder": "mle"},
    "quick profile (svi, decoder 100-500)": {"decoder_hidden": (100, 500)},
}


def steps_per_second(codes: torch.Tensor, probs: torch.Tensor, neff: float, cfg: VAEConfig, device: torch.device,
                     steps: int, warmup: int) -> float:
    torch.manual_seed(0)
    model = VAE(cfg).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    gen = torch.Generator(device=device).manual_seed(0)
    for i in range(warmup + steps):
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        idx = torch.multinomial(probs, 100, replacement=True, generator=gen)
        loss, _ = loss_terms(model, codes[idx], neff, generator=gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - t0)


def train_run(job: dict) -> dict:
    """Worker: a whole ``train_file`` run on the CPU; own peak memory, seconds and steps/s."""
    from deepseqvae.pipeline import train_file

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        s = train_file(job["msa"], Path(tmp) / "peak.pt", train_options=dict(steps=job["steps"], checkpoint_every=0),
                       device="cpu")
    return {"peak_mb": peak_rss_mb(), "seconds": time.perf_counter() - t0, "steps_per_s": s.steps_per_second}


def main() -> None:
    if worker_main(train_run):
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_dir(ap)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=30, help="timed steps per configuration")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--peak-steps", type=int, default=100, help="steps of the peak-memory run (CPU)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    device = torch.device(args.device)
    msa = args.data_dir / "BLAT_ECOLX" / "msa.a2m"
    aln = read_alignment(msa)
    weights = compute_weights(aln.codes, 0.2, device=device)
    codes = torch.tensor(aln.codes, device=device)
    probs = torch.tensor(weights / weights.sum(), device=device)
    rows = []
    for name, opts in CONFIGS.items():
        cfg = VAEConfig(seq_len=aln.L, **opts)
        rate = steps_per_second(codes, probs, float(weights.sum()), cfg, device, args.steps, args.warmup)
        rows.append((name, rate))
        print(f"{name}: {rate:.2f} steps/s", flush=True)
    text = header("Training speed on BLAT_ECOLX (N = 8,355, L = 253, batch 100)")
    text += f"Device: {device}. {args.steps} timed steps after {args.warmup} warm-up steps.\n\n"
    text += "| model | steps/s | 300,000 steps would take |\n|---|---|---|\n"
    for name, rate in rows:
        text += f"| {name} | {rate:.2f} | {300_000 / rate / 3600:.1f} h |\n"
    if device.type == "cpu":
        peak = run_worker("bench_train", {"msa": str(msa), "steps": args.peak_steps})
        text += (f"\nPeak memory of a whole paper-size BLAT_ECOLX training run on the CPU "
                 f"(`train_file`, {args.peak_steps} steps: reading, weights, model, Adam state, "
                 f"checkpoint): **{peak['peak_mb']:.0f} MB** (goal ≤ 3,072 MB); {peak['seconds']:.0f} s.\n")
        print(f"peak {peak['peak_mb']:.0f} MB", flush=True)
    write_result(text, args.out, f"train-{device.type}")


if __name__ == "__main__":
    main()
