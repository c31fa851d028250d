"""Which held-out set the fast recipe stops on, and whether to refit on every sequence, judged on an outer set.

    python -m benchmarks.holdout_refit DATASET --seed 1 [--threads 1] [--samples 50] --data-dir ../shared/data \\
        --out runs/holdout_refit.jsonl

The fast recipe holds out 10 % of the *rows* by clusters and keeps the early-stopped model, trained on
the rest. In a redundant alignment a tenth of the rows can be one dense cluster of a few effective
sequences (EVE's P53_HUMAN: 1,341 rows weighing ~4 of its 443), and in a sparse one it can be a third
of the family's weight (GFP_AEQVI: 4.6 of 13.1), all of it lost to training. The alternatives, on the
same data:

- ``current``: the fast recipe as it is (``holdout_by="cluster"``: a tenth of the rows);
- ``weight``: clusters held out until a tenth of the total sequence weight (``holdout_by="weight"``),
  the model trained on the rest and early-stopped on them;
- ``weight_refit``: ``weight``'s kept step count, then a second run from the same seed on *every*
  sequence, the same learning-rate path, stopped at that step (the textbook refit after early stopping);
- ``weight_refit_anneal`` (with ``--anneal``): the same second run, but its schedule spans only the kept
  steps (warm-up, then the cosine decay to ``final_lr_fraction`` ending at the kept step) instead of
  following the first run's path and stopping in the middle of it;
- ``weight_refit_scaled`` (with ``--scaled``): ``weight_refit``'s run continued to the kept step times the
  total weight over the first run's training weight (about 1/0.9), to the nearest evaluation step within
  the budget: as many passes over the data as the first run made, not as many steps (the same run, so
  one more stop of it).

``--arms weight`` skips the ``current`` arm (the refit arms need only ``weight``'s kept step).

None of them can be judged on its own held-out set, so an *outer* set is taken out first: clusters
worth a tenth of the weight (seed 1000 + ``--seed``), never trained on by any arm. The alignment the
arms see is the rest, its weights recomputed as a user's would be. Each arm's model is measured by the
importance-weighted log-likelihood of the outer sequences (K = ``--outer-samples`` joint draws, weighted
by their weights in the whole alignment; label-free) and, reported only, Spearman ρ on the DMS.
One JSON line per run to ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from benchmarks._common import REPO, add_data_dir, commit
from benchmarks.reproduce import dms_variants, open_run

OUTER_SEED = 1000
OUTER_FRACTION = 0.1


class _Reached(Exception):
    """Raised from the refit run's evaluation callback at the step to stop at."""


def subset(aln, rows: np.ndarray):
    """The alignment restricted to ``rows`` (which hold the focus), focus index moved along."""
    rows = np.sort(np.asarray(rows))
    focus = int(np.flatnonzero(rows == aln.focus_index)[0])
    return dataclasses.replace(aln, codes=aln.codes[rows], ids=tuple(aln.ids[i] for i in rows), focus_index=focus)


def main() -> None:
    import torch

    from deepseqvae.checkpoint import build_model
    from deepseqvae.holdout import cluster_holdout_split
    from deepseqvae.model import VAE
    from deepseqvae.recipes import recipe_configs
    from deepseqvae.score import delta_elbo, spearman
    from deepseqvae.train import fit_alignment, heldout_estimates, make_generator, run_holdout_split
    from deepseqvae.weights import compute_weights

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", help="a dataset of benchmarks/datasets.csv, or an alignment (rho then null)")
    ap.add_argument("--seed", type=int, default=1, help="training seed; the outer split uses 1000 + it")
    add_data_dir(ap)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--samples", type=int, default=50, help="K per mutant for rho (reported only)")
    ap.add_argument("--outer-samples", type=int, default=32, help="K joint draws of the outer log-likelihood")
    ap.add_argument("--arms", default="current,weight",
                    help="first-run arms, comma-separated (weight is needed by the refits; default both)")
    ap.add_argument("--anneal", action="store_true", help="also the refit whose schedule ends at the kept step")
    ap.add_argument("--scaled", action="store_true",
                    help="also the refit stopped at the kept step times total / training weight")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "runs" / "holdout_refit.jsonl"))
    args = ap.parse_args()
    arms = args.arms.split(",")
    if "weight" not in arms or not set(arms) <= {"current", "weight"}:
        ap.error("--arms: current and/or weight, and weight must be one of them")
    row, full = open_run(ap, args)
    full_w = compute_weights(full.codes, 0.2)
    inner_rows, outer_rows = cluster_holdout_split(full.codes, OUTER_FRACTION, OUTER_SEED + args.seed,
                                                   keep=full.focus_index, theta=0.2, weights=full_w)
    aln = subset(full, inner_rows)
    weights = compute_weights(aln.codes, 0.2)
    outer = (torch.tensor(full.codes[outer_rows], dtype=torch.int8), torch.as_tensor(full_w[outer_rows]))
    variants, fitness = dms_variants(row, args.data_dir, aln) if row is not None else (None, None)
    neff = float(weights.sum())

    def measure(model: VAE) -> dict:
        model.eval()
        with torch.no_grad():
            est = heldout_estimates(model, outer[0], outer[1], args.outer_samples, make_generator("cpu", 7))
        rho = None
        if row is not None:
            s = delta_elbo(model, aln.focus_codes, variants, n_samples=args.samples, seed=0)
            rho = round(spearman(s.mean, fitness), 4)
        return {"outer_iwll": round(est["iwll"], 3), "outer_elbo": round(est["elbo"], 3), "rho": rho}

    out = {"dataset": args.dataset, "seed": args.seed, "N": full.N, "Neff": round(float(full_w.sum()), 1),
           "outer_rows": len(outer_rows), "outer_weight": round(float(full_w[outer_rows].sum()), 2),
           "inner_rows": len(inner_rows), "inner_neff": round(neff, 2), "arms": {}}
    for arm, kind in (("current", "cluster"), ("weight", "weight")):
        if arm not in arms:
            continue
        model_cfg, train_cfg = recipe_configs("fast", aln.L, neff=neff, train_overrides={
            "checkpoint_every": 0, "seed": args.seed, "holdout_by": kind, "refit": False})
        t0 = time.perf_counter()
        res = fit_alignment(aln, weights, model_cfg, train_cfg, theta=0.2)
        train_s = time.perf_counter() - t0
        best = res.history["best_step"][0]
        out["arms"][arm] = {"best_step": best, "stopped_at": res.checkpoint.step, "budget": train_cfg.steps,
                            "best_heldout_iwll": round(res.history["best_iwll"][0], 3), "train_s": round(train_s, 1),
                            **measure(build_model(res.checkpoint))}
        print(arm, json.dumps(out["arms"][arm]), flush=True)
    # the refit: the weight arm's recipe and seed on every inner sequence, stopped at its kept step
    best = out["arms"]["weight"]["best_step"]
    _, refit_cfg = recipe_configs("fast", aln.L, neff=neff, train_overrides={
        "checkpoint_every": 0, "seed": args.seed, "holdout_fraction": 0.0, "early_stopping": 0, "refit": False})
    stops = {"weight_refit": best}
    if args.scaled:  # the weight arm's split again (the same seed and rule): its training share of the weight
        _, weight_cfg = recipe_configs("fast", aln.L, neff=neff, train_overrides={"seed": args.seed,
                                                                                  "holdout_by": "weight"})
        train_rows, _ = run_holdout_split(aln.codes, weight_cfg, aln.focus_index, 0.2, weights=weights)
        ratio = float(weights.sum() / weights[train_rows].sum())
        every = weight_cfg.eval_every
        stops["weight_refit_scaled"] = min(int(round(best * ratio / every)) * every, refit_cfg.steps)
        out["weight_ratio"] = round(ratio, 4)
    kept: dict[int, dict] = {}

    def stop_at(step, model):  # the model holds the scoring (averaged) weights here
        if step in stops.values():
            kept[step] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if step >= max(stops.values()):
            raise _Reached

    def refit(cfg, arms: dict[str, int]) -> None:
        kept.clear()
        t0 = time.perf_counter()
        with contextlib.suppress(_Reached):
            fit_alignment(aln, weights, model_cfg, dataclasses.replace(cfg, eval_every=100), theta=0.2,
                          on_eval=stop_at)
        train_s = time.perf_counter() - t0
        for arm, step in arms.items():
            if step not in kept:
                raise RuntimeError(f"the refit never reached step {step}")
            model = VAE(model_cfg)
            model.load_state_dict(kept[step])
            out["arms"][arm] = {"best_step": step, "train_s": round(train_s, 1), **measure(model)}
            print(arm, json.dumps(out["arms"][arm]), flush=True)

    refit(refit_cfg, stops)
    if args.anneal:  # the schedule spans the kept steps alone: it ends, decayed, where the other refit stops
        stops = {"weight_refit_anneal": best}
        refit(dataclasses.replace(refit_cfg, steps=best), stops)
    out.update({"threads": torch.get_num_threads(), "commit": commit()})
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a") as fh:
        fh.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
