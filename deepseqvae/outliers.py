"""Records near the focus that break what its neighbourhood keeps invariant (processed pseudogenes and the like).

Why: the VAE scores the focus from its latent neighbourhood, the sequences most like it. A handful of
records there that are not under the family's selection can dominate it. EVE's TP53 alignment holds
12 records 62-69 % identical to human TP53 (11 of them UniRef100 G3U.../G3TS21 entries of one genome
annotation) that look like translated TP53 retrogenes, processed pseudogenes such as the ~20 copies
of the elephant genome (Sulak et al., eLife 2016; the alignment does not name species): several
carry histidine at R175, R158 and R273, the CpG transitions a pseudogene collects first. Trained with
them, the fast recipe scores R175H, R273H and R158H among the mildest 6 % of TP53's single mutants
(benchmarks/results/classify-thresholds-2026-12-04.md); trained with ``--max-invariant-changes 8``, none of
the three is misclassified and the AUC against ClinVar rises from 0.943 to 0.982
(classify-invariant8-2026-12-05.md).

The test is label-free and uses only the alignment and its sequence weights:

- the neighbourhood: records at least ``near`` identical to the focus (over the focus columns both
  cover);
- its invariant columns: where the focus residue holds at least ``invariant`` of the neighbourhood's
  sequence weight (the weights discount near-duplicates, so a family's many copies of one ortholog
  do not make a column look invariant);
- a record's invariant changes: the invariant columns where it has another residue (a gap is no change).

A functional homolog at 60 % identity changes few of them (the 95th percentile of TP53's, PTEN's, and
beta-lactamase's neighbourhoods: 2-5); those TP53 records change 9-14 of its 69
(benchmarks/results/invariant-changes-2026-12-05.md). Records
with at least ``max_changes`` are dropped before the sequence weights are computed again.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from .alignment import Alignment
from .alphabet import GAP_CODE, N_AA
from .weights import compute_weights

log = logging.getLogger(__name__)

#: identity to the focus from which a record belongs to its neighbourhood
NEAR_IDENTITY = 0.5
#: share of the neighbourhood's weight the focus residue needs for a column to count as invariant
INVARIANT_SHARE = 0.95


def invariant_columns(codes: np.ndarray, focus_index: int, weights: np.ndarray, *, near: float = NEAR_IDENTITY,
                      invariant: float = INVARIANT_SHARE) -> tuple[np.ndarray, np.ndarray]:
    """The focus neighbourhood and the columns it keeps invariant.

    Args:
        codes: ``(N, L)`` int8 alignment codes (gap = ``GAP_CODE``).
        focus_index: row of the focus.
        weights: ``(N,)`` sequence weights.
        near: identity to the focus (over the columns a record covers) from which it is a neighbour.
        invariant: weighted share of the neighbourhood's residues the focus residue needs at a column.

    Returns:
        ``(columns, neighbour)``: the ``(L,)`` bool mask of invariant columns and the ``(N,)`` bool
        neighbourhood mask (the focus included).
    """
    codes = np.asarray(codes)
    weights = np.asarray(weights, dtype=np.float64)
    focus = codes[focus_index]                                     # (L,)
    residue = codes != GAP_CODE                                    # (N, L)
    same = (codes == focus[None, :]) & residue                     # (N, L)
    covered = residue.sum(1)                                       # (N,)
    identity = same.sum(1) / np.maximum(covered, 1)                # (N,)
    neighbour = (identity >= near) & (covered > 0)
    neighbour[focus_index] = True
    # weighted share of the focus residue among the neighbourhood's residues, per column (the products cast
    # the neighbours' rows only to float: on a large family most rows are not neighbours)
    w = weights[neighbour]                                         # (n,)
    held = w @ same[neighbour]                                     # (L,)
    present = w @ residue[neighbour]                               # (L,)
    share = held / np.maximum(present, np.finfo(float).tiny)
    return (share >= invariant) & (focus < N_AA), neighbour


def invariant_changes(codes: np.ndarray, focus_index: int, weights: np.ndarray, *, near: float = NEAR_IDENTITY,
                      invariant: float = INVARIANT_SHARE) -> tuple[np.ndarray, np.ndarray]:
    """Each record's changes of the focus neighbourhood's invariant columns (:func:`invariant_columns`).

    Returns:
        ``(changes, neighbour)``: ``(N,)`` int64 counts of invariant columns where the record has a
        residue other than the focus's (a gap is no change; 0 outside the neighbourhood), and the
        ``(N,)`` bool neighbourhood mask (the focus included).
    """
    codes = np.asarray(codes)
    columns, neighbour = invariant_columns(codes, focus_index, weights, near=near, invariant=invariant)
    sub = codes[:, columns]                                        # (N, C) the invariant columns only
    changes = ((sub != GAP_CODE) & (sub != codes[focus_index, columns][None, :])).sum(1)
    return np.where(neighbour, changes, 0).astype(np.int64), neighbour


def drop_outliers(aln: Alignment, weights: np.ndarray, max_changes: int, *, near: float = NEAR_IDENTITY,
                  invariant: float = INVARIANT_SHARE) -> tuple[Alignment, np.ndarray, list[tuple[str, int]]]:
    """``aln`` without the focus neighbours that change ``max_changes`` or more invariant columns.

    ``weights`` are ``aln``'s sequence weights (they define the invariant columns); the caller
    computes the weights of the returned alignment again. The focus is never dropped. Returns the
    alignment (``n_dropped_outliers`` and ``options.max_invariant_changes`` set), the ``(N,)`` bool
    mask of the rows kept and the ``(id, changes)`` of every dropped record, most changes first.
    """
    if max_changes < 1:
        raise ValueError(f"max_changes must be at least 1, got {max_changes}")
    changes, _ = invariant_changes(aln.codes, aln.focus_index, weights, near=near, invariant=invariant)
    drop = changes >= max_changes
    drop[aln.focus_index] = False
    dropped = sorted(((aln.ids[i], int(changes[i])) for i in np.flatnonzero(drop)), key=lambda t: (-t[1], t[0]))
    options = dataclasses.replace(aln.options, max_invariant_changes=int(max_changes))  # the checkpoint's record
    keep = ~drop
    codes = aln.codes[keep]
    codes.setflags(write=False)
    kept = dataclasses.replace(aln, codes=codes, ids=tuple(i for i, k in zip(aln.ids, keep, strict=True) if k),
                               focus_index=int(keep[:aln.focus_index].sum()), n_dropped_outliers=len(dropped),
                               options=options)
    return kept, keep, dropped


def drop_outlier_records(aln: Alignment, weights: np.ndarray, max_changes: int, theta: float,
                         device) -> tuple[Alignment, np.ndarray]:
    """What ``deepseqvae train --max-invariant-changes`` trains on: ``aln`` without its focus neighbours that
    change ``max_changes`` or more invariant columns (:func:`drop_outliers`, each one logged by id) and the
    weights (at ``theta``, on ``device``) computed again without them."""
    kept, keep, dropped = drop_outliers(aln, weights, max_changes)
    if not dropped:
        log.info("%s: no focus neighbour changes %d or more invariant columns", aln.path, max_changes)
        return kept, weights
    shown = ", ".join(f"{name} ({n})" for name, n in dropped[:20])
    more = f" and {len(dropped) - 20} more" if len(dropped) > 20 else ""
    log.warning("%s: dropped %d focus neighbours changing >= %d of its neighbourhood's invariant columns "
                "(weight %.2f of Neff %.1f; changes in brackets): %s%s", aln.path, len(dropped), max_changes,
                float(weights[~keep].sum()), float(weights.sum()), shown, more)
    if more:  # the whole list at -v
        log.debug("%s: every dropped focus neighbour (changes): %s", aln.path,
                  ", ".join(f"{name} ({n})" for name, n in dropped))
    return kept, compute_weights(kept.codes, theta, device=device)
