"""Peak memory of `deepseqvae train` on long synthetic families, per way of running the refit.

    python -m benchmarks.bench_train_memory --lengths 1200,2000 --rows 2000 --steps 20

For each length L a seeded synthetic family (a random focus, clades at 10-60 % divergence from it, 8 % further
substitutions per sequence, end truncations and an internal gap block; no structure to learn) is written to a
temporary folder with its weights; then `deepseqvae train` runs a few steps of the fast recipe in each way the refit
can run (beside the held-out run, after it, none), each in a fresh process whose peak resident memory is read with
``os.wait4``. The model's parameters are counted on the meta device. What it gives: bytes of peak memory per
parameter, which `train` uses to warn before a run that will not fit (``deepseqvae.train.TRAIN_BYTES_PER_PARAMETER``).
The peak comes within the first steps (model, optimiser state, averages and the evaluation copies all exist by then).
Writes benchmarks/results/train-memory-<date>.md.
"""

from __future__ import annotations

import argparse
import datetime
import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks._common import REPO, header, write_result
from benchmarks.bench_commits import run_once

MODES = {"refit beside": [], "refit after": ["--refit-after"], "one run": ["--no-refit"]}
AMINO = np.frombuffer(b"ACDEFGHIKLMNPQRSTVWY", dtype=np.uint8)


def write_family(path: Path, length: int, rows: int, seed: int = 0) -> None:
    """A synthetic a2m of ``rows`` sequences (the focus first) of ``length`` columns (see the module docstring)."""
    rng = np.random.default_rng(seed)
    focus = rng.integers(0, 20, length)  # (L,)
    n_clades = max(1, rows // 8)
    clades = np.tile(focus, (n_clades, 1))  # (C, L)
    redraw = rng.random((n_clades, length)) < rng.uniform(0.1, 0.6, n_clades)[:, None]
    clades[redraw] = rng.integers(0, 20, int(redraw.sum()))
    seqs = clades[rng.integers(0, n_clades, rows - 1)]  # (N-1, L)
    more = rng.random(seqs.shape) < 0.08
    seqs[more] = rng.integers(0, 20, int(more.sum()))
    letters = AMINO[seqs]
    idx = np.arange(length)[None]  # (1, L)
    start = rng.integers(0, length // 4, (rows - 1, 1))
    end = length - rng.integers(0, length // 4, (rows - 1, 1))
    g0 = rng.integers(0, length, (rows - 1, 1))
    g1 = g0 + rng.integers(0, length // 10 + 1, (rows - 1, 1))
    letters[(idx < start) | (idx >= end) | ((idx >= g0) & (idx < g1))] = ord("-")
    with open(path, "w") as fh:
        fh.write(f">FOCUS/1-{length}\n{AMINO[focus].tobytes().decode()}\n")
        for i, row in enumerate(letters):
            fh.write(f">S{i}\n{row.tobytes().decode()}\n")


def parameters(length: int) -> int:
    """Parameters of the fast recipe's model of a family of ``length`` columns (counted on the meta device)."""
    from deepseqvae.model import VAE
    from deepseqvae.recipes import recipe_configs

    model_cfg, _ = recipe_configs("fast", length, neff=1000.0)
    with torch.device("meta"):
        return sum(p.numel() for p in VAE(model_cfg).parameters())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", default="1200,2000", help="comma-separated family lengths L")
    ap.add_argument("--rows", type=int, default=2000, help="sequences per family")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    from deepseqvae.alignment import read_alignment
    from deepseqvae.weights import compute_weights

    lines = ["| L | parameters | way | peak resident GiB | bytes per parameter | wall s |", "|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for length in (int(x) for x in args.lengths.split(",")):
            msa, wfile = work / f"L{length}.a2m", work / f"L{length}_w.npy"
            write_family(msa, length, args.rows)
            np.save(wfile, compute_weights(read_alignment(msa).codes, 0.2))
            n_params = parameters(length)
            for way, flags in MODES.items():
                seconds, gb, _ = run_once(REPO, ["train", str(msa), "--weights", str(wfile), "-o",
                                                 str(work / "m.pt"), "--steps", str(args.steps), "--no-progress",
                                                 *flags], work)  # GiB: ru_maxrss kB / 2**20
                lines.append(f"| {length:,} | {n_params / 1e6:.1f} M | {way} | {gb:.2f} | {gb * 2**30 / n_params:.1f} "
                             f"| {seconds:.1f} |")
                print(lines[-1], flush=True)
    text = header("Peak memory of deepseqvae train on long families") + (
        f"Synthetic families of {args.rows:,} sequences (seed 0), fast recipe, `--steps {args.steps}`, weights given; "
        "one fresh process per run, peak resident memory from `os.wait4`.\n\n" + "\n".join(lines) + "\n")
    write_result(text, args.out, f"train-memory-{datetime.date.today().isoformat()}")


if __name__ == "__main__":
    main()
