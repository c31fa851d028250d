"""Memory and time of ``deepseqvae simulate`` at the lengths its ``--help`` quotes.

    python -m benchmarks.bench_simulate [--cases 300:1000,1000:200] [--out FILE]

Each case ``L:N`` runs ``deepseqvae simulate --length L --n-seqs N --n-doubles 0`` in a fresh process (into a
temporary folder) and records its wall time and peak resident memory (the child's ``ru_maxrss``). The Potts
couplings are a dense L×L×21×21 float64 array, so the memory grows as L². Writes
benchmarks/results/simulate-<date>.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time

from benchmarks._common import header, package_env, write_result


def run_case(length: int, n_seqs: int) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one simulate process."""
    env = package_env()
    with tempfile.TemporaryDirectory() as tmp:
        # a wrapper process per case, so that ru_maxrss of RUSAGE_CHILDREN is this case's alone
        code = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
                "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
        cmd = [sys.executable, "-m", "deepseqvae", "simulate", "-o", tmp, "--length", str(length), "--n-seqs",
               str(n_seqs), "--n-doubles", "0"]
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", code, *cmd], capture_output=True, text=True, check=True, env=env)
        seconds = time.perf_counter() - t0
    return seconds, int(proc.stdout.strip().splitlines()[-1]) / 1024  # ru_maxrss is in KiB on Linux


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default="300:1000,1000:200", help="L:N pairs, comma-separated")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    rows = []
    for case in args.cases.split(","):
        length, n_seqs = (int(v) for v in case.split(":"))
        seconds, peak = run_case(length, n_seqs)
        print(f"L = {length}, N = {n_seqs}: {seconds:.1f} s, peak {peak:,.0f} MB", flush=True)
        rows.append(f"| {length:,} | {n_seqs:,} | {seconds:.1f} s | {peak:,.0f} MB |")
    text = header("deepseqvae simulate: time and peak memory by length")
    text += ("`deepseqvae simulate --length L --n-seqs N --n-doubles 0`, one fresh process per row (wall time includes "
             "Python's start).\n\n| L | N | wall time | peak RSS |\n|---|---|---|---|\n" + "\n".join(rows) + "\n")
    write_result(text, args.out, "simulate")


if __name__ == "__main__":
    main()
