"""Do the labelled variants a model calls wrongly occur in the focus's close homologs?

    python -m benchmarks.label_neighbours --msa ../shared/data/P53_HUMAN/msa.a2m \\
        --labels p53_classes_labels.csv [--labels other_seed_labels.csv] --retain 75 --out /tmp/label-neighbours.md

Reads the ``<OUTPUT>_labels.csv`` that ``deepseqvae classify --labels`` writes (one row per label, with its
status and class at each retained fraction) and the alignment the model was trained on. For each labelled
substitution it counts the alignment's sequences that carry the mutant residue at that column, by their
identity to the focus (the share of the focus's modelled columns where the sequence has the focus's residue;
gaps count as different), and their weighted frequency (theta 0.2). The summary contrasts the pathogenic
labels called pathogenic with those called benign: the VAE models each sequence's neighbourhood, so a
substitution carried by sequences close to the focus (paralogs, pseudogene or tumour-derived entries, other
species) gets a mild score whatever its clinical effect. An aid for reading a classification, not a
benchmark of speed or accuracy; nothing here changes a model or a threshold.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from benchmarks._common import header, result_path, write_result
from deepseqvae.alignment import AlignmentOptions
from deepseqvae.alphabet import AA_TO_CODE, N_AA
from deepseqvae.latent import identity_to_focus
from deepseqvae.mutants import parse_mutant
from deepseqvae.weights import compute_weights

#: identity-to-focus bands in which carriers are counted (lower bounds; the last band ends at 1)
BANDS = (0.0, 0.3, 0.5, 0.7)


def carriers(aln, weights: np.ndarray, mutant: str, identity: np.ndarray | None = None) -> dict:
    """Carriers of ``mutant``'s residue at its column: counts and weighted frequency per identity band.
    ``identity`` (N,) is :func:`deepseqvae.latent.identity_to_focus` of the alignment (computed here if not
    given; pass it when asking about many mutants)."""
    sub = parse_mutant(mutant)[0]
    col = aln.position_to_column[sub.pos]
    codes = np.asarray(aln.codes)  # (N, L) int8
    if identity is None:
        identity = identity_to_focus(codes, aln.focus_codes)  # (N,)
    has = codes[:, col] == AA_TO_CODE[sub.mut]  # (N,)
    present = codes[:, col] < N_AA  # gaps at the column are not counted in its frequency

    def count_and_freq(group: np.ndarray) -> tuple[int, float]:
        # carriers in the group (N,) bool, and their weighted share of its non-gap residues at the column
        denom = float(weights[group & present].sum())
        return int((group & has).sum()), float(weights[group & has].sum()) / denom if denom > 0 else float("nan")

    out = {}
    edges = (*BANDS, 1.0 + 1e-9)
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        out[f"n_{lo:.1f}"], out[f"freq_{lo:.1f}"] = count_and_freq((identity >= lo) & (identity < hi))
    out["n_close"], out["freq_close"] = count_and_freq(identity >= 0.5)
    return out


def summarise(rows: pd.DataFrame, retain: int) -> str:
    """Markdown: the pathogenic labels by their call, with how many have carriers among close homologs."""
    col = f"EVE_classes_{retain}_pct_retained"
    text = ""
    for name, group in rows.groupby("source", sort=False):
        patho = group[group.label == 1]
        text += (f"### {name}\n\n| pathogenic labels called | n | with a carrier ≥ 50 % identical "
                 "| median evolutionary index | median weighted frequency of the mutant residue in the sequences "
                 "≥ 50 % identical |\n"
                 "|---|---|---|---|---|\n")
        for call in ("Pathogenic", "Uncertain", "Benign"):
            sub = patho[patho[col] == call]
            if sub.empty:
                continue
            close = (sub.n_close > 0).sum()
            text += (f"| {call} | {len(sub)} | {close} ({100 * close / len(sub):.0f} %) | "
                     f"{sub.evolutionary_index.median():.2f} | {np.nanmedian(sub.freq_close):.4f} |\n")
        text += "\n"
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--msa", required=True, help="the alignment the classified model was trained on")
    ap.add_argument("--labels", required=True, action="append",
                    help="a <OUTPUT>_labels.csv from 'deepseqvae classify --labels' (repeat: one summary each)")
    ap.add_argument("--retain", type=int, default=75, help="retained percentage whose classes are read [75]")
    ap.add_argument("--out", default=None,
                    help="the .md to write [default: benchmarks/results/label-neighbours-<date>.md]")
    args = ap.parse_args()
    aln = AlignmentOptions().read(args.msa)
    weights = np.asarray(compute_weights(aln.codes, 0.2))
    identity = identity_to_focus(aln.codes, aln.focus_codes)  # (N,), once for every label
    frames = []
    for path in args.labels:
        try:
            lab = pd.read_csv(path)
        except (OSError, ValueError) as exc:
            raise SystemExit(f"{path}: cannot read ({exc})") from None
        need = {"mutant", "label", "status", "evolutionary_index", f"EVE_classes_{args.retain}_pct_retained"}
        if not need <= set(lab.columns):
            raise SystemExit(f"{path}: not a 'deepseqvae classify --labels' _labels.csv (lacks "
                             f"{', '.join(sorted(need - set(lab.columns)))})")
        ok = lab[lab.status == "ok"].copy()
        extra = pd.DataFrame([carriers(aln, weights, m, identity) for m in ok.mutant], index=ok.index)
        frames.append(pd.concat([ok, extra], axis=1).assign(source=path))
    rows = pd.concat(frames)
    text = header("Labelled variants and the focus's close homologs")
    text += (f"Alignment `{args.msa}` ({aln.N} sequences, {aln.L} columns); identity = share of the focus's modelled "
             "columns where a sequence has the focus's residue (gaps differ); weights theta 0.2; classes at "
             f"{args.retain} % retained.\n\n")
    text += summarise(rows, args.retain)
    col = f"EVE_classes_{args.retain}_pct_retained"
    missed = rows[(rows.label == 1) & (rows[col] == "Benign")].drop_duplicates("mutant")
    text += ("### Pathogenic labels called benign (any input), with the carriers of their mutant residue\n\n"
             "| mutant | evolutionary index | carriers by identity to the focus: <30 % / 30-50 % / 50-70 % / ≥ 70 % "
             "| weighted frequency 50-70 % / ≥ 70 % |\n|---|---|---|---|\n")
    order = missed.mutant.map(lambda m: parse_mutant(m)[0].pos).sort_values().index
    for _, r in missed.loc[order].iterrows():
        text += (f"| {r.mutant} | {r.evolutionary_index:.2f} | {r['n_0.0']} / {r['n_0.3']} / {r['n_0.5']} / "
                 f"{r['n_0.7']} | {r['freq_0.5']:.3f} / {r['freq_0.7']:.3f} |\n")
    md = result_path(args.out, "label-neighbours")
    write_result(text, str(md), "label-neighbours")


if __name__ == "__main__":
    main()
