"""The latent space of a family: encoding an alignment, 2-D coordinates and colour values for a map.

:func:`embed_alignment` reads an alignment with the options recorded in the checkpoint (as in
training), checks its columns against the model and encodes every sequence into the encoder's
latent means and log-variances, in batches. :func:`latent_2d` gives plot coordinates.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .alignment import Alignment, AlignmentOptions, id_with_region
from .checkpoint import Checkpoint
from .errors import DeepSeqVAEError
from .model import VAE
from .score import encode_batched
from .tables import file_line
from .weights import resolve_device

log = logging.getLogger(__name__)


def check_alignment_matches(aln: Alignment, ckpt: Checkpoint) -> None:
    """Raise :class:`DeepSeqVAEError` naming the file unless ``aln``'s columns are the checkpoint's.

    The number of kept columns and their residue numbers must equal the checkpoint's; a different
    focus sequence over the same columns is only logged (e.g. another family member as focus).
    """
    info = ckpt.info
    if len(info.positions) != aln.L or not np.array_equal(aln.positions, np.asarray(info.positions)):
        have = f"{aln.L} columns, residues {int(aln.positions[0])}-{int(aln.positions[-1])}" if aln.L else "0 columns"
        want = f"{len(info.positions)} columns, residues {info.positions[0]}-{info.positions[-1]}"
        raise DeepSeqVAEError(
            f"{aln.path}: its modelled columns ({have}) differ from the model's ({want}, focus "
            f"{info.focus_id}); use the training alignment and the same --focus/--first-index/filter options")
    if aln.focus_seq != info.focus_seq:
        log.warning("%s: focus %s differs from the model's focus %s at %d of %d columns", aln.path, aln.focus_id,
                    info.focus_id, sum(a != b for a, b in zip(aln.focus_seq, info.focus_seq, strict=True)), aln.L)


def read_matching_alignment(msa: str | os.PathLike | Alignment, ckpt: Checkpoint,
                            options: AlignmentOptions | None = None) -> Alignment:
    """Read ``msa`` with the options recorded in ``ckpt`` (as in training), checked against the checkpoint.

    Fields set in ``options`` (those differing from the defaults) override the recorded ones. An :class:`Alignment`
    read already is only checked (``options``, which set how a file is read, must then be None).
    """
    if isinstance(msa, Alignment):
        if options is not None:
            raise ValueError("options set how a file is read: an Alignment is read already")
        aln = msa
    else:
        recorded = ckpt.info.alignment_options
        aln = (recorded.updated(options) if options is not None else recorded).read(msa)
    check_alignment_matches(aln, ckpt)
    return aln


def find_sequence(aln: Alignment, seq_id: str) -> int:
    """Row of record ``seq_id`` (its first occurrence, with a warning when several records share the id) in
    ``aln``; a clear error when absent."""
    name = seq_id[1:] if seq_id.startswith(">") else seq_id
    try:
        row = aln.ids.index(name)
    except ValueError:
        near = id_with_region(aln.ids, name)
        hint = f"; did you mean '{near}'?" if near else ""
        raise DeepSeqVAEError(f"{aln.path}: no sequence '{name}' among its {aln.N} kept sequences "
                              f"(ids are the header up to the first whitespace, a /start-end region included; it "
                              f"may have been dropped by the filters){hint}") from None
    shared = aln.ids.count(name)
    if shared > 1:  # an a3m of UniRef hits can repeat an id: say which record is used
        log.warning("%s: %d kept sequences share the id '%s'; using the first of them (kept sequence %d)", aln.path,
                    shared, name, row + 1)
    return row


@torch.no_grad()
def encode_latent(model: VAE, codes: np.ndarray, *, batch_size: int = 1024,
                  device: torch.device | str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Latent means and log-variances ``(N, D)`` each of int8 ``codes`` (N, L), in batches.

    The encoder returns ``(mu, log_sigma)``; the log-variance is ``2·log_sigma``.
    """
    model = model.to(resolve_device(device)).eval()
    mu, log_sigma = encode_batched(model, np.asarray(codes), batch_size)  # (N, D) each
    return mu.cpu().numpy(), (2.0 * log_sigma).cpu().numpy()


@dataclass
class Embedding:
    """Latent encoding of every sequence of an alignment."""

    alignment: Alignment
    mu: np.ndarray       # (N, D) latent means
    logvar: np.ndarray   # (N, D) latent log-variances

    @property
    def frame(self) -> pd.DataFrame:
        """``id, z1..zD, logvar1..logvarD``, one row per sequence in alignment order."""
        D = self.mu.shape[1]
        data: dict[str, object] = {"id": list(self.alignment.ids)}
        for d in range(D):
            data[f"z{d + 1}"] = self.mu[:, d]
        for d in range(D):
            data[f"logvar{d + 1}"] = self.logvar[:, d]
        return pd.DataFrame(data)


def embed_alignment(ckpt: Checkpoint, msa: str | os.PathLike | Alignment, *, options: AlignmentOptions | None = None,
                    batch_size: int = 1024, device: torch.device | str = "cpu") -> Embedding:
    """Read ``msa`` exactly as in training (or take an :class:`Alignment` read already; ``options`` then unused),
    check it against ``ckpt`` and encode every sequence."""
    model = ckpt.latent_model("embedding")
    aln = read_matching_alignment(msa, ckpt, options)
    mu, logvar = encode_latent(model, aln.codes, batch_size=batch_size, device=device)
    return Embedding(alignment=aln, mu=mu, logvar=logvar)


def identity_to_focus(codes: np.ndarray, focus: np.ndarray) -> np.ndarray:
    """Fraction of the ``L`` modelled columns where each row (N, L) has the focus residue (L,).

    Gaps count as differences, so a fragment has a low identity.
    """
    return (np.asarray(codes) == np.asarray(focus)[None, :]).mean(axis=1)


def _row_lines(path: Path, n_rows: int) -> tuple[int, ...]:
    """The file line (1-based) of each of the ``n_rows`` data rows pandas read from ``path``: it skips blank
    lines, so they are counted here; ``()`` where the non-blank lines are not one per row (a quoted cell
    spanning lines), and :func:`~deepseqvae.tables.file_line` then counts from the header."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ()
    filled = [i + 1 for i, ln in enumerate(lines) if ln.strip()]  # the header first
    return tuple(filled[1:]) if len(filled) == n_rows + 1 else ()


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
        line = file_line(_row_lines(path, len(table)), i)
        raise DeepSeqVAEError(f"{path}: line {line}: value {table['value'].iloc[i]!r} is not a number")
    ids_in = table["id"].astype(str)
    repeated = ids_in.duplicated(keep="first")
    if repeated.any():  # one value per sequence: a second one would overwrite the first silently
        i = int(np.flatnonzero(repeated.to_numpy())[0])
        first = int(np.flatnonzero((ids_in == ids_in.iloc[i]).to_numpy())[0])
        lines = _row_lines(path, len(table))
        raise DeepSeqVAEError(f"{path}: line {file_line(lines, i)}: id {ids_in.iloc[i]!r} repeats line "
                              f"{file_line(lines, first)}")
    lookup = dict(zip(ids_in, values.to_numpy(dtype=float), strict=True))
    out = np.array([lookup.get(i, np.nan) for i in ids], dtype=float)
    n_found = int(np.isfinite(out).sum())
    if n_found == 0:
        raise DeepSeqVAEError(f"{path}: none of its {len(table)} ids is a sequence of the alignment")
    if n_found < len(ids):
        log.warning("%s: no value for %d of %d sequences (drawn grey)", path, len(ids) - n_found, len(ids))
    unknown = sorted(set(lookup) - set(ids))
    if unknown:  # a typo or another alignment's ids: name a few
        log.warning("%s: %d id(s) are no sequence of the alignment (e.g. %s)", path, len(unknown),
                    ", ".join(map(repr, unknown[:3])))
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
    k = min(2, vt.shape[0])  # fewer than 2 components where N = 1: the missing axis stays 0
    coords, explained = np.zeros((N, 2)), np.zeros(2)
    coords[:, :k] = centred @ vt[:k].T  # (N, 2)
    explained[:k] = s[:k] ** 2 / max(float((s**2).sum()), 1e-300)
    return coords, f"PC1 ({100 * explained[0]:.0f}% of variance)", f"PC2 ({100 * explained[1]:.0f}% of variance)"
