"""Mutant tables from disk: reading DMS / mutant CSV, TSV and semicolon files, and fitness columns.

:func:`read_mutant_table` reads a table without losing or altering any cell and finds (or
builds) the mutant column; :func:`numeric_column` and :func:`detect_fitness_col` find the measured
fitness. The mutant strings themselves are parsed by :mod:`deepseqvae.mutants`.
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .errors import InvalidMutantError, MutantColumnError, MutantTableError
from .fileio import GZIP_ERRORS, open_input
from .mutants import DEFAULT_SEPARATORS, WILD_TYPE_WORDS, IndelMutantError, parse_mutant

__all__ = ["MutantTable", "detect_fitness_col", "file_line", "mutant_table", "numeric_column", "read_mutant_table"]

logger = logging.getLogger(__name__)

_MUTANT_NAMES = ("mutant", "mutation", "mutations", "variant", "variants", "hgvs_pro")  # hgvs_pro: MaveDB's
_WT_NAMES = ("wildtype", "wild_type", "wild-type", "wt", "wt_aa", "wildtype_aa")
_POS_NAMES = ("site", "position", "pos", "residue", "resnum", "residue_number")
_MUT_NAMES = ("mutant", "mut", "mutation", "mutant_aa", "mut_aa")
_FITNESS_NAMES = ("dms_score", "fitness", "log_fitness", "score")
_DELIMITERS = (",", ";", "\t")
_DELIM_NAMES = {",": "comma", ";": "semicolon", "\t": "tab"}
_INT_RE = re.compile(r"^\s*(-?\d+)(?:\.0*)?\s*$")
_RESIDUE_RE = re.compile(r"^\s*(?:[A-Za-z]{3}|[A-Za-z*=-])\s*$")
#: Excel's first line naming the delimiter (``sep=;``), quoted or not
_SEP_LINE_RE = re.compile(r'^\s*"?sep=(.)"?\s*$', re.IGNORECASE)
#: a number written with a decimal comma (``0,53``, ``-1,2e-3``), as spreadsheets in many locales save it
_DECIMAL_COMMA_RE = re.compile(r"^[+-]?\d*,\d+(?:[eE][+-]?\d+)?$")
#: a cell that could be a whole number with a thousands separator (``1,234``, ``-12,500``)
_THOUSANDS_RE = re.compile(r"^[+-]?\d{1,3},\d{3}$")


@dataclass
class MutantTable:
    """A mutant table as read from disk.

    ``frame`` holds every column as ``str``, exactly as written (the header too: an unnamed column
    is ``""``). ``mutants`` has one mutant string per row (built as ``{wt}{pos}{mut}`` in the
    three-column form, where ``mutant_col`` is ``None``). ``separators`` are the multi-mutant
    separators to use with this file: ``':/+,'`` (a cell holding the delimiter is quoted).
    """

    frame: pd.DataFrame
    mutants: list[str]
    mutant_col: str | None
    delimiter: str
    separators: str
    path: str = ""
    wt_col: str | None = None
    pos_col: str | None = None
    mut_col: str | None = None
    line_numbers: tuple[int, ...] = ()  # the file line (1-based) of each row, comments counted; () = unknown
    index: pd.Index | None = None  # a DataFrame in memory's own row labels: the scores keep them

    def line(self, row: int) -> int:
        """The file line of 0-based data row ``row`` (:func:`file_line`)."""
        return file_line(self.line_numbers, row)

    def row_name(self, row: int) -> str:
        """How messages name 0-based data row ``row``: ``line N`` of a file, ``row N`` (1-based) of a table in
        memory (:func:`mutant_table`)."""
        return f"line {self.line(row)}" if self.path else f"row {row + 1}"


def file_line(line_numbers: tuple[int, ...], row: int) -> int:
    """The file line (1-based, as an editor shows it) of 0-based data row ``row``: comment and blank lines
    before it counted; the header's line + 1 + ``row`` where the file's lines are not known (``()``)."""
    return line_numbers[row] if line_numbers else row + 2


def _fields(line: str, delim: str) -> int:
    try:
        return len(next(csv.reader([line], delimiter=delim)))
    except (csv.Error, StopIteration):
        return line.count(delim) + 1


def _sniff_delimiter(lines: list[str]) -> str:
    """Comma, semicolon or tab: the one that splits the header and the next lines consistently."""
    header, sample = lines[0], [ln for ln in lines[1:21] if ln.strip()]
    best, best_score = None, None
    for d in _DELIMITERS:
        n = _fields(header, d)
        if n < 2:
            continue
        score = (sum(_fields(ln, d) == n for ln in sample), n)
        if best_score is None or score > best_score:
            best, best_score = d, score
    if best is not None:
        return best
    # One column: pick a delimiter that never occurs, so no cell is split.
    for d in (",", "\t", ";"):
        if not any(d in ln for ln in lines[:200]):
            return d
    return "\t"


def _dedupe(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        if name in seen:
            seen[name] += 1
            new = f"{name}.{seen[name]}"
            while new in seen:
                seen[name] += 1
                new = f"{name}.{seen[name]}"
            logger.warning("duplicate column name %r renamed to %r", name, new)
            seen[new] = 0
            out.append(new)
        else:
            seen[name] = 0
            out.append(name)
    return out


def _columns_text(frame: pd.DataFrame) -> str:
    return ", ".join(repr(str(c)) for c in frame.columns)


def _find_col(frame: pd.DataFrame, names: Sequence[str], exclude: Sequence[str] = ()) -> str | None:
    by_key: dict[str, str] = {}
    for c in frame.columns:
        by_key.setdefault(str(c).strip().lower(), c)
    for name in names:
        c = by_key.get(name)
        if c is not None and c not in exclude:
            return c
    return None


#: the end of a :class:`MutantColumnError`'s message: the options of ``score`` that fix it (``batch`` names its own)
MUTANT_COLUMN_FIX = "choose the mutant column with --mutant-col, or give --wt-col/--pos-col/--mut-col"
#: how messages name the column choices of :func:`read_mutant_table` (score's options), of :func:`mutant_table`
#: (its arguments); None where a caller offers no such choice
COLUMN_OPTIONS = ("--mutant-col", "--wt-col", "--pos-col", "--mut-col")
_API_COLUMN_OPTIONS = ("mutant_col=", "wt_col=", "pos_col=", "mut_col=")


def _column_fix(names: tuple[str | None, ...]) -> str:
    """The advice that ends a :class:`MutantColumnError`: the column choices ``names`` offers."""
    if names == COLUMN_OPTIONS:
        return MUTANT_COLUMN_FIX
    three = "" if names[1] is None else f", or give {names[1]}/{names[2]}/{names[3]}"
    return f"choose the mutant column with {names[0]}{three}"


def _named_col(frame: pd.DataFrame, name: str, path: str, option: str) -> str:
    if name in frame.columns:
        return name
    matches = [c for c in frame.columns if str(c).strip().lower() == name.strip().lower()]
    if len(matches) == 1:
        return matches[0]
    raise MutantTableError(f"column {name!r} ({option}) not found in {path}; columns: "
                           f"{_columns_text(frame)}")


def _sample(values: Sequence[str], k: int = 500) -> list[str]:
    vals = [v for v in dict.fromkeys(v.strip() for v in values) if v]
    if len(vals) <= k:
        return vals
    step = len(vals) / k
    return [vals[int(i * step)] for i in range(k)]


def _looks_like_mutants(values: Sequence[str], separators: str) -> bool:
    sample = [v for v in _sample(values) if v.lower() not in WILD_TYPE_WORDS]
    if not sample:
        return True  # only wild-type rows: nothing contradicts it
    good = 0
    for v in sample:
        try:
            parse_mutant(v, separators=separators)
            good += 1
        except IndelMutantError:
            good += 1
        except InvalidMutantError:
            pass
    return good >= 0.5 * len(sample)


def _fraction(values: Sequence[str], pattern: re.Pattern[str]) -> float:
    sample = _sample(values)
    return sum(1 for v in sample if pattern.match(v)) / len(sample) if sample else 0.0


def _norm_pos(p: str) -> str:
    m = _INT_RE.match(p)
    return m.group(1) if m else p.strip()


def _three_column_mutants(frame: pd.DataFrame, wt: str, pos: str, mut: str) -> list[str]:
    """``{wt}{pos}{mut}`` per row; ``""`` (``empty_mutant`` when resolved) where any of the three cells is blank.

    A blank cell is a missing value: joined as is, ``K,11,`` would read as the unparseable ``K11``
    and ``,,`` as the wild type.
    """
    rows = zip(frame[wt].tolist(), frame[pos].tolist(), frame[mut].tolist(), strict=True)
    return [f"{w.strip()}{_norm_pos(p)}{m.strip()}" if w.strip() and p.strip() and m.strip() else ""
            for w, p, m in rows]


def _read_lines(path: str) -> tuple[list[str], list[int]]:
    """The table's lines: decompressed when gzip-compressed, decoded, comments and outer blank lines removed;
    and the 1-based file line of each."""
    try:
        with open_input(path) as fh:  # gzip recognised by its magic bytes, not by a .gz suffix
            raw = fh.read()
    except FileNotFoundError:
        raise MutantTableError(f"mutant table not found: {path}") from None
    except IsADirectoryError:
        raise MutantTableError(f"mutant table {path} is a directory, not a file") from None
    except OSError as exc:  # also a bad gzip header
        raise MutantTableError(f"cannot read mutant table {path}: {exc.strerror or exc}") from None
    except GZIP_ERRORS as exc:
        raise MutantTableError(f"cannot read mutant table {path}: truncated or damaged gzip data ({exc})") from None
    if raw.startswith((b"PK\x03\x04", b"\xd0\xcf\x11\xe0")):  # a zip archive (.xlsx, .ods) or an OLE file (.xls)
        raise MutantTableError(f"mutant table {path} is a zip archive or an Office file (a spreadsheet workbook?), "
                               "not a text table: save the sheet as CSV (or tab-separated text) and give that file")
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):  # e.g. Excel's "Unicode Text" export
        try:
            return _kept_lines(raw.decode("utf-16"), path)
        except UnicodeDecodeError as exc:
            raise MutantTableError(f"cannot read mutant table {path}: it starts as UTF-16 but is not ({exc})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        logger.warning("%s is not UTF-8; reading it as Latin-1", path)
        text = raw.decode("latin-1")
    return _kept_lines(text, path)


def _kept_lines(text: str, path: str = "") -> tuple[list[str], list[int]]:
    """``text``'s lines without ``#`` comment lines and outer blank lines, and the 1-based file line of each.
    Comment lines below the header are named in a warning: a data row whose first cell starts with ``#`` (Excel's
    ``#N/A``, which it sorts last) is skipped with them, and never unseen."""
    numbered = list(enumerate(text.splitlines(), start=1))
    kept = [(i, ln) for i, ln in numbered if not ln.lstrip().startswith("#")]
    while kept and not kept[-1][1].strip():
        kept.pop()
    while kept and not kept[0][1].strip():
        kept.pop(0)
    if kept:
        inner = [(i, ln) for i, ln in numbered[kept[0][0]:] if ln.lstrip().startswith("#")]  # below the header
        if inner:
            shown = ", ".join(str(i) for i, _ in inner[:10]) + (", ..." if len(inner) > 10 else "")
            logger.warning("%s: %d line(s) below the header start with '#' and are skipped as comments (line %s: "
                           "%r)", path or "the table", len(inner), shown, inner[0][1].strip()[:40])
    return [ln for _, ln in kept], [n for n, _ in kept]


def _record_lines(lines: list[str], numbers: list[int], delim: str, n_records: int) -> tuple[int, ...]:
    """The file line where each data row starts when a quoted cell spans lines (the header's record excluded);
    ``()`` where Python's csv reader does not find the ``n_records`` records pandas read."""
    starts: list[int] = []
    end = 0  # lines read so far: the next record starts at this (0-based) index of ``lines``
    reader = csv.reader(io.StringIO("\n".join(lines)), delimiter=delim)
    try:
        for _ in reader:
            starts.append(numbers[min(end, len(numbers) - 1)])
            end = reader.line_num
    except csv.Error:
        return ()
    return tuple(starts[1:]) if len(starts) == n_records else ()


def read_mutant_table(path: str | os.PathLike, *, mutant_col: str | None = None,
                      wt_col: str | None = None, pos_col: str | None = None,
                      mut_col: str | None = None,
                      option_names: tuple[str | None, ...] = COLUMN_OPTIONS) -> MutantTable:
    """Read a DMS/mutant table (comma, semicolon or tab separated; ``#`` comment lines skipped).

    The file may be gzip-compressed (recognised by its first bytes, whatever its name), may start
    with a UTF-8 byte order mark or be UTF-16 with its mark (Excel's "Unicode Text"); any other file
    that is not UTF-8 is read as Latin-1, with a warning.

    Every cell is kept as the exact string written; no row is dropped (trailing blank lines
    excepted). The mutant column is ``mutant_col`` when given, else built from
    ``wt_col``/``pos_col``/``mut_col`` when all three are given (a row with a blank one of them gets
    the empty mutant ``""``, which scoring reports as ``empty_mutant``), else detected: the first column
    named mutant, mutation, mutations, variant, variants or hgvs_pro (MaveDB's score tables; any case) whose
    values look like mutants; failing that, wild-type/position/new-residue columns (e.g. PTEN's
    ``wildtype,site,mutant``) are used automatically.

    Raises :class:`~deepseqvae.errors.MutantTableError` (one line, naming the file) for a missing,
    unreadable, empty or header-only file, a named column that does not exist, or no usable
    mutant column; ``option_names`` are how its messages name the four column choices (score's options).
    """
    path = os.fspath(path)
    lines, numbers = _read_lines(path)
    if not lines:
        raise MutantTableError(f"mutant table {path} is empty")
    if m := _SEP_LINE_RE.match(lines[0]):  # Excel's "sep=;" first line: the delimiter, said by the file
        delim = m.group(1)
        if delim not in _DELIMITERS:
            raise MutantTableError(f"{path}: line {numbers[0]} sets the separator {delim!r}; a mutant table is "
                                   "comma, semicolon or tab separated")
        lines, numbers = lines[1:], numbers[1:]
        if not lines:
            raise MutantTableError(f"mutant table {path} is empty")
    else:
        delim = _sniff_delimiter(lines)
    try:
        raw = pd.read_csv(io.StringIO("\n".join(lines)), sep=delim, header=None, dtype=str,
                          keep_default_na=False, skip_blank_lines=False, engine="c")
    except (pd.errors.ParserError, ValueError) as exc:
        msg = " ".join(str(exc).split())
        # pandas counts the lines it was given: the file's, less the comment lines above (and the "sep=" line)
        msg = re.sub(r"\bline (\d+)", lambda m: f"line {numbers[int(m.group(1)) - 1]}"
                     if 0 < int(m.group(1)) <= len(numbers) else m.group(0), msg)
        raise MutantTableError(f"cannot read mutant table {path} "
                               f"({_DELIM_NAMES[delim]}-separated): {msg}") from None
    raw = raw.fillna("")
    header = [str(h) for h in raw.iloc[0].tolist()]
    frame = raw.iloc[1:].reset_index(drop=True)
    frame.columns = _dedupe(header)
    if len(frame) == 0:
        raise MutantTableError(f"mutant table {path} has a header but no rows "
                               f"(columns: {_columns_text(frame)})")
    # every separator, the delimiter too: a cell holding the delimiter was quoted, so the reader has already told
    # it apart from the columns (a scored table's "A42G, L50P", quoted, scores as it did before)
    separators = DEFAULT_SEPARATORS
    logger.debug("%s: %s-separated, %d rows, columns %s", path, _DELIM_NAMES[delim], len(frame),
                 _columns_text(frame))

    # a quoted cell spanning lines shifts the rows against the lines: then each row's first line is found by csv
    rows_lines = tuple(numbers[1:]) if len(numbers) == len(frame) + 1 else _record_lines(lines, numbers, delim,
                                                                                          len(frame) + 1)
    return _with_mutants(frame, path, delim, separators, rows_lines, mutant_col, wt_col, pos_col, mut_col,
                         option_names)


#: file suffixes a string given as a table in memory is taken for a file name by (in the message that refuses it)
TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".tab", ".xlsx", ".xls", ".ods")


def mutant_table(data: pd.DataFrame | Sequence[str], *, mutant_col: str | None = None, wt_col: str | None = None,
                 pos_col: str | None = None, mut_col: str | None = None) -> MutantTable:
    """A :class:`MutantTable` of data in memory, for :func:`deepseqvae.score.score_table`: a DataFrame (its mutant
    column named, built from three columns, or detected, as :func:`read_mutant_table` does) or a list of mutant
    strings (one column ``mutant``). The frame keeps the caller's values and types, its column labels as strings
    (``mutant_col=0`` names a column labelled 0); messages name rows by their 1-based number, and the scores of
    :func:`~deepseqvae.score.score_table` keep the DataFrame's own index, so they join back onto it. A
    :class:`MutantTable` is returned as it is.
    """
    if isinstance(data, MutantTable):
        return data
    if isinstance(data, str | os.PathLike):
        suffix = os.path.splitext(data[:-3] if data.lower().endswith(".gz") else data)[1].lower()
        path_like = isinstance(data, os.PathLike) or os.sep in data or suffix in TABLE_SUFFIXES
        what = "a path" if path_like else "a string"
        raise TypeError(f"{os.fspath(data)!r} is {what}: pass a list of mutants (['A42G']), a DataFrame, or "
                        "read_mutant_table(path) for a file")
    mutant_col, wt_col, pos_col, mut_col = (None if c is None else str(c) for c in (mutant_col, wt_col, pos_col,
                                                                                      mut_col))
    index = None
    if isinstance(data, pd.DataFrame):
        index = data.index
        frame = data.reset_index(drop=True)
        frame.columns = _dedupe([str(c) for c in frame.columns])
    else:
        values = list(data)
        if not all(isinstance(v, str) for v in values):
            raise TypeError("mutants must be a DataFrame or a list of mutant strings such as 'A42G'")
        frame, mutant_col = pd.DataFrame({"mutant": values}), mutant_col or "mutant"
    if len(frame) == 0:
        raise MutantTableError("the mutant table has no rows")
    text = frame.astype(object).where(frame.notna(), "").astype(str)  # what detection reads: cells as strings
    table = _with_mutants(text, "", ",", DEFAULT_SEPARATORS, (), mutant_col, wt_col, pos_col, mut_col,
                          _API_COLUMN_OPTIONS)
    table.frame, table.index = frame, index
    return table


def _with_mutants(frame: pd.DataFrame, path: str, delim: str, separators: str, rows_lines: tuple[int, ...],
                  mutant_col: str | None, wt_col: str | None, pos_col: str | None,
                  mut_col: str | None, names: tuple[str | None, ...]) -> MutantTable:
    """The :class:`MutantTable` of ``frame`` (cells as strings) with its mutant column: named, built from three
    named columns, or detected (:func:`read_mutant_table`); ``names``: the column choices, as messages name them."""
    name = path or "the table"  # in messages
    o_mutant, o_wt, o_pos, o_mut = names

    def table(mutants: list[str], mcol: str | None, w=None, p=None, m=None) -> MutantTable:
        return MutantTable(frame, mutants, mcol, delim, separators, path, w, p, m, rows_lines)

    three = (wt_col, pos_col, mut_col)
    if mutant_col is not None and any(c is not None for c in three):
        raise MutantTableError(f"give either {o_mutant} or {o_wt}/{o_pos}/{o_mut}, not both")
    if mutant_col is not None:
        col = _named_col(frame, mutant_col, name, o_mutant)
        return table(frame[col].tolist(), col)
    if any(c is not None for c in three):
        if not all(c is not None for c in three):
            raise MutantTableError(f"give all three of {o_wt}, {o_pos} and {o_mut}")
        w = _named_col(frame, wt_col, name, o_wt)
        p = _named_col(frame, pos_col, name, o_pos)
        m = _named_col(frame, mut_col, name, o_mut)
        return table(_three_column_mutants(frame, w, p, m), None, w, p, m)

    # Detection: named mutant columns whose values are mutants.
    candidates = [c for c in frame.columns if str(c).strip().lower() in _MUTANT_NAMES]
    candidates.sort(key=lambda c: _MUTANT_NAMES.index(str(c).strip().lower()))
    for col in candidates:
        values = frame[col].tolist()
        if _looks_like_mutants(values, separators):
            return table(values, col)
    # Three columns: wild type, position, new residue.
    w = _find_col(frame, _WT_NAMES)
    p = _find_col(frame, _POS_NAMES, exclude=[w] if w else [])
    m = _find_col(frame, _MUT_NAMES, exclude=[c for c in (w, p) if c])
    if w and p and m and _fraction(frame[w].tolist(), _RESIDUE_RE) >= 0.5 \
            and _fraction(frame[p].tolist(), _INT_RE) >= 0.5 \
            and _fraction(frame[m].tolist(), _RESIDUE_RE) >= 0.5:
        logger.info("%s: no mutant column; building mutants from columns %r (wild type), %r "
                    "(position) and %r (new residue)", name, w, p, m)
        return table(_three_column_mutants(frame, w, p, m), None, w, p, m)
    fix = _column_fix(names)
    if candidates:
        col = candidates[0]
        example = next((v for v in frame[col].tolist() if v.strip()), "")
        raise MutantColumnError(f"column {col!r} of {name} does not hold mutants like A42G "
                               f"(e.g. {example!r}); columns: {_columns_text(frame)}; {fix}")
    raise MutantColumnError(f"no mutant column found in {name} (looked for "
                           f"{'/'.join(_MUTANT_NAMES)}); columns: {_columns_text(frame)}; {fix}")


def numeric_column(table: MutantTable | pd.DataFrame, name: str) -> np.ndarray:
    """Values of column ``name`` as float64; NaN where a cell is empty or not a number.

    ``name`` is matched exactly, else case-insensitively. Raises ``MutantTableError`` when absent.
    In a semicolon- or tab-separated :class:`MutantTable` a column whose numbers are written with decimal
    commas (``0,53``: spreadsheets in many locales) and none with a decimal point is read with them
    (:func:`_decimal_commas`); a comma-separated file cannot hold such a cell unquoted, and there ``1,234`` is
    more likely a thousands separator.
    """
    frame = table.frame if isinstance(table, MutantTable) else table
    where = f" in {table.path}" if isinstance(table, MutantTable) and table.path else ""
    if name in frame.columns:
        col = name
    else:
        matches = [c for c in frame.columns if str(c).strip().lower() == name.strip().lower()]
        if len(matches) != 1:
            raise MutantTableError(f"column {name!r} not found{where}; columns: "
                                   f"{_columns_text(frame)}")
        col = matches[0]
    values = pd.Series(frame[col], dtype=object).astype(str).str.strip()
    if isinstance(table, MutantTable) and table.delimiter != ",":
        values = _decimal_commas(values, f"{table.path or 'the table'}: column {str(col)!r}")
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _decimal_commas(values: pd.Series, what: str) -> pd.Series:
    """``values`` with decimal commas made points where some cell is clearly a decimal-comma number (``0,53``,
    ``-1,5``: not three digits after the comma) and no cell holds a point. A column whose commas could all be
    thousands separators (``1,234``: an English-locale spreadsheet's tab-separated export) or that mixes commas
    and points is left as it is, so those cells are not numbers, and a warning says so."""
    comma = values.str.match(_DECIMAL_COMMA_RE)
    if not comma.any():
        return values
    clearly = comma & ~values.str.match(_THOUSANDS_RE)
    if not clearly.any() or values.str.contains(".", regex=False).any():
        logger.warning("%s: %d cells such as %r are not read as numbers: a thousands separator or a decimal comma? "
                       "(write them without the comma, or with a decimal point)", what, int(comma.sum()),
                       values[comma].iloc[0])
        return values
    logger.info("%s: %d numbers written with a decimal comma (e.g. %r) read as decimals", what, int(comma.sum()),
                values[clearly].iloc[0])
    return values.where(~comma, values.str.replace(",", ".", regex=False))


def detect_fitness_col(table: MutantTable | pd.DataFrame) -> str | None:
    """The measured-fitness column, if it has a conventional name with numeric values.

    Looks (case-insensitively) for ``DMS_score`` (ProteinGym), then ``fitness``, ``log_fitness``
    and ``score``; returns ``None`` when none is present (e.g. BLAT's ``2500``: name it explicitly).
    Its numbers are read as :func:`numeric_column` reads them (from a :class:`MutantTable`: decimal commas too).
    A ``score`` beside a ``score_sem`` column is deepseqvae's own prediction (a scan, or a table scored before),
    not a measurement: it is not taken (a warning says so; name it to compare two models). A measured ``fitness``
    with a ``fitness_sem`` is taken: deepseqvae writes no such column.
    """
    frame = table.frame if isinstance(table, MutantTable) else table
    for key in _FITNESS_NAMES:
        col = _find_col(frame, (key,))
        if col is not None and key == "score" and f"{col}_sem" in {str(c) for c in frame.columns}:
            logger.warning("column %r is a deepseqvae prediction (it has a %r beside it), not a measured fitness: "
                           "no Spearman against it (name it with --fitness-col to compare two models)",
                           col, f"{col}_sem")
            continue
        if col is not None and np.isfinite(numeric_column(table, col)).any():
            return col
    return None
