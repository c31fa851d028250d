"""Sequence reweighting (DeepSequence / EVE) with blocked one-hot matrix products in torch.

Definition (identical in DeepSequence and EVE)::

    matches(i, j) = #positions where i and j carry the same residue (gaps never match)
    ident(i, j)   = matches(i, j) / nongap(i)          # asymmetric: normalised by the query i
    n_i           = #{j : ident(i, j) > 1 - theta}      # strict '>', j = i included
    w_i           = 1 / n_i       (0 for an all-gap sequence, as in EVE)
    Neff          = sum_i w_i

``matches`` is a product of one-hot rows. It is computed block by block: a one-hot block
``(B, K)`` is built on the fly from the int8 codes (never the whole ``N x 20L`` one-hot unless it
fits in half the memory budget, never an ``N x N`` matrix) and only the block pairs ``I <= J``
are multiplied, each product updating the neighbour counts of both blocks' rows (``matches`` is
symmetric). ``K <= 20 L`` keeps only the (position, residue) pairs that occur somewhere in the
alignment; the others add nothing to any product.

Two exact product kernels:

* ``"float32"``: float32 one-hot blocks and an ordinary matmul (CPU or CUDA). Match counts are
  integers below 2**24, so float32 products are exact.
* ``"int8"``: int8 one-hot blocks and ``torch._int_mm`` (int8 x int8 -> int32). On CPUs with
  VNNI it runs about 3x faster than float32; without native int8 units it is emulated and ~50x
  slower (benchmarks/results/hardware-2026-12-02.md). It is used on the CPU by default ("auto") where the CPU has them
  (:func:`deepseqvae.hardware.native_int8_matmul`) and a self-check at first use shows that it
  exists and is exact; otherwise float32 is used.

The threshold decision is bit-identical to EVE's float64 ``matches / nongap > 1 - theta``: for
every possible ``nongap = n`` the smallest integer ``m`` with ``float64(m / n) > 1 - theta`` is
precomputed (float64 division is monotone in ``m``), and the exact product is compared with it.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from .alphabet import GAP_CODE, N_AA
from .errors import DeepSeqVAEError
from .fileio import atomic_write, plain_name
from .hardware import native_int8_matmul

logger = logging.getLogger(__name__)

#: Largest block on a CPU. (1000..3000, K) x (K, ...) products already run near the CPU's peak;
#: smaller blocks waste less work on the diagonal blocks (computed in full), larger ones
#: synchronise the threads less often.
CPU_MAX_BLOCK = 3072

Kernel = Literal["auto", "int8", "float32"]


class WeightsError(DeepSeqVAEError, ValueError):
    """Invalid input to the weight computation (theta, codes, device)."""


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; an unavailable CUDA device is an error."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise WeightsError(f"unknown device {device!r}: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise WeightsError(f"device {device!r} requested but CUDA is not available (use --device cpu)")
    return dev


def check_weights(weights, ids, source: str, alignment: str = "the alignment") -> np.ndarray:
    """``weights`` as float64 after checking it has one real, finite, non-negative weight per sequence of ``ids``
    and a positive sum (Neff); ``source`` (the weights' file, or what gave them) starts every error, ``alignment``
    names the sequences' file."""
    weights = np.asarray(weights)
    if weights.ndim != 1 or weights.shape[0] != len(ids):
        raise WeightsError(f"{source}: holds {weights.shape} weights but {alignment} has {len(ids)} sequences "
                           "after filtering (same filters and alignment, and deepseqvae version: since 2026-12-05 a "
                           "repeat of the focus record is left out)")
    if not np.issubdtype(weights.dtype, np.number) or np.issubdtype(weights.dtype, np.complexfloating):
        raise WeightsError(f"{source}: weights of type {weights.dtype}, not real numbers")
    weights = weights.astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(weights) | (weights < 0))
    if bad.size:  # a negative or infinite weight breaks Neff and the batch sampling
        i = int(bad[0])
        raise WeightsError(f"{source}: {bad.size} weight(s) negative, NaN or infinite, the first of "
                           f"sequence {i + 1} ({ids[i]!r}): {weights[i]}")
    if not weights.sum() > 0:
        raise WeightsError(f"{source}: every weight is 0; Neff must be positive")
    return weights


def check_theta(theta: float) -> float:
    """Return ``theta`` as a float after checking ``0 < theta < 1``."""
    try:
        value = float(theta)
    except (TypeError, ValueError):
        raise WeightsError(f"theta must be a number strictly between 0 and 1, got {theta!r}") from None
    if isinstance(theta, bool) or not 0.0 < value < 1.0:  # also rejects NaN
        raise WeightsError(
            f"theta must be strictly between 0 and 1 (identity threshold 1 - theta), got {theta!r}; "
            "DeepSequence/EVE use 0.2 for most families and 0.01 for viruses")
    if 1.0 - value == 1.0:  # identity > 1 - theta would hold for no pair, not even a sequence and itself: Neff 0
        raise WeightsError(f"theta {theta!r} is below float precision (1 - theta rounds to 1); any theta below 1/L "
                           "already counts identical sequences only")
    return value


def min_matches_table(length: int, theta: float) -> np.ndarray:
    """``t[n]`` = smallest integer ``m`` with ``float64(m / n) > 1 - theta``, for ``n = 0..length``.

    ``t[0]`` is ``inf`` (an all-gap sequence has no neighbour, not even itself). Comparing an
    exact match count with ``t[nongap_i]`` reproduces EVE's float64 decision bit for bit.
    Returns ``(length + 1,)`` float64.
    """
    cut = 1.0 - check_theta(theta)
    table = np.full(length + 1, np.inf)
    for n in range(1, length + 1):
        m = max(0, math.floor(cut * n) - 2)
        while not (m / n > cut):  # at most a few steps; m = n always passes since cut < 1
            m += 1
        table[n] = m
    return table


def _as_codes(codes: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Validate ``(N, L)`` integer codes in ``0..GAP_CODE``; returns a uint8 tensor (same device)."""
    is_tensor = isinstance(codes, torch.Tensor)
    shape = tuple(codes.shape) if is_tensor else np.shape(codes)
    if len(shape) != 2:
        raise WeightsError(f"codes must be a 2-D (N, L) array, got shape {shape}")
    if is_tensor:
        ok_dtype = not (codes.dtype.is_floating_point or codes.dtype.is_complex or codes.dtype == torch.bool)
    else:
        codes = np.asarray(codes)
        ok_dtype = codes.dtype.kind in "iu"
    if not ok_dtype:
        raise WeightsError(f"codes must be integer alphabet codes, got dtype {codes.dtype}")
    if codes.size if not is_tensor else codes.numel():
        lo, hi = int(codes.min()), int(codes.max())
        if lo < 0 or hi > GAP_CODE:
            raise WeightsError(f"codes must lie in 0..{GAP_CODE} (gap = {GAP_CODE}), got values in {lo}..{hi}")
    if is_tensor:
        return codes.to(torch.uint8)
    return torch.from_numpy(codes.astype(np.uint8))  # a writable copy


def block_size(n: int, length: int, width: int, memory_budget_bytes: int, *, cpu: bool = True,
               kernel: str = "float32") -> int:
    """Rows per block so that one block pair's working set fits ``memory_budget_bytes``.

    Working set of a pair: the one-hot blocks (float32: two ``(B, K)`` blocks, ``8 B K`` bytes;
    int8: a block, another one and its transpose, ``3 B K``), their build temporaries (int64
    index + values, ``12 B L``), the product ``4 B^2`` and one float32 comparison result
    ``4 B^2``. Blocks are then evened out; on a CPU they are capped at :data:`CPU_MAX_BLOCK`.
    """
    a, b = 8.0, (3.0 if kernel == "int8" else 8.0) * width + 12.0 * length
    best = int((-b + math.sqrt(b * b + 4 * a * max(memory_budget_bytes, 0))) / (2 * a))
    best = max(1, min(n, best, CPU_MAX_BLOCK if cpu else n))
    n_blocks = math.ceil(n / best)
    return math.ceil(n / n_blocks)


def int8_products(a: torch.Tensor, bt: torch.Tensor) -> torch.Tensor:
    """``(B, C)`` int32 ``a @ bt`` of int8 blocks ``a`` ``(B, K)`` and ``bt`` ``(K, C)`` (contiguous), exactly.

    ``torch._int_mm``, whose CPU kernel (torch 2.13) returns uninitialised sums when K < 2 (an alignment with one
    modelled column of one residue): such blocks get zero columns first, which add nothing to any product.
    """
    k = a.shape[1]
    if k < 2:
        a = torch.nn.functional.pad(a, (0, 2 - k))  # (B, 2)
        bt = torch.nn.functional.pad(bt, (0, 0, 0, 2 - k)).contiguous()  # (2, C)
    return torch._int_mm(a, bt)


@functools.cache
def int8_matmul_available(device_type: str = "cpu") -> bool:
    """Whether ``torch._int_mm`` exists on ``device_type`` and gives exact one-hot products.

    Checked once per device type, through :func:`int8_products`, with small random 0/1 problems (odd shapes and
    one and no inner column included).
    """
    if device_type != "cpu" or not hasattr(torch, "_int_mm"):
        return False
    gen = torch.Generator().manual_seed(0)
    try:
        for m, k, n in ((1, 3, 1), (37, 211, 29), (64, 512, 48), (3, 1, 3), (5, 0, 4)):
            a = (torch.rand(m, k, generator=gen) < 0.3).to(torch.int8)
            b = (torch.rand(n, k, generator=gen) < 0.3).to(torch.int8)
            got = int8_products(a, b.T.contiguous())
            if got.dtype != torch.int32 or not torch.equal(got.double(), a.double() @ b.double().T):
                return False
    except (RuntimeError, NotImplementedError, TypeError) as exc:
        logger.debug("torch._int_mm unavailable on %s: %s", device_type, exc)
        return False
    return True


def resolve_kernel(kernel: str, device: torch.device) -> str:
    """``"auto"`` -> "int8" on a CPU with native int8 products (:func:`deepseqvae.hardware.native_int8_matmul`)
    where :func:`int8_matmul_available`, else "float32"."""
    if kernel == "auto":
        fast = native_int8_matmul(device.type) and int8_matmul_available(device.type)
        return "int8" if fast else "float32"
    if kernel == "float32":
        return kernel
    if kernel == "int8":
        if not int8_matmul_available(device.type):
            raise WeightsError(f"the int8 kernel (torch._int_mm) is not available on {device}; use 'float32'")
        return kernel
    raise WeightsError(f"unknown kernel {kernel!r} (use 'auto', 'int8' or 'float32')")


def compute_weights(codes: np.ndarray | torch.Tensor, theta: float = 0.2, *,
                    device: str | torch.device = "cpu", memory_budget_bytes: int = 512 * 2**20,
                    progress: bool = False, kernel: Kernel = "auto") -> np.ndarray:
    """DeepSequence / EVE sequence weights ``1 / #neighbours`` (see the module docstring).

    Args:
        codes: ``(N, L)`` integer codes, 0..19 residues and ``GAP_CODE`` (20) gaps, e.g.
            ``Alignment.codes``. A tensor may already live on ``device``.
        theta: neighbours have identity ``> 1 - theta``; must satisfy ``0 < theta < 1``.
        device: "cpu", "cuda", "cuda:1", a ``torch.device`` or "auto".
        memory_budget_bytes: bound on the working memory: one block pair's working set (sets
            the block size) plus, when the whole compact one-hot fits in half the budget, the
            cached one-hot blocks. The ``N x L`` uint8 codes and ``N`` counts come on top.
        progress: show a tqdm progress bar over block pairs on stderr.
        kernel: "auto" (int8 on a CPU that supports it, else float32), "int8" or "float32".
            All kernels give identical weights.

    Returns:
        ``(N,)`` float64 weights in row order; ``weights.sum()`` is Neff.

    Raises:
        WeightsError (a DeepSeqVAEError and ValueError): bad theta, codes, device or kernel.
    """
    theta = check_theta(theta)
    dev = resolve_device(device)
    kernel = resolve_kernel(kernel, dev)
    budget = int(memory_budget_bytes)
    if budget <= 0:
        raise WeightsError(f"memory_budget_bytes must be positive, got {memory_budget_bytes!r}")
    codes_t = _as_codes(codes).to(dev)  # (N, L) uint8
    n, length = codes_t.shape

    with torch.no_grad():
        col_of, width = column_map(codes_t, budget)  # (L*21,) int64, K
        if width == 0:  # no residue anywhere (or N == 0): every weight is 0
            return np.zeros(n, dtype=np.float64)
        nongap = (codes_t != GAP_CODE).sum(dim=1)  # (N,) int64
        table = min_matches_table(length, theta)  # (L+1,) float64
        table[0] = length + 1  # an all-gap row: no count can reach it (matches <= L)
        int8 = kernel == "int8"
        m_dtype = torch.int32 if int8 else torch.float32  # dtype of the products
        min_m = torch.as_tensor(table, device=dev).to(m_dtype)[nongap]  # (N,) exact integers

        # When the whole compact one-hot fits in half the budget, each block is built once and
        # kept; otherwise the inner blocks are rebuilt for every outer block (cheap next to the
        # product: B x L scatter vs B x B x K multiply-adds).
        onehot_bytes = n * width * (2 if int8 else 4)  # int8 keeps a block and its transpose
        cache_all = onehot_bytes <= budget // 2
        pair_budget = budget - onehot_bytes if cache_all else budget
        bs = block_size(n, length, width, pair_budget, cpu=dev.type == "cpu", kernel=kernel)
        starts = list(range(0, n, bs))
        cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        counts = torch.zeros(n, dtype=torch.float64, device=dev)  # (N,) exact integers
        ones = torch.ones(bs, dtype=torch.float32, device=dev)  # (B,)
        hit_buf = torch.empty(bs * bs, dtype=torch.float32, device=dev)  # comparison results

        def block(lo: int) -> tuple[torch.Tensor, torch.Tensor]:
            """One-hot rows lo..lo+B as (left operand (B, K), right operand (K, B))."""
            if lo in cache:
                return cache[lo]
            x = compact_one_hot(codes_t[lo:min(lo + bs, n)], col_of, width, torch.int8 if int8 else torch.float32)
            # _int_mm is fastest with a contiguous (K, B) right operand; BLAS takes x.T as is.
            pair = (x, x.T.contiguous() if int8 else x.T)
            if cache_all:
                cache[lo] = pair
            return pair

        n_pairs = len(starts) * (len(starts) + 1) // 2
        logger.debug("weights: N=%d L=%d K=%d kernel=%s block=%d pairs=%d cached=%s device=%s", n,
                     length, width, kernel, bs, n_pairs, cache_all, dev)
        bar = progress_bar(n_pairs, progress)
        try:
            for bi, lo_i in enumerate(starts):
                hi_i = min(lo_i + bs, n)
                x_i, _ = block(lo_i)  # (Bi, K)
                t_i = min_m[lo_i:hi_i].unsqueeze(1)  # (Bi, 1)
                for lo_j in starts[bi:]:
                    hi_j = min(lo_j + bs, n)
                    _, xt_j = block(lo_j)  # (K, Bj)
                    m = int8_products(x_i, xt_j) if int8 else x_i @ xt_j  # (Bi, Bj) exact matches
                    # Comparisons write 0./1. floats counted by matrix-vector products (much
                    # faster than bool -> int64 sums); the counts stay exact integers.
                    hit = hit_buf[: m.numel()].view(m.shape)  # (Bi, Bj)
                    if lo_j != lo_i:
                        torch.ge(m, min_m[lo_j:hi_j].unsqueeze(0), out=hit)
                        counts[lo_j:hi_j] += ones[: hi_i - lo_i] @ hit  # (Bj,) neighbours of j
                    torch.ge(m, t_i, out=hit)  # hit[a, b] = 1. iff row a counts column b
                    counts[lo_i:hi_i] += hit @ ones[: hi_j - lo_j]  # (Bi,)
                    del m
                    bar.update(1)
                cache.pop(lo_i, None)  # never needed again
        finally:
            bar.close()

    counts_np = counts.cpu().numpy().astype(np.int64)
    weights = np.zeros(n, dtype=np.float64)
    has = counts_np > 0  # False exactly for all-gap rows
    weights[has] = 1.0 / counts_np[has]
    return weights


def compact_one_hot(codes: torch.Tensor, col_of: torch.Tensor, width: int, dtype: torch.dtype) -> torch.Tensor:
    """(B, K) one-hot of the int codes (B, L) over the K (position, residue) columns of :func:`column_map`
    (``col_of``, ``width``), in ``dtype``; a gap adds 0 (to column 0). The operand of every identity product."""
    cb = codes.long()  # (B, L)
    offsets = torch.arange(cb.shape[1], device=cb.device, dtype=torch.int64) * (N_AA + 1)  # (L,)
    val = (cb != GAP_CODE).to(dtype)  # (B, L)
    return torch.zeros(cb.shape[0], width, dtype=dtype, device=cb.device).scatter_add_(1, col_of[cb + offsets], val)


def column_map(codes: torch.Tensor, memory_budget_bytes: int) -> tuple[torch.Tensor, int]:
    """Map (position, code) -> one-hot column for the K residue pairs that occur; gaps -> 0.

    Returns a flat ``(L * 21,)`` int64 lookup indexed by ``position * 21 + code`` and ``K``. Shared by
    every compact one-hot product over the codes (the weights here; the held-out split's neighbours,
    :func:`deepseqvae.holdout.cluster_holdout_split`). ``memory_budget_bytes`` bounds the scan's chunks.
    """
    n, length = codes.shape
    offsets = torch.arange(length, device=codes.device, dtype=torch.int64) * (N_AA + 1)
    present = torch.zeros(length * (N_AA + 1), dtype=torch.bool, device=codes.device)
    chunk = max(1, min(n, memory_budget_bytes // max(1, 16 * length)))
    for lo in range(0, n, chunk):
        flat = (codes[lo:lo + chunk].long() + offsets).reshape(-1)  # (chunk * L,)
        present[flat] = True
    present = present.view(length, N_AA + 1)
    present[:, GAP_CODE] = False
    present = present.reshape(-1)
    col_of = torch.cumsum(present.long(), 0) - 1
    col_of[~present] = 0
    return col_of, int(present.sum())


class _NullBar:
    def update(self, _n: float) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: float, enabled: bool, desc: str = "weights", unit: str = "block"):
    """A tqdm bar on stderr of ``total`` ``unit``s (cleared when closed), or one that shows nothing."""
    if not enabled:
        return _NullBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, leave=False)


def default_weights_path(msa: str | os.PathLike, theta: float) -> Path:
    """EVE-style default output name ``<msa stem>_theta_<theta>.npy`` (current directory; ``x.a2m.gz``: ``x``)."""
    return Path(f"{plain_name(msa).stem}_theta_{theta:g}.npy")


def save_weights(path: str | os.PathLike, weights: np.ndarray) -> Path:
    """Write ``weights`` as a float64 ``.npy`` atomically (an existing file is replaced only on success)."""
    path = Path(path)
    try:
        with atomic_write(path, "wb") as fh:
            np.save(fh, np.asarray(weights, dtype=np.float64))
    except OSError as exc:
        raise WeightsError(f"{path}: cannot write weights: {exc.strerror or exc}") from None
    return path
