"""Time to accuracy: Spearman ρ and held-out ELBO against training wall-clock seconds.

    python -m benchmarks.time_to_accuracy [--data-dir ../shared/data] [--datasets BLAT_ECOLX,PTEN_HUMAN]
        [--profiles quick,fast] [--seed 1] [--eval-every 500] [--samples 50]

For each dataset and profile a worker trains one model on 90 % of the alignment's sequences (10 %
held out, seeded) and, every ``--eval-every`` steps, records the training seconds so far (the
evaluations themselves not counted), the held-out ELBO (the label-free criterion the recipe is
chosen by) and Spearman ρ of the DMS scores (K = ``--samples``, reported, never tuned on).

Profiles: ``quick`` is the 2026-11-22 CPU setting (100-500 decoder, torch Adam at a constant
1e-3, 6,000 steps, one shared weight sample per step); ``fast`` is today's default recipe
(``deepseqvae train`` with no options). Writes ``benchmarks/results/time-to-accuracy-<date>.csv``,
``.md`` and ``.png``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
from pathlib import Path

import pandas as pd

from benchmarks._common import RESULTS, add_data_dir, header, run_worker, worker_main, write_result
from benchmarks.reproduce import dms_variants, read_datasets, resolve_path

PROFILES = ("quick", "fast")


def configs(profile: str, seq_len: int, seed: int, eval_every: int):
    """(VAEConfig, TrainConfig) of a profile, with the held-out 10 %."""
    from deepseqvae.model import VAEConfig
    from deepseqvae.train import TrainConfig, recipe_configs

    common = {"seed": seed, "holdout_fraction": 0.1, "eval_every": eval_every, "checkpoint_every": 0}
    if profile == "quick":
        return VAEConfig(seq_len=seq_len, decoder_hidden=(100, 500)), TrainConfig(steps=6000, **common)
    return recipe_configs(profile, seq_len, train_overrides=common)


def run_one(job: dict) -> dict:
    """Worker: train one profile on one dataset, scoring along the way; the trajectory as rows."""
    import torch

    from deepseqvae.alignment import AlignmentOptions
    from deepseqvae.runtime import keep_heap
    from deepseqvae.score import delta_elbo, spearman
    from deepseqvae.train import fit_alignment
    from deepseqvae.weights import compute_weights

    row, data_dir = job["row"], Path(job["data_dir"])
    if job["profile"] != "quick":
        keep_heap()  # as `deepseqvae train` does
    aln = AlignmentOptions(fmt=row["msa_format"] or "auto").read(resolve_path(row["msa"], data_dir))
    weights = compute_weights(aln.codes, 0.2)
    variants, fitness = dms_variants(row, data_dir, aln)  # (M, L), (M,)
    model_cfg, train_cfg = configs(job["profile"], aln.L, job["seed"], job["eval_every"])
    trajectory, clock = [], {"eval": 0.0, "t0": time.perf_counter()}

    def on_eval(step: int, model) -> None:
        t = time.perf_counter()
        res = delta_elbo(model, aln.focus_codes, variants, n_samples=job["samples"], seed=0)
        trajectory.append({"step": step, "train_s": t - clock["t0"] - clock["eval"],
                           "rho": spearman(res.mean, fitness)})
        clock["eval"] += time.perf_counter() - t

    result = fit_alignment(aln, weights, model_cfg, train_cfg, theta=0.2, on_eval=on_eval)
    held = dict(zip(result.history.get("eval_step", []), result.history.get("heldout_elbo", []), strict=True))
    for point in trajectory:
        point["heldout_elbo"] = held.get(point["step"], float("nan"))
    return {"trajectory": trajectory, "steps": train_cfg.steps, "threads": torch.get_num_threads()}


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
            axes[1, j].plot(sub.train_s / 60, sub.heldout_elbo, marker="o", ms=3, label=profile)
        axes[0, j].set_title(ds)
        axes[0, j].set_ylabel("Spearman ρ (DMS)")
        axes[1, j].set_ylabel("held-out ELBO (nats per sequence)")
        axes[1, j].set_xlabel("training wall time (min, 2-core CPU)")
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
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--samples", type=int, default=50, help="K of the scores along the way")
    ap.add_argument("--out", default=None, help="results stem [default: benchmarks/results/time-to-accuracy-<date>]")
    args = ap.parse_args()
    stem = Path(args.out) if args.out else RESULTS / f"time-to-accuracy-{datetime.date.today()}"
    head = header("Time to accuracy: ρ and held-out ELBO against training seconds")
    datasets = read_datasets()
    rows = []
    for ds in args.datasets.split(","):
        for profile in args.profiles.split(","):
            job = {"row": datasets.loc[ds].to_dict(), "data_dir": str(args.data_dir), "profile": profile,
                   "seed": args.seed, "eval_every": args.eval_every, "samples": args.samples}
            res = run_worker("time_to_accuracy", job)
            for point in res["trajectory"]:
                rows.append({"dataset": ds, "profile": profile, **point})
            last = res["trajectory"][-1]
            print(f"{ds} {profile}: {res['steps']} steps in {last['train_s']:.0f} s, rho {last['rho']:.3f}, "
                  f"held-out ELBO {last['heldout_elbo']:.2f}", flush=True)
    frame = pd.DataFrame(rows)
    from deepseqvae.fileio import atomic_write

    with atomic_write(stem.with_suffix(".csv"), "w", newline="") as fh:
        frame.to_csv(fh, index=False, float_format="%.4f")
    plot(frame, stem.with_suffix(".png"))
    text = head + (f"One model per dataset and profile (seed {args.seed}) on 90 % of the sequences; every "
                   f"{args.eval_every} steps the held-out ELBO of the other 10 % and Spearman ρ (K = {args.samples}). "
                   f"Figure: `{stem.with_suffix('.png').name}`; all points: `{stem.with_suffix('.csv').name}`.\n\n")
    text += "| dataset | profile | steps | training s | ρ at the end | best ρ | held-out ELBO at the end |\n"
    text += "|---|---|---|---|---|---|---|\n"
    for (ds, profile), sub in frame.groupby(["dataset", "profile"], sort=False):
        end = sub.iloc[-1]
        text += (f"| {ds} | {profile} | {int(end.step)} | {end.train_s:.0f} | {end.rho:.3f} | {sub.rho.max():.3f} | "
                 f"{end.heldout_elbo:.2f} |\n")
    write_result(text, str(stem.with_suffix(".md")), "time-to-accuracy")
    json.dumps(rows)  # plain data


if __name__ == "__main__":
    main()
