"""How many of the focus neighbourhood's invariant columns each record changes (`train --max-invariant-changes`).

    python -m benchmarks.invariant_changes --data-dir ../shared/data            # seconds, no training

For each alignment (the datasets of benchmarks/datasets.csv and P53_HUMAN/msa.a2m): the focus's neighbours
(records >= 50 % identical to it), the columns their sequence weight keeps invariant (the focus residue
>= 95 %), the distribution of the neighbours' changes of those columns, and which records K drops (K = 6, 8,
10; the most-changing ones named). It shows where the count K sits against a family's functional neighbours
before a model is trained; it trains nothing and uses no labels.

Writes `invariant-changes-<date>.md` under benchmarks/results/ unless --out names the .md.
"""

from __future__ import annotations

import argparse

import numpy as np

from benchmarks._common import add_data_dir, header, write_result
from benchmarks.reproduce import dataset_alignment, read_datasets
from deepseqvae.alphabet import GAP_CODE
from deepseqvae.outliers import INVARIANT_SHARE, NEAR_IDENTITY, invariant_changes, invariant_columns
from deepseqvae.weights import compute_weights

#: alignments beside the DMS datasets: the ClinVar set's TP53 alignment
EXTRA = ("P53_HUMAN/msa.a2m",)
KS = (6, 8, 10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_dir(ap)
    ap.add_argument("--out", default=None, help="the .md to write [default: benchmarks/results/invariant-changes-"
                                                "<date>.md]")
    args = ap.parse_args()
    text = header("Focus neighbours' changes of the columns their neighbourhood keeps invariant")
    text += (f"Neighbours: records >= {NEAR_IDENTITY:.0%} identical to the focus; invariant: the focus residue holds "
             f">= {INVARIANT_SHARE:.0%} of the neighbours' sequence weight (theta 0.2). Quantiles are over the "
             "neighbours (the focus included).\n\n")
    text += ("| alignment | N | L | neighbours (weight) | invariant columns | changes: median / 95th pct / 99th pct / "
             "max | dropped at K = " + " / ".join(map(str, KS)) + " (weight) | records dropped at K = 8 "
             "(else the 3 with most changes) |\n"
             "|---|---|---|---|---|---|---|---|\n")
    for name in [*read_datasets().index, *EXTRA]:
        _, aln = dataset_alignment(name, args.data_dir)
        weights = compute_weights(aln.codes, 0.2)
        changes, neighbour = invariant_changes(aln.codes, aln.focus_index, weights)
        n_columns = int(invariant_columns(aln.codes, aln.focus_index, weights)[0].sum())
        q = np.quantile(changes[neighbour], [0.5, 0.95, 0.99])
        drops = " / ".join(f"{int((changes >= k).sum())} ({weights[changes >= k].sum():.2f})" for k in KS)
        # every record K = 8 drops (the setting measured), else the three with most changes
        top = np.argsort(-changes, kind="stable")[:max(3, int((changes >= 8).sum()))]
        residue = aln.codes != GAP_CODE
        identity = ((aln.codes == aln.focus_codes[None, :]) & residue).sum(1) / np.maximum(residue.sum(1), 1)
        most = ", ".join(f"{aln.ids[i]} ({changes[i]}; {identity[i]:.0%} identical)".replace("|", "\\|")
                         for i in top if changes[i] > 0)
        text += (f"| {name} | {aln.N:,} | {aln.L} | {int(neighbour.sum()):,} ({weights[neighbour].sum():.1f}) | "
                 f"{n_columns} | {q[0]:g} / {q[1]:g} / {q[2]:g} / {changes[neighbour].max()} | {drops} | {most} |\n")
    write_result(text, args.out, "invariant-changes")


if __name__ == "__main__":
    main()
