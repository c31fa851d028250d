"""Tests of deepseqvae.mutations: parsing, resolution, table reading, and the real DMS files."""

from __future__ import annotations

import gzip
import logging
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from deepseqvae.alignment import read_alignment
from deepseqvae.alphabet import AA_TO_CODE
from deepseqvae.checkpoint import save_checkpoint
from deepseqvae.cli import main
from deepseqvae.errors import InvalidMutantError, MutantTableError
from deepseqvae.mutants import (
    REASONS,
    IndelMutantError,
    ResolvedMutant,
    Substitution,
    parse_mutant,
    resolve_mutants,
    status_summary,
    suggest_cause,
)
from deepseqvae.score import score_table
from deepseqvae.tables import detect_fitness_col, numeric_column, read_mutant_table

from conftest import TOY_FOCUS, TOY_POSITIONS, require_shared_data, toy_vae_checkpoint, write_truncated_gzip

# --- shared benchmark data: `require_shared_data` (tests/conftest.py) skips, or under CI fails,
# when a file is missing.


def focus_from_a2m(path: Path) -> tuple[str, list[int]]:
    """Focus letters and residue numbers of the modelled columns, as the alignment reader gives them."""
    aln = read_alignment(path)
    return aln.focus_seq, [int(p) for p in aln.positions]


# --- a small synthetic model: residues 10..29, with 20 and 21 not modelled ------------------

FULL = "MKTAYIAKQRQISFVKSHFS"  # residues 10..29
POSITIONS = [10 + i for i in range(len(FULL)) if 10 + i not in (20, 21)]
FOCUS = "".join(FULL[p - 10] for p in POSITIONS)


def resolve1(text, **kw) -> ResolvedMutant:
    return resolve_mutants([text], FOCUS, POSITIONS, **kw)[0]


def col(pos: int) -> int:
    return POSITIONS.index(pos)


# --- parse_mutant -------------------------------------------------------------------------------


def test_substitution_str_and_frozen():
    s = Substitution("A", 42, "G")
    assert str(s) == "A42G"
    assert str(Substitution("M", -3, "*")) == "M-3*"
    with pytest.raises(AttributeError):
        s.pos = 1  # type: ignore[misc]


@pytest.mark.parametrize("text, expected", [
    ("A42G", [("A", 42, "G")]),
    ("  A42G\t", [("A", 42, "G")]),
    ("a42g", [("A", 42, "G")]),
    ("A42*", [("A", 42, "*")]),
    ("B42X", [("B", 42, "X")]),  # parsed; classified later
    ("M-3A", [("M", -3, "A")]),
    ("p.Ala42Gly", [("A", 42, "G")]),
    ("Ala42Gly", [("A", 42, "G")]),
    ("ALA42GLY", [("A", 42, "G")]),
    ("p.(Trp8Ter)", [("W", 8, "*")]),
    ("p.Ala42=", [("A", 42, "A")]),
    ("Ala42G", [("A", 42, "G")]),
    ("p.[Ala42Gly;Leu50Pro]", [("A", 42, "G"), ("L", 50, "P")]),
])
def test_parse_valid(text, expected):
    assert parse_mutant(text) == tuple(Substitution(*e) for e in expected)


@pytest.mark.parametrize("sep", [":", "/", "+", ","])
def test_parse_multi_each_separator(sep):
    text = f"A42G{sep} L50P {sep}K7R"
    assert parse_mutant(text) == (Substitution("A", 42, "G"), Substitution("L", 50, "P"),
                                  Substitution("K", 7, "R"))


def test_parse_separator_excluded():
    assert len(parse_mutant("A42G,L50P", separators=":/+,")) == 2
    with pytest.raises(InvalidMutantError, match=r"',' is not a separator here"):
        parse_mutant("A42G,L50P", separators=":/+")
    assert parse_mutant("A42G:L50P", separators=":/+") == (Substitution("A", 42, "G"),
                                                          Substitution("L", 50, "P"))


@pytest.mark.parametrize("text", ["WT", "wt", "_wt", "_sy", "", "  ", "_", "wildtype", "wild-type", "p.=",
                                  None])
def test_parse_wild_type(text):
    assert parse_mutant(text) == ()


def test_parse_offset():
    assert parse_mutant("A42G:L50P", offset=-20) == (Substitution("A", 22, "G"),
                                                     Substitution("L", 30, "P"))
    assert parse_mutant("M-3A", offset=5) == (Substitution("M", 2, "A"),)


def test_parse_error_message_exact():
    with pytest.raises(InvalidMutantError) as exc:
        parse_mutant("A4")
    assert str(exc.value) == "cannot parse mutant 'A4': expected wild-type letter, position, new letter"
    assert not isinstance(exc.value, IndelMutantError)


@pytest.mark.parametrize("text, message", [
    ("A42G:A4", "cannot parse mutant 'A42G:A4': part 'A4': expected wild-type letter, position, "
                "new letter"),
    ("Abc42G", "cannot parse mutant 'Abc42G': 'Abc' is not a three-letter amino-acid code"),
    ("A42G::L50P", "cannot parse mutant 'A42G::L50P': empty part between separators"),
    ("A42G:", "cannot parse mutant 'A42G:': empty part between separators"),
    ("hello", "cannot parse mutant 'hello': expected wild-type letter, position, new letter"),
    ("42G", "cannot parse mutant '42G': expected wild-type letter, position, new letter"),
    ("AG42G", "cannot parse mutant 'AG42G': expected wild-type letter, position, new letter"),
])
def test_parse_errors(text, message):
    with pytest.raises(InvalidMutantError) as exc:
        parse_mutant(text)
    assert str(exc.value) == message


@pytest.mark.parametrize("text", ["A42del", "p.Ala42del", "A42_G45del", "A42_G45delinsW", "K50fs",
                                  "p.Lys50fs*3", "A42dup", "A42_G43insK", "A42-", "A42_G45", "p.Arg175Hisfs*3",
                                  "p.Arg175HisfsTer3", "R175Hfs*3", "p.Met1ValextMet-12"])
def test_parse_indels_are_recognised(text):
    with pytest.raises(IndelMutantError, match="insertion, deletion or frameshift"):
        parse_mutant(text)


# --- resolve_mutants ----------------------------------------------------------------------------


def test_resolve_single_and_multi():
    r = resolve1("K11R")
    assert r.ok and r.status == "ok"
    assert r.changes == ((col(11), AA_TO_CODE["R"]),)
    r = resolve1("S26A:M10W")
    assert r.changes == ((col(10), AA_TO_CODE["W"]), (col(26), AA_TO_CODE["A"]))  # sorted
    assert r.substitutions == (Substitution("S", 26, "A"), Substitution("M", 10, "W"))


def test_resolve_wild_type_and_synonymous():
    for text in ("WT", "_wt"):
        r = resolve1(text)
        assert r.ok and r.changes == ()
    assert resolve1("").reason == resolve1(None).reason == "empty_mutant"  # a missing cell, not the wild type
    r = resolve1("K11K")
    assert r.ok and r.changes == ()
    r = resolve1("K11K:T12A")
    assert r.ok and r.changes == ((col(12), AA_TO_CODE["A"]),)
    assert resolve1("K11R:K11R").changes == ((col(11), AA_TO_CODE["R"]),)  # a repeat is harmless
    assert resolve1(None).text == ""


def test_resolve_offset():
    r = resolve1("K1R", offset=10)
    assert r.ok and r.changes == ((col(11), AA_TO_CODE["R"]),)
    assert resolve1("K11R", offset=10).status == (
        "position_not_modelled: 21 is not a modelled column (modelled: 10-29, with a gap at 20-21)")
    assert resolve1("A2T", offset=10).status == "wt_mismatch: A12 but focus has T12"


@pytest.mark.parametrize("text, status", [
    ("A4", "parse_error: cannot parse mutant 'A4': expected wild-type letter, position, new letter"),
    ("K11del", "indel: K11del is an insertion, deletion or frameshift; only substitutions can be "
               "scored"),
    ("K11R:T12_A13del", "indel: part T12_A13del of 'K11R:T12_A13del' is an insertion, deletion or "
                        "frameshift; only substitutions can be scored"),
    ("K11B", "unknown_residue: B in K11B"),
    ("X11A", "unknown_residue: X in X11A"),
    ("K11*", "stop: K11* is a nonsense (stop) mutation"),
    ("p.Lys11Ter", "stop: K11* is a nonsense (stop) mutation"),
    ("L11F", "wt_mismatch: L11 but focus has K11"),
    ("A5G", "position_not_modelled: 5 is not a modelled column (modelled: 10-29)"),
    ("A30G", "position_not_modelled: 30 is not a modelled column (modelled: 10-29)"),
    ("K20A", "position_not_modelled: 20 is not a modelled column (modelled: 10-29, "
             "with a gap at 20-21)"),
    ("K11R:K11A", "conflicting_substitutions: K11R and K11A change position 11 to different "
                  "residues"),
    ("K11K:K11A", "conflicting_substitutions: K11K and K11A change position 11 to different "
                  "residues"),
])
def test_resolve_status_texts(text, status):
    r = resolve1(text)
    assert r.status == status
    assert not r.ok and r.changes == ()
    assert r.reason == status.split(":")[0] and r.reason in REASONS
    assert r.text == text


def test_resolve_gap_of_one():
    r = resolve_mutants(["K11R"], "MT", [10, 12])[0]
    assert r.status == "position_not_modelled: 11 is not a modelled column (modelled: 10-12, " \
                       "with a gap at 11)"


def test_wt_mismatch_text_like_gfp():
    r = resolve_mutants(["L64M"], "AFG", [63, 64, 65])[0]
    assert r.status == "wt_mismatch: L64 but focus has F64"


def test_parse_error_detail_is_parse_message():
    with pytest.raises(InvalidMutantError) as exc:
        parse_mutant("K11R/Q")
    assert resolve1("K11R/Q").status == f"parse_error: {exc.value}"


def test_first_problem_reported():
    # parse problems come first, then the parts left to right
    assert resolve1("L11F:A5G").reason == "wt_mismatch"
    assert resolve1("A5G:L11F").reason == "position_not_modelled"
    assert resolve1("L11F:zzz").reason == "parse_error"
    assert resolve1("K11*:K11A").reason == "stop"
    assert resolve1("K11R:L12F").status == "wt_mismatch: L12 but focus has T12"


def test_separators_passed_to_resolve():
    assert resolve1("K11R,T12A").ok
    assert resolve1("K11R,T12A", separators=":/+").reason == "parse_error"


def test_resolve_keeps_every_row_in_order():
    texts = ["K11R", "bad", None, "K11R", "T12A", "WT", "K11*"]
    out = resolve_mutants(texts, FOCUS, POSITIONS)
    assert [r.text for r in out] == ["K11R", "bad", "", "K11R", "T12A", "WT", "K11*"]
    assert [r.ok for r in out] == [True, False, False, True, True, True, False]


def test_resolve_rejects_inconsistent_model():
    with pytest.raises(ValueError):
        resolve_mutants(["A1G"], "AC", [1])


def test_status_summary():
    out = resolve_mutants(["K11R", "K11R", "A4", "K11*", "L11F", "A5G", "WT", "K11B", "K11del",
                           "K11R:K11A"], FOCUS, POSITIONS)
    assert status_summary(out) == {"ok": 3, "parse_error": 1, "indel": 1, "unknown_residue": 1,
                                   "stop": 1, "position_not_modelled": 1, "wt_mismatch": 1,
                                   "conflicting_substitutions": 1}
    assert status_summary([]) == {"ok": 0}
    assert status_summary(resolve_mutants(["K11R"], FOCUS, POSITIONS)) == {"ok": 1}


# --- suggest_cause ------------------------------------------------------------------------------

_LONG = ("MSKGEELFTGVVPILVELDGDVNGHKFSVSGEGEGDATYGKLTLKFICTTGKLPVPWPTLVTTFSYGVQCFSRYPDHMKQHDFFKSAM"
         "PEGYVQERTIFFKDDGNYKTRAEVKFEGDTLVNRIELKGIDFKEDGNILGHKLEYNYNSHNVYIMADKQKNGIKVNFKIRHNIEDGS")
_LONG_POS = list(range(101, 101 + len(_LONG)))


def _singles(shift: int) -> list[str]:
    return [f"{aa}{p - shift}{'A' if aa != 'A' else 'G'}" for p, aa in zip(_LONG_POS, _LONG, strict=True)]


def test_suggest_cause_shifted_table():
    texts = _singles(shift=7)  # the table numbers residue 101 as 94
    res = resolve_mutants(texts, _LONG, _LONG_POS)
    assert status_summary(res)["ok"] < len(texts) // 5
    msg = suggest_cause(res, _LONG, _LONG_POS)
    assert msg.startswith("positions look shifted by 7:")
    assert msg.endswith("try --offset 7")
    fixed = resolve_mutants(texts, _LONG, _LONG_POS, offset=7)
    assert all(r.ok for r in fixed)
    # an offset already given is accounted for
    res = resolve_mutants(texts, _LONG, _LONG_POS, offset=2)
    msg = suggest_cause(res, _LONG, _LONG_POS, offset=2)
    assert "shifted by 5" in msg and msg.endswith("try --offset 7")


def test_suggest_cause_large_negative_shift():
    texts = _singles(shift=-900)
    msg = suggest_cause(resolve_mutants(texts, _LONG, _LONG_POS), _LONG, _LONG_POS)
    assert msg.endswith("try --offset -900")


def test_suggest_cause_not_mutants():
    res = resolve_mutants(["V", "G", "*"], _LONG, _LONG_POS)
    msg = suggest_cause(res, _LONG, _LONG_POS)
    assert "--mutant-col" in msg and "--wt-col/--pos-col/--mut-col" in msg and "'V'" in msg


def test_suggest_cause_whole_sequences():
    # a column of mutated sequences (ProteinGym's mutated_sequence) instead of mutant strings: said so, clipped
    seqs = [_LONG[:5] + "A" + _LONG[6:], _LONG[:9] + "W" + _LONG[10:]]
    msg = suggest_cause(resolve_mutants(seqs, _LONG, _LONG_POS), _LONG, _LONG_POS)
    assert msg.startswith(f"the mutant column holds whole sequences ({len(_LONG)} residues, e.g. "
                          f"'{seqs[0][:30]}... ({len(_LONG)} characters)'), not mutants")
    assert "'mutant' column, beside 'mutated_sequence'" in msg and _LONG[40:60] not in msg


def test_suggest_cause_outside_range_and_mismatch():
    res = resolve_mutants(["A1G", "C2G"], _LONG, _LONG_POS)
    msg = suggest_cause(res, _LONG, _LONG_POS)
    assert msg.startswith("all mutated positions (1-2) lie outside the modelled columns (101-")
    res = resolve_mutants(["W101G", "W102G"], _LONG, _LONG_POS)
    assert "wild-type letters do not match" in suggest_cause(res, _LONG, _LONG_POS)
    assert suggest_cause([], _LONG, _LONG_POS) == "the mutant table has no rows"


# --- read_mutant_table --------------------------------------------------------------------------


def write(tmp_path: Path, text: str, name: str = "t.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_read_comma(tmp_path):
    p = write(tmp_path, "mutant,score,note\nK11R,0.5,001\nK11R:T12A,nan, x \nWT,,\n")
    t = read_mutant_table(p)
    assert t.delimiter == "," and t.separators == ":/+," and t.mutant_col == "mutant"
    assert t.mutants == ["K11R", "K11R:T12A", "WT"]
    # every cell exactly as written
    assert t.frame["note"].tolist() == ["001", " x ", ""]
    assert t.frame["score"].tolist() == ["0.5", "nan", ""]
    np.testing.assert_array_equal(numeric_column(t, "score"), [0.5, np.nan, np.nan])
    assert detect_fitness_col(t.frame) == "score"


def test_read_semicolon_with_comments(tmp_path):
    p = write(tmp_path, "# a comment\n# y is the measure; dE the energy\nvariant;y;dE\n"
                        "K11R;1.5;-2\nK11R,T12A;0.1;0\n")
    t = read_mutant_table(p)
    assert t.delimiter == ";" and t.separators == ":/+," and t.mutant_col == "variant"
    assert list(t.frame.columns) == ["variant", "y", "dE"]
    assert len(t.frame) == 2
    res = resolve_mutants(t.mutants, FOCUS, POSITIONS, separators=t.separators)
    assert [r.ok for r in res] == [True, True]
    assert detect_fitness_col(t.frame) is None


def test_read_tab(tmp_path):
    p = write(tmp_path, "Mutation\tfitness\nK11R,T12A\t1\nK11R\t2\n", "t.tsv")
    t = read_mutant_table(p)
    assert t.delimiter == "\t" and t.separators == ":/+," and t.mutant_col == "Mutation"
    res = resolve_mutants(t.mutants, FOCUS, POSITIONS, separators=t.separators)
    assert res[0].ok and len(res[0].changes) == 2
    assert detect_fitness_col(t.frame) == "fitness"


def test_a_measured_fitness_with_its_sem_is_the_fitness_a_predicted_score_is_not():
    import pandas as pd

    assert detect_fitness_col(pd.DataFrame({"mutant": ["K11R"], "fitness": [1.0], "fitness_sem": [0.1]})) == "fitness"
    both = pd.DataFrame({"mutant": ["K11R"], "score": [1.0], "score_sem": [0.1], "log_fitness": [2.0]})
    assert detect_fitness_col(both) == "log_fitness"  # deepseqvae's own score is passed over, a measurement found
    assert detect_fitness_col(both.drop(columns="log_fitness")) is None


def test_a_quoted_comma_joins_a_multi_mutant_in_a_comma_separated_file(tmp_path):
    # the reader has already told the quoted cell apart from the columns, so its comma can only join the parts
    # (a scored table written with "K11R, T12A" scores again as it did)
    p = write(tmp_path, 'mutant,score\n"K11R,T12A",1\nK11R:T12A,2\n"K11R, T12A",3\n')
    t = read_mutant_table(p)
    assert t.mutants == ["K11R,T12A", "K11R:T12A", "K11R, T12A"]
    res = resolve_mutants(t.mutants, FOCUS, POSITIONS, separators=t.separators)
    assert [r.ok for r in res] == [True, True, True]
    assert res[0].changes == res[1].changes == res[2].changes and len(res[0].changes) == 2


def test_read_single_column(tmp_path):
    p = write(tmp_path, "mutant\nK11R,T12A\n\nK11R\n\n\n")
    t = read_mutant_table(p)
    assert t.mutants == ["K11R,T12A", "", "K11R"]  # a blank middle line is a row (status empty_mutant)
    assert t.delimiter != "," and "," in t.separators


def test_unnamed_first_column_kept(tmp_path):
    p = write(tmp_path, ",mutant,DMS_score,DMS_score_bin\n4,K11R,3.7,1\n48,T12A,x,0\n")
    t = read_mutant_table(p)
    assert list(t.frame.columns) == ["", "mutant", "DMS_score", "DMS_score_bin"]
    assert t.frame[""].tolist() == ["4", "48"]
    assert detect_fitness_col(t.frame) == "DMS_score"
    np.testing.assert_array_equal(numeric_column(t.frame, "dms_score"), [3.7, np.nan])


def test_three_column_auto(tmp_path, caplog):
    p = write(tmp_path, "wildtype,site,mutant,score\nK,11,R,0.5\nK,11,K,1.0\nK,11,*,0.0\n"
                        "T,12.0,A,0.3\n")
    with caplog.at_level(logging.INFO, logger="deepseqvae.tables"):
        t = read_mutant_table(p)
    assert t.mutant_col is None and (t.wt_col, t.pos_col, t.mut_col) == ("wildtype", "site", "mutant")
    assert t.mutants == ["K11R", "K11K", "K11*", "T12A"]
    assert "wildtype" in caplog.text and "site" in caplog.text
    res = resolve_mutants(t.mutants, FOCUS, POSITIONS, separators=t.separators)
    assert [r.reason for r in res] == ["ok", "ok", "stop", "ok"]
    assert res[1].changes == ()
    assert t.frame["mutant"].tolist() == ["R", "K", "*", "A"]  # the frame is untouched


def test_three_column_explicit_and_mutant_col_explicit(tmp_path):
    p = write(tmp_path, "From,Where,To,mutant\nK,11,R,junk\n")
    t = read_mutant_table(p, wt_col="From", pos_col="where", mut_col="To")
    assert t.mutants == ["K11R"] and t.pos_col == "Where"
    t = read_mutant_table(p, mutant_col="mutant")  # explicit: taken even though not mutants
    assert t.mutants == ["junk"] and t.mutant_col == "mutant"
    t = read_mutant_table(write(tmp_path, "id,change\n1,K11R\n"), mutant_col="change")
    assert t.mutants == ["K11R"]


@pytest.mark.parametrize("kwargs, match", [
    ({"mutant_col": "nope"}, r"column 'nope' \(--mutant-col\) not found in .*t.csv; columns: "
                             r"'mutant', 'score'"),
    ({"wt_col": "mutant"}, "give all three of --wt-col, --pos-col and --mut-col"),
    ({"mutant_col": "mutant", "wt_col": "a", "pos_col": "b", "mut_col": "c"}, "not both"),
    ({"wt_col": "mutant", "pos_col": "x", "mut_col": "score"}, r"column 'x' \(--pos-col\)"),
])
def test_named_column_errors(tmp_path, kwargs, match):
    p = write(tmp_path, "mutant,score\nK11R,1\n")
    with pytest.raises(MutantTableError, match=match):
        read_mutant_table(p, **kwargs)


def test_mutant_column_without_mutants(tmp_path):
    p = write(tmp_path, "mutant,score\nV,1\nG,2\n")
    with pytest.raises(MutantTableError) as exc:
        read_mutant_table(p)
    msg = str(exc.value)
    assert "\n" not in msg and str(p) in msg and "'mutant', 'score'" in msg
    assert "--mutant-col" in msg and "--wt-col/--pos-col/--mut-col" in msg and "'V'" in msg


def test_no_mutant_column(tmp_path):
    p = write(tmp_path, "id,score\n1,2\n")
    with pytest.raises(MutantTableError, match=r"no mutant column found in .*columns: 'id', 'score'; "
                                               r"choose the mutant column with --mutant-col"):
        read_mutant_table(p)


@pytest.mark.parametrize("text, match", [
    ("", "is empty"),
    ("\n\n", "is empty"),
    ("# only a comment\n", "is empty"),
    ("mutant,score\n", "has a header but no rows"),
    ("mutant,score\n\n\n", "has a header but no rows"),
    ("mutant,score\nK11R,1\nK11R,1,2,3\n", "cannot read mutant table"),
])
def test_bad_files(tmp_path, text, match):
    with pytest.raises(MutantTableError, match=match):
        read_mutant_table(write(tmp_path, text))


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(MutantTableError, match="not found"):
        read_mutant_table(tmp_path / "nope.csv")
    with pytest.raises(MutantTableError, match="directory"):
        read_mutant_table(tmp_path)


def test_numeric_column_missing(tmp_path):
    t = read_mutant_table(write(tmp_path, "mutant,score\nK11R,1\n"))
    with pytest.raises(MutantTableError, match="column 'fit' not found"):
        numeric_column(t, "fit")


# --- the real benchmark files -------------------------------------------------------------------


@pytest.mark.integration
def test_real_blat(shared_data):
    focus, positions = focus_from_a2m(require_shared_data("BLAT_ECOLX", "msa.a2m"))
    assert len(focus) == 253 and positions[0] == 29 and positions[-1] == 283
    t = read_mutant_table(require_shared_data("BLAT_ECOLX", "dms.csv"))
    assert len(t.frame) == 4997 and t.mutant_col == "mutant" and t.delimiter == ","
    assert np.isfinite(numeric_column(t, "2500")).all()
    res = resolve_mutants(t.mutants, focus, positions, separators=t.separators)
    assert status_summary(res) == {"ok": 4807, "position_not_modelled": 190}
    assert res[0].status == "position_not_modelled: 24 is not a modelled column (modelled: 29-283)"
    r56 = next(r for r in res if r.text.startswith("E56"))
    assert r56.status.endswith("(modelled: 29-283, with a gap at 56)")


@pytest.mark.integration
def test_real_blat_shift_suggestion(shared_data):
    focus, positions = focus_from_a2m(require_shared_data("BLAT_ECOLX", "msa.a2m"))
    t = read_mutant_table(require_shared_data("BLAT_ECOLX", "dms.csv"))
    res = resolve_mutants(t.mutants, focus, positions, offset=-23, separators=t.separators)
    assert status_summary(res)["ok"] < 500
    assert suggest_cause(res, focus, positions, offset=-23).endswith("try --offset 0")


@pytest.mark.integration
def test_real_pten_three_columns(shared_data):
    focus, positions = focus_from_a2m(require_shared_data("PTEN_HUMAN", "msa.a2m"))
    t = read_mutant_table(require_shared_data("PTEN_HUMAN", "dms.csv"))
    assert len(t.frame) == 4408 and t.mutant_col is None
    assert (t.wt_col, t.pos_col, t.mut_col) == ("wildtype", "site", "mutant")
    assert detect_fitness_col(t.frame) == "score"
    res = resolve_mutants(t.mutants, focus, positions, separators=t.separators)
    counts = status_summary(res)
    assert counts["stop"] == 140 and counts.get("wt_mismatch", 0) == 0
    assert sum(counts.values()) == 4408
    synonymous = [r for r, m in zip(res, t.mutants, strict=True) if m[0] == m[-1]]
    assert len(synonymous) == 156
    assert all(r.changes == () for r in synonymous if r.ok)
    missense_ok = sum(1 for r in res if r.ok and r.changes)
    assert missense_ok == 4112 - 208


@pytest.mark.integration
def test_real_gfp(shared_data):
    focus, positions = focus_from_a2m(require_shared_data("GFP_AEQVI", "msa.a2m"))
    t = read_mutant_table(require_shared_data("GFP_AEQVI", "dms.csv"))
    assert len(t.frame) == 1084 and list(t.frame.columns)[0] == ""
    assert detect_fitness_col(t.frame) == "DMS_score"
    res = resolve_mutants(t.mutants, focus, positions, separators=t.separators)
    assert status_summary(res) == {"ok": 1081, "wt_mismatch": 3}
    bad = sorted(r.text for r in res if not r.ok)
    assert bad == ["L64M", "L64P", "L64V"]
    assert {r.status for r in res if not r.ok} == {"wt_mismatch: L64 but focus has F64"}


@pytest.mark.integration
@pytest.mark.parametrize("name, rows, outside", [
    ("ranganathan2015", 4921, 114),
    ("ostermeier2014", 4799, 189),
])
def test_real_merge_semicolon(shared_data, name, rows, outside):
    focus, positions = focus_from_a2m(require_shared_data("BLAT_ECOLX", "msa.a2m"))
    t = read_mutant_table(require_shared_data("BLAT_ECOLX", f"merge_blat_ecolx_{name}.csv"))
    assert t.delimiter == ";" and t.mutant_col == "variant" and len(t.frame) == rows
    assert list(t.frame.columns) == ["variant", "y", "dE"]
    assert np.isfinite(numeric_column(t, "y")).all()
    res = resolve_mutants(t.mutants, focus, positions, separators=t.separators)
    counts = status_summary(res)
    assert counts == {"ok": rows - outside, "position_not_modelled": outside}
    if name == "ostermeier2014":  # 89 rows at 19-23, before the focus region
        assert sum(1 for r in res if r.substitutions and r.substitutions[0].pos < 24) == 89


# --- an empty mutant cell: its own status, never the wild type ------------------------------------


EMPTY = "empty_mutant: no mutant given (empty cell; write WT for the wild type)"


@pytest.mark.parametrize("cell", ["", "   ", "\t", None, math.nan])
def test_empty_cell_has_its_own_status(cell):
    (r,) = resolve_mutants([cell], TOY_FOCUS, TOY_POSITIONS)
    assert r.status == EMPTY
    assert not r.ok and r.reason == "empty_mutant" and r.changes == ()
    assert r.text == ("" if cell is None or isinstance(cell, float) else cell)


def test_wild_type_words_are_still_the_wild_type():
    out = resolve_mutants(["WT", "_wt", "p.=", "K6K"], TOY_FOCUS, TOY_POSITIONS)
    assert [(r.status, r.changes) for r in out] == [("ok", ())] * 4
    # parse_mutant is the grammar of one string, where "" stays the wild type; a table cell goes
    # through resolve_mutants
    assert parse_mutant("") == ()


def test_empty_mutant_is_a_reason_counted_first():
    assert REASONS[0] == "empty_mutant"
    out = resolve_mutants(["K6A", "", "L6A", None, "bogus", "WT"], TOY_FOCUS, TOY_POSITIONS)
    assert [r.reason for r in out] == ["ok", "empty_mutant", "wt_mismatch", "empty_mutant", "parse_error", "ok"]
    summary = status_summary(out)
    assert summary == {"ok": 2, "empty_mutant": 2, "parse_error": 1, "wt_mismatch": 1}
    assert list(summary) == ["ok", "empty_mutant", "parse_error", "wt_mismatch"]  # REASONS order


def test_suggest_cause_for_empty_cells():
    empty = resolve_mutants(["", " ", None], TOY_FOCUS, TOY_POSITIONS)
    assert suggest_cause(empty, TOY_FOCUS, TOY_POSITIONS).startswith(
        "every mutant cell is empty: choose the right column with --mutant-col")
    # empty cells do not hide a column of non-mutants
    mixed = resolve_mutants(["", "hello", "world"], TOY_FOCUS, TOY_POSITIONS)
    assert suggest_cause(mixed, TOY_FOCUS, TOY_POSITIONS).startswith(
        "no value of the mutant column looks like a mutant such as A42G (e.g. '', 'hello', 'world')")


def test_score_table_empty_cell_gets_no_score_and_stays_out_of_spearman(tmp_path):
    """The tester's table: the row ',12' was scored 0 as the wild type, status ok, and ranked."""
    path = tmp_path / "muts.csv"
    path.write_text("mutant,fitness\nK6A,1.0\n,12\nT7W,0.5\nWT,0.0\nY9F,2\n")
    table = read_mutant_table(path)
    assert table.mutants == ["K6A", "", "T7W", "WT", "Y9F"]
    ck, _ = toy_vae_checkpoint()
    res = score_table([ck], table, n_samples=2, fitness_col="fitness")
    f = res.frame
    assert f["mutant"].tolist() == ["K6A", "", "T7W", "WT", "Y9F"]  # the row is kept, in place
    assert f.loc[1, "fitness"] == "12" and f.loc[1, "status"] == EMPTY
    assert np.isnan(f.loc[1, "score"]) and np.isnan(f.loc[1, "score_sem"])
    assert f.loc[3, "score"] == 0.0 and f.loc[3, "status"] == "ok"  # an explicit WT still scores 0
    assert res.summary == {"ok": 4, "empty_mutant": 1}
    sp = res.spearman  # the WT row scores 0 by definition: kept, but not ranked
    assert sp["n"] == 3 and sp["excluded"] == 2 and sp["excluded_unscorable"] == 1
    assert sp["excluded_no_substitution"] == 1


def test_strict_names_the_empty_row(tmp_path):
    path = tmp_path / "muts.csv"
    path.write_text("mutant,fitness\nK6A,1.0\n,12\n")
    ck, _ = toy_vae_checkpoint()
    with pytest.raises(InvalidMutantError, match=r"muts\.csv: line 3 \(''\): empty_mutant: no mutant given"):
        score_table([ck], read_mutant_table(path), n_samples=2, strict=True)
    path.write_text("mutant,fitness\n,1.0\n,12\n")
    with pytest.raises(InvalidMutantError, match=r"no mutant can be scored: every mutant cell is empty"):
        score_table([ck], read_mutant_table(path), n_samples=2)


# --- compressed tables, a byte order mark, blank cells of the three-column form -------------------


TABLE = "mutant;fitness;note\nK6A;1.5;café\nK6A:T7W;0.25;\nWT;0;x\n"  # non-ASCII: the decoding is checked too


@pytest.mark.parametrize("name", ["muts.csv.gz", "muts.csv", "muts.GZ"])
@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"])
def test_gzip_table_recognised_by_its_magic_bytes(tmp_path, caplog, name, bom):
    path = tmp_path / name
    path.write_bytes(gzip.compress(bom + TABLE.encode("utf-8")))
    t = read_mutant_table(path)
    assert "not UTF-8" not in caplog.text  # it was read as Latin-1 before
    assert t.delimiter == ";" and t.mutant_col == "mutant" and t.path == str(path)
    assert list(t.frame.columns) == ["mutant", "fitness", "note"]  # no BOM in the first name
    assert t.mutants == ["K6A", "K6A:T7W", "WT"]
    assert t.frame["note"].tolist() == ["café", "", "x"]
    np.testing.assert_array_equal(numeric_column(t, "fitness"), [1.5, 0.25, 0.0])


def test_plain_table_named_gz_is_read_as_text(tmp_path):
    path = tmp_path / "muts.csv.gz"
    path.write_text(TABLE, encoding="utf-8")
    assert read_mutant_table(path).mutants == ["K6A", "K6A:T7W", "WT"]


def test_damaged_gzip_table_is_a_one_line_error(tmp_path):
    path = write_truncated_gzip(tmp_path / "cut.csv.gz", TABLE * 100)
    with pytest.raises(MutantTableError, match=rf"cannot read mutant table {path}: truncated or damaged gzip "
                                               r"data \(Compressed file ended") as info:
        read_mutant_table(path)
    assert "\n" not in str(info.value)


def test_cli_scores_a_gzip_table(tmp_path):
    """The tester's command: 'score muts.csv.gz -m model.pt' warned 'not UTF-8' and failed in pandas."""
    ck, _ = toy_vae_checkpoint()
    save_checkpoint(ck, tmp_path / "model.pt")
    table = tmp_path / "muts.csv.gz"
    table.write_bytes(gzip.compress(b"mutant,fitness\nK6A,1\nT7W,2\nY9F,3\nL6A,4\n"))
    out = tmp_path / "scored.csv"
    result = CliRunner().invoke(main, ["score", str(table), "-m", str(tmp_path / "model.pt"), "-o", str(out),
                                       "--samples", "2", "--device", "cpu", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "not UTF-8" not in result.output
    assert "Scored 3 of 4 rows" in result.output and "wt_mismatch 1" in result.output
    scored = pd.read_csv(out, dtype={"status": str}, keep_default_na=False)
    assert scored["mutant"].tolist() == ["K6A", "T7W", "Y9F", "L6A"]
    assert scored["status"].tolist()[:3] == ["ok"] * 3 and scored["status"][3].startswith("wt_mismatch: L6")


# --- blank cells of the three-column form ------------------------------------------------------------


def test_three_column_blank_cells_are_empty_mutants(tmp_path):
    """A blank wild-type, position or new-residue cell is a missing value, not a mutant."""
    path = tmp_path / "vamp.csv"
    path.write_text("wildtype,site,mutant,score\nK,6,A,1\n,,,2\nK,6,,3\n,6,A,4\nK, ,A,5\nT,7.0,W,6\n")
    t = read_mutant_table(path)
    assert (t.wt_col, t.pos_col, t.mut_col) == ("wildtype", "site", "mutant")
    assert t.mutants == ["K6A", "", "", "", "", "T7W"]
    assert t.frame["mutant"].tolist() == ["A", "", "", "A", "A", "W"]  # the cells themselves are untouched
    res = resolve_mutants(t.mutants, TOY_FOCUS, TOY_POSITIONS, separators=t.separators)
    assert [r.reason for r in res] == ["ok", "empty_mutant", "empty_mutant", "empty_mutant", "empty_mutant", "ok"]
    # named explicitly, the same
    t2 = read_mutant_table(path, wt_col="wildtype", pos_col="site", mut_col="mutant")
    assert t2.mutants == t.mutants


def test_a_ragged_row_is_named_by_its_file_line(tmp_path):
    # pandas counts the lines it is given, without the comment lines above the header: it said line 4
    (tmp_path / "ragged.csv").write_text("# c\n# c2\nmutant,label\nR175H,1\nP72R,0\nR248Q,1,extra\n")
    with pytest.raises(MutantTableError, match=r"ragged\.csv \(comma-separated\): .*Expected 2 fields in line 6, "
                                               r"saw 3$"):
        read_mutant_table(tmp_path / "ragged.csv")


@pytest.mark.parametrize("magic, name", [(b"PK\x03\x04", "labels.xlsx"), (b"\xd0\xcf\x11\xe0", "old.xls")])
def test_a_spreadsheet_workbook_is_named_as_one(tmp_path, magic, name):
    # it was read as Latin-1 and its columns listed as 'PK\x03\x04...'
    (tmp_path / name).write_bytes(magic + bytes(range(256)) * 4)
    with pytest.raises(MutantTableError, match=rf"^mutant table {re.escape(str(tmp_path / name))} is a zip archive "
                                               r"or an Office file \(a spreadsheet workbook\?\), not a text table: "
                                               r"save the sheet as CSV"):
        read_mutant_table(tmp_path / name)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be"])
def test_utf16_table_with_its_mark_is_read(tmp_path, encoding):
    # Excel's "Unicode Text" export: UTF-16 with a byte order mark, tab-separated
    path = tmp_path / "m.txt"
    text = "mutant\tfitness\nK6A\t1.5\nL7A\t-2\n"  # "utf-16" writes its mark itself, "utf-16-be" does not
    path.write_bytes((text if encoding == "utf-16" else "\ufeff" + text).encode(encoding))
    table = read_mutant_table(path)
    assert table.mutants == ["K6A", "L7A"] and list(table.frame["fitness"]) == ["1.5", "-2"]
    assert [table.line(i) for i in range(2)] == [2, 3]


def test_decimal_commas_are_read_where_the_delimiter_allows_them(tmp_path):
    # a spreadsheet in a decimal-comma locale saves ";"-separated numbers as 0,53 (and Excel may add "sep=;")
    path = tmp_path / "eu.csv"
    path.write_text("sep=;\nmutant;fitness;count\nK6A;0,53;1\nL7A;-1;2\nM8A;-1,5e-1;3\nN9A;;4\n")
    table = read_mutant_table(path)
    assert table.delimiter == ";" and table.mutants == ["K6A", "L7A", "M8A", "N9A"]
    assert [table.line(i) for i in range(4)] == [3, 4, 5, 6]
    assert np.allclose(numeric_column(table, "fitness"), [0.53, -1.0, -0.15, np.nan], equal_nan=True)
    assert list(table.frame["fitness"]) == ["0,53", "-1", "-1,5e-1", ""]  # the cells themselves are kept as written
    assert detect_fitness_col(table) == "fitness"
    path.write_text("mutant\tfitness\nK6A\t2,5\nL7A\t1\n")  # tab-separated too
    assert np.allclose(numeric_column(read_mutant_table(path), "fitness"), [2.5, 1.0])
    # a decimal point anywhere in the column makes the convention unclear (1.234,5): commas stay not-a-number
    path.write_text("mutant;fitness\nK6A;0,5\nL7A;1.25\n")
    assert np.allclose(numeric_column(read_mutant_table(path), "fitness"), [np.nan, 1.25], equal_nan=True)
    # comma-separated: a quoted "1,234" is a thousands separator as likely as a decimal comma: not a number
    path.write_text('mutant,fitness\nK6A,"0,5"\nL7A,2\n')
    assert np.allclose(numeric_column(read_mutant_table(path), "fitness"), [np.nan, 2.0], equal_nan=True)
    # an English-locale tab export writes thousands separators: 1,234 could be either, so it is no number (warned)
    path.write_text("mutant\tcount\nK6A\t1,234\nL7A\t987\nM8A\t2,500\n")
    assert np.allclose(numeric_column(read_mutant_table(path), "count"), [np.nan, 987, np.nan], equal_nan=True)
    path.write_text("mutant\tfitness\nK6A\t1,234\nL7A\t0,5\n")  # one clear decimal comma decides the column
    assert np.allclose(numeric_column(read_mutant_table(path), "fitness"), [1.234, 0.5])
    # only dms_score with decimal commas: found as the fitness column of the table (not of its bare frame)
    path.write_text("mutant;DMS_score\nK6A;0,5\n")
    table = read_mutant_table(path)
    assert detect_fitness_col(table) == "DMS_score" and detect_fitness_col(table.frame) is None


def test_mavedb_score_table_is_read_by_its_hgvs_pro_column(tmp_path):
    # MaveDB's score tables: accession,hgvs_nt,hgvs_splice,hgvs_pro,score with NA, _wt and _sy rows
    path = tmp_path / "urn_mavedb.csv"
    path.write_text("accession,hgvs_nt,hgvs_splice,hgvs_pro,score\n"
                    "x#1,NA,NA,p.Lys6Ala,0.5\nx#2,NA,NA,_wt,0.0\nx#3,NA,NA,_sy,0.1\n"
                    "x#4,NA,NA,p.[Lys6Ala;Leu7Pro],NA\n")
    table = read_mutant_table(path)
    assert table.mutant_col == "hgvs_pro" and table.mutants[0] == "p.Lys6Ala"
    assert [parse_mutant(m, separators=table.separators) for m in table.mutants[1:3]] == [(), ()]
    assert detect_fitness_col(table) == "score"
    assert np.allclose(numeric_column(table, "score"), [0.5, 0.0, 0.1, np.nan], equal_nan=True)


def test_excel_separator_line_sets_the_delimiter(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text('"sep=,"\nmutant,note\nK6A,a;b\n')  # without the line, ";" could be sniffed
    table = read_mutant_table(path)
    assert table.delimiter == "," and list(table.frame["note"]) == ["a;b"] and table.line(0) == 3
    path.write_text("sep=|\nmutant|fitness\nK6A|1\n")
    with pytest.raises(MutantTableError, match=r"m.csv: line 1 sets the separator '\|'; a mutant table is comma"):
        read_mutant_table(path)
    path.write_text("sep=;\n")
    with pytest.raises(MutantTableError, match="m.csv is empty"):
        read_mutant_table(path)


def test_comment_lines_below_the_header_are_named_in_a_warning(tmp_path, caplog):
    path = tmp_path / "m.csv"
    path.write_text("# from the assay\nmutant,fitness\nK6A,1\n#N/A,0.7\nL7A,2\n")
    with caplog.at_level(logging.WARNING, logger="deepseqvae.tables"):
        table = read_mutant_table(path)
    assert table.mutants == ["K6A", "L7A"]
    assert "m.csv: 1 line(s) below the header start with '#' and are skipped as comments (line 4: '#N/A,0.7')" \
        in caplog.text
    caplog.clear()
    path.write_text("# only above the header\nmutant,fitness\nK6A,1\n")
    with caplog.at_level(logging.WARNING, logger="deepseqvae.tables"):
        read_mutant_table(path)
    assert "skipped as comments" not in caplog.text
    path.write_text("mutant,fitness\nK6A,1\nL7A,2\n#N/A,0.7\n\n")  # Excel sorts its error values last
    with caplog.at_level(logging.WARNING, logger="deepseqvae.tables"):
        assert read_mutant_table(path).mutants == ["K6A", "L7A"]
    assert "1 line(s) below the header start with '#' and are skipped as comments (line 4: '#N/A,0.7')" in caplog.text


def test_rows_are_named_by_their_file_line(tmp_path):
    # comments and blank lines count, as in an editor: header on line 2, rows on lines 4, 5 (blank) and 6
    path = tmp_path / "m.csv"
    path.write_text("# from the assay\nmutant,fitness\n# batch 2\nK6A,1\n\nL7A,2\n\n")
    table = read_mutant_table(path)
    assert table.mutants == ["K6A", "", "L7A"]
    assert [table.line(i) for i in range(3)] == [4, 5, 6]
    # a quoted cell over lines: each row is named by the line it starts on (comments and blank lines still count)
    path.write_text('mutant,note\nK6A,"two\nlines"\n# x\nL7A,x\n\nM8A,"three\nmore\nlines"\nN9A,y\n')
    table = read_mutant_table(path)
    assert table.mutants == ["K6A", "L7A", "", "M8A", "N9A"]
    assert [table.line(i) for i in range(5)] == [2, 5, 6, 7, 10]
