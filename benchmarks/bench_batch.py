"""Run the shared datasets and the demo through ``deepseqvae batch`` and commit the table.

    python -m benchmarks.bench_batch [--seeds 1,2] [--cores 2] [--steps N] [-- other batch options]
    python -m benchmarks.bench_batch --make-reference      # rewrite benchmarks/reference_shared.csv

Runs ``deepseqvae batch benchmarks/reference_shared.csv --msa-dir . --dms-dir .`` from the
repository root (the reference file names ``alignments/...`` and ``../shared/data/...``) into
``benchmarks/runs/batch-<date>/``, times it, and writes ``benchmarks/results/batch-<date>.md`` and
``.csv`` (the run's summary table with the header of ``_common.py``). Without ``--steps`` the
models train with the default of ``deepseqvae train`` (or ``--recipe``).

``--make-reference`` computes ``target_seq`` of every row from its alignment's focus record
(residues numbered by the ``NAME/start-end`` header) and its DMS (the wild-type letter of every
mutant: where the two differ, the DMS, i.e. the assayed sequence, wins: GFP's L64). Residues
before the focus that neither covers (BLAT_ECOLX 1-23) come from ProteinGym's reference
``target_seq`` of the same protein, checked to agree with everything else.
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from benchmarks._common import DEFAULT_DATA_DIR, REPO, header, write_result
from deepseqvae.alignment import focus_region, iter_fasta
from deepseqvae.fileio import atomic_write
from deepseqvae.mutants import parse_mutant
from deepseqvae.tables import read_mutant_table

REFERENCE = REPO / "benchmarks" / "reference_shared.csv"
#: the shared data as the reference file names it: relative to the repository root (../shared/data)
SHARED = Path(os.path.relpath(DEFAULT_DATA_DIR, REPO)).as_posix()

#: DMS_id, MSA, DMS, mutant column (empty: detected), fitness column, ProteinGym row for missing residues
ROWS = [
    ("BLAT_ECOLX_Ranganathan2015", f"{SHARED}/BLAT_ECOLX/msa.a2m", f"{SHARED}/BLAT_ECOLX/dms.csv", "mutant", "2500",
     "BLAT_ECOLX_Stiffler_2015"),
    ("PTEN_HUMAN_Matreyek2018", f"{SHARED}/PTEN_HUMAN/msa.a2m", f"{SHARED}/PTEN_HUMAN/dms.csv", "", "score", ""),
    ("GFP_AEQVI_Sarkisyan2016_singles", f"{SHARED}/GFP_AEQVI/msa.a2m", f"{SHARED}/GFP_AEQVI/dms.csv", "mutant",
     "DMS_score", ""),
    ("DEMO", "alignments/demo.a2m", "alignments/demo_mutants.csv", "mutant", "fitness", ""),
]


def target_row(dms_id: str, msa: str, dms: str, mutant_col: str, score_col: str, pg_id: str) -> dict:
    """One reference row: target_seq from the focus and the DMS (see the module docstring)."""
    focus_id, raw = next(iter_fasta(REPO / msa))
    residues = [c.upper() for c in raw if c.isalpha()]
    start = (focus_region(focus_id) or (1, 0))[0]
    seq = {start + k: aa for k, aa in enumerate(residues)}
    table = read_mutant_table(REPO / dms, mutant_col=mutant_col or None)
    changed = []
    for text in table.mutants:
        for sub in parse_mutant(text, separators=table.separators):
            if sub.wt in "*":
                continue
            if seq.get(sub.pos, sub.wt) != sub.wt and (sub.pos, seq[sub.pos], sub.wt) not in changed:
                changed.append((sub.pos, seq[sub.pos], sub.wt))
            seq[sub.pos] = sub.wt
    if pg_id:  # residues neither the focus nor the DMS covers
        pg = pd.read_csv(REPO / SHARED / "reference" / "DMS_substitutions.csv")
        pg_seq = pg.loc[pg["DMS_id"] == pg_id, "target_seq"].iloc[0]
        for pos, aa in seq.items():
            if pg_seq[pos - 1] != aa:
                raise SystemExit(f"{dms_id}: ProteinGym's {pg_id} target_seq has {pg_seq[pos - 1]}{pos}, "
                                 f"the focus/DMS {aa}{pos}")
        seq = {i + 1: aa for i, aa in enumerate(pg_seq)}
    if sorted(seq) != list(range(1, max(seq) + 1)):
        raise SystemExit(f"{dms_id}: residues {min(seq)}-{max(seq)} leave gaps in target_seq")
    for pos, focus_aa, dms_aa in changed:
        print(f"{dms_id}: focus {focus_aa}{pos}, DMS wild type {dms_aa}{pos}: target_seq takes the DMS's")
    return {"DMS_id": dms_id, "DMS_filename": dms, "target_seq": "".join(seq[i] for i in sorted(seq)),
            "MSA_filename": msa, "MSA_start": start, "MSA_end": start + len(residues) - 1, "MSA_theta": 0.2,
            "weight_file_name": f"{Path(msa).parent.name if 'shared' in msa else 'demo'}_theta_0.2.npy",
            "DMS_mutant_column": mutant_col, "DMS_score_column": score_col}


def make_reference() -> None:
    frame = pd.DataFrame([target_row(*row) for row in ROWS])
    with atomic_write(REFERENCE, "w", newline="") as fh:
        frame.to_csv(fh, index=False)
    print(f"wrote {REFERENCE} ({len(frame)} rows)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--make-reference", action="store_true", help="rewrite benchmarks/reference_shared.csv and stop")
    ap.add_argument("--seeds", default="1,2")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--rows", default=None, help="reference rows to run, e.g. 3 (DEMO only)")
    ap.add_argument("--run-dir", default=None, help="[default: benchmarks/runs/batch-<date>]")
    ap.add_argument("--out", default=None, help="result .md [default: benchmarks/results/batch-<date>.md]")
    args, batch_options = ap.parse_known_args()
    if args.make_reference:
        make_reference()
        return
    today = datetime.date.today()
    run_dir = Path(args.run_dir) if args.run_dir else REPO / "benchmarks" / "runs" / f"batch-{today}"
    cmd = [sys.executable, "-m", "deepseqvae", "batch", str(REFERENCE.relative_to(REPO)), "--msa-dir", ".",
           "--dms-dir", ".",
           "-o", str(run_dir), "--seeds", args.seeds, "--cores", str(args.cores)]
    if args.rows:
        cmd += ["--rows", args.rows]
    cmd += [a for a in batch_options if a != "--"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, check=False)
    wall = time.perf_counter() - t0
    summary = run_dir / ("summary.md" if proc.returncode == 0 else "summary-partial.md")
    table = summary.read_text() if summary.is_file() else "(no summary: every assay failed)\n"
    text = header("deepseqvae batch on the shared datasets and the demo")
    text += (f"Command (from the repository root): `{' '.join(['deepseqvae'] + cmd[3:])}`\n\n"
             f"Exit status {proc.returncode}; wall time {wall / 60:.1f} min for the whole workflow "
             f"(weights, {args.seeds.count(',') + 1} seed(s) of training, scoring, summary).\n\n"
             + table.split("\n", 2)[2])  # the run's own table, without its title line
    md = write_result(text, args.out, "batch")
    csv = run_dir / ("summary.csv" if proc.returncode == 0 else "summary-partial.csv")
    if csv.is_file():
        with atomic_write(md.with_suffix(".csv"), "w") as fh:
            fh.write(csv.read_text())
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
