"""Time one deepseqvae command at several commits, alternating them, in one run on one machine.

    python -m benchmarks.bench_commits --commits acd658b,7f13f93 --rounds 5 --cwd DIR -- \\
        score demo_mutants.csv --model demo.pt --fitness-col fitness --no-progress

Each commit is checked out once into a temporary ``git worktree`` (a clean tree: no uncommitted change
is measured); then, for each round, the command runs once per commit in turn as ``python -m deepseqvae ...``
with that worktree first on the path, in ``--cwd`` (where its input files are). Wall times per run, their
mean per commit and each commit's mean relative to the first commit's go to the Markdown result, with the
last line each run printed (so that the outputs can be compared too). The speed comparison the project
asks for: ratios measured in the same run, never against an old file.
Writes benchmarks/results/commits-<date>.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._common import REPO, header, package_env, write_result


def worktree(commit: str, root: Path) -> Path:
    """A detached worktree of ``commit`` under ``root``."""
    path = root / commit
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(path), commit], check=True)
    return path


def run_once(tree: Path, args: list[str], cwd: Path) -> tuple[float, float, str]:
    """(wall seconds, peak resident memory in GB, last non-empty output line) of ``python -m deepseqvae args``
    from ``tree`` in ``cwd``. The peak is the child's own (``os.wait4``'s ``ru_maxrss``), not the largest
    of all children so far."""
    env = package_env(tree)
    with tempfile.TemporaryFile("w+") as out:  # a file, not a pipe: nothing to drain while waiting for the child
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "deepseqvae", *args], cwd=cwd, env=env, stdout=out,
                                stderr=subprocess.STDOUT, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        lines = [ln for ln in out.read().splitlines() if ln.strip()]
    if proc.returncode:
        raise SystemExit(f"{tree.name}: the command failed (exit {proc.returncode}): {lines[-1] if lines else ''}")
    return seconds, usage.ru_maxrss / 2**20, lines[-1] if lines else ""  # ru_maxrss: kB on Linux


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--commits", required=True, help="comma-separated commits; the first is the reference")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--cwd", type=Path, default=Path.cwd(), help="folder the command runs in (its input files)")
    ap.add_argument("--out", default=None)
    ap.add_argument("command", nargs=argparse.REMAINDER, help="the deepseqvae command and its options, after --")
    args = ap.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        ap.error("give the deepseqvae command after --")
    commits = [c.strip() for c in args.commits.split(",") if c.strip()]
    times: dict[str, list[float]] = {c: [] for c in commits}
    peaks: dict[str, list[float]] = {c: [] for c in commits}
    last: dict[str, list[str]] = {c: [] for c in commits}
    with tempfile.TemporaryDirectory() as tmp:
        trees = {c: worktree(c, Path(tmp)) for c in commits}
        try:
            for r in range(args.rounds):
                for c in commits:
                    seconds, peak, line = run_once(trees[c], command, args.cwd)
                    times[c].append(seconds)
                    peaks[c].append(peak)
                    last[c].append(line)
                    print(f"round {r + 1} {c}: {seconds:.2f} s, peak {peak:.2f} GB", flush=True)
        finally:
            for tree in trees.values():
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False)
    ref = statistics.mean(times[commits[0]])
    text = header("One command at several commits, alternating")
    text += (f"- timed: `deepseqvae {' '.join(command)}` in `{args.cwd}`, {args.rounds} rounds, the commits in turn "
             "within each round\n\n| commit | wall times (s) | mean | relative to the first | peak resident memory "
             "(GB, per run) |\n|---|---|---|---|---|\n")
    for c in commits:
        mean = statistics.mean(times[c])
        text += (f"| {c} | {', '.join(f'{t:.2f}' for t in times[c])} | **{mean:.2f} s** | {mean / ref:.3f} | "
                 f"{', '.join(f'{m:.2f}' for m in peaks[c])} |\n")
    text += "\nLast output line of each commit's runs (identical within a commit unless marked):\n\n"
    for c in commits:
        same = len(set(last[c])) == 1
        text += f"- {c}: `{last[c][0]}`" + ("" if same else " (the rounds differ)") + "\n"
    print(text)
    write_result(text, args.out, "commits")


if __name__ == "__main__":
    main()
