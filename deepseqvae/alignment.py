"""Read a multiple sequence alignment (a2m, a3m or aligned FASTA) into DeepSequence-style codes.

The defaults reproduce DeepSequence's ``DataHelper`` preprocessing exactly:

1. The focus (wild-type) sequence is the first record, or the record named by ``focus``.
2. Modelled ("focus") columns are the columns where the focus row has an UPPERCASE residue;
   lowercase (insert / low-coverage) columns and focus gaps are dropped. With ``columns="all"``
   every column where the focus has a residue, upper or lower case, is modelled (EVE run with
   ``threshold_focus_cols_frac_gaps 1``, as ProteinGym does); the numbering does not change.
3. In the kept columns ``.`` becomes ``-`` and residues are uppercased.
4. Sequences with a non-standard letter (B, J, O, U, X, Z) or a stop (*) in a kept column are dropped.
5. The focus row stays in the alignment (it is one of the training sequences).

For BLAT_ECOLX this gives DeepSequence's 8,355 sequences x 253 columns.

Two optional EVE-style filters, both off by default, run afterwards (see :func:`read_alignment`).

The file may be gzip-compressed (recognised by its first bytes, whatever its name; a ``.gz`` suffix
is ignored when the format is chosen from the name) and may start with a UTF-8 byte order mark.

Residue numbering: focus residue ``k`` (0-based, counting every letter of the focus row, upper or
lower case, never gaps) has residue number ``start + k``; ``start`` comes from a ``NAME/start-end``
focus id, else 1, and ``first_index`` overrides both.
"""

from __future__ import annotations

import codecs
import collections
import functools
import io
import logging
import os
import re
import shlex
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Literal

import numpy as np

from .alphabet import ALPHABET, GAP_CODE, INVALID_CODE, NONSTANDARD_CODE, encode_raw
from .errors import AlignmentFormatError, InvalidMutantError
from .fileio import GZIP_ERRORS, open_input, plain_name

logger = logging.getLogger(__name__)

AlignmentFormat = Literal["auto", "a2m", "a3m", "fasta"]
FORMATS: tuple[str, ...] = ("auto", "a2m", "a3m", "fasta")
ColumnChoice = Literal["uppercase", "all"]
COLUMNS: tuple[str, ...] = ("uppercase", "all")

#: ``NAME/start-end`` region suffix of an EVcouplings / DeepSequence focus id (part after the last '/')
_REGION_RE = re.compile(r"^(-?\d+)-(-?\d+)$")
#: a suffix meant as a region but not one (``a/abc-def``, ``a/12``): an error, not numbering from 1
_REGION_LIKE_RE = re.compile(r"^[^-]*-[^-]*$|^\d+$")
#: str.translate table deleting a3m insertions: lowercase letters and '.'
_A3M_DELETE = str.maketrans("", "", "abcdefghijklmnopqrstuvwxyz.")


class PositionNotModelledError(InvalidMutantError, KeyError):
    """A residue number that is not one of the modelled (focus) columns.

    It is a domain error (one-line CLI message) and also a ``KeyError`` for dict-like use.
    """

    __str__ = Exception.__str__  # KeyError would quote the message


# --------------------------------------------------------------------------------------------
# Reading records
# --------------------------------------------------------------------------------------------


#: record names HH-suite reads as annotation rows of an a3m/a2m, not sequences of the family (hhalignment.cpp):
#: names starting with these prefixes (secondary structure and accessibility: ss_dssp, sa_dssp, ss_pred, ss_conf),
#: ``Consensus``, and a first record named ``*_consensus`` (``hhblits -add_cons``)
HHSUITE_ANNOTATION_PREFIXES = ("ss_", "sa_", "aa_")


def is_hhsuite_annotation(name: str, first: bool) -> bool:
    """Whether record ``name`` (the file's first record when ``first``) is an HH-suite annotation row."""
    return name.startswith(HHSUITE_ANNOTATION_PREFIXES) or name == "Consensus" or (first and
                                                                                  name.endswith("_consensus"))


def iter_fasta(path: str | os.PathLike) -> Iterator[tuple[str, str]]:
    """Yield ``(id, sequence)`` for every record of a FASTA-like file (a2m, a3m, FASTA).

    ``id`` is the header up to the first whitespace (a3m headers carry tab-separated hit
    statistics after the name). Sequence lines are concatenated with all whitespace removed.
    Lines starting with ``#`` before the first record (a3m comment lines, e.g. ColabFold's
    ``#<len>\\t<n>``) are skipped. A gzip-compressed file is decompressed (:func:`open_input`)
    and a UTF-8 byte order mark at its start is ignored (Windows editors write one). NUL bytes are removed
    (ColabFold's MMseqs2 server starts each database's block of an a3m with one, before its ``>``). HH-suite's
    annotation records (:func:`is_hhsuite_annotation`: secondary structure, confidence, consensus) are not
    sequences: skipped, with a warning.

    Raises :class:`AlignmentFormatError` when the file is missing or unreadable, truncated or
    damaged gzip data, empty, has no record, or does not start with a ``>`` header line, or
    when a header has no name.
    """
    path = Path(path)
    try:
        # utf-8-sig drops a byte order mark at the very start and reads the rest as UTF-8; a UTF-16 file (Notepad's
        # "Unicode") is read as such (its mark tells which)
        raw = open_input(path)
    except OSError as exc:
        stdin = "; standard input is read as /dev/stdin" if str(path) == "-" and not path.exists() else ""
        raise AlignmentFormatError(f"{path}: cannot read alignment: {exc.strerror or exc}{stdin}") from None
    try:
        utf16 = raw.peek(2)[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)  # decompresses a gzip's first block
        fh = io.TextIOWrapper(raw, encoding="utf-16" if utf16 else "utf-8-sig", errors="replace")
    except OSError as exc:
        raw.close()
        raise AlignmentFormatError(f"{path}: cannot read alignment: {exc.strerror or exc}") from None
    except GZIP_ERRORS as exc:
        raw.close()
        raise AlignmentFormatError(f"{path}: cannot read alignment: truncated or damaged gzip data ({exc})") from None
    skipped: list[str] = []
    yielded = 0

    def record(name: str, chunks: list[str]) -> Iterator[tuple[str, str]]:
        nonlocal yielded
        if is_hhsuite_annotation(name, first=not (yielded or skipped)):
            skipped.append(name)
        else:
            yielded += 1
            yield name, "".join(chunks)

    with fh:
        name: str | None = None
        chunks: list[str] = []
        seen_text = False
        try:
            for lineno, line in enumerate(fh, 1):
                if "\x00" in line:
                    line = line.replace("\x00", "")
                if name is None:
                    stripped = line.strip()
                    if not stripped:
                        continue
                    seen_text = True
                    if stripped.upper().startswith("# STOCKHOLM"):
                        raise AlignmentFormatError(f"{path}: a Stockholm alignment, not FASTA/a2m/a3m: convert it, "
                                                   f"e.g. {_convert_command(path)} (HMMER)")
                    if stripped.startswith("#"):
                        continue
                    if not stripped.startswith(">"):
                        kind = next((k for k in ("CLUSTAL", "MUSCLE", "PROBCONS") if stripped.upper().startswith(k)),
                                    None)
                        hint = (f": a {kind.title()} alignment; convert it to a2m or aligned FASTA, e.g. "
                                f"{_convert_command(path)} (HMMER)" if kind else "")
                        raise AlignmentFormatError(
                            f"{path}: not a FASTA/a2m/a3m file: line {lineno} does not start with '>' "
                            f"({_clip(stripped)!r}){hint}")
                if line.startswith(">"):
                    if name is not None:
                        yield from record(name, chunks)
                    name = _record_id(line, path, lineno)
                    chunks = []
                else:
                    chunks.append("".join(line.split()))
        except OSError as exc:  # e.g. a directory, an I/O error or a bad gzip header while reading
            raise AlignmentFormatError(f"{path}: cannot read alignment: {exc.strerror or exc}") from None
        except GZIP_ERRORS as exc:
            raise AlignmentFormatError(
                f"{path}: cannot read alignment: truncated or damaged gzip data ({exc})") from None
        if name is None:
            if seen_text:
                raise AlignmentFormatError(f"{path}: no records (no line starts with '>')")
            raise AlignmentFormatError(f"{path}: file is empty")
        yield from record(name, chunks)
    if skipped and not yielded:
        raise AlignmentFormatError(f"{path}: no sequences, only HH-suite annotation records "
                                   f"({', '.join(dict.fromkeys(skipped))})")
    if skipped:
        logger.warning("%s: skipped %d HH-suite annotation record(s) (%s): they are not sequences", path,
                       len(skipped), ", ".join(dict.fromkeys(skipped)))


def _record_id(header_line: str, path: Path, lineno: int) -> str:
    """Record id = header (after '>') up to the first whitespace."""
    parts = header_line[1:].split(None, 1)
    if not parts:
        raise AlignmentFormatError(f"{path}: record at line {lineno} has an empty name")
    return parts[0]


def _convert_command(path: Path) -> str:
    """HMMER's command that writes ``path`` as a2m beside it (never onto it: ``> x.a2m`` would empty ``x.a2m``
    before the tool reads it), quoted for a shell."""
    out = path.with_name(f"{path.stem}.a2m")
    if out.name == path.name:
        out = path.with_name(f"{path.stem}.converted.a2m")
    return f"esl-reformat a2m {shlex.quote(str(path))} > {shlex.quote(str(out))}"


def _stop_hint(row: str, c: int) -> str:
    """A hint when the invalid character at column ``c`` of ``row`` is a stop symbol ending the sequence."""
    if row[c] == "*" and not row[c + 1:].strip("-."):
        return "; a stop symbol ending the sequence (translated ORFs): remove the trailing '*' from every record"
    return ""


def _length_hint(records: list[tuple[str, str]]) -> str:
    """Why two ``(id, row)`` records may differ in length, for that error: a character no aligned row holds
    (sequence numbering, a comment line inside the alignment, an invisible space), or a trailing stop symbol."""
    for rid, row in records:
        odd = next(((k, c) for k, c in enumerate(row) if not (c.isascii() and (c.isalpha() or c in "-.*"))), None)
        if odd is not None:
            k, c = odd
            why = (" (sequence numbering?)" if c.isdigit() else " (a comment line inside the alignment?)" if c == "#"
                   else " (an invisible character)" if not c.isprintable() or c in "\u200b\u00a0\ufeff" else "")
            return f"; '{_clip(rid)}' holds {c!r} at character {k + 1}{why}, which no aligned row may"
    (a_id, a), (b_id, b) = records
    for rid, x, y in ((a_id, a, b), (b_id, b, a)):
        if x.endswith("*") and len(x) - 1 == len(y):
            return (f"; '{_clip(rid)}' ends with a stop symbol '*' (translated ORFs): remove the trailing '*' from "
                    "every record")
    return ""


def _clip(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[:n] + "..."


# --------------------------------------------------------------------------------------------
# The alignment
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlignmentOptions:
    """How an alignment is read: the options of :func:`read_alignment` (and of the CLI) in one value.

    A checkpoint records the options its training alignment was read with, so ``embed`` and
    ``sample --msa`` read an alignment the same way without the user repeating them.
    """

    focus: str | None = None                 # id of the focus record (None: the first record)
    first_index: int | None = None           # residue number of the first focus residue (None: region start, else 1)
    fmt: str = "auto"                        # "auto", "a2m", "a3m" or "fasta"
    max_gap_fraction: float | None = None    # drop sequences with more gaps over the focus columns (None: off)
    min_column_coverage: float | None = None  # drop focus columns with less coverage (None: off)
    columns: str = "uppercase"               # modelled columns: "uppercase" (DeepSequence) or "all" focus residues
    # training only (deepseqvae.outliers, after the weights): drop focus neighbours changing this many of
    # its neighbourhood's invariant columns (None: off); reading a file does not apply it
    max_invariant_changes: int | None = None

    @classmethod
    def from_dict(cls, values: dict | None) -> AlignmentOptions:
        """From a stored dict (a checkpoint's record); unknown keys are ignored, missing ones default."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (values or {}).items() if k in known})

    def updated(self, other: AlignmentOptions) -> AlignmentOptions:
        """These options with every field that ``other`` sets (differs from the default) taken from it."""
        default = AlignmentOptions()
        changed = {f.name: getattr(other, f.name) for f in fields(self)
                   if getattr(other, f.name) != getattr(default, f.name)}
        return AlignmentOptions(**{**asdict(self), **changed})

    def reading(self) -> dict:
        """The options :func:`read_alignment` applies (all but :data:`TRAINING_ONLY`), by name."""
        return {k: v for k, v in asdict(self).items() if k not in TRAINING_ONLY}

    def reading_args(self) -> list[str]:
        """The reading options that differ from the defaults, as options of ``deepseqvae weights`` / ``train``
        (``["--focus", "X", "--columns", "all"]``): the command that reads an alignment as these options do."""
        names = {"fmt": "msa_format"}
        default = AlignmentOptions().reading()
        args: list[str] = []
        for name, value in self.reading().items():
            if value != default[name]:
                args += ["--" + names.get(name, name).replace("_", "-"), str(value)]
        return args

    def read(self, path: str | os.PathLike) -> Alignment:
        """:func:`read_alignment` of ``path`` with these options (those of :data:`TRAINING_ONLY` are
        training's: :func:`deepseqvae.outliers.drop_outliers` applies them, with the sequence weights)."""
        return read_alignment(path, **self.reading())


#: AlignmentOptions fields that training applies after the weights, not reading: ``deepseqvae train`` has them,
#: ``weights``, ``embed`` and ``sample --msa`` do not
TRAINING_ONLY = ("max_invariant_changes",)


@dataclass(frozen=True, eq=False)
class Alignment:
    """An alignment restricted to the focus columns, as int8 codes (immutable).

    Attributes:
        codes: ``(N, L)`` int8, ALPHABET codes 0..19, gap = ``GAP_CODE`` (20); read-only.
        ids: ids of the ``N`` kept sequences in file order (focus included); unique except in
            an a3m, where repeated hits of one target are kept as separate rows.
        focus_id: id of the focus record.
        focus_index: row of the focus in ``codes`` / ``ids``.
        focus_seq: the ``L`` kept focus residues (uppercase).
        positions: ``(L,)`` int64 residue numbers of the kept columns (increasing); read-only.
        path: the file read.
        fmt: the format used ("a2m", "a3m" or "fasta"; "auto" is resolved).
        n_records: number of records in the file.
        n_dropped_nonstandard: sequences dropped for B/J/O/U/X/Z/* in a kept column.
        n_dropped_gaps: sequences dropped by ``max_gap_fraction``.
        n_dropped_repeats: later records with the focus's id and sequence (ColabFold starts each database's block
            of an a3m with the query again): one wild type, not two.
        n_columns_dropped_coverage: focus columns dropped by ``min_column_coverage``.
        n_dropped_outliers: focus neighbours dropped by ``options.max_invariant_changes``
            (:func:`deepseqvae.outliers.drop_outliers`).
        options: the options it was read with (focus, numbering, format, filters).
    """

    codes: np.ndarray
    ids: tuple[str, ...]
    focus_id: str
    focus_index: int
    focus_seq: str
    positions: np.ndarray
    path: Path
    fmt: str
    n_records: int
    n_dropped_nonstandard: int = 0
    n_dropped_gaps: int = 0
    n_dropped_repeats: int = 0
    n_columns_dropped_coverage: int = 0
    n_dropped_outliers: int = 0
    options: AlignmentOptions = field(default_factory=AlignmentOptions)

    @property
    def max_gap_fraction(self) -> float | None:
        """The sequence gap filter used (None = off)."""
        return self.options.max_gap_fraction

    @property
    def min_column_coverage(self) -> float | None:
        """The column coverage filter used (None = off)."""
        return self.options.min_column_coverage

    @property
    def N(self) -> int:  # noqa: N802 - conventional name
        """Number of sequences."""
        return int(self.codes.shape[0])

    @property
    def L(self) -> int:  # noqa: N802 - conventional name
        """Number of modelled (focus) columns."""
        return int(self.codes.shape[1])

    @property
    def focus_codes(self) -> np.ndarray:
        """``(L,)`` int8 codes of the focus sequence."""
        return self.codes[self.focus_index]

    @property
    def n_dropped(self) -> int:
        """Sequences dropped for any reason."""
        return self.n_dropped_nonstandard + self.n_dropped_gaps + self.n_dropped_outliers + self.n_dropped_repeats

    @functools.cached_property
    def position_to_column(self) -> dict[int, int]:
        """``{residue number: column index}`` for the modelled columns."""
        return {int(p): i for i, p in enumerate(self.positions)}

    def column_of(self, residue: int) -> int:
        """Column index of residue number ``residue``.

        Raises :class:`PositionNotModelledError` (a ``KeyError`` and a domain error) when the
        residue is not a modelled column (outside the region, or a lowercase focus column).
        """
        try:
            return self.position_to_column[int(residue)]
        except KeyError:
            lo, hi = (int(self.positions[0]), int(self.positions[-1])) if self.L else (0, -1)
            raise PositionNotModelledError(
                f"residue {residue} is not a modelled column of {self.path} (modelled: {self.L} "
                f"uppercase focus columns between {lo} and {hi})") from None

    def wt_residue(self, residue: int) -> str:
        """Focus (wild-type) amino acid at residue number ``residue``."""
        return self.focus_seq[self.column_of(residue)]

    def drop_reasons(self) -> list[str]:
        """Why records were left out, one phrase per reason that left any out (``n_dropped`` in all)."""
        reasons = [(self.n_dropped_nonstandard, "with B/J/O/U/X/Z/* in a modelled column"),
                   (self.n_dropped_gaps, "by --max-gap-fraction"),
                   (self.n_dropped_repeats, "repeating the focus record (its id and sequence)"),
                   (self.n_dropped_outliers, "by --max-invariant-changes")]
        return [f"{n} {why}" for n, why in reasons if n]

    def summary(self) -> str:
        """A few human-readable lines: records read, sequences kept and dropped, L and the region."""
        lo, hi = (int(self.positions[0]), int(self.positions[-1])) if self.L else (0, 0)
        reasons = [f"{self.n_dropped_nonstandard} with non-standard residues (B/J/O/U/X/Z/*) in focus columns"]
        if self.max_gap_fraction is not None:
            reasons.append(f"{self.n_dropped_gaps} with gap fraction > {self.max_gap_fraction:g}")
        if self.n_dropped_repeats:
            reasons.append(f"{self.n_dropped_repeats} repeating the focus record (its id and sequence)")
        if self.options.max_invariant_changes is not None:
            reasons.append(f"{self.n_dropped_outliers} focus neighbours changing >= "
                           f"{self.options.max_invariant_changes} of its neighbourhood's invariant columns")
        columns = f"Columns: L = {self.L} focus columns, residues {lo}-{hi}"
        if self.min_column_coverage is not None:
            columns += (f" ({self.n_columns_dropped_coverage} dropped for coverage < "
                        f"{self.min_column_coverage:g})")
        lines = [
            f"Read {self.n_records} records from {self.path} ({self.fmt}); focus {self.focus_id}",
            f"Sequences: {self.N} kept, {self.n_dropped} dropped ({'; '.join(reasons)})",
            columns,
        ]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"Alignment(path={str(self.path)!r}, N={self.N}, L={self.L}, focus_id={self.focus_id!r}, "
                f"positions={int(self.positions[0]) if self.L else None}..."
                f"{int(self.positions[-1]) if self.L else None})")


# --------------------------------------------------------------------------------------------
# read_alignment
# --------------------------------------------------------------------------------------------


def read_alignment(path: str | os.PathLike, *, focus: str | None = None,
                   first_index: int | None = None, fmt: AlignmentFormat = "auto",
                   max_gap_fraction: float | None = None,
                   min_column_coverage: float | None = None,
                   columns: ColumnChoice = "uppercase") -> Alignment:
    """Read an a2m / a3m / aligned FASTA file and keep the focus columns (DeepSequence recipe).

    Args:
        path: the alignment file, plain or gzip-compressed (:func:`iter_fasta`).
        focus: id of the focus record (default: the first record).
        first_index: residue number of the first focus residue; overrides a ``NAME/start-end``
            region in the focus id (default: the region start, or 1 without a region).
        fmt: "a3m" removes lowercase insertions and '.' from every row first; "a2m" / "fasta"
            require equal row lengths; "auto" picks a3m for a ``.a3m`` (or ``.a3m.gz``) file, else
            a2m when all rows have equal length, else a3m when removing insertions equalises them.
        max_gap_fraction: if set, drop sequences whose gap fraction over the kept columns is
            ``> max_gap_fraction`` (EVE's fragment filter, EVE uses 0.5). The focus has no gaps
            in its kept columns and is never dropped.
        min_column_coverage: if set, after the sequence filters, drop focus columns whose
            non-gap fraction over the remaining sequences (focus included) is
            ``< min_column_coverage``, i.e. keep a column iff its gap fraction is
            ``<= 1 - min_column_coverage`` (EVE's ``threshold_focus_cols_frac_gaps``; EVE uses
            coverage 0.7). Dropping every column is an error.
        columns: "uppercase" (DeepSequence) models the columns where the focus has an uppercase
            residue; "all" models every column where the focus has a residue, upper or lower case
            (lowercase letters are uppercased and '.' is a gap in every row, as in the uppercase
            columns). In an a3m the lowercase letters are insertions, removed from every row, so
            both choices give the same columns.

    Unlike EVE, the filters only ever see the uppercase focus columns (EVE uppercases the whole
    alignment first, so lowercase columns can become focus columns), and the non-standard drop
    runs before them (EVE runs it last).

    Raises:
        AlignmentFormatError: missing / empty / non-FASTA file, no records, duplicate ids (a2m /
            FASTA; an a3m keeps repeated hits as separate rows), rows of
            different length, focus not found, invalid characters in a focus column, a focus with
            a non-standard residue, or nothing left to model after filtering. The one-line
            message names the file and, where there is one, the record.
    """
    path = Path(path)
    if fmt not in FORMATS:
        raise AlignmentFormatError(f"{path}: unknown alignment format {fmt!r} (use one of {', '.join(FORMATS)})")
    _check_fraction("max_gap_fraction", max_gap_fraction)
    _check_fraction("min_column_coverage", min_column_coverage)
    if columns not in COLUMNS:
        raise AlignmentFormatError(f"{path}: unknown column choice {columns!r} (use one of {', '.join(COLUMNS)})")

    ids, raw_rows = _read_records(path)
    n_records = len(ids)
    fmt_used, rows = _resolve_format(path, ids, raw_rows, fmt)
    fi = _focus_row(path, ids, focus, raw_rows)
    # ColabFold's a3m starts each database's block with the query again (same id and row): one wild type
    repeats = np.array([i != fi and ids[i] == ids[fi] and raw_rows[i] == raw_rows[fi] for i in range(len(ids))])
    if repeats.any():
        logger.warning("%s: %d later record(s) repeat the focus '%s' (its id and sequence, as ColabFold starts each "
                       "database's block with the query): left out, so the wild type counts once", path,
                       int(repeats.sum()), _clip(ids[fi]))
    _check_duplicates(path, ids, fmt_used, skip=repeats)
    focus_raw = raw_rows[fi]

    # Residue numbering is computed on the raw focus row (before a3m insertion removal) so that
    # lowercase focus letters are counted as residues in every format.
    start = _region_start(path, ids[fi], focus_raw, first_index)
    positions_all = _row_positions(focus_raw, start, a3m=(fmt_used == "a3m"))  # (Lrow,) or -1

    # Kept columns: uppercase letters of the focus row, in the (possibly a3m-trimmed) row.
    focus_row = rows[fi]
    fbytes = np.frombuffer(focus_row.encode("ascii", errors="replace"), dtype=np.uint8)  # (Lrow,)
    is_upper = (fbytes >= ord("A")) & (fbytes <= ord("Z"))
    is_lower = (fbytes >= ord("a")) & (fbytes <= ord("z"))
    is_gap = (fbytes == ord("-")) | (fbytes == ord("."))
    bad = np.flatnonzero(~(is_upper | is_lower | is_gap))
    if bad.size:
        c = int(bad[0])
        raise AlignmentFormatError(
            f"{path}: focus record '{_clip(ids[fi])}' has invalid character {focus_row[c]!r} at aligned column {c + 1}"
            + _stop_hint(focus_row, c))
    cols = np.flatnonzero(is_upper if columns == "uppercase" else is_upper | is_lower)  # (L0,)
    if columns != "uppercase" and fmt_used == "a3m":
        inserted = sum(c.islower() for c in focus_raw)
        if inserted:  # "every column" cannot hold them: an a3m's insertions have no column in the other rows
            logger.warning("%s: --columns all: the focus's %d lowercase residues are a3m insertions here, removed "
                           "with every row's, so they are not modelled", path, inserted)
    if cols.size == 0:
        if not (is_upper | is_lower).any():
            raise AlignmentFormatError(f"{path}: focus record '{_clip(ids[fi])}' has no residues (an empty or all-gap "
                                       "sequence); nothing to model")
        raise AlignmentFormatError(
            f"{path}: focus record '{_clip(ids[fi])}' has no uppercase (match) columns; nothing to model (--columns "
            "all models every column where it has a residue, lowercase ones too)")
    positions = positions_all[cols].astype(np.int64)  # (L0,)

    # Vectorised encoding of the whole alignment, then the kept columns only.
    n_rows, width = len(rows), len(focus_row)
    raw = encode_raw("".join(rows)).reshape(n_rows, width)  # (N0, Lrow) int8, case-insensitive
    codes = np.ascontiguousarray(raw[:, cols])  # (N0, L0) int8

    fcodes = codes[fi]
    nonstd_focus = np.flatnonzero(fcodes == NONSTANDARD_CODE)
    if nonstd_focus.size:
        c = int(nonstd_focus[0])
        letter = focus_row[cols[c]]
        hint = {"U": " (selenocysteine: write it as C, as alignments of selenoproteins often do, or make the column "
                     "lowercase so that it is not modelled)",
                "O": " (pyrrolysine: write it as K, or make the column lowercase so that it is not modelled)"}.get(
            letter.upper(), " (make the column lowercase so that it is not modelled)")
        raise AlignmentFormatError(
            f"{path}: focus record '{_clip(ids[fi])}' has non-standard residue {letter!r} at "
            f"residue {positions[c]}; the focus must use the 20 standard amino acids in its uppercase columns{hint}")

    invalid = codes == INVALID_CODE  # (N0, L0)
    if invalid.any():
        r, c = (int(x) for x in np.argwhere(invalid)[0])
        raise AlignmentFormatError(
            f"{path}: record '{ids[r]}' has invalid character {rows[r][cols[c]]!r} in a focus column "
            f"(residue {positions[c]}, aligned column {cols[c] + 1})")

    keep = ~(codes == NONSTANDARD_CODE).any(axis=1) & ~repeats  # (N0,)
    n_nonstd = int((~keep).sum()) - int(repeats.sum())  # a repeat of the focus has its (standard) residues

    n_gaps = 0
    if max_gap_fraction is not None:
        gap_frac = (codes == GAP_CODE).mean(axis=1)  # (N0,)
        too_gappy = keep & (gap_frac > max_gap_fraction)
        too_gappy[fi] = False  # the focus has no gaps in its own columns; never drop it
        n_gaps = int(too_gappy.sum())
        keep &= ~too_gappy

    rows_kept = np.flatnonzero(keep)
    if rows_kept.size <= 1 and n_rows > 1:
        why = [f"{n_nonstd} with non-standard residues (B, J, O, U, X, Z or '*') in a modelled column"]
        if max_gap_fraction is not None:
            why.append(f"{n_gaps} with gap fraction > {max_gap_fraction}")
        raise AlignmentFormatError(
            f"{path}: every sequence other than the focus '{_clip(ids[fi])}' was filtered out ({', '.join(why)})")
    codes = codes[rows_kept]  # (N, L0)

    n_cols_dropped = 0
    if min_column_coverage is not None:
        coverage = (codes != GAP_CODE).mean(axis=0)  # (L0,)
        col_keep = coverage >= min_column_coverage
        n_cols_dropped = int((~col_keep).sum())
        if not col_keep.any():
            raise AlignmentFormatError(
                f"{path}: no focus column of '{_clip(ids[fi])}' has coverage >= {min_column_coverage} "
                f"(best {coverage.max():.3f}); every column would be dropped")
        codes = np.ascontiguousarray(codes[:, col_keep])
        positions = positions[col_keep]
        cols = cols[col_keep]

    codes.setflags(write=False)
    positions.setflags(write=False)
    focus_index = int(np.searchsorted(rows_kept, fi))
    focus_seq = "".join(ALPHABET[int(c)] for c in codes[focus_index])
    aln = Alignment(codes=codes, ids=tuple(ids[i] for i in rows_kept), focus_id=ids[fi],
                    focus_index=focus_index, focus_seq=focus_seq, positions=positions, path=path,
                    fmt=fmt_used, n_records=n_records, n_dropped_nonstandard=n_nonstd,
                    n_dropped_gaps=n_gaps, n_dropped_repeats=int(repeats.sum()),
                    n_columns_dropped_coverage=n_cols_dropped,
                    options=AlignmentOptions(focus=focus, first_index=first_index, fmt=fmt,
                                             max_gap_fraction=max_gap_fraction,
                                             min_column_coverage=min_column_coverage, columns=columns))
    logger.info("%s: %d records -> %d sequences x %d columns (%d non-standard, %d gappy, %d repeats of the focus "
                "dropped; %d low-coverage columns dropped)", path, n_records, aln.N, aln.L, n_nonstd, n_gaps,
                int(repeats.sum()), n_cols_dropped)
    return aln


def _check_fraction(name: str, value: float | None) -> None:
    if value is None:
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= float(value) <= 1.0:
        raise AlignmentFormatError(f"{name} must be a number between 0 and 1, got {value!r}")


def _read_records(path: Path) -> tuple[list[str], list[str]]:
    """All records as (ids, rows), in file order."""
    ids: list[str] = []
    rows: list[str] = []
    for rid, seq in iter_fasta(path):
        ids.append(rid)
        rows.append(seq)
    return ids, rows


def _check_duplicates(path: Path, ids: list[str], fmt: str, skip: np.ndarray | None = None) -> None:
    """Duplicate ids are never merged: an error in a2m / FASTA, separate rows in a3m.

    MMseqs2 / ColabFold a3m files list every local hit as its own record, so one target can
    appear twice with different aligned fragments; those rows are kept (with a warning). Records where ``skip``
    is true (the focus's own repeats) are not counted.
    """
    first_seen: dict[str, int] = {}
    dups: list[tuple[str, int, int]] = []
    for i, rid in enumerate(ids):
        if skip is not None and skip[i]:
            continue
        j = first_seen.setdefault(rid, i)
        if j != i:
            dups.append((rid, j, i))
    if not dups:
        return
    rid, j, i = dups[0]
    if fmt != "a3m":
        raise AlignmentFormatError(
            f"{path}: duplicate record id '{rid}' (records {j + 1} and {i + 1}); record ids "
            "(header up to the first whitespace) must be unique")
    logger.warning("%s: %d records repeat an earlier id (first: '%s', records %d and %d); in an a3m "
                   "these are separate hits and are kept as separate rows", path, len(dups), rid, j + 1, i + 1)


def id_with_region(ids: Sequence[str], name: str) -> str | None:
    """The one id of ``ids`` that is ``name`` with a ``/start-end`` region (what a record named without its region
    meant), or None."""
    near = [rid for rid in ids if rid.startswith(name + "/")]
    return near[0] if len(near) == 1 else None


def _focus_row(path: Path, ids: list[str], focus: str | None, rows: list[str]) -> int:
    if focus is None:
        return 0
    name = focus[1:] if focus.startswith(">") else focus
    hits = [i for i, rid in enumerate(ids) if rid == name]
    if not hits:
        near = id_with_region(ids, name)
        hint = f"; did you mean '{_clip(near)}' (ids include the /start-end region)?" if near else ""
        raise AlignmentFormatError(
            f"{path}: focus record '{_clip(name)}' not found among {len(ids)} records (first record: "
            f"'{_clip(ids[0])}'){hint}")
    if len(hits) > 1 and len({rows[i] for i in hits}) > 1:  # copies of one record (ColabFold's query) are one
        raise AlignmentFormatError(
            f"{path}: focus record '{name}' is ambiguous: {len(hits)} records have this id "
            f"(records {', '.join(str(i + 1) for i in hits)})")
    return hits[0]


def _first_length_mismatch(ids: list[str], rows: list[str]) -> int | None:
    width = len(rows[0])
    for i, r in enumerate(rows):
        if len(r) != width:
            return i
    return None


def _resolve_format(path: Path, ids: list[str], rows: list[str], fmt: str) -> tuple[str, list[str]]:
    """Resolve 'auto' and return (format, rows of equal length)."""
    if fmt == "auto":
        if plain_name(path).suffix.lower() == ".a3m":  # x.a3m.gz is an a3m too
            fmt = "a3m"
        elif _first_length_mismatch(ids, rows) is None:
            fmt = "a2m"
        else:
            trimmed = [r.translate(_A3M_DELETE) for r in rows]
            bad = _first_length_mismatch(ids, trimmed)
            if bad is None:
                # an a2m with one malformed row reads as an a3m too (and loses its lowercase columns): say which row
                widths = collections.Counter(len(r) for r in rows)
                width, n_width = widths.most_common(1)[0]
                odd = next(i for i, r in enumerate(rows) if len(r) != width)
                logger.warning("%s: rows differ in length (%d of %d records are not %d characters long, the first "
                               "'%s' with %d): read as an a3m, lowercase letters and '.' removed from every row as "
                               "insertions (meant as an a2m, its rows must be of one length: --msa-format a2m names "
                               "the first that is not)",
                               path, len(rows) - n_width, len(rows), width, _clip(ids[odd]), len(rows[odd]))
                return "a3m", trimmed
            bad_raw = _first_length_mismatch(ids, rows)
            assert bad_raw is not None
            raise AlignmentFormatError(
                f"{path}: rows have different aligned lengths: record '{_clip(ids[bad_raw])}' has "
                f"{len(rows[bad_raw])} columns but '{_clip(ids[0])}' has {len(rows[0])} (not an a3m either: "
                f"without insertions '{_clip(ids[bad])}' has {len(trimmed[bad])} vs {len(trimmed[0])})"
                + _length_hint([(ids[bad_raw], rows[bad_raw]), (ids[0], rows[0])]))
    if fmt == "a3m":
        rows = [r.translate(_A3M_DELETE) for r in rows]
    bad = _first_length_mismatch(ids, rows)
    if bad is not None:
        what = "match columns after removing a3m insertions" if fmt == "a3m" else "aligned columns"
        raise AlignmentFormatError(
            f"{path}: rows have different aligned lengths: record '{_clip(ids[bad])}' has {len(rows[bad])} "
            f"{what} but '{_clip(ids[0])}' has {len(rows[0])}"
            + _length_hint([(ids[bad], rows[bad]), (ids[0], rows[0])]))
    return fmt, rows


def focus_region(focus_id: str) -> tuple[int, int] | None:
    """``(start, end)`` of a ``NAME/start-end`` record id, else None (also for an end before the start)."""
    m = _REGION_RE.match(focus_id.rsplit("/", 1)[-1]) if "/" in focus_id else None
    if m is None or int(m.group(2)) < int(m.group(1)):
        return None
    return int(m.group(1)), int(m.group(2))


#: the largest residue number (either sign) an alignment's numbering may reach
RESIDUE_NUMBER_MAX = 10**9


def _region_start(path: Path, focus_id: str, focus_raw: str, first_index: int | None) -> int:
    """Residue number of the first focus residue; warn when a header range disagrees."""
    n_res = sum(ch.isalpha() for ch in focus_raw)
    suffix = focus_id.rsplit("/", 1)[-1] if "/" in focus_id else None
    region = focus_region(focus_id)
    if suffix is not None and region is None and _REGION_LIKE_RE.match(suffix):
        if first_index is None:
            raise AlignmentFormatError(
                f"{path}: focus record '{_clip(focus_id)}' has a malformed region '{_clip(suffix)}' (expected "
                f"NAME/start-end, e.g. BLAT_ECOLX/24-286); fix the header or set the numbering with --first-index")
        logger.info("%s: focus '%s' has no valid region; numbering from first_index=%d", path, focus_id,
                    first_index)
    if region is not None:
        lo, hi = region
        if hi - lo + 1 != n_res and n_res:  # none: the focus is refused below, without a warning before
            logger.warning("%s: focus '%s' claims residues %d-%d (%d) but has %d residues",
                           path, _clip(focus_id), lo, hi, hi - lo + 1, n_res)
    if first_index is not None:
        if region is not None and int(first_index) != region[0]:
            logger.info("%s: first_index=%d overrides the region start %d of '%s'",
                        path, first_index, region[0], focus_id)
        start = int(first_index)
    else:
        start = region[0] if region is not None else 1
    if not -RESIDUE_NUMBER_MAX <= start <= RESIDUE_NUMBER_MAX - n_res:  # int64 positions would wrap
        given = f"--first-index {first_index}" if first_index is not None else f"focus '{focus_id}'"
        raise AlignmentFormatError(f"{path}: {given} numbers residues beyond ±{RESIDUE_NUMBER_MAX:,}")
    return start


def _row_positions(focus_raw: str, start: int, *, a3m: bool) -> np.ndarray:
    """Residue number of every column of the (a3m-trimmed) focus row; -1 at gaps.

    ``focus_raw`` is the row as read; with ``a3m`` its lowercase letters and '.' are removed
    afterwards, but its lowercase letters still count as residues.
    """
    b = np.frombuffer(focus_raw.encode("ascii", errors="replace"), dtype=np.uint8)  # (Lraw,)
    upper = (b >= ord("A")) & (b <= ord("Z"))
    lower = (b >= ord("a")) & (b <= ord("z"))
    letter = upper | lower
    numbers = np.where(letter, start + np.cumsum(letter) - 1, -1)  # (Lraw,)
    if a3m:
        numbers = numbers[~(lower | (b == ord(".")))]
    return numbers
