"""Held-out sets: which sequences a training run keeps out, and weighted samples of them.

The fast recipe measures when more steps stop generalising on sequences it never trains on. A random
tenth of a redundant alignment leaves a near-copy of most held-out sequences in training, so whole
neighbourhoods are held out instead (:func:`cluster_holdout_split`), and the rows within the identity
threshold of a held-out one are dropped from training too. Neighbours are decided by exact
identical-residue counts computed as one-hot products (:func:`_neighbour_rows`, the machinery of
:mod:`deepseqvae.weights`); :func:`_neighbour_mask` is the same decision pair by pair, the reference
of the tests and of ``benchmarks/bench_split.py``. :func:`heldout_sample` draws a fixed
weight-proportional sample of a large held-out set (``TrainConfig.eval_rows``).
"""

from __future__ import annotations

import numpy as np
import torch

from .alphabet import GAP_CODE
from .weights import column_map, compact_one_hot, int8_products, progress_bar, resolve_kernel


def holdout_split(n: int, fraction: float, seed: int, keep: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, held-out rows) of ``n`` sequences: a seeded random ``fraction`` held out.

    Row ``keep`` (the focus) always stays in training.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    if keep is not None:
        order = order[order != keep]
    n_held = int(round(fraction * n))
    held = np.sort(order[:n_held])
    mask = np.ones(n, dtype=bool)
    mask[held] = False
    return np.flatnonzero(mask), held


def _neighbour_mask(codes: torch.Tensor, rows: torch.Tensor, theta: float, block: int = 16) -> torch.Tensor:
    """(len(rows), N) bool: sequence j is a neighbour of ``rows[i]`` when their identical residues
    exceed (1 − θ) × the shorter of the two non-gap lengths (symmetric, and at least as wide as
    the weights' definition, so a held-out cluster leaks less).

    The definition, pair by pair; :func:`_neighbour_rows` makes the same decision faster and is
    what the split uses (this one is the reference its tests and benchmarks/bench_split.py check against).
    """
    ng = (codes != GAP_CODE).sum(1)  # (N,)
    out = torch.empty((len(rows), codes.shape[0]), dtype=torch.bool)
    for start in range(0, len(rows), block):
        r = rows[start:start + block]
        a = codes[r]  # (b, L)
        matches = ((a[:, None, :] == codes[None]) & (a[:, None, :] != GAP_CODE)).sum(-1)  # (b, N)
        shorter = torch.minimum(ng[r][:, None], ng[None]).clamp(min=1)
        out[start:start + len(r)] = matches > (1.0 - theta) * shorter
    return out


def _neighbour_rows(codes: torch.Tensor, rows: torch.Tensor, theta: float, cols: torch.Tensor | None = None,
                    block: int = 2048) -> torch.Tensor:
    """(len(rows), len(cols)) bool (``cols`` None: every row of ``codes``): :func:`_neighbour_mask`'s decision,
    bit for bit, with the identical-residue counts as products of one-hot blocks (those of
    :mod:`deepseqvae.weights`: int8 where the CPU has native, exact int8 products, else float32; counts below
    2**24 are exact either way) instead of a comparison of every pair of residues (the whole split 34x
    faster on BLAT_ECOLX: benchmarks/results/split-2026-12-02.md). The working memory is the result, the
    rows' one-hot and one (K, ``block``) block of the columns'."""
    n = codes.shape[0]
    rows = torch.as_tensor(rows, dtype=torch.int64)
    cols = torch.arange(n) if cols is None else torch.as_tensor(cols, dtype=torch.int64)
    out = torch.zeros((len(rows), len(cols)), dtype=torch.bool)
    if len(rows) == 0 or len(cols) == 0:
        return out
    int8 = resolve_kernel("auto", torch.device("cpu")) == "int8"
    dtype = torch.int8 if int8 else torch.float32
    col_of, width = column_map(codes, 1 << 28)  # (L*21,) column of each (position, residue) pair; K
    if width == 0:  # no residue anywhere: no row has an identical residue, so none is a neighbour
        return out
    ng = (codes != GAP_CODE).sum(1)  # (N,)

    def one_hot(sel: torch.Tensor) -> torch.Tensor:  # (len(sel), K)
        return compact_one_hot(codes[sel], col_of, width, dtype)

    x_rows = [one_hot(rows[s:s + block]) for s in range(0, len(rows), block)]  # (R, K) each
    for lo in range(0, len(cols), block):
        c = cols[lo:lo + block]
        x_c = one_hot(c).T.contiguous()  # (K, C): int8_products' fastest right operand
        for s, x in zip(range(0, len(rows), block), x_rows, strict=True):
            matches = int8_products(x, x_c) if int8 else x @ x_c  # (R, C) exact counts
            shorter = torch.minimum(ng[rows[s:s + len(x)]][:, None], ng[c][None]).clamp(min=1)
            out[s:s + len(x), lo:lo + len(c)] = matches > (1.0 - theta) * shorter  # _neighbour_mask's test
    return out


def _has_neighbour_in(codes: torch.Tensor, rows: torch.Tensor, targets: torch.Tensor, theta: float,
                      block: int = 2048, bar=None) -> torch.Tensor:
    """(len(rows),) bool: whether each of ``rows`` has a neighbour (:func:`_neighbour_mask`, a symmetric
    relation) among ``targets``, ``block`` rows at a time (the memory of a (``block``, len(targets)) mask);
    ``bar`` (a progress bar) advances by the rows checked."""
    rows = torch.as_tensor(rows, dtype=torch.int64)
    out = torch.zeros(len(rows), dtype=torch.bool)
    for s in range(0, len(rows), block):
        out[s:s + block] = _neighbour_rows(codes, rows[s:s + block], theta, cols=targets, block=block).any(1)
        if bar is not None:
            bar.update(min(block, len(rows) - s))
    return out


#: candidate cluster centres whose neighbours the held-out split computes in one product
SPLIT_CENTRE_BATCH = 256


def cluster_holdout_split(codes: np.ndarray, fraction: float, seed: int, keep: int | None = None,
                          theta: float = 0.2, weights: np.ndarray | None = None,
                          progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, held-out rows) of int8 ``codes`` (N, L), held out by clusters.

    A random held-out split of a redundant alignment leaves a near-copy of most held-out
    sequences in training, so a model that memorises looks good on it. Here whole neighbourhoods
    (identity > 1 − θ, :func:`_neighbour_mask`) are held out, seeded, until ``fraction`` of the rows
    are; rows within 1 − θ of a held-out row that were not held out themselves are dropped from
    training too. The held-out set then measures generalisation to new members of the family.
    Row ``keep`` (the focus) and its neighbours are never held out. Cost: O(held × (N − held) × K)
    multiply-adds (one-hot products, K ≤ 20 L) for the rows near a held-out one.

    With ``weights`` (N,) the target is ``fraction`` of their sum instead of the rows: in a redundant
    alignment a tenth of the rows can be one dense cluster worth a few effective sequences (EVE's
    P53_HUMAN: 1,341 rows, ~4 of its 443), while a tenth of the weight is a tenth of the family's diversity.

    ``progress``: bars on stderr for the two passes (a 40,000-row synthetic family's split took 24 s on 2 cores:
    benchmarks/results/split-2026-12-02.md), the held-out share reached, then the remaining rows checked for a
    held-out neighbour.
    """
    t = torch.tensor(np.asarray(codes), dtype=torch.int16)  # (N, L)
    n = t.shape[0]
    size = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)  # what a held-out row counts
    if size.shape != (n,):
        raise ValueError(f"weights has shape {size.shape}, the alignment {n} rows")
    target = fraction * size.sum()
    if weights is None:
        target = int(round(target))
    status = np.zeros(n, dtype=np.int8)  # 0 free, 1 held out
    forbidden = np.zeros(n, dtype=bool)
    if keep is not None:
        forbidden = _neighbour_rows(t, torch.tensor([keep]), theta)[0].numpy()
        forbidden[keep] = True
    n_held = 0
    order = np.random.default_rng(seed).permutation(n)
    bar, shown = progress_bar(100, progress, desc="held-out clusters", unit="%"), 0  # % of the target reached
    # Centres in random order, each taking its free neighbours. The neighbours of the next candidates are
    # computed SPLIT_CENTRE_BATCH at a time (a row's neighbours do not depend on the split so far), then
    # the candidates are visited one by one exactly as a row-at-a-time loop would.
    for lo in range(0, n, SPLIT_CENTRE_BATCH):
        if n_held >= target:
            break
        batch = [int(c) for c in order[lo:lo + SPLIT_CENTRE_BATCH] if not (status[c] or forbidden[c])]
        masks = _neighbour_rows(t, torch.tensor(batch, dtype=torch.int64), theta).numpy()  # (b, N)
        for c, mask in zip(batch, masks, strict=True):
            if n_held >= target:
                break
            if status[c] or forbidden[c]:
                continue
            members = mask & (status == 0) & ~forbidden
            members[c] = True
            status[members] = 1
            n_held += size[members].sum()
            reached = int(min(100.0, 100.0 * n_held / target)) if target > 0 else 100  # whole percents shown
            bar.update(reached - shown)
            shown = reached
    bar.close()
    held = np.flatnonzero(status == 1)
    # rows not held out but within 1 − θ of a held-out row: only the free rows need the check
    free = np.flatnonzero(status == 0)
    near = np.zeros(n, dtype=bool)
    if len(held):
        bar = progress_bar(len(free), progress, desc="held-out neighbours", unit="row")
        near[free] = _has_neighbour_in(t, torch.as_tensor(free), torch.as_tensor(held), theta, bar=bar).numpy()
        bar.close()
    train_mask = (status == 0) & ~near
    if keep is not None:
        train_mask[keep] = True
    return np.flatnonzero(train_mask), held


def heldout_sample(weights: np.ndarray, n_draws: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, counts): ``n_draws`` draws from held-out sequences with ``weights`` (M,), each row
    drawn in proportion to its weight, as distinct rows and how often each was drawn.

    Systematic sampling (one seeded random start, ``n_draws`` equally spaced points along the
    weights' running sum, in a seeded random order): row i is drawn ⌊n·w_i/W⌋ or ⌈n·w_i/W⌉ times,
    so ``Σ counts · f / n_draws`` is an unbiased estimate of the weighted mean ``Σ w·f / W`` with less
    variance than independent draws; at most ``n_draws`` distinct rows, never one of weight zero.
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or not np.all(w >= 0) or not w.sum() > 0:
        raise ValueError("held-out weights must be a 1-D array of non-negative numbers with a positive sum")
    if n_draws < 1:
        raise ValueError(f"n_draws must be >= 1, not {n_draws}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(w.shape[0])
    order = order[w[order] > 0]  # (M',) a zero weight spans no stretch of the running sum
    edges = np.cumsum(w[order]) * (n_draws / w.sum())  # (M',) running sum in units of draws; the last ~n_draws
    points = rng.random() + np.arange(n_draws)  # (n_draws,) in [0, n_draws)
    # row order[j] takes the points in [edges[j-1], edges[j]); the clip only catches the last edge's rounding
    picked = order[np.minimum(np.searchsorted(edges, points, side="right"), order.shape[0] - 1)]
    rows, counts = np.unique(picked, return_counts=True)
    return rows, counts


__all__ = ["SPLIT_CENTRE_BATCH", "cluster_holdout_split", "heldout_sample", "holdout_split"]
