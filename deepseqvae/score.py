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
from dataclasses import dataclass

import numpy as np
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
def _encode_all(model: VAE, codes: torch.Tensor, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    dtype = model.decoder.mu["W_out"].dtype
    mus, sigmas = [], []
    for start in range(0, codes.shape[0], chunk):
        mu, log_sigma = model.encoder(one_hot(codes[start:start + chunk], dtype=dtype))
        mus.append(mu)
        sigmas.append(torch.exp(log_sigma))
    return torch.cat(mus), torch.cat(sigmas)  # (M, D) each


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
) -> DeltaElbo:
    """ΔELBO of each variant (M, L) against the wild type (L,), with common random numbers.

    Deterministic for a given ``seed``, ``n_samples`` and device. Memory use is
    O(M·D + chunk_size·L·20) whatever M is.
    """
    device = torch.device(device)
    model = model.to(device).eval()
    L = wt_codes.shape[0]
    M = variant_codes.shape[0]
    variants = torch.as_tensor(variant_codes.reshape(M, L), dtype=torch.int8, device=device)
    wt = torch.as_tensor(wt_codes.reshape(1, L), dtype=torch.int8, device=device)
    mu, sigma = _encode_all(model, variants, chunk_size)
    wt_mu, wt_sigma = _encode_all(model, wt, 1)
    kl_var = VAE.latent_kl(mu, torch.log(sigma))  # (M,) the latent KL does not depend on the sample
    kl_wt = VAE.latent_kl(wt_mu, torch.log(wt_sigma))
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    # Running mean and sum of squared deviations (Welford) of the per-sample differences.
    mean = torch.zeros(M, dtype=torch.float64, device=device)
    m2 = torch.zeros(M, dtype=torch.float64, device=device)
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
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    if n_samples > 1:
        sem = torch.sqrt(m2 / (n_samples - 1) / n_samples)
    else:
        sem = torch.full_like(mean, math.nan)
    return DeltaElbo(mean.cpu().numpy(), sem.cpu().numpy(), n_samples)



def _log_px(dec, w: dict[str, torch.Tensor], w_out: torch.Tensor, z: torch.Tensor,
            codes: torch.Tensor) -> torch.Tensor:
    """log p(x | z) in float64, (b,), decoding with a shared, precomputed output matrix."""
    return VAE.log_likelihood(dec(z, w, w_out), codes).double()
