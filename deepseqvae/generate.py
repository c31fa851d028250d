"""Generating sequences of a family: samples from the prior or near one sequence, and interpolations.

:func:`sample_sequences` draws new sequences from the prior (or from the posterior around one
sequence) and :func:`interpolate_sequences` decodes the line between two sequences' latent means;
each record carries its identity to the focus and an ELBO estimate (:func:`estimate_elbo`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from .alphabet import ALPHABET, N_AA, encode
from .checkpoint import Checkpoint
from .errors import DeepSeqVAEError
from .latent import encode_latent, identity_to_focus
from .model import VAE
from .runtime import whole_number
from .score import encode_batched
from .weights import resolve_device

#: sequences :func:`iter_samples` draws and estimates at a time: (SAMPLE_CHUNK, L) codes and (SAMPLE_CHUNK, D)
#: latents, whatever the number asked for
SAMPLE_CHUNK = 10_000


@dataclass
class GeneratedSequence:
    """One decoded sequence and how it relates to the family."""

    id: str
    seq: str                  # (L,) residues of the modelled columns
    identity: float           # fraction of the L columns equal to the focus
    elbo: float               # ELBO estimated with the model (mean over samples)
    extra: dict[str, str] = field(default_factory=dict)  # further header fields, e.g. {"t": "0.250"}

    def header(self) -> str:
        """FASTA header line without '>': ``gen_0001 identity=0.63 elbo=-123.4``."""
        fields = [self.id, *(f"{k}={v}" for k, v in self.extra.items()), f"identity={self.identity:.2f}",
                  f"elbo={self.elbo:.1f}"]
        return " ".join(fields)


def _bar(items, progress: bool, desc: str, unit: str, total: int | None = None):
    """``items``, with a progress bar on stderr when ``progress`` (a bar to update by hand when ``items`` is
    None and ``total`` given)."""
    if not progress:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit=unit, total=total, dynamic_ncols=True, leave=False)


def _generator(device: torch.device, seed: int) -> torch.Generator:
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


@torch.no_grad()
def estimate_elbo(model: VAE, codes: np.ndarray, *, n_samples: int = 20, seed: int = 0,
                  device: torch.device | str = "cpu", batch_size: int = 1024, progress: bool = False,
                  generator: torch.Generator | None = None) -> np.ndarray:
    """ELBO of each sequence (M, L) averaged over ``n_samples`` decoder-weight and latent draws, (M,).
    The draws come from ``generator`` when given (it advances), else from a new one seeded with ``seed``.
    ``progress``: a bar over the draws on stderr."""
    n_samples, batch_size = whole_number("n_samples", n_samples, 1), whole_number("batch_size", batch_size, 1)
    device = resolve_device(device)
    model = model.to(device).eval()
    dec = model.decoder
    dtype = dec.mu["W_out"].dtype
    gen = generator if generator is not None else _generator(device, seed)
    x = torch.tensor(np.asarray(codes), dtype=torch.int8, device=device)  # (M, L)
    total = torch.zeros(x.shape[0], dtype=torch.float64, device=device)
    if x.shape[0] == 0:
        return np.zeros(0)
    mu, log_sigma = encode_batched(model, x, batch_size)  # (M, D) each
    kl = VAE.latent_kl(mu, log_sigma).double()  # (M,)
    for _ in _bar(range(n_samples), progress, "ELBO draws", "draw"):
        w = dec.draw(generator=gen)
        w_out = dec.output_weight(w)  # (H, 20L), shared by every batch
        eps = torch.randn(mu.shape, device=device, dtype=dtype, generator=gen)  # (M, D)
        z = mu + torch.exp(log_sigma) * eps
        for start in range(0, x.shape[0], batch_size):
            sl = slice(start, start + batch_size)
            total[sl] += VAE.log_likelihood(dec(z[sl], w, w_out), x[sl]).double()
    return (total / n_samples - kl).cpu().numpy()


def sequence_codes(seq: str | np.ndarray, seq_len: int, what: str = "sequence") -> np.ndarray:
    """``(L,)`` int8 codes of one sequence of the model's ``seq_len`` modelled columns, given as its letters (gaps
    ``-``) or as codes; :class:`DeepSeqVAEError` naming ``what`` for another length or a letter that is not an
    amino acid."""
    if isinstance(seq, str):
        try:
            codes = encode(seq.upper())
        except ValueError as exc:
            raise DeepSeqVAEError(f"{what}: {exc}") from None
    else:
        codes = np.asarray(seq)
        if not np.issubdtype(codes.dtype, np.integer) or codes.size and not 0 <= codes.min() <= codes.max() <= N_AA:
            raise DeepSeqVAEError(f"{what} must be a sequence's letters or its codes 0-{N_AA} (20 = gap), not "
                                  f"{codes.dtype} values")
    if codes.shape != (seq_len,):
        raise DeepSeqVAEError(f"{what} must be one sequence of the model's {seq_len} modelled columns, not shape "
                              f"{codes.shape}")
    return codes.astype(np.int8)


def sample_sequences(ckpt: Checkpoint, n: int, **kwargs) -> list[GeneratedSequence]:
    """The ``n`` records of :func:`iter_samples` as a list (which holds them all: for a large ``n`` iterate
    instead, as ``deepseqvae sample`` does)."""
    return list(iter_samples(ckpt, n, **kwargs))


@torch.no_grad()  # on a generator function: no autograd while each record is made
def iter_samples(
    ckpt: Checkpoint,
    n: int,
    *,
    temperature: float = 1.0,
    seed: int = 0,
    near: str | np.ndarray | None = None,
    device: torch.device | str = "cpu",
    batch_size: int = 100,
    elbo_samples: int = 20,
    prefix: str = "gen_",
    progress: bool = False,
    chunk: int = SAMPLE_CHUNK,
) -> Iterator[GeneratedSequence]:
    """Draw ``n`` sequences from the model, yielding their records in order (``progress``: a bar on stderr).

    For each batch of ``batch_size`` sequences: latents ``z`` (B, D) from the prior N(0, I), or with ``near`` (one
    sequence: its ``(L,)`` codes or letters, :func:`sequence_codes`) from its posterior N(mu, sigma²); one
    decoder-weight draw (``decoder.draw``: a posterior sample for the "svi" decoder, the point weights for "mle"),
    shared by the batch; then every column's residue from ``softmax(logits / temperature)``. The ELBO of each
    sequence is estimated with ``elbo_samples`` draws (:func:`estimate_elbo`). Work goes ``chunk`` sequences at a
    time (at least one batch), so memory does not grow with ``n``. The sampling and the ELBO draws each come from
    one generator seeded with ``seed``, so the output is reproducible for a given seed, batch size, chunk and
    device; an ``n`` within one chunk gives what one pass over all of them would.
    """
    n, batch_size = whole_number("n", n, 1), whole_number("batch_size", batch_size, 1)
    elbo_samples, chunk = whole_number("elbo_samples", elbo_samples, 1), whole_number("chunk", chunk, 1)
    if not temperature > 0:
        raise DeepSeqVAEError(f"temperature must be > 0, got {temperature}")
    device = resolve_device(device)
    model = ckpt.latent_model("sampling").to(device)
    dec = model.decoder
    dtype = dec.mu["W_out"].dtype
    L, D = model.cfg.seq_len, model.cfg.latent_dim
    gen, elbo_gen = _generator(device, seed), _generator(device, seed)
    if near is not None:
        x = torch.tensor(sequence_codes(near, L, "near")[None], dtype=torch.int8, device=device)  # (1, L)
        mu0, log_sigma0 = model.encoder(x)  # (1, D) each; gather-sum first layer on the codes
    else:
        mu0 = torch.zeros(1, D, device=device, dtype=dtype)
        log_sigma0 = torch.zeros(1, D, device=device, dtype=dtype)
    # whole batches per chunk, so the batches (and their decoder draws) do not depend on the chunk
    per_chunk = max(1, chunk // batch_size) * batch_size
    bar = _bar(None, progress, "sampling", "seq", total=n)  # None without progress
    for first in range(0, n, per_chunk):
        m = min(per_chunk, n - first)
        codes = np.empty((m, L), dtype=np.int8)  # (m, L)
        for start in range(0, m, batch_size):
            b = min(batch_size, m - start)
            z = mu0 + torch.exp(log_sigma0) * torch.randn((b, D), device=device, dtype=dtype, generator=gen)  # (b, D)
            w = dec.draw(generator=gen)
            log_probs = dec(z, w)  # (b, L, 20), log_softmax of the logits
            # softmax(log_softmax(l) / T) = softmax(l / T): the normaliser is a constant per column.
            probs = torch.softmax(log_probs / temperature, dim=-1).reshape(b * L, N_AA)  # (b·L, 20)
            picked = torch.multinomial(probs, 1, generator=gen).reshape(b, L)  # (b, L)
            codes[start:start + b] = picked.to(torch.int8).cpu().numpy()
        yield from _records(model, codes, ckpt.info.focus_codes, prefix=prefix, n_width=len(str(n)), first=first,
                            device=device, elbo_samples=elbo_samples, generator=elbo_gen)
        if bar is not None:
            bar.update(m)
    if bar is not None:
        bar.close()


@torch.no_grad()
def decode_argmax(model: VAE, z: np.ndarray | torch.Tensor, *, device: torch.device | str = "cpu") -> np.ndarray:
    """Most probable residue per column (N, L) int8 for latents ``z`` (N, D), at the mean decoder weights."""
    device = resolve_device(device)
    model = model.to(device).eval()
    dec = model.decoder
    zt = torch.as_tensor(z, dtype=dec.mu["W_out"].dtype, device=device)  # (N, D)
    log_probs = dec(zt, dec.draw(sample=False))  # (N, L, 20)
    return log_probs.argmax(dim=-1).to(torch.int8).cpu().numpy()


@torch.no_grad()
def interpolate_sequences(
    ckpt: Checkpoint,
    start_codes: str | np.ndarray,
    end_codes: str | np.ndarray,
    steps: int,
    *,
    device: torch.device | str = "cpu",
    seed: int = 0,
    elbo_samples: int = 20,
    prefix: str = "interp_",
) -> list[GeneratedSequence]:
    """Decode ``steps`` points evenly spaced on the line between two sequences' latent means.

    Point ``i`` is ``z = (1 − t)·mu_start + t·mu_end`` with ``t = i / (steps − 1)``; it is decoded
    deterministically: the most probable residue at every column under the *mean* decoder weights
    (no sampling), so the first and last records are the model's reconstructions of the two
    sequences. ``seed`` only affects the ELBO estimates.
    """
    steps = whole_number("steps", steps, 2)  # an interpolation has its two ends at least
    elbo_samples = whole_number("elbo_samples", elbo_samples, 1)
    device = resolve_device(device)
    model = ckpt.latent_model("interpolation").to(device)
    ends = [sequence_codes(c, model.cfg.seq_len, what) for c, what in ((start_codes, "start"), (end_codes, "end"))]
    mu, _ = encode_latent(model, np.vstack(ends), device=device)  # (2, D)
    t = np.linspace(0.0, 1.0, steps)[:, None]  # (S, 1)
    z = (1.0 - t) * mu[0] + t * mu[1]  # (S, D)
    codes = decode_argmax(model, z, device=device)  # (S, L)
    records = _records(model, codes, ckpt.info.focus_codes, prefix=prefix, n_width=len(str(steps)), device=device,
                       elbo_samples=elbo_samples, generator=_generator(device, seed))
    for rec, ti in zip(records, t[:, 0], strict=True):
        rec.extra["t"] = f"{ti:.3f}"
    return records


def _records(model: VAE, codes: np.ndarray, focus: np.ndarray, *, prefix: str, n_width: int,
             device: torch.device, elbo_samples: int, generator: torch.Generator,
             first: int = 0) -> list[GeneratedSequence]:
    """Wrap decoded codes (M, L) as records numbered from ``first`` + 1, with identity to the focus and
    an ELBO estimated with draws from ``generator``."""
    identity = identity_to_focus(codes, focus)  # (M,)
    elbo = (estimate_elbo(model, codes, n_samples=elbo_samples, device=device, generator=generator)
            if elbo_samples
            else np.full(codes.shape[0], math.nan))
    width = max(4, n_width)
    letters = np.frombuffer(ALPHABET.encode("ascii"), dtype=np.uint8)
    return [GeneratedSequence(id=f"{prefix}{first + i + 1:0{width}d}", seq=letters[row].tobytes().decode("ascii"),
                              identity=float(identity[i]), elbo=float(elbo[i]))
            for i, row in enumerate(codes.astype(np.int64))]
