"""Reproduce the benchmark table: Spearman per dataset next to the published values, with timings.

    python -m benchmarks.reproduce [--profile default] [--data-dir ../shared/data] [--datasets BLAT_ECOLX,PTEN_HUMAN]
    python -m benchmarks.reproduce --profile full --device cuda

For every dataset of ``benchmarks/datasets.csv`` it reads the alignment, computes the sequence
weights, fits the site-independent model, trains the VAE (one model per seed), scores the DMS
mutants, and compares with the measured fitness: Spearman of each seed, of their ensemble (mean
score) and of the site-independent model, next to the published DeepSequence / EVE / EVmutation /
site-independent values. Each dataset runs in a worker process of its own, so its peak memory is its
own and a failure is reported as failed (with its error) while the others go on.

Results: ``benchmarks/results/<profile>-<date>.md`` and ``.csv`` (rewritten atomically after each
dataset), the command, machine, date and commit included. Checkpoints go to ``--run-dir``
(default ``benchmarks/runs/<profile>``, not committed); with ``--save-steps`` the first seed's
model is also saved at those steps (for ``benchmarks.convergence``).

Profiles (see benchmarks/README.md for the measurements behind them):

* ``default`` - what ``deepseqvae train`` does with no options (the ``fast`` recipe), seeds 1, 2
  and 3 and their ensemble, each model's automatic K (the default of ``score``; ``--samples`` fixes it).
* ``quick`` - CPU, at most ~20 minutes per dataset on 2 cores: the paper's encoder, latent and
  Bayesian (svi) decoder with the sparsity and dictionary, but a 100-500 decoder (instead of
  100-2000; 5x faster steps on BLAT_ECOLX), 6,000 steps, K = 200 samples, one seed.
  ``--max-train-minutes`` stops training at a time budget instead (checked every 250 steps; the steps reached are
  reported); the quick profile does not use it, because PTEN_HUMAN needs its 6,000 steps
  (Spearman 0.26 after 3,000, 0.42 after 6,000; see benchmarks/README.md).
* ``full`` - the paper's recipe (100-2000 decoder, DeepSequence's Adam, 300,000 steps), K = 2,000
  samples, 5 seeds (a GPU job).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks._common import REPO, RESULTS, add_data_dir, header, peak_rss_mb, run_worker, worker_main

HERE = REPO / "benchmarks"

#: with a training time budget, training stops at the first multiple of CHUNK steps past it
CHUNK = 250

PROFILES: dict[str, dict] = {
    # what `deepseqvae train` does by default (the fast recipe), 3 seeds and their ensemble
    "default": {"recipe": "fast", "model": {}, "steps": None, "samples": None, "seeds": [1, 2, 3]},
    # the 2026-11-22 CPU profile (constant-step Adam), kept to compare against
    "quick": {"recipe": None, "model": {"decoder_hidden": [100, 500]}, "steps": 6000, "samples": 200, "seeds": [1]},
    # the paper: DeepSequence's recipe, 5 seeds (a GPU job)
    "full": {"recipe": "paper", "model": {}, "steps": None, "samples": 2000, "seeds": [1, 2, 3, 4, 5]},
}

#: published columns of datasets.csv shown in the table: (column, label)
PUBLISHED = [
    ("pub_deepsequence_single", "DeepSequence published (single)"),
    ("pub_deepsequence_ensemble", "DeepSequence published (ensemble)"),
    ("pub_deepsequence_replicated", "DeepSequence replicated"),
    ("pub_evmutation", "EVmutation published"),
    ("pub_site_independent", "site-independent (PSSM) published"),
    ("pg_deepsequence_single", "ProteinGym DeepSequence (single)"),
    ("pg_deepsequence_ensemble", "ProteinGym DeepSequence (ensemble)"),
    ("pg_eve_ensemble", "ProteinGym EVE (ensemble)"),
    ("pg_evmutation", "ProteinGym EVmutation"),
    ("pg_site_independent", "ProteinGym site-independent"),
]


def read_datasets(path: Path = HERE / "datasets.csv") -> pd.DataFrame:
    """The dataset table, every cell a string ('' when empty)."""
    return pd.read_csv(path, dtype=str, keep_default_na=False).set_index("id", drop=False)


def resolve_path(value: str, data_dir: Path) -> Path:
    """``@repo/...`` is relative to the repository, anything else to the data directory."""
    return REPO / value[len("@repo/"):] if value.startswith("@repo/") else data_dir / value


def dataset_alignment(dataset: str, data_dir: Path):
    """(row of benchmarks/datasets.csv or None, Alignment) for ``dataset``: a dataset id, or an alignment path
    (relative to ``data_dir`` or not) for a family without a DMS (e.g. P53_HUMAN/msa.a2m: held-out estimates only)."""
    from deepseqvae.alignment import AlignmentOptions

    table = read_datasets()
    if dataset in table.index:
        row = table.loc[dataset]
        return row, AlignmentOptions(fmt=row["msa_format"] or "auto").read(resolve_path(row["msa"], data_dir))
    msa = Path(dataset) if Path(dataset).exists() else data_dir / dataset
    if not msa.exists():
        raise FileNotFoundError(f"{dataset}: neither a dataset of benchmarks/datasets.csv nor an alignment file")
    return None, AlignmentOptions().read(msa)


def open_run(ap, args):
    """The start of a one-run training script (recipe_search, holdout_refit, heldout_cap): ``args.threads``
    (if set), the training process's heap setting (as ``deepseqvae train``), then ``dataset_alignment`` of
    ``args.dataset``; an unknown dataset is a usage error of ``ap``. Returns (row or None, Alignment)."""
    import torch

    from deepseqvae.runtime import keep_heap

    if args.threads:
        torch.set_num_threads(args.threads)
    keep_heap()
    try:
        return dataset_alignment(args.dataset, args.data_dir)
    except FileNotFoundError as exc:
        ap.error(str(exc))


def missense_mask(resolved) -> np.ndarray:
    """True for rows that change at least one residue (synonymous rows and the wild type excluded)."""
    return np.array([bool(r.changes) or not r.ok for r in resolved])


def dms_rows(row: dict, data_dir: Path, focus_seq: str, positions) -> tuple[list, np.ndarray, int]:
    """The dataset's scorable DMS rows against a focus (``focus_seq`` at residue numbers ``positions``): the
    resolved mutants kept, their fitness (M,) and the number of rows in the table.

    Rows that cannot be scored, have no fitness or fall outside the dataset's subset are left out
    (for following ρ along a run; the reproduction itself keeps and reports every row).
    """
    from deepseqvae.mutants import resolve_mutants
    from deepseqvae.tables import numeric_column, read_mutant_table

    table = read_mutant_table(resolve_path(row["dms"], data_dir), mutant_col=row["mutant_col"] or None,
                              wt_col=row["wt_col"] or None, pos_col=row["pos_col"] or None,
                              mut_col=row["mut_col"] or None)
    resolved = resolve_mutants(table.mutants, focus_seq, positions, separators=table.separators)
    fitness = numeric_column(table, row["fitness_col"])
    keep = np.array([r.ok for r in resolved]) & np.isfinite(fitness)
    if row["subset"] == "missense":
        keep &= missense_mask(resolved)
    rows = np.flatnonzero(keep)
    return [resolved[i] for i in rows], fitness[rows], len(resolved)


def dms_variants(row: dict, data_dir: Path, aln) -> tuple[np.ndarray, np.ndarray]:
    """The dataset's scorable DMS variants of ``aln`` (:func:`dms_rows`) as codes (M, L) and their fitness (M,)."""
    from deepseqvae.score import apply_changes

    resolved, fitness, _ = dms_rows(row, data_dir, aln.focus_seq, aln.positions)
    return apply_changes(aln.focus_codes, [r.changes for r in resolved]), fitness


# --------------------------------------------------------------------------------------------
# One dataset (runs in a subprocess)
# --------------------------------------------------------------------------------------------


def run_dataset(row: dict, data_dir: Path, settings: dict, device: str, run_dir: Path,
                save_steps: list[int]) -> dict:
    """Weights, site-independent model, VAE per seed, scoring and Spearman for one dataset."""
    import torch
    from scipy.stats import spearmanr

    from deepseqvae.alignment import read_alignment
    from deepseqvae.checkpoint import save_checkpoint
    from deepseqvae.model import VAEConfig
    from deepseqvae.mutants import resolve_mutants, status_summary
    from deepseqvae.pipeline import fit_independent
    from deepseqvae.recipes import recipe_configs
    from deepseqvae.runtime import keep_heap
    from deepseqvae.score import score_table
    from deepseqvae.tables import numeric_column, read_mutant_table
    from deepseqvae.train import TrainConfig, fit_alignment
    from deepseqvae.weights import compute_weights, resolve_device

    dev = resolve_device(device)
    out: dict = {"dataset": row["id"], "device": str(dev)}
    t = time.perf_counter()
    aln = read_alignment(resolve_path(row["msa"], data_dir), fmt=row["msa_format"] or "auto")
    out["t_read_s"] = time.perf_counter() - t
    t = time.perf_counter()
    weights = compute_weights(aln.codes, 0.2, device=dev)
    if settings.get("max_invariant_changes"):  # as `deepseqvae train --max-invariant-changes K`
        from deepseqvae.outliers import drop_outlier_records

        aln, weights = drop_outlier_records(aln, weights, settings["max_invariant_changes"], 0.2, dev)
        out["n_dropped_outliers"] = aln.n_dropped_outliers
    out["t_weights_s"] = time.perf_counter() - t
    neff = float(weights.sum())
    out.update(N=aln.N, L=aln.L, Neff=neff)

    table = read_mutant_table(resolve_path(row["dms"], data_dir), mutant_col=row["mutant_col"] or None,
                              wt_col=row["wt_col"] or None, pos_col=row["pos_col"] or None,
                              mut_col=row["mut_col"] or None)
    resolved = resolve_mutants(table.mutants, aln.focus_seq, aln.positions, separators=table.separators)
    fitness = numeric_column(table, row["fitness_col"])
    summary = status_summary(resolved)
    in_subset = np.ones(len(resolved), dtype=bool)
    if row["subset"] == "missense":
        in_subset = missense_mask(resolved)
        n_syn = int((~in_subset).sum())
        if n_syn:
            summary["synonymous (not missense)"] = n_syn
            summary["ok"] -= n_syn
    out.update(rows=len(resolved), status_summary=summary)

    def rho(score: np.ndarray) -> tuple[float, int]:
        use = np.isfinite(score) & np.isfinite(fitness) & in_subset
        return float(spearmanr(score[use], fitness[use]).statistic), int(use.sum())

    # Site-independent baseline.
    t = time.perf_counter()
    ind = score_table([fit_independent(aln, weights, 0.2)], table, device="cpu")
    out["t_independent_s"] = time.perf_counter() - t
    out["rho_independent"], out["n_scored"] = rho(ind.frame[_score_col(ind.frame)].to_numpy(float))
    out["excluded"] = out["rows"] - out["n_scored"]

    # The VAE, one model per seed.
    model_opts = {k: tuple(v) if isinstance(v, list) else v for k, v in settings["model"].items()}
    recipe = settings.get("recipe")
    if recipe:
        keep_heap()  # as `deepseqvae train` does
        model_cfg, base_cfg = recipe_configs(recipe, aln.L, neff=neff, model_overrides=model_opts,
                                             train_overrides={"steps": settings["steps"], "checkpoint_every": 0})
    else:
        model_cfg, base_cfg = VAEConfig(seq_len=aln.L, **model_opts), TrainConfig(steps=settings["steps"],
                                                                                  checkpoint_every=0)
    run_dir.mkdir(parents=True, exist_ok=True)
    scores, per_seed = [], []
    for i, seed in enumerate(settings["seeds"]):
        path = run_dir / f"{row['id']}_seed{seed}.pt"
        # Training in stages (resuming is bitwise identical to one uninterrupted run, tested):
        # at the --save-steps of the first seed, and every CHUNK steps when a time budget applies.
        # A step-size schedule depends on the total, so a scheduled recipe trains in one go.
        steps, budget = base_cfg.steps, settings.get("max_train_minutes")
        stops = {steps}
        if base_cfg.schedule == "constant":
            stops |= {s for s in save_steps if 0 < s < steps} if i == 0 else set()
            if budget:
                stops |= set(range(CHUNK, steps, CHUNK))
        ckpt, t_train, n_steps, n_run = None, 0.0, 0, 0
        for stop in sorted(stops):
            tc = TrainConfig(**{**base_cfg.__dict__, "steps": stop, "seed": seed})
            res = fit_alignment(aln, weights, model_cfg, tc, theta=0.2, device=dev, resume=ckpt)
            ckpt, t_train, n_steps = res.checkpoint, t_train + res.seconds, res.checkpoint.step  # early stop: fewer
            n_run += res.steps_run  # steps run, a refit's second run included
            if i == 0 and stop in save_steps and stop != steps:
                save_checkpoint(ckpt, run_dir / f"{row['id']}_seed{seed}_step{stop}.pt")
            if budget and t_train >= 60 * budget:
                break
        save_checkpoint(ckpt, path)
        t = time.perf_counter()
        scored = score_table([ckpt], table, n_samples=settings["samples"], seed=0, device=dev)
        t_score = time.perf_counter() - t
        s = scored.frame[_score_col(scored.frame)].to_numpy(float)
        scores.append(s)
        r, _ = rho(s)
        per_seed.append({"seed": seed, "rho": r, "train_s": t_train, "steps": n_steps,
                         "steps_per_s": n_run / t_train, "score_s": t_score, "samples": scored.n_samples,
                         "final_elbo": (ckpt.history.get("elbo") or [math.nan])[-1]})
        print(f"  {row['id']} seed {seed}: rho {r:.4f}, train {t_train:.0f} s ({n_run / t_train:.2f} steps/s), "
              f"score {t_score:.0f} s (K = {scored.n_samples})", file=sys.stderr, flush=True)
    out["seeds"] = per_seed
    out["rho_ensemble"] = rho(np.mean(scores, axis=0))[0] if len(scores) > 1 else None
    out["t_train_s"] = sum(p["train_s"] for p in per_seed)
    out["t_score_s"] = sum(p["score_s"] for p in per_seed)
    out["peak_rss_mb"] = peak_rss_mb()
    out["threads"] = torch.get_num_threads()
    return out


def _score_col(frame: pd.DataFrame) -> str:
    """'score', or 'score_deepseqvae' when the table already had a 'score' column (PTEN)."""
    return "score_deepseqvae" if "score_deepseqvae" in frame.columns else "score"


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def _f(x, fmt: str = ".3f") -> str:
    if x is None or x == "" or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return format(float(x), fmt)


def write_report(results: list[dict], datasets: pd.DataFrame, profile: str, settings: dict, stem: Path,
                 head: str, total_s: float) -> None:
    from deepseqvae.fileio import atomic_write

    flat = []
    for r in results:
        ref = datasets.loc[r["dataset"]]
        row = {"dataset": r["dataset"], "status": r.get("status", "ok")}
        if row["status"] == "ok":
            row.update({k: r[k] for k in ("N", "L", "Neff", "rows", "n_scored", "excluded")})
            row["excluded_reasons"] = "; ".join(f"{k}: {v}" for k, v in r["status_summary"].items() if k != "ok")
            for s in r["seeds"]:
                row[f"rho_seed{s['seed']}"] = s["rho"]
            row["rho_ensemble"] = r["rho_ensemble"]
            row["rho_independent"] = r["rho_independent"]
            row.update({k: r[k] for k in ("t_weights_s", "t_train_s", "t_score_s", "t_independent_s", "peak_rss_mb",
                                          "device")})
            row["steps"] = r["seeds"][0]["steps"]
            row["samples"] = "/".join(str(sd.get("samples")) for sd in r["seeds"])
            row["steps_per_s"] = np.mean([s["steps_per_s"] for s in r["seeds"]])
            row["total_s"] = r["total_s"]
        for col, _ in PUBLISHED:
            row[col] = ref[col]
        flat.append(row)
    frame = pd.DataFrame(flat)
    with atomic_write(stem.with_suffix(".csv"), "w", newline="") as fh:
        frame.to_csv(fh, index=False, float_format="%.4f")

    s = settings
    text = head
    steps = "the recipe's step rule" if s["steps"] is None else f"{s['steps']:,} steps"
    k_text = "each model's automatic" if s["samples"] is None else f"{s['samples']:,}"
    recipe = f"recipe **{s['recipe']}**" if s.get("recipe") else "constant-step Adam (no recipe)"
    text += (f"Profile **{profile}**: {recipe}, model options {json.dumps(s['model'])} (others: the recipe's), "
             f"{steps}" + (f" or {s['max_train_minutes']:g} minutes of training, whichever comes first"
                           if s.get("max_train_minutes") else "") +
             f", K = {k_text} samples, seeds {s['seeds']}" +
             (f"; alignments as `deepseqvae train --max-invariant-changes {s['max_invariant_changes']}` (records "
              "dropped: " + ", ".join(f"{r['dataset']} {r.get('n_dropped_outliers', 0)}" for r in results
                                      if r.get("status", "ok") == "ok") + ")"
              if s.get("max_invariant_changes") else "") + ". "
             f"Total wall time {total_s / 60:.1f} min.\n\n")
    text += "## Spearman ρ\n\n"
    text += ("| dataset | N | L | Neff | scored / rows | deepseqvae (per seed) | ensemble | site-independent (ours) | "
             "published (DeepSequence benchmark) | ProteinGym |\n|---|---|---|---|---|---|---|---|---|---|\n")
    for r, row in zip(results, flat, strict=True):
        ref = datasets.loc[r["dataset"]]
        pub = ", ".join(f"{label.replace(' published', '')} {ref[c]}" for c, label in PUBLISHED[:5] if ref[c])
        pg = ", ".join(f"{label.replace('ProteinGym ', '')} {ref[c]}" for c, label in PUBLISHED[5:] if ref[c])
        if row["status"] != "ok":
            text += f"| {r['dataset']} | FAILED: {row['status']} | | | | | | | {pub or '–'} | {pg or '–'} |\n"
            continue
        seeds = ", ".join(_f(sd["rho"]) for sd in r["seeds"])
        text += (f"| {r['dataset']} | {r['N']:,} | {r['L']} | {r['Neff']:.1f} | {r['n_scored']:,} / {r['rows']:,} | "
                 f"**{seeds}** | {_f(r['rho_ensemble'])} | {_f(r['rho_independent'])} | {pub or '–'} | {pg or '–'} |\n")
    text += "\n## Time and memory\n\n"
    text += ("| dataset | weights | training | steps (saved model) | steps/s (all runs) | scoring (all seeds; K) "
             "| site-independent | total | peak RSS | device |\n|---|---|---|---|---|---|---|---|---|---|\n")
    for row in flat:
        if row["status"] != "ok":
            continue
        text += (f"| {row['dataset']} | {row['t_weights_s']:.2f} s | {row['t_train_s'] / 60:.1f} min | "
                 f"{row['steps']:,} | {row['steps_per_s']:.2f} | {row['t_score_s']:.0f} s; {row['samples']} | "
                 f"{row['t_independent_s']:.1f} s | "
                 f"{row['total_s'] / 60:.1f} min | {row['peak_rss_mb']:.0f} MB | {row['device']} |\n")
    text += "\n## Rows not used for Spearman\n\n"
    for row in flat:
        if row["status"] == "ok":
            reasons = row["excluded_reasons"] or "none"
            text += f"- {row['dataset']}: {row['excluded']} of {row['rows']} rows — {reasons}\n"
    text += "\n## Sources and notes\n\n"
    for _, ref in datasets.iterrows():
        if ref["id"] in {r["dataset"] for r in results}:
            srcs = "; ".join(x for x in (ref["pub_source"], ref["pg_source"]) if x)
            text += f"- {ref['id']}: {ref['note']}. Published values: {srcs or 'none'}.\n"
    with atomic_write(stem.with_suffix(".md"), "w") as fh:
        fh.write(text)


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------


def dataset_worker(job: dict) -> dict:
    """Worker: one dataset; an error is reported as a failed dataset, never left out."""
    try:
        return run_dataset(job["row"], Path(job["data_dir"]), job["settings"], job["device"], Path(job["run_dir"]),
                           job["save_steps"])
    except Exception as exc:  # noqa: BLE001 - reported as a failed dataset
        traceback.print_exc()
        return {"dataset": job["row"]["id"], "status": f"{type(exc).__name__}: {exc}".splitlines()[0]}


def main() -> None:
    if worker_main(dataset_worker):
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", choices=sorted(PROFILES), default="default")
    add_data_dir(ap)
    ap.add_argument("--datasets", default=None, help="comma-separated ids (default: every row of datasets.csv)")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--steps", type=int, default=None, help="override the profile's training steps")
    ap.add_argument("--max-train-minutes", type=float, default=None,
                    help="override the profile's training time budget per model (0 = none)")
    ap.add_argument("--samples", type=int, default=None, help="override the profile's K")
    ap.add_argument("--seeds", default=None, help="override the profile's seeds, e.g. 1,2,3")
    ap.add_argument("--model-options", default=None,
                    help='JSON of VAEConfig fields replacing the profile\'s, e.g. \'{"decoder": "mle"}\'')
    ap.add_argument("--max-invariant-changes", type=int, default=None, metavar="K",
                    help="read the alignments as `deepseqvae train --max-invariant-changes K` does [default: off]")
    ap.add_argument("--save-steps", default="", help="also save the first seed's model at these steps, e.g. 500,1000")
    ap.add_argument("--out", default=None, help="results stem (default benchmarks/results/<profile>-<date>)")
    ap.add_argument("--run-dir", default=None, help="checkpoints (default benchmarks/runs/<profile>)")
    args = ap.parse_args()

    settings = json.loads(json.dumps(PROFILES[args.profile]))
    if args.steps:
        settings["steps"] = args.steps
    if args.samples:
        settings["samples"] = args.samples
    if args.max_train_minutes is not None:
        settings["max_train_minutes"] = args.max_train_minutes or None
    if args.model_options:
        settings["model"] = json.loads(args.model_options)
    if args.seeds:
        settings["seeds"] = [int(s) for s in args.seeds.split(",")]
    if args.max_invariant_changes:
        settings["max_invariant_changes"] = args.max_invariant_changes
    datasets = read_datasets()
    ids = args.datasets.split(",") if args.datasets else list(datasets.index)
    unknown = [i for i in ids if i not in datasets.index]
    if unknown:
        sys.exit(f"error: unknown dataset(s) {', '.join(unknown)}; datasets.csv has {', '.join(datasets.index)}")
    data_dir = args.data_dir
    stem = Path(args.out) if args.out else RESULTS / f"{args.profile}-{datetime.date.today()}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    run_dir = Path(args.run_dir) if args.run_dir else HERE / "runs" / args.profile
    save_steps = [int(s) for s in args.save_steps.split(",") if s.strip()]
    head = header(f"Benchmark reproduction, profile {args.profile}")
    results: list[dict] = []
    t_all = time.perf_counter()
    for ds in ids:
        print(f"[{ds}] ...", file=sys.stderr, flush=True)
        job = {"row": datasets.loc[ds].to_dict(), "data_dir": str(data_dir), "settings": settings,
               "device": args.device, "run_dir": str(run_dir.resolve()), "save_steps": save_steps}
        t = time.perf_counter()
        try:
            res = run_worker("reproduce", job)
        except (subprocess.CalledProcessError, json.JSONDecodeError, IndexError) as exc:
            res = {"dataset": ds, "status": f"worker failed: {exc}".splitlines()[0]}
        res["total_s"] = time.perf_counter() - t
        results.append(res)
        print(f"[{ds}] {res.get('status', 'ok')} in {res['total_s'] / 60:.1f} min", file=sys.stderr, flush=True)
        write_report(results, datasets, args.profile, settings, stem, head, time.perf_counter() - t_all)
    print(f"wrote {stem.with_suffix('.md')} and {stem.with_suffix('.csv')}")


if __name__ == "__main__":
    main()
