"""Pair two arms of a recipe screen by (dataset, seed) and apply a pre-registered held-out rule.

    python -m benchmarks.compare_screen CURRENT.jsonl CANDIDATE.jsonl [--min-mean 1] [--max-worse 2] [--worse-by 3]

Each file holds ``benchmarks.recipe_search`` lines. A pair's criterion is the best held-out
importance-weighted log-likelihood reached before the run stopped (``max(heldout_iwll)``, the
recipe's own label-free criterion); Δ = candidate − current. The candidate is adopted when the
mean Δ exceeds ``--min-mean`` nats and at most ``--max-worse`` pairs are worse by more than
``--worse-by`` nats (the rule of ``benchmarks/results/recipes-local-2026-12-02.md``). ρ and the
training seconds are printed beside it, never used. Prints a Markdown table and the decision;
a run found in one file only is listed, never silently dropped.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def load_runs(path: Path) -> dict[tuple[str, int], dict]:
    """``recipe_search`` lines keyed by (dataset, seed); a repeated key is an error (ambiguous pair)."""
    runs: dict[tuple[str, int], dict] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        key = (row["dataset"], int(row["train"].get("seed", 0)))
        if key in runs:
            raise SystemExit(f"{path}:{n}: a second run of {key[0]} seed {key[1]}")
        runs[key] = row
    return runs


def best_iwll(row: dict) -> tuple[float, int]:
    """The best held-out IWLL of a run and the step it was reached at."""
    values, steps = row["heldout_iwll"], row["eval_step"]
    i = max(range(len(values)), key=values.__getitem__)
    return values[i], steps[i]


def _rho(row: dict) -> str:
    """A run's ρ for the table (reported only); a family without a DMS has none."""
    return "—" if row.get("rho") is None else f"{row['rho']:.3f}"


def compare(current: dict, candidate: dict, min_mean: float, max_worse: int, worse_by: float) -> tuple[str, bool]:
    """The Markdown table of the paired runs and whether the rule adopts the candidate."""
    head = ("| family | seed | best IWLL current (step) | best IWLL candidate (step) | Δ (nats) "
            "| steps run cur / cand | train s cur / cand | ρ cur / cand (reported only) |\n"
            "|---|---|---|---|---|---|---|---|\n")
    lines, deltas = [], []
    for key in sorted(set(current) | set(candidate)):
        if key not in current or key not in candidate:
            lines.append(f"| {key[0]} | {key[1]} | {'missing' if key not in current else 'present'} "
                         f"| {'missing' if key not in candidate else 'present'} | unpaired | | | |")
            continue
        a, b = current[key], candidate[key]
        (va, sa), (vb, sb) = best_iwll(a), best_iwll(b)
        deltas.append(vb - va)
        lines.append(f"| {key[0]} | {key[1]} | {va:.2f} ({sa:,}) | {vb:.2f} ({sb:,}) | {vb - va:+.2f} "
                     f"| {a['eval_step'][-1]:,} / {b['eval_step'][-1]:,} | {a['train_s']:.0f} / {b['train_s']:.0f} "
                     f"| {_rho(a)} / {_rho(b)} |")
    if not deltas:
        raise SystemExit("no (dataset, seed) is in both files")
    mean = sum(deltas) / len(deltas)
    worse = sum(d < -worse_by for d in deltas)
    adopted = mean > min_mean and worse <= max_worse
    summary = (f"\n{len(deltas)} pairs: mean Δ {mean:+.2f} nats (needs > {min_mean:+g}); "
               f"{worse} worse by more than {worse_by:g} nats (at most {max_worse} allowed); "
               f"{sum(d > 0 for d in deltas)} better, {sum(d < 0 for d in deltas)} worse → "
               f"**{'adopted' if adopted else 'not adopted'}**\n")
    return head + "\n".join(lines) + "\n" + summary, adopted


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("current", type=Path)
    ap.add_argument("candidate", type=Path)
    ap.add_argument("--min-mean", type=float, default=1.0, help="mean paired Δ needed, nats (default 1)")
    ap.add_argument("--max-worse", type=int, default=2, help="pairs allowed worse by more than --worse-by (2)")
    ap.add_argument("--worse-by", type=float, default=3.0, help="nats that count as worse (default 3)")
    args = ap.parse_args()
    text, _ = compare(load_runs(args.current), load_runs(args.candidate), args.min_mean, args.max_worse,
                      args.worse_by)
    print(text, end="")


if __name__ == "__main__":
    main()
