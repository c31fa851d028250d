"""Speed of resolving mutant strings against the focus sequence (``deepseqvae.mutants.resolve_mutants``).

    python -m benchmarks.bench_resolve [--rows 200000] [--repeats 3]

Resolves a seeded table of random singles, doubles and triples over a 175-residue focus (GFP's
first residues, numbered from 101) and reports the best of ``--repeats`` runs in rows per second
(the goal, once a test with a fixed 4 s limit: 200,000 rows in well under 4 s on the CI CPU).
Writes benchmarks/results/resolve-<date>.md (``--out`` to change).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks._common import header, write_result
from deepseqvae.alphabet import ALPHABET
from deepseqvae.mutants import resolve_mutants, status_summary

FOCUS = ("MSKGEELFTGVVPILVELDGDVNGHKFSVSGEGEGDATYGKLTLKFICTTGKLPVPWPTLVTTFSYGVQCFSRYPDHMKQHDFFKSAM"
         "PEGYVQERTIFFKDDGNYKTRAEVKFEGDTLVNRIELKGIDFKEDGNILGHKLEYNYNSHNVYIMADKQKNGIKVNFKIRHNIEDGS")
POSITIONS = list(range(101, 101 + len(FOCUS)))


def random_mutants(n_rows: int, seed: int = 0) -> list[str]:
    """``n_rows`` multi-mutants of 1-3 random substitutions each (seeded)."""
    rng = np.random.default_rng(seed)
    singles = [[f"{wt}{p}{aa}" for aa in ALPHABET] for wt, p in zip(FOCUS, POSITIONS, strict=True)]
    cols = rng.integers(0, len(FOCUS), size=(n_rows, 3))
    new = rng.integers(0, 20, size=(n_rows, 3))
    sizes = rng.integers(1, 4, size=n_rows)
    return [":".join(singles[c][m] for c, m in zip(cr[:k], mr[:k], strict=True))
            for cr, mr, k in zip(cols.tolist(), new.tolist(), sizes.tolist(), strict=True)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    texts = random_mutants(args.rows)
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        res = resolve_mutants(texts, FOCUS, POSITIONS)
        times.append(time.perf_counter() - t0)
    summary = status_summary(res)
    assert len(res) == args.rows and set(summary) <= {"ok", "conflicting_substitutions"}, summary
    best = min(times)
    print(f"{args.rows:,} rows: best {best:.2f} s of {[round(t, 2) for t in times]}", flush=True)
    text = header("Resolving mutant strings")
    text += (f"| rows (1-3 substitutions each, L = {len(FOCUS)}) | best of {args.repeats} | all runs | rows/s |\n"
             f"|---|---|---|---|\n| {args.rows:,} | {best:.2f} s | {', '.join(f'{t:.2f}' for t in times)} s "
             f"| {args.rows / best:,.0f} |\n")
    write_result(text, args.out, "resolve")


if __name__ == "__main__":
    main()
