"""The one amino-acid alphabet and the one one-hot encoding used everywhere in deepseqvae.

Sequences are stored as int8 codes: 0..19 for ``ACDEFGHIKLMNPQRSTVWY`` and :data:`GAP_CODE` (20)
for a gap. :func:`one_hot` turns codes into ``(..., L, 20)`` float tensors with a gap as an
all-zero row, exactly as DeepSequence and EVE encode alignments.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

ALPHABET = "ACDEFGHIKLMNPQRSTVWY"
#: number of amino acids (the one-hot width)
N_AA = len(ALPHABET)
#: int8 code of a gap ('-' or '.')
GAP_CODE = N_AA
#: letters that mark an ambiguous or non-standard residue, and '*' (a stop in a translated sequence); sequences
#: with one in a modelled column are dropped, as DeepSequence and EVE skip sequences with letters outside the alphabet
NONSTANDARD = frozenset("BJOUXZ*")
#: code of a letter that is neither an amino acid nor a gap (used only transiently)
INVALID_CODE = -1
NONSTANDARD_CODE = -2

AA_TO_CODE = {aa: i for i, aa in enumerate(ALPHABET)}

# Byte -> code lookup table; upper- and lowercase letters map to the same code.
_LOOKUP = np.full(256, INVALID_CODE, dtype=np.int8)
for _i, _aa in enumerate(ALPHABET):
    _LOOKUP[ord(_aa)] = _i
    _LOOKUP[ord(_aa.lower())] = _i
for _c in "-.":
    _LOOKUP[ord(_c)] = GAP_CODE
for _c in NONSTANDARD:
    _LOOKUP[ord(_c)] = NONSTANDARD_CODE
    _LOOKUP[ord(_c.lower())] = NONSTANDARD_CODE


def encode_raw(seq: str) -> np.ndarray:
    """Codes of ``seq`` without validation: ``(L,)`` int8 with -1 for unknown, -2 for B/J/O/U/X/Z/*."""
    return _LOOKUP[np.frombuffer(seq.encode("ascii", errors="replace"), dtype=np.uint8)]


def encode(seq: str) -> np.ndarray:
    """Encode one aligned sequence (amino acids and gaps only) as ``(L,)`` int8 codes.

    Raises ``ValueError`` naming the first letter that is not an amino acid or a gap.
    """
    codes = encode_raw(seq)
    bad = np.flatnonzero(codes < 0)
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"unknown residue {seq[i]!r} at position {i + 1}")
    return codes


def encode_many(seqs: Iterable[str]) -> np.ndarray:
    """Encode equal-length sequences as an ``(N, L)`` int8 array (see :func:`encode`)."""
    rows = [encode(s) for s in seqs]
    if not rows:
        return np.zeros((0, 0), dtype=np.int8)
    return np.stack(rows)


def decode(codes: np.ndarray | torch.Tensor) -> str:
    """Inverse of :func:`encode` for one ``(L,)`` code vector."""
    letters = ALPHABET + "-"
    return "".join(letters[int(c)] for c in np.asarray(codes).ravel())


def one_hot(codes: np.ndarray | torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """One-hot encode int codes ``(..., L)`` into ``(..., L, 20)``; a gap is an all-zero row.

    The result lives on the device of ``codes`` when it is a tensor (CPU for a NumPy array).
    """
    # a NumPy array is copied (read-only ones, such as Alignment.codes, would make torch warn)
    t = codes.long() if isinstance(codes, torch.Tensor) else torch.from_numpy(np.array(codes, dtype=np.int64))
    # Code 20 (gap) gets a 21st channel that is cut away, leaving a zero row.
    return torch.nn.functional.one_hot(t, N_AA + 1)[..., :N_AA].to(dtype)
