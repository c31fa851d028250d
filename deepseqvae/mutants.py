"""Mutant strings: their grammar and their resolution against the modelled sequence.

Two layers, both pure functions (reading mutant tables from disk is :mod:`deepseqvae.tables`):

* :func:`parse_mutant` turns one mutant string (``A42G``, ``A42G:L50P``, ``p.Ala42Gly``, ``WT`` ...)
  into :class:`Substitution` objects, or raises :class:`~deepseqvae.errors.InvalidMutantError`.
* :func:`resolve_mutants` maps many mutant strings onto the modelled columns of a focus sequence.
  It never raises for a bad row: every row gets a :class:`ResolvedMutant` whose ``status`` is
  ``"ok"`` or ``"<reason>: <detail>"`` with a reason from :data:`REASONS`. An empty cell is
  ``empty_mutant`` there, not the wild type: a table's blank cell is a missing value, and scoring it
  as the wild type would put a made-up 0 into the Spearman correlation (write ``WT`` instead).

Numbering: every position named in a status is the position *after* ``offset`` was added, i.e. in
the numbering of the model (``positions``).
"""

from __future__ import annotations

import bisect
import gc
import logging
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .alphabet import AA_TO_CODE
from .errors import InvalidMutantError

__all__ = [
    "DEFAULT_SEPARATORS",
    "REASONS",
    "WILD_TYPE_WORDS",
    "IndelMutantError",
    "ResolvedMutant",
    "Substitution",
    "parse_mutant",
    "resolve_mutants",
    "status_summary",
    "suggest_cause",
]

logger = logging.getLogger(__name__)

#: characters that join the parts of a multi-mutant (ProteinGym uses ':')
DEFAULT_SEPARATORS = ":/+,"

#: the reason keys of a non-"ok" :attr:`ResolvedMutant.status`, in the order they are reported
REASONS = (
    "empty_mutant",
    "parse_error",
    "indel",
    "unknown_residue",
    "stop",
    "position_not_modelled",
    "wt_mismatch",
    "conflicting_substitutions",
)

#: spellings (compared lower-cased, after stripping whitespace) that mean "the wild type itself" to
#: :func:`parse_mutant` (MaveDB's ``_sy``: a synonymous variant, no change of the protein);
#: :func:`resolve_mutants` reports an empty one as ``empty_mutant`` instead
WILD_TYPE_WORDS = frozenset({"", "wt", "_wt", "wt_", "_", "_sy", "wildtype", "wild_type", "wild-type",
                             "wild type", "p.=", "p.(=)", "="})

_THREE_TO_ONE = {
    "ala": "A", "arg": "R", "asn": "N", "asp": "D", "cys": "C", "gln": "Q", "glu": "E",
    "gly": "G", "his": "H", "ile": "I", "leu": "L", "lys": "K", "met": "M", "phe": "F",
    "pro": "P", "ser": "S", "thr": "T", "trp": "W", "tyr": "Y", "val": "V",
    # non-standard residues parse, and are reported as unknown_residue later
    "sec": "U", "pyl": "O", "asx": "B", "glx": "Z", "xle": "J", "xaa": "X",
    "ter": "*",
}

_RES = r"(?:[A-Za-z]{3}|[A-Za-z*])"
_SUB_RE = re.compile(r"^(?P<wt>[A-Za-z]{3}|[A-Za-z*])(?P<pos>-?\d+)(?P<mut>[A-Za-z]{3}|[A-Za-z*=])$")
# Insertions, deletions, duplications, frameshifts, ranges and '-' as the new residue.
_INDEL_RE = re.compile(
    rf"^{_RES}?-?\d+(?:_{_RES}?-?\d+)?(?:del|ins|dup|fs|ext|inv)"  # A42del, A42_G45delinsW, K50fs*3
    rf"|^{_RES}-?\d+{_RES}(?:fs|ext)"  # p.Arg175HisfsTer3, M1ValextMet-12: a frameshift or extension
    rf"|^{_RES}?-?\d+_{_RES}?-?\d+"  # any A42_G45 range
    rf"|^{_RES}-?\d+[-~]$",  # A42-
    re.IGNORECASE,
)
_INDEL_WORDS = frozenset({"del", "ins", "dup"})
_ANY_SEPARATOR = ":/+,;"
_FORMAT_HINT = "expected wild-type letter, position, new letter"
_INDEL_DETAIL = "is an insertion, deletion or frameshift; only substitutions can be scored"
#: a cell that is a whole protein sequence (20+ residue letters, gaps allowed), not a mutant string
_SEQUENCE_RE = re.compile(r"[A-Za-z*.-]{20,}")


def _clip(text: str, width: int = 30) -> str:
    """``text`` cut to ``width`` characters for a message (a whole sequence is hundreds)."""
    return text if len(text) <= width else f"{text[:width]}... ({len(text)} characters)"


#: status of an empty (or blank, None, NaN) mutant cell: a missing value, never the wild type
_EMPTY_STATUS = "empty_mutant: no mutant given (empty cell; write WT for the wild type)"


class IndelMutantError(InvalidMutantError):
    """A mutant is an insertion, deletion, duplication or frameshift; only substitutions are scored."""


@dataclass(frozen=True, slots=True)
class Substitution:
    """One amino-acid substitution: wild-type letter, residue number, new letter.

    ``wt`` and ``mut`` are single upper-case letters or ``'*'`` (stop); they are not checked
    against the 20 amino acids here (see :func:`resolve_mutants`).
    """

    wt: str
    pos: int
    mut: str

    def __str__(self) -> str:
        return f"{self.wt}{self.pos}{self.mut}"


@dataclass(frozen=True, slots=True)
class ResolvedMutant:
    """One mutant string resolved against the modelled columns.

    ``changes`` holds ``(column index into focus_seq, new ALPHABET code)`` pairs, sorted by column;
    synonymous parts contribute nothing and the wild type is the empty tuple. ``status`` is
    ``"ok"`` or ``"<reason>: <detail>"`` (reason in :data:`REASONS`); ``changes`` is empty unless ok.
    ``substitutions`` are the parsed parts (offset applied; empty when the text did not parse).
    """

    text: str
    changes: tuple[tuple[int, int], ...]
    status: str
    substitutions: tuple[Substitution, ...] = field(default=(), compare=False, repr=False)

    @property
    def ok(self) -> bool:
        """Whether the row can be scored."""
        return self.status == "ok"

    @property
    def reason(self) -> str:
        """``"ok"`` or the reason key of the status (the text before the first ``':'``)."""
        return "ok" if self.status == "ok" else self.status.split(":", 1)[0]


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------


class _PartError(Exception):
    """Internal: one part of a mutant string is not a substitution (``indel`` says why)."""

    def __init__(self, detail: str, indel: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.indel = indel


def _residue(code: str) -> str:
    """One-letter form of a residue written with one or three letters (``'*'`` for stop)."""
    if len(code) == 1:
        return code.upper()
    try:
        return _THREE_TO_ONE[code.lower()]
    except KeyError:
        raise _PartError(f"{code!r} is not a three-letter amino-acid code") from None


def _strip_p(s: str) -> str:
    """Remove an HGVS ``p.`` prefix and ``(...)`` around a predicted consequence."""
    if s[:2] in ("p.", "P."):
        s = s[2:].strip()
    if len(s) >= 2 and s[0] == "(" and s[-1] == ")":
        s = s[1:-1].strip()
    return s


def _parse_part(part: str) -> Substitution:
    """Parse one part (no separators) with offset 0; raises :class:`_PartError`."""
    s = _strip_p(part.strip())
    m = _SUB_RE.match(s)
    if m is not None:
        wt_s, mut_s = m.group("wt"), m.group("mut")
        if mut_s.lower() in _INDEL_WORDS or wt_s.lower() in _INDEL_WORDS:
            raise _PartError(_INDEL_DETAIL, indel=True)
        wt = _residue(wt_s)
        mut = wt if mut_s == "=" else _residue(mut_s)
        return Substitution(wt, int(m.group("pos")), mut)
    if _INDEL_RE.match(s):
        raise _PartError(_INDEL_DETAIL, indel=True)
    hint = _FORMAT_HINT
    excluded = sorted({c for c in s if c in _ANY_SEPARATOR})
    if excluded:
        hint += f" ({', '.join(repr(c) for c in excluded)} is not a separator here)"
    raise _PartError(hint)


def _split_text(text: str, splitter: re.Pattern[str] | None) -> list[str] | None:
    """Split a mutant string into parts; ``None`` means wild type."""
    s = text.strip()
    if s.lower() in WILD_TYPE_WORDS:
        return None
    if s[:2] in ("p.", "P.") and s[2:3] == "[" and s.endswith("]"):
        # HGVS allele: p.[Ala42Gly;Leu50Pro]
        inner = s[3:-1].split(";")
        return [q for part in inner for q in (splitter.split(part) if splitter else [part])]
    if splitter is None:
        return [s]
    return splitter.split(s)


def _splitter(separators: str) -> re.Pattern[str] | None:
    return re.compile("[" + re.escape(separators) + "]") if separators else None


def _part_message(text: str, part: str, n_parts: int, exc: _PartError) -> str:
    if exc.indel:
        if n_parts == 1:
            return f"{part.strip()} {exc.detail}"
        return f"part {part.strip()} of {text!r} {exc.detail}"
    if n_parts == 1:
        return f"cannot parse mutant {text!r}: {exc.detail}"
    return f"cannot parse mutant {text!r}: part {part.strip()!r}: {exc.detail}"


def parse_mutant(text: str, *, offset: int = 0,
                 separators: str = DEFAULT_SEPARATORS) -> tuple[Substitution, ...]:
    """Parse a mutant string into substitutions (empty tuple = wild type).

    Accepted: ``A42G``; multi-mutants joined by any character of ``separators``
    (``A42G:L50P``); HGVS-style three-letter codes with an optional ``p.`` prefix
    (``p.Ala42Gly``, ``p.Ala42=`` synonymous, ``p.Trp8Ter`` stop, ``p.[Ala42Gly;Leu50Pro]``);
    negative positions (``M-3A``, e.g. a numbered signal peptide); surrounding whitespace.
    ``WT``/``wt``/``_wt``/``_``/empty mean wild type (but :func:`resolve_mutants`, which reads table
    cells, reports an empty one as ``empty_mutant``). Any letter or ``*`` is accepted as a residue.
    ``offset`` is added to every position.

    Raises :class:`IndelMutantError` (a subclass of ``InvalidMutantError``) for insertions,
    deletions, duplications, frameshifts, ranges and ``-`` as the new residue, and
    ``InvalidMutantError`` for anything else that is not a substitution.
    """
    if text is None:  # tolerated: a missing cell is the wild type
        return ()
    parts = _split_text(str(text), _splitter(separators))
    if parts is None:
        return ()
    subs = []
    for part in parts:
        if not part.strip():
            raise InvalidMutantError(f"cannot parse mutant {text!r}: empty part between separators")
        try:
            sub = _parse_part(part)
        except _PartError as exc:
            cls = IndelMutantError if exc.indel else InvalidMutantError
            raise cls(_part_message(text, part, len(parts), exc)) from None
        subs.append(Substitution(sub.wt, sub.pos + offset, sub.mut) if offset else sub)
    return tuple(subs)


# --------------------------------------------------------------------------------------------
# Resolution against the modelled columns
# --------------------------------------------------------------------------------------------


def _ranges(sorted_pos: Sequence[int]) -> str:
    return f"{sorted_pos[0]}-{sorted_pos[-1]}" if sorted_pos else "none"


def _not_modelled_detail(pos: int, sorted_pos: list[int]) -> str:
    if not sorted_pos:
        return f"{pos} is not a modelled column (no columns are modelled)"
    lo, hi = sorted_pos[0], sorted_pos[-1]
    detail = f"{pos} is not a modelled column (modelled: {lo}-{hi}"
    if lo < pos < hi:
        i = bisect.bisect_left(sorted_pos, pos)
        a, b = sorted_pos[i - 1] + 1, sorted_pos[i] - 1
        detail += f", with a gap at {a}" if a == b else f", with a gap at {a}-{b}"
    return detail + ")"


class _Resolver:
    """Per-call state of :func:`resolve_mutants`: lookup tables and caches."""

    def __init__(self, focus_seq: str, positions: Sequence[int], offset: int, separators: str):
        if len(focus_seq) != len(positions):
            raise ValueError(f"focus_seq has {len(focus_seq)} letters but positions has "
                             f"{len(positions)} entries")
        self.col_of = {int(p): k for k, p in enumerate(positions)}
        if len(self.col_of) != len(positions):
            raise ValueError("positions contains duplicates")
        self.focus = focus_seq.upper()
        self.sorted_pos = sorted(self.col_of)
        self.offset = int(offset)
        self.splitter = _splitter(separators)
        # part text -> (Substitution | None, error | None, column, code | None(synonymous), status)
        self.parts: dict[str, tuple] = {}
        self.rows: dict[str, ResolvedMutant] = {}

    def part(self, part: str) -> tuple:
        hit = self.parts.get(part)
        if hit is not None:
            return hit
        try:
            s = _parse_part(part)
        except _PartError as exc:
            hit = (None, exc, -1, None, None)
        else:
            sub = Substitution(s.wt, s.pos + self.offset, s.mut) if self.offset else s
            hit = (sub, None) + self._classify(sub)
        self.parts[part] = hit
        return hit

    def _classify(self, sub: Substitution) -> tuple[int, int | None, str | None]:
        for letter in (sub.wt, sub.mut):
            if letter not in AA_TO_CODE and letter != "*":
                return -1, None, f"unknown_residue: {letter} in {sub}"
        if sub.mut == "*":
            return -1, None, f"stop: {sub} is a nonsense (stop) mutation"
        if sub.wt == "*":
            return -1, None, f"stop: {sub} has a stop codon as wild type"
        col = self.col_of.get(sub.pos)
        if col is None:
            return -1, None, f"position_not_modelled: {_not_modelled_detail(sub.pos, self.sorted_pos)}"
        have = self.focus[col]
        if have != sub.wt:
            return -1, None, f"wt_mismatch: {sub.wt}{sub.pos} but focus has {have}{sub.pos}"
        return col, (None if sub.mut == sub.wt else AA_TO_CODE[sub.mut]), None

    def resolve_all(self, mutants: Iterable[str | None]) -> list[ResolvedMutant]:
        rows, resolve = self.rows, self._resolve
        out = []
        append = out.append
        for mutant in mutants:
            if mutant.__class__ is not str:
                mutant = "" if mutant is None or (isinstance(mutant, float) and math.isnan(mutant)) \
                    else str(mutant)
            hit = rows.get(mutant)
            if hit is None:
                hit = resolve(mutant)
                rows[mutant] = hit
            append(hit)
        return out

    def _resolve(self, text: str) -> ResolvedMutant:
        if not text.strip():  # before _split_text, which reads "" as the wild type
            return ResolvedMutant(text, (), _EMPTY_STATUS)
        parts = _split_text(text, self.splitter)
        if parts is None:
            return ResolvedMutant(text, (), "ok")
        get, part_of = self.parts.get, self.part
        looked = []
        subs = []
        for part in parts:  # parse problems first: a malformed row is reported as such
            hit = get(part)
            if hit is None:
                if not part.strip():
                    return ResolvedMutant(text, (), "parse_error: cannot parse mutant "
                                                    f"{text!r}: empty part between separators")
                hit = part_of(part)
            exc = hit[1]
            if exc is not None:
                key = "indel" if exc.indel else "parse_error"
                return ResolvedMutant(text, (), f"{key}: {_part_message(text, part, len(parts), exc)}")
            looked.append(hit)
            subs.append(hit[0])
        subs_t = tuple(subs)
        if len(looked) == 1:
            _, _, col, code, status = looked[0]
            if status is not None:
                return ResolvedMutant(text, (), status, subs_t)
            return ResolvedMutant(text, () if code is None else ((col, code),), "ok", subs_t)
        seen: dict[int, Substitution] = {}
        changes: dict[int, int] = {}
        for sub, _, col, code, status in looked:
            if status is not None:
                return ResolvedMutant(text, (), status, subs_t)
            prev = seen.get(sub.pos)
            if prev is not None:
                if prev.mut != sub.mut:
                    return ResolvedMutant(
                        text, (), f"conflicting_substitutions: {prev} and {sub} change position "
                                  f"{sub.pos} to different residues", subs_t)
                continue
            seen[sub.pos] = sub
            if code is not None:
                changes[col] = code
        return ResolvedMutant(text, tuple(sorted(changes.items())), "ok", subs_t)


def resolve_mutants(mutants: Sequence[str | None], focus_seq: str, positions: Sequence[int], *,
                    offset: int = 0, separators: str = DEFAULT_SEPARATORS) -> list[ResolvedMutant]:
    """Resolve mutant strings against the modelled columns; one result per input, in order.

    ``focus_seq[k]`` is the focus residue at residue number ``positions[k]`` (the modelled
    columns only). ``offset`` is added to every position in the strings before lookup. A row is
    never dropped and never raises: problems go into ``status`` (``"<reason>: <detail>"``). An
    empty or blank string, ``None`` and NaN (a missing cell) are ``empty_mutant``: unlike
    :func:`parse_mutant` they are not the wild type, which is written ``WT`` (or ``_wt``, ``p.=``
    ...). Parse problems (``parse_error``, ``indel``) of any part are reported next; then the
    parts are checked left to right for ``unknown_residue``, ``stop``, ``position_not_modelled``,
    ``wt_mismatch`` and ``conflicting_substitutions``, and the first problem is reported.

    Raises ``ValueError`` only when ``focus_seq`` and ``positions`` are inconsistent.
    """
    resolver = _Resolver(focus_seq, positions, offset, separators)
    # Hundreds of thousands of small acyclic objects: the cyclic GC would only rescan them.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return resolver.resolve_all(mutants)
    finally:
        if gc_was_enabled:
            gc.enable()


def status_summary(resolved: Iterable[ResolvedMutant]) -> dict[str, int]:
    """Count rows per reason: ``{"ok": n, "<reason>": n, ...}``.

    ``"ok"`` is always present; other keys only when non-zero, in the order of :data:`REASONS`.
    """
    counts = Counter(r.reason for r in resolved)
    out = {"ok": counts.pop("ok", 0)}
    for key in REASONS:
        if counts.get(key):
            out[key] = counts.pop(key)
    out.update(sorted(counts.items()))  # unforeseen keys, if any
    return out


def detect_shift(subs: Iterable[Substitution], focus: str,
                 positions: Sequence[int]) -> tuple[int, int, int] | None:
    """Find a constant K such that most (wt, pos + K) match the focus: ``(K, matches, pairs)``."""
    pairs = {(s.pos, s.wt) for s in subs if s.wt in AA_TO_CODE}
    n = len(pairs)
    if n < 3:
        return None
    by_letter_focus: dict[str, list[int]] = {}
    for p, aa in zip(positions, focus.upper(), strict=True):
        by_letter_focus.setdefault(aa, []).append(int(p))
    diffs = []
    for aa in {wt for _, wt in pairs}:
        f = np.asarray(by_letter_focus.get(aa, ()), dtype=np.int64)
        t = np.asarray([p for p, wt in pairs if wt == aa], dtype=np.int64)
        if f.size and t.size:
            diffs.append((f[None, :] - t[:, None]).ravel())
    if not diffs:
        return None
    ks, counts = np.unique(np.concatenate(diffs), return_counts=True)
    order = np.argsort(-counts, kind="stable")
    best_k, best = int(ks[order[0]]), int(counts[order[0]])
    second = int(counts[order[1]]) if len(order) > 1 else 0
    if best_k == 0 or best < max(3, 0.5 * n) or best <= second:
        return None
    return best_k, best, n


def suggest_cause(resolved: Sequence[ResolvedMutant], focus_seq: str, positions: Sequence[int],
                  *, offset: int = 0) -> str:
    """Explain in one sentence why no row (or most rows) could be scored, with the option that likely fixes it.

    Checks, in order: an empty table; a mutant column whose cells are all empty; a mutant column
    that holds no mutants; a constant numbering shift (``positions look shifted by K: try --offset
    K``, ``K`` including the ``offset`` already used); all positions outside the modelled range;
    wild-type letters that do not match.
    """
    n = len(resolved)
    if n == 0:
        return "the mutant table has no rows"
    counts = status_summary(resolved)
    summary = ", ".join(f"{k}: {v}" for k, v in counts.items() if v)
    texts = [r.text for r in resolved]
    n_wt = sum(1 for r in resolved if r.ok and not r.substitutions)
    n_empty = counts.get("empty_mutant", 0)
    if n_empty == n:
        return ("every mutant cell is empty: choose the right column with --mutant-col, or give "
                "--wt-col/--pos-col/--mut-col for separate wild-type, position and new-residue columns")
    if counts.get("parse_error", 0) and counts.get("parse_error", 0) + n_wt + n_empty == n:
        bad = list(dict.fromkeys(t.strip() for r, t in zip(resolved, texts, strict=True) if not r.ok))
        if all(_SEQUENCE_RE.fullmatch(t) for t in bad):
            lengths = sorted({len(t) for t in bad})
            span = f"{lengths[0]}" if len(lengths) == 1 else f"{lengths[0]}-{lengths[-1]}"
            return (f"the mutant column holds whole sequences ({span} residues, e.g. {_clip(bad[0])!r}), not "
                    "mutants: give mutant strings such as A42G or A42G:L50P (a ProteinGym table has them in its "
                    "'mutant' column, beside 'mutated_sequence'; --mutant-col names the column)")
        examples = ", ".join(repr(_clip(t)) for t in bad[:3])
        return (f"no value of the mutant column looks like a mutant such as A42G (e.g. {examples}): "
                "choose the right column with --mutant-col, or give --wt-col/--pos-col/--mut-col "
                "for separate wild-type, position and new-residue columns")
    subs = [s for r in resolved for s in r.substitutions]
    pos_sorted = sorted(int(p) for p in positions)
    shift = detect_shift(subs, focus_seq, positions)
    if shift is not None:
        k, hits, pairs = shift
        return (f"positions look shifted by {k}: after shifting, {hits} of {pairs} wild-type "
                f"letters match the focus sequence; try --offset {offset + k}")
    if subs and pos_sorted:
        lo, hi = pos_sorted[0], pos_sorted[-1]
        tab = [s.pos for s in subs]
        if all(p < lo or p > hi for p in tab):
            return (f"all mutated positions ({min(tab)}-{max(tab)}) lie outside the modelled "
                    f"columns ({lo}-{hi}): check that the table and the alignment are for the same "
                    "protein and numbering (--offset renumbers the table)")
    if counts.get("wt_mismatch", 0) and counts["wt_mismatch"] >= n // 2:
        example = next(r.status for r in resolved if r.reason == "wt_mismatch")
        return (f"wild-type letters do not match the focus sequence ({example.split(': ', 1)[1]}, "
                "...) and no constant --offset fixes them: the table may be for another protein, "
                f"isoform or numbering ({summary})")
    if counts.get("position_not_modelled", 0) and counts["position_not_modelled"] >= n // 2:
        return (f"most mutated positions are not modelled columns ({_ranges(pos_sorted)}): the "
                f"alignment may cover another region of the protein ({summary})")
    return f"rows by status: {summary}"  # also the reason of a warning where some rows are scored
