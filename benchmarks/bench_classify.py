"""Pathogenicity classes against ClinVar labels (issue 13): P53_HUMAN and PTEN_HUMAN, EVE's mixture step.

    python -m benchmarks.bench_classify --data-dir ../shared/data --device cuda        # the default recipe, 3 seeds
    python -m benchmarks.bench_classify --datasets P53_HUMAN --seeds 1 --steps 20 --samples 5 \\
        --work-dir /tmp/bench_classify --out /tmp/bench_classify/classify.md         # smoke test (minutes, CPU)

For each dataset: trains the default recipe of `deepseqvae train` (every option at its default, the
paper's model and --steps) once per seed, scans all single mutants of each model (K = --samples),
averages the seeds' ΔELBO (an ensemble, as EVE) and classifies it as `deepseqvae classify` does (a
mixture fitted to this protein alone, EVE's default entropy thresholds, no pooled prior), then
evaluates against `<DATASET>/clinvar_labels.csv`; beside it, the same mixture with thresholds recomputed on the
protein (`classify --thresholds protein`: "75 % retained" then keeps exactly 75 % of its single mutants).
Checkpoints go to --work-dir (benchmarks/runs/classify) and are reused (or resumed) when already there, so an
interrupted run continues. `--max-invariant-changes K` trains every model (and the baseline) as `deepseqvae train
--max-invariant-changes K` does. A dataset with a DMS table in benchmarks/datasets.csv (PTEN_HUMAN) also gets the
Spearman ρ of each seed's scan and of their mean against it, reported beside the classes and never used by them.

Writes `classify-<date>.md` (command, machine, date, commit; per dataset the mixture, the label
statuses, AUCs, per-class accuracy and coverage at each retained fraction), `classify-<date>.csv`
(one row per dataset × retained fraction) and `classify-<date>-<DATASET>-histogram.png` /
`-labels.png` beside it, under benchmarks/results/ unless --out names the .md.

The targets of issue 13 are printed under each table: P53_HUMAN AUC ≥ 0.90 and ≥ 90 % accuracy at
75 % retained; PTEN_HUMAN (111 pathogenic, 2 benign labels: no AUC) ≥ 90 % of the classified
pathogenic labels called pathogenic at 75 % retained.

EVE's two-level design, leave one out: each labelled protein is also classified with a pooled prior
(``deepseqvae classify-prior``) fitted to the scans of every *other* protein of the run, the other
labelled ones and ``--prior-datasets`` (default BLAT_ECOLX, GFP_AEQVI; trained the same way with
``--prior-seeds``), mixed in at EVE's ``protein_GMM_weight`` 0.3. EVE pools ~3,000 human proteins;
this pools three or four, so it shows the mechanism, not EVE's prior.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks._common import REPO, add_data_dir, header, result_path, write_result
from deepseqvae.alignment import AlignmentOptions
from deepseqvae.checkpoint import load_checkpoint
from deepseqvae.classify import (
    BENIGN,
    PATHOGENIC,
    PROTEIN_GMM_WEIGHT,
    UNCERTAIN,
    Classification,
    Evaluation,
    auc,
    fit_prior,
    match_labels,
    mean_scans,
    read_labels,
    read_scan,
    report_markdown,
    save_prior,
)
from deepseqvae.fileio import atomic_write
from deepseqvae.pipeline import classify_file, scan_scores, train_file
from deepseqvae.recipes import DEFAULT_RECIPE
from deepseqvae.train import training_finished

DATASETS = ("P53_HUMAN", "PTEN_HUMAN")


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def fmt(v: float) -> str:
    return "–" if v != v else f"{v:.3f}"


def train_seed(msa: Path, ckpt: Path, recipe: str, steps: int | None, seed: int, device: str,
               options: dict | None = None, align: AlignmentOptions | None = None) -> float | None:
    """Train (or resume, or reuse) one seed of ``recipe``; returns the seconds spent (None: reused as it was)."""
    t0 = time.perf_counter()
    if ckpt.exists():
        ck = load_checkpoint(ckpt)
        if ck.train_config.get("recipe") != recipe:
            sys.exit(f"{ckpt}: trained with recipe {ck.train_config.get('recipe')!r}, not {recipe!r}; delete it "
                     "or use another --work-dir")
        if training_finished(ck):
            print(f"{ckpt}: finished training (step {ck.step}), reused", file=sys.stderr)
            return None
    train_file(msa, ckpt, recipe=recipe, train_options={**(options or {}), "steps": steps, "seed": seed}, device=device,
               resume=ckpt.exists(), progress=True, options=align)
    return time.perf_counter() - t0


def alignment_options(args) -> AlignmentOptions:
    """How the runs read their alignments: the defaults, with --max-invariant-changes when given."""
    return AlignmentOptions(max_invariant_changes=args.max_invariant_changes)


def dms_line(name: str, data_dir: Path, scans: list, mean) -> str | None:
    """Spearman ρ of each seed's ΔELBO and of their mean against the dataset's DMS table (its scorable
    single mutants), when benchmarks/datasets.csv lists one; reported beside the classes, never used by them."""
    from scipy.stats import spearmanr

    from benchmarks.reproduce import dms_rows, read_datasets

    table = read_datasets()
    if name not in table.index:
        return None
    row = table.loc[name]
    resolved, fitness, n_rows = dms_rows(row, data_dir, mean.focus_seq, mean.positions)
    where = {(int(c), int(a)): i for i, (c, a) in enumerate(zip(mean.columns, mean.codes, strict=True))}
    singles = [i for i, r in enumerate(resolved) if len(r.changes) == 1 and r.changes[0] in where]
    if not singles:
        return None
    index = [where[resolved[i].changes[0]] for i in singles]
    truth = fitness[singles]
    rho = [spearmanr(s.delta_elbo[index], truth)[0] for s in scans]
    return (f"- reported only: Spearman ρ against {row['dms']} ({len(singles):,} single mutants of its {n_rows:,} "
            f"rows): per seed {', '.join(f'{r:.3f}' for r in rho)} (mean {np.mean(rho):.3f}); the seeds' mean ΔELBO "
            f"{spearmanr(mean.delta_elbo[index], truth)[0]:.3f}")


def site_independent_baseline(msa: Path, labels_path: Path, work: Path, name: str,
                              align: AlignmentOptions | None = None) -> tuple[str, Evaluation]:
    """One Markdown line (the same classification of the site-independent model of the same alignment, read
    with the same ``align`` options) and that model's evaluation."""
    ckpt = work / "site_independent.pt"
    train_file(msa, ckpt, model_kind="independent", options=align)
    ev = classify_file(work / f"{name}_site_independent_classes.csv", models=[ckpt], labels=labels_path,
                       gmm_seed=0).evaluation
    at75 = ev.by_retain.set_index("retain_pct").loc[75]
    line = (f"- baseline, the site-independent model of the same alignment (`deepseqvae train --model independent`), "
            f"classified the same way: AUC {fmt(ev.auc_evolutionary_index)}; at 75 % retained accuracy "
            f"{100 * at75.accuracy:.1f} %, pathogenic labels called pathogenic {100 * at75.pathogenic_accuracy:.1f} % "
            f"(coverage {100 * at75.pathogenic_coverage:.1f} %), benign called benign {fmt_pct(at75.benign_accuracy)}")
    return line, ev


def wrong_classes(cls: Classification, ev: Evaluation, base: Evaluation, retain: int = 75) -> str:
    """Markdown: the labelled variants whose class at ``retain`` % retained is not their label, with where their
    evolutionary index falls among all single mutants of the scan and the site-independent model's class."""
    col = f"EVE_classes_{retain}_pct_retained"
    t = ev.table.assign(label=np.asarray(ev.match.labels.labels, dtype=float))  # 1 pathogenic, 0 benign
    t = t[t.status == "ok"]
    label = np.where(t.label == 1.0, PATHOGENIC, BENIGN)
    wrong = t[(t[col] != UNCERTAIN) & (t[col] != label)].sort_values("evolutionary_index")
    if wrong.empty:
        return f"- at {retain} % retained every classified labelled variant has its label's class\n"
    everything = np.sort(cls.scan.evolutionary_index)
    b = base.table.set_index("mutant")
    rows = ["| variant | label | evolutionary index | percentile among all single mutants | P(pathogenic) | "
            "site-independent: index, class |", "|---|---|---|---|---|---|"]
    for _, r in wrong.iterrows():
        pct = 100.0 * np.searchsorted(everything, r.evolutionary_index, side="right") / len(everything)
        rows.append(f"| {r.mutant} | {'pathogenic' if r.label == 1.0 else 'benign'} | {r.evolutionary_index:.2f} | "
                    f"{pct:.0f} | {r.pathogenicity:.3f} | {b.evolutionary_index.get(r.mutant, np.nan):.2f}, "
                    f"{b[col].get(r.mutant, '–')} |")
    called_benign = wrong[wrong.label == 1.0]
    also = int((called_benign.mutant.map(b[col]) != PATHOGENIC).sum())
    return (f"- labelled variants in the wrong class at {retain} % retained: {len(wrong)} "
            f"({len(called_benign)} pathogenic called benign, {len(wrong) - len(called_benign)} benign called "
            f"pathogenic); the site-independent model does not call {also} of those {len(called_benign)} pathogenic "
            "ones pathogenic either\n\n" + "\n".join(rows) + "\n")


def fmt_seconds(t: float | None) -> str:
    return "reused" if t is None else f"{t:.0f} s"


def fmt_pct(v: float) -> str:
    return "–" if v != v else f"{100 * v:.1f} %"


def at75_text(at75: pd.Series, ev: Evaluation) -> str:
    """The accuracy and coverage per class at 75 % retained (a row of ``ev.by_retain``), as the report words them."""
    return (f"at 75 % retained accuracy {fmt_pct(at75.accuracy)} of "
            f"{int(round(at75.coverage * (ev.n_pathogenic + ev.n_benign)))} classified, pathogenic labels called "
            f"pathogenic {fmt_pct(at75.pathogenic_accuracy)} (coverage {fmt_pct(at75.pathogenic_coverage)}), benign "
            f"called benign {fmt_pct(at75.benign_accuracy)} (coverage {fmt_pct(at75.benign_coverage)})")


def scan_dataset(name: str, args, seeds: list[int]) -> tuple[list, list[float], float]:
    """Train ``seeds`` of dataset ``name`` (reusing checkpoints) and scan each model: (scans, training s, scan s)."""
    msa = args.data_dir / name / "msa.a2m"
    work = Path(args.work_dir) / name
    work.mkdir(parents=True, exist_ok=True)
    ckpts, train_s = [], []
    for seed in seeds:
        ckpt = work / f"seed{seed}_{args.recipe}{'' if args.steps is None else f'_steps{args.steps}'}.pt"
        train_s.append(train_seed(msa, ckpt, args.recipe, args.steps, seed, args.device, args.train_options,
                                  alignment_options(args)))
        ckpts.append(ckpt)
    t0 = time.perf_counter()
    scans = [cached_scan(c, name, args) for c in ckpts]
    return scans, train_s, time.perf_counter() - t0


def cached_scan(ckpt: Path, name: str, args):
    """The saturation scan of ``ckpt`` (K = --samples, seed 0), read back from ``<ckpt>.scan-K<k>.csv`` when
    that file is newer than the checkpoint, so classification variants can be rerun without rescanning."""
    cache = ckpt.with_name(f"{ckpt.stem}.scan-K{args.samples or 'auto'}.csv")
    if cache.exists() and cache.stat().st_mtime >= ckpt.stat().st_mtime:
        print(f"{ckpt}: scan reused from {cache}", file=sys.stderr)
        return read_scan(cache, protein=name)
    scan = scan_scores([ckpt], n_samples=args.samples, seed=0, device=args.device)
    frame = pd.DataFrame({"mutant": scan.mutants, "score": scan.delta_elbo, "score_sem": scan.sem})
    with atomic_write(cache, "w", newline="") as fh:
        frame.to_csv(fh, index=False, float_format="%.17g")
    return scan


def with_prior(name: str, scan, others: dict, args) -> tuple[str, dict]:
    """One Markdown line and the CSV columns of ``scan`` classified with a pooled prior fitted to ``others``."""
    work = Path(args.work_dir) / name
    prior = fit_prior(list(others.values()), seed=0)
    prior_path = save_prior(prior, work / f"{name}_loo_prior.json")
    run = classify_file(work / f"{name}_classes_loo_prior.csv", scores=scan, prior=prior_path,
                        labels=args.data_dir / name / "clinvar_labels.csv", plots=False, gmm_seed=0)
    ev = run.evaluation
    at75 = ev.by_retain.set_index("retain_pct").loc[75]
    m = prior.mixture
    line = (f"- **with a leave-one-out pooled prior** (`classify --prior`, protein_GMM_weight {PROTEIN_GMM_WEIGHT:g}; "
            f"prior fitted to {', '.join(others)}: {sum(len(s.mutants) for s in others.values()):,} single mutants; "
            f"its components: means {m.means[0]:.2f} / {m.means[1]:.2f}, weights {m.weights[0]:.2f} / "
            f"{m.weights[1]:.2f}): AUC of EVE_scores {fmt(ev.auc_pathogenicity)}; " + at75_text(at75, ev))
    return line, {"loo_prior_accuracy_75": at75.accuracy, "loo_prior_pathogenic_accuracy_75": at75.pathogenic_accuracy,
                  "loo_prior_benign_accuracy_75": at75.benign_accuracy, "loo_prior_auc": ev.auc_pathogenicity}


def with_protein_thresholds(name: str, scan, args) -> tuple[str, dict]:
    """One Markdown line and the CSV columns of ``scan`` classified with thresholds recomputed on this protein
    (``classify --thresholds protein``: each retained % keeps exactly that share of its single mutants), reported
    beside EVE's default thresholds, which keep a share far from the nominal one on a single protein."""
    run = classify_file(Path(args.work_dir) / name / f"{name}_classes_protein_thresholds.csv", scores=scan,
                        labels=args.data_dir / name / "clinvar_labels.csv", thresholds="protein", plots=False,
                        gmm_seed=0)
    ev = run.evaluation
    at75 = ev.by_retain.set_index("retain_pct").loc[75]
    line = (f"- **with thresholds recomputed on this protein** (`classify --thresholds protein`; entropy threshold "
            f"{at75.threshold:.4f} keeps 75 % of its single mutants): " + at75_text(at75, ev))
    return line, {"protein_thresholds_accuracy_75": at75.accuracy,
                  "protein_thresholds_pathogenic_accuracy_75": at75.pathogenic_accuracy,
                  "protein_thresholds_benign_accuracy_75": at75.benign_accuracy}


def run_dataset(name: str, args, stem: Path, scans: list, train_s: list[float | None], scan_s: float,
                prior_scans: dict) -> tuple[str, pd.DataFrame]:
    data = args.data_dir / name
    msa, labels_path = data / "msa.a2m", data / "clinvar_labels.csv"
    work = Path(args.work_dir) / name
    table = read_labels(labels_path)
    per_seed = []
    for s in scans:
        m = match_labels(table, s, protein=s.protein)
        per_seed.append(auc(s.evolutionary_index[m.index[m.ok]], m.labels.labels[m.ok]))
    mean = mean_scans(scans)  # the ensemble: the seeds' mean ΔELBO
    run = classify_file(work / f"{name}_classes.csv", scores=mean, labels=labels_path, plots=True, gmm_seed=0)
    cls, ev = run.classification, run.evaluation
    figures = []
    for kind, src in (("histogram", "_histogram.png"), ("labels", "_labels.png")):
        dst = stem.with_name(f"{stem.name}-{name}-{kind}.png")
        shutil.copyfile(run.output.with_name(run.output.stem + src), dst)
        figures.append(dst)
    at75 = ev.by_retain.set_index("retain_pct").loc[75]
    baseline, base_ev = site_independent_baseline(msa, labels_path, work, name, alignment_options(args))
    lines = [report_markdown(cls, ev),
             f"- seeds {', '.join(map(str, args.seeds))}: training {', '.join(map(fmt_seconds, train_s))}; "
             f"scans {scan_s:.0f} s; AUC of −ΔELBO per seed: {', '.join(fmt(a) for a in per_seed)}",
             "- figures: " + ", ".join(f"[{p.name}]({p.name})" for p in figures),
             baseline]
    dms = dms_line(name, args.data_dir, scans, mean)
    if dms:
        lines.append(dms)
    line, protein_cols = with_protein_thresholds(name, mean, args)
    lines.append(line)
    others = {k: v for k, v in prior_scans.items() if k != name}
    prior_cols: dict = {}
    if others:
        line, prior_cols = with_prior(name, mean, others, args)
        lines.append(line)
    lines.append(wrong_classes(cls, ev, base_ev))
    if name == "P53_HUMAN":
        ok = ev.auc_evolutionary_index >= 0.90 and at75.accuracy >= 0.90
        lines.append(f"- issue 13 target (AUC ≥ 0.90, accuracy ≥ 90 % at 75 % retained): AUC "
                     f"{fmt(ev.auc_evolutionary_index)}, accuracy {100 * at75.accuracy:.1f} % → "
                     f"{'met' if ok else 'NOT met'}")
    elif name == "PTEN_HUMAN":
        ok = at75.pathogenic_accuracy >= 0.90
        n_classified = int(round(at75.pathogenic_coverage * ev.n_pathogenic))
        lines.append(f"- issue 13 target (≥ 90 % of the pathogenic labels called pathogenic at 75 % retained): "
                     f"{100 * at75.pathogenic_accuracy:.1f} % of the {n_classified} classified, "
                     f"{100 * at75.pathogenic_accuracy * at75.pathogenic_coverage:.1f} % of all {ev.n_pathogenic} "
                     f"→ {'met' if ok else 'NOT met'} (counting the classified ones)")
    rows = ev.by_retain.assign(dataset=name, auc_evolutionary_index=ev.auc_evolutionary_index,
                               auc_pathogenicity=ev.auc_pathogenicity, n_pathogenic=ev.n_pathogenic,
                               n_benign=ev.n_benign, seeds=" ".join(map(str, args.seeds)), steps=args.steps,
                               samples=args.samples if args.samples is not None else "automatic",
                               auc_per_seed=" ".join(fmt(a) for a in per_seed), **protein_cols, **prior_cols)
    return "\n".join(lines) + "\n", rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_dir(ap)
    ap.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated [default: %(default)s]")
    ap.add_argument("--seeds", type=_ints, default=[1, 2, 3], help="training seeds, comma-separated [default: 1,2,3]")
    ap.add_argument("--recipe", default=DEFAULT_RECIPE, help="training recipe [default: %(default)s]")
    ap.add_argument("--steps", type=int, default=None, help="training steps [default: the recipe's]")
    ap.add_argument("--samples", type=int, default=None, help="K per mutant [default: each model's automatic K]")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--train-options", type=json.loads, default={},
                    help="JSON of TrainConfig fields changing the recipe, e.g. "
                         "'{\"holdout_fraction\": 0, \"early_stopping\": 0}' (use another --work-dir: checkpoints "
                         "are named by recipe and seed) [default: none]")
    ap.add_argument("--max-invariant-changes", type=int, default=None, metavar="K",
                    help="train (and the site-independent baseline) with `deepseqvae train --max-invariant-changes K` "
                         "(use another --work-dir) [default: off]")
    ap.add_argument("--prior-datasets", default="BLAT_ECOLX,GFP_AEQVI",
                    help="unlabelled datasets pooled into each protein's leave-one-out prior ('' = none) "
                         "[default: %(default)s]")
    ap.add_argument("--prior-seeds", type=_ints, default=[1], help="seeds of the prior datasets [default: 1]")
    ap.add_argument("--work-dir", default=str(REPO / "benchmarks" / "runs" / "classify"),
                    help="checkpoints and full outputs, git-ignored [default: benchmarks/runs/classify]")
    ap.add_argument("--out", default=None, help="the .md to write [default: benchmarks/results/classify-<date>.md]")
    args = ap.parse_args()
    md = result_path(args.out, "classify")
    stem = md.with_suffix("")
    md.parent.mkdir(parents=True, exist_ok=True)
    text = header("Pathogenicity classes against ClinVar (EVE's mixture step)")
    steps = "its step rule" if args.steps is None else f"{args.steps:,} steps"
    if args.train_options:
        steps += f"; changed: `{json.dumps(args.train_options)}`"
    if args.max_invariant_changes is not None:
        steps += f"; alignments read with `--max-invariant-changes {args.max_invariant_changes}`"
    k_text = args.samples or "each model's automatic K"
    text += (f"Training recipe {args.recipe} ({steps}), seeds {', '.join(map(str, args.seeds))}; saturation scan "
             f"with K = {k_text}; classify: the mean ΔELBO of the seeds, a mixture "
             "fitted to the protein alone (no pooled prior), EVE's default thresholds.\n\n")
    names = [d for d in args.datasets.split(",") if d]
    prior_names = [d for d in args.prior_datasets.split(",") if d and d not in names]
    runs = {name: scan_dataset(name, args, args.seeds) for name in names}
    prior_scans = {name: mean_scans(runs[name][0]) for name in names}
    for name in prior_names:
        scans, train_s, scan_s = scan_dataset(name, args, args.prior_seeds)
        prior_scans[name] = mean_scans(scans)
        text += (f"Prior dataset {name} (seeds {', '.join(map(str, args.prior_seeds))}): {len(scans[0].mutants):,} "
                 f"single mutants; training {', '.join(map(fmt_seconds, train_s))}; scan {scan_s:.0f} s.\n\n")
    tables = []
    for name in names:
        section, rows = run_dataset(name, args, stem, *runs[name], prior_scans if len(prior_scans) > 1 else {})
        text += section + "\n"
        tables.append(rows)
    frame = pd.concat(tables, ignore_index=True)
    lead = ["dataset", "retain_pct"]
    frame = frame[lead + [c for c in frame.columns if c not in lead]]
    with atomic_write(stem.with_suffix(".csv"), "w", newline="") as fh:
        frame.to_csv(fh, index=False, float_format="%.4f")
    write_result(text, str(md), "classify")
    print(f"wrote {stem.with_suffix('.csv')} and the figures beside it")


if __name__ == "__main__":
    main()
