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

from . import kernels
from .alphabet import GAP_CODE, N_AA

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
    dropout: float = 0.0                           # dropout on the decoder's hidden layers while training (either kind)

    def __post_init__(self) -> None:
        if self.seq_len < 1:
            raise ValueError("seq_len must be positive")
        if self.latent_dim < 1 or min((*self.encoder_hidden, *self.decoder_hidden), default=1) < 1:
            raise ValueError("latent_dim and every hidden width must be >= 1")
        if self.decoder not in ("svi", "mle"):
            raise ValueError(f"decoder must be 'svi' or 'mle', not {self.decoder!r}")
        if not self.decoder_hidden:
            raise ValueError("decoder_hidden needs at least one layer")
        if self.sparsity_tiles and self.decoder_hidden[-1] % self.sparsity_tiles:
            raise ValueError(f"the last decoder layer ({self.decoder_hidden[-1]}) must be divisible by sparsity_tiles "
                             f"({self.sparsity_tiles})")
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


def _sample_kl_flat(mu: Tensor, log_sigma: Tensor, eps: Tensor, prior_mu: float, inv_var: float
                    ) -> tuple[Tensor, Tensor]:
    """Flat (n,) tensors -> (w = mu + exp(log_sigma)·eps, the KL without its constant): the
    compiled kernel of :class:`_SampleWithKL`, one loop over memory under ``torch.compile``."""
    sigma = torch.exp(log_sigma)
    centred = mu - prior_mu
    kl = (0.5 * inv_var * (sigma * sigma + centred * centred) - log_sigma).sum()
    return mu + sigma * eps, kl


def _sample_kl_flat_grad(grad_w: Tensor, grad_kl: Tensor, mu: Tensor, log_sigma: Tensor, eps: Tensor,
                         prior_mu: float, inv_var: float) -> tuple[Tensor, Tensor]:
    """Gradients of :func:`_sample_kl_flat` with respect to (mu, log_sigma), sigma recomputed."""
    sigma = torch.exp(log_sigma)
    c = grad_kl * inv_var
    return grad_w + c * (mu - prior_mu), sigma * (grad_w * eps + c * sigma) - grad_kl


class _SampleWithKL(torch.autograd.Function):
    """w = mu + exp(log_sigma)·eps together with KL(N(mu, sigma²) || N(m, s²)), fused.

    The forward makes one pass for sigma, one for w and three reductions; the backward is written
    out analytically. Over the ~20M output weights this halves the memory traffic of sampling
    plus KL written as separate tensor expressions (the elementwise passes dominate a CPU step).
    With ``compiled`` and at least :data:`kernels.COMPILE_MIN` elements, forward and backward are
    each one compiled loop (:func:`_sample_kl_flat`); the same mathematics, summed in another order.
    """

    @staticmethod
    def forward(ctx, mu: Tensor, log_sigma: Tensor, eps: Tensor, prior_mu: float, prior_sigma: float,
                compiled: bool = False):
        inv_var = 1.0 / prior_sigma**2
        const = mu.numel() * (math.log(prior_sigma) - 0.5)
        ctx.prior = (float(prior_mu), inv_var)
        if compiled and mu.numel() >= kernels.COMPILE_MIN:
            out = kernels.run_compiled(_sample_kl_flat, mu.reshape(-1), log_sigma.reshape(-1), eps.reshape(-1),
                                       float(prior_mu), inv_var)
            if out is not None:
                w, kl = out
                ctx.save_for_backward(mu, log_sigma, eps)
                ctx.compiled = True
                return w.view(mu.shape), kl + const
        sigma = torch.exp(log_sigma)
        w = torch.addcmul(mu, sigma, eps)
        centred = mu - prior_mu if prior_mu else mu
        flat_c, flat_s = centred.reshape(-1), sigma.reshape(-1)
        kl = 0.5 * inv_var * (torch.dot(flat_s, flat_s) + torch.dot(flat_c, flat_c)) - log_sigma.sum() + const
        ctx.save_for_backward(mu, sigma, eps)
        ctx.compiled = False
        return w, kl

    @staticmethod
    def backward(ctx, grad_w: Tensor, grad_kl: Tensor):
        prior_mu, inv_var = ctx.prior
        if ctx.compiled:
            mu, log_sigma, eps = ctx.saved_tensors
            out = kernels.run_compiled(_sample_kl_flat_grad, grad_w.reshape(-1), grad_kl, mu.reshape(-1),
                                       log_sigma.reshape(-1), eps.reshape(-1), prior_mu, inv_var)
            if out is None:  # compiled forward, failing backward: the same expression, eagerly
                out = _sample_kl_flat_grad(grad_w.reshape(-1), grad_kl, mu.reshape(-1), log_sigma.reshape(-1),
                                           eps.reshape(-1), prior_mu, inv_var)
            grad_mu, grad_ls = out
            return (grad_mu.view(mu.shape), grad_ls.view(mu.shape), *[None] * (len(ctx.needs_input_grad) - 2))
        mu, sigma, eps = ctx.saved_tensors
        c = grad_kl * inv_var
        # d/dmu: grad_w + c·(mu − m);  d/dlog_sigma: grad_w·eps·sigma + c·sigma² − grad_kl
        grad_mu = grad_w + c * (mu - prior_mu if prior_mu else mu)
        grad_ls = sigma * torch.addcmul(c * sigma, grad_w, eps) - grad_kl
        return (grad_mu, grad_ls, *[None] * (len(ctx.needs_input_grad) - 2))  # None for eps and the settings


def rounded_matmul(a: Tensor, b: Tensor, dtype: torch.dtype | None) -> Tensor:
    """``a @ b`` with both inputs rounded to ``dtype`` (e.g. bfloat16: float32 accumulation inside the
    product) and the result in ``a``'s dtype; the plain product when ``dtype`` is None or ``a``'s own."""
    if dtype is None or dtype == a.dtype:
        return a @ b
    return (a.to(dtype) @ b.to(dtype)).to(a.dtype)


def _glorot_normal(fan_in: int, fan_out: int, shape: tuple[int, ...]) -> Tensor:
    return torch.randn(shape) * math.sqrt(2.0 / (fan_in + fan_out))


class OneHotLinear(nn.Module):
    """First encoder layer ``one_hot(codes).flatten(1) @ weight + bias`` as a gather-sum.

    Row ``l·20 + a`` of ``weight`` (20L, H) is the weight of residue ``a`` at position ``l``, so
    the product of a one-hot sequence with ``weight`` is the sum of its L non-gap rows: an
    embedding bag over (position, residue) indices, ~20x fewer operations than the dense
    product and identical up to float summation order. A float one-hot input (B, L, 20) takes
    the dense product (the reference the tests compare against).
    """

    def __init__(self, seq_len: int, alphabet_size: int, out_features: int) -> None:
        super().__init__()
        self.seq_len, self.alphabet_size = seq_len, alphabet_size
        self.weight = nn.Parameter(torch.empty(seq_len * alphabet_size, out_features))  # (20L, H)
        self.bias = nn.Parameter(torch.empty(out_features))  # (H,)
        # (L,) offset of each position's block of rows
        self.register_buffer("offsets", torch.arange(seq_len) * alphabet_size, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if x.is_floating_point():  # one-hot (B, L, 20): the dense product
            return torch.addmm(self.bias, x.flatten(1), self.weight)  # (B, H)
        codes = x.long()  # (B, L); gaps (code 20) get weight 0 and any valid index
        index = self.offsets + codes.clamp(max=self.alphabet_size - 1)  # (B, L)
        present = (codes < self.alphabet_size).to(self.weight.dtype)  # (B, L)
        return F.embedding_bag(index, self.weight, per_sample_weights=present, mode="sum") + self.bias


class Encoder(nn.Module):
    """q(z | x): int codes (B, L) or one-hot (B, L, 20) -> (mu, log_sigma), each (B, latent_dim)."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        sizes = (cfg.seq_len * cfg.alphabet_size, *cfg.encoder_hidden)
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            layers.append(OneHotLinear(cfg.seq_len, cfg.alphabet_size, b) if i == 0 else nn.Linear(a, b))
        self.hidden = nn.ModuleList(layers)
        head = (lambda d: OneHotLinear(cfg.seq_len, cfg.alphabet_size, d)) if not layers else (
            lambda d: nn.Linear(sizes[-1], d))
        self.mu = head(cfg.latent_dim)
        self.log_sigma = head(cfg.latent_dim)
        # DeepSequence: Glorot-normal weights, biases 0.1, log-sigma bias -5 (tight initial posterior).
        with torch.no_grad():
            for lin in [*self.hidden, self.mu, self.log_sigma]:
                if isinstance(lin, OneHotLinear):  # stored (20L, H): draw as (H, 20L) like nn.Linear's
                    fan_out = lin.weight.shape[1]
                    lin.weight.copy_(_glorot_normal(sizes[0], fan_out, (fan_out, sizes[0])).t())
                else:
                    lin.weight.copy_(_glorot_normal(lin.in_features, lin.out_features, tuple(lin.weight.shape)))
                lin.bias.fill_(0.1)
            self.log_sigma.bias.fill_(-5.0)

    def forward(self, x: Tensor, matmul_dtype: torch.dtype | None = None) -> tuple[Tensor, Tensor]:
        """``matmul_dtype`` (e.g. bfloat16; training only) runs the hidden layers after the first (the
        1500-1500 product) with inputs and weights rounded to it and float32 results; the gather-sum first
        layer and the mu / log-sigma heads stay float32."""
        h = x  # (B, L) codes or (B, L, 20) one-hot
        for i, lin in enumerate(self.hidden):
            if i and matmul_dtype not in (None, h.dtype):  # (float32 keeps nn.Linear's fused bias)
                h = F.relu(rounded_matmul(h, lin.weight.t(), matmul_dtype) + lin.bias)
            else:
                h = F.relu(lin(h))  # (B, H_i)
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
            eps = kernels.standard_normal(mu.shape, device=mu.device, dtype=mu.dtype, generator=generator)
            out[k] = mu + torch.exp(self.log_sigma[k]) * eps
        return out

    def draw_with_kl(self, generator: torch.Generator | None = None, skip: tuple[str, ...] = (),
                     compiled: bool = False) -> tuple[dict[str, Tensor], Tensor]:
        """One posterior sample of every weight and KL(q(θ) || p(θ)), fused (for training).

        Weights named in ``skip`` are not sampled (nor in the returned KL): the caller handles them
        (the local-reparameterisation path integrates ``W_out`` out). ``compiled`` lets the large
        weights take the compiled kernels (:mod:`deepseqvae.kernels`).
        """
        out, kl = {}, None
        for k, mu in self.mu.items():
            if k in skip:
                continue
            eps = kernels.standard_normal(mu.shape, device=mu.device, dtype=mu.dtype, generator=generator)
            out[k], kl_k = _SampleWithKL.apply(mu, self.log_sigma[k], eps, *self.prior(k), compiled)
            kl = kl_k if kl is None else kl + kl_k
        return out, kl

    def output_weight(self, w: dict[str, Tensor], matmul_dtype: torch.dtype | None = None) -> Tensor:
        """The (H, L*20) output matrix from raw weights, dictionary and sparsity scales.

        ``matmul_dtype`` (e.g. bfloat16) runs the dictionary product in that precision; the
        result is float32 either way.
        """
        cfg = self.cfg
        W = w["W_out"]  # (H, L, C)
        if cfg.dictionary_size:
            D = w["dictionary"]
            W = rounded_matmul(W, D, matmul_dtype)  # (H, L, 20): W[h, l, :] = W_raw[h, l, :] @ D, as DeepSequence
        if cfg.sparsity_tiles:
            # One scale per (group, position); unit h belongs to group h mod (H/k) (DeepSequence's tiling).
            scale = torch.sigmoid(w["scale_logit"]).repeat(cfg.sparsity_tiles, 1)  # (H, L)
            W = W * scale.unsqueeze(-1)
        return W.reshape(W.shape[0], -1)

    def hidden(self, z: Tensor, w: dict[str, Tensor], generator: torch.Generator | None = None) -> Tensor:
        """Last hidden layer (B, H) of the decoder MLP for latents z (B, D) under weights ``w``.

        With ``cfg.dropout`` and in training mode, each hidden layer's units are dropped with that
        probability (inverted scaling), the masks drawn from ``generator``: the run's own stream,
        which a checkpoint carries, so a resumed run draws the masks the uninterrupted one would.
        """
        h = z  # (B, D)
        keep = 1.0 - self.cfg.dropout
        for i in range(self.n_layers):
            h = h @ w[f"W{i}"] + w[f"b{i}"]
            # DeepSequence: ReLU on hidden layers, sigmoid on the last one.
            h = torch.sigmoid(h) if i == self.n_layers - 1 else F.relu(h)
            if self.cfg.dropout and self.training:
                mask = torch.empty_like(h).bernoulli_(keep, generator=generator)  # (B, width)
                h = h * mask / keep
        return h

    def _finish(self, logits: Tensor, w: dict[str, Tensor]) -> Tensor:
        """Output bias, inverse temperature and log-softmax: logits (B, 20L) -> log-probs (B, L, 20)."""
        logits = logits.view(logits.shape[0], self.cfg.seq_len, self.cfg.alphabet_size)
        # Without autograd (scoring, held-out estimates) the callers' fresh product is updated in place: the same
        # arithmetic, without two more (B, L, 20) tensors, each a fresh block of memory to fault in.
        inplace = not torch.is_grad_enabled()
        if self.cfg.output_bias:
            logits = logits.add_(w["b_out"]) if inplace else logits + w["b_out"]
        if self.cfg.temperature:
            scale = F.softplus(w["temperature"])
            logits = logits.mul_(scale) if inplace else logits * scale
        return F.log_softmax(logits, dim=-1)  # (B, L, 20)

    def forward(self, z: Tensor, w: dict[str, Tensor], w_out: Tensor | None = None,
                matmul_dtype: torch.dtype | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Log-probabilities (B, L, 20) for latents z (B, D) under weights ``w``.

        ``w_out`` may carry ``self.output_weight(w)`` precomputed, when many batches share ``w``.
        ``matmul_dtype`` (training and held-out estimates; scoring stays float32) runs the dictionary and output
        products in that precision.
        ``generator`` draws the dropout masks (training with ``cfg.dropout`` only).
        """
        h = self.hidden(z, w, generator)  # (B, H)
        if w_out is None:
            w_out = self.output_weight(w, matmul_dtype)  # (H, 20L)
        return self._finish(rounded_matmul(h, w_out, matmul_dtype), w)

    def forward_local(self, z: Tensor, w: dict[str, Tensor], out_var: Tensor,
                      generator: torch.Generator | None = None, matmul_dtype: torch.dtype | None = None) -> Tensor:
        """Log-probabilities (B, L, 20) with the raw output weights integrated out per sequence.

        Local reparameterisation (Kingma, Salimans & Welling 2015): given the sampled dictionary
        D, scales S and the hidden layers in ``w``, the logits are linear in the raw output
        weights W_raw ~ N(mu, sigma^2), so each sequence's logits are exactly Gaussian with

            mean = h @ (S * (mu @ D)),   var = h^2 @ (S^2 * (sigma^2 @ D^2)).

        Sampling the logits (B, 20L) instead of W_raw (H, L, C) gives each sequence its own
        weight noise: the same expected ELBO as one shared weight draw, a lower-variance
        gradient, and no 20M-element normal draw per step. ``out_var`` is exp(2·log_sigma) of
        W_raw, (H, L, C), shared with the KL term. ``matmul_dtype`` (e.g. bfloat16) runs the two
        (B, H) x (H, 20L) products in that precision with float32 accumulation and results.
        """
        cfg = self.cfg
        h = self.hidden(z, w, generator)  # (B, H)
        mean_w, var_w = self.mu["W_out"], out_var  # (H, L, C) each
        if cfg.dictionary_size:
            D = w["dictionary"]  # (C, 20)
            mean_w, var_w = mean_w @ D, var_w @ (D * D)  # (H, L, 20) each
        if cfg.sparsity_tiles:
            scale = torch.sigmoid(w["scale_logit"]).repeat(cfg.sparsity_tiles, 1).unsqueeze(-1)  # (H, L, 1)
            mean_w, var_w = mean_w * scale, var_w * (scale * scale)
        H = h.shape[1]
        mean_w, var_w = mean_w.reshape(H, -1), var_w.reshape(H, -1)  # (H, 20L)
        mean = rounded_matmul(h, mean_w, matmul_dtype)  # (B, 20L)
        var = rounded_matmul(h * h, var_w, matmul_dtype)  # (B, 20L)
        eps = torch.randn(mean.shape, device=mean.device, dtype=mean.dtype, generator=generator)
        # var > 0 always (sigma > 0, h > 0 after the sigmoid); the floor guards sqrt's gradient.
        return self._finish(mean + torch.sqrt(var.clamp_min(1e-12)) * eps, w)

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
        matmul_dtype: torch.dtype | None = None,
        encoder_dtype: torch.dtype | None = None,
    ) -> ElboTerms:
        """ELBO terms for int codes (B, L), with one latent sample per sequence.

        ``weights`` (from ``decoder.draw``) and ``eps`` (B, latent_dim) may be given to share
        random numbers between calls; otherwise they are drawn here (one decoder sample per call).
        ``matmul_dtype`` / ``encoder_dtype``: precision of the decoder's / the encoder's large products.
        """
        mu, log_sigma = self.encoder(codes, encoder_dtype)  # (B, D) each, gather-sum first layer
        if eps is None:
            eps = torch.randn(mu.shape, device=mu.device, dtype=mu.dtype, generator=generator)
        z = mu + torch.exp(log_sigma) * eps
        if weights is None:
            weights = self.decoder.draw(generator=generator)
        log_probs = self.decoder(z, weights, matmul_dtype=matmul_dtype, generator=generator)
        return ElboTerms(self.log_likelihood(log_probs, codes), self.latent_kl(mu, log_sigma))

    def regulariser(self) -> Tensor:
        """The global term added to the loss before division by Neff: KL(q(θ)||p(θ)) or the MAP penalty."""
        return self.decoder.kl() if self.decoder.bayesian else self.decoder.penalty()


class _GaussianKLFromVar(torch.autograd.Function):
    """KL(N(mu, var) || N(m, s^2)) summed, from precomputed var = exp(2·log_sigma), analytic backward.

    Autograd of the plain expression would make ~6 passes over the ~20M output weights; this makes
    two dot products forward and one fused pass per gradient backward.
    """

    @staticmethod
    def forward(ctx, mu: Tensor, log_sigma: Tensor, var: Tensor, prior_mu: float, prior_sigma: float):
        inv_var = 1.0 / prior_sigma**2
        centred = (mu - prior_mu if prior_mu else mu).reshape(-1)
        kl = (0.5 * inv_var * (var.sum() + torch.dot(centred, centred)) - log_sigma.sum()
              + mu.numel() * (math.log(prior_sigma) - 0.5))
        ctx.save_for_backward(mu)
        ctx.prior = (prior_mu, inv_var)
        return kl

    @staticmethod
    def backward(ctx, grad_kl: Tensor):
        (mu,) = ctx.saved_tensors
        prior_mu, inv_var = ctx.prior
        c = grad_kl * inv_var
        grad_mu = c * (mu - prior_mu if prior_mu else mu)
        # d/d var = c/2 (flows on through var = exp(2·log_sigma)); d/d log_sigma (direct) = −grad_kl
        grad_var = (0.5 * c).expand(mu.shape)
        grad_ls = (-grad_kl).expand(mu.shape)
        return grad_mu, grad_ls, grad_var, None, None


def loss_terms(model: VAE, codes: Tensor, neff: float, generator: torch.Generator | None = None,
               *, local: bool = False, matmul_dtype: torch.dtype | None = None, compiled: bool = False,
               encoder_dtype: torch.dtype | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """Training loss = −mean ELBO of a weight-sampled batch + regulariser / Neff.

    This is DeepSequence's objective (maximised there, minimised here). With ``local`` (svi
    decoder only) the output weights are integrated out per sequence
    (:meth:`Decoder.forward_local`): the same expected loss with a lower-variance gradient.
    ``matmul_dtype`` (e.g. bfloat16) sets the precision of the decoder's large products (inputs
    rounded, float32 accumulation and results; KL sums, log-softmax and the weights stay float32).
    ``compiled`` runs the sampling and KL of the largest decoder weights as compiled kernels.
    ``encoder_dtype`` (e.g. bfloat16) sets the precision of the encoder's hidden products (:meth:`Encoder.forward`).
    """
    if model.decoder.bayesian and local:
        dec = model.decoder
        weights, kl = dec.draw_with_kl(generator=generator, skip=("W_out",), compiled=compiled)
        log_sigma_out = dec.log_sigma["W_out"]
        out_var = torch.exp(2.0 * log_sigma_out)  # (H, L, C), shared by the KL and the logit variance
        kl = kl + _GaussianKLFromVar.apply(dec.mu["W_out"], log_sigma_out, out_var, *dec.prior("W_out"))
        mu, log_sigma = model.encoder(codes, encoder_dtype)  # (B, D) each
        eps = torch.randn(mu.shape, device=mu.device, dtype=mu.dtype, generator=generator)
        log_probs = dec.forward_local(mu + torch.exp(log_sigma) * eps, weights, out_var, generator,
                                      matmul_dtype=matmul_dtype)
        terms = ElboTerms(model.log_likelihood(log_probs, codes), model.latent_kl(mu, log_sigma))
        reg = kl / neff
    elif model.decoder.bayesian:
        # Sample and KL in one fused pass over the decoder weights (same draw order as ``draw``).
        weights, kl = model.decoder.draw_with_kl(generator=generator, compiled=compiled)
        terms = model(codes, weights=weights, generator=generator, matmul_dtype=matmul_dtype,
                      encoder_dtype=encoder_dtype)
        reg = kl / neff
    else:
        terms = model(codes, generator=generator)
        reg = model.regulariser() / neff
    loss = -terms.elbo.mean() + reg
    stats = {"elbo": terms.elbo.mean().detach(), "log_px_z": terms.log_px_z.mean().detach(),
             "kl_z": terms.kl_z.mean().detach(), "kl_theta": reg.detach()}
    return loss, stats


__all__ = ["VAEConfig", "VAE", "Encoder", "Decoder", "ElboTerms", "gaussian_kl", "loss_terms"]
