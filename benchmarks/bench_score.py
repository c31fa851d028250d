"""Scoring speed (mutant-samples/s) and memory bound on BLAT_ECOLX.

    python benchmarks/bench_score.py --data-dir ../shared/data [--model blat.pt] [--device cpu] [--samples 20]

1. Times ΔELBO scoring of the 4,807 scoreable BLAT_ECOLX DMS singles with K samples (the paper-size
   model, or --model), reported as mutant-samples per second.
2. Scores a generated 500,000-row table of BLAT singles and doubles through ``score_file`` in a
   subprocess and reports its peak memory (goal ≤ 2 GB).
Writes benchmarks/results/score-<device>-<date>.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, write_result  # noqa: E402

from deepseqvae.alignment import read_alignment  # noqa: E402
from deepseqvae.alphabet import ALPHABET  # noqa: E402
from deepseqvae.checkpoint import Checkpoint, ModelInfo, build_model, load_checkpoint, save_checkpoint  # noqa: E402
from deepseqvae.model import VAE, VAEConfig  # noqa: E402
from deepseqvae.mutations import read_mutant_table, resolve_mutants  # noqa: E402
from deepseqvae.score import apply_changes, delta_elbo  # noqa: E402

MEMORY_SCRIPT = textwrap.dedent("""
    import json, sys, time
    def peak_mb():  # own peak (VmHWM); ru_maxrss would start at the parent's peak
        return next(int(l.split()[1]) / 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    from deepseqvae.pipeline import score_file
    t0 = time.perf_counter()
    res, out, _ = score_file(sys.argv[1], [sys.argv[2]], output=sys.argv[3], n_samples=int(sys.argv[4]),
                             device=sys.argv[5])
    print(json.dumps({"rows": len(res.frame), "peak_mb": peak_mb(),
                      "seconds": time.perf_counter() - t0}))
""")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--model", default=None, help="checkpoint to time [default: untrained paper-size model]")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--big-rows", type=int, default=500_000)
    ap.add_argument("--big-samples", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    device = torch.device(args.device)
    data = Path(args.data_dir) / "BLAT_ECOLX"
    aln = read_alignment(data / "msa.a2m")
    tmp = Path(tempfile.mkdtemp())
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
    wt = np.array([ALPHABET.index(a) for a in ckpt.info.focus_seq], dtype=np.int8)
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
    out = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(big), str(path), str(tmp / "big_scored.csv"),
                          str(args.big_samples), args.device], capture_output=True, text=True, check=True)
    mem = json.loads(out.stdout.strip().splitlines()[-1])
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
