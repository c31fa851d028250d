"""How much a pooled prior of a few proteins depends on which proteins (issue 13).

    python -m benchmarks.classify_prior_subsets --data-dir ../shared/data --work-dir benchmarks/runs/classify

Reads the saturation scans that `python -m benchmarks.bench_classify` cached in --work-dir
(`<DATASET>/seed*_<recipe>.scan-K*.csv`, one per trained model; no training, no scanning here), takes each
dataset's mean ΔELBO over its seeds, and classifies every labelled protein (P53_HUMAN, PTEN_HUMAN) as
`deepseqvae classify --prior` does, once with a prior pooled from **every non-empty subset** of the other
datasets (EVE's protein_GMM_weight 0.3, EVE's thresholds), and once alone. Per row: the prior's
components and separation (Ashman's D), the protein's own mixture, and accuracy at 75 % retained against
the ClinVar labels. Nothing is chosen here: it measures the spread.

`--prior-file NAME=PATH` (repeatable) adds a row per labelled protein with a prior read from a JSON file
written by `deepseqvae classify-prior` (or in its format): e.g. a mixture fitted elsewhere, over many more
proteins.

Writes `classify-prior-subsets-<date>.md` and `.csv` under benchmarks/results/ unless --out names the .md.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import pandas as pd

from benchmarks._common import REPO, add_data_dir, header, result_path, write_result
from deepseqvae.classify import (
    MIN_SEPARATION,
    classify_scores,
    evaluate,
    fit_prior,
    load_prior,
    match_labels,
    mean_scans,
    read_labels,
    read_scan,
)
from deepseqvae.errors import ClassifyError
from deepseqvae.fileio import atomic_write

LABELLED = ("P53_HUMAN", "PTEN_HUMAN")
OTHERS = ("BLAT_ECOLX", "GFP_AEQVI")


def pct(v: float) -> str:
    return "–" if v != v else f"{100 * v:.1f} %"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_dir(ap)
    ap.add_argument("--work-dir", default=str(REPO / "benchmarks" / "runs" / "classify"),
                    help="bench_classify's work dir, with the cached scans [default: %(default)s]")
    ap.add_argument("--recipe", default="fast", help="recipe in the scans' file names [default: %(default)s]")
    ap.add_argument("--out", default=None, help="the .md to write [default: benchmarks/results/classify-prior-"
                                                 "subsets-<date>.md]")
    ap.add_argument("--prior-file", action="append", default=[], metavar="NAME=PATH",
                    help="also classify with the prior in PATH (a classify-prior JSON), shown as NAME; repeatable")
    args = ap.parse_args()
    outside = {}
    for item in args.prior_file:
        name, sep, path = item.partition("=")
        if not (sep and name and path):
            ap.error(f"--prior-file {item!r}: expected NAME=PATH")
        try:
            outside[name] = (path, load_prior(path).mixture)
        except ClassifyError as exc:
            ap.error(str(exc))
    work = Path(args.work_dir)
    scans, files = {}, {}
    for name in (*LABELLED, *OTHERS):
        found = sorted((work / name).glob(f"seed*_{args.recipe}.scan-K*.csv"))
        if not found:
            ap.error(f"{work / name}: no cached scans (run benchmarks.bench_classify with this --work-dir first)")
        files[name] = found
        scans[name] = mean_scans([read_scan(f, protein=name) for f in found])
    text = header("Pooled priors of a few proteins: which proteins decides the classes")
    text += ("Scans (cached by `benchmarks.bench_classify`, the default recipe; the mean ΔELBO of each dataset's "
             "seeds):\n\n" + "".join(f"- {n}: {len(scans[n].mutants):,} single mutants, "
                                      f"{', '.join(f.name for f in files[n])}\n" for n in scans))
    text += (f"\nEach labelled protein classified alone and with a prior pooled from every non-empty subset of the "
             f"other datasets (`classify --prior`, protein_GMM_weight 0.3, EVE's thresholds). D = Ashman's "
             f"separation of the two components (below {MIN_SEPARATION:g} the library warns). P53 accuracy is over "
             f"its classified labels (130 pathogenic, 27 benign used); PTEN's target counts the pathogenic labels "
             f"called pathogenic.\n\n")
    if outside:
        text += "Priors from files (`--prior-file`), one more row each:\n\n" + "".join(
            f"- {n} ({p}): means {m.means[0]:.3f} / {m.means[1]:.3f}, sd {m.variances[0] ** 0.5:.3f} / "
            f"{m.variances[1] ** 0.5:.3f}, weights {m.weights[0]:.3f} / {m.weights[1]:.3f}\n"
            for n, (p, m) in outside.items()) + "\n"
    rows = []
    for name in LABELLED:
        others = [o for o in scans if o != name]
        table = read_labels(args.data_dir / name / "clinvar_labels.csv")
        subsets = [()] + [c for k in range(1, len(others) + 1) for c in itertools.combinations(others, k)]
        for subset in [*subsets, *outside]:
            if isinstance(subset, str):  # an outside prior, by its name
                prior, label = outside[subset][1], f"file: {subset}"
            else:
                prior = fit_prior([scans[o] for o in subset], seed=0).mixture if subset else None
                label = "+".join(subset) or "(none: alone)"
            cls = classify_scores(scans[name], prior=prior, seed=0)
            ev = evaluate(cls, match_labels(table, scans[name], protein=name))
            r = ev.by_retain.set_index("retain_pct").loc[75]
            m = cls.mixture
            rows.append({
                "dataset": name, "prior_of": label,
                "prior_benign_mean": prior.means[0] if prior else float("nan"),
                "prior_pathogenic_mean": prior.means[1] if prior else float("nan"),
                "prior_pathogenic_weight": prior.weights[1] if prior else float("nan"),
                "prior_separation": prior.separation if prior else float("nan"),
                "protein_benign_mean": m.means[0], "protein_pathogenic_mean": m.means[1],
                "protein_separation": m.separation, "classified_75": int(r.classified),
                "labelled": int(r.labelled), "accuracy_75": r.accuracy,
                "pathogenic_accuracy_75": r.pathogenic_accuracy, "pathogenic_coverage_75": r.pathogenic_coverage,
                "benign_accuracy_75": r.benign_accuracy})
    frame = pd.DataFrame(rows)
    for name in LABELLED:
        sub = frame[frame.dataset == name]
        text += (f"## {name}\n\n| prior pooled from | prior means (weight of pathogenic) | prior D | protein's means | "
                 "classified at 75 % | accuracy | pathogenic called pathogenic | benign called benign |\n"
                 "|---|---|---|---|---|---|---|---|\n")
        for _, r in sub.iterrows():
            pm = ("–" if r.prior_benign_mean != r.prior_benign_mean else
                  f"{r.prior_benign_mean:.2f} / {r.prior_pathogenic_mean:.2f} ({r.prior_pathogenic_weight:.2f})")
            d = "–" if r.prior_separation != r.prior_separation else f"{r.prior_separation:.2f}"
            text += (f"| {r.prior_of} | {pm} | {d} | {r.protein_benign_mean:.2f} / {r.protein_pathogenic_mean:.2f} | "
                     f"{r.classified_75} / {r.labelled} | {pct(r.accuracy_75)} | {pct(r.pathogenic_accuracy_75)} | "
                     f"{pct(r.benign_accuracy_75)} |\n")
        text += "\n"
    md = result_path(args.out, "classify-prior-subsets")
    with atomic_write(md.with_suffix(".csv"), "w", newline="") as fh:
        frame.to_csv(fh, index=False, float_format="%.4f")
    write_result(text, str(md), "classify-prior-subsets")
    print(f"wrote {md.with_suffix('.csv')}")


if __name__ == "__main__":
    main()
