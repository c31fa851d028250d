"""Sequence reweighting (DeepSequence / EVE) with blocked one-hot matrix products in torch.

Definition (identical in DeepSequence and EVE)::

    matches(i, j) = #positions where i and j carry the same residue (gaps never match)
    ident(i, j)   = matches(i, j) / nongap(i)          # asymmetric: normalised by the query i
    n_i           = #{j : ident(i, j) > 1 - theta}      # strict '>', j = i included
    w_i           = 1 / n_i       (0 for an all-gap sequence, as in EVE)
    Neff          = sum_i w_i

``matches`` is a product of one-hot rows. It is computed block by block: a float32 one-hot block
``(B, K)`` is built on the fly from the int8 codes (never the whole ``N x 20L`` one-hot, never an
``N x N`` matrix) and only the block pairs ``I <= J`` are multiplied, each product updating the
neighbour counts of both blocks' rows (``matches`` is symmetric). ``K <= 20 L`` keeps only the
(position, residue) pairs that occur somewhere in the alignment; the others add nothing to any
product. Match counts are integers below 2**24, so float32 products are exact.

The threshold decision is bit-identical to EVE's float64 ``matches / nongap > 1 - theta``: for
every possible ``nongap = n`` the smallest integer ``m`` with ``float64(m / n) > 1 - theta`` is
precomputed (float64 division is monotone in ``m``), and the float32 product is compared with it.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np
import torch

from .alphabet import GAP_CODE, N_AA
from .errors import DeepSeqVAEError
from .fileio import atomic_write

logger = logging.getLogger(__name__)

#: Largest block on a CPU: a (1000..2000, 20L) x (20L, ...) float32 product already runs at the
#: CPU's peak, and smaller blocks waste less work on the (computed in full) diagonal blocks.
CPU_MAX_BLOCK = 1536


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


def block_size(n: int, length: int, width: int, memory_budget_bytes: int, *, cpu: bool = True) -> int:
    """Rows per block so that one block pair's working set fits ``memory_budget_bytes``.

    Working set of a pair: two float32 one-hot blocks ``2 * 4 B K``, their build temporaries
    (int64 index + float32 values, ``12 B L``), the float32 product ``4 B^2`` and a boolean
    comparison plus reduction temporaries (``~2 B^2``). Blocks are then evened out; on a CPU
    they are capped at :data:`CPU_MAX_BLOCK`.
    """
    a, b = 6.0, 8.0 * width + 12.0 * length
    best = int((-b + math.sqrt(b * b + 4 * a * memory_budget_bytes)) / (2 * a))
    best = max(1, min(n, best, CPU_MAX_BLOCK if cpu else n))
    n_blocks = math.ceil(n / best)
    return math.ceil(n / n_blocks)


def compute_weights(codes: np.ndarray | torch.Tensor, theta: float = 0.2, *,
                    device: str | torch.device = "cpu", memory_budget_bytes: int = 512 * 2**20,
                    progress: bool = False) -> np.ndarray:
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

    Returns:
        ``(N,)`` float64 weights in row order; ``weights.sum()`` is Neff.

    Raises:
        WeightsError (a DeepSeqVAEError and ValueError): bad theta, codes or device.
    """
    theta = check_theta(theta)
    dev = resolve_device(device)
    if int(memory_budget_bytes) <= 0:
        raise WeightsError(f"memory_budget_bytes must be positive, got {memory_budget_bytes!r}")
    codes_t = _as_codes(codes).to(dev)  # (N, L) uint8
    n, length = codes_t.shape

    with torch.no_grad():
        col_of, width = _column_map(codes_t, memory_budget_bytes)  # (L*21,) int64, K
        if width == 0:  # no residue anywhere (or N == 0): every weight is 0
            return np.zeros(n, dtype=np.float64)
        offsets = torch.arange(length, device=dev, dtype=torch.int64) * (N_AA + 1)  # (L,)
        nongap = (codes_t != GAP_CODE).sum(dim=1)  # (N,) int64
        table = torch.as_tensor(min_matches_table(length, theta), dtype=torch.float32, device=dev)
        min_m = table[nongap]  # (N,) float32 exact integers (inf for all-gap rows)

        # When the whole compact one-hot fits in half the budget, each block is built once and
        # kept; otherwise the inner blocks are rebuilt for every outer block (cheap next to the
        # product: B x L scatter vs B x B x K multiply-adds).
        budget = int(memory_budget_bytes)
        cache_all = 4 * n * width <= budget // 2
        pair_budget = budget - 4 * n * width if cache_all else budget
        bs = block_size(n, length, max(width, 1), pair_budget, cpu=dev.type == "cpu")
        starts = list(range(0, n, bs))
        cache: dict[int, torch.Tensor] = {}
        counts = torch.zeros(n, dtype=torch.int64, device=dev)  # (N,)

        def one_hot_block(lo: int, hi: int) -> torch.Tensor:
            """Float32 one-hot ``(hi - lo, K)`` of rows lo..hi; a gap is an all-zero row slice."""
            cb = codes_t[lo:hi].long()  # (B, L)
            idx = col_of[cb + offsets]  # (B, L) column in 0..K-1 (0 for gaps, value 0 there)
            val = (cb != GAP_CODE).to(torch.float32)  # (B, L)
            return torch.zeros(hi - lo, width, dtype=torch.float32, device=dev).scatter_add_(1, idx, val)

        def block(lo: int) -> torch.Tensor:
            x = cache.get(lo)
            if x is None:
                x = one_hot_block(lo, min(lo + bs, n))
                if cache_all:
                    cache[lo] = x
            return x

        n_pairs = len(starts) * (len(starts) + 1) // 2
        logger.debug("weights: N=%d L=%d K=%d block=%d pairs=%d cached=%s device=%s", n, length, width,
                     bs, n_pairs, cache_all, dev)
        bar = _progress(n_pairs, progress)
        try:
            for bi, lo_i in enumerate(starts):
                hi_i = min(lo_i + bs, n)
                x_i = block(lo_i)  # (Bi, K)
                t_i = min_m[lo_i:hi_i].unsqueeze(1)  # (Bi, 1)
                for lo_j in starts[bi:]:
                    hi_j = min(lo_j + bs, n)
                    x_j = x_i if lo_j == lo_i else block(lo_j)  # (Bj, K)
                    m = x_i @ x_j.T  # (Bi, Bj) exact match counts
                    counts[lo_i:hi_i] += (m >= t_i).sum(dim=1)
                    if lo_j != lo_i:
                        counts[lo_j:hi_j] += (m >= min_m[lo_j:hi_j].unsqueeze(0)).sum(dim=0)
                    del m
                    bar.update(1)
                cache.pop(lo_i, None)  # never needed again
        finally:
            bar.close()

    counts_np = counts.cpu().numpy()
    weights = np.zeros(n, dtype=np.float64)
    has = counts_np > 0  # False exactly for all-gap rows
    weights[has] = 1.0 / counts_np[has]
    return weights


def _column_map(codes: torch.Tensor, memory_budget_bytes: int) -> tuple[torch.Tensor, int]:
    """Map (position, code) -> one-hot column for the K residue pairs that occur; gaps -> 0.

    Returns a flat ``(L * 21,)`` int64 lookup indexed by ``position * 21 + code`` and ``K``.
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
    def update(self, _n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool):
    if not enabled:
        return _NullBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="weights", unit="block", leave=False)


def default_weights_path(msa: str | os.PathLike, theta: float) -> Path:
    """EVE-style default output name ``<msa stem>_theta_<theta>.npy`` (current directory)."""
    return Path(f"{Path(msa).stem}_theta_{theta:g}.npy")


def save_weights(path: str | os.PathLike, weights: np.ndarray) -> Path:
    """Write ``weights`` as a float64 ``.npy`` atomically (an existing file is replaced only on success)."""
    path = Path(path)
    try:
        with atomic_write(path, "wb") as fh:
            np.save(fh, np.asarray(weights, dtype=np.float64))
    except OSError as exc:
        raise WeightsError(f"{path}: cannot write weights: {exc.strerror or exc}") from None
    return path
