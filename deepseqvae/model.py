"""The DeepSequence VAE (Riesselman et al., Nature Methods 2018) as a pure ``nn.Module``.

Encoder: one-hot ``(B, L, 20)`` -> MLP (ReLU) -> mean and log standard deviation of a Gaussian
latent. Decoder: latent -> MLP (ReLU, then sigmoid) -> per-position logits built from a shared
amino-acid dictionary, group-sparsity scales and an inverse temperature, exactly as DeepSequence's
``VariationalAutoencoder`` (see ``../shared/docs/deepsequence-reference.md`` §3). The "svi"
decoder keeps a mean-field Gaussian over every decoder weight (one weight sample per forward pass,
shared by the batch); the "mle" decoder has point weights with penalties (§3.2).

No file I/O, device choice or seeding happens here: randomness comes from an optional
``torch.Generator`` passed by the caller.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .alphabet import GAP_CODE, N_AA, one_hot

DecoderKind = Literal["svi", "mle"]


@dataclass(frozen=True)
class VAEConfig:
    """Model hyper-parameters; the defaults are DeepSequence's published configuration."""

    seq_len: int                                   # L, number of modelled (focus) columns
    alphabet_size: int = N_AA                      # one-hot width (20 amino acids; gap = zero row)
    encoder_hidden: tuple[int, ...] = (1500, 1500)  # encoder MLP widths (ReLU)
    latent_dim: int = 30                           # dimension of z
    decoder_hidden: tuple[int, ...] = (100, 2000)  # decoder MLP widths; last uses sigmoid ([100, 500] x 4 patterns)
    decoder: DecoderKind = "svi"                   # "svi": Bayesian decoder weights; "mle": point weights + penalties
    dictionary_size: int = 40                      # C, shared amino-acid dictionary per (unit, position); 0 = none
    sparsity_tiles: int = 4                        # k, hidden units per group sharing one scale per position; 0 = none
    sparsity_p: float = 0.001                      # logit-normal scale prior, mean sqrt(2)*sigma*erfinv(2p-1)
    sparsity_sigma: float = 4.0                    # std of the logit-normal scale prior
    prior_sigma: float = 1.0                       # std of the N(0, sigma^2) prior on every other decoder weight
    init_log_sigma: float = -5.0                   # initial log std of every variational posterior
    temperature: bool = True                       # learn an inverse temperature softplus(lambda) on the logits
    output_bias: bool = True                       # per-(position, residue) output bias
    dropout: float = 0.0                           # "mle" only: dropout on decoder hidden layers while training

    def __post_init__(self) -> None:
        if self.seq_len < 1:
            raise ValueError("seq_len must be positive")
        if self.decoder not in ("svi", "mle"):
            raise ValueError(f"decoder must be 'svi' or 'mle', not {self.decoder!r}")
        if not self.decoder_hidden:
            raise ValueError("decoder_hidden needs at least one layer")
        if self.sparsity_tiles and self.decoder_hidden[-1] % self.sparsity_tiles:
            raise ValueError("the last decoder layer must be divisible by sparsity_tiles")
        if not 0.0 < self.sparsity_p < 1.0:
            raise ValueError("sparsity_p must lie in (0, 1)")
        # JSON / checkpoint round trips turn tuples into lists.
        object.__setattr__(self, "encoder_hidden", tuple(self.encoder_hidden))
        object.__setattr__(self, "decoder_hidden", tuple(self.decoder_hidden))

    @property
    def sparsity_prior_mu(self) -> float:
        """Mean of the logit-normal scale prior: sqrt(2)·sigma·erfinv(2p − 1) (−12.36 for p = 0.001)."""
        return math.sqrt(2.0) * self.sparsity_sigma * float(torch.erfinv(torch.tensor(2.0 * self.sparsity_p - 1.0,
                                                                                          dtype=torch.float64)))


def gaussian_kl(mu: Tensor, log_sigma: Tensor, prior_mu: float = 0.0, prior_sigma: float = 1.0) -> Tensor:
    """Sum of KL(N(mu, exp(log_sigma)^2) || N(prior_mu, prior_sigma^2)), analytic."""
    # log(var_ratio) = 2·log_sigma − 2·log(prior_sigma): no log(exp(.)) round trip over 20M weights.
    inv_var = 1.0 / prior_sigma**2
    kl = 0.5 * ((torch.exp(2.0 * log_sigma) + (mu - prior_mu) ** 2) * inv_var - 2.0 * log_sigma).sum()
    return kl + mu.numel() * (math.log(prior_sigma) - 0.5)


class _SampleWithKL(torch.autograd.Function):
    """w = mu + exp(log_sigma)·eps together with KL(N(mu, sigma²) || N(m, s²)), fused.

    The forward makes one pass for sigma, one for w and three reductions; the backward is written
    out analytically. Over the ~20M output weights this halves the memory traffic of sampling
    plus KL written as separate tensor expressions (the elementwise passes dominate a CPU step).
    """

    @staticmethod
    def forward(ctx, mu: Tensor, log_sigma: Tensor, eps: Tensor, prior_mu: float, prior_sigma: float):
        sigma = torch.exp(log_sigma)
        w = torch.addcmul(mu, sigma, eps)
        inv_var = 1.0 / prior_sigma**2
        centred = mu - prior_mu if prior_mu else mu
        flat_c, flat_s = centred.reshape(-1), sigma.reshape(-1)
        kl = (0.5 * inv_var * (torch.dot(flat_s, flat_s) + torch.dot(flat_c, flat_c)) - log_sigma.sum()
              + mu.numel() * (math.log(prior_sigma) - 0.5))
        ctx.save_for_backward(mu, sigma, eps)
        ctx.prior = (prior_mu, inv_var)
        return w, kl

    @staticmethod
    def backward(ctx, grad_w: Tensor, grad_kl: Tensor):
        mu, sigma, eps = ctx.saved_tensors
        prior_mu, inv_var = ctx.prior
        c = grad_kl * inv_var
        # d/dmu: grad_w + c·(mu − m);  d/dlog_sigma: grad_w·eps·sigma + c·sigma² − grad_kl
        grad_mu = grad_w + c * (mu - prior_mu if prior_mu else mu)
        grad_ls = sigma * torch.addcmul(c * sigma, grad_w, eps) - grad_kl
        return grad_mu, grad_ls, None, None, None


def _glorot_normal(fan_in: int, fan_out: int, shape: tuple[int, ...]) -> Tensor:
    return torch.randn(shape) * math.sqrt(2.0 / (fan_in + fan_out))


class Encoder(nn.Module):
    """q(z | x): one-hot (B, L, 20) -> (mu, log_sigma), each (B, latent_dim)."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        sizes = (cfg.seq_len * cfg.alphabet_size, *cfg.encoder_hidden)
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True))
        self.mu = nn.Linear(sizes[-1], cfg.latent_dim)
        self.log_sigma = nn.Linear(sizes[-1], cfg.latent_dim)
        # DeepSequence: Glorot-normal weights, biases 0.1, log-sigma bias -5 (tight initial posterior).
        for lin in [*self.hidden, self.mu, self.log_sigma]:
            with torch.no_grad():
                lin.weight.copy_(_glorot_normal(lin.in_features, lin.out_features, tuple(lin.weight.shape)))
                lin.bias.fill_(0.1)
        with torch.no_grad():
            self.log_sigma.bias.fill_(-5.0)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = x.flatten(1)  # (B, 20L)
        for lin in self.hidden:
            h = F.relu(lin(h))
        return self.mu(h), self.log_sigma(h)


class Decoder(nn.Module):
    """p(x | z): latent (B, D) -> log-probabilities (B, L, 20).

    Parameters are held as ``mu`` (point value or posterior mean) and, for the "svi" decoder,
    ``log_sigma`` (posterior log std). :meth:`draw` returns one set of weights (a posterior sample
    or the means); :meth:`forward` decodes with a given set, so that callers can share one weight
    sample between several batches (common random numbers when scoring).
    """

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        L, A, C = cfg.seq_len, cfg.alphabet_size, cfg.dictionary_size
        H = cfg.decoder_hidden[-1]
        self.bayesian = cfg.decoder == "svi"
        init: dict[str, Tensor] = {}
        sizes = (cfg.latent_dim, *cfg.decoder_hidden)
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            init[f"W{i}"] = _glorot_normal(a, b, (a, b))
            init[f"b{i}"] = torch.full((b,), 0.1)
        out_width = C if C else A
        init["W_out"] = _glorot_normal(H, L * out_width, (H, L, out_width))
        if C:
            init["dictionary"] = _glorot_normal(C, A, (C, A))
        if cfg.sparsity_tiles:
            # svi: zeros (initial scale sigmoid(0) = 0.5); mle: Glorot normal, as DeepSequence.
            shape = (H // cfg.sparsity_tiles, L)
            init["scale_logit"] = torch.zeros(shape) if self.bayesian else _glorot_normal(shape[0], L, shape)
        if cfg.output_bias:
            init["b_out"] = torch.full((L, A), 0.1)
        if cfg.temperature:
            init["temperature"] = torch.ones(())  # softplus(1) = 1.313
        self.mu = nn.ParameterDict({k: nn.Parameter(v) for k, v in init.items()})
        if self.bayesian:
            self.log_sigma = nn.ParameterDict(
                {k: nn.Parameter(torch.full_like(v, cfg.init_log_sigma)) for k, v in init.items()})
        self.n_layers = len(cfg.decoder_hidden)

    def prior(self, name: str) -> tuple[float, float]:
        """(mean, std) of the Gaussian prior on parameter ``name``."""
        if name == "scale_logit":
            return self.cfg.sparsity_prior_mu, self.cfg.sparsity_sigma
        return 0.0, self.cfg.prior_sigma

    def draw(self, sample: bool = True, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """One set of decoder weights: a posterior sample (svi, ``sample=True``) or the means."""
        if not (self.bayesian and sample):
            return dict(self.mu.items())
        out = {}
        for k, mu in self.mu.items():
            eps = torch.randn(mu.shape, device=mu.device, dtype=mu.dtype, generator=generator)
            out[k] = mu + torch.exp(self.log_sigma[k]) * eps
        return out

    def draw_with_kl(self, generator: torch.Generator | None = None) -> tuple[dict[str, Tensor], Tensor]:
        """One posterior sample of every weight and KL(q(θ) || p(θ)), fused (for training)."""
        out, kl = {}, None
        for k, mu in self.mu.items():
            eps = torch.randn(mu.shape, device=mu.device, dtype=mu.dtype, generator=generator)
            out[k], kl_k = _SampleWithKL.apply(mu, self.log_sigma[k], eps, *self.prior(k))
            kl = kl_k if kl is None else kl + kl_k
        return out, kl

    def output_weight(self, w: dict[str, Tensor]) -> Tensor:
        """The (H, L*20) output matrix from raw weights, dictionary and sparsity scales."""
        cfg = self.cfg
        W = w["W_out"]  # (H, L, C)
        if cfg.dictionary_size:
            W = W @ w["dictionary"]  # (H, L, 20): W[h, l, :] = W_raw[h, l, :] @ D, as DeepSequence
        if cfg.sparsity_tiles:
            # One scale per (group, position); unit h belongs to group h mod (H/k) (DeepSequence's tiling).
            scale = torch.sigmoid(w["scale_logit"]).repeat(cfg.sparsity_tiles, 1)  # (H, L)
            W = W * scale.unsqueeze(-1)
        return W.reshape(W.shape[0], -1)

    def forward(self, z: Tensor, w: dict[str, Tensor], w_out: Tensor | None = None) -> Tensor:
        """Log-probabilities (B, L, 20) for latents z (B, D) under weights ``w``.

        ``w_out`` may carry ``self.output_weight(w)`` precomputed, when many batches share ``w``.
        """
        h = z  # (B, D)
        for i in range(self.n_layers):
            h = h @ w[f"W{i}"] + w[f"b{i}"]
            # DeepSequence: ReLU on hidden layers, sigmoid on the last one.
            h = torch.sigmoid(h) if i == self.n_layers - 1 else F.relu(h)
            if self.cfg.dropout and self.training:
                h = F.dropout(h, self.cfg.dropout, training=True)
        logits = h @ (self.output_weight(w) if w_out is None else w_out)  # (B, 20L)
        logits = logits.view(z.shape[0], self.cfg.seq_len, self.cfg.alphabet_size)
        if self.cfg.output_bias:
            logits = logits + w["b_out"]
        if self.cfg.temperature:
            logits = logits * F.softplus(w["temperature"])
        return F.log_softmax(logits, dim=-1)  # (B, L, 20)

    def kl(self) -> Tensor:
        """KL(q(theta) || p(theta)) summed over all decoder weights ("svi" only)."""
        if not self.bayesian:
            raise RuntimeError("the mle decoder has no posterior")
        return sum(gaussian_kl(self.mu[k], self.log_sigma[k], *self.prior(k)) for k in self.mu)

    def penalty(self) -> Tensor:
        """MAP penalty of the "mle" decoder: L2 on weights (0.5·Σw²) and −log prior of the scales."""
        total = torch.zeros((), device=next(self.parameters()).device)
        for k, v in self.mu.items():
            if k == "scale_logit":
                m, s = self.prior(k)
                total = total + (0.5 * ((v - m) / s) ** 2 + math.log(s) + 0.5 * math.log(2 * math.pi)).sum()
            else:
                total = total + 0.5 * (v**2).sum()
        return total


class ElboTerms(NamedTuple):
    """Per-sequence terms of the ELBO, each (B,)."""

    log_px_z: Tensor   # Σ over non-gap positions of log p(x_l | z)
    kl_z: Tensor       # KL(q(z|x) || N(0, I))

    @property
    def elbo(self) -> Tensor:
        return self.log_px_z - self.kl_z


class VAE(nn.Module):
    """DeepSequence VAE: ``forward(codes)`` returns the per-sequence ELBO terms."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)

    @staticmethod
    def latent_kl(mu: Tensor, log_sigma: Tensor) -> Tensor:
        """KL(N(mu, sigma^2) || N(0, I)) per sequence, (B,) (Kingma & Welling 2014, App. B)."""
        return 0.5 * (torch.exp(2 * log_sigma) + mu**2 - 1.0 - 2 * log_sigma).sum(-1)

    @staticmethod
    def log_likelihood(log_probs: Tensor, codes: Tensor) -> Tensor:
        """Σ_l log p(x_l | z) over non-gap positions: log_probs (B, L, 20), codes (B, L) -> (B,)."""
        nongap = codes != GAP_CODE
        picked = log_probs.gather(-1, codes.long().clamp(max=N_AA - 1).unsqueeze(-1)).squeeze(-1)  # (B, L)
        return (picked * nongap).sum(-1)

    def forward(
        self,
        codes: Tensor,
        *,
        weights: dict[str, Tensor] | None = None,
        eps: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> ElboTerms:
        """ELBO terms for int codes (B, L), with one latent sample per sequence.

        ``weights`` (from ``decoder.draw``) and ``eps`` (B, latent_dim) may be given to share
        random numbers between calls; otherwise they are drawn here (one decoder sample per call).
        """
        x = one_hot(codes, dtype=self.decoder.mu["W_out"].dtype)  # (B, L, 20)
        mu, log_sigma = self.encoder(x)  # (B, D) each
        if eps is None:
            eps = torch.randn(mu.shape, device=mu.device, dtype=mu.dtype, generator=generator)
        z = mu + torch.exp(log_sigma) * eps
        if weights is None:
            weights = self.decoder.draw(generator=generator)
        log_probs = self.decoder(z, weights)
        return ElboTerms(self.log_likelihood(log_probs, codes), self.latent_kl(mu, log_sigma))

    def regulariser(self) -> Tensor:
        """The global term added to the loss before division by Neff: KL(q(θ)||p(θ)) or the MAP penalty."""
        return self.decoder.kl() if self.decoder.bayesian else self.decoder.penalty()


def loss_terms(model: VAE, codes: Tensor, neff: float, generator: torch.Generator | None = None
               ) -> tuple[Tensor, dict[str, Tensor]]:
    """Training loss = −mean ELBO of a weight-sampled batch + regulariser / Neff.

    This is DeepSequence's objective (maximised there, minimised here).
    """
    if model.decoder.bayesian:
        # Sample and KL in one fused pass over the decoder weights (same draw order as ``draw``).
        weights, kl = model.decoder.draw_with_kl(generator=generator)
        terms = model(codes, weights=weights, generator=generator)
        reg = kl / neff
    else:
        terms = model(codes, generator=generator)
        reg = model.regulariser() / neff
    loss = -terms.elbo.mean() + reg
    stats = {"elbo": terms.elbo.mean().detach(), "log_px_z": terms.log_px_z.mean().detach(),
             "kl_z": terms.kl_z.mean().detach(), "kl_theta": reg.detach()}
    return loss, stats


__all__ = ["VAEConfig", "VAE", "Encoder", "Decoder", "ElboTerms", "gaussian_kl", "loss_terms"]
