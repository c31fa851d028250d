"""Shared bits of the benchmark scripts: machine description and result-file header."""

from __future__ import annotations

import datetime
import os
import platform
import resource
import subprocess
import sys
from pathlib import Path

import torch

#: where committed results go
RESULTS = Path(__file__).resolve().parent / "results"


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
    text = f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads)"
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
    """Peak resident memory of this process so far, in MB.

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


def write_result(text: str, out: str | None, name: str) -> Path:
    """Write a Markdown result atomically to ``out`` or ``benchmarks/results/<name>-<date>.md``."""
    from deepseqvae.fileio import atomic_write

    path = Path(out) if out else RESULTS / f"{name}-{datetime.date.today()}.md"
    with atomic_write(path, "w") as fh:
        fh.write(text)
    print(f"wrote {path}")
    return path
