"""Shared bits of the benchmark scripts: data folder, worker processes, peak memory, result files.

The scripts are modules of the ``benchmarks`` package, run from the repository root as
``python -m benchmarks.<script>``. Each measurement that needs its own peak memory runs in a
worker: :func:`run_worker` starts ``python -m benchmarks.<script> --worker JSON`` and returns the
JSON the worker prints last (:func:`worker_main` is the worker's side).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import torch

#: the repository root
REPO = Path(__file__).resolve().parent.parent
#: where committed results go
RESULTS = REPO / "benchmarks" / "results"
#: the real benchmark data (alignments/download_benchmark_data.sh puts it there)
DEFAULT_DATA_DIR = REPO.parent / "shared" / "data"
#: the command-line flag of a worker process
WORKER_FLAG = "--worker"


def package_env(tree: Path = REPO) -> dict[str, str]:
    """The environment of a ``python -m deepseqvae`` child that runs ``tree``'s package, whatever is installed."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(tree), os.environ.get("PYTHONPATH")])))


def add_data_dir(ap: argparse.ArgumentParser) -> None:
    """The ``--data-dir`` option of every script: an absolute path, default ``../shared/data`` of the repo."""
    ap.add_argument("--data-dir", type=lambda p: Path(p).expanduser().resolve(), default=DEFAULT_DATA_DIR,
                    help=f"folder holding BLAT_ECOLX/, PTEN_HUMAN/, ... [default: {DEFAULT_DATA_DIR}]")


def run_worker(script: str, job: dict, *, timeout: float | None = None) -> dict:
    """Run ``job`` in a fresh ``python -m benchmarks.<script> --worker`` process; its JSON result.

    A fresh process measures its own peak memory (see :func:`peak_rss_mb`). Its stderr (progress,
    errors) goes to this process's stderr; a failed worker raises ``subprocess.CalledProcessError``.
    """
    proc = subprocess.run([sys.executable, "-m", f"benchmarks.{script}", WORKER_FLAG, json.dumps(job)],
                          cwd=REPO, stdout=subprocess.PIPE, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, proc.args, proc.stdout)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def worker_main(work: Callable[[dict], dict], argv: list[str] | None = None) -> bool:
    """In a worker process (``--worker JSON`` arguments): run ``work(job)``, print its JSON, return True."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] != WORKER_FLAG:
        return False
    result = work(json.loads(argv[1]))
    print(json.dumps(result, default=str), flush=True)
    return True


def machine() -> str:
    """CPU model and cores (and the GPU, when there is one)."""
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    from deepseqvae.hardware import cpu_flags

    native = [name for name, has in cpu_flags().items() if has]
    text = (f"{cpu}, {os.cpu_count()} cores ({torch.backends.cpu.get_cpu_capability()}; native "
            f"{', '.join(native) if native else 'int8/bf16 units: none'}), torch {torch.__version__} "
            f"({torch.get_num_threads()} threads)")
    if torch.cuda.is_available():
        text += f", GPU {torch.cuda.get_device_name(0)}"
    return text


def commit() -> str:
    """Short git commit of the working tree, with '+dirty' when it has uncommitted changes."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def header(title: str) -> str:
    """Markdown header: command, machine, date, commit, load."""
    load = os.getloadavg()
    return (f"# {title}\n\n"
            f"- command: `{' '.join([os.path.basename(sys.executable)] + sys.argv)}`\n"
            f"- machine: {machine()}\n"
            f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}\n"
            f"- commit: {commit()}\n"
            f"- load average at start (1/5/15 min): {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}\n\n")


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB: the one peak-memory measure of the benchmarks.

    Reads ``VmHWM`` from /proc/self/status: on Linux ``ru_maxrss`` of a child started by
    ``subprocess`` starts at its parent's peak (it survives fork and exec), so it would overstate
    a small child. Falls back to ``ru_maxrss`` elsewhere.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def result_path(out: str | None, name: str) -> Path:
    """Where a Markdown result goes: ``out``, or ``benchmarks/results/<name>-<date>.md``."""
    return Path(out) if out else RESULTS / f"{name}-{datetime.date.today()}.md"


def write_result(text: str, out: str | None, name: str) -> Path:
    """Write a Markdown result atomically to :func:`result_path` of ``out`` and ``name``."""
    from deepseqvae.fileio import atomic_write

    path = result_path(out, name)
    with atomic_write(path, "w") as fh:
        fh.write(text)
    print(f"wrote {path}")
    return path
