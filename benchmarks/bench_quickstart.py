"""Time the README quick start: the two commands on the demo family, as a new user runs them.

    python -m benchmarks.bench_quickstart [--steps N]

Runs ``deepseqvae train alignments/demo.a2m -o demo.pt`` (the README's command: no options, the
default recipe; ``--steps N`` adds that option) and ``deepseqvae score
demo_mutants.csv --model demo.pt --fitness-col fitness`` (in a temporary folder, so nothing is
written into alignments/) and records each wall time, the printed output and the Spearman
correlation. Writes benchmarks/results/quickstart-<date>.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._common import REPO, header, package_env, write_result


def run(cmd: list[str], cwd: Path) -> tuple[float, str]:
    # The repository's package, whatever deepseqvae is installed: `python -m deepseqvae` with it first on the path.
    env = package_env()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=True, env=env)
    return time.perf_counter() - t0, (proc.stdout + proc.stderr).strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=None, help="--steps of the train command (README: none)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    exe = [sys.executable, "-m", "deepseqvae"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shutil.copy(REPO / "alignments" / "demo_mutants.csv", tmp)
        steps = [] if args.steps is None else ["--steps", str(args.steps)]
        train_cmd = [*exe, "train", str(REPO / "alignments" / "demo.a2m"), "-o", "demo.pt", *steps, "--no-progress"]
        score_cmd = [*exe, "score", "demo_mutants.csv", "--model", "demo.pt", "--fitness-col", "fitness",
                     "--no-progress"]
        t_train, out_train = run(train_cmd, tmp)
        t_score, out_score = run(score_cmd, tmp)
        rho = json.loads((tmp / "demo_mutants_scored.spearman.json").read_text())
    print(out_train, out_score, sep="\n")
    text = header("README quick start on the demo family")
    train_doc = "deepseqvae train alignments/demo.a2m -o demo.pt" + (f" --steps {args.steps}" if steps else "")
    score_doc = "deepseqvae score demo_mutants.csv --model demo.pt --fitness-col fitness"
    text += ("| step | command | wall time |\n|---|---|---|\n"
             f"| train | `{train_doc}` | {t_train:.1f} s |\n"
             f"| score | `{score_doc}` | {t_score:.1f} s |\n"
             f"| both | | **{t_train + t_score:.1f} s** |\n\n"
             f"Spearman ρ = **{rho['rho']:.4f}** against the exact Potts fitness over {rho['n']:,} mutants "
             f"(K = {rho['n_samples']} samples).\n\n"
             f"Output of train:\n\n```text\n{out_train}\n```\n\nOutput of score:\n\n```text\n{out_score}\n```\n")
    write_result(text, args.out, "quickstart")


if __name__ == "__main__":
    main()
