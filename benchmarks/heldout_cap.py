"""Held-out estimates on every held-out sequence against a fixed weight-proportional sample of them.

    python -m benchmarks.heldout_cap DATASET [--seed 1] [--cap 1000] [--stop-step N] [--threads 1] [--out F.jsonl]

The ``fast`` recipe evaluates its held-out set (10 % of the weight, by clusters) every 100 steps with
16 draws; the cost grows with the held-out rows while a training step's does not, so on a large
family the evaluations become a real share of the run. ``TrainConfig.eval_rows`` caps them at a
fixed sample drawn in proportion to the weights (:func:`deepseqvae.holdout.heldout_sample`).

One training run of the ``fast`` recipe (seed, split and learning-rate path of a default run; no
early stopping, to ``--stop-step`` or the budget) computes, at every evaluation and with the
scoring weights, both estimates, each from its own generator seeded as a default run's evaluation
is: the full one is exactly what a default run records, the capped one exactly what a run with
``eval_rows = --cap`` would record (the training path does not depend on either). Early stopping
with the recipe's patience is then replayed on each, giving the step each would keep and where it
would stop, and the time of each evaluation is measured in the same run. One JSON line to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from benchmarks._common import add_data_dir, commit, machine
from benchmarks.recipe_search import simulated_stop
from benchmarks.reproduce import open_run


def main() -> None:
    import numpy as np
    import torch

    from deepseqvae.checkpoint import ModelInfo
    from deepseqvae.holdout import heldout_sample
    from deepseqvae.model import VAE
    from deepseqvae.recipes import fast_patience, recipe_configs
    from deepseqvae.train import heldout_estimates, make_generator, run_holdout_split, train
    from deepseqvae.weights import compute_weights

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", help="a dataset of benchmarks/datasets.csv or an alignment path")
    add_data_dir(ap)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cap", type=int, default=1000, help="held-out draws of the capped estimate")
    ap.add_argument("--stop-step", type=int, default=None, help="end the run here (default: the recipe's budget)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default="heldout_cap.jsonl")
    args = ap.parse_args()
    _, aln = open_run(ap, args)
    theta = 0.2
    weights = compute_weights(aln.codes, theta)
    model_cfg, cfg = recipe_configs("fast", aln.L, neff=float(weights.sum()),
                                    train_overrides={"seed": args.seed, "checkpoint_every": 0})
    train_rows, held_rows = run_holdout_split(aln.codes, cfg, aln.focus_index, theta, weights=weights)
    held_w = weights[held_rows]
    rows, counts = heldout_sample(held_w, args.cap, cfg.seed)  # what train() draws with eval_rows = cap
    arms = {
        "full": (torch.tensor(aln.codes[held_rows], dtype=torch.int8),
                 torch.as_tensor(held_w, dtype=torch.float64)),
        "cap": (torch.tensor(aln.codes[held_rows][rows], dtype=torch.int8),
                torch.as_tensor(counts.astype(np.float64), dtype=torch.float64)),
    }
    gens = {arm: make_generator(torch.device("cpu"), cfg.seed + 1) for arm in arms}  # as train()'s eval_gen
    rec: dict[str, list] = {"eval_step": [], **{f"{a}_{k}": [] for a in arms for k in ("iwll", "elbo", "s")}}

    def on_eval(step, model):
        rec["eval_step"].append(step)
        for arm, (codes, w) in arms.items():
            t = time.perf_counter()
            v = heldout_estimates(model, codes, w, cfg.eval_samples, gens[arm])
            rec[f"{arm}_s"].append(round(time.perf_counter() - t, 3))
            rec[f"{arm}_iwll"].append(round(v["iwll"], 3))
            rec[f"{arm}_elbo"].append(round(v["elbo"], 3))

    stop = min(args.stop_step, cfg.steps) if args.stop_step else None
    run_cfg = replace(cfg, early_stopping=0, refit=False, stop_step=stop)
    info = ModelInfo.from_alignment(aln, weights, theta)
    torch.manual_seed(cfg.seed)  # as fit_alignment
    model = VAE(model_cfg)
    t0 = time.perf_counter()
    res = train(model, aln.codes[train_rows], weights[train_rows], run_cfg, info, on_eval=on_eval)
    wall = time.perf_counter() - t0
    eval_s = sum(rec["full_s"]) + sum(rec["cap_s"])
    per_step = (wall - eval_s) / max(res.checkpoint.step, 1)  # training alone, seconds a step
    patience = fast_patience(cfg.steps, cfg.eval_every)
    out = {"dataset": args.dataset, "seed": args.seed, "cap": args.cap, "N": int(aln.N), "L": int(aln.L),
           "held_rows": int(len(held_rows)), "held_weight": round(float(held_w.sum()), 2),
           "cap_rows": int(len(rows)), "budget": cfg.steps, "steps_run": res.checkpoint.step, "patience": patience,
           "train_s_per_step": round(per_step, 4), "wall_s": round(wall, 1)}
    out["arms"] = {}
    for arm in arms:
        kept, stopped = simulated_stop(rec["eval_step"], rec[f"{arm}_iwll"], patience)
        at = rec["eval_step"].index(kept)
        upto = rec["eval_step"].index(stopped) + 1
        out["arms"][arm] = {"kept": kept, "stop": stopped, "full_iwll_at_kept": rec["full_iwll"][at],
                    "eval_s_to_stop": round(sum(rec[f"{arm}_s"][:upto]), 1),
                    "first_run_s": round(per_step * stopped + sum(rec[f"{arm}_s"][:upto]), 1)}
    out["record"] = rec
    out["machine"], out["threads"], out["commit"] = machine(), torch.get_num_threads(), commit()
    print(json.dumps({k: v for k, v in out.items() if k != "record"}), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a") as fh:
        fh.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
