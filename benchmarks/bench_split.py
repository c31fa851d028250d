"""Speed of the fast recipe's held-out split (``deepseqvae.holdout.cluster_holdout_split``), old against new.

    python -m benchmarks.bench_split [--data-dir ../shared/data] [--synthetic-n 10000,40000] [--synthetic-l 250]
        [--old-max-rows 10000] [--out FILE]

Every ``deepseqvae train`` with the default recipe first holds out 80 %-identity clusters worth 10 % of the
sequence weight: cluster centres in a seeded random order, each taking its free neighbours, then every row
within 80 % identity of a held-out one dropped from training. For each family (the shared ones and a
synthetic alignment of mutated copies, :func:`benchmarks.bench_weights.synthetic_codes`) this times, in the
same run, the split as ``deepseqvae train`` makes it (neighbours as one-hot products, centres in batches)
and :func:`split_pairwise`, the same algorithm as first written (one centre at a time, every pair of
residues compared), and checks that both give the same rows. The old path is skipped (and said so) for
alignments of more than ``--old-max-rows`` rows.

Seed 42 (the CLI's default), θ = 0.2, the family's own weights. Writes benchmarks/results/split-<date>.md
(or --out).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks._common import add_data_dir, header, write_result
from benchmarks.bench_weights import synthetic_codes
from deepseqvae.alignment import read_alignment
from deepseqvae.holdout import _neighbour_mask, cluster_holdout_split
from deepseqvae.weights import compute_weights

FAMILIES = ("BLAT_ECOLX", "P53_HUMAN", "PTEN_HUMAN", "GFP_AEQVI")


def split_pairwise(codes: np.ndarray, fraction: float, seed: int, keep: int, theta: float,
                   weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, held-out rows): ``cluster_holdout_split`` (by weight) as first written, one centre
    at a time with the pairwise :func:`deepseqvae.holdout._neighbour_mask`; the reference of the speed
    comparison and of the test that the batched split is the same split."""
    t = torch.tensor(np.asarray(codes), dtype=torch.int16)  # (N, L)
    n = t.shape[0]
    target = fraction * float(np.sum(weights))
    status = np.zeros(n, dtype=np.int8)
    forbidden = _neighbour_mask(t, torch.tensor([keep]), theta)[0].numpy()
    forbidden[keep] = True
    n_held = 0.0
    for c in np.random.default_rng(seed).permutation(n):
        if n_held >= target:
            break
        if status[c] or forbidden[c]:
            continue
        members = _neighbour_mask(t, torch.tensor([int(c)]), theta)[0].numpy() & (status == 0) & ~forbidden
        members[c] = True
        status[members] = 1
        n_held += weights[members].sum()
    held = np.flatnonzero(status == 1)
    near = _neighbour_mask(t, torch.as_tensor(held), theta).any(0).numpy() if len(held) else np.zeros(n, bool)
    train_mask = (status == 0) & ~near
    train_mask[keep] = True
    return np.flatnonzero(train_mask), held


def measure(name: str, codes: np.ndarray, old_max_rows: int) -> dict:
    """Time the split of ``codes`` (N, L), new and (up to ``old_max_rows`` rows) old, on the same input."""
    weights = compute_weights(codes, theta=0.2)
    t0 = time.perf_counter()
    train_rows, held = cluster_holdout_split(codes, 0.1, 42, keep=0, theta=0.2, weights=weights)
    new_s = time.perf_counter() - t0
    row = {"name": name, "N": codes.shape[0], "L": codes.shape[1], "neff": float(weights.sum()),
           "held": len(held), "train": len(train_rows), "new_s": new_s, "old_s": None, "same": None}
    if codes.shape[0] <= old_max_rows:
        t0 = time.perf_counter()
        old = split_pairwise(codes, 0.1, 42, keep=0, theta=0.2, weights=weights)
        row["old_s"] = time.perf_counter() - t0
        row["same"] = bool(np.array_equal(old[0], train_rows) and np.array_equal(old[1], held))
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_dir(ap)
    ap.add_argument("--synthetic-n", default="10000,40000",
                    help="rows of the synthetic alignments, comma-separated (empty: none)")
    ap.add_argument("--synthetic-l", type=int, default=250, help="columns of the synthetic alignment")
    ap.add_argument("--old-max-rows", type=int, default=10_000, help="time the old pairwise path up to this N")
    ap.add_argument("--out", help="Markdown file to write [benchmarks/results/split-<date>.md]")
    args = ap.parse_args()
    rows = []
    for fam in FAMILIES:
        aln = read_alignment(Path(args.data_dir) / fam / "msa.a2m")
        rows.append(measure(fam, aln.codes, args.old_max_rows))
        print(rows[-1], flush=True)
    for n in [int(v) for v in args.synthetic_n.split(",") if v.strip()]:
        codes = synthetic_codes(n, args.synthetic_l, seed=0)
        rows.append(measure(f"synthetic ({n:,} x {args.synthetic_l})", codes, args.old_max_rows))
        print(rows[-1], flush=True)
    lines = [header("Held-out split of the fast recipe: one-hot products, batched centres, against the pairwise one"),
             "Seed 42, θ = 0.2, clusters worth 10 % of the weight (what `deepseqvae train` does before training). "
             "new = `cluster_holdout_split` as train runs it (one-hot products, centres in batches); old = "
             "`split_pairwise`, the same algorithm one centre at a time with pairwise comparisons (skipped above "
             f"{args.old_max_rows:,} rows); both timed in this run on the same input.\n",
             "| family | N x L | Neff | held out / trained | new (s) | old (s) | old / new | same rows |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        old = "skipped" if r["old_s"] is None else f"{r['old_s']:.2f}"
        ratio = "–" if r["old_s"] is None else f"**{r['old_s'] / r['new_s']:.1f}x**"
        same = "–" if r["same"] is None else ("yes" if r["same"] else "**NO**")
        lines.append(f"| {r['name']} | {r['N']:,} x {r['L']} | {r['neff']:.1f} | {r['held']:,} / {r['train']:,} | "
                     f"{r['new_s']:.2f} | {old} | {ratio} | {same} |")
    write_result("\n".join(lines) + "\n", args.out, "split")


if __name__ == "__main__":
    main()
