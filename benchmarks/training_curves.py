"""Where a trained VAE stands at the step it is scored with: fit, held-out fit and the decoder posterior.

    python -m benchmarks.training_curves --run-dir /path/to/reproduce/checkpoints --out /tmp/curves.md

Reads the checkpoints (``*.pt``) of a finished run (e.g. ``benchmarks.reproduce --run-dir``), nothing
is trained. Per model: the kept (scored) step and the steps run; the training data ELBO (log p(x|z) −
KL(z), mean of the last 100 steps' batches) next to the held-out ELBO and importance-weighted
log-likelihood at the same step (the generalisation gap); KL(θ)/Neff at the first logged step, the
kept step and the end; and the decoder's posterior log σ of the output weights (median, 1st and 99th
percentile) in the scored weights, beside the largest distance Adam can move a parameter by then
(the sum of the scheduled step sizes: each Adam step moves a parameter by at most about its step
size). A log σ that has moved exactly that far, the same for every weight, has been driven by the
KL term alone: the data has not yet told the posterior which weights matter.

Writes Markdown, a CSV of every logged step and a PNG (training and held-out ELBO against step).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchmarks._common import header, result_path, write_result
from deepseqvae.checkpoint import load_checkpoint
from deepseqvae.optim import delayed_factor
from deepseqvae.train import TrainConfig


def travel(cfg: TrainConfig, upto: int) -> float:
    """Sum of the variance group's scheduled step sizes over steps 1..``upto``: about the farthest
    Adam can have moved one of its parameters (each step moves a parameter by ≲ its step size)."""
    base = cfg.variance_lr if cfg.variance_lr is not None else cfg.learning_rate
    if cfg.schedule != "cosine":
        return base * max(upto - cfg.variance_delay, 0)
    return base * sum(delayed_factor(t, cfg.steps, cfg.variance_delay, cfg.warmup_steps, cfg.final_lr_fraction,
                                     cfg.decay_fraction) for t in range(1, upto + 1))


def _quantiles(t: torch.Tensor, qs=(0.01, 0.5, 0.99)) -> list[float]:
    flat = t.detach().float().flatten()
    if flat.numel() > 2_000_000:  # torch.quantile's input limit; an even subsample is plenty
        flat = flat[:: flat.numel() // 2_000_000 + 1]
    return [float(v) for v in torch.quantile(flat, torch.tensor(qs))]


def summarise(path: Path) -> tuple[dict, pd.DataFrame]:
    """One checkpoint's summary row and its per-step history."""
    ck = load_checkpoint(path)
    cfg = TrainConfig(**ck.train_config)
    h = ck.history
    steps = pd.DataFrame({k: h[k] for k in ("step", "elbo", "log_px_z", "kl_z", "kl_theta")})
    held = pd.DataFrame({"step": h.get("eval_step", []), "heldout_elbo": h.get("heldout_elbo", []),
                         "heldout_iwll": h.get("heldout_iwll", [])})
    curve = steps.merge(held, on="step", how="left")
    curve.insert(0, "model", path.stem)
    kept = int(h["best_step"][-1]) if h.get("best_step") else int(ck.step)
    at = curve.set_index("step")
    log_sigma = ck.state["decoder.log_sigma.W_out"]
    q01, q50, q99 = _quantiles(log_sigma)
    init = float(ck.model_config.get("init_log_sigma", -5.0))
    row = {
        "model": path.stem, "neff": round(float(ck.info.neff), 1), "L": len(ck.info.positions),
        "kept step": kept, "steps run": int(ck.step),
        "train ELBO at kept": round(float(at.loc[kept, "elbo"]), 1),
        "held-out ELBO at kept": round(float(at.loc[kept, "heldout_elbo"]), 1),
        "held-out IWLL at kept": round(float(at.loc[kept, "heldout_iwll"]), 1),
        "train ELBO at end": round(float(curve["elbo"].iloc[-1]), 1),
        "held-out IWLL at end": round(float(curve["heldout_iwll"].iloc[-1]), 1),
        "KL(θ)/Neff first": round(float(curve["kl_theta"].iloc[0])),
        "KL(θ)/Neff at kept": round(float(at.loc[kept, "kl_theta"])),
        "KL(θ)/Neff at end": round(float(curve["kl_theta"].iloc[-1])),
        "W_out log σ: 1 % / median / 99 %": f"{q01:.2f} / {q50:.2f} / {q99:.2f}",
        "init + Adam travel to kept": round(init + travel(cfg, kept), 2),
    }
    return row, curve


def plot(curves: pd.DataFrame, rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(curves["model"]))
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.6), squeeze=False)
    kept = {r["model"]: r["kept step"] for r in rows}
    for ax, name in zip(axes[0], names, strict=True):
        c = curves[curves["model"] == name]
        ax.plot(c["step"], c["elbo"], label="training data ELBO (batches)")
        held = c.dropna(subset=["heldout_elbo"])
        ax.plot(held["step"], held["heldout_elbo"], "o-", ms=3, label="held-out ELBO")
        ax.plot(held["step"], held["heldout_iwll"], "s--", ms=3, label="held-out IWLL")
        ax.axvline(kept[name], color="grey", ls=":", label="kept step")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("step")
        lo = np.nanpercentile(np.r_[c["elbo"].to_numpy(), held["heldout_iwll"].to_numpy()], 2)
        ax.set_ylim(bottom=lo - 20)
    axes[0][0].set_ylabel("nats per sequence")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", type=Path, required=True, help="folder of the checkpoints (*.pt) to read")
    ap.add_argument("--models", default=None,
                    help="comma-separated checkpoint stems to read (default: every *.pt in --run-dir)")
    ap.add_argument("--plot-models", default=None,
                    help="comma-separated stems to draw (default: the first of each family)")
    ap.add_argument("--out", default=None, help="Markdown path [default: benchmarks/results/training-curves-<date>.md]")
    args = ap.parse_args()

    if args.models:
        paths = [args.run_dir / f"{m}.pt" for m in args.models.split(",")]
    else:
        paths = sorted(args.run_dir.glob("*.pt"))
    if not paths:
        ap.error(f"no checkpoints in {args.run_dir}")
    rows, curves = [], []
    for p in paths:
        row, curve = summarise(p)
        rows.append(row)
        curves.append(curve)
    curves = pd.concat(curves, ignore_index=True)
    md = result_path(args.out, "training-curves")
    csv, png = md.with_suffix(".csv"), md.with_suffix(".png")
    curves.to_csv(csv, index=False)
    if args.plot_models:
        shown = args.plot_models.split(",")
    else:
        shown = list({r["model"].split("_seed")[0]: r["model"] for r in reversed(rows)}.values())[::-1]
    plot(curves[curves["model"].isin(shown)], [r for r in rows if r["model"] in shown], png)

    table = pd.DataFrame(rows)
    text = header("Where the fast recipe's models stand at the step they are scored with")
    text += (f"- checkpoints: {args.run_dir} ({len(rows)} models)\n"
             f"- every logged step: `{csv.name}`; figure: `{png.name}` ({', '.join(shown)})\n\n"
             "Nats per sequence. ELBO = log p(x|z) − KL(z) (training: the mean over the last 100 steps' batches, "
             "one decoder draw each; held-out: weighted mean over the held-out clusters, K draws). KL(θ)/Neff is the "
             "decoder posterior's KL per effective sequence. W_out log σ: the output weights' posterior log std in "
             "the scored weights; 'init + Adam travel' = the starting log σ plus the sum of the scheduled step sizes "
             "up to the kept step (about the farthest Adam can have moved it).\n\n")
    text += table.to_markdown(index=False) + "\n"
    write_result(text, str(md), "training-curves")


if __name__ == "__main__":
    main()
