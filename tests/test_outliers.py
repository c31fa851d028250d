"""Dropping focus neighbours that change the columns their neighbourhood keeps invariant (deepseqvae.outliers)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from click.testing import CliRunner

from deepseqvae.alignment import AlignmentOptions, read_alignment
from deepseqvae.alphabet import ALPHABET, encode
from deepseqvae.checkpoint import load_checkpoint
from deepseqvae.cli import main
from deepseqvae.outliers import drop_outlier_records, drop_outliers, invariant_changes

FOCUS = "ACDEFGHIKL"
# rows: the focus, four functional neighbours, a pseudogene-like neighbour, a distant homolog
ROWS = {
    "focus": FOCUS,
    "n1": "ACDEFGHIKM",      # changes column 9 (variable among the neighbours)
    "n2": "ACDEFGHIRM",      # changes columns 8, 9
    "n3": "ACDEFGHIKM",
    "n4": "ACDEFGHIKL",
    "pseudo": "SCDWFGYIKM",  # changes columns 0, 3, 6 (invariant elsewhere) and 9: identity 0.6
    "far": "SSSWWGYYKM",     # identity 0.2: outside the neighbourhood, its changes not counted
}


def codes_of(rows: dict[str, str]) -> np.ndarray:
    return np.stack([encode(s) for s in rows.values()]).astype(np.int8)


def test_invariant_changes_counts_by_hand():
    codes = codes_of(ROWS)
    weights = np.ones(len(ROWS))
    changes, neighbour = invariant_changes(codes, 0, weights)
    # neighbourhood (identity >= 0.5): focus, n1-n4, pseudo (6 rows). Column 9: L held by 2 of 6 -> not invariant;
    # column 8: K by 5 of 6 = 0.83 < 0.95 -> not invariant; columns 0, 3, 6: 5 of 6 -> not invariant either at 0.95.
    assert neighbour.tolist() == [True, True, True, True, True, True, False]
    assert changes.tolist() == [0, 0, 0, 0, 0, 0, 0]
    # at a share of 0.8, columns 0-8 are invariant (column 8: 5/6; columns 0, 3, 6: 5/6); 9 is not (2/6)
    changes, _ = invariant_changes(codes, 0, weights, invariant=0.8)
    assert changes.tolist() == [0, 0, 1, 0, 0, 3, 0]
    # the weights decide the shares: a heavy pseudo-row makes its own residues common, so nothing is invariant there
    heavy = weights.copy()
    heavy[5] = 10.0
    changes, _ = invariant_changes(codes, 0, heavy, invariant=0.8)
    assert changes[5] == 0 and changes[2] == 1  # column 8 (K held by 14 of 15) stays invariant


def test_gaps_are_not_changes_and_identity_uses_covered_columns():
    rows = dict(ROWS, gappy="-CDEF-----")  # identity 1.0 over its 4 covered columns, no residue changed
    codes = codes_of(rows)
    changes, neighbour = invariant_changes(codes, 0, np.ones(len(rows)), invariant=0.8)
    assert neighbour[-1] and changes[-1] == 0


def write_a2m(path, rows: dict[str, str]):
    path.write_text("".join(f">{name}\n{seq}\n" for name, seq in rows.items()))
    return path


def test_drop_outliers_keeps_the_focus_and_records_the_option(tmp_path):
    rows = {"first": ROWS["n4"], **{k: v for k, v in ROWS.items() if k != "n4"}}  # the focus is not row 0
    aln = read_alignment(write_a2m(tmp_path / "toy.a2m", rows), focus="focus")
    weights = np.ones(aln.N)
    kept, keep, dropped = drop_outliers(aln, weights, 3, invariant=0.8)
    assert dropped == [("pseudo", 3)]
    assert keep.tolist() == [name != "pseudo" for name in rows]
    assert kept.N == aln.N - 1 and "pseudo" not in kept.ids
    assert kept.ids[kept.focus_index] == "focus" and kept.focus_seq == FOCUS
    assert np.array_equal(kept.codes, aln.codes[keep])
    assert kept.n_dropped_outliers == 1 and kept.n_dropped == aln.n_dropped + 1
    assert kept.options.max_invariant_changes == 3
    assert "1 focus neighbours changing >= 3 of its neighbourhood's invariant columns" in kept.summary()
    # the focus itself is never dropped, whatever the threshold; nothing to drop leaves the rows as they were
    kept, keep, dropped = drop_outliers(aln, weights, 4, invariant=0.8)
    assert dropped == [] and keep.all() and kept.N == aln.N and kept.options.max_invariant_changes == 4
    with pytest.raises(ValueError, match="at least 1"):
        drop_outliers(aln, weights, 0)


def test_reading_ignores_the_training_filter(tmp_path):
    path = write_a2m(tmp_path / "toy.a2m", ROWS)
    plain = AlignmentOptions().read(path)
    with_filter = AlignmentOptions(max_invariant_changes=2).read(path)  # embed/sample re-read a model's alignment
    assert with_filter.N == plain.N and np.array_equal(with_filter.codes, plain.codes)


def test_more_than_20_dropped_are_all_listed_at_debug_level(tmp_path, caplog):
    # 60 neighbours keep the focus's first 14 residues; 22 copies of one pseudogene-like record (one sequence
    # weight together, so those columns stay invariant) change 5 of them
    focus = "ACDEFGHIKLMNPQRSTVWY"
    rng = np.random.default_rng(1)
    rows = {"focus": focus, **{f"n{i}": focus[:14] + "".join(ALPHABET[k] for k in rng.integers(20, size=6))
                               for i in range(60)}}
    pseudo = "".join("W" if j in (0, 3, 6, 9, 12) else a for j, a in enumerate(focus))
    rows.update({f"p{i:02d}": pseudo for i in range(22)})
    aln = read_alignment(write_a2m(tmp_path / "fam.a2m", rows))
    from deepseqvae.weights import compute_weights

    with caplog.at_level(logging.DEBUG, logger="deepseqvae"):
        kept, _ = drop_outlier_records(aln, compute_weights(aln.codes, 0.2), 5, 0.2, "cpu")
    assert kept.n_dropped_outliers == 22
    warning = next(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "dropped 22 focus neighbours" in warning and warning.endswith("and 2 more")
    listed = next(r.getMessage() for r in caplog.records if "every dropped focus neighbour" in r.getMessage())
    assert all(f"p{i:02d} (5)" in listed for i in range(22))


def test_train_drops_logs_and_records(tmp_path, caplog):
    # 30 functional neighbours: the focus's first 14 residues, 6 random ones (pairwise < 80 % identical, so each
    # weighs 1), and a pseudogene-like record changing 5 of those 14 columns (each held by 31 of 32 weight: invariant)
    rng = np.random.default_rng(0)
    focus = "ACDEFGHIKLMNPQRSTVWY"
    rows = {"focus": focus}
    for i in range(30):
        rows[f"n{i}"] = focus[:14] + "".join(ALPHABET[k] for k in rng.integers(20, size=6))
    rows["pseudo"] = "".join("W" if j in (0, 3, 6, 9, 12) else a for j, a in enumerate(focus))
    msa = write_a2m(tmp_path / "fam.a2m", rows)
    out = tmp_path / "si.pt"
    with caplog.at_level(logging.WARNING, logger="deepseqvae"):
        result = CliRunner().invoke(main, ["train", str(msa), "--model", "independent", "-o", str(out),
                                           "--max-invariant-changes", "5", "--no-progress", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "dropped 1 focus neighbours changing >= 5" in caplog.text and "pseudo (5)" in caplog.text
    assert "weight 1.00 of Neff 32.0" in caplog.text
    ckpt = load_checkpoint(out)
    assert ckpt.info.n_seqs == len(rows) - 1 and ckpt.info.neff == pytest.approx(31.0)  # weights computed again
    assert ckpt.info.alignment_options.max_invariant_changes == 5
    # one change fewer keeps it: the threshold is "at least K"
    result = CliRunner().invoke(main, ["train", str(msa), "--model", "independent", "-o", str(out),
                                       "--max-invariant-changes", "6", "--no-progress", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert load_checkpoint(out).info.n_seqs == len(rows)
