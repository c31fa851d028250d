"""Mutation effects as ΔELBO = ELBO(mutant) − ELBO(wild type), averaged over K posterior samples.

Common random numbers: in sample k one decoder-weight draw and one latent noise vector ε (D,) are
shared by the wild type and every mutant, so the wild type and synonymous variants score exactly
0 and the Monte-Carlo variance of the *differences* is small. Memory is bounded independently of
the number of mutants: the encoder output (μ, log σ) is cached per mutant (2·D floats), samples
form the outer loop and mutants are processed in chunks inside it, with running (Welford) means
and variances per mutant.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from .alphabet import one_hot
from .model import VAE

log = logging.getLogger(__name__)


@dataclass
class DeltaElbo:
    """Scores of M variants."""

    mean: np.ndarray  # (M,) mean over samples of ELBO(variant) − ELBO(wild type); higher = fitter
    sem: np.ndarray   # (M,) standard error of that mean
    n_samples: int
    trace: dict[int, np.ndarray] = field(default_factory=dict)  # {k: (M,) mean of the first k samples}


def apply_changes(wt_codes: np.ndarray, changes: list[tuple[tuple[int, int], ...]]) -> np.ndarray:
    """Codes (M, L) int8 of variants: ``wt_codes`` (L,) with each ``(column, code)`` change applied."""
    out = np.repeat(wt_codes[None, :].astype(np.int8), len(changes), axis=0)
    rows = [i for i, ch in enumerate(changes) for _ in ch]
    cols = [c for ch in changes for c, _ in ch]
    vals = [a for ch in changes for _, a in ch]
    if rows:
        out[rows, cols] = vals
    return out


@torch.no_grad()
def encode_batched(model: VAE, codes: np.ndarray | torch.Tensor, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoder mean and log σ, (M, D) each, of int codes (M, L), ``chunk`` rows at a time.

    Only one chunk is one-hot encoded at once (bounded memory); each chunk is moved to the
    model's device, so ``codes`` may stay on the CPU. The results live on the model's device.
    """
    device = model.decoder.mu["W_out"].device
    dtype = model.decoder.mu["W_out"].dtype
    mus, log_sigmas = [], []
    for start in range(0, codes.shape[0], chunk):
        batch = codes[start:start + chunk]  # (b, L); a NumPy chunk is copied (it may be read-only)
        batch = (torch.tensor(batch) if isinstance(batch, np.ndarray) else batch).to(device, torch.int8)
        mu, log_sigma = model.encoder(one_hot(batch, dtype=dtype))  # (b, D) each
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
    chunk_size: int = 2048,
    progress: bool = False,
    trace_at: tuple[int, ...] = (),
) -> DeltaElbo:
    """ΔELBO of each variant (M, L) against the wild type (L,), with common random numbers.

    Deterministic for a given ``seed``, ``n_samples`` and device. Memory use is
    O(M·D + chunk_size·L·20) whatever M is. ``trace_at`` lists sample counts k at which the
    running mean is also kept (``DeltaElbo.trace[k]``): the estimate a run with ``n_samples = k``
    and the same seed would give, at no extra cost (used to study convergence in K).
    """
    device = torch.device(device)
    model = model.to(device).eval()
    L = wt_codes.shape[0]
    M = variant_codes.shape[0]
    variants = torch.as_tensor(variant_codes.reshape(M, L), dtype=torch.int8, device=device)
    wt = torch.as_tensor(wt_codes.reshape(1, L), dtype=torch.int8, device=device)
    mu, log_sigma = encode_batched(model, variants, chunk_size)  # (M, D) each
    wt_mu, wt_log_sigma = encode_batched(model, wt, 1)  # (1, D) each
    sigma, wt_sigma = torch.exp(log_sigma), torch.exp(wt_log_sigma)
    kl_var = VAE.latent_kl(mu, torch.log(sigma))  # (M,) the latent KL does not depend on the sample
    kl_wt = VAE.latent_kl(wt_mu, torch.log(wt_sigma))
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    # Running mean and sum of squared deviations (Welford) of the per-sample differences.
    mean = torch.zeros(M, dtype=torch.float64, device=device)
    m2 = torch.zeros(M, dtype=torch.float64, device=device)
    trace: dict[int, np.ndarray] = {}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_samples, unit="sample", dynamic_ncols=True)
    dec = model.decoder
    for k in range(1, n_samples + 1):
        w = dec.draw(generator=gen)  # one decoder-weight sample shared by every sequence
        eps = torch.randn(mu.shape[1], device=device, dtype=mu.dtype, generator=gen)  # (D,) shared
        # Precompute the shared output matrix once per sample instead of once per chunk.
        w = dict(w)
        w_out = dec.output_weight(w)  # (H, 20L)
        wt_elbo = _log_px(dec, w, w_out, wt_mu + wt_sigma * eps, wt) - kl_wt.double()  # (1,)
        for start in range(0, M, chunk_size):
            sl = slice(start, start + chunk_size)
            z = mu[sl] + sigma[sl] * eps  # (b, D)
            diff = _log_px(dec, w, w_out, z, variants[sl]) - kl_var[sl].double() - wt_elbo
            delta = diff - mean[sl]
            mean[sl] += delta / k
            m2[sl] += delta * (diff - mean[sl])
        if k in trace_at:
            trace[k] = mean.cpu().numpy().copy()
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    if n_samples > 1:
        sem = torch.sqrt(m2 / (n_samples - 1) / n_samples)
    else:
        sem = torch.full_like(mean, math.nan)
    # A variant identical to the wild type differs from it by exactly 0 under common random numbers;
    # set it so rather than keep the last-bit noise of computing the two in batches of other sizes.
    same = (variants == wt).all(dim=1)
    mean[same] = 0.0
    sem[same] = 0.0
    same_np = same.cpu().numpy()
    for k in trace:
        trace[k][same_np] = 0.0
    return DeltaElbo(mean.cpu().numpy(), sem.cpu().numpy(), n_samples, trace)



def _log_px(dec, w: dict[str, torch.Tensor], w_out: torch.Tensor, z: torch.Tensor,
            codes: torch.Tensor) -> torch.Tensor:
    """log p(x | z) in float64, (b,), decoding with a shared, precomputed output matrix."""
    return VAE.log_likelihood(dec(z, w, w_out), codes).double()


# --- scoring a mutant table -----------------------------------------------------------------

#: default number of posterior samples K: the paper's 2,000 on a GPU, fewer on a CPU (see README)
DEFAULT_SAMPLES_GPU = 2000
DEFAULT_SAMPLES_CPU = 400


def default_samples(device: torch.device | str) -> int:
    """K used when the user gives none: 2,000 on CUDA, :data:`DEFAULT_SAMPLES_CPU` on the CPU."""
    return DEFAULT_SAMPLES_GPU if torch.device(device).type == "cuda" else DEFAULT_SAMPLES_CPU


@dataclass
class TableScores:
    """Result of :func:`score_table`: the input rows with scores, and summaries."""

    frame: pd.DataFrame                   # every input column, per-model scores, score, score_sem, status
    summary: dict[str, int]               # rows per status reason ("ok" = scored)
    n_samples: int                        # K
    spearman: dict | None = None          # {"rho", "n", "excluded", "fitness_col", ...} when a fitness column was used


def model_column_names(paths: list[str]) -> list[str]:
    """``score_<file stem>`` per model, made unique when two files share a stem."""
    from pathlib import Path

    names, seen = [], {}
    for p in paths:
        stem = Path(p).stem
        seen[stem] = seen.get(stem, 0) + 1
        names.append(f"score_{stem}" if seen[stem] == 1 else f"score_{stem}_{seen[stem]}")
    return names


def output_column_names(existing) -> dict[str, str]:
    """Names of the score, score_sem and status columns, suffixed ``_deepseqvae`` where the input
    already has a column of that name (e.g. PTEN's measured ``score``), so no input is overwritten."""
    names = ("score", "score_sem", "status")
    clash = bool(set(existing) & set(names))  # suffix all three together, so they stay recognisable
    return {k: (f"{k}_deepseqvae" if clash else k) for k in names}


def score_table(
    checkpoints: list,
    table,
    *,
    model_names: list[str] | None = None,
    n_samples: int | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    offset: int = 0,
    strict: bool = False,
    fitness_col: str | None = None,
    chunk_size: int = 2048,
    progress: bool = False,
) -> TableScores:
    """Score every row of a :class:`~deepseqvae.mutations.MutantTable` with one or more models.

    Rows that cannot be scored keep an empty score and a ``status`` saying why (``--strict``
    turns them into an :class:`InvalidMutantError`); if no row can be scored the error suggests the
    likely cause. With several models the output has one column per model and their mean as
    ``score``. With ``fitness_col`` the Spearman correlation over the scored rows is computed.
    """
    from scipy.stats import spearmanr

    from .checkpoint import build_model
    from .errors import CheckpointError, InvalidMutantError
    from .mutations import numeric_column, resolve_mutants, status_summary, suggest_cause

    if not checkpoints:
        raise ValueError("at least one model is needed")
    ref = checkpoints[0].info
    for ck in checkpoints[1:]:
        if ck.info.focus_seq != ref.focus_seq or list(ck.info.positions) != list(ref.positions):
            raise CheckpointError("the models of an ensemble must share one focus sequence and numbering "
                                  f"({ck.info.focus_id} differs from {ref.focus_id})")
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
        row = resolved.index(first) + 1
        raise InvalidMutantError(f"{where}row {row} ({first.text!r}): {first.status} "
                                 f"({len(bad)} row{'s' if len(bad) != 1 else ''} cannot be scored; drop --strict to keep them with a status)")
    ok_idx = np.array([i for i, r in enumerate(resolved) if r.ok], dtype=np.int64)
    changes = [resolved[i].changes for i in ok_idx]
    from .alphabet import AA_TO_CODE

    wt_codes = np.array([AA_TO_CODE[a] for a in ref.focus_seq], dtype=np.int8)
    variants = apply_changes(wt_codes, changes)
    vae_samples = n_samples if n_samples is not None else default_samples(device)
    names = model_names or model_column_names([f"model{i}" for i in range(len(checkpoints))])
    frame = table.frame.copy()
    means, sems = [], []
    for ck, name in zip(checkpoints, names):
        model = build_model(ck)
        if ck.kind == "independent":
            mean, sem = model.delta(wt_codes, changes), np.zeros(len(changes))
        else:
            res = delta_elbo(model, wt_codes, variants, n_samples=vae_samples, seed=seed, device=device,
                             chunk_size=chunk_size, progress=progress)
            mean, sem = res.mean, res.sem
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
    out_cols = output_column_names(frame.columns)
    frame[out_cols["score"]] = score
    frame[out_cols["score_sem"]] = score_sem
    frame[out_cols["status"]] = [r.status for r in resolved]
    result = TableScores(frame=frame, summary=summary, n_samples=vae_samples)
    if fitness_col is not None:
        fitness = numeric_column(table, fitness_col)
        use = np.isfinite(score) & np.isfinite(fitness)
        rho = float(spearmanr(score[use], fitness[use]).statistic) if use.sum() > 2 else float("nan")
        result.spearman = {
            "fitness_col": fitness_col, "rho": rho, "n": int(use.sum()),
            "excluded": int(len(score) - use.sum()),
            "excluded_unscorable": int((~np.isfinite(score)).sum()),
            "excluded_no_fitness": int((np.isfinite(score) & ~np.isfinite(fitness)).sum()),
            "n_samples": vae_samples, "seed": seed,
        }
    return result
