"""Held-out evaluation in float32 and with bfloat16 output products, side by side in one run.

    python -m benchmarks.eval_precision DATASET [--seed 1] [--threads 1] [--out runs/eval_precision.jsonl]

Runs the ``fast`` recipe's first run (the one whose held-out set chooses the step; no refit) on
DATASET (a row of ``benchmarks/datasets.csv`` or an alignment path) and, at every evaluation,
computes the held-out estimates twice from the same random draws (the evaluation generator's state
is restored between the two): with the decoder's output product in bfloat16
(``heldout_estimates(..., matmul_dtype=torch.bfloat16)``) and in float32. The run goes on with the one
it asks for, so it is the current recipe's run (since 41696be the run's own product precision,
bfloat16 where native; the screen of ``eval-precision-2026-12-03.md`` ran before, on float32 values).
Appends one JSON line with both series, the seconds of each evaluation, and the step each series would
keep and stop at under the recipe's patience (as the training loop: a strictly better value resets
the count). A bfloat16 series still within its patience when the run stopped is marked
``"undetermined"``. Reads nothing but the alignment; ρ is not computed.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from benchmarks._common import REPO, add_data_dir, commit
from benchmarks.recipe_search import simulated_stop
from benchmarks.reproduce import open_run


def patience_stop(steps: list[int], values: list[float], patience: int) -> tuple[int, int | None]:
    """(kept step, stop step) of early stopping with ``patience`` evaluations on ``values`` at ``steps``
    (``benchmarks.recipe_search.simulated_stop``); the stop step is None when the series never runs out of
    patience: with a strictly better value resetting the count, the run stops ``patience`` evaluations after the
    step it keeps."""
    kept, _ = simulated_stop(steps, values, patience)
    after = steps.index(kept) + patience
    return kept, steps[after] if after < len(steps) else None


def main() -> None:
    import torch

    import deepseqvae.train as train_module
    from deepseqvae.recipes import recipe_configs
    from deepseqvae.train import fit_alignment
    from deepseqvae.weights import compute_weights

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset")
    add_data_dir(ap)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "runs" / "eval_precision.jsonl"))
    args = ap.parse_args()
    _, aln = open_run(ap, args)
    weights = compute_weights(aln.codes, 0.2)
    model_cfg, train_cfg = recipe_configs("fast", aln.L, neff=float(weights.sum()),
                                          train_overrides={"checkpoint_every": 0, "refit": False, "seed": args.seed})
    record: dict[str, list[float]] = {"iwll_f32": [], "iwll_bf16": [], "elbo_f32": [], "elbo_bf16": [],
                                      "s_f32": [], "s_bf16": []}
    original = train_module.heldout_estimates

    def both(model, codes, w, n_samples, generator, *a, matmul_dtype=None, **kw):
        state = generator.get_state()
        t0 = time.perf_counter()
        low = original(model, codes, w, n_samples, generator, *a, matmul_dtype=torch.bfloat16, **kw)
        t1 = time.perf_counter()
        generator.set_state(state)  # the same draws again, in float32
        full = original(model, codes, w, n_samples, generator, *a, matmul_dtype=None, **kw)
        t2 = time.perf_counter()
        for key, value in (("iwll_bf16", low["iwll"]), ("iwll_f32", full["iwll"]), ("elbo_bf16", low["elbo"]),
                           ("elbo_f32", full["elbo"]), ("s_bf16", t1 - t0), ("s_f32", t2 - t1)):
            record[key].append(value)
        return low if matmul_dtype == torch.bfloat16 else full  # the value the run asked for

    train_module.heldout_estimates = both
    try:
        t0 = time.perf_counter()
        res = fit_alignment(aln, weights, model_cfg, train_cfg, theta=0.2)
        seconds = time.perf_counter() - t0
    finally:
        train_module.heldout_estimates = original
    steps = res.history["eval_step"]
    patience = train_cfg.early_stopping
    kept32, stop32 = patience_stop(steps, record["iwll_f32"], patience)
    kept16, stop16 = patience_stop(steps, record["iwll_bf16"], patience)
    budget_end = steps[-1] >= train_cfg.steps  # the run went to its last step: both series are complete
    if stop16 is None and not budget_end:
        kept16 = stop16 = "undetermined"  # bfloat16 would have gone on past the run's end
    deltas = [b - a for a, b in zip(record["iwll_f32"], record["iwll_bf16"], strict=True)]
    out = {"dataset": args.dataset, "seed": args.seed, "L": aln.L, "eval_step": steps, "patience": patience,
           "kept_f32": kept32, "stop_f32": stop32, "kept_bf16": kept16, "stop_bf16": stop16,
           "run_best_step": res.history.get("best_step"),
           "max_abs_delta_iwll": max(abs(d) for d in deltas), "mean_delta_iwll": sum(deltas) / len(deltas),
           "eval_s_f32": sum(record["s_f32"]), "eval_s_bf16": sum(record["s_bf16"]),
           "train_s_incl_both_evals": round(seconds, 1), "threads": torch.get_num_threads(), "commit": commit(),
           **{k: [round(x, 4) for x in v] for k, v in record.items()}}
    print(json.dumps(out), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a") as fh:
        fh.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
