"""Compare training settings by the held-out ELBO (label-free), reporting Spearman ρ beside it.

    python -m benchmarks.recipe_search NAME DATASET 'MODEL_JSON' 'TRAIN_JSON' [--threads 1] [--samples 50]
    python -m benchmarks.recipe_search R2a BLAT_ECOLX '{"decoder_hidden": [100, 500]}' \\
        '{"steps": 3000, "schedule": "cosine", "warmup_steps": 200, "final_lr_fraction": 0.02, "ema_decay": 0.998}'
    python -m benchmarks.recipe_search P1 PTEN_HUMAN '{}' '{"init_bias": "profile"}' --recipe fast

Trains one model with the given ``VAEConfig`` / ``TrainConfig`` fields (with ``--recipe``: changes
to that recipe, its step rule and early stopping included) on 90 % of the dataset's
sequences (``holdout_fraction`` 0.1 unless given; no refit on every sequence unless the JSON sets ``refit``:
the run is judged on its held-out set), records the held-out ELBO every ``eval_every``
steps, then scores the DMS of ``benchmarks/datasets.csv`` (K = ``--samples``; DATASET may instead be an
alignment path, relative to --data-dir or not, for a family without a DMS: ρ is then null) and appends one
JSON line to ``--out`` (default ``benchmarks/runs/recipe_search.jsonl``). Several settings run side
by side with ``--threads 1`` each. How the ``fast`` recipe was chosen with it:
``benchmarks/results/recipes-2026-11-30.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from benchmarks._common import REPO, add_data_dir, commit
from benchmarks.reproduce import dms_variants, open_run


def main() -> None:
    import torch

    from deepseqvae.model import VAEConfig
    from deepseqvae.recipes import recipe_configs
    from deepseqvae.score import delta_elbo, spearman
    from deepseqvae.train import TrainConfig, fit_alignment
    from deepseqvae.weights import compute_weights

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name")
    ap.add_argument("dataset")
    ap.add_argument("model_json")
    ap.add_argument("train_json")
    add_data_dir(ap)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--recipe", default=None, help="the JSON fields change this recipe (fast, paper)")
    ap.add_argument("--samples", type=int, default=50)
    ap.add_argument("--eval-rho-samples", type=int, default=0,
                    help="also report Spearman (K = this) at every held-out evaluation (0 = only at the end)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "runs" / "recipe_search.jsonl"))
    ap.add_argument("--save", default=None, help="also write the trained model's checkpoint here")
    ap.add_argument("--arms-dir", default=None,
                    help="keep the scoring weights of every evaluation and, after the run, write the model each "
                         "stopping rule would have kept (<name>_<rule>.pt: held-out IWLL with theta sampled, at "
                         "the decoder's means, or the last step; the recipe's patience), with its rho; the run "
                         "itself should go to its budget and record both criteria "
                         "('\"early_stopping\": 0, \"stop_on\": \"iwll_mean\"')")
    args = ap.parse_args()
    row, aln = open_run(ap, args)
    weights = compute_weights(aln.codes, 0.2)
    model_kw = {k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(args.model_json).items()}
    if args.recipe:
        model_cfg, train_cfg = recipe_configs(args.recipe, aln.L, neff=float(weights.sum()), model_overrides=model_kw,
                                              train_overrides={"checkpoint_every": 0, "refit": False,
                                                               **json.loads(args.train_json)})
    else:
        train_cfg = TrainConfig(**{"holdout_fraction": 0.1, "checkpoint_every": 0, **json.loads(args.train_json)})
        model_cfg = VAEConfig(seq_len=aln.L, **model_kw)
    variants, fitness = dms_variants(row, args.data_dir, aln) if row is not None else (None, None)
    rho_at: list[float] = []
    states: dict[int, dict] = {}

    def on_eval(step, model):  # reported beside the held-out estimates, never used to choose
        if args.arms_dir:
            states[step] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if args.eval_rho_samples and row is not None:
            s = delta_elbo(model, aln.focus_codes, variants, n_samples=args.eval_rho_samples, seed=0)
            rho_at.append(round(spearman(s.mean, fitness), 4))

    t0 = time.perf_counter()
    res = fit_alignment(aln, weights, model_cfg, train_cfg, theta=0.2, on_eval=on_eval)
    train_s = time.perf_counter() - t0
    from deepseqvae.checkpoint import build_model, save_checkpoint

    if args.save:
        save_checkpoint(res.checkpoint, args.save)

    rho = None
    if row is not None:
        scores = delta_elbo(build_model(res.checkpoint), aln.focus_codes, variants, n_samples=args.samples, seed=0)
        rho = round(spearman(scores.mean, fitness), 4)
    out = {"name": args.name, "dataset": args.dataset, "model": json.loads(args.model_json),
           "train": json.loads(args.train_json), "recipe": args.recipe, "holdout_by": train_cfg.holdout_by,
           "steps": res.checkpoint.step, "budget": train_cfg.steps, "best_step": res.history.get("best_step"),
           "rho": rho,
           "heldout_elbo": [round(x, 2) for x in res.history.get("heldout_elbo", [])],
           "heldout_iwll": [round(x, 2) for x in res.history.get("heldout_iwll", [])],
           "heldout_iwll_mean": [round(x, 2) for x in res.history.get("heldout_iwll_mean", [])],
           "eval_step": res.history.get("eval_step"), "rho_at_eval": rho_at,
           "kl_theta_last": round(res.history["kl_theta"][-1], 2),
           "train_s": round(train_s, 1), "threads": torch.get_num_threads(), "commit": commit()}
    if args.arms_dir:
        out["arms"] = stopping_arms(args, res, states, train_cfg, aln, variants, fitness)
    print(json.dumps(out), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a") as fh:
        fh.write(json.dumps(out) + "\n")


def simulated_stop(steps: list[int], values: list[float], patience: int) -> tuple[int, int]:
    """(kept step, stop step) of early stopping with ``patience`` on the criterion ``values`` at ``steps``."""
    best, best_step, n_worse = -math.inf, steps[-1], 0
    for step, v in zip(steps, values, strict=True):
        if v > best:
            best, best_step, n_worse = v, step, 0
        else:
            n_worse += 1
            if n_worse >= patience:
                return best_step, step
    return best_step, steps[-1]


def stopping_arms(args, res, states, train_cfg, aln, variants, fitness) -> dict:
    """Write the model each stopping rule keeps along this one run, and its rho (reported only)."""
    import dataclasses

    from deepseqvae.checkpoint import build_model, save_checkpoint
    from deepseqvae.recipes import fast_patience
    from deepseqvae.score import delta_elbo, spearman

    h = res.history
    patience = fast_patience(train_cfg.steps, train_cfg.eval_every)
    rules = {"iwll": simulated_stop(h["eval_step"], h["heldout_iwll"], patience),
             "iwll_mean": simulated_stop(h["eval_step"], h["heldout_iwll_mean"], patience),
             "end": (h["eval_step"][-1], h["eval_step"][-1])}
    arms = {}
    Path(args.arms_dir).mkdir(parents=True, exist_ok=True)
    for rule, (kept, stop) in rules.items():
        ck = dataclasses.replace(res.checkpoint, state=states[kept], step=stop, train_state=None,
                                 average_state=None, optimizer=None)
        path = Path(args.arms_dir) / f"{args.name}_{rule}.pt"
        save_checkpoint(ck, path)
        rho = None
        if variants is not None:
            s = delta_elbo(build_model(ck), aln.focus_codes, variants, n_samples=args.samples, seed=0)
            rho = round(spearman(s.mean, fitness), 4)
        i = h["eval_step"].index(kept)
        arms[rule] = {"kept": kept, "stop": stop, "rho": rho, "path": str(path),
                      "iwll": round(h["heldout_iwll"][i], 2), "iwll_mean": round(h["heldout_iwll_mean"][i], 2)}
    return arms


if __name__ == "__main__":
    main()
