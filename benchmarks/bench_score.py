"""Scoring speed (mutant-samples/s) and memory bound on BLAT_ECOLX.

    python -m benchmarks.bench_score [--data-dir ../shared/data] [--model blat.pt] [--device cpu] [--samples 20]

1. Times ΔELBO scoring of the 4,807 scoreable BLAT_ECOLX DMS singles with K samples (the paper-size
   model, or --model), reported as mutant-samples per second.
2. Scores a generated 500,000-row table of BLAT singles and doubles through ``score_file`` in a
   worker process and reports its peak memory (goal ≤ 2 GB).
Writes benchmarks/results/score-<device>-<date>.md.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from benchmarks._common import add_data_dir, header, peak_rss_mb, run_worker, worker_main, write_result
from deepseqvae.alignment import read_alignment
from deepseqvae.alphabet import ALPHABET
from deepseqvae.checkpoint import Checkpoint, ModelInfo, build_model, load_checkpoint, save_checkpoint
from deepseqvae.model import VAE, VAEConfig
from deepseqvae.mutants import resolve_mutants
from deepseqvae.score import apply_changes, delta_elbo
from deepseqvae.tables import read_mutant_table


def score_large_table(job: dict) -> dict:
    """Worker: ``score_file`` of a large table; rows, own peak memory and seconds."""
    from deepseqvae.pipeline import score_file

    t0 = time.perf_counter()
    res, _, _ = score_file(job["table"], [job["model"]], output=job["output"], n_samples=job["samples"],
                           device=job["device"])
    return {"rows": len(res.frame), "peak_mb": peak_rss_mb(), "seconds": time.perf_counter() - t0}


def main() -> None:
    if worker_main(score_large_table):
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_dir(ap)
    ap.add_argument("--model", default=None, help="checkpoint to time [default: untrained paper-size model]")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--big-rows", type=int, default=500_000)
    ap.add_argument("--big-samples", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    device = torch.device(args.device)
    data = args.data_dir / "BLAT_ECOLX"
    aln = read_alignment(data / "msa.a2m")
    with tempfile.TemporaryDirectory() as tmp:
        measure(args, aln, data, device, Path(tmp))


def measure(args, aln, data: Path, device: torch.device, tmp: Path) -> None:
    """Both measurements, with temporary files in ``tmp``; writes the result file."""
    if args.model:
        ckpt = load_checkpoint(args.model)
        model_desc = f"checkpoint {args.model}"
    else:
        torch.manual_seed(0)
        cfg = VAEConfig(seq_len=aln.L)
        info = ModelInfo(focus_id=aln.focus_id, focus_seq=aln.focus_seq, positions=list(aln.positions),
                         n_seqs=aln.N, neff=1.0, theta=0.2)
        ckpt = Checkpoint(kind="vae", model_config=asdict(cfg), state=VAE(cfg).state_dict(), info=info)
        model_desc = "paper-size VAE (untrained; speed does not depend on the weights)"
    path = tmp / "model.pt"
    save_checkpoint(ckpt, path)
    model = build_model(ckpt)
    table = read_mutant_table(data / "dms.csv")
    resolved = [r for r in resolve_mutants(table.mutants, ckpt.info.focus_seq, ckpt.info.positions) if r.ok]
    wt = ckpt.info.focus_codes
    variants = apply_changes(wt, [r.changes for r in resolved])
    delta_elbo(model, wt, variants[:256], n_samples=1, device=device)  # warm-up
    t0 = time.perf_counter()
    delta_elbo(model, wt, variants, n_samples=args.samples, device=device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    secs = time.perf_counter() - t0
    rate = len(variants) * args.samples / secs
    print(f"{len(variants)} mutants x {args.samples} samples in {secs:.1f} s: {rate:.0f} mutant-samples/s", flush=True)

    # A large generated table: random singles and doubles over the modelled columns.
    rng = np.random.default_rng(0)
    focus, pos = ckpt.info.focus_seq, ckpt.info.positions
    lines = []
    for i in range(args.big_rows):
        k = 1 + (i % 2)
        cols = rng.choice(len(focus), size=k, replace=False)
        lines.append(":".join(f"{focus[c]}{pos[c]}{ALPHABET[(ALPHABET.index(focus[c]) + 1 + rng.integers(19)) % 20]}"
                              for c in sorted(cols)))
    big = tmp / "big.csv"
    big.write_text("mutant\n" + "\n".join(lines) + "\n")
    mem = run_worker("bench_score", {"table": str(big), "model": str(path), "output": str(tmp / "big_scored.csv"),
                                     "samples": args.big_samples, "device": args.device})
    print(f"{mem['rows']} rows: peak {mem['peak_mb']:.0f} MB, {mem['seconds']:.0f} s", flush=True)

    text = header("Scoring speed and memory on BLAT_ECOLX")
    text += (f"Model: {model_desc}. Device: {device}.\n\n"
             f"| measurement | value |\n|---|---|\n"
             f"| 4,807 DMS singles × K = {args.samples} samples | {secs:.1f} s |\n"
             f"| mutant-samples per second | {rate:,.0f} |\n"
             f"| projected: 4,807 × 2,000 samples | {len(variants) * 2000 / rate / 60:.1f} min |\n"
             f"| {mem['rows']:,}-row table (singles and doubles), K = {args.big_samples}, through `score_file` | "
             f"peak memory **{mem['peak_mb']:.0f} MB** (goal ≤ 2,048 MB), {mem['seconds']:.0f} s |\n")
    write_result(text, args.out, f"score-{device.type}")


if __name__ == "__main__":
    main()
