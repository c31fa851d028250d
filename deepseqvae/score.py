"""Mutation effects: the scoring interface, ΔELBO of the VAE, mutant tables and saturation scans.

Any model that implements :class:`MutationScorer` (the VAE through :class:`VAEScorer`, the
site-independent :class:`~deepseqvae.independent.IndependentModel` directly) is scored by
:func:`score_table` and :func:`saturation_scan` alike; which class a checkpoint holds is decided in
one place, :meth:`deepseqvae.checkpoint.Checkpoint.scorer`.

The VAE's score is ΔELBO = ELBO(mutant) − ELBO(wild type), averaged over K posterior samples;
unless the caller fixes K, each model's K is its automatic one (:func:`auto_samples`: the fewest
rounds of :data:`AUTO_ROUND` samples whose scores of a fixed probe of single substitutions reach
reliability :data:`AUTO_RELIABILITY`), found while scoring: the probe rides along in the same pass.

Common random numbers: in sample k one decoder-weight draw and one latent noise vector ε (D,) are
shared by the wild type and every mutant, so the wild type and synonymous variants score exactly
0 and the Monte-Carlo variance of the *differences* is small. Memory is bounded independently of
the number of mutants: the encoder output (μ, log σ) is cached per mutant (2·D floats), samples
form the outer loop and mutants are processed in batches inside it, with running (Welford) means
and variances per mutant.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pandas as pd
import torch

from .alphabet import ALPHABET, N_AA
from .errors import CheckpointError, InvalidMutantError, MutantTableError
from .model import VAE
from .mutants import ResolvedMutant, resolve_mutants, status_summary, suggest_cause
from .runtime import SEED_MAX, whole_number
from .tables import MutantTable, mutant_table, numeric_column
from .weights import resolve_device

log = logging.getLogger(__name__)

#: the substitutions of one variant: ``((column, new ALPHABET code), ...)``
Changes = tuple[tuple[int, int], ...]


class MutationScorer(Protocol):
    """What scoring needs from a model: scores of variants of the wild type, higher = fitter.

    A new model kind is one class with these three attributes and one method, registered in
    :mod:`deepseqvae.checkpoint`; :func:`score_table` and :func:`saturation_scan` then score it.
    """

    sampled: bool      # True: scores are means over ``n_samples`` random draws with a standard error
    method: str        # what a score is, for titles ("ΔELBO", "site-independent log-ratio")
    score_label: str   # axis label of a score

    def score_changes(self, wt_codes: np.ndarray, changes: Sequence[Changes], *, n_samples: int | None, seed: int,
                      device: torch.device | str, batch_size: int, progress: bool
                      ) -> tuple[np.ndarray, np.ndarray, int | None]:
        """``(mean, sem, K)`` of the M variants of ``wt_codes`` (L,) given by ``changes``: their scores and
        standard errors, (M,) each, and the samples K drawn: ``n_samples``, or the scorer's own choice when it
        is None; K is None when the scores are not sampled."""
        ...


class VAEScorer:
    """:class:`MutationScorer` of a VAE: :func:`delta_elbo` with common random numbers."""

    sampled = True
    method = "ΔELBO"
    score_label = "ΔELBO (mutant − wild type)"

    def __init__(self, model: VAE) -> None:
        self.model = model

    def score_changes(self, wt_codes: np.ndarray, changes: Sequence[Changes], *, n_samples: int | None, seed: int,
                      device: torch.device | str, batch_size: int, progress: bool
                      ) -> tuple[np.ndarray, np.ndarray, int]:
        """:func:`delta_elbo` of the variants. With ``n_samples`` None the automatic K is found in the same pass:
        :func:`probe_changes` are scored first in it and its rounds stop where their reliability reaches
        :data:`AUTO_RELIABILITY` (at most :func:`default_samples` of ``device``), the K :func:`auto_samples` finds
        from the same draws, without a pass of their own (its fixed cost per sample, a decoder-weight draw and
        the output matrix, is paid once)."""
        changes = list(changes)
        if n_samples is not None:
            res = delta_elbo(self.model, wt_codes, apply_changes(wt_codes, changes), n_samples=n_samples, seed=seed,
                             device=device, batch_size=batch_size, progress=progress)
            return res.mean, res.sem, res.n_samples
        res, n_probe = _with_probe(self.model, wt_codes, changes, seed=seed, device=device, batch_size=batch_size,
                                   most=default_samples(device), progress=progress)
        return res.mean[n_probe:], res.sem[n_probe:], res.n_samples


@dataclass
class DeltaElbo:
    """Scores of M variants."""

    mean: np.ndarray  # (M,) mean over samples of ELBO(variant) − ELBO(wild type); higher = fitter
    sem: np.ndarray   # (M,) standard error of that mean
    n_samples: int    # samples drawn
    trace: dict[int, np.ndarray] = field(default_factory=dict)  # {k: (M,) mean of the first k samples}


#: the automatic K: samples are drawn in rounds of AUTO_ROUND until the scores' reliability reaches
#: AUTO_RELIABILITY (benchmarks/results/samples-*.md)
AUTO_ROUND = 50
AUTO_RELIABILITY = 0.999
#: how many single substitutions of the focus the automatic K is measured on (a fixed draw)
AUTO_PROBE = 200


class Welford:
    """Running mean and sum of squared deviations, over samples, of M values (float64), and the
    reliability of the means."""

    def __init__(self, m: int, device: torch.device | str) -> None:
        self.k = 0
        self.mean = torch.zeros(m, dtype=torch.float64, device=device)  # (M,)
        self.m2 = torch.zeros(m, dtype=torch.float64, device=device)  # (M,)

    def add(self, x: torch.Tensor) -> None:
        """Take one sample ``x`` (M,)."""
        self.k += 1
        delta = x - self.mean
        self.mean += delta / self.k
        self.m2 += delta * (x - self.mean)

    def reliability(self) -> float:
        """1 − (the means' mean Monte-Carlo variance) / (their variance across the M values): the
        expected squared correlation of the M means with their limit over infinitely many samples.
        −inf where undefined (fewer than 2 samples or 3 values, or no spread)."""
        if self.k < 2 or self.mean.numel() < 3:
            return -math.inf
        spread = float(self.mean.var())
        if not spread > 0:
            return -math.inf
        noise = float((self.m2 / (self.k - 1)).mean()) / self.k
        return 1.0 - noise / spread


def probe_changes(wt_codes: np.ndarray, n: int = AUTO_PROBE) -> list[Changes]:
    """A fixed draw of ``n`` of the 19·L single substitutions of ``wt_codes`` (L,) (all when fewer),
    in position order: the variants :func:`auto_samples` measures."""
    singles = [((c, a),) for c in range(len(wt_codes)) for a in range(N_AA) if a != wt_codes[c]]
    if len(singles) <= n:
        return singles
    pick = np.sort(np.random.default_rng(0).choice(len(singles), size=n, replace=False))
    return [singles[i] for i in pick]


def auto_samples(model: VAE, wt_codes: np.ndarray, *, seed: int, device: torch.device | str = "cpu",
                 batch_size: int = 2048, most: int = 400) -> int:
    """The automatic K of ``model`` and scoring ``seed``: the first multiple of :data:`AUTO_ROUND`
    samples at which the ΔELBO of :func:`probe_changes` (the same draws as any scoring run with that
    seed) reaches reliability :data:`AUTO_RELIABILITY`, at most ``most``.

    It depends on the model, the seed and the device, not on the variants a caller scores, so a
    table and a saturation scan of one model use the same K and agree. The reliability (the expected
    squared correlation of the scores with their K → ∞ limit) is measured on each sample's
    differences less their mean over the probe: the wild type's draw, shared by every variant of a
    sample, moves them alike and changes no ranking.
    """
    return _with_probe(model, wt_codes, [], seed=seed, device=device, batch_size=batch_size, most=most)[0].n_samples


def _with_probe(model: VAE, wt_codes: np.ndarray, changes: list[Changes], *, seed: int, device: torch.device | str,
                batch_size: int, most: int, progress: bool = False) -> tuple[DeltaElbo, int]:
    """(:func:`delta_elbo` of :func:`probe_changes` then ``changes``, in one pass that stops at the automatic K,
    the number of probe rows leading it): the one place the automatic K is measured."""
    probe = probe_changes(wt_codes)
    variants = apply_changes(wt_codes, [*probe, *changes])  # (P + M, L): the probe first
    res = delta_elbo(model, wt_codes, variants, n_samples=most, seed=seed, device=device, batch_size=batch_size,
                     progress=progress, min_reliability=AUTO_RELIABILITY, reliability_rows=len(probe))
    log.info("automatic K: %d samples (reliability >= %s on %d single substitutions, at most %d)", res.n_samples,
             AUTO_RELIABILITY, len(probe), most)
    return res, len(probe)


def apply_changes(wt_codes: np.ndarray, changes: Sequence[Changes]) -> np.ndarray:
    """Codes (M, L) int8 of variants: ``wt_codes`` (L,) with each ``(column, code)`` change applied."""
    out = np.repeat(wt_codes[None, :].astype(np.int8), len(changes), axis=0)
    rows = [i for i, ch in enumerate(changes) for _ in ch]
    cols = [c for ch in changes for c, _ in ch]
    vals = [a for ch in changes for _, a in ch]
    if rows:
        out[rows, cols] = vals
    return out


@torch.no_grad()
def encode_batched(model: VAE, codes: np.ndarray | torch.Tensor, batch_size: int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoder mean and log σ, (M, D) each, of int codes (M, L), ``batch_size`` rows at a time.

    The first layer gathers rows of its weight (no one-hot input: bounded memory); each batch is moved to the
    model's device, so ``codes`` may stay on the CPU. The results live on the model's device.
    """
    device = model.decoder.mu["W_out"].device
    dtype = model.decoder.mu["W_out"].dtype
    mus, log_sigmas = [], []
    for start in range(0, codes.shape[0], batch_size):
        batch = codes[start:start + batch_size]  # (b, L); a NumPy batch is copied (it may be read-only)
        batch = (torch.tensor(batch) if isinstance(batch, np.ndarray) else batch).to(device, torch.int8)
        mu, log_sigma = model.encoder(batch)  # (b, D) each; gather-sum first layer on the codes
        mus.append(mu)
        log_sigmas.append(log_sigma)
    if not mus:
        D = model.cfg.latent_dim
        return torch.zeros(0, D, dtype=dtype, device=device), torch.zeros(0, D, dtype=dtype, device=device)
    return torch.cat(mus), torch.cat(log_sigmas)


@torch.no_grad()
def delta_elbo(
    model: VAE,
    wt_codes: np.ndarray,
    variant_codes: np.ndarray,
    *,
    n_samples: int,
    seed: int = 0,
    device: torch.device | str = "cpu",
    batch_size: int = 2048,
    progress: bool = False,
    trace_at: tuple[int, ...] = (),
    min_reliability: float | None = None,
    reliability_rows: int | None = None,
) -> DeltaElbo:
    """ΔELBO of each variant (M, L) against the wild type (L,), with common random numbers.

    Deterministic for a given ``seed``, ``n_samples`` and device. Memory use is
    O(M·D + batch_size·L·20) whatever M is. ``trace_at`` lists sample counts k at which the
    running mean is also kept (``DeltaElbo.trace[k]``): the estimate a run with ``n_samples = k``
    and the same seed would give, at no extra cost (used to study convergence in K).
    With ``min_reliability``, sampling stops after the first multiple of :data:`AUTO_ROUND` samples
    at which the scores' reliability (:meth:`Welford.reliability`) reaches it (``n_samples`` is then
    the most drawn); the estimate is then exactly that of a run with ``n_samples`` = the samples drawn.
    ``reliability_rows``: only the first this many variants decide it (None: all of them).
    """
    device = resolve_device(device)
    model = model.to(device).eval()
    L = wt_codes.shape[0]
    M = variant_codes.shape[0]
    variants = torch.as_tensor(variant_codes.reshape(M, L), dtype=torch.int8, device=device)
    wt = torch.tensor(np.asarray(wt_codes).reshape(1, L), dtype=torch.int8, device=device)  # a copy: may be read-only
    mu, log_sigma = encode_batched(model, variants, batch_size)  # (M, D) each
    wt_mu, wt_log_sigma = encode_batched(model, wt, 1)  # (1, D) each
    sigma, wt_sigma = torch.exp(log_sigma), torch.exp(wt_log_sigma)
    kl_var = VAE.latent_kl(mu, torch.log(sigma))  # (M,) the latent KL does not depend on the sample
    kl_wt = VAE.latent_kl(wt_mu, torch.log(wt_sigma))
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    stats = Welford(M, device)  # running mean and squared deviations of the per-sample differences
    diff = torch.zeros(M, dtype=torch.float64, device=device)  # (M,) this sample's differences
    # The same, of each sample's differences less their mean over the variants (for the reliability only).
    n_rel = M if reliability_rows is None else min(int(reliability_rows), M)
    centred = Welford(n_rel, device) if min_reliability is not None else None
    drawn = n_samples
    trace: dict[int, np.ndarray] = {}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        # an automatic K is drawn in rounds: the bar spans the round under way (its time left is then that round's,
        # not that of the most K, 8x more where one round is enough), and grows by a round when one more is needed
        auto = centred is not None and n_samples > AUTO_ROUND
        bar = tqdm(total=AUTO_ROUND if auto else n_samples, unit="sample", dynamic_ncols=True,
                   desc="samples (automatic K, in rounds)" if auto else None)
    dec = model.decoder
    for k in range(1, n_samples + 1):
        w = dec.draw(generator=gen)  # one decoder-weight sample shared by every sequence
        eps = torch.randn(mu.shape[1], device=device, dtype=mu.dtype, generator=gen)  # (D,) shared
        # Precompute the shared output matrix once per sample instead of once per batch.
        w = dict(w)
        w_out = dec.output_weight(w)  # (H, 20L)
        wt_elbo = _log_px(dec, w, w_out, wt_mu + wt_sigma * eps, wt) - kl_wt.double()  # (1,)
        for start in range(0, M, batch_size):
            sl = slice(start, start + batch_size)
            z = mu[sl] + sigma[sl] * eps  # (b, D)
            diff[sl] = _log_px(dec, w, w_out, z, variants[sl]) - kl_var[sl].double() - wt_elbo
        stats.add(diff)
        if k in trace_at:
            trace[k] = stats.mean.cpu().numpy().copy()
        if bar is not None:
            bar.update(1)
        if centred is not None:
            probe = diff[:n_rel]
            centred.add(probe - probe.mean())
            if k % AUTO_ROUND == 0 and k < n_samples:
                if centred.reliability() >= min_reliability:
                    drawn = k
                    break
                if bar is not None:  # one more round
                    bar.total = min(k + AUTO_ROUND, n_samples)
                    bar.refresh()
    if bar is not None:
        bar.close()
    # standard error of the mean; undefined for a single sample
    mean = stats.mean
    sem = torch.sqrt(stats.m2 / (drawn - 1) / drawn) if drawn > 1 else torch.full_like(mean, math.nan)
    # A variant identical to the wild type differs from it by exactly 0 under common random numbers;
    # set it so rather than keep the last-bit noise of computing the two in batches of other sizes.
    same = (variants == wt).all(dim=1)
    mean[same] = 0.0
    sem[same] = 0.0
    same_np = same.cpu().numpy()
    for k in trace:
        trace[k][same_np] = 0.0
    return DeltaElbo(mean.cpu().numpy(), sem.cpu().numpy(), drawn, trace)


def _log_px(dec, w: dict[str, torch.Tensor], w_out: torch.Tensor, z: torch.Tensor,
            codes: torch.Tensor) -> torch.Tensor:
    """log p(x | z) in float64, (b,), decoding with a shared, precomputed output matrix."""
    return VAE.log_likelihood(dec(z, w, w_out), codes).double()


# --- scoring a mutant table -----------------------------------------------------------------

#: the most posterior samples K the automatic choice draws (auto_samples): the paper's 2,000 on a GPU,
#: fewer on a CPU (see README)
DEFAULT_SAMPLES_GPU = 2000
DEFAULT_SAMPLES_CPU = 400


def default_samples(device: torch.device | str) -> int:
    """The automatic K's upper bound: 2,000 on CUDA, :data:`DEFAULT_SAMPLES_CPU` on the CPU."""
    return DEFAULT_SAMPLES_GPU if resolve_device(device).type == "cuda" else DEFAULT_SAMPLES_CPU


@dataclass
class TableScores:
    """Result of :func:`score_table`: the input rows with scores, and summaries."""

    frame: pd.DataFrame                   # every input column, per-model scores, score, score_sem, status
    summary: dict[str, int]               # rows per status reason ("ok" = scored)
    samples: list[int | None]             # K of each model (None: an exact score)
    automatic: bool = False               # K was each model's automatic one (auto_samples)
    spearman: dict | None = None          # {"rho", "n", "excluded", "fitness_col", ...} when a fitness column was used

    @property
    def n_samples(self) -> int | None:
        """The largest K of the models (None when no score is sampled)."""
        return max((k for k in self.samples if k is not None), default=None)

    def samples_text(self) -> str:
        """K for a message: 'K = 50 samples (automatic)', 'K = 50, 100 samples', or 'exact scores'."""
        ks = [k for k in self.samples if k is not None]
        if not ks:
            return "exact scores"
        text = f"K = {', '.join(str(k) for k in dict.fromkeys(ks))} samples"
        return text + " (automatic)" if self.automatic else text


def model_column_names(paths: list[str]) -> list[str]:
    """``score_<file stem>`` per model, made unique when two files share a stem."""
    from pathlib import Path

    names: list[str] = []
    for p in paths:
        names.append(_free_name(f"score_{Path(p).stem}", names))
    return names


def _free_name(name: str, taken) -> str:
    """``name``, or ``name_2``, ``name_3``, ... : the first not in ``taken``."""
    out, k = name, 1
    while out in taken:
        k += 1
        out = f"{name}_{k}"
    return out


def _warn_repeats(table: MutantTable, resolved, ok_idx: np.ndarray, changes: list, where: str) -> None:
    """Warn when rows name one variant more than once (``E1A`` and `` e1a ``, ``A1C:D2E`` and ``D2E:A1C``): each
    row is kept and scored, and enters a Spearman once per row, which a user may not want."""
    rows: dict[tuple, list[int]] = {}
    for i, ch in zip(ok_idx.tolist(), changes, strict=True):
        if ch:  # the wild type and synonymous rows all change nothing: not one variant named twice
            rows.setdefault(tuple(sorted(ch)), []).append(i)
    repeats = [r for r in rows.values() if len(r) > 1]
    if repeats:
        first = repeats[0]
        log.warning("%s%d variant(s) are named on more than one row (%d rows in all; e.g. %r on %s); each row is "
                    "kept and scored (a Spearman counts each)", where, len(repeats), sum(map(len, repeats)),
                    resolved[first[0]].text, ", ".join(table.row_name(i) for i in first[:4])
                    + (", ..." if len(first) > 4 else ""))


def output_column_names(existing) -> dict[str, str]:
    """Names of the score, score_sem and status columns, suffixed ``_deepseqvae`` where the input
    already has a column of that name (e.g. PTEN's measured ``score``), and ``_deepseqvae_2``, ``_3``, ... where it
    has those too (a table scored before, scored again with another model), so no input is overwritten."""
    names = ("score", "score_sem", "status")
    taken = {str(c) for c in existing}
    suffix, k = "", 1
    while any(n + suffix in taken for n in names):  # suffix all three together, so they stay recognisable
        k += 1
        suffix = "_deepseqvae" if k == 2 else f"_deepseqvae_{k - 1}"
    return {n: n + suffix for n in names}


def _check_scoring(n_samples: int | None, batch_size: int, seed: int) -> tuple[int | None, int, int]:
    """The API's bounds on what the CLI's options bound (``--samples``, ``--batch-size``, ``--seed``)."""
    return (None if n_samples is None else whole_number("n_samples", n_samples, 1),
            whole_number("batch_size", batch_size, 1), whole_number("seed", seed, 0, SEED_MAX))


def _hint_uncovered_residues(resolved: list[ResolvedMutant], info, where: str) -> None:
    """Say how to score rows that mutate a residue between two modelled ones (``info``: the model's
    :class:`~deepseqvae.checkpoint.ModelInfo`): a model of the uppercase columns
    (DeepSequence's) leaves out the focus residues the alignment writes in lowercase (gappy columns), which a model
    trained with ``--columns all`` covers."""
    if info.alignment_options.columns != "uppercase" or not info.positions:
        return
    lo, hi = min(info.positions), max(info.positions)
    inside = [r for r in resolved if r.reason == "position_not_modelled"
              and any(lo < s.pos < hi for s in r.substitutions)]
    if inside:
        log.warning("%s%d row(s) mutate a residue between modelled ones (e.g. %r): the model covers the alignment's "
                    "uppercase columns only; one trained with --columns all covers every residue of the focus",
                    where, len(inside), inside[0].text)


def score_table(
    checkpoints: Sequence,  # of Checkpoint, or one (checkpoint.py imports this module: not imported here)
    table: MutantTable | pd.DataFrame | Sequence[str],
    *,
    model_names: list[str] | None = None,
    n_samples: int | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    offset: int = 0,
    strict: bool = False,
    fitness_col: str | None = None,
    batch_size: int = 2048,
    progress: bool = False,
) -> TableScores:
    """Score every row of a mutant table with one or more models.

    ``table``: a :class:`~deepseqvae.tables.MutantTable` (``read_mutant_table``), or a DataFrame or a list of
    mutant strings in memory (:func:`~deepseqvae.tables.mutant_table`: its mutant column detected; name it by
    building the table with ``mutant_table(frame, mutant_col=...)``).
    ``checkpoints`` are :class:`~deepseqvae.checkpoint.Checkpoint` objects (or one); each is scored through
    its :class:`MutationScorer`. Rows that cannot be scored keep an empty score and a ``status``
    saying why (``--strict`` turns them into an :class:`InvalidMutantError`); if no row can be
    scored the error suggests the likely cause. With several models the output has one column per
    model and their mean as ``score``. With ``fitness_col`` the Spearman correlation over the
    scored rows is computed. ``n_samples`` None: each model's automatic K (:func:`auto_samples`).
    """
    if hasattr(checkpoints, "scorer"):  # one model
        checkpoints = [checkpoints]
    if isinstance(checkpoints, str | os.PathLike) or not checkpoints \
            or not all(hasattr(ck, "scorer") for ck in checkpoints):
        raise TypeError(f"checkpoints must be a Checkpoint or a non-empty list of them (load_checkpoint), not "
                        f"{checkpoints!r:.80}")
    table = mutant_table(table)
    fitness_col = None if fitness_col is None else str(fitness_col)  # as mutant_table names columns: 1 is "1"
    n_samples, batch_size, seed = _check_scoring(n_samples, batch_size, seed)
    if model_names is not None and (len(model_names) != len(checkpoints) or len(set(model_names)) != len(model_names)):
        raise ValueError(f"model_names must name each of the {len(checkpoints)} models once, got {list(model_names)}")
    ref = checkpoints[0].info
    for i, ck in enumerate(checkpoints[1:], start=2):
        if ck.info.focus_seq != ref.focus_seq or list(ck.info.positions) != list(ref.positions):
            raise CheckpointError("the models of an ensemble must share one focus sequence and numbering: model "
                                  f"{i} ({ck.info.focus_id}) against model 1 ({ref.focus_id}): "
                                  f"{ck.info.focus_difference(ref)}")
    resolved = resolve_mutants(table.mutants, ref.focus_seq, ref.positions, offset=offset,
                               separators=table.separators)
    summary = status_summary(resolved)
    bad = [r for r in resolved if not r.ok]
    where = f"{table.path}: " if getattr(table, "path", "") else ""
    if len(bad) == len(resolved):
        raise InvalidMutantError(f"{where}no mutant can be scored: "
                                 f"{suggest_cause(resolved, ref.focus_seq, ref.positions, offset=offset)}")
    if strict and bad:
        first = bad[0]
        rows = f"{len(bad)} row{'s' if len(bad) != 1 else ''}"
        raise InvalidMutantError(f"{where}{table.row_name(resolved.index(first))} ({first.text!r}): {first.status} "
                                 f"({rows} cannot be scored; drop --strict to keep them with a status)")
    if 2 * len(bad) >= len(resolved):  # most rows unscorable: often an offset, said before the work
        log.warning("%s%d of %d rows cannot be scored: %s", where, len(bad), len(resolved),
                    suggest_cause(resolved, ref.focus_seq, ref.positions, offset=offset))
    _hint_uncovered_residues(resolved, ref, where)
    fitness = None
    if fitness_col is not None:  # checked before the sampling, which can take hours: not after it
        try:
            fitness = numeric_column(table, fitness_col)
        except MutantTableError as exc:
            raise MutantTableError(f"{exc} (the measured fitness: --fitness-col)") from None
        if len(fitness) and not np.isfinite(fitness).any():  # e.g. a text column: no Spearman can be meant
            raise MutantTableError(f"{where}column {fitness_col!r} holds no numbers; choose the measured "
                                   "fitness column with --fitness-col")
    ok_idx = np.array([i for i, r in enumerate(resolved) if r.ok], dtype=np.int64)
    changes = [resolved[i].changes for i in ok_idx]
    _warn_repeats(table, resolved, ok_idx, changes, where)
    names = model_names or model_column_names([f"model{i}" for i in range(len(checkpoints))])
    frame = table.frame.copy()
    out_cols = output_column_names(frame.columns)  # from the input's columns: a model's column cannot move them
    if len(checkpoints) > 1:  # the models' columns never replace an input column or the three above
        taken = {str(c) for c in frame.columns} | set(out_cols.values())
        free = []
        for name in names:
            free.append(_free_name(f"{name}_deepseqvae" if name in taken else name, taken | set(free)))
        names = free
    means, sems, samples = [], [], []
    for ck, name in zip(checkpoints, names, strict=True):
        scorer = ck.scorer()
        mean, sem, K = scorer.score_changes(ref.focus_codes, changes, n_samples=n_samples, seed=seed, device=device,
                                            batch_size=batch_size, progress=progress)
        samples.append(K)
        means.append(mean)
        sems.append(sem)
        if len(checkpoints) > 1:
            col = np.full(len(resolved), np.nan)
            col[ok_idx] = mean
            frame[name] = col
    score = np.full(len(resolved), np.nan)
    score_sem = np.full(len(resolved), np.nan)
    score[ok_idx] = np.mean(means, axis=0)
    # Monte-Carlo standard error of the ensemble mean (independent estimates).
    score_sem[ok_idx] = np.sqrt(np.sum(np.square(sems), axis=0)) / len(sems)
    frame[out_cols["score"]] = score
    frame[out_cols["score_sem"]] = score_sem
    frame[out_cols["status"]] = [r.status for r in resolved]
    if table.index is not None:  # a caller's DataFrame: its own row labels, to join the scores back
        frame.index = table.index
    result = TableScores(frame=frame, summary=summary, samples=samples, automatic=n_samples is None)
    if fitness is not None:
        # the wild type and synonymous rows change no residue: their score is 0 by definition, so they carry no
        # ranking and are left out, as in ProteinGym's substitution benchmarks (they keep their row and score)
        no_change = np.array([r.ok and not r.changes for r in resolved], dtype=bool)  # (R,) wild type, synonymous
        # a score of -inf (a site-independent model without pseudocount: a residue its alignment never shows) is a
        # score, ranked last; NaN (an unscorable row) is none
        has_score = ~np.isnan(score) & (score != np.inf)
        scored = has_score & np.isfinite(fitness)
        use = scored & ~no_change
        rho = spearman(score[use], fitness[use])
        result.spearman = {
            "fitness_col": fitness_col, "rho": rho, "n": int(use.sum()),
            "excluded": int(len(score) - use.sum()),
            "excluded_unscorable": int((~has_score).sum()),
            "excluded_no_fitness": int((has_score & ~np.isfinite(fitness)).sum()),
            "excluded_no_substitution": int((scored & no_change).sum()),
            "n_samples": result.n_samples, "samples_per_model": samples, "seed": seed,
        }
    return result


# --- how well scores rank: the one Spearman and the one ROC AUC (score, classify, batch) -----


def average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..M of ``x`` (M,), ties sharing their average rank (scipy's ``rankdata``, method "average"), float64.

    A NaN makes every rank NaN (as scipy). NumPy only: the score command imports no ``scipy.stats`` (over a
    second of a short command's start)."""
    x = np.asarray(x, dtype=np.float64)
    if np.isnan(x).any():
        return np.full(x.size, np.nan)
    order = np.argsort(x, kind="mergesort")  # (M,)
    xs = x[order]
    new = np.r_[True, xs[1:] != xs[:-1]]  # (M,) first element of each run of ties
    starts = np.r_[np.flatnonzero(new), x.size]  # (T + 1,) where each tie run starts, then M
    run = np.cumsum(new) - 1  # (M,) tie run of each sorted element
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = 0.5 * (starts[run] + starts[run + 1] + 1)  # mean of the 1-based ranks start+1 .. end
    return ranks


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's ρ of ``x`` and ``y`` (M,): the Pearson correlation of their average ranks (as scipy's
    ``spearmanr``); NaN with fewer than 3 pairs, a NaN among them or a constant side."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) != len(y):
        raise ValueError(f"spearman needs two sequences of one length, not {len(x)} and {len(y)}")
    if len(x) < 3:
        return float("nan")
    rx, ry = average_ranks(x), average_ranks(y)  # NaN everywhere where a side holds a NaN
    rx -= rx.mean()
    ry -= ry.mean()
    denom = math.sqrt(float(rx @ rx) * float(ry @ ry))  # NaN (a NaN) or 0 (a constant side): undefined
    return float(np.clip(float(rx @ ry) / denom, -1.0, 1.0)) if denom > 0 else float("nan")


def roc_auc(scores: np.ndarray, labels: np.ndarray, *, min_per_class: int = 1) -> float:
    """ROC AUC of ``scores`` (M,) for label 1 against label 0 (``labels`` (M,), bools count as 1/0), ties
    counting half (as sklearn); NaN with fewer than ``min_per_class`` of either label."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    n1, n0 = int((labels == 1).sum()), int((labels == 0).sum())
    if min(n1, n0) < max(min_per_class, 1):
        return float("nan")
    ranks = average_ranks(scores)  # Mann-Whitney U: AUC = (sum of ranks of positives − n1(n1+1)/2) / (n1·n0)
    return float((ranks[labels == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


# --- saturation scan ------------------------------------------------------------------------


def saturation_mutants(focus_seq: str, positions: list[int] | np.ndarray
                       ) -> tuple[list[str], list[Changes]]:
    """All ``19·L`` single substitutions, position-major, new residues in ALPHABET order.

    Returns the mutant strings (``H24A``, residue numbering from ``positions``) and, for each, its
    ``((column, new code),)`` change as :func:`deepseqvae.mutants.resolve_mutants` would give it.
    """
    names: list[str] = []
    changes: list[Changes] = []
    for col, (wt, pos) in enumerate(zip(focus_seq, positions, strict=True)):
        for code, aa in enumerate(ALPHABET):
            if aa != wt:
                names.append(f"{wt}{int(pos)}{aa}")
                changes.append(((col, code),))
    return names, changes


@dataclass
class ScanResult:
    """Scores of every single substitution of the focus sequence."""

    mutants: list[str]        # (M,) with M = 19·L, e.g. "H24A"
    columns: np.ndarray       # (M,) column index of each substitution
    codes: np.ndarray         # (M,) ALPHABET code of the new residue
    score: np.ndarray         # (M,) ΔELBO (or independent log-ratio); higher = fitter
    score_sem: np.ndarray     # (M,) Monte-Carlo standard error (0 for an exact score)
    focus_id: str
    focus_seq: str            # (L,) wild-type residues of the modelled columns
    positions: np.ndarray     # (L,) residue numbers
    method: str               # what a score is (the scorer's ``method``), e.g. "ΔELBO"
    score_label: str          # axis label of a score
    n_samples: int | None     # K (None when the scores are exact)
    seed: int

    @property
    def frame(self) -> pd.DataFrame:
        """ProteinGym-style table ``mutant, score, score_sem``."""
        return pd.DataFrame({"mutant": self.mutants, "score": self.score, "score_sem": self.score_sem})

    def matrix(self) -> np.ndarray:
        """``(L, 20)`` scores with columns in ALPHABET order; the wild-type cell is 0 (ΔELBO of itself)."""
        out = np.zeros((len(self.focus_seq), N_AA))
        out[self.columns, self.codes] = self.score
        return out

    def position_summary(self) -> pd.DataFrame:
        """Per position: residue number, wild type, mean (mutational sensitivity), min and max score."""
        L = len(self.focus_seq)
        per_pos = np.asarray(self.score, dtype=float).reshape(L, N_AA - 1)  # (L, 19): position-major order
        return pd.DataFrame({
            "position": np.asarray(self.positions, dtype=np.int64),
            "wt": list(self.focus_seq),
            "mean_score": per_pos.mean(axis=1),
            "min_score": per_pos.min(axis=1),
            "max_score": per_pos.max(axis=1),
        })

    def title(self) -> str:
        """A one-line description for a figure: the protein, the number of mutants and the method."""
        what = f"{self.method}, K = {self.n_samples} samples" if self.n_samples is not None else self.method
        lo, hi = int(self.positions[0]), int(self.positions[-1])
        return (f"Saturation scan of {self.focus_id}: {len(self.mutants):,} single substitutions at "
                f"{len(self.focus_seq)} positions ({lo}-{hi}); {what}")


def saturation_scan(
    ckpt,  # a Checkpoint (checkpoint.py imports this module: not imported here)
    *,
    n_samples: int | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    batch_size: int = 2048,
    progress: bool = False,
) -> ScanResult:
    """Score all ``19·L`` single substitutions of the focus sequence of ``ckpt`` (a Checkpoint).

    The same call as :func:`score_table` (the checkpoint's :class:`MutationScorer` with
    ``n_samples``, by default the model's automatic K (:func:`auto_samples`), ``seed`` and
    ``batch_size``), so scoring the returned mutants with ``score_table`` / ``deepseqvae score``
    with the same seed, K (or both automatic), batch size and device gives the same numbers (up to float rounding:
    other variants share their batches).
    """
    if not hasattr(ckpt, "scorer"):
        raise TypeError(f"ckpt must be a Checkpoint (load_checkpoint), not {ckpt!r:.80}")
    n_samples, batch_size, seed = _check_scoring(n_samples, batch_size, seed)
    info = ckpt.info
    names, changes = saturation_mutants(info.focus_seq, info.positions)
    scorer = ckpt.scorer()
    log.info("scanning %d single substitutions (%s)", len(names), scorer.method)
    score, sem, K = scorer.score_changes(info.focus_codes, changes, n_samples=n_samples, seed=seed, device=device,
                                         batch_size=batch_size, progress=progress)
    return ScanResult(mutants=names, columns=np.array([c[0][0] for c in changes], dtype=np.int64),
                      codes=np.array([c[0][1] for c in changes], dtype=np.int64), score=np.asarray(score),
                      score_sem=np.asarray(sem), focus_id=info.focus_id, focus_seq=info.focus_seq,
                      positions=np.asarray(info.positions, dtype=np.int64), method=scorer.method,
                      score_label=scorer.score_label, n_samples=K, seed=seed)
