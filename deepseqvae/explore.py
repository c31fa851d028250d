"""Exploring a family with a trained model: saturation scans, latent-space maps, generated sequences.

* :func:`saturation_scan` scores every single substitution at every modelled position (``L × 19``)
  with exactly the estimator of ``deepseqvae score`` (:func:`deepseqvae.score.delta_elbo` for a VAE,
  the log-ratio of the site-independent model otherwise): the same checkpoint, seed, K and batch
  size give bit-identical numbers for the same mutants in the same order.
* :func:`embed_alignment` encodes an alignment (read and filtered as in training) into the latent
  means and log-variances of the encoder, in batches.
* :func:`sample_sequences` draws new sequences from the prior (or from the posterior around one
  sequence) and :func:`interpolate_sequences` decodes the line between two sequences' latent means.

The ``*_file`` functions at the end are what the ``scan``, ``embed`` and ``sample`` commands run:
they load the checkpoint, call the functions above and write their outputs atomically.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .alignment import Alignment, read_alignment
from .alphabet import AA_TO_CODE, ALPHABET, N_AA, one_hot
from .checkpoint import Checkpoint, build_model, load_checkpoint
from .errors import CheckpointError, DeepSeqVAEError
from .fileio import atomic_write
from .model import VAE
from .score import apply_changes, default_samples, delta_elbo, encode_batched

log = logging.getLogger(__name__)

#: CSV float format, as ``deepseqvae score`` writes it
FLOAT_FORMAT = "%.6g"


def focus_codes(ckpt: Checkpoint) -> np.ndarray:
    """``(L,)`` int8 codes of the checkpoint's focus (wild-type) sequence."""
    return np.array([AA_TO_CODE[a] for a in ckpt.info.focus_seq], dtype=np.int8)


def require_vae(ckpt: Checkpoint, what: str, path: str | os.PathLike | None = None) -> None:
    """Raise :class:`CheckpointError` unless ``ckpt`` holds a VAE (``what`` names the operation)."""
    if ckpt.kind != "vae":
        where = f"{path}: " if path is not None else ""
        raise CheckpointError(f"{where}{what} needs a VAE checkpoint, but this is a '{ckpt.kind}' model "
                              "(the site-independent baseline has no latent space); train with --model vae")


# --------------------------------------------------------------------------------------------
# Saturation scan
# --------------------------------------------------------------------------------------------


def saturation_mutants(focus_seq: str, positions: list[int] | np.ndarray
                       ) -> tuple[list[str], list[tuple[tuple[int, int], ...]]]:
    """All ``19·L`` single substitutions, position-major, new residues in ALPHABET order.

    Returns the mutant strings (``H24A``, residue numbering from ``positions``) and, for each, its
    ``((column, new code),)`` change as :func:`deepseqvae.mutations.resolve_mutants` would give it.
    """
    names: list[str] = []
    changes: list[tuple[tuple[int, int], ...]] = []
    for col, (wt, pos) in enumerate(zip(focus_seq, positions)):
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
    score_sem: np.ndarray     # (M,) Monte-Carlo standard error (0 for the independent model)
    focus_id: str
    focus_seq: str            # (L,) wild-type residues of the modelled columns
    positions: np.ndarray     # (L,) residue numbers
    kind: str                 # "vae" or "independent"
    n_samples: int | None     # K (None for the independent model)
    seed: int

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


def saturation_scan(
    ckpt: Checkpoint,
    *,
    n_samples: int | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    chunk_size: int = 2048,
    progress: bool = False,
) -> ScanResult:
    """Score all ``19·L`` single substitutions of the checkpoint's focus sequence.

    Uses the code path of :func:`deepseqvae.score.score_table`: :func:`delta_elbo` with
    ``n_samples`` (default :func:`default_samples` of ``device``), ``seed`` and ``chunk_size`` for a
    VAE, ``model.delta`` for an independent checkpoint. Scoring the returned mutants with
    ``score_table`` / ``deepseqvae score`` with the same seed, K, batch size and device gives the
    same numbers.
    """
    info = ckpt.info
    names, changes = saturation_mutants(info.focus_seq, info.positions)
    wt = focus_codes(ckpt)  # (L,)
    model = build_model(ckpt)
    K: int | None = None
    if ckpt.kind == "independent":
        score, sem = model.delta(wt, changes), np.zeros(len(changes))
    else:
        K = n_samples if n_samples is not None else default_samples(device)
        variants = apply_changes(wt, changes)  # (M, L) int8
        log.info("scanning %d single substitutions with K = %d samples", len(names), K)
        res = delta_elbo(model, wt, variants, n_samples=K, seed=seed, device=device, chunk_size=chunk_size,
                         progress=progress)
        score, sem = res.mean, res.sem
    return ScanResult(mutants=names, columns=np.array([c[0][0] for c in changes], dtype=np.int64),
                      codes=np.array([c[0][1] for c in changes], dtype=np.int64), score=np.asarray(score),
                      score_sem=np.asarray(sem), focus_id=info.focus_id, focus_seq=info.focus_seq,
                      positions=np.asarray(info.positions, dtype=np.int64), kind=ckpt.kind, n_samples=K,
                      seed=seed)


def positions_path(output: str | os.PathLike) -> Path:
    """``<output stem>_positions.csv`` beside ``output``."""
    p = Path(output)
    return p.with_name(f"{p.stem}_positions.csv")


def write_scan(result: ScanResult, output: str | os.PathLike) -> tuple[Path, Path]:
    """Write the scan CSV and its per-position summary (both atomically); return both paths."""
    out, pos = Path(output), positions_path(output)
    with atomic_write(out, "w", newline="") as fh:
        result.frame().to_csv(fh, index=False, float_format=FLOAT_FORMAT)
    with atomic_write(pos, "w", newline="") as fh:
        result.position_summary().to_csv(fh, index=False, float_format=FLOAT_FORMAT)
    return out, pos


# --------------------------------------------------------------------------------------------
# Latent space
# --------------------------------------------------------------------------------------------


def check_alignment_matches(aln: Alignment, ckpt: Checkpoint) -> None:
    """Raise :class:`DeepSeqVAEError` naming the file unless ``aln``'s columns are the checkpoint's.

    The number of kept columns and their residue numbers must equal the checkpoint's; a different
    focus sequence over the same columns is only logged (e.g. another family member as focus).
    """
    info = ckpt.info
    if aln.L != len(info.positions) or not np.array_equal(aln.positions, np.asarray(info.positions)):
        have = f"{aln.L} columns, residues {int(aln.positions[0])}-{int(aln.positions[-1])}" if aln.L else "0 columns"
        want = f"{len(info.positions)} columns, residues {info.positions[0]}-{info.positions[-1]}"
        raise DeepSeqVAEError(
            f"{aln.path}: its modelled columns ({have}) differ from the model's ({want}, focus "
            f"{info.focus_id}); use the training alignment and the same --focus/--first-index/filter options")
    if aln.focus_seq != info.focus_seq:
        log.warning("%s: focus %s differs from the model's focus %s at %d of %d columns", aln.path, aln.focus_id,
                    info.focus_id, sum(a != b for a, b in zip(aln.focus_seq, info.focus_seq)), aln.L)


def read_matching_alignment(msa: str | os.PathLike, ckpt: Checkpoint, align_opts: dict | None = None) -> Alignment:
    """``read_alignment(msa, **align_opts)`` (as in training), checked against the checkpoint."""
    aln = read_alignment(msa, **(align_opts or {}))
    check_alignment_matches(aln, ckpt)
    return aln


def find_sequence(aln: Alignment, seq_id: str) -> int:
    """Row of record ``seq_id`` (its first occurrence) in ``aln``; a clear error when absent."""
    name = seq_id[1:] if seq_id.startswith(">") else seq_id
    try:
        return aln.ids.index(name)
    except ValueError:
        raise DeepSeqVAEError(f"{aln.path}: no sequence '{name}' among its {aln.N} kept sequences "
                              f"(ids are the header up to the first whitespace; it may have been "
                              f"dropped by the filters)") from None


@torch.no_grad()
def encode_latent(model: VAE, codes: np.ndarray, *, batch_size: int = 1024,
                  device: torch.device | str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Latent means and log-variances ``(N, D)`` each of int8 ``codes`` (N, L), in batches.

    The encoder returns ``(mu, log_sigma)``; the log-variance is ``2·log_sigma``.
    """
    model = model.to(torch.device(device)).eval()
    mu, log_sigma = encode_batched(model, np.asarray(codes), batch_size)  # (N, D) each
    return mu.cpu().numpy(), (2.0 * log_sigma).cpu().numpy()


@dataclass
class Embedding:
    """Latent encoding of every sequence of an alignment."""

    alignment: Alignment
    mu: np.ndarray       # (N, D) latent means
    logvar: np.ndarray   # (N, D) latent log-variances

    def frame(self) -> pd.DataFrame:
        """``id, z1..zD, logvar1..logvarD``, one row per sequence in alignment order."""
        D = self.mu.shape[1]
        data: dict[str, object] = {"id": list(self.alignment.ids)}
        for d in range(D):
            data[f"z{d + 1}"] = self.mu[:, d]
        for d in range(D):
            data[f"logvar{d + 1}"] = self.logvar[:, d]
        return pd.DataFrame(data)


def embed_alignment(ckpt: Checkpoint, msa: str | os.PathLike, *, align_opts: dict | None = None,
                    batch_size: int = 1024, device: torch.device | str = "cpu") -> Embedding:
    """Read ``msa`` exactly as in training, check it against ``ckpt`` and encode every sequence."""
    require_vae(ckpt, "embedding")
    aln = read_matching_alignment(msa, ckpt, align_opts)
    model = build_model(ckpt)
    mu, logvar = encode_latent(model, aln.codes, batch_size=batch_size, device=device)
    return Embedding(alignment=aln, mu=mu, logvar=logvar)


def identity_to_focus(codes: np.ndarray, focus: np.ndarray) -> np.ndarray:
    """Fraction of the ``L`` modelled columns where each row (N, L) has the focus residue (L,).

    Gaps count as differences, so a fragment has a low identity.
    """
    return (np.asarray(codes) == np.asarray(focus)[None, :]).mean(axis=1)


def read_values(path: str | os.PathLike, ids: tuple[str, ...] | list[str]) -> np.ndarray:
    """Values for ``ids`` from a CSV with columns ``id,value``; NaN for ids the file lacks."""
    path = Path(path)
    try:
        table = pd.read_csv(path, dtype={"id": str})
    except (OSError, ValueError) as exc:
        raise DeepSeqVAEError(f"{path}: cannot read colour values ({exc})") from None
    if not {"id", "value"} <= set(table.columns):
        raise DeepSeqVAEError(f"{path}: needs columns 'id' and 'value' (has {', '.join(map(str, table.columns))})")
    values = pd.to_numeric(table["value"], errors="coerce")
    bad = values.isna() & table["value"].notna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DeepSeqVAEError(f"{path}: row {i + 2}: value {table['value'].iloc[i]!r} is not a number")
    lookup = dict(zip(table["id"].astype(str), values.to_numpy(dtype=float)))
    out = np.array([lookup.get(i, np.nan) for i in ids], dtype=float)
    n_found = int(np.isfinite(out).sum())
    if n_found == 0:
        raise DeepSeqVAEError(f"{path}: none of its {len(table)} ids is a sequence of the alignment")
    if n_found < len(ids):
        log.warning("%s: no value for %d of %d sequences (drawn grey)", path, len(ids) - n_found, len(ids))
    return out


def color_values(emb: Embedding, color_by: str, *, theta: float,
                 device: torch.device | str = "cpu") -> tuple[np.ndarray, str]:
    """``(N,)`` colour values and their label: ``weight``, ``identity`` or a CSV file (``id,value``)."""
    aln = emb.alignment
    if color_by == "weight":
        from .weights import compute_weights

        return compute_weights(aln.codes, theta, device=device), f"sequence weight (theta = {theta:g})"
    if color_by == "identity":
        return identity_to_focus(aln.codes, aln.focus_codes), f"identity to {aln.focus_id}"
    return read_values(color_by, aln.ids), Path(color_by).stem


def latent_2d(mu: np.ndarray) -> tuple[np.ndarray, str, str]:
    """2-D coordinates (N, 2) for a plot and axis labels: the latents when D ≤ 2, else PCA via SVD."""
    N, D = mu.shape
    if D == 1:
        return np.column_stack([mu[:, 0], np.zeros(N)]), "z1", ""
    if D == 2:
        return np.asarray(mu, dtype=float), "z1", "z2"
    centred = np.asarray(mu, dtype=np.float64) - mu.mean(axis=0, keepdims=True)  # (N, D)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)  # vt: (D, D)
    explained = s**2 / max(float((s**2).sum()), 1e-300)
    coords = centred @ vt[:2].T  # (N, 2)
    return coords, f"PC1 ({100 * explained[0]:.0f}% of variance)", f"PC2 ({100 * explained[1]:.0f}% of variance)"


# --------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------


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


def _generator(device: torch.device, seed: int) -> torch.Generator:
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


@torch.no_grad()
def estimate_elbo(model: VAE, codes: np.ndarray, *, n_samples: int = 20, seed: int = 0,
                  device: torch.device | str = "cpu", chunk_size: int = 1024) -> np.ndarray:
    """ELBO of each sequence (M, L) averaged over ``n_samples`` decoder-weight and latent draws, (M,)."""
    device = torch.device(device)
    model = model.to(device).eval()
    dec = model.decoder
    dtype = dec.mu["W_out"].dtype
    gen = _generator(device, seed)
    x = torch.tensor(np.asarray(codes), dtype=torch.int8, device=device)  # (M, L)
    total = torch.zeros(x.shape[0], dtype=torch.float64, device=device)
    if x.shape[0] == 0:
        return np.zeros(0)
    mu, log_sigma = encode_batched(model, x, chunk_size)  # (M, D) each
    kl = VAE.latent_kl(mu, log_sigma).double()  # (M,)
    for _ in range(n_samples):
        w = dec.draw(generator=gen)
        w_out = dec.output_weight(w)  # (H, 20L), shared by every chunk
        eps = torch.randn(mu.shape, device=device, dtype=dtype, generator=gen)  # (M, D)
        z = mu + torch.exp(log_sigma) * eps
        for start in range(0, x.shape[0], chunk_size):
            sl = slice(start, start + chunk_size)
            total[sl] += VAE.log_likelihood(dec(z[sl], w, w_out), x[sl]).double()
    return (total / n_samples - kl).cpu().numpy()


@torch.no_grad()
def sample_sequences(
    ckpt: Checkpoint,
    n: int,
    *,
    temperature: float = 1.0,
    seed: int = 0,
    near: np.ndarray | None = None,
    device: torch.device | str = "cpu",
    batch_size: int = 100,
    elbo_samples: int = 20,
    prefix: str = "gen_",
) -> list[GeneratedSequence]:
    """Draw ``n`` sequences from the model.

    For each batch of ``batch_size`` sequences: latents ``z`` (B, D) from the prior N(0, I), or with
    ``near`` (the ``(L,)`` codes of one sequence) from its posterior N(mu, sigma²); one decoder-weight
    draw (``decoder.draw``: a posterior sample for the "svi" decoder, the point weights for "mle"),
    shared by the batch; then every column's residue from ``softmax(logits / temperature)``. All
    randomness comes from one generator seeded with ``seed``, so the output is reproducible for a
    given seed, batch size and device. The ELBO of each sequence is estimated with ``elbo_samples``
    draws (:func:`estimate_elbo`, seeded with ``seed``).
    """
    require_vae(ckpt, "sampling")
    if n < 1:
        raise DeepSeqVAEError(f"the number of sequences must be positive, got {n}")
    if not temperature > 0:
        raise DeepSeqVAEError(f"temperature must be > 0, got {temperature}")
    device = torch.device(device)
    model = build_model(ckpt).to(device)
    dec = model.decoder
    dtype = dec.mu["W_out"].dtype
    L, D = model.cfg.seq_len, model.cfg.latent_dim
    gen = _generator(device, seed)
    if near is not None:
        x = torch.tensor(np.asarray(near).reshape(1, L), dtype=torch.int8, device=device)
        mu0, log_sigma0 = model.encoder(one_hot(x, dtype=dtype))  # (1, D) each
    else:
        mu0 = torch.zeros(1, D, device=device, dtype=dtype)
        log_sigma0 = torch.zeros(1, D, device=device, dtype=dtype)
    chunks = []
    for start in range(0, n, batch_size):
        b = min(batch_size, n - start)
        z = mu0 + torch.exp(log_sigma0) * torch.randn((b, D), device=device, dtype=dtype, generator=gen)  # (b, D)
        w = dec.draw(generator=gen)
        log_probs = dec(z, w)  # (b, L, 20), log_softmax of the logits
        # softmax(log_softmax(l) / T) = softmax(l / T): the normaliser is a constant per column.
        probs = torch.softmax(log_probs / temperature, dim=-1).reshape(b * L, N_AA)  # (b·L, 20)
        picked = torch.multinomial(probs, 1, generator=gen).reshape(b, L)  # (b, L)
        chunks.append(picked.to(torch.int8).cpu())
    codes = torch.cat(chunks).numpy()  # (n, L) int8
    return _records(model, codes, focus_codes(ckpt), prefix=prefix, n_width=len(str(n)), seed=seed,
                    device=device, elbo_samples=elbo_samples)


@torch.no_grad()
def decode_argmax(model: VAE, z: np.ndarray | torch.Tensor, *, device: torch.device | str = "cpu") -> np.ndarray:
    """Most probable residue per column (N, L) int8 for latents ``z`` (N, D), at the mean decoder weights."""
    device = torch.device(device)
    model = model.to(device).eval()
    dec = model.decoder
    zt = torch.as_tensor(z, dtype=dec.mu["W_out"].dtype, device=device)  # (N, D)
    log_probs = dec(zt, dec.draw(sample=False))  # (N, L, 20)
    return log_probs.argmax(dim=-1).to(torch.int8).cpu().numpy()


@torch.no_grad()
def interpolate_sequences(
    ckpt: Checkpoint,
    start_codes: np.ndarray,
    end_codes: np.ndarray,
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
    require_vae(ckpt, "interpolation")
    if steps < 2:
        raise DeepSeqVAEError(f"interpolation needs at least 2 steps, got {steps}")
    device = torch.device(device)
    model = build_model(ckpt).to(device)
    mu, _ = encode_latent(model, np.vstack([start_codes, end_codes]), device=device)  # (2, D)
    t = np.linspace(0.0, 1.0, steps)[:, None]  # (S, 1)
    z = (1.0 - t) * mu[0] + t * mu[1]  # (S, D)
    codes = decode_argmax(model, z, device=device)  # (S, L)
    records = _records(model, codes, focus_codes(ckpt), prefix=prefix, n_width=len(str(steps)), seed=seed,
                       device=device, elbo_samples=elbo_samples)
    for rec, ti in zip(records, t[:, 0]):
        rec.extra["t"] = f"{ti:.3f}"
    return records


def _records(model: VAE, codes: np.ndarray, focus: np.ndarray, *, prefix: str, n_width: int, seed: int,
             device: torch.device, elbo_samples: int) -> list[GeneratedSequence]:
    """Wrap decoded codes (M, L) as records with identity to the focus and estimated ELBO."""
    identity = identity_to_focus(codes, focus)  # (M,)
    elbo = (estimate_elbo(model, codes, n_samples=elbo_samples, seed=seed, device=device) if elbo_samples
            else np.full(codes.shape[0], math.nan))
    width = max(4, n_width)
    letters = np.frombuffer(ALPHABET.encode("ascii"), dtype=np.uint8)
    return [GeneratedSequence(id=f"{prefix}{i + 1:0{width}d}", seq=letters[row].tobytes().decode("ascii"),
                              identity=float(identity[i]), elbo=float(elbo[i]))
            for i, row in enumerate(codes.astype(np.int64))]


def write_fasta(records: list[GeneratedSequence], path: str | os.PathLike) -> Path:
    """Write records atomically, one header line and one sequence line each."""
    path = Path(path)
    with atomic_write(path, "w") as fh:
        for rec in records:
            fh.write(f">{rec.header()}\n{rec.seq}\n")
    return path


# --------------------------------------------------------------------------------------------
# What the commands run
# --------------------------------------------------------------------------------------------


def default_scan_output(model: str | os.PathLike) -> Path:
    """``<model stem>_singles.csv`` beside the checkpoint."""
    p = Path(model)
    return p.with_name(f"{p.stem}_singles.csv")


def scan_file(
    model: str | os.PathLike,
    output: str | os.PathLike | None = None,
    *,
    plot: str | os.PathLike | None = None,
    n_samples: int | None = None,
    seed: int = 0,
    device: str = "auto",
    batch_size: int = 2048,
    max_per_row: int = 100,
    progress: bool = False,
) -> tuple[ScanResult, Path, Path]:
    """Scan every single substitution of ``model``; write the scan, the position summary and a heatmap.

    Returns ``(result, scan CSV, positions CSV)``.
    """
    from .weights import resolve_device

    ckpt = load_checkpoint(model)
    dev = resolve_device(device)
    result = saturation_scan(ckpt, n_samples=n_samples, seed=seed, device=dev, chunk_size=batch_size,
                             progress=progress)
    out, pos = write_scan(result, output if output is not None else default_scan_output(model))
    if plot is not None:
        from .plots import plot_scan_heatmap, save_figure

        save_figure(plot_scan_heatmap(result, max_per_row=max_per_row), plot)
    return result, out, pos


def embed_file(
    model: str | os.PathLike,
    msa: str | os.PathLike,
    output: str | os.PathLike,
    *,
    align_opts: dict | None = None,
    plot: str | os.PathLike | None = None,
    color_by: str = "weight",
    batch_size: int = 1024,
    device: str = "auto",
) -> tuple[Embedding, Path]:
    """Encode the alignment ``msa`` with ``model``, write the latent CSV and optionally a 2-D map."""
    from .weights import resolve_device

    ckpt = load_checkpoint(model)
    require_vae(ckpt, "embed", model)
    dev = resolve_device(device)
    emb = embed_alignment(ckpt, msa, align_opts=align_opts, batch_size=batch_size, device=dev)
    out = Path(output)
    with atomic_write(out, "w", newline="") as fh:
        emb.frame().to_csv(fh, index=False, float_format=FLOAT_FORMAT)
    if plot is not None:
        from .plots import plot_latent, save_figure

        values, label = color_values(emb, color_by, theta=ckpt.info.theta, device=dev)
        coords, xlabel, ylabel = latent_2d(emb.mu)
        aln = emb.alignment
        fig = plot_latent(coords, values, focus_index=aln.focus_index, focus_label=aln.focus_id,
                          xlabel=xlabel, ylabel=ylabel, color_label=label,
                          title=f"Latent space of {ckpt.info.focus_id} family ({aln.N:,} sequences, "
                                f"D = {emb.mu.shape[1]})")
        save_figure(fig, plot)
    return emb, out


def sample_file(
    model: str | os.PathLike,
    output: str | os.PathLike,
    *,
    n: int | None = None,
    temperature: float = 1.0,
    seed: int = 0,
    near: str | None = None,
    interpolate: tuple[str, str] | None = None,
    steps: int = 10,
    msa: str | os.PathLike | None = None,
    align_opts: dict | None = None,
    device: str = "auto",
    batch_size: int = 100,
    elbo_samples: int = 20,
) -> tuple[list[GeneratedSequence], Path]:
    """Generate sequences (prior, ``near`` one sequence, or ``interpolate`` between two) into a FASTA."""
    from .weights import resolve_device

    ckpt = load_checkpoint(model)
    require_vae(ckpt, "sample", model)
    dev = resolve_device(device)
    aln = None
    if near is not None or interpolate is not None:
        if msa is None:
            raise DeepSeqVAEError("--near and --interpolate need --msa, the alignment holding the sequences")
        aln = read_matching_alignment(msa, ckpt, align_opts)
    if interpolate is not None:
        assert aln is not None
        a, b = (aln.codes[find_sequence(aln, i)] for i in interpolate)
        records = interpolate_sequences(ckpt, a, b, steps, device=dev, seed=seed, elbo_samples=elbo_samples)
    else:
        if n is None:
            raise DeepSeqVAEError("give the number of sequences to draw (-n)")
        start = aln.codes[find_sequence(aln, near)] if (aln is not None and near is not None) else None
        records = sample_sequences(ckpt, n, temperature=temperature, seed=seed, near=start, device=dev,
                                   batch_size=batch_size, elbo_samples=elbo_samples)
    return records, write_fasta(records, output)


__all__ = [
    "ScanResult", "saturation_mutants", "saturation_scan", "positions_path", "write_scan",
    "Embedding", "check_alignment_matches", "read_matching_alignment", "find_sequence", "encode_latent",
    "embed_alignment", "identity_to_focus", "read_values", "color_values", "latent_2d",
    "GeneratedSequence", "estimate_elbo", "sample_sequences", "decode_argmax", "interpolate_sequences",
    "write_fasta", "require_vae", "focus_codes", "scan_file", "embed_file", "sample_file", "default_scan_output",
]
