"""Tests of deepseqvae.alignment: parsing, focus columns, numbering, filters and every error."""

from __future__ import annotations

import dataclasses
import gzip
import logging

import numpy as np
import pytest
from click.testing import CliRunner

from deepseqvae.alignment import Alignment, AlignmentOptions, PositionNotModelledError, iter_fasta, read_alignment
from deepseqvae.alphabet import GAP_CODE, encode
from deepseqvae.cli import main
from deepseqvae.errors import AlignmentFormatError, DeepSeqVAEError

from conftest import write_truncated_gzip


def write(tmp_path, text: str, name: str = "aln.a2m"):
    path = tmp_path / name
    path.write_text(text)
    return path


def rows(aln: Alignment) -> list[str]:
    letters = "ACDEFGHIKLMNPQRSTVWY-"
    return ["".join(letters[c] for c in r) for r in aln.codes]


# --- reading records ---------------------------------------------------------------------------


def test_iter_fasta_ids_stop_at_whitespace_and_lines_are_joined(tmp_path):
    path = write(tmp_path, "#A3M#\n>q desc here\nAC\nDE\n\n>hit\t12\t0.9\nA C-E\n")
    assert list(iter_fasta(path)) == [("q", "ACDE"), ("hit", "AC-E")]


# --- encodings and compression ------------------------------------------------------------------


def test_utf8_byte_order_mark_is_ignored(tmp_path):
    """A BOM before the first '>' (Windows editors write one) reads as if it were absent."""
    plain = read_alignment(write(tmp_path, A2M))
    path = tmp_path / "bom.a2m"
    path.write_bytes(b"\xef\xbb\xbf" + A2M.encode())
    assert next(iter_fasta(path)) == ("focus/10-15", "ACdEFG")  # the id has no '\ufeff'
    aln = read_alignment(path)
    assert aln.ids == plain.ids and aln.focus_id == "focus/10-15"
    assert aln.positions.tolist() == [10, 11, 13, 14, 15]  # the region is still parsed from the focus id
    assert rows(aln) == rows(plain)
    result = CliRunner().invoke(main, ["weights", str(path), "-o", str(tmp_path / "w.npy")])
    assert result.exit_code == 0, result.output
    assert f"Read 3 records from {path} (a2m); focus focus/10-15" in result.output


@pytest.mark.parametrize("name", ["aln.a2m.gz", "aln.A2M.GZ", "no_suffix"])
def test_gzip_alignment_recognised_by_its_magic_bytes(tmp_path, name):
    plain = read_alignment(write(tmp_path, A2M))
    path = tmp_path / name
    path.write_bytes(gzip.compress(b"\xef\xbb\xbf" + A2M.encode()))  # a BOM inside the gzip is dropped too
    aln = read_alignment(path)
    assert aln.fmt == "a2m" and aln.path == path
    assert aln.ids == plain.ids and aln.positions.tolist() == plain.positions.tolist()
    assert rows(aln) == rows(plain)
    result = CliRunner().invoke(main, ["weights", str(path), "-o", str(tmp_path / "w.npy")])
    assert result.exit_code == 0, result.output
    assert f"Read 3 records from {path} (a2m)" in result.output
    assert np.load(tmp_path / "w.npy").shape == (3,)


def test_plain_file_named_gz_is_read_as_text(tmp_path):
    aln = read_alignment(write(tmp_path, A2M, "aln.a2m.gz"))  # not compressed: the bytes decide
    assert aln.N == 3 and aln.focus_seq == "ACEFG"


# Equal row lengths: the suffix decides. As a3m, 'f' and 'g' are insertions; as a2m, 'g' is a residue.
A3M_EQUAL = ">q\nACDEf\n>h\nACDgE\n"


@pytest.mark.parametrize("name, fmt, hit", [("x.a3m.gz", "a3m", "ACDE"), ("x.a2m.gz", "a2m", "ACDG")])
def test_gzip_suffix_is_ignored_when_choosing_the_format(tmp_path, name, fmt, hit):
    path = tmp_path / name
    path.write_bytes(gzip.compress(A3M_EQUAL.encode()))
    aln = read_alignment(path)
    assert aln.fmt == fmt
    assert rows(aln) == ["ACDE", hit]
    assert aln.positions.tolist() == [1, 2, 3, 4]


def test_damaged_gzip_is_a_one_line_error(tmp_path):
    truncated = write_truncated_gzip(tmp_path / "cut.a2m.gz", A2M * 50)
    whole = gzip.compress(A2M.encode() * 50)
    with pytest.raises(AlignmentFormatError, match=r"cut\.a2m\.gz: cannot read alignment: truncated or damaged "
                                                   r"gzip data \(Compressed file ended") as info:
        read_alignment(truncated)
    assert "\n" not in str(info.value)
    garbled = tmp_path / "bad.a2m.gz"
    garbled.write_bytes(whole[:10] + bytes(b ^ 0xFF for b in whole[10:40]) + whole[40:])
    with pytest.raises(AlignmentFormatError, match=r"bad\.a2m\.gz: cannot read alignment: truncated or damaged gzip"):
        read_alignment(garbled)
    result = CliRunner().invoke(main, ["weights", str(truncated), "-o", str(tmp_path / "w.npy")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.startswith(f"Error: {truncated}: cannot read alignment: truncated or damaged gzip data")


# --- a2m ---------------------------------------------------------------------------------------

A2M = """\
>focus/10-15
ACdEFG
>s1
AC.EF-
>s2
aCkE.G
"""


def test_a2m_lowercase_and_dot_columns(tmp_path):
    aln = read_alignment(write(tmp_path, A2M))
    assert aln.fmt == "a2m"
    assert (aln.N, aln.L) == (3, 5)
    assert aln.ids == ("focus/10-15", "s1", "s2")
    assert aln.focus_id == "focus/10-15" and aln.focus_index == 0
    assert aln.focus_seq == "ACEFG"
    # residue numbers count the lowercase focus letter 'd' (residue 12), which is not modelled
    assert aln.positions.tolist() == [10, 11, 13, 14, 15]
    # '.' in a kept column becomes a gap; lowercase residues in kept columns are uppercased
    assert rows(aln) == ["ACEFG", "ACEF-", "ACE-G"]
    assert aln.codes.dtype == np.int8
    assert aln.codes[2, 3] == GAP_CODE
    np.testing.assert_array_equal(aln.focus_codes, encode("ACEFG"))
    assert aln.n_records == 3 and aln.n_dropped == 0


def test_columns_all_models_lowercase_focus_columns_same_numbering(tmp_path):
    path = write(tmp_path, A2M)
    aln = read_alignment(path, columns="all")
    assert aln.L == 6 and aln.focus_seq == "ACDEFG"
    assert aln.positions.tolist() == [10, 11, 12, 13, 14, 15]  # residue 12 ('d') is now modelled
    # lowercase residues are uppercased in every row and '.' is a gap
    assert rows(aln) == ["ACDEFG", "AC-EF-", "ACKE-G"]
    upper = read_alignment(path)
    assert upper.positions.tolist() == [10, 11, 13, 14, 15]
    assert AlignmentOptions(columns="all").read(path).options.columns == "all"
    with pytest.raises(AlignmentFormatError, match="unknown column choice 'some'"):
        read_alignment(path, columns="some")
    result = CliRunner().invoke(main, ["weights", str(path), "-o", str(tmp_path / "w.npy"), "--columns", "all"])
    assert result.exit_code == 0, result.output
    assert "L = 6 focus columns, residues 10-15" in result.output


def test_columns_recorded_in_the_checkpoint_and_reused(tmp_path):
    """--columns is an alignment option: the checkpoint records it and embed / sample read the same columns."""
    from deepseqvae.checkpoint import load_checkpoint
    from deepseqvae.latent import read_matching_alignment
    from deepseqvae.pipeline import train_file

    path, model = write(tmp_path, A2M), tmp_path / "all.pt"
    train_file(path, model, model_kind="independent", options=AlignmentOptions(columns="all"), device="cpu")
    ckpt = load_checkpoint(model)
    assert ckpt.info.alignment_options.columns == "all" and len(ckpt.info.focus_seq) == 6
    assert read_matching_alignment(path, ckpt, None).L == 6  # not told again
    assert AlignmentOptions.from_dict({}).columns == "uppercase"  # an older checkpoint: DeepSequence's columns


def test_column_mapping(tmp_path):
    aln = read_alignment(write(tmp_path, A2M))
    assert aln.column_of(13) == 2
    assert aln.position_to_column == {10: 0, 11: 1, 13: 2, 14: 3, 15: 4}
    assert aln.wt_residue(14) == "F"
    for residue in (9, 12, 16):  # before the region, a lowercase column, after the region
        with pytest.raises(PositionNotModelledError, match=f"residue {residue} is not a modelled column"):
            aln.column_of(residue)
    with pytest.raises(KeyError):  # also usable as a KeyError
        aln.column_of(12)
    assert isinstance(PositionNotModelledError("x"), DeepSeqVAEError)


def test_alignment_is_immutable(tmp_path):
    aln = read_alignment(write(tmp_path, A2M))
    with pytest.raises(dataclasses.FrozenInstanceError):
        aln.focus_id = "other"  # type: ignore[misc]
    with pytest.raises(ValueError):
        aln.codes[0, 0] = 3
    with pytest.raises(ValueError):
        aln.positions[0] = 3
    assert "N=3" in repr(aln) and "L=5" in repr(aln)


def test_focus_gaps_are_dropped_in_aligned_fasta(tmp_path):
    path = write(tmp_path, ">wt\nA-CD.E\n>s1\nAKCDLE\n", "aln.fasta")
    aln = read_alignment(path, fmt="fasta")
    assert aln.focus_seq == "ACDE"
    assert aln.positions.tolist() == [1, 2, 3, 4]  # gaps are not residues
    assert rows(aln) == ["ACDE", "ACDE"]


# --- a3m ---------------------------------------------------------------------------------------

A3M = """\
#101\t1
>query
ACDEF
>hit1\t120\t0.91\t1.2E-30
AkkCD-F
>hit2\t99\t0.50
A.CDEF
>hit3
-CmD..EF
"""


def test_a3m_insertions_removed(tmp_path):
    aln = read_alignment(write(tmp_path, A3M, "x.a3m"))
    assert aln.fmt == "a3m"
    assert aln.ids == ("query", "hit1", "hit2", "hit3")
    assert rows(aln) == ["ACDEF", "ACD-F", "ACDEF", "-CDEF"]
    assert aln.positions.tolist() == [1, 2, 3, 4, 5]  # no region: numbering from 1


def test_a3m_detected_without_extension(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="deepseqvae.alignment"):
        aln = read_alignment(write(tmp_path, A3M, "x.txt"))
    assert aln.fmt == "a3m"
    assert aln.N == 4
    assert "x.txt: rows differ in length (3 of 4 records are not 5 characters long, the first 'hit1' with 7): read " \
           "as an a3m" in caplog.text


def test_an_a2m_with_one_malformed_row_is_said_not_silently_read_as_a3m(tmp_path, caplog):
    # one stray lowercase letter made the whole a2m an a3m: with --columns all its lowercase focus column vanished
    # without a word (BLAT_ECOLX: 263 columns became 253)
    broken = ">focus/10-15\nACdEFG\n>s1\nAC.EFy-\n>s2\nAC.E-G\n"
    with caplog.at_level(logging.WARNING, logger="deepseqvae.alignment"):
        aln = read_alignment(write(tmp_path, broken), columns="all")
    assert aln.fmt == "a3m" and aln.L == 5
    assert "aln.a2m: rows differ in length (1 of 3 records are not 6 characters long, the first 's1' with 7): " \
           "read as an a3m, lowercase letters and '.' removed from every row as insertions (meant as an a2m, its " \
           "rows must be of one length: --msa-format a2m names the first that is not)" in caplog.text
    assert "aln.a2m: --columns all: the focus's 1 lowercase residues are a3m insertions here, removed with every " \
           "row's, so they are not modelled" in caplog.text
    with pytest.raises(AlignmentFormatError, match="record 's1' has 7 aligned columns but 'focus/10-15' has 6"):
        read_alignment(write(tmp_path, broken), fmt="a2m")


def test_a3m_repeated_hits_are_kept_as_rows(tmp_path, caplog):
    text = ">q\nACDE\n>hit\tx\nACDE\n>hit\ty\nA-DE\n"
    with caplog.at_level(logging.WARNING, logger="deepseqvae.alignment"):
        aln = read_alignment(write(tmp_path, text, "r.a3m"))
    assert aln.ids == ("q", "hit", "hit")
    assert "repeat an earlier id" in caplog.text and "'hit'" in caplog.text


def test_colabfold_nul_bytes_are_removed_and_its_repeated_query_counts_once(tmp_path, caplog):
    # ColabFold's MMseqs2 server starts each database's block with a NUL byte before its query again; that copy
    # was a training row (the wild type counted twice) called a "separate hit", and --focus 101 was "ambiguous"
    text = "#4\t1\n>101\nACDE\n>hit1\tx\nAcCDE\n\x00>101\nACDE\n>hit2\nA-DE\n\x00"
    path = tmp_path / "c.a3m"
    path.write_bytes(text.encode())
    for focus in (None, "101"):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="deepseqvae.alignment"):
            aln = read_alignment(path, focus=focus)
        assert aln.ids == ("101", "hit1", "hit2") and aln.focus_index == 0
        assert rows(aln) == ["ACDE", "ACDE", "A-DE"]
        assert aln.n_records == 4 and aln.n_dropped == aln.n_dropped_repeats == 1
        assert "c.a3m: 1 later record(s) repeat the focus '101' (its id and sequence" in caplog.text
        assert "separate hits" not in caplog.text
    assert "1 repeating the focus record (its id and sequence)" in aln.summary()
    assert aln.drop_reasons() == ["1 repeating the focus record (its id and sequence)"]  # embed's count adds up
    # copies that differ are still two records: the focus is ambiguous
    path.write_bytes(text.replace("\x00>101\nACDE", "\x00>101\nAC-E").encode())
    with pytest.raises(AlignmentFormatError, match="focus record '101' is ambiguous: 2 records have this id"):
        read_alignment(path, focus="101")


def test_hhsuite_annotation_records_are_skipped_with_a_warning(tmp_path, caplog):
    text = (">q_consensus\nACDE\n>ss_pred\nCCHH\n>ss_conf\n9876\n>q\nACDE\n>Consensus\nacde\n>hit\nA-DE\n"
            ">hit_consensus\nACDE\n")
    with caplog.at_level(logging.WARNING, logger="deepseqvae.alignment"):
        aln = read_alignment(write(tmp_path, text, "h.a3m"))
    # the first sequence is the focus, not the consensus or ss_pred; "_consensus" is special only as the first record
    assert aln.ids == ("q", "hit", "hit_consensus") and aln.focus_id == "q"
    assert "h.a3m: skipped 4 HH-suite annotation record(s) (q_consensus, ss_pred, ss_conf, Consensus): they are " \
        "not sequences" in caplog.text
    with pytest.raises(AlignmentFormatError, match="ss_pred"):
        read_alignment(write(tmp_path, text, "h.a3m"), focus="ss_pred")
    with pytest.raises(AlignmentFormatError, match=r"o.a3m: no sequences, only HH-suite annotation records "
                                                   r"\(ss_pred, ss_conf\)"):
        read_alignment(write(tmp_path, ">ss_pred\nCCHH\n>ss_conf\n9876\n", "o.a3m"))


def test_a3m_focus_lowercase_letters_still_count_as_residues(tmp_path):
    # the focus (not the query) has an insertion 'k' relative to the query
    text = ">q\nACDE\n>f/5-9\nACkDE\n"
    aln = read_alignment(write(tmp_path, text, "f.a3m"), focus="f/5-9")
    assert aln.focus_seq == "ACDE"
    assert aln.positions.tolist() == [5, 6, 8, 9]


# --- numbering -----------------------------------------------------------------------------------


def test_region_header_numbering_and_first_index(tmp_path):
    path = write(tmp_path, ">P/24-29\nhpETLV\n>s\nAAETLV\n")
    assert read_alignment(path).positions.tolist() == [26, 27, 28, 29]
    assert read_alignment(path, first_index=1).positions.tolist() == [3, 4, 5, 6]
    assert read_alignment(path, first_index=-2).positions.tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("focus_id", ["a/abc-def", "a/12", "a/30-10", "a/1-x"])
def test_malformed_region_is_an_error_unless_first_index_is_given(tmp_path, focus_id):
    path = write(tmp_path, f">{focus_id}\nACDE\n>s\nACDE\n")
    with pytest.raises(AlignmentFormatError, match=rf"{path}: focus record '{focus_id}' has a malformed region.*"
                                                    r"--first-index"):
        read_alignment(path)
    assert read_alignment(path, first_index=7).positions.tolist() == [7, 8, 9, 10]
    r = CliRunner().invoke(main, ["weights", str(path), "-o", str(tmp_path / "w.npy")])
    assert r.exit_code == 2 and r.output.count("\n") == 1 and "malformed region" in r.output
    assert not (tmp_path / "w.npy").exists()


def test_id_with_a_slash_but_no_region_is_numbered_from_one(tmp_path):
    assert read_alignment(write(tmp_path, ">sp|P1|X/name\nACDE\n>s\nACDE\n")).positions.tolist() == [1, 2, 3, 4]


def test_region_length_mismatch_warns(tmp_path, caplog):
    path = write(tmp_path, ">P/24-40\nACDE\n>s\nACDE\n")
    with caplog.at_level(logging.WARNING, logger="deepseqvae.alignment"):
        aln = read_alignment(path)
    assert aln.positions.tolist() == [24, 25, 26, 27]
    assert "claims residues 24-40" in caplog.text


def test_focus_by_name(tmp_path):
    text = ">first/1-5\nACDEF\n>second/101-104\n-cDEF\n>third\nACDEF\n"
    aln = read_alignment(write(tmp_path, text), focus="second/101-104")
    assert aln.focus_id == "second/101-104" and aln.focus_index == 1
    assert aln.focus_seq == "DEF"  # uppercase columns of the chosen focus
    assert aln.positions.tolist() == [102, 103, 104]
    assert rows(aln) == ["DEF", "DEF", "DEF"]
    assert read_alignment(write(tmp_path, text), focus=">third").focus_index == 2


# --- non-standard residues ----------------------------------------------------------------------


def test_nonstandard_sequences_dropped_and_counted(tmp_path):
    text = (">wt\nACdEF\n"
            ">x_kept\nACxEF\n"      # X in a lowercase (not modelled) column: kept
            ">x_drop\nAXdEF\n"      # X in a kept column
            ">b_lower\nAbdEF\n"     # lowercase b in a kept column
            ">z\nACdEZ\n"
            ">stop\nAC*EF\n"      # a stop (translated sequence) in a lowercase column: kept
            ">stop_drop\nACdE*\n"  # ... and in a kept column: dropped, as DeepSequence and EVE skip it
            ">ok\nA-.EF\n")
    aln = read_alignment(write(tmp_path, text))
    assert aln.ids == ("wt", "x_kept", "stop", "ok")
    assert aln.n_dropped_nonstandard == 4
    assert aln.n_records == 8


# --- filters -----------------------------------------------------------------------------------

FILTER = """\
>wt
ACDEFGHIKL
>g0
ACDEFGHIKL
>g50
ACDEF-----
>g60
ACDE------
>g90
A---------
>c
ACDEFGHIK-
"""


def test_filters_off_by_default(tmp_path):
    aln = read_alignment(write(tmp_path, FILTER))
    assert aln.N == 6 and aln.L == 10
    assert aln.n_dropped_gaps == 0 and aln.n_columns_dropped_coverage == 0


def test_max_gap_fraction_keeps_equal(tmp_path):
    aln = read_alignment(write(tmp_path, FILTER), max_gap_fraction=0.5)
    assert aln.ids == ("wt", "g0", "g50", "c")  # 0.5 kept (<=), 0.6 and 0.9 dropped
    assert aln.n_dropped_gaps == 2
    assert "2 with gap fraction > 0.5" in aln.summary()


def test_min_column_coverage_after_gap_filter(tmp_path):
    aln = read_alignment(write(tmp_path, FILTER), max_gap_fraction=0.5, min_column_coverage=0.75)
    # remaining 4 sequences: columns 1-5 coverage 4/4, 6-9 3/4 (kept: 0.75 >= 0.75), 10 2/4 dropped
    assert aln.L == 9 and aln.n_columns_dropped_coverage == 1
    assert aln.positions.tolist() == list(range(1, 10))
    assert aln.focus_seq == "ACDEFGHIK"
    aln = read_alignment(write(tmp_path, FILTER), max_gap_fraction=0.5, min_column_coverage=0.76)
    assert aln.L == 5 and aln.n_columns_dropped_coverage == 5


def test_filter_values_validated(tmp_path):
    with pytest.raises(AlignmentFormatError, match="max_gap_fraction must be a number between 0 and 1"):
        read_alignment(write(tmp_path, FILTER), max_gap_fraction=1.5)
    with pytest.raises(AlignmentFormatError, match="min_column_coverage"):
        read_alignment(write(tmp_path, FILTER), min_column_coverage=-0.1)


def test_alignment_options_round_trip(tmp_path):
    opts = AlignmentOptions(focus="c", first_index=5, fmt="a2m")
    aln = opts.read(write(tmp_path, FILTER))
    assert aln.focus_id == "c" and aln.positions[0] == 5 and aln.L == 9
    assert aln.options == opts  # the alignment remembers how it was read (a checkpoint records it)
    # Options given later override only the fields they set.
    assert opts.updated(AlignmentOptions(max_gap_fraction=0.5)) == AlignmentOptions(
        focus="c", first_index=5, fmt="a2m", max_gap_fraction=0.5)
    assert AlignmentOptions.from_dict({"focus": "c", "unknown": 1}) == AlignmentOptions(focus="c")


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, match", [
    ("", r"aln\.a2m: file is empty"),
    ("\n  \n\n", r"aln\.a2m: file is empty"),
    ("# only a comment\n", r"aln\.a2m: no records"),
    ("ACDE\n>s\nACDE\n", r"aln\.a2m: not a FASTA/a2m/a3m file: line 1 does not start with '>'"),
    ("\n\nsome text\n", r"line 3 does not start with '>'"),
    (">\nACDE\n", r"record at line 1 has an empty name"),
    (">wt\nACDE\n>s1\nACDE\n>s1\nAC-E\n",
     r"aln\.a2m: duplicate record id 's1' \(records 2 and 3\)"),
    (">wt\nACDE\n>s1\nACDE\n>s2\nACD\n", r"record 's2' has 3 columns but 'wt' has 4"),
    (">wt\nACDE\n>s1\nA1DE\n", r"record 's1' has invalid character '1'"),
    (">wt\nACXE\n>s1\nACDE\n", r"focus record 'wt' has non-standard residue 'X' at residue 3"),
    (">wt\nAC*E\n>s1\nACDE\n", r"focus record 'wt' has invalid character '\*'"),
    (">wt\nacde\n>s1\nACDE\n", r"has no uppercase \(match\) columns; nothing to model \(--columns all "),
    (">wt\nACDE\n>s1\nACXE\n>s2\nBCDE\n", r"every sequence other than the focus 'wt' was filtered out \(2 with "
     r"non-standard residues \(B, J, O, U, X, Z or '\*'\) in a modelled column\)$"),
    ("# STOCKHOLM 1.0\n\ns1 ACDE\n//\n", r"aln\.a2m: a Stockholm alignment, not FASTA/a2m/a3m: convert it, e\.g\. "
     r"esl-reformat a2m \S*aln\.a2m > \S*aln\.converted\.a2m \(HMMER\)"),  # never onto itself
    ("CLUSTAL W (1.83) multiple sequence alignment\n\ns1 ACDE\n", r"line 1 does not start with '>' \('CLUSTAL W"
     r".*'\): a Clustal alignment; convert it to a2m or aligned FASTA"),
    (">wt\nACDE*\n>s1\nACDE*\n", r"focus record 'wt' has invalid character '\*' at aligned column 5; a stop symbol "
     r"ending the sequence \(translated ORFs\): remove the trailing '\*' from every record"),
    (">wt\n>s1\n", r"focus record 'wt' has no residues \(an empty or all-gap sequence\); nothing to model"),
    (">wt\nACUE\n>s1\nACDE\n", r"non-standard residue 'U' at residue 3; .* \(selenocysteine: write it as C"),
])
def test_errors_name_file_and_record(tmp_path, text, match):
    with pytest.raises(AlignmentFormatError, match=match) as info:
        read_alignment(write(tmp_path, text))
    assert "\n" not in str(info.value)


def test_error_lengths_in_explicit_a2m_mode(tmp_path):
    path = write(tmp_path, A3M, "x.a3m")
    with pytest.raises(AlignmentFormatError, match=r"record 'hit1' has 7 aligned columns but 'query' has 5"):
        read_alignment(path, fmt="a2m")
    bad = write(tmp_path, ">q\nACDE\n>h\nACkkDEF\n", "bad.a3m")
    with pytest.raises(AlignmentFormatError, match=r"record 'h' has 5 match columns after removing a3m "
                                                   r"insertions but 'q' has 4"):
        read_alignment(bad)


def test_error_lengths_auto_not_a3m_either(tmp_path):
    with pytest.raises(AlignmentFormatError, match=r"record 's' has 6 columns but 'wt' has 4 \(not an a3m"):
        read_alignment(write(tmp_path, ">wt\nACDE\n>s\nACDEFG\n"))


def test_error_focus_not_found_and_missing_file(tmp_path):
    path = write(tmp_path, A2M)
    with pytest.raises(AlignmentFormatError, match=r"focus record 'nope' not found among 3 records \(first record: "
                                                   r"'focus/10-15'\)$"):
        read_alignment(path, focus="nope")
    # the id without its region: the one record it starts is suggested
    with pytest.raises(AlignmentFormatError, match=r"focus record 'focus' not found among 3 records .*; did you mean "
                                                   r"'focus/10-15' \(ids include the /start-end region\)\?$"):
        read_alignment(path, focus="focus")
    with pytest.raises(AlignmentFormatError, match=r"missing\.a2m: cannot read alignment"):
        read_alignment(tmp_path / "missing.a2m")
    with pytest.raises(AlignmentFormatError, match="cannot read alignment"):
        read_alignment(tmp_path)  # a directory
    with pytest.raises(AlignmentFormatError, match="unknown alignment format"):
        read_alignment(path, fmt="stockholm")  # type: ignore[arg-type]


def test_error_ambiguous_focus_in_a3m(tmp_path):
    path = write(tmp_path, ">q\nACDE\n>hit\nACDE\n>hit\nA-DE\n", "r.a3m")
    with pytest.raises(AlignmentFormatError, match="focus record 'hit' is ambiguous"):
        read_alignment(path, focus="hit")


def test_error_every_column_dropped(tmp_path):
    path = write(tmp_path, ">wt\nACDE\n>s1\n----\n>s2\n----\n")
    with pytest.raises(AlignmentFormatError, match="every column would be dropped"):
        read_alignment(path, min_column_coverage=0.9)


@pytest.mark.parametrize("text, args, message", [
    (">wt\nACDE\n>s1\nACDE\n>s1\nAC-E\n", [], "duplicate record id 's1'"),
    (">wt\nACDE\n>s\nACD\n", ["--msa-format", "a2m"], "record 's' has 3 aligned columns"),
    ("not fasta\n", [], "does not start with '>'"),
    (">wt\nACDE\n", ["--focus", "xyz"], "focus record 'xyz' not found"),
])
def test_cli_errors_exit_2_one_line(tmp_path, text, args, message):
    path = write(tmp_path, text)
    result = CliRunner().invoke(main, ["weights", str(path), "-o", str(tmp_path / "w.npy"), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ")
    assert not (tmp_path / "w.npy").exists()


def test_cli_missing_file_exit_2(tmp_path):
    result = CliRunner().invoke(main, ["weights", str(tmp_path / "none.a2m")])
    assert result.exit_code == 2
    assert result.output.startswith("Error: ") and "none.a2m: cannot read alignment" in result.output


# --- real data -----------------------------------------------------------------------------------


@pytest.mark.integration
def test_blat_matches_deepsequence(shared_data):
    aln = read_alignment(shared_data / "BLAT_ECOLX" / "msa.a2m")
    assert (aln.N, aln.L) == (8355, 253)
    assert aln.n_records == 8403 and aln.n_dropped_nonstandard == 48
    assert aln.focus_id == "BLAT_ECOLX/24-286" and aln.ids[0] == aln.focus_id
    expected = [p for p in range(29, 284) if p not in (56, 238)]  # lowercase: 24-28, 56, 238, 284-286
    assert aln.positions.tolist() == expected
    assert aln.focus_seq.startswith("VKVKDAE")  # residue 29 onwards ("hpetlVKVKDAE...")
    assert aln.wt_residue(29) == "V"
    with pytest.raises(PositionNotModelledError):
        aln.column_of(56)


@pytest.mark.integration
def test_pten_and_gfp_counts(shared_data):
    pten = read_alignment(shared_data / "PTEN_HUMAN" / "msa.a2m")
    assert (pten.N, pten.L) == (1179, 387)
    gfp = read_alignment(shared_data / "GFP_AEQVI" / "msa.a2m")
    assert (gfp.N, gfp.L) == (380, 238)
    assert gfp.positions.tolist() == list(range(1, 239))
    assert gfp.wt_residue(64) == "F"


@pytest.mark.integration
def test_gfp_colabfold_a3m(shared_data):
    aln = read_alignment(shared_data / "GFP_AEQVI" / "msa_alt_GFP_AEQVI_Sarkisyan_2016.a3m")
    assert aln.fmt == "a3m" and aln.n_records == 201
    assert aln.focus_id == "GFP_AEQVI_Sarkisyan_2016"
    assert aln.L == 238 and aln.positions[0] == 1 and aln.positions[-1] == 238
    assert aln.wt_residue(64) == "L"  # the Sarkisyan wild type (F64L)
    assert aln.N + aln.n_dropped_nonstandard == 201


@pytest.mark.parametrize("compress, name, command", [("bz2", "bzip2", "bunzip2 -k"), ("lzma", "xz", "unxz -k")])
def test_other_compressions_are_named_with_how_to_decompress(tmp_path, compress, name, command):
    # they read as binary garbage: "line 1 does not start with '>' ('BZh91AY&SY...')"
    import importlib

    path = tmp_path / f"aln.a2m.{name}"
    path.write_bytes(importlib.import_module(compress).compress(A2M.encode()))
    with pytest.raises(AlignmentFormatError, match=rf"aln.a2m.{name}: cannot read alignment: {name}-compressed, and "
                                                   rf"only gzip is read: decompress it first \({command} .*aln.a2m"):
        read_alignment(path)


def test_a_utf16_alignment_reads_as_its_text(tmp_path):
    # Notepad's "Unicode" save: "line 1 does not start with '>' ('\ufffd\ufffd>focus')"
    plain = read_alignment(write(tmp_path, A2M))
    for encoding in ("utf-16", "utf-16-be"):
        path = tmp_path / f"{encoding}.a2m"
        path.write_bytes((b"\xfe\xff" if encoding == "utf-16-be" else b"") + A2M.encode(encoding))
        aln = read_alignment(path)
        assert aln.ids == plain.ids and np.array_equal(aln.codes, plain.codes)


@pytest.mark.parametrize("row, hint", [
    ("ACDEFG*", "'s1' ends with a stop symbol '*' (translated ORFs): remove the trailing '*' from every record"),
    ("1 ACDEFG", "'s1' holds '1' at character 1 (sequence numbering?), which no aligned row may"),
    ("ACD\u200bEFG", r"'s1' holds '\u200b' at character 4 (an invisible character), which no aligned row may"),
    ("ACDEFG#note", "'s1' holds '#' at character 7 (a comment line inside the alignment?), which no aligned row may"),
])
def test_rows_of_another_length_say_what_makes_them_so(tmp_path, row, hint):
    # "record 's1' has 61 columns but 'focus' has 60" named no cause: a stop on some records only, GenBank-style
    # numbering, a zero-width space, a '#' line glued onto the record above
    text = f">focus\nACDEFG\n>s1\n{row}\n>s2\nACDEF-\n"
    with pytest.raises(AlignmentFormatError) as info:
        read_alignment(write(tmp_path, text, "x.fasta"))
    assert str(info.value).endswith(hint), str(info.value)


def test_a_dash_for_standard_input_is_answered_with_dev_stdin(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(AlignmentFormatError, match=r"^-: cannot read alignment: No such file or directory; standard "
                                                   r"input is read as /dev/stdin$"):
        read_alignment("-")
