"""Process-wide settings applied once, at the edge (the CLI and the pipeline functions)."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import numbers
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

#: the largest seed: every random generator the process seeds (numpy, torch, scikit-learn's random_state) takes
#: 0..SEED_MAX, so every seed option and argument is bounded by it
SEED_MAX = 2**32 - 1


def whole_number(name: str, value, minimum: int, maximum: int | None = None, *, integral_floats: bool = False) -> int:
    """``value`` as a Python int (NumPy's too; with ``integral_floats`` also a float such as 3000.0) if it is a whole
    number in ``minimum``..``maximum``: what the CLI's integer options bound, for a function or config built from
    Python; else a :class:`~deepseqvae.errors.ConfigError` (a ``ValueError``) naming ``name``."""
    from .errors import ConfigError

    whole = isinstance(value, numbers.Integral) or (integral_floats and isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not (whole and minimum <= value and (maximum is None or value <= maximum)):
        bound = f">= {minimum}" if maximum is None else f"in {minimum}-{maximum}"
        raise ConfigError(f"{name} must be a whole number {bound}, not {value!r}")
    return int(value)

#: held while a model is built from torch's global generator (nn.Module initialisers draw from it): a seeded start
#: (train.initial_model) and a checkpoint's model (checkpoint.build_model) each seed or fork that generator and give
#: it back, so two of them on two threads must not interleave
MODEL_INIT_LOCK = threading.Lock()

#: tables with more rows than this are scored with :func:`bound_heap_growth` applied
LARGE_TABLE_ROWS = 50_000

#: glibc's mallopt parameter number of M_MMAP_THRESHOLD (malloc.h)
_M_MMAP_THRESHOLD = -3


@functools.cache
def bound_heap_growth(threshold_bytes: int = 1 << 20) -> bool:
    """Serve every allocation above ``threshold_bytes`` with its own mmap (glibc only).

    Scoring a large table allocates and frees the same (batch_size, L, 20) temporaries thousands of
    times. glibc's default *dynamic* mmap threshold then moves such blocks onto the heap, where
    they fragment it, and the peak memory of a 500,000-row BLAT_ECOLX run varied from run to run
    (once well over the 2 GB goal). A fixed threshold returns each large block to the system when
    freed (see benchmarks/results/score-cpu-*.md for the peak with it). Every large temporary then
    costs fresh page faults, which made small runs (the demo) visibly slower in ad-hoc checks, so
    ``score_file`` applies it only to tables of more than :data:`LARGE_TABLE_ROWS` rows.
    Returns whether the setting was applied; a no-op elsewhere.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, int(threshold_bytes)))
    except (OSError, AttributeError) as exc:  # not glibc (musl has no mallopt)
        log.debug("mallopt unavailable: %s", exc)
        return False
    log.debug("M_MMAP_THRESHOLD = %d: %s", threshold_bytes, ok)
    return ok


#: glibc's mallopt parameter numbers of M_TRIM_THRESHOLD and M_MMAP_MAX (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


@functools.cache
def keep_heap() -> bool:
    """Serve every allocation from the heap and never hand freed memory back (glibc only).

    A training step allocates and frees the same tensors of tens of MB every step (decoder weight
    samples, their gradients). By default glibc serves each with a fresh mmap and unmaps it when
    freed, so every step pays page faults on ~1 GB of new pages: elementwise passes over the
    output weights then run 2-3x slower than their arithmetic (benchmarks/results/train-cpu-*.md).
    Keeping freed blocks in the heap makes the peak memory of a run its resident size for the
    rest of the process, which is what a training process wants. Returns whether it was applied.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    except (OSError, AttributeError) as exc:  # not glibc
        log.debug("mallopt unavailable: %s", exc)
        return False
    log.debug("heap kept for training: %s", ok)
    return ok


def _flushing_subnormals() -> bool:
    """Whether this thread's CPU flushes subnormal float32 results to zero (a product that underflows to one)."""
    import torch

    return float(torch.tensor(1e-30, dtype=torch.float32) * 1e-10) == 0.0


def flush_subnormals() -> Callable[[], None]:
    """Let this thread's CPU flush subnormal floats to zero (x86 FTZ/DAZ, torch.set_flush_denormal); returns the
    function that restores the previous setting. Threads started meanwhile inherit it (pthread_create copies the
    floating-point environment); threads that already exist (a torch thread pool) keep theirs.

    Training needs it for speed, not for its numbers. Adam's first moment of a weight whose gradient is zero for a
    while (the encoder's first-layer rows of residues that a batch of 100 sequences rarely holds) decays by 0.9 a
    step and spends ~150 steps among the subnormals (|x| < 1.2e-38) before it underflows to zero; a CPU's vector
    units take ~12x longer on those (one fused Adam step over 7.59M such moments on an Intel Xeon: 10.1 ms normal,
    123.1 ms subnormal, 9.7 ms flushed; benchmarks/results/subnormals-2026-12-04.md). Flushed, such a moment is zero
    ~150 steps sooner, and the weight's update from it, below 1e-36, was already lost in the weight's rounding
    (BLAT_ECOLX's default training: the same model bit for bit, 0.731x the time).
    """
    import torch

    if _flushing_subnormals():  # already on
        return lambda: None
    # torch's intra-op pool (OpenMP) starts its workers lazily, each with the floating-point mode of the thread that
    # starts it: started after the setting, they would keep flushing after it is restored (half of every 2-thread
    # operation of the caller). Started now, they keep the caller's mode; only this thread's share flushes.
    if torch.get_num_threads() > 1:
        torch.ones(1 << 18).add_(1.0)  # one parallel operation: the pool's workers exist from here on
    if not torch.set_flush_denormal(True):  # no such mode (non-x86)
        return lambda: None
    return lambda: torch.set_flush_denormal(False)


def available_memory(root: str | os.PathLike = "/") -> int | None:
    """Bytes of memory this process can still use: Linux's MemAvailable, lowered to the room left under the memory
    limit of the process's control group or any group above it (a container, a SLURM job: cgroup v2 or v1), the
    reclaimable page cache counted as free; None where none of it can be read (another system). ``root``: where
    ``/proc`` and ``/sys`` are (a test's fake tree)."""
    root = Path(root)
    found: list[int] = []
    try:
        for line in (root / "proc" / "meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)  # kB
                break
    except (OSError, ValueError, IndexError):
        pass
    try:
        groups = (root / "proc" / "self" / "cgroup").read_text().splitlines()
    except OSError:
        groups = []
    for line in groups:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":  # cgroup v2: one hierarchy
            base, files = root / "sys/fs/cgroup", ("memory.max", "memory.current", "inactive_file")
        elif "memory" in parts[1].split(","):  # cgroup v1: the memory controller's own hierarchy
            base, files = (root / "sys/fs/cgroup/memory",
                           ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file"))
        else:
            continue
        group = base / parts[2].lstrip("/")
        for folder in [group, *group.parents]:  # the group, then each one above it, up to the hierarchy's root
            room = _cgroup_room(folder, *files)
            if room is not None:
                found.append(room)
            if folder == base:
                break
    return min(found) if found else None


def _cgroup_room(folder: Path, limit_file: str, usage_file: str, inactive_key: str) -> int | None:
    """Bytes left under ``folder``'s memory limit (its usage less its reclaimable page cache), or None (no limit,
    or no such group: a container may not see its parents)."""
    try:
        text = (folder / limit_file).read_text().strip()
        if text == "max" or int(text) >= 2**60:  # no limit (v1 writes a huge number)
            return None
        used = int((folder / usage_file).read_text().strip())
        inactive = 0
        for stat in (folder / "memory.stat").read_text().splitlines():
            key, _, value = stat.partition(" ")
            if key == inactive_key:
                inactive = int(value)
        return max(0, int(text) - max(0, used - inactive))
    except (OSError, ValueError):
        return None
