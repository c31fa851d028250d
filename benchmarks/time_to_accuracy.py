"""Time to accuracy: Spearman ρ and held-out ELBO against training wall-clock seconds.

    python -m benchmarks.time_to_accuracy [--data-dir ../shared/data] [--datasets BLAT_ECOLX,PTEN_HUMAN]
        [--profiles quick,fast] [--seed 1] [--eval-every 500] [--samples 50] [--reuse EARLIER.csv]

For each dataset and profile a worker trains one model on 90 % of the alignment's sequences (10 %
held out by 80 %-identity clusters, seeded, the same split for both profiles) and, at each held-out
evaluation, records the training seconds so far (the evaluations themselves not counted), the
held-out ELBO and importance-weighted log-likelihood (the label-free criterion the recipe is chosen
by) and Spearman ρ of the DMS scores (K = ``--samples``, reported, never tuned on).

Profiles: ``quick`` is the 2026-11-22 CPU setting (100-500 decoder, torch Adam at a constant
1e-3, 6,000 steps, one shared weight sample per step), evaluated every ``--eval-every`` steps;
``fast`` is today's default recipe (``deepseqvae train`` with no options: its own evaluation
cadence, a tenth of its step budget, and its early stopping; the weights it keeps are those of its
best held-out evaluation, marked in the table; its held-out run: the refit on every sequence is not run).
``--reuse`` takes the other profiles' points from an earlier run's CSV. Writes
``benchmarks/results/time-to-accuracy-<date>.csv``, ``.md`` and ``.png``.
"""

from __future__ import annotations

import argparse
import datetime
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from benchmarks._common import RESULTS, add_data_dir, header, run_worker, worker_main, write_result
from benchmarks.reproduce import dms_variants, read_datasets, resolve_path

PROFILES = ("quick", "fast")


def configs(profile: str, seq_len: int, neff: float, seed: int, eval_every: int):
    """(VAEConfig, TrainConfig) of a profile, with the held-out 10 %."""
    from deepseqvae.model import VAEConfig
    from deepseqvae.recipes import recipe_configs
    from deepseqvae.train import TrainConfig

    if profile == "quick":  # held out exactly as the default recipe holds out, evaluated as it evaluates
        fast = recipe_configs("fast", seq_len, neff=neff)[1]
        return VAEConfig(seq_len=seq_len, decoder_hidden=(100, 500)), TrainConfig(
            steps=6000, seed=seed, eval_every=eval_every, checkpoint_every=0, holdout_fraction=fast.holdout_fraction,
            holdout_by=fast.holdout_by, eval_samples=fast.eval_samples)
    # the held-out run only: the recipe's refit on every sequence (which trains the saved model again, to the
    # step chosen here) has no held-out set to draw, and its evaluations would restart the curve at step 1
    return recipe_configs(profile, seq_len, neff=neff,
                          train_overrides={"seed": seed, "checkpoint_every": 0, "refit": False})


def run_one(job: dict) -> dict:
    """Worker: train one profile on one dataset, scoring along the way; the trajectory as rows."""
    import torch

    from deepseqvae.alignment import AlignmentOptions
    from deepseqvae.runtime import keep_heap
    from deepseqvae.score import delta_elbo, spearman
    from deepseqvae.train import fit_alignment
    from deepseqvae.weights import compute_weights

    row, data_dir = job["row"], Path(job["data_dir"])
    if job.get("threads"):
        torch.set_num_threads(job["threads"])
    if job["profile"] != "quick":
        keep_heap()  # as `deepseqvae train` does
    aln = AlignmentOptions(fmt=row["msa_format"] or "auto").read(resolve_path(row["msa"], data_dir))
    weights = compute_weights(aln.codes, 0.2)
    variants, fitness = dms_variants(row, data_dir, aln)  # (M, L), (M,)
    model_cfg, train_cfg = configs(job["profile"], aln.L, float(weights.sum()), job["seed"], job["eval_every"])
    trajectory, clock = [], {"eval": 0.0, "t0": time.perf_counter()}

    def on_eval(step: int, model) -> None:
        t = time.perf_counter()
        res = delta_elbo(model, aln.focus_codes, variants, n_samples=job["samples"], seed=0)
        trajectory.append({"step": step, "train_s": t - clock["t0"] - clock["eval"],
                           "rho": spearman(res.mean, fitness)})
        clock["eval"] += time.perf_counter() - t

    result = fit_alignment(aln, weights, model_cfg, train_cfg, theta=0.2, on_eval=on_eval)
    hist = result.history
    for key in ("heldout_elbo", "heldout_iwll"):
        held = dict(zip(hist.get("eval_step", []), hist.get(key, []), strict=True))
        for point in trajectory:
            point[key] = held.get(point["step"], float("nan"))
    kept = int(hist["best_step"][-1]) if hist.get("best_step") else result.checkpoint.step
    for point in trajectory:
        point["kept"] = point["step"] == kept  # the weights the run ends with (its best evaluation)
    return {"trajectory": trajectory, "steps": result.checkpoint.step, "budget": train_cfg.steps,
            "threads": torch.get_num_threads()}


def plot(frame: pd.DataFrame, path: Path) -> None:
    """ρ and held-out ELBO against training seconds, one column of panels per dataset."""
    from matplotlib.figure import Figure

    from deepseqvae.plots import save_figure

    datasets = list(dict.fromkeys(frame.dataset))
    fig = Figure(figsize=(5.5 * len(datasets), 7), layout="constrained")
    axes = fig.subplots(2, len(datasets), squeeze=False)
    for j, ds in enumerate(datasets):
        for profile, sub in frame[frame.dataset == ds].groupby("profile", sort=False):
            axes[0, j].plot(sub.train_s / 60, sub.rho, marker="o", ms=3, label=profile)
            line = axes[1, j].plot(sub.train_s / 60, sub.heldout_iwll, marker="o", ms=3, label=profile)[0]
            kept = sub[sub.kept.astype(bool)]
            for ax, col in ((axes[0, j], "rho"), (axes[1, j], "heldout_iwll")):
                ax.plot(kept.train_s / 60, kept[col], marker="*", ms=12, ls="none", color=line.get_color())
        axes[0, j].set_title(ds)
        axes[0, j].set_ylabel("Spearman ρ (DMS)")
        axes[1, j].set_ylabel("held-out log-likelihood (IWLL, nats per sequence)")
        axes[1, j].set_xlabel("training wall time (min; threads per run in the .md)")
        axes[0, j].legend(fontsize=8)
    save_figure(fig, path)


def main() -> None:
    if worker_main(run_one):
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_dir(ap)
    ap.add_argument("--datasets", default="BLAT_ECOLX,PTEN_HUMAN")
    ap.add_argument("--profiles", default=",".join(PROFILES))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--eval-every", type=int, default=500, help="evaluation cadence of the quick profile")
    ap.add_argument("--samples", type=int, default=50, help="K of the scores along the way")
    ap.add_argument("--jobs", type=int, default=1, help="runs side by side (each in its own process)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads per run [default: torch's]")
    ap.add_argument("--reuse", default=None, metavar="CSV",
                    help="an earlier run's CSV: the rows of the profiles not in --profiles come from it")
    ap.add_argument("--out", default=None, help="results stem [default: benchmarks/results/time-to-accuracy-<date>]")
    args = ap.parse_args()
    stem = Path(args.out) if args.out else RESULTS / f"time-to-accuracy-{datetime.date.today()}"
    head = header("Time to accuracy: ρ and held-out ELBO against training seconds")
    datasets = read_datasets()
    jobs = [{"row": datasets.loc[ds].to_dict(), "data_dir": str(args.data_dir), "profile": profile, "dataset": ds,
             "seed": args.seed, "eval_every": args.eval_every, "samples": args.samples, "threads": args.threads}
            for profile in args.profiles.split(",") for ds in args.datasets.split(",")]  # the long profile first
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(lambda job: run_worker("time_to_accuracy", job), jobs))
    rows = []
    for job, res in zip(jobs, results, strict=True):
        ds, profile = job["dataset"], job["profile"]
        rows += [{"dataset": ds, "profile": profile, "threads": res["threads"], **point} for point in res["trajectory"]]
        kept = next(p for p in res["trajectory"] if p["kept"])
        print(f"{ds} {profile}: {res['steps']} of {res['budget']} steps in {res['trajectory'][-1]['train_s']:.0f} s, "
              f"kept step {kept['step']}: rho {kept['rho']:.3f}, held-out IWLL {kept['heldout_iwll']:.2f}", flush=True)
    frame = pd.DataFrame(rows)
    if args.reuse:  # the other profiles' points from an earlier run (named in the header's command)
        earlier = pd.read_csv(args.reuse)
        others = ~earlier.profile.isin(args.profiles.split(","))
        earlier = earlier[others & earlier.dataset.isin(args.datasets.split(","))]
        frame = pd.concat([earlier, frame], ignore_index=True)
    from deepseqvae.fileio import atomic_write

    with atomic_write(stem.with_suffix(".csv"), "w", newline="") as fh:
        frame.to_csv(fh, index=False, float_format="%.4f")
    plot(frame, stem.with_suffix(".png"))
    text = head + (f"One model per dataset and profile (seed {args.seed}) on 90 % of the sequences (10 % held out by "
                   f"80 %-identity clusters, the same split for both; {args.jobs} run(s) side by side, "
                   f"{args.threads or 'torch default'} thread(s) each); at each evaluation the held-out ELBO and "
                   f"importance-weighted log-likelihood (IWLL) of the other 10 % and Spearman ρ (K = {args.samples}). "
                   f"quick: evaluated every {args.eval_every} steps, to its end; fast: the default recipe with its own "
                   f"cadence and early stopping, ending with the weights of its best evaluation (★ in the figure); "
                   f"its held-out run only (the refit on every sequence, which trains the saved model to that step, "
                   f"is not run). "
                   + (f"Rows of profiles other than {args.profiles} from `{args.reuse}`. " if args.reuse else "") +
                   f"Figure: `{stem.with_suffix('.png').name}`; all points: `{stem.with_suffix('.csv').name}`.\n\n")
    text += ("| dataset | profile | steps trained | training s | kept step | ρ kept | best ρ seen | "
             "held-out IWLL kept | held-out ELBO kept |\n|---|---|---|---|---|---|---|---|---|\n")
    for (ds, profile), sub in frame.groupby(["dataset", "profile"], sort=False):
        end, kept = sub.iloc[-1], sub[sub.kept.astype(bool)].iloc[0]
        text += (f"| {ds} | {profile} | {int(end.step)} | {end.train_s:.0f} | {int(kept.step)} | {kept.rho:.3f} | "
                 f"{sub.rho.max():.3f} | {kept.heldout_iwll:.2f} | {kept.heldout_elbo:.2f} |\n")
    write_result(text, str(stem.with_suffix(".md")), "time-to-accuracy")


if __name__ == "__main__":
    main()
