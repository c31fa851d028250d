"""Site-independent baseline: per-column amino-acid frequencies of the weighted alignment.

score(mutant) = Σ over its substitutions of log p_l(mutant residue) − log p_l(wild-type residue),
with p_l the weighted frequency at column l (gaps ignored) smoothed by a pseudocount. This is the
"independent" model every paper in the field reports next to DeepSequence and EVmutation.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from .alphabet import GAP_CODE, N_AA
from .errors import ConfigError
from .runtime import whole_number


def weighted_counts(codes: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted residue counts (L, 20) of int8 ``codes`` (N, L) under sequence ``weights`` (N,); gaps not counted."""
    L = codes.shape[1]
    # One bincount over flattened (column, code) pairs.
    flat = (np.arange(L)[None, :] * (N_AA + 1) + codes.astype(np.int64)).ravel()
    counts = np.bincount(flat, weights=np.repeat(np.asarray(weights, dtype=np.float64), L),
                         minlength=L * (N_AA + 1)).reshape(L, N_AA + 1)
    return counts[:, :GAP_CODE]


@dataclass(frozen=True)
class IndependentConfig:
    """Settings of the site-independent model."""

    seq_len: int                    # L, number of modelled columns
    pseudocount: float = 0.1        # λ: pseudo-counts per column, as a fraction of its weighted occupancy (see fit)

    def __post_init__(self) -> None:
        whole_number("seq_len", self.seq_len, 1)
        if isinstance(self.pseudocount, bool) or not (isinstance(self.pseudocount, numbers.Real)
                                                      and 0 <= self.pseudocount < math.inf):
            raise ConfigError(f"pseudocount must be a number >= 0, not {self.pseudocount!r}")


class IndependentModel(nn.Module):
    """Holds log p_l(a) as a (L, 20) buffer; a :class:`~deepseqvae.score.MutationScorer` itself."""

    sampled = False  # exact scores: no samples, standard error 0
    method = "site-independent log-ratio"
    score_label = "log p(mutant) − log p(wild type)"

    def __init__(self, cfg: IndependentConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("log_p", torch.full((cfg.seq_len, N_AA), -np.log(N_AA)))

    @classmethod
    def from_config(cls, config: dict) -> IndependentModel:
        return cls(IndependentConfig(**config))

    def config_dict(self) -> dict:
        return asdict(self.cfg)

    @classmethod
    def fit(cls, codes: np.ndarray, weights: np.ndarray, pseudocount: float = 0.1) -> IndependentModel:
        """Frequencies from int8 ``codes`` (N, L) and sequence ``weights`` (N,).

        p_l(a) = (n_l(a) + λ·n_l/20) / (n_l·(1 + λ)) with n_l(a) the weighted count of a at column
        l, n_l = Σ_a n_l(a) (gaps excluded) and λ = ``pseudocount``: a pseudocount proportional to
        the column's weighted occupancy, so sparse and dense columns are smoothed alike.
        """
        codes, weights = np.asarray(codes), np.asarray(weights)
        if codes.ndim != 2 or weights.shape != (codes.shape[0],):
            raise ConfigError(f"the site-independent model needs codes (N, L) and one weight per sequence, not "
                              f"codes {codes.shape} and weights {weights.shape}")
        config = IndependentConfig(seq_len=codes.shape[1], pseudocount=pseudocount)  # checks pseudocount
        counts = weighted_counts(codes, weights)  # (L, 20)
        n = counts.sum(1, keepdims=True)  # (L, 1)
        n_safe = np.where(n > 0, n, 1.0)
        p = (counts + pseudocount * n_safe / N_AA) / (n_safe * (1.0 + pseudocount))
        model = cls(config)
        with np.errstate(divide="ignore"):  # pseudocount 0: a residue never seen has log-probability -inf
            model.log_p.copy_(torch.from_numpy(np.log(p)))
        return model

    def delta(self, wt_codes: np.ndarray, changes: list[tuple[tuple[int, int], ...]]) -> np.ndarray:
        """Σ log p(mut) − log p(wt) for each variant's ``(column, code)`` changes, (M,)."""
        log_p = self.log_p.double().numpy()
        out = np.zeros(len(changes))
        for i, ch in enumerate(changes):
            out[i] = sum(log_p[c, a] - log_p[c, wt_codes[c]] for c, a in ch)
        return out

    def score_changes(self, wt_codes: np.ndarray, changes: list[tuple[tuple[int, int], ...]], *,
                      n_samples: int | None, seed: int, device, batch_size: int, progress: bool
                      ) -> tuple[np.ndarray, np.ndarray, None]:
        """``(delta, 0, None)``: the scoring interface; an exact score draws no samples, so sampling settings do
        not apply."""
        return self.delta(wt_codes, changes), np.zeros(len(changes)), None
