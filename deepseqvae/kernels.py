"""Elementwise work over the decoder's weights, made fast on a CPU: noise draws and fused kernels.

A paper-size training step samples ~20M output weights and then makes a handful of elementwise
passes over them (sample, KL, their gradients). On a 2-core CPU these passes, not the matrix
products, dominate the step (benchmarks/results/train-cpu-*.md). Two measures, both transparent
to the model's mathematics:

* :func:`standard_normal` splits a large draw into :data:`NOISE_SPLITS` fixed chunks, each with its
  own generator seeded from the caller's, and fills them on parallel threads. torch's CPU normal
  sampler is sequential (one Mersenne Twister), so this halves the largest cost of a step on two
  cores. The split does not depend on the machine: the same seed gives the same numbers with 1
  thread or 16.
* :func:`run_compiled` runs a pure tensor function through ``torch.compile`` (once per process),
  so that the sampling-plus-KL forward and its backward become one loop over memory each, instead
  of one pass per operator. Where compiling fails (no C++ compiler, an unsupported platform) it
  says so once in the log and the caller's eager code runs instead.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import Tensor

log = logging.getLogger(__name__)

#: draws of at least this many numbers are split into NOISE_SPLITS chunks (smaller ones: one torch.randn)
NOISE_SPLIT_MIN = 1 << 20
#: fixed number of chunks (and seeds) of a split draw; does not depend on the machine
NOISE_SPLITS = 2
#: weight tensors of at least this many elements take the compiled sampling + KL kernels
#: (the output weights of a ~250-column family with the 100-500 decoder; smaller ones gain
#: less than the one-off compile costs)
COMPILE_MIN = 1 << 22

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_compiled: dict[Callable, Callable] = {}
#: torch.compile (dynamo's guards, caches and compiler) is not thread-safe (pytorch/pytorch#118260):
#: a refit training on a second thread (deepseqvae.pace) enters compiled code one call at a time
_call_lock = threading.Lock()
_compile_failure: str | None = None


def _reset_after_fork() -> None:  # a forked child inherits the pool object but not its threads
    global _pool
    _pool = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=NOISE_SPLITS, thread_name_prefix="deepseqvae-noise")
        return _pool


def standard_normal(shape: tuple[int, ...] | torch.Size, *, generator: torch.Generator | None = None,
                    dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> Tensor:
    """Independent N(0, 1) numbers of ``shape``, reproducible from ``generator``.

    Small draws, draws without a generator and draws on an accelerator are one ``torch.randn``.
    A CPU draw of at least :data:`NOISE_SPLIT_MIN` numbers takes :data:`NOISE_SPLITS` seeds from
    ``generator`` and fills one chunk per seed (in parallel when torch may use more than one
    thread): a different stream from a single ``torch.randn``, the same on every machine.
    """
    device = torch.device(device) if device is not None else (
        generator.device if generator is not None else torch.device("cpu"))
    n = math.prod(int(s) for s in shape)
    if generator is None or device.type != "cpu" or n < NOISE_SPLIT_MIN:
        return torch.randn(shape, generator=generator, dtype=dtype, device=device)
    seeds = torch.randint(0, 2**62, (NOISE_SPLITS,), generator=generator, device=device).tolist()
    out = torch.empty(n, dtype=dtype, device=device)
    size = -(-n // NOISE_SPLITS)  # ceil

    def fill(k: int) -> None:
        chunk = out[k * size:(k + 1) * size]
        chunk.normal_(generator=torch.Generator(device=device).manual_seed(seeds[k]))

    if torch.get_num_threads() > 1:
        list(_executor().map(fill, range(NOISE_SPLITS)))  # normal_ releases the GIL
    else:
        for k in range(NOISE_SPLITS):
            fill(k)
    return out.view(tuple(shape))


def run_compiled(fn: Callable[..., object], *args: object) -> object | None:
    """``fn(*args)`` through ``torch.compile`` (compiled once per process, dynamic shapes), or
    ``None`` when compiling is not possible here; the first failure is logged and the compiled
    path is not tried again in this process, so the caller runs its eager code."""
    global _compile_failure
    if _compile_failure is not None:
        return None
    try:
        with _call_lock:
            compiled = _compiled.get(fn)
            if compiled is None:
                compiled = _compiled[fn] = torch.compile(fn, dynamic=True)
            return compiled(*args)
    except Exception as exc:  # noqa: BLE001 - any compiler failure means: use the eager kernels
        _compile_failure = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        log.warning("torch.compile is not available here (%s); training uses the eager kernels",
                    _compile_failure)
        return None


def compile_failure() -> str | None:
    """Why the compiled kernels are not used in this process (None: not tried yet, or working)."""
    return _compile_failure


__all__ = ["COMPILE_MIN", "NOISE_SPLITS", "NOISE_SPLIT_MIN", "compile_failure", "run_compiled", "standard_normal"]
