"""Pathogenicity scores and classes from ΔELBO, as EVE does it (Frazer et al., *Nature* 2021).

EVE turns the evolutionary index of a single missense variant, ``−ΔELBO`` (higher = less like the
family), into a probability of being pathogenic with a two-component Gaussian mixture over the
indices of *all* single mutants of a protein: the component with the higher mean (lower ΔELBO) is
the pathogenic one. EVE mixes that protein's posterior with the posterior of a "global" mixture
pooled over ~3,000 proteins (``protein_GMM_weight`` = 0.3 for the protein's own). The uncertainty of
a variant is the entropy of its two-class posterior, and a class is reported only where the
uncertainty is at most a threshold chosen to keep a given fraction of variants (EVE's defaults:
entropy deciles and quartiles over its pooled proteome, ``utils/default_uncertainty_threshold.json``).

Everything here is a pure function or dataclass, except the small JSON reader/writer of a pooled
prior and the readers of a scan CSV and of a label table:

* :func:`fit_mixture` (scikit-learn's ``GaussianMixture``, seeded, several initialisations) →
  :class:`Mixture`; :func:`fit_prior` pools several scans; :func:`save_prior` / :func:`load_prior`.
* :func:`pathogenicity`, :func:`binary_entropy`, :func:`uncertainty_thresholds`,
  :func:`assign_classes`, all combined by :func:`classify_scores` into a :class:`Classification`.
* :func:`read_labels` and :func:`match_labels` (every label row gets a status, none is dropped) and
  :func:`evaluate` (AUC, per-class accuracy and coverage at each retained fraction).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import entr

from .alphabet import AA_TO_CODE
from .errors import ClassifyError, DeepSeqVAEError, MutantColumnError
from .fileio import atomic_write
from .mutants import ResolvedMutant, parse_mutant, resolve_mutants, suggest_cause
from .score import ScanResult
from .tables import file_line, numeric_column, read_mutant_table

log = logging.getLogger(__name__)

PATHOGENIC, BENIGN, UNCERTAIN = "Pathogenic", "Benign", "Uncertain"

#: EVE's default entropy thresholds (``utils/default_uncertainty_threshold.json``, OATML-Markslab/EVE
#: 460d70e): the deciles and quartiles of the uncertainty of all variants of its ~3,000 proteins.
EVE_DECILES = {1: 0.2197550519787074, 2: 0.3073271315004903, 3: 0.380894592583295, 4: 0.452448591753785,
               5: 0.5199203860577154, 6: 0.5610673789803645, 7: 0.6028917246467301, 8: 0.6483370062758973,
               9: 0.678595588420331, 10: 0.6931471766074847}
EVE_QUARTILES = {1: 0.3443212858392093, 2: 0.5199203860577154, 3: 0.6272364669515783, 4: 0.6931471766074847}
#: retained percentage -> EVE's threshold; 100 % applies none (EVE's ``EVE_classes_100_pct_retained``)
EVE_THRESHOLDS = {**{10 * d: t for d, t in EVE_DECILES.items() if d < 10},
                  25: EVE_QUARTILES[1], 75: EVE_QUARTILES[3], 100: math.inf}
#: the retained percentages EVE reports, in the order of its columns
DEFAULT_RETAIN = (100, 10, 20, 30, 40, 50, 60, 70, 80, 90, 25, 75)
#: EVE's weight of the protein's own mixture when mixed with the pooled one
PROTEIN_GMM_WEIGHT = 0.3
#: random initialisations of a mixture fitted from scratch (EVE's main mixture uses 30)
N_INIT = 30
#: fewer labelled variants than this in either class: no AUC (it would be noise)
MIN_PER_CLASS_AUC = 5
#: Ashman's D below which the two components of a mixture overlap too much to be two classes
#: (D > 2 is the usual criterion for a clean separation; Ashman, Bird & Zepf, Astron. J. 108, 2348, 1994)
MIN_SEPARATION = 2.0
#: the fewest scored single mutants a protein's mixture is fitted to (EVE's are every single mutant: 19 per
#: position, thousands), and the fewest variants' worth of weight either component must hold: below them the
#: "two classes" are a few outliers beside one mode, classified with a confidence they do not have
MIN_MIXTURE_VARIANTS = 20
MIN_COMPONENT_VARIANTS = 10
#: EVE's default thresholds were set over its ~3,000 proteins: on one protein the share they classify may be far from
#: the nominal percentage (PTEN_HUMAN: 72.9 % of its variants at "10 %"). Beyond this distance classify says so
RETAINED_DRIFT = 0.15
#: spellings of the two labels in a label table (compared lower-cased, "_" as a space; ClinVar's combined
#: "Pathogenic/Likely pathogenic" and "Benign/Likely benign" are split at "/" and must agree)
_LABEL_VALUES = {"pathogenic": 1.0, "likely pathogenic": 1.0, "p": 1.0, "lp": 1.0,
                 "benign": 0.0, "likely benign": 0.0, "b": 0.0, "lb": 0.0}
_LABEL_COLUMNS = ("clinvar_labels", "label", "labels")
#: names of a label table's protein column, first found wins (EVE's protein_name; a gene or UniProt column of an
#: analyst's table): rows of other proteins are then reported, not matched against this protein's sequence
_PROTEIN_COLUMNS = ("protein_name", "protein", "gene", "gene_name", "gene_symbol", "symbol", "uniprot_id",
                    "uniprot", "uniprot_name")
#: ClinVar's "Protein change" column lists one change per transcript ("R136H, R43H, R175H, R82H")
_CLINVAR_CHANGE_COLUMN = "protein change"
#: ClinVar's "Name" column ends with the protein change: NM_000546.6(TP53):c.524G>A (p.Arg175His)
_HGVS_TAIL_RE = re.compile(r"\((p\.[^()\s]+)\)\s*$")
PRIOR_FORMAT = "deepseqvae-gmm-prior"
#: the version of that JSON this code writes and reads
PRIOR_VERSION = 1


def protein_name(focus_id: str) -> str:
    """``P53_HUMAN`` from a focus id such as ``P53_HUMAN/1-393`` (EVE's ``protein_name``)."""
    return focus_id.split("/", 1)[0]


def class_column(retain: int) -> str:
    """EVE's column name of the classes at ``retain`` % retained, e.g. ``EVE_classes_75_pct_retained``."""
    return f"EVE_classes_{retain}_pct_retained"


# --------------------------------------------------------------------------------------------
# The mixture
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mixture:
    """Two 1-D Gaussians over the evolutionary index (−ΔELBO); component 1, the higher mean, is pathogenic."""

    weights: tuple[float, float]     # (benign, pathogenic) mixing weights, sum 1
    means: tuple[float, float]       # (benign, pathogenic) means, benign < pathogenic
    variances: tuple[float, float]   # (benign, pathogenic) variances
    n_fitted: int = 0                # variants it was fitted to
    converged: bool = True

    def component_densities(self, x: np.ndarray) -> np.ndarray:
        """``(M, 2)`` weighted densities ``w_k · N(x; mean_k, var_k)`` (benign, pathogenic)."""
        return np.exp(self._log_weighted(x))

    def _log_weighted(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64).reshape(-1, 1)  # (M, 1)
        w, mu, var = (np.asarray(v, dtype=np.float64)[None, :] for v in (self.weights, self.means, self.variances))
        return np.log(w) - 0.5 * np.log(2 * np.pi * var) - 0.5 * (x - mu) ** 2 / var  # (M, 2)

    @property
    def separation(self) -> float:
        """Ashman's D = √2·|m_p − m_b| / √(v_b + v_p): how far apart the two components are in units of
        their spread; below :data:`MIN_SEPARATION` they overlap like one broad, skewed peak."""
        (mb, mp), (vb, vp) = self.means, self.variances
        return math.sqrt(2.0) * abs(mp - mb) / math.sqrt(vb + vp)

    def monotone_range(self) -> tuple[float, float]:
        """Where P(pathogenic | x) increases with x.

        The log-odds of two Gaussians is a parabola in x with its turning point at
        ``x* = (m_b/v_b − m_p/v_p) / (1/v_b − 1/v_p)``, outside the interval between the means: below
        the benign mean when the pathogenic variance is the larger (the posterior rises again far
        *below* it: variants much fitter than the wild type look pathogenic), above the pathogenic
        mean otherwise. Equal variances: a logistic curve, increasing everywhere.
        """
        (mb, mp), (vb, vp) = self.means, self.variances
        a = 1.0 / vb - 1.0 / vp
        if a == 0.0:
            return -math.inf, math.inf
        turn = (mb / vb - mp / vp) / a
        return (turn, math.inf) if a > 0 else (-math.inf, turn)

    def posterior(self, x: np.ndarray, monotone: bool = False, benign: bool = False) -> np.ndarray:
        """``(M,)`` P(pathogenic component | evolutionary index x); ``benign``: P(benign component | x), computed
        as such rather than as 1 − P(pathogenic), which rounds to 0 where P(pathogenic) rounds to 1.

        ``monotone``: x is first clipped to :meth:`monotone_range`, so the posterior never decreases
        as the evolutionary index increases (EVE uses the raw posterior).
        """
        if monotone:
            x = np.clip(np.asarray(x, dtype=np.float64), *self.monotone_range())
        lw = self._log_weighted(x)  # (M, 2)
        # softmax over the two components, stable: 1 / (1 + exp(log other − log this))
        other = lw[:, 0] - lw[:, 1]
        return 1.0 / (1.0 + np.exp(np.clip(-other if benign else other, -700, 700)))

    def to_dict(self) -> dict:
        return {"weights": list(self.weights), "means": list(self.means), "variances": list(self.variances),
                "n_fitted": self.n_fitted, "converged": self.converged}

    @classmethod
    def from_dict(cls, d: dict) -> Mixture:
        vals = {k: tuple(float(v) for v in d[k]) for k in ("weights", "means", "variances")}
        if any(len(v) != 2 for v in vals.values()):
            raise ValueError("weights, means and variances must have two entries each")
        if not (all(w > 0 for w in vals["weights"]) and all(v > 0 for v in vals["variances"])
                and vals["means"][0] <= vals["means"][1]):
            raise ValueError("weights and variances must be positive and the pathogenic mean the higher")
        if not math.isclose(sum(vals["weights"]), 1.0, abs_tol=1e-6):  # scikit-learn refuses them later, deep inside
            raise ValueError(f"the weights must sum to 1, not {sum(vals['weights']):g}")
        return cls(**vals, n_fitted=int(d.get("n_fitted", 0)), converged=bool(d.get("converged", True)))


def fit_mixture(x: np.ndarray, *, n_init: int = N_INIT, seed: int = 0, init: Mixture | None = None,
                source: str = "") -> Mixture:
    """Fit a two-component 1-D Gaussian mixture to evolutionary indices ``x`` (M,).

    scikit-learn's ``GaussianMixture`` with EVE's settings (full covariance, ``max_iter`` 1000,
    ``tol`` 1e-4), seeded with ``seed``: from ``n_init`` random initialisations (the best likelihood
    wins), or, as EVE fits a protein's mixture, once from the parameters of ``init`` (a pooled prior).
    Components are ordered by mean, so index 1 (the higher evolutionary index) is pathogenic.
    ``source`` (the scores' file or files) starts the message of scores that cannot be fitted.
    """
    from sklearn.mixture import GaussianMixture

    where = f"{source}: " if source else ""
    x = np.asarray(x, dtype=np.float64).ravel()
    if not np.isfinite(x).all():
        raise ClassifyError(f"{where}{int((~np.isfinite(x)).sum())} of {x.size} scores are not finite numbers")
    if np.unique(x).size < 2:
        raise ClassifyError(f"{where}a two-component mixture needs at least two distinct scores, got {x.size} "
                            f"({np.unique(x).size} distinct)")
    if x.size < MIN_MIXTURE_VARIANTS:
        raise ClassifyError(f"{where}{x.size} scores are too few for a mixture of two classes (at least "
                            f"{MIN_MIXTURE_VARIANTS}; EVE fits every single mutant of the protein: 'deepseqvae scan')")
    options = {"n_components": 2, "covariance_type": "full", "max_iter": 1000, "tol": 1e-4, "random_state": seed}
    if init is None:
        gm = GaussianMixture(n_init=n_init, **options)
    else:
        gm = GaussianMixture(n_init=1, weights_init=np.asarray(init.weights),
                             means_init=np.asarray(init.means).reshape(2, 1),
                             precisions_init=(1.0 / np.asarray(init.variances)).reshape(2, 1, 1), **options)
    gm.fit(x[:, None])
    if not gm.converged_:
        log.warning("the mixture did not converge in %d iterations", gm.max_iter)
    order = np.argsort(gm.means_.ravel(), kind="stable")  # benign (lower index) first
    held = gm.weights_[order] * x.size  # (2,) variants' worth of weight per component
    if held.min() < MIN_COMPONENT_VARIANTS:
        k = int(np.argmin(held))
        raise ClassifyError(f"{where}the mixture's {('benign', 'pathogenic')[k]} component holds {held[k]:.1f} of the "
                            f"{x.size} variants (at its mean {gm.means_.ravel()[order][k]:.3g}): the scores are one "
                            f"mode and outliers, not two classes (fewer than {MIN_COMPONENT_VARIANTS} variants' worth)")
    return Mixture(weights=tuple(float(v) for v in gm.weights_[order]),
                   means=tuple(float(v) for v in gm.means_.ravel()[order]),
                   variances=tuple(float(v) for v in gm.covariances_.ravel()[order]),
                   n_fitted=int(x.size), converged=bool(gm.converged_))


def pathogenicity(x: np.ndarray, protein: Mixture, prior: Mixture | None = None,
                  protein_weight: float = PROTEIN_GMM_WEIGHT, monotone: bool = True,
                  benign: bool = False) -> np.ndarray:
    """``(M,)`` P(pathogenic): the protein's posterior, or EVE's ``w·P_protein + (1 − w)·P_prior``; ``benign``: the
    same for P(benign) (see :meth:`Mixture.posterior`).

    ``monotone`` (default) makes each posterior non-decreasing in the evolutionary index
    (:meth:`Mixture.monotone_range`); ``False`` is EVE's raw posterior.
    """
    p = protein.posterior(x, monotone, benign)
    if prior is None:
        return p
    return protein_weight * p + (1.0 - protein_weight) * prior.posterior(x, monotone, benign)


def binary_entropy(p: np.ndarray, q: np.ndarray | None = None) -> np.ndarray:
    """``(M,)`` entropy of a two-class posterior in nats, ``−p ln p − q ln q``: 0 … ln 2. ``q`` = 1 − ``p`` unless
    given: computed apart, it keeps far in a tail, where ``p`` rounds to 1, the order of the uncertainties (a
    variant deeper in the tail is less uncertain) that ``1 − p`` = 0 would tie."""
    p = np.asarray(p, dtype=np.float64)
    return entr(p) + entr(1.0 - p if q is None else np.asarray(q, dtype=np.float64))


def check_retain(retain: Sequence[int], source: str = "eve") -> None:
    """Raise :class:`ClassifyError` for a retained percentage outside 1-100, or one EVE has no default threshold
    for (``source="eve"``): before any scan or fit."""
    for r in retain:
        if not 0 < r <= 100:
            raise ClassifyError(f"retained percentage {r} is not in 1-100")
        if source == "eve" and r not in EVE_THRESHOLDS:
            raise ClassifyError(f"EVE has no default threshold for {r} % retained (it has "
                                f"{', '.join(map(str, sorted(EVE_THRESHOLDS)))}); recompute them "
                                f"from this protein (--thresholds protein)")


def uncertainty_thresholds(retain: Sequence[int], uncertainty: np.ndarray | None = None,
                           source: str = "eve") -> dict[int, float]:
    """Entropy threshold for each retained percentage: variants with a higher uncertainty are Uncertain.

    ``source="eve"``: EVE's defaults (:data:`EVE_THRESHOLDS`; only 10, 20, …, 100, 25 and 75).
    ``source="protein"``: recomputed from this protein's ``uncertainty`` as EVE's
    ``--recompute_uncertainty_threshold`` does: the largest uncertainty not above its ``retain``-th
    percentile, so that the ``retain`` % least uncertain variants are kept.
    """
    check_retain(retain, source)
    out: dict[int, float] = {}
    for r in retain:
        if source == "eve":
            out[r] = EVE_THRESHOLDS[r]
        elif source == "protein":
            u = np.asarray(uncertainty, dtype=np.float64)
            q = np.quantile(u, r / 100.0)
            out[r] = float(u[u <= q].max())
        else:
            raise ValueError(f"unknown threshold source {source!r}")
    return out


def assign_classes(p: np.ndarray, uncertainty: np.ndarray, thresholds: dict[int, float]) -> dict[int, np.ndarray]:
    """Classes per retained percentage: Pathogenic if ``p > 0.5`` else Benign; Uncertain above the threshold."""
    base = np.where(np.asarray(p) > 0.5, PATHOGENIC, BENIGN).astype(object)  # (M,)
    out = {}
    for r, t in thresholds.items():
        cls = base.copy()
        cls[np.asarray(uncertainty) > t] = UNCERTAIN
        out[r] = cls
    return out


# --------------------------------------------------------------------------------------------
# Scores of a saturation scan
# --------------------------------------------------------------------------------------------


@dataclass
class ScanScores:
    """ΔELBO of single substitutions of one protein and the wild type they were scored against."""

    protein: str                 # protein name for label tables ("" when unknown)
    mutants: list[str]           # (M,) e.g. "H24A"
    delta_elbo: np.ndarray       # (M,) ΔELBO, higher = fitter
    sem: np.ndarray | None       # (M,) Monte-Carlo standard error, when known
    focus_seq: str               # (L,) wild-type residue at each scanned position
    positions: np.ndarray        # (L,) residue numbers
    columns: np.ndarray          # (M,) index into focus_seq of each mutant
    codes: np.ndarray            # (M,) ALPHABET code of the new residue
    source: str = ""             # file it came from, for messages

    @property
    def evolutionary_index(self) -> np.ndarray:
        """``(M,)`` −ΔELBO, EVE's ``evol_indices``: higher = less like the family."""
        return -np.asarray(self.delta_elbo, dtype=np.float64)

    @classmethod
    def from_scan(cls, result: ScanResult, protein: str | None = None, source: str = "") -> ScanScores:
        """The scores of a :class:`~deepseqvae.score.ScanResult` (``saturation_scan``); ``protein`` None: the name
        in its focus id (:func:`protein_name`)."""
        if isinstance(result, ScanScores):
            return result
        if not all(hasattr(result, k) for k in ("focus_id", "mutants", "score", "columns", "codes")):
            raise TypeError(f"expected a ScanResult (saturation_scan) or ScanScores, not {type(result).__name__}")
        return cls(protein=protein_name(result.focus_id) if protein is None else protein, mutants=list(result.mutants),
                   delta_elbo=result.score, sem=result.score_sem, focus_seq=result.focus_seq,
                   positions=result.positions, columns=result.columns, codes=result.codes, source=source)


def read_scan(path: str | os.PathLike, protein: str = "") -> ScanScores:
    """Read a scan CSV (``mutant,score[,score_sem]``, as ``deepseqvae scan`` writes it; or a classes CSV,
    whose ``delta_elbo`` and ``delta_elbo_sem`` are used).

    Every row must be a single substitution of a standard amino acid with a numeric score; the wild
    type of each position is taken from the mutants themselves and must agree between rows. ``protein`` "" takes a
    classes CSV's own ``protein_name`` (one name) where it has one.
    """
    path = Path(path)
    try:
        table = read_mutant_table(path)
    except MutantColumnError:  # the table reader's advice names score's column options, which classify does not take
        raise ClassifyError(f"{path}: not a scan CSV: no column of mutants such as A42G (expected mutant,score"
                            "[,score_sem] as 'deepseqvae scan' writes it, or a classes CSV)") from None
    if table.mutant_col is None:
        raise ClassifyError(f"{path}: no 'mutant' column (expected a scan CSV mutant,score,score_sem)")
    col = "delta_elbo" if "delta_elbo" in table.frame.columns and "score" not in table.frame.columns else "score"
    score = numeric_column(table, col)
    sem = numeric_column(table, f"{col}_sem") if f"{col}_sem" in table.frame.columns else None
    wt_at: dict[int, tuple[str, int]] = {}
    subs = []
    for i, text in enumerate(table.mutants):
        where = f"{path}: line {table.line(i)}"
        try:
            parsed = parse_mutant(text, separators=table.separators)
        except DeepSeqVAEError as exc:
            raise ClassifyError(f"{where}: {exc}") from None
        if len(parsed) != 1 or parsed[0].wt == parsed[0].mut:
            raise ClassifyError(f"{where}: {text!r} is not a single substitution (a scan has only those)")
        s = parsed[0]
        if s.wt not in AA_TO_CODE or s.mut not in AA_TO_CODE:
            raise ClassifyError(f"{where}: {text!r} names a residue that is not one of the 20 amino acids")
        if not np.isfinite(score[i]):
            raise ClassifyError(f"{where}: {col} {table.frame[col].iloc[i]!r} is not a number")
        prev = wt_at.setdefault(s.pos, (s.wt, i))
        if prev[0] != s.wt:
            raise ClassifyError(f"{where}: {text} has wild type {s.wt}{s.pos} but line {table.line(prev[1])} has "
                                f"{prev[0]}{s.pos}")
        subs.append(s)
    positions = np.array(sorted(wt_at), dtype=np.int64)
    missing = 19 * len(positions) - len(subs)
    if missing > 0:
        log.warning("%s: %d single mutants at %d positions, %d substitutions short of all 19 at each: the mixture is "
                    "fitted to the variants given (EVE fits every single mutant of the protein), and a label at a "
                    "position the file lacks is reported as not modelled", path, len(subs), len(positions), missing)
    col_of = {int(p): k for k, p in enumerate(positions)}
    keys = [(col_of[s.pos], AA_TO_CODE[s.mut]) for s in subs]
    if len(set(keys)) != len(keys):
        first = {}
        for i, k in enumerate(keys):
            if k in first:
                raise ClassifyError(f"{path}: line {table.line(i)}: {subs[i]} repeats line {table.line(first[k])}")
            first[k] = i
    if not protein and "protein_name" in table.frame.columns:  # a classes CSV names its protein
        names = {str(v).strip() for v in table.frame["protein_name"]} - {""}
        protein = names.pop() if len(names) == 1 else ""
    return ScanScores(protein=protein, mutants=[str(s) for s in subs], delta_elbo=score, sem=sem,
                      focus_seq="".join(wt_at[int(p)][0] for p in positions), positions=positions,
                      columns=np.array([k[0] for k in keys], dtype=np.int64),
                      codes=np.array([k[1] for k in keys], dtype=np.int64), source=str(path))


def mean_scans(scans: Sequence[ScanScores]) -> ScanScores:
    """The ensemble of several scans of the same mutants: mean ΔELBO, SEM ``sqrt(Σ sem²) / n``."""
    first = scans[0]
    for s in scans[1:]:
        if s.mutants != first.mutants:
            raise ClassifyError(f"{s.source or 'a model'}: its scan has other mutants than "
                                f"{first.source or 'the first model'}'s (trained on another alignment?)")
    if len(scans) == 1:
        return first
    delta = np.mean([s.delta_elbo for s in scans], axis=0)
    sem = None
    if all(s.sem is not None for s in scans):
        sem = np.sqrt(np.sum([np.square(s.sem) for s in scans], axis=0)) / len(scans)
    return ScanScores(first.protein, first.mutants, delta, sem, first.focus_seq, first.positions, first.columns,
                      first.codes, " + ".join(s.source or f"scan {i + 1}" for i, s in enumerate(scans)))


# --------------------------------------------------------------------------------------------
# Classification
# --------------------------------------------------------------------------------------------


@dataclass
class Classification:
    """EVE-style scores and classes of every single mutant of one protein."""

    scan: ScanScores
    mixture: Mixture              # fitted to this protein's evolutionary indices
    prior: Mixture | None         # pooled mixture mixed in, if any
    protein_weight: float         # weight of ``mixture`` when ``prior`` is given
    pathogenicity: np.ndarray     # (M,) P(pathogenic), EVE_scores
    uncertainty: np.ndarray       # (M,) entropy of the posterior (nats)
    thresholds: dict[int, float]  # retained % -> entropy threshold
    threshold_source: str         # "eve" or "protein"
    monotone: bool = True         # posteriors made non-decreasing in the evolutionary index
    classes: dict[int, np.ndarray] = field(default_factory=dict)  # retained % -> (M,) class names

    def retained(self) -> dict[int, float]:
        """Fraction of this protein's variants classified (not Uncertain) at each retained percentage."""
        return {r: float(np.mean(c != UNCERTAIN)) for r, c in self.classes.items()}

    def off_nominal(self) -> dict[int, float]:
        """Retained percentages whose share of this protein's variants classified is more than
        :data:`RETAINED_DRIFT` from the nominal one, with that share (with ``thresholds="protein"`` every share is
        nominal unless many variants tie at one uncertainty: posteriors that round to exactly 0 or 1)."""
        return {r: f for r, f in sorted(self.retained().items()) if r < 100 and abs(f - r / 100.0) > RETAINED_DRIFT}

    def off_nominal_note(self) -> str | None:
        """One sentence on :meth:`off_nominal` for logs and reports, or None when every share is near nominal."""
        off = self.off_nominal()
        if not off:
            return None
        shares = ", ".join(f"{100 * f:.1f} % at {r} %" for r, f in off.items())
        if self.threshold_source != "eve":
            return (f"the thresholds of this protein classify a share of its variants far from the nominal one "
                    f"({shares}): that many variants tie at one uncertainty (posteriors of exactly 0 or 1, far in "
                    "a tail), so a cut cannot keep fewer of them")
        return (f"EVE's default thresholds classify a share of this protein's variants far from the nominal one "
                f"({shares}): they were set over EVE's ~3,000 proteins; --thresholds protein classifies "
                f"exactly PCT % of this protein")

    @property
    def frame(self) -> pd.DataFrame:
        """One row per variant: our columns, then EVE's (``evol_indices``, ``EVE_scores``, ``EVE_classes_*``)."""
        s = self.scan
        data: dict[str, object] = {
            "protein_name": s.protein, "mutant": s.mutants, "position": s.positions[s.columns],
            "delta_elbo": s.delta_elbo, "delta_elbo_sem": s.sem if s.sem is not None else np.nan,
            "evolutionary_index": s.evolutionary_index, "pathogenicity": self.pathogenicity,
            "uncertainty": self.uncertainty, "evol_indices": s.evolutionary_index, "EVE_scores": self.pathogenicity}
        for r, c in self.classes.items():
            data[class_column(r)] = c
        return pd.DataFrame(data)


def classify_scores(scan: ScanScores | ScanResult | Sequence[ScanScores | ScanResult], *, prior: Mixture | None = None,
                    protein_weight: float = PROTEIN_GMM_WEIGHT, retain: Sequence[int] = DEFAULT_RETAIN,
                    thresholds: str = "eve", n_init: int = N_INIT, seed: int = 0,
                    monotone: bool = True) -> Classification:
    """Fit the protein's mixture (from ``prior`` when given, as EVE), then score, measure and classify.
    ``scan``: :class:`ScanScores`, or a :class:`~deepseqvae.score.ScanResult` as ``saturation_scan`` returns it, or
    a list of them: the scans of an ensemble, classified by their mean (:func:`mean_scans`).

    ``monotone=False`` gives EVE's raw posterior (see :func:`pathogenicity`).
    """
    if isinstance(scan, list | tuple):
        if not scan:
            raise ClassifyError("no scan to classify")
        scan = mean_scans([s if isinstance(s, ScanScores) else ScanScores.from_scan(s) for s in scan])
    if not isinstance(scan, ScanScores):
        scan = ScanScores.from_scan(scan)
    if not 0.0 <= protein_weight <= 1.0:
        raise ClassifyError(f"protein_GMM_weight must be in [0, 1], got {protein_weight}")
    retain = list(dict.fromkeys([100, *retain]))  # the 100 % classes always come first
    x = scan.evolutionary_index
    if prior is not None and prior.separation < MIN_SEPARATION:
        log.warning("the pooled prior's components overlap (Ashman's D = %.2f < %g): it has no clear pathogenic "
                    "component and will blur this protein's classes; pool more proteins or classify without a "
                    "prior", prior.separation, MIN_SEPARATION)
    mixture = fit_mixture(x, n_init=n_init, seed=seed, init=prior, source=scan.source)
    if mixture.separation < MIN_SEPARATION:
        log.warning("%s: the two components fitted to its scores overlap (Ashman's D = %.2f < %g): the scores have "
                    "no clear second mode, so the classes rest on a weak split", scan.protein or scan.source or
                    "this protein", mixture.separation, MIN_SEPARATION)
    p = pathogenicity(x, mixture, prior, protein_weight, monotone)
    u = binary_entropy(p, pathogenicity(x, mixture, prior, protein_weight, monotone, benign=True))
    thr = uncertainty_thresholds(retain, u, thresholds)
    log.info("%s: mixture weights %s means %s; %d variants", scan.protein, mixture.weights, mixture.means, x.size)
    cls = Classification(scan=scan, mixture=mixture, prior=prior, protein_weight=protein_weight, pathogenicity=p,
                         uncertainty=u, thresholds=thr, threshold_source=thresholds,
                         monotone=monotone, classes=assign_classes(p, u, thr))
    if (note := cls.off_nominal_note()) is not None:
        log.warning("%s: %s", scan.protein or scan.source or "this protein", note)
    return cls


# --------------------------------------------------------------------------------------------
# A pooled prior (EVE's "main" mixture over many proteins)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PooledPrior:
    """A mixture fitted to the pooled evolutionary indices of several proteins' scans."""

    mixture: Mixture
    sources: tuple[tuple[str, int], ...]  # (scan file, variants) per protein
    n_init: int
    seed: int


def fit_prior(scans: Sequence[ScanScores], *, n_init: int = N_INIT, seed: int = 0) -> PooledPrior:
    """Fit EVE's pooled mixture to the evolutionary indices of all ``scans`` together."""
    if not scans:
        raise ClassifyError("a pooled prior needs at least one scan")
    x = np.concatenate([s.evolutionary_index for s in scans])
    mixture = fit_mixture(x, n_init=n_init, seed=seed, source=", ".join(s.source or "?" for s in scans))
    if mixture.separation < MIN_SEPARATION:
        log.warning("the pooled mixture's components overlap (Ashman's D = %.2f < %g): as a prior it would blur "
                    "every protein's classes; pool more proteins", mixture.separation, MIN_SEPARATION)
    return PooledPrior(mixture, tuple((s.source, len(s.mutants)) for s in scans), n_init, seed)


def save_prior(prior: PooledPrior, path: str | os.PathLike) -> Path:
    """Write ``prior`` as JSON (atomically); no pickle."""
    payload = {"format": PRIOR_FORMAT, "version": PRIOR_VERSION, "mixture": prior.mixture.to_dict(),
               "sources": [{"scan": s, "variants": n} for s, n in prior.sources],
               "n_init": prior.n_init, "seed": prior.seed}
    path = Path(path)
    with atomic_write(path, "w") as fh:
        json.dump(payload, fh, indent=2)
        fh.write("\n")
    return path


def load_prior(path: str | os.PathLike) -> PooledPrior:
    """Read a prior written by :func:`save_prior`; a clear :class:`ClassifyError` for anything else."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text())
    except FileNotFoundError:
        raise ClassifyError(f"{path}: no such prior file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ClassifyError(f"{path}: not a readable JSON prior ({exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != PRIOR_FORMAT:
        raise ClassifyError(f"{path}: not a deepseqvae mixture prior (no '{PRIOR_FORMAT}' marker); "
                            f"make one with 'deepseqvae classify-prior'")
    if payload.get("version") != PRIOR_VERSION:
        raise ClassifyError(f"{path}: a mixture prior of version {payload.get('version')!r}; this deepseqvae reads "
                            f"version {PRIOR_VERSION}: make it again with 'deepseqvae classify-prior'")
    try:
        return PooledPrior(Mixture.from_dict(payload["mixture"]),
                           tuple((str(s["scan"]), int(s["variants"])) for s in payload.get("sources", [])),
                           int(payload.get("n_init", 0)), int(payload.get("seed", 0)))
    except (KeyError, TypeError, ValueError) as exc:
        raise ClassifyError(f"{path}: invalid mixture prior ({exc})") from None


# --------------------------------------------------------------------------------------------
# Labels (ClinVar) and evaluation
# --------------------------------------------------------------------------------------------


@dataclass
class LabelTable:
    """A table of labelled variants: EVE's ``protein_name,mutations,ClinVar_labels`` or ``mutant,label``."""

    path: str
    mutants: list[str]             # (R,) as written
    raw_labels: list[str]          # (R,) label cells as written
    labels: np.ndarray             # (R,) 1.0 pathogenic, 0.0 benign, NaN anything else
    proteins: list[str] | None     # (R,) protein name per row, when the table has a protein column
    label_col: str
    separators: str
    line_numbers: tuple[int, ...] = ()  # (R,) the file line of each row (MutantTable.line_numbers); () = unknown
    protein_col: str = "protein_name"   # the protein column's name, as written
    alternatives: bool = False          # a mutant cell lists one change per transcript (ClinVar's Protein change)

    def line(self, row: int) -> int:
        """The file line (1-based) of 0-based row ``row`` (:func:`deepseqvae.tables.file_line`)."""
        return file_line(self.line_numbers, row)


def _label_value(text: str) -> float:
    """1.0 (pathogenic), 0.0 (benign) or NaN (neither) for one label cell: 1 / 0 (also 1.0, 1,0), a word of
    :data:`_LABEL_VALUES`, or ClinVar's combined "Pathogenic/Likely pathogenic" (parts that disagree: NaN)."""
    key = " ".join(text.strip().lower().replace("_", " ").split())
    try:
        v = float(key.replace(",", ".") if key.count(",") == 1 and "." not in key else key)
    except ValueError:
        parts = {_LABEL_VALUES.get(part.strip(), math.nan) for part in key.split("/")}
        return parts.pop() if len(parts) == 1 else math.nan
    return v if v in (0.0, 1.0) else math.nan


def read_labels(path: str | os.PathLike | pd.DataFrame, *, label_col: str | None = None,
                mutant_col: str | None = None) -> LabelTable:
    """Read a label table (a file, or a DataFrame in memory); the label column is ``label_col`` or the one named
    ClinVar_labels / label(s).

    Labels 1 / pathogenic / likely pathogenic (also ClinVar's Pathogenic/Likely_pathogenic, P, LP) mean
    pathogenic, 0 / benign / likely benign (Benign/Likely_benign, B, LB) benign (:func:`_label_value`); any other
    value (EVE's 0.5, empty, Uncertain significance, Conflicting ...) is kept and reported by :func:`match_labels`.
    """
    try:  # classify's option for the labels' mutant column; it takes no three columns
        if isinstance(path, pd.DataFrame):
            from .tables import mutant_table

            table = mutant_table(path, mutant_col=mutant_col)
            path = "the labels table"  # in messages and the report
        else:
            table = read_mutant_table(path, mutant_col=mutant_col,
                                      option_names=("--label-mutant-col", None, None, None))
    except MutantColumnError as exc:
        raise ClassifyError(str(exc)) from None
    by_key = {str(c).strip().lower(): c for c in table.frame.columns}
    if label_col is not None:
        col = label_col if label_col in table.frame.columns else by_key.get(label_col.strip().lower())
    else:
        found = [by_key[k] for k in _LABEL_COLUMNS if k in by_key]
        if len(found) > 1:  # e.g. label and labels: which one is meant is the user's to say
            raise ClassifyError(f"{path}: several label columns ({', '.join(map(str, found))}): choose one with "
                                "--label-col")
        col = found[0] if found else None
    if col is None:
        raise ClassifyError(f"{path}: no label column {label_col or 'ClinVar_labels or label'} (columns: "
                            f"{', '.join(map(str, table.frame.columns))}); name it with --label-col")
    raw = table.frame[col].astype(str).tolist()
    pcol = next((by_key[k] for k in _PROTEIN_COLUMNS if k in by_key and by_key[k] != table.mutant_col), None)
    # ClinVar's Name column: the protein change in its last parentheses
    mutants = [m.group(1) if (m := _HGVS_TAIL_RE.search(t)) else t for t in table.mutants]
    return LabelTable(path=str(path), mutants=mutants, raw_labels=raw,
                      labels=np.array([_label_value(v) for v in raw], dtype=np.float64),
                      proteins=table.frame[pcol].astype(str).str.strip().tolist() if pcol is not None else None,
                      label_col=str(col), separators=table.separators, line_numbers=table.line_numbers,
                      protein_col=str(pcol) if pcol is not None else "protein_name",
                      alternatives=str(table.mutant_col or "").strip().lower() == _CLINVAR_CHANGE_COLUMN)


def choose_protein(labels: LabelTable, protein: str) -> str:
    """The ``protein_name`` of ``labels`` to use: ``protein``, or the only one when ``protein`` is ""."""
    if labels.proteins is None:
        return protein
    names = list(dict.fromkeys(labels.proteins))
    if protein in names:
        return protein
    if not protein and len(names) == 1:
        return names[0]
    folded = [n for n in names if n.casefold() == protein.casefold()]
    if protein and len(folded) == 1:  # --protein p53_human for P53_HUMAN
        return folded[0]
    if len(names) == 1 and labels.protein_col.strip().lower() != "protein_name":
        # one gene or UniProt name (TP53), which the model's focus id (P53_HUMAN) need not spell: all its rows, their
        # wild types checked against the focus (another protein's fail there)
        log.info("%s: column %s names %s only: its rows are %s's", labels.path, labels.protein_col, names[0],
                 protein or "this protein")
        return names[0]
    shown = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
    what = f"no row for protein {protein!r}" if protein else "rows for several proteins"
    raise ClassifyError(f"{labels.path}: {what} in column {labels.protein_col} (it has {shown}); "
                        "give --protein as that column names it")


@dataclass
class LabelMatch:
    """Every row of a label table with its status and, when ``ok``, its row in the scan."""

    labels: LabelTable
    protein: str
    status: list[str]     # (R,) "ok" or "<reason>: <detail>"
    index: np.ndarray     # (R,) row of the scan, -1 unless ok

    @property
    def ok(self) -> np.ndarray:
        return self.index >= 0

    def summary(self) -> dict[str, int]:
        """Rows per status reason, ``ok`` first."""
        counts: dict[str, int] = {"ok": 0}
        for s in self.status:
            key = s.split(":", 1)[0]
            counts[key] = counts.get(key, 0) + 1
        return counts


def match_labels(labels: LabelTable, scan: ScanScores, *, protein: str = "", offset: int = 0) -> LabelMatch:
    """Find each labelled variant in the scan; never drop a row, give each one a status.

    Statuses, checked in this order: ``other_protein`` (the table's protein_name is another
    protein), the mutant statuses of :func:`~deepseqvae.mutants.resolve_mutants` (``parse_error``,
    ``indel``, ``unknown_residue``, ``stop``, ``position_not_modelled``, ``wt_mismatch``, ...),
    ``not_single`` (multi-mutant or synonymous), ``not_scanned`` (absent from a partial scan),
    ``label_not_binary`` (neither pathogenic nor benign) and ``duplicate`` (same variant as an
    earlier row; ``duplicate_conflict``: labelled both ways, no row of it used). ``offset`` is added to the label
    positions. A ClinVar "Protein change" cell (one change per transcript) is the change that fits the focus
    (``ambiguous`` when several do). Raises :class:`ClassifyError` when more of this protein's rows name a wild
    type the focus does not have than can be used (another numbering: the shift and ``--offset`` named when one
    fits), rather than report on the rows that fit by chance.
    """
    name = choose_protein(labels, protein)
    positions = [int(p) for p in scan.positions]
    resolved = resolve_mutants(labels.mutants, scan.focus_seq, positions, offset=offset, separators=labels.separators)
    if labels.alternatives:
        resolved = [_one_transcript(res, scan.focus_seq, positions, offset) for res in resolved]
    row_of = {(int(c), int(k)): i for i, (c, k) in enumerate(zip(scan.columns, scan.codes, strict=True))}
    status, index, first, conflicted = [], np.full(len(resolved), -1, dtype=np.int64), {}, {}
    for r, res in enumerate(resolved):
        if labels.proteins is not None and labels.proteins[r] != name:
            status.append(f"other_protein: {labels.proteins[r]}")
        elif not res.ok:
            status.append(res.status)
        elif len(res.changes) != 1 or len(res.substitutions) != 1:
            what = "synonymous or wild type" if not res.changes else "a multi-mutant"
            status.append(f"not_single: {res.text} is {what}; only single missense variants are classified")
        elif res.changes[0] not in row_of:
            status.append(f"not_scanned: {res.text} is not in the scan {scan.source}")
        elif not np.isfinite(labels.labels[r]):
            status.append(f"label_not_binary: {labels.raw_labels[r]!r} is neither pathogenic (1) nor benign (0)")
        elif res.changes[0] in first:
            f = first[res.changes[0]]
            if res.changes[0] in conflicted:  # a third label of a variant already labelled both ways
                status.append(f"duplicate_conflict: lines {labels.line(f)} and {conflicted[res.changes[0]]} label "
                              "it both ways")
            elif labels.labels[f] == labels.labels[r]:
                status.append(f"duplicate: same variant as line {labels.line(f)}")
            else:  # two labels for one variant: neither is used (the first row's "ok" is taken back)
                status.append(f"duplicate_conflict: line {labels.line(f)} labels it {labels.raw_labels[f]!r}")
                conflicted[res.changes[0]] = labels.line(r)
                if index[f] >= 0:
                    index[f] = -1
                    status[f] = f"duplicate_conflict: line {labels.line(r)} labels it {labels.raw_labels[r]!r}"
        else:
            first[res.changes[0]] = r
            index[r] = row_of[res.changes[0]]
            status.append("ok")
    match = LabelMatch(labels, name, status, index)
    counts = match.summary()
    mine = [res for res, st in zip(resolved, status, strict=True) if not st.startswith("other_protein")]
    fit = sum(res.ok for res in mine)  # rows whose wild type fits (usable or not: VUS, multi-mutants, duplicates)
    if counts.get("wt_mismatch", 0) > fit:  # a report on the rows that fit by chance would mislead
        raise ClassifyError(f"{labels.path}: {counts['wt_mismatch']} of its {len(mine)} rows for "
                            f"{name or 'this protein'} name a wild type that the focus sequence does not have, "
                            f"{fit} fit it: "
                            f"{suggest_cause(mine, scan.focus_seq, positions, offset=offset)}")
    if counts["ok"] < len(status):
        log.warning("%s: %d of %d label rows used (%s)", labels.path, counts["ok"], len(status),
                    ", ".join(f"{k} {v}" for k, v in counts.items() if k != "ok"))
    return match


def _one_transcript(res: ResolvedMutant, focus_seq: str, positions: list[int], offset: int) -> ResolvedMutant:
    """The change of a ClinVar "Protein change" cell (one change per transcript, comma-separated: "R136H, R43H,
    R175H, R82H") that fits the focus sequence: the one whose position is modelled and whose wild type it has.
    None fitting, or several, gives the cell a status instead; a cell of one change is ``res`` itself."""
    parts = list(dict.fromkeys(q.strip() for q in re.split(r"[,;]", res.text) if q.strip()))  # a repeat: one
    if len(parts) < 2:
        return res if len(parts) == 0 else resolve_mutants(parts, focus_seq, positions, offset=offset)[0]
    each = resolve_mutants(parts, focus_seq, positions, offset=offset)
    fits = [q for q in each if q.ok and len(q.substitutions) == 1]
    if len(fits) == 1:
        return ResolvedMutant(res.text, fits[0].changes, "ok", fits[0].substitutions)
    if fits:
        return ResolvedMutant(res.text, (), f"ambiguous: {', '.join(q.text for q in fits)} all fit the focus "
                                            "sequence (ClinVar lists one change per transcript)")
    # a change at a residue the model does not cover first: the focus's own transcript may be the one outside it (a
    # domain's model), while another transcript's numbering lands inside with a wild type that fits by chance or not
    first = next((q for q in each if q.reason == "position_not_modelled"), each[0])
    return ResolvedMutant(res.text, (), f"{first.reason}: none of the changes {res.text!r} (one per transcript, as "
                                        f"ClinVar lists them) fits the focus sequence, e.g. {first.status}")


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC of ``scores`` for label 1 (ties count half); NaN with fewer than
    :data:`MIN_PER_CLASS_AUC` variants in either class (:func:`deepseqvae.score.roc_auc`)."""
    from .score import roc_auc

    return roc_auc(scores, labels, min_per_class=MIN_PER_CLASS_AUC)


@dataclass
class Evaluation:
    """How the scores and classes agree with the labels."""

    match: LabelMatch
    n_pathogenic: int
    n_benign: int
    auc_evolutionary_index: float   # AUC of −ΔELBO (the raw score)
    auc_pathogenicity: float        # AUC of EVE_scores (the calibrated score)
    by_retain: pd.DataFrame         # one row per retained percentage
    table: pd.DataFrame             # every label row with its status, scores and classes


def _ratio(a: int, b: int) -> float:
    return a / b if b else math.nan


def evaluate(cls: Classification, match: LabelMatch) -> Evaluation:
    """AUCs and, at each retained percentage, coverage and accuracy overall and per class.

    Coverage = labelled variants classified (not Uncertain) / labelled variants (of that class);
    accuracy = classified ones whose class equals the label / classified ones. Only ``ok`` rows count.
    """
    ok = match.ok
    idx = match.index[ok]
    y = match.labels.labels[ok]
    path, ben = y == 1, y == 0
    rows = []
    for r, c in cls.classes.items():
        called = c[idx]  # (n,)
        classified = called != UNCERTAIN
        correct = classified & ((called == PATHOGENIC) == path)
        rows.append({
            "retain_pct": r, "threshold": cls.thresholds[r], "variants_retained": float(np.mean(c != UNCERTAIN)),
            "labelled": int(ok.sum()), "classified": int(classified.sum()),
            "coverage": _ratio(int(classified.sum()), int(ok.sum())),
            "accuracy": _ratio(int(correct.sum()), int(classified.sum())),
            "pathogenic_coverage": _ratio(int((classified & path).sum()), int(path.sum())),
            "pathogenic_accuracy": _ratio(int((correct & path).sum()), int((classified & path).sum())),
            "benign_coverage": _ratio(int((classified & ben).sum()), int(ben.sum())),
            "benign_accuracy": _ratio(int((correct & ben).sum()), int((classified & ben).sum())),
        })
    by_retain = pd.DataFrame(rows).sort_values("retain_pct", kind="stable").reset_index(drop=True)
    # the AUCs in the machine-readable metrics too (NaN: too few labels of a class), not only in the report
    by_retain["auc_evolutionary_index"] = auc(cls.scan.evolutionary_index[idx], y)
    by_retain["auc_pathogenicity"] = auc(cls.pathogenicity[idx], y)
    lt = match.labels
    # "row": the file line of each label row, as the statuses name lines (comments, blank lines, quoted cells counted)
    table = pd.DataFrame({"row": [lt.line(i) for i in range(len(lt.mutants))], "mutant": lt.mutants,
                          "label": lt.raw_labels, "status": match.status})
    if lt.proteins is not None:
        table.insert(1, lt.protein_col, lt.proteins)
    # the scan's variant each usable row was matched to (a ClinVar cell of several transcripts' changes, p.Arg175His)
    variant = np.full(len(table), "", dtype=object)
    variant[ok] = [cls.scan.mutants[i] for i in idx]
    table.insert(table.columns.get_loc("mutant") + 1, "variant", variant)
    frame = cls.frame
    for col in ("delta_elbo", "evolutionary_index", "pathogenicity", "uncertainty",
                *(class_column(r) for r in cls.classes)):
        values = frame[col].to_numpy()
        filled = np.full(len(table), np.nan, dtype=object if values.dtype == object else np.float64)
        filled[ok] = values[idx]
        table[col] = filled
    return Evaluation(match=match, n_pathogenic=int(path.sum()), n_benign=int(ben.sum()),
                      auc_evolutionary_index=float(by_retain["auc_evolutionary_index"].iloc[0]),
                      auc_pathogenicity=float(by_retain["auc_pathogenicity"].iloc[0]), by_retain=by_retain,
                      table=table)


def _fmt(v: float, pct: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{100 * v:.1f} %" if pct else f"{v:.3f}"


def report_markdown(cls: Classification, ev: Evaluation) -> str:
    """A short Markdown report of :func:`evaluate`'s numbers (no header: the caller adds its own)."""
    m = cls.mixture
    counts = ev.match.summary()
    status = ", ".join(f"{k} {v}" for k, v in counts.items())
    note = "" if min(ev.n_pathogenic, ev.n_benign) >= MIN_PER_CLASS_AUC else (
        f" (no AUC: fewer than {MIN_PER_CLASS_AUC} labelled variants in a class)")
    prior = (f"; mixed with a pooled prior (means {_means(cls.prior)}, separation D {cls.prior.separation:.2f}) at "
             f"protein_GMM_weight {cls.protein_weight:g}" if cls.prior is not None else "; no pooled prior")
    lines = [
        f"## {cls.scan.protein or cls.scan.source}: {len(cls.scan.mutants):,} single mutants\n",
        (f"- mixture over the evolutionary index (−ΔELBO): benign mean {m.means[0]:.3f} (sd "
         f"{math.sqrt(m.variances[0]):.3f}, weight {m.weights[0]:.3f}), pathogenic mean {m.means[1]:.3f} "
         f"(sd {math.sqrt(m.variances[1]):.3f}, weight {m.weights[1]:.3f}), separation (Ashman's D) "
         f"{m.separation:.2f}{prior}"),
        (f"- thresholds: {'EVE defaults' if cls.threshold_source == 'eve' else 'recomputed on this protein'}; "
         f"posterior {'made monotone in the evolutionary index' if cls.monotone else 'raw, as EVE'}"
         + (f". {off_note}" if (off_note := cls.off_nominal_note()) else "")),
        f"- labels {ev.match.labels.path} (protein {ev.match.protein or '–'}): {len(ev.match.status)} rows; {status}",
        f"- used: {ev.n_pathogenic} pathogenic, {ev.n_benign} benign{note}",
        (f"- AUC of the evolutionary index (raw): {_fmt(ev.auc_evolutionary_index)}; "
         f"AUC of EVE_scores (calibrated): {_fmt(ev.auc_pathogenicity)}"),
        ("- coverage = labelled variants classified (not Uncertain) / labelled variants; accuracy = classified "
         "ones whose class is their label / classified ones (per class: among that class's labels)\n"),
        ("| retained | threshold | variants classified | labelled classified | accuracy | pathogenic: "
         "coverage | pathogenic: accuracy | benign: coverage | benign: accuracy |"),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for _, row in ev.by_retain.iterrows():
        thr = "none" if math.isinf(row.threshold) else f"{row.threshold:.4f}"
        lines.append(f"| {int(row.retain_pct)} % | {thr} | {_fmt(row.variants_retained, True)} | "
                     f"{int(row.classified)} / {int(row.labelled)} | {_fmt(row.accuracy, True)} | "
                     f"{_fmt(row.pathogenic_coverage, True)} | {_fmt(row.pathogenic_accuracy, True)} | "
                     f"{_fmt(row.benign_coverage, True)} | {_fmt(row.benign_accuracy, True)} |")
    return "\n".join(lines) + "\n"


def _means(m: Mixture | None) -> str:
    """``benign mean / pathogenic mean`` of a mixture, for reports."""
    return "–" if m is None else f"{m.means[0]:.3f} / {m.means[1]:.3f}"


__all__ = [
    "BENIGN",
    "DEFAULT_RETAIN",
    "EVE_DECILES",
    "EVE_QUARTILES",
    "EVE_THRESHOLDS",
    "MIN_PER_CLASS_AUC",
    "MIN_SEPARATION",
    "N_INIT",
    "PATHOGENIC",
    "PROTEIN_GMM_WEIGHT",
    "RETAINED_DRIFT",
    "UNCERTAIN",
    "Classification",
    "Evaluation",
    "LabelMatch",
    "LabelTable",
    "Mixture",
    "PooledPrior",
    "ScanScores",
    "assign_classes",
    "auc",
    "binary_entropy",
    "choose_protein",
    "class_column",
    "classify_scores",
    "evaluate",
    "fit_mixture",
    "fit_prior",
    "load_prior",
    "match_labels",
    "mean_scans",
    "pathogenicity",
    "protein_name",
    "read_labels",
    "read_scan",
    "report_markdown",
    "save_prior",
    "uncertainty_thresholds",
]
