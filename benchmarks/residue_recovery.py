"""Held-out residue recovery: how a model ranks substitutions in sequences it was not trained on.

    python -m benchmarks.residue_recovery --msa ../shared/data/PTEN_HUMAN/msa.a2m \\
        --model a.pt --model b.pt --out /tmp/recovery.md [--jsonl /tmp/recovery.jsonl]

A label-free check that uses the scoring procedure itself. For each checkpoint, on its own held-out
split (its seed, fraction and kind): up to ``--sequences`` held-out sequences (a seeded choice), in
each ``--positions`` columns where it has a residue (seeded); every one of the 19 substitutions at
such a column is scored against that sequence by ΔELBO (``score.delta_elbo``: K posterior draws,
common random numbers), as a mutant is scored against a wild type. A homolog's own residue is one
evolution kept, the substitutions mostly ones it did not, so a model that ranks substitutions well
scores most of the 19 below the residue that is there. Recovery = the fraction of the 19 scored
below it (ties count half), averaged over columns and sequences: 0.5 is chance, 1 perfect.

It is neither stopping criterion's own quantity (held-out importance-weighted log-likelihood with
θ sampled, or at the decoder's means), so it can referee between them; it never sees a DMS label.
The same sequences and columns are used for every checkpoint with the same split.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from benchmarks._common import header, result_path, write_result
from deepseqvae.alphabet import N_AA
from deepseqvae.checkpoint import build_model, load_checkpoint
from deepseqvae.score import apply_changes, delta_elbo
from deepseqvae.train import TrainConfig, run_holdout_split
from deepseqvae.weights import compute_weights


def substitution_block(seq: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Every single substitution of int8 ``seq`` (L,) at ``columns`` (P,): (P·19, L), column-major
    in the order of ``columns``, then residue code, skipping the residue already there."""
    return apply_changes(seq, [((int(c), a),) for c in columns for a in range(N_AA) if a != seq[c]])


def recovery(model, codes: np.ndarray, n_positions: int, n_samples: int, rng: np.random.Generator
             ) -> tuple[float, int]:
    """(mean recovery, columns scored) of ``model`` over the sequences ``codes`` (M, L)."""
    values = []
    for seq in codes:
        present = np.flatnonzero(seq < N_AA)  # columns with a residue (not a gap)
        if present.size == 0:
            continue
        cols = np.sort(rng.choice(present, size=min(n_positions, present.size), replace=False))
        delta = delta_elbo(model, seq, substitution_block(seq, cols), n_samples=n_samples, seed=0).mean
        delta = delta.reshape(len(cols), N_AA - 1)  # (P, 19): substitution − natural residue
        values.extend(((delta < 0).mean(1) + 0.5 * (delta == 0).mean(1)).tolist())
    return float(np.mean(values)), len(values)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--msa", required=True, help="the alignment the models were trained on")
    ap.add_argument("--model", action="append", required=True, help="a checkpoint (repeatable)")
    ap.add_argument("--sequences", type=int, default=64, help="held-out sequences per model (at most)")
    ap.add_argument("--positions", type=int, default=8, help="columns per sequence")
    ap.add_argument("--samples", type=int, default=16, help="posterior draws K of each ΔELBO")
    ap.add_argument("--seed", type=int, default=0, help="seed of the choice of sequences and columns")
    ap.add_argument("--out", default=None, help="Markdown path [default: benchmarks/results/recovery-<date>.md]")
    ap.add_argument("--jsonl", default=None, help="also append one JSON line per model here")
    args = ap.parse_args()

    text = header("Held-out residue recovery")
    text += (f"Up to {args.sequences} held-out sequences per model, {args.positions} columns each, the 19 "
             f"substitutions of each scored by ΔELBO with K = {args.samples}; recovery = share scored below the "
             "natural residue (0.5 chance).\n\n| model | held out | sequences used | columns | recovery | seconds |\n"
             "|---|---|---|---|---|---|\n")
    cache: dict = {}
    for path in args.model:
        ck = load_checkpoint(path)
        cfg = TrainConfig(**ck.train_config)
        if cfg.refit or not cfg.holdout_fraction > 0:
            raise SystemExit(f"error: {path}: trained on every sequence (refit or no hold-out): nothing is held out")
        opts = ck.info.alignment_options  # read as the model was trained
        if repr(opts) not in cache:
            read = opts.read(args.msa)
            cache[repr(opts)] = (read, compute_weights(read.codes, ck.info.theta))
        aln, weights = cache[repr(opts)]
        held = run_holdout_split(aln.codes, cfg, aln.focus_index, ck.info.theta, weights=weights)[1]
        rng = np.random.default_rng(args.seed)
        rows = np.sort(rng.choice(held, size=min(args.sequences, held.size), replace=False))
        t0 = time.perf_counter()
        value, n_cols = recovery(build_model(ck), aln.codes[rows], args.positions, args.samples, rng)
        seconds = time.perf_counter() - t0
        text += f"| `{path}` | {held.size} | {rows.size} | {n_cols} | {value:.4f} | {seconds:.0f} |\n"
        print(path, f"{value:.4f}", flush=True)
        if args.jsonl:
            with open(args.jsonl, "a") as fh:
                fh.write(json.dumps({"model": str(path), "msa": args.msa, "held_out": int(held.size),
                                     "sequences": int(rows.size), "columns": n_cols, "samples": args.samples,
                                     "recovery": round(value, 5), "seconds": round(seconds, 1)}) + "\n")
    write_result(text, str(result_path(args.out, "recovery")), "recovery")


if __name__ == "__main__":
    main()
