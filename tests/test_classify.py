"""EVE-style classification: the mixture, the entropy thresholds, labels with a status per row, the command."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from deepseqvae.classify import (
    BENIGN,
    EVE_THRESHOLDS,
    MIN_SEPARATION,
    PATHOGENIC,
    RETAINED_DRIFT,
    UNCERTAIN,
    Classification,
    Mixture,
    ScanScores,
    assign_classes,
    auc,
    binary_entropy,
    classify_scores,
    evaluate,
    fit_mixture,
    fit_prior,
    load_prior,
    match_labels,
    pathogenicity,
    read_labels,
    read_scan,
    report_markdown,
    save_prior,
    uncertainty_thresholds,
)
from deepseqvae.cli import main
from deepseqvae.errors import ClassifyError

AA = "ACDEFGHIKLMNPQRSTVWY"


def _h(p: float) -> float:
    """Binary entropy written out, for the hand computations."""
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


# --------------------------------------------------------------------------------------------
# The mixture
# --------------------------------------------------------------------------------------------


def test_fit_mixture_recovers_two_known_gaussians():
    rng = np.random.default_rng(1)
    n = 6000
    benign = rng.normal(-1.0, 0.8, size=int(0.7 * n))      # weight 0.7, mean −1, sd 0.8
    pathogenic = rng.normal(5.0, 1.5, size=int(0.3 * n))   # weight 0.3, mean 5, sd 1.5
    x = rng.permutation(np.concatenate([benign, pathogenic]))
    m = fit_mixture(x, n_init=10, seed=0)
    assert m.means == pytest.approx((-1.0, 5.0), abs=0.08)
    assert m.weights == pytest.approx((0.7, 0.3), abs=0.015)
    assert np.sqrt(m.variances) == pytest.approx((0.8, 1.5), abs=0.06)
    assert m.n_fitted == n and m.converged
    # pathogenic = the component with the higher evolutionary index, whatever order sklearn found
    assert m.posterior(np.array([5.0]))[0] > 0.99 and m.posterior(np.array([-1.0]))[0] < 0.01
    # seeded: the same seed gives the same numbers
    assert fit_mixture(x, n_init=10, seed=0) == m


def test_fit_mixture_from_a_prior_and_bad_input():
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.normal(0, 1, 3000), rng.normal(6, 1, 1000)])
    start = Mixture(weights=(0.5, 0.5), means=(1.0, 5.0), variances=(2.0, 2.0))
    m = fit_mixture(x, init=start)
    assert m.means == pytest.approx((0.0, 6.0), abs=0.1) and m.weights == pytest.approx((0.75, 0.25), abs=0.02)
    with pytest.raises(ClassifyError, match="two distinct"):
        fit_mixture(np.ones(10))
    with pytest.raises(ClassifyError, match="not finite"):
        fit_mixture(np.array([1.0, 2.0, np.nan]))


def test_a_mixture_of_too_few_scores_or_of_outliers_is_an_error():
    # two or three scores, or one mode with an outlier, were "classified" with D = 1000 and P = 1 everywhere
    with pytest.raises(ClassifyError, match=r"^scan\.csv: 3 scores are too few for a mixture of two classes \(at "
                                            r"least 20; EVE fits every single mutant"):
        fit_mixture(np.array([0.1, 2.0, 5.0]), source="scan.csv")
    x = np.concatenate([np.full(379, 1.0), [9.0]])
    with pytest.raises(ClassifyError, match=r"the mixture's pathogenic component holds 1\.0 of the 380 variants \(at "
                                            r"its mean 9\): the scores are one mode and outliers"):
        fit_mixture(x)
    rng = np.random.default_rng(3)  # 12 variants in the smaller class: enough
    m = fit_mixture(np.concatenate([rng.normal(0, 1, 300), rng.normal(8, 1, 12)]))
    assert m.weights[1] * 312 == pytest.approx(12, abs=0.5)


def test_a_partial_scan_is_warned_about(tmp_path, caplog):
    frame = _write_scan(tmp_path / "scan.csv")
    frame.iloc[:40].to_csv(tmp_path / "part.csv", index=False)
    with caplog.at_level(logging.WARNING, logger="deepseqvae"):
        read_scan(tmp_path / "scan.csv")
    assert "short of all 19" not in caplog.text
    with caplog.at_level(logging.WARNING, logger="deepseqvae"):
        read_scan(tmp_path / "part.csv")
    assert "part.csv: 40 single mutants at 3 positions, 17 substitutions short of all 19 at each: the mixture is " \
           "fitted to the variants given" in caplog.text


def test_posterior_and_mixing_by_hand():
    m = Mixture(weights=(0.5, 0.5), means=(0.0, 2.0), variances=(1.0, 1.0))
    # equal weights and variances: 0.5 halfway; at x = 2 the odds are N(2;2,1)/N(2;0,1) = e^2
    assert m.posterior(np.array([1.0, 2.0])) == pytest.approx([0.5, 1 / (1 + math.exp(-2))], rel=1e-12)
    m2 = Mixture(weights=(0.8, 0.2), means=(0.0, 3.0), variances=(1.0, 4.0))
    x = 2.0
    b = 0.8 * math.exp(-0.5 * x**2) / math.sqrt(2 * math.pi)
    p = 0.2 * math.exp(-0.5 * (x - 3) ** 2 / 4) / math.sqrt(2 * math.pi * 4)
    assert m2.posterior(np.array([x]))[0] == pytest.approx(p / (p + b), rel=1e-12)
    assert m2.component_densities(np.array([x]))[0] == pytest.approx([b, p], rel=1e-12)
    # EVE's two-level score: 0.3 · P_protein + 0.7 · P_pooled
    mixed = pathogenicity(np.array([x]), m2, prior=m, protein_weight=0.3)[0]
    assert mixed == pytest.approx(0.3 * p / (p + b) + 0.7 / (1 + math.exp(-2)), rel=1e-12)


def test_monotone_posterior_by_hand():
    m = Mixture(weights=(0.5, 0.5), means=(0.0, 3.0), variances=(1.0, 4.0))
    # turning point of the log-odds: (0/1 − 3/4) / (1/1 − 1/4) = −1, a minimum (the pathogenic variance is larger)
    lo, hi = m.monotone_range()
    assert lo == pytest.approx(-1.0) and hi == math.inf
    raw = m.posterior(np.array([-5.0, -1.0]))
    assert raw[0] > raw[1]  # EVE's raw posterior rises again far below the benign mean
    mono = m.posterior(np.array([-5.0, -1.0, 2.0]), monotone=True)
    assert mono[:2] == pytest.approx([raw[1], raw[1]], rel=1e-12)
    assert mono[2] == pytest.approx(m.posterior(np.array([2.0]))[0], rel=1e-12)
    assert np.all(np.diff(m.posterior(np.linspace(-20, 20, 401), monotone=True)) >= 0)
    # smaller pathogenic variance: a maximum at (0/4 − 3/1) / (1/4 − 1/1) = 4, cut above it
    m2 = Mixture(weights=(0.5, 0.5), means=(0.0, 3.0), variances=(4.0, 1.0))
    lo, hi = m2.monotone_range()
    assert lo == -math.inf and hi == pytest.approx(4.0)
    assert np.all(np.diff(m2.posterior(np.linspace(-20, 20, 401), monotone=True)) >= 0)
    assert not np.all(np.diff(m2.posterior(np.linspace(-20, 20, 401))) >= 0)


def test_binary_entropy_by_hand():
    h = binary_entropy(np.array([0.0, 0.1, 0.5, 0.9, 1.0]))
    assert h == pytest.approx([0.0, 0.3250829733914482, math.log(2), 0.3250829733914482, 0.0], abs=1e-12)


# --------------------------------------------------------------------------------------------
# Thresholds and classes
# --------------------------------------------------------------------------------------------


def test_eve_default_thresholds_on_a_hand_made_example():
    """Ten posteriors whose entropies fall between EVE's thresholds (computed by hand in the comments)."""
    p = np.array([0.01, 0.05, 0.06, 0.10, 0.20, 0.50, 0.70, 0.90, 0.95, 0.99])
    u = binary_entropy(p)
    # H: 0.056, 0.1985, 0.2270, 0.3251, 0.5004, 0.6931, 0.6109, 0.3251, 0.1985, 0.056
    assert u == pytest.approx([_h(v) for v in p], rel=1e-12)
    thr = uncertainty_thresholds([10, 20, 25, 50, 75, 100], u, "eve")
    assert thr == {10: 0.2197550519787074, 20: 0.3073271315004903, 25: 0.3443212858392093,
                   50: 0.5199203860577154, 75: 0.6272364669515783, 100: math.inf}
    classes = assign_classes(p, u, thr)
    kept = {r: int((c != UNCERTAIN).sum()) for r, c in classes.items()}
    # 10 %: H ≤ 0.2198 keeps 0.01, 0.05, 0.95, 0.99; 20 % adds 0.06 (0.2270); 25 % adds 0.10 and 0.90 (0.3251);
    # 50 % adds 0.20 (0.5004); 75 % adds 0.70 (0.6109); 100 % adds 0.50 (ln 2)
    assert kept == {10: 4, 20: 5, 25: 7, 50: 8, 75: 9, 100: 10}
    P, B, U = PATHOGENIC, BENIGN, UNCERTAIN
    assert list(classes[25]) == [B, B, B, B, U, U, U, P, P, P]
    assert list(classes[100]) == [B, B, B, B, B, B, P, P, P, P]  # 0.5 is not > 0.5: Benign, as EVE


def test_an_uncertainty_equal_to_the_threshold_is_kept():
    p = np.array([0.2, 0.9])
    u = np.array([0.3, 0.30000001])
    assert list(assign_classes(p, u, {50: 0.3})[50]) == [BENIGN, UNCERTAIN]


def test_protein_thresholds_reproduce_eves_recomputed_deciles():
    rng = np.random.default_rng(3)
    u = rng.permutation(np.arange(1, 21) / 100.0)  # 0.01 … 0.20, 20 variants
    thr = uncertainty_thresholds(list(range(10, 101, 10)), u, "protein")
    # by hand: the d-th decile keeps the 2·d smallest values, so its threshold is 0.02·d
    assert thr == pytest.approx({10 * d: 0.02 * d for d in range(1, 11)}, abs=1e-12)
    # EVE's compute_uncertainty_deciles: pd.qcut into 10 bins, threshold = the largest value of each bin
    bins = pd.qcut(pd.Series(u), q=10, labels=range(1, 11)).astype(int)
    eve = {10 * d: float(u[bins == d].max()) for d in range(1, 11)}
    assert thr == eve
    classes = assign_classes(np.full(20, 0.9), u, thr)
    assert {r: int((c != UNCERTAIN).sum()) for r, c in classes.items()} == {10 * d: 2 * d for d in range(1, 11)}
    # any percentage, e.g. 65 % of 20 variants = 13
    assert uncertainty_thresholds([65], u, "protein")[65] == pytest.approx(0.13)


def test_eve_has_no_default_for_other_fractions():
    assert sorted(EVE_THRESHOLDS) == [10, 20, 25, 30, 40, 50, 60, 70, 75, 80, 90, 100]
    with pytest.raises(ClassifyError, match="no default threshold for 65"):
        uncertainty_thresholds([65], None, "eve")
    with pytest.raises(ClassifyError, match="not in 1-100"):
        uncertainty_thresholds([0], None, "eve")


# --------------------------------------------------------------------------------------------
# Scans, labels, evaluation
# --------------------------------------------------------------------------------------------


def _write_scan(path: Path, focus: str = "ACD", first: int = 10) -> pd.DataFrame:
    """A complete scan CSV of ``focus``: ΔELBO = −(index of the row) / 10, so lower rows are worse."""
    rows = [f"{wt}{first + i}{aa}" for i, wt in enumerate(focus) for aa in AA if aa != wt]
    frame = pd.DataFrame({"mutant": rows, "score": -np.arange(len(rows)) / 10.0, "score_sem": 0.01})
    frame.to_csv(path, index=False)
    return frame


def test_a_classes_csv_read_as_a_scan_keeps_its_protein_name(tmp_path):
    frame = _write_scan(tmp_path / "scan.csv")
    frame.rename(columns={"score": "delta_elbo", "score_sem": "delta_elbo_sem"}).assign(protein_name="P53_HUMAN") \
        .to_csv(tmp_path / "p53_classes.csv", index=False)
    assert read_scan(tmp_path / "p53_classes.csv").protein == "P53_HUMAN"  # classify named it after the file
    assert read_scan(tmp_path / "p53_classes.csv", protein="X").protein == "X"
    assert read_scan(tmp_path / "scan.csv").protein == ""


def test_read_scan_rebuilds_the_wild_type(tmp_path):
    frame = _write_scan(tmp_path / "scan.csv")
    scan = read_scan(tmp_path / "scan.csv", protein="TOY")
    assert scan.focus_seq == "ACD" and list(scan.positions) == [10, 11, 12]
    assert len(scan.mutants) == 57 and scan.mutants[0] == "A10C"
    assert scan.evolutionary_index == pytest.approx(-frame.score.to_numpy())
    assert list(scan.columns[:19]) == [0] * 19 and scan.codes[0] == AA.index("C")
    # a classes CSV (delta_elbo, delta_elbo_sem) reads as the same scan
    frame.rename(columns={"score": "delta_elbo", "score_sem": "delta_elbo_sem"}).to_csv(tmp_path / "c.csv", index=False)
    again = read_scan(tmp_path / "c.csv")
    assert again.mutants == scan.mutants and np.array_equal(again.delta_elbo, scan.delta_elbo)
    assert again.sem == pytest.approx(np.full(57, 0.01))


@pytest.mark.parametrize("rows, message", [
    ("mutant,score\nA10C,-1\nC10D,-2\n", "line 3: C10D has wild type C10 but line 2 has A10"),
    ("mutant,score\nA10C,-1\nA10C:C11A,-2\n", "line 3: 'A10C:C11A' is not a single substitution"),
    ("mutant,score\nA10C,-1\nA10D,oops\n", "line 3: score 'oops' is not a number"),
    ("mutant,score\nA10C,-1\nA10C,-2\n", "line 3: A10C repeats line 2"),
])
def test_read_scan_errors_name_file_and_row(tmp_path, rows, message):
    path = tmp_path / "bad.csv"
    path.write_text(rows)
    with pytest.raises(ClassifyError) as exc:
        read_scan(path)
    assert str(exc.value).startswith(str(path)) and message in str(exc.value)


LABELS = """protein_name,mutations,ClinVar_labels
TOY,A10C,1
TOY,C11D,0
TOY,A10W,1.0
TOY,C10A,1
TOY,A99G,0
TOY,A10C:C11D,1
TOY,A10A,0
TOY,D12E,0.5
TOY,foo,1
TOY,A10C,1
OTHER,D12E,1
TOY,D12F,benign
"""


def test_every_label_row_gets_a_status(tmp_path):
    _write_scan(tmp_path / "scan.csv")
    (tmp_path / "labels.csv").write_text(LABELS)
    scan = read_scan(tmp_path / "scan.csv", protein="TOY")
    match = match_labels(read_labels(tmp_path / "labels.csv"), scan, protein="TOY")
    reasons = [s.split(":", 1)[0] for s in match.status]
    assert reasons == ["ok", "ok", "ok", "wt_mismatch", "position_not_modelled", "not_single", "not_single",
                       "label_not_binary", "parse_error", "duplicate", "other_protein", "ok"]
    assert match.status[3] == "wt_mismatch: C10 but focus has A10"
    assert match.status[9] == "duplicate: same variant as line 2"
    assert match.summary() == {"ok": 4, "wt_mismatch": 1, "position_not_modelled": 1, "not_single": 2,
                               "label_not_binary": 1, "parse_error": 1, "duplicate": 1, "other_protein": 1}
    assert list(match.index[match.ok]) == [scan.mutants.index(m) for m in ("A10C", "C11D", "A10W", "D12F")]
    assert list(match.labels.labels[match.ok]) == [1.0, 0.0, 1.0, 0.0]
    # the same labels as a DataFrame in memory (read_labels took a path only), numbers as numbers
    import io

    frame = pd.read_csv(io.StringIO(LABELS.strip()))
    in_memory = match_labels(read_labels(frame), scan, protein="TOY")
    assert [s.split(":", 1)[0] for s in in_memory.status] == reasons
    assert list(in_memory.labels.labels[in_memory.ok]) == [1.0, 0.0, 1.0, 0.0]
    assert in_memory.labels.path == "the labels table"


def test_a_gene_column_separates_proteins_and_the_name_is_case_free(tmp_path):
    # without the gene column recognised, PTEN's rows whose wild type happened to fit were used as this protein's
    _write_scan(tmp_path / "scan.csv")
    (tmp_path / "genes.csv").write_text("gene,mutant,label\nTOY,A10C,1\nPTEN,A10W,0\nTOY,C11D,0\n")
    labels = read_labels(tmp_path / "genes.csv")
    assert labels.protein_col == "gene" and labels.proteins == ["TOY", "PTEN", "TOY"]
    scan = read_scan(tmp_path / "scan.csv", protein="toy")
    match = match_labels(labels, scan, protein="toy")
    assert match.protein == "TOY" and match.status == ["ok", "other_protein: PTEN", "ok"]
    with pytest.raises(ClassifyError, match=r"genes\.csv: rows for several proteins in column gene \(it has TOY, "
                                            r"PTEN\); give --protein as that column names it$"):
        match_labels(labels, scan, protein="")
    # one gene name, which a model's focus id (TOY_HUMAN) need not spell: its rows, wild types checked
    (tmp_path / "one.csv").write_text("gene,mutant,label\nTP53,A10C,1\nTP53,C11D,0\n")
    assert match_labels(read_labels(tmp_path / "one.csv"), scan, protein="TOY_HUMAN").status == ["ok", "ok"]
    (tmp_path / "eve.csv").write_text("protein_name,mutations,ClinVar_labels\nPTEN_HUMAN,A10C,1\n")
    with pytest.raises(ClassifyError, match="no row for protein 'TOY_HUMAN' in column protein_name"):  # EVE's names
        match_labels(read_labels(tmp_path / "eve.csv"), scan, protein="TOY_HUMAN")


def test_labels_in_another_numbering_are_an_error_naming_the_offset(tmp_path):
    # positions shifted by +10: the few rows that fit by chance must not make a report
    _write_scan(tmp_path / "scan.csv", focus="ACDEFGHIKLMNPQRSTVWY" * 2, first=1)
    focus = "ACDEFGHIKLMNPQRSTVWY" * 2
    rows = [f"{wt}{i + 1 + 10}{'A' if wt != 'A' else 'G'},{i % 2}" for i, wt in enumerate(focus[:30])]
    (tmp_path / "shifted.csv").write_text("mutant,label\n" + "\n".join(rows) + "\n")
    scan = read_scan(tmp_path / "scan.csv", protein="TOY")
    with pytest.raises(ClassifyError, match=r"shifted\.csv: \d+ of its 30 rows for TOY name a wild type that the "
                                            r"focus sequence does not have, \d+ fit it: positions look shifted "
                                            r"by -10: .* try --offset -10$"):
        match_labels(read_labels(tmp_path / "shifted.csv"), scan, protein="TOY")
    match = match_labels(read_labels(tmp_path / "shifted.csv"), scan, protein="TOY", offset=-10)
    assert match.summary() == {"ok": 30}
    # rows whose wild type fits count, usable or not: 5 labelled, 20 of uncertain significance, 6 mismatches
    rows = [f"{wt}{i + 1}{'A' if wt != 'A' else 'G'},{1 if i < 5 else 'Uncertain significance'}"
            for i, wt in enumerate(focus[:25])] + [f"W{i + 1}A,1" for i in range(25, 31) if focus[i] != "W"]
    (tmp_path / "vus.csv").write_text("mutant,label\n" + "\n".join(rows) + "\n")
    assert match_labels(read_labels(tmp_path / "vus.csv"), scan, protein="TOY").summary()["ok"] == 5


def test_clinvar_protein_change_and_name_columns(tmp_path):
    # ClinVar's tabular export: one change per transcript in "Protein change"; the change in parentheses in "Name"
    _write_scan(tmp_path / "scan.csv")
    (tmp_path / "clinvar.tsv").write_text(
        "Name\tProtein change\tGermline classification\n"
        "NM_1(TOY):c.1A>G (p.Ala10Cys)\tA3C, A10C, C8D\tPathogenic\n"   # one transcript's change fits: A10C
        "NM_1(TOY):c.4T>G (p.Cys11Asp)\tC4D, C11D\tBenign\n"            # C11D
        "NM_1(TOY):c.4T>G (p.Cys11Trp)\tA11W, A12W\tBenign\n"            # none fits
        "NM_1(TOY):c.4T>G (p.Ala10Trp)\tA10W, C11W\tPathogenic\n"       # both fit: ambiguous
        "NM_1(TOY):c.4T>G (p.Asp12Glu)\tD12E, D12E\tBenign\n"            # one change twice: that change
        "NM_1(TOY):c.4T>G (p.Ala30Trp)\tA11W, A30W\tBenign\n")           # one outside the model: not modelled
    scan = read_scan(tmp_path / "scan.csv", protein="TOY")
    change = match_labels(read_labels(tmp_path / "clinvar.tsv", label_col="Germline classification",
                                      mutant_col="Protein change"), scan)
    assert change.status[:2] == ["ok", "ok"]
    assert [scan.mutants[i] for i in change.index[:2]] == ["A10C", "C11D"]
    assert change.status[2].startswith("wt_mismatch: none of the changes 'A11W, A12W' (one per transcript, as "
                                       "ClinVar lists them) fits the focus sequence")
    assert change.status[3] == "ambiguous: A10W, C11W all fit the focus sequence (ClinVar lists one change per " \
                               "transcript)"
    assert change.status[4] == "ok" and scan.mutants[change.index[4]] == "D12E"
    assert change.status[5].startswith("position_not_modelled: none of the changes 'A11W, A30W'")
    name = match_labels(read_labels(tmp_path / "clinvar.tsv", label_col="Germline classification",
                                    mutant_col="Name"), scan)
    assert name.status[:5] == ["ok", "ok", "ok", "ok", "ok"]
    assert [scan.mutants[i] for i in name.index[:5]] == ["A10C", "C11D", "C11W", "A10W", "D12E"]
    assert list(name.labels.labels[:5]) == [1.0, 0.0, 0.0, 1.0, 0.0]
    # elsewhere a comma still joins a multi-mutant, which is not a single variant
    (tmp_path / "plain.csv").write_text('mutant,label\n"A10C, C11D",1\n')
    assert match_labels(read_labels(tmp_path / "plain.csv"), scan).status[0].startswith("not_single")


def test_two_label_columns_need_label_col(tmp_path):
    (tmp_path / "both.csv").write_text("mutant,label,labels\nA10C,1,0\n")
    with pytest.raises(ClassifyError, match=r"both\.csv: several label columns \(label, labels\): choose one with "
                                            r"--label-col$"):
        read_labels(tmp_path / "both.csv")
    assert read_labels(tmp_path / "both.csv", label_col="labels").labels.tolist() == [0.0]


def test_clinvar_wordings_of_the_two_labels(tmp_path):
    # ClinVar's own categories (web export and VCF spellings), their abbreviations, decimal-comma 1/0 (a European
    # spreadsheet); anything else stays out with a label_not_binary status
    rows = [("Pathogenic/Likely pathogenic", 1.0), ("Pathogenic/Likely_pathogenic", 1.0), ("LP", 1.0),
            ("p", 1.0), ("Likely_pathogenic", 1.0), (" Benign ", 0.0), ("Benign/Likely_benign", 0.0), ("LB", 0.0),
            ("1,0", 1.0), ("0,0", 0.0), ("1.0", 1.0), ("0", 0.0), ("Pathogenic/Benign", math.nan),
            ("Uncertain significance", math.nan), ("Conflicting classifications of pathogenicity", math.nan),
            ("Pathogenic; risk factor", math.nan), ("0,5", math.nan), ("2", math.nan), ("", math.nan)]
    (tmp_path / "cv.tsv").write_text("mutant\tlabel\n" + "".join(f"A{i + 10}C\t{t}\n" for i, (t, _) in
                                                                  enumerate(rows)))
    got = read_labels(tmp_path / "cv.tsv").labels
    np.testing.assert_array_equal(got, [v for _, v in rows])


def test_labels_mutant_column_is_named_with_label_mutant_col(tmp_path):
    _write_scan(tmp_path / "scan.csv")
    (tmp_path / "cv.tsv").write_text("Name\tProtein change\tClinical significance\nx\tA10C\tPathogenic\n"
                                     "y\tC11D\tBenign\n")
    base = ["classify", "--scan", str(tmp_path / "scan.csv"), "-o", str(tmp_path / "c.csv"), "--labels",
            str(tmp_path / "cv.tsv"), "--label-col", "Clinical significance", "--no-plots"]
    r = CliRunner().invoke(main, base)
    assert r.exit_code == 2 and "cv.tsv (looked for mutant/mutation" in r.output
    assert r.output.strip().endswith("choose the mutant column with --label-mutant-col"), r.output
    r = CliRunner().invoke(main, [*base, "--label-mutant-col", "protein change"])
    assert r.exit_code == 0 and "Labels: 2 of 2 rows used" in r.output, r.output
    r = CliRunner().invoke(main, [*base, "--label-mutant-col", "protein chang"])
    assert r.exit_code == 2 and "column 'protein chang' (--label-mutant-col) not found in" in r.output, r.output
    r = CliRunner().invoke(main, base[:5] + ["--label-mutant-col", "x"])
    assert r.exit_code == 2 and "--label-col and --label-mutant-col name columns of --labels: give one" in r.output


def test_conflicting_duplicate_labels_leave_the_variant_out(tmp_path):
    _write_scan(tmp_path / "scan.csv")
    (tmp_path / "dup.csv").write_text("mutant,label\nA10C,1\nC11D,0\nA10C,0\nC11D,0\nA10C,1\n")
    match = match_labels(read_labels(tmp_path / "dup.csv"), read_scan(tmp_path / "scan.csv", protein="TOY"))
    assert match.status == ["duplicate_conflict: line 4 labels it '0'", "ok",
                            "duplicate_conflict: line 2 labels it '1'", "duplicate: same variant as line 3",
                            "duplicate_conflict: lines 2 and 4 label it both ways"]  # the variant stays out
    assert match.ok.tolist() == [False, True, False, False, False]


def test_labels_of_no_usable_row_fail_before_anything_is_written(tmp_path):
    _write_scan(tmp_path / "scan.csv")
    out = tmp_path / "classes.csv"
    # another protein's labels by name, then ones whose positions are none of the scan's
    (tmp_path / "foo.csv").write_text("protein_name,mutations,ClinVar_labels\nFOO,A10C,1\n")
    r = CliRunner().invoke(main, ["classify", "--scan", str(tmp_path / "scan.csv"), "-o", str(out), "--labels",
                                  str(tmp_path / "foo.csv"), "--protein", "TOY", "--no-plots"])
    assert r.exit_code == 2 and "foo.csv: no row for protein 'TOY'" in r.output
    (tmp_path / "far.csv").write_text("mutant,label\nA110C,1\nC111D,0\n")
    r = CliRunner().invoke(main, ["classify", "--scan", str(tmp_path / "scan.csv"), "-o", str(out), "--labels",
                                  str(tmp_path / "far.csv"), "--no-plots"])
    assert r.exit_code == 2 and r.output.strip().endswith(
        "far.csv: none of its 2 rows can be used for scan (position_not_modelled 2): labels of another protein, or "
        "another numbering (--protein, --offset)?"), r.output
    assert not out.exists()


def test_plain_mutant_label_table_and_protein_choice(tmp_path):
    _write_scan(tmp_path / "scan.csv")
    (tmp_path / "plain.csv").write_text("mutant,label\nA10C,pathogenic\nC11D,0\n")
    scan = read_scan(tmp_path / "scan.csv")
    match = match_labels(read_labels(tmp_path / "plain.csv"), scan)
    assert match.status == ["ok", "ok"] and list(match.labels.labels) == [1.0, 0.0]
    (tmp_path / "two.csv").write_text("protein_name,mutations,ClinVar_labels\nTOY,A10C,1\nOTHER,A10C,1\n")
    with pytest.raises(ClassifyError, match="rows for several proteins.*--protein"):
        match_labels(read_labels(tmp_path / "two.csv"), scan)
    with pytest.raises(ClassifyError, match="no row for protein 'NOPE'"):
        match_labels(read_labels(tmp_path / "two.csv"), scan, protein="NOPE")
    (tmp_path / "nolabel.csv").write_text("mutant,fitness\nA10C,1\n")
    with pytest.raises(ClassifyError, match="no label column"):
        read_labels(tmp_path / "nolabel.csv")


def test_auc_by_hand():
    pos = [0.9, 0.8, 0.7, 0.6, 0.2]
    neg = [0.5, 0.4, 0.3, 0.1, 0.65]
    # pairs with positive > negative: 5 + 5 + 5 + 4 + 1 = 20 of 25
    y = np.array([1] * 5 + [0] * 5)
    assert auc(np.array(pos + neg), y) == pytest.approx(0.8)
    # a tie counts half: 0.2 → 0.5 ties one negative (0.5) instead of losing to it
    assert auc(np.array([0.9, 0.8, 0.7, 0.6, 0.5] + neg), y) == pytest.approx((5 + 5 + 5 + 4 + 3.5) / 25)
    assert math.isnan(auc(np.array(pos + neg[:4]), np.array([1] * 5 + [0] * 4)))  # 4 benign: too few


def test_evaluate_by_hand(tmp_path):
    _write_scan(tmp_path / "scan.csv")
    scan = read_scan(tmp_path / "scan.csv", protein="TOY")
    labelled = ["A10C", "A10D", "A10E", "C11A", "C11D", "D12A", "D12C"]
    y = [1, 1, 1, 0, 0, 0, 1]
    rows = "".join(f"{m},{v}\n" for m, v in zip(labelled, y, strict=True))
    (tmp_path / "labels.csv").write_text("mutant,label\n" + rows + "Q10A,1\n")
    match = match_labels(read_labels(tmp_path / "labels.csv"), scan)
    M = len(scan.mutants)
    p = np.full(M, 0.5)
    u = np.full(M, 0.69)
    idx = [scan.mutants.index(m) for m in labelled]
    p[idx] = [0.9, 0.8, 0.3, 0.2, 0.7, 0.1, 0.6]   # calls: P P B B P B P
    u[idx] = [0.1, 0.2, 0.3, 0.1, 0.6, 0.2, 0.5]   # at threshold 0.35: the 5th and 7th are Uncertain
    thr = {100: math.inf, 50: 0.35}
    cls = Classification(scan=scan, mixture=Mixture((0.5, 0.5), (0.0, 1.0), (1.0, 1.0)), prior=None,
                         protein_weight=0.3, pathogenicity=p, uncertainty=u, thresholds=thr, threshold_source="eve",
                         classes=assign_classes(p, u, thr))
    ev = evaluate(cls, match)
    assert (ev.n_pathogenic, ev.n_benign) == (4, 3)
    row100, row50 = ev.by_retain.set_index("retain_pct").loc[100], ev.by_retain.set_index("retain_pct").loc[50]
    # 100 %: correct = A10C, A10D, C11A, D12A, D12C = 5 of 7; pathogenic 3 of 4 called P; benign 2 of 3 called B
    assert (row100.classified, row100.accuracy) == (7, pytest.approx(5 / 7))
    assert row100.pathogenic_accuracy == pytest.approx(3 / 4) and row100.benign_accuracy == pytest.approx(2 / 3)
    # 50 %: C11D (benign, called P) and D12C (pathogenic, called P) are Uncertain: 5 classified, 4 correct
    assert (row50.classified, row50.coverage, row50.accuracy) == (5, pytest.approx(5 / 7), pytest.approx(4 / 5))
    assert row50.pathogenic_coverage == pytest.approx(3 / 4) and row50.pathogenic_accuracy == pytest.approx(2 / 3)
    assert row50.benign_coverage == pytest.approx(2 / 3) and row50.benign_accuracy == pytest.approx(1.0)
    assert row50.variants_retained == pytest.approx(5 / M)
    assert math.isnan(ev.auc_pathogenicity)  # 3 benign < MIN_PER_CLASS_AUC
    assert list(ev.table.status) == ["ok"] * 7 + ["wt_mismatch: Q10 but focus has A10"]
    assert list(ev.table.variant) == [*labelled, ""]  # the scan's variant each usable row was matched to
    assert ev.table.EVE_classes_50_pct_retained.tolist()[:7] == ["Pathogenic", "Pathogenic", "Benign", "Benign",
                                                                  UNCERTAIN, "Benign", UNCERTAIN]
    assert pd.isna(ev.table.pathogenicity.iloc[7])
    # the report: the "no AUC" note on the labels' line, the off-nominal share on the thresholds' line only
    lines = {ln.split(":")[0]: ln for ln in report_markdown(cls, ev).splitlines() if ln.startswith("- ")}
    assert lines["- used"] == "- used: 4 pathogenic, 3 benign (no AUC: fewer than 5 labelled variants in a class)"
    assert "far from the nominal one" in lines["- thresholds"]


def test_prior_round_trip_and_errors(tmp_path):
    rng = np.random.default_rng(4)

    def scan(x, name):
        return ScanScores(name, [f"A{i}C" for i in range(x.size)], -x, None, "A" * x.size,
                          np.arange(x.size), np.arange(x.size), np.ones(x.size, dtype=np.int64), name)

    a, b = rng.normal(0, 1, 2000), rng.normal(5, 1, 1000)
    prior = fit_prior([scan(a, "a.csv"), scan(b, "b.csv")], n_init=5, seed=0)
    assert prior.mixture == fit_mixture(np.concatenate([a, b]), n_init=5, seed=0)
    assert prior.sources == (("a.csv", 2000), ("b.csv", 1000))
    path = save_prior(prior, tmp_path / "prior.json")
    assert json.loads(path.read_text())["format"] == "deepseqvae-gmm-prior"
    assert load_prior(path) == prior
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ClassifyError, match="bad.json: not a readable JSON prior"):
        load_prior(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text('{"weights": [0.5, 0.5]}')
    with pytest.raises(ClassifyError, match="other.json: not a deepseqvae mixture prior"):
        load_prior(tmp_path / "other.json")
    # weights that do not sum to 1 (scikit-learn raised deep inside the fit), another version of the file
    payload = json.loads(path.read_text())
    heavy = {**payload["mixture"], "weights": [0.9, 0.9]}
    for change, match in [({"mixture": heavy}, r"weights must sum to 1, not 1\.8"),
                          ({"version": 2}, r"a mixture prior of version 2; this deepseqvae reads version 1"),
                          ({"version": None}, r"of version None")]:
        (tmp_path / "edited.json").write_text(json.dumps({**payload, **change}))
        with pytest.raises(ClassifyError, match=r"edited\.json: .*" + match):
            load_prior(tmp_path / "edited.json")


def test_separation_by_hand_and_the_overlap_warnings(caplog):
    # Ashman's D = sqrt(2)·|3 − 0| / sqrt(1 + 3) = 2.1213...
    assert Mixture((0.5, 0.5), (0.0, 3.0), (1.0, 3.0)).separation == pytest.approx(math.sqrt(2) * 3 / 2)
    assert Mixture((0.4, 0.6), (1.0, 1.5), (4.0, 4.0)).separation == pytest.approx(math.sqrt(2) * 0.5 / math.sqrt(8))
    rng = np.random.default_rng(5)

    def scan(x, name):
        return ScanScores(name, [f"A{i}C" for i in range(x.size)], -x, None, "A" * x.size,
                          np.arange(x.size), np.arange(x.size), np.ones(x.size, dtype=np.int64), name)

    two = [scan(rng.normal(0, 1, 1500), "a.csv"), scan(rng.normal(6, 1, 1500), "b.csv")]
    with caplog.at_level(logging.WARNING, logger="deepseqvae"):
        clear = fit_prior(two, n_init=3, seed=0)
    assert clear.mixture.separation > 5 and "Ashman" not in caplog.text
    # one skewed peak (a gamma): the fit splits it into two overlapping halves, D < 2 -> warned, twice over
    skewed = [scan(rng.gamma(4.0, 1.0, 3000), "c.csv")]
    with caplog.at_level(logging.WARNING, logger="deepseqvae"):
        blur = fit_prior(skewed, n_init=3, seed=0)
    assert blur.mixture.separation < MIN_SEPARATION
    assert "pooled mixture's components overlap (Ashman's D = " in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="deepseqvae"):
        classify_scores(two[0], prior=blur.mixture, n_init=1)
    assert "the pooled prior's components overlap" in caplog.text
    caplog.clear()
    bimodal = scan(np.concatenate([rng.normal(0, 1, 1500), rng.normal(6, 1, 1500)]), "d.csv")
    with caplog.at_level(logging.WARNING, logger="deepseqvae"):
        classify_scores(bimodal, prior=clear.mixture, n_init=1)
    assert "Ashman" not in caplog.text
    # the protein's own scores as one skewed peak: its mixture is warned about, named by the scan
    with caplog.at_level(logging.WARNING, logger="deepseqvae"):
        classify_scores(skewed[0], n_init=3)
    assert "c.csv: the two components fitted to its scores overlap (Ashman's D = " in caplog.text


def test_eve_thresholds_far_from_their_nominal_share_are_flagged(caplog):
    rng = np.random.default_rng(11)
    x = np.concatenate([rng.normal(0, 1, 1500), rng.normal(12, 1, 1500)])  # two far modes: few uncertain variants
    scan = ScanScores("far.csv", [f"A{i}C" for i in range(x.size)], -x, None, "A" * x.size,
                      np.arange(x.size), np.arange(x.size), np.ones(x.size, dtype=np.int64), "far.csv")
    with caplog.at_level(logging.WARNING, logger="deepseqvae"):
        cls = classify_scores(scan, n_init=3)
    # the share each EVE threshold keeps, by hand from the uncertainties
    shares = {r: float(np.mean(cls.uncertainty <= EVE_THRESHOLDS[r])) for r in cls.classes if r < 100}
    off = {r: f for r, f in shares.items() if abs(f - r / 100) > RETAINED_DRIFT}
    assert off and cls.off_nominal() == pytest.approx(off)
    assert 10 in off and off[10] > 0.9  # "10 % retained" classifies nearly every variant here
    assert f"far.csv: EVE's default thresholds classify a share of this protein's variants far from the nominal " \
           f"one ({100 * off[10]:.1f} % at 10 %" in caplog.text and "--thresholds protein" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="deepseqvae"):
        own = classify_scores(scan, n_init=3, thresholds="protein")
    assert own.off_nominal() == {} and own.off_nominal_note() is None and "nominal" not in caplog.text
    # far in the pathogenic tail P(pathogenic) rounds to 1, but P(benign), computed apart, still orders the variants
    tail = cls.pathogenicity == 1.0
    assert tail.sum() > 100 and np.unique(own.uncertainty[tail]).size > 0.9 * tail.sum()
    assert own.retained()[10] == pytest.approx(0.10, abs=0.002)


def test_protein_thresholds_that_ties_keep_from_their_share_are_flagged(caplog):
    # modes 60 apart: every log-odds is beyond what a float64 posterior can tell apart (|log-odds| > 700), so every
    # variant ties at one uncertainty and "10 % retained" classifies all of them (it said nothing)
    rng = np.random.default_rng(11)
    x = np.concatenate([rng.normal(0, 1, 1500), rng.normal(60, 1, 1500)])
    scan = ScanScores("tie.csv", [f"A{i}C" for i in range(x.size)], -x, None, "A" * x.size,
                      np.arange(x.size), np.arange(x.size), np.ones(x.size, dtype=np.int64), "tie.csv")
    with caplog.at_level(logging.WARNING, logger="deepseqvae"):
        own = classify_scores(scan, n_init=3, thresholds="protein")
    assert np.unique(own.uncertainty).size == 1 and own.retained()[10] == 1.0
    assert own.off_nominal()[10] == 1.0
    assert "tie.csv: the thresholds of this protein classify a share of its variants far from the nominal one (" \
           f"{100 * own.retained()[10]:.1f} % at 10 %" in caplog.text and "tie at one uncertainty" in caplog.text


# --------------------------------------------------------------------------------------------
# The commands, on a tiny model of the demo family
# --------------------------------------------------------------------------------------------


@pytest.fixture
def tiny(demo_models, tmp_path):
    """A folder for the outputs and the session's tiny demo VAE (conftest)."""
    return tmp_path, demo_models["vae"]


def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_classify_command_from_a_model_and_from_its_scan(tiny):
    d, model = tiny
    labels = d / "labels.csv"
    labels.write_text("protein_name,mutations,ClinVar_labels\n"
                      + "".join(f"DEMO,H1{aa},1\n" for aa in "ACDEF") + "".join(f"DEMO,R2{aa},0\n" for aa in "ACDEF")
                      + "DEMO,A1G,1\nDEMO,H99A,0\n")
    out = d / "classes.csv"
    r = run_cli("classify", "-m", model, "-o", out, "--labels", labels, "--samples", 8, "--device", "cpu",
                "--no-progress")
    assert r.exit_code == 0, r.output
    frame = pd.read_csv(out)
    assert len(frame) == 19 * 60 and frame.mutant.iloc[0] == "H1A"
    for col in ("delta_elbo", "evolutionary_index", "pathogenicity", "uncertainty", "EVE_scores", "evol_indices",
                "EVE_classes_100_pct_retained", "EVE_classes_75_pct_retained", "EVE_classes_10_pct_retained"):
        assert col in frame.columns
    assert np.allclose(frame.evolutionary_index, -frame.delta_elbo)
    assert np.allclose(frame.uncertainty, binary_entropy(frame.pathogenicity.to_numpy()), atol=1e-5)
    assert set(frame.EVE_classes_75_pct_retained) <= {PATHOGENIC, BENIGN, UNCERTAIN}
    # the pathogenic class has the lower mean ΔELBO
    called = frame.EVE_classes_100_pct_retained
    assert frame.delta_elbo[called == PATHOGENIC].mean() < frame.delta_elbo[called == BENIGN].mean()
    report = (d / "classes_report.md").read_text()
    assert "12 rows; ok 10, wt_mismatch 1, position_not_modelled 1" in report
    assert "Labels: 10 of 12 rows used (wt_mismatch 1, position_not_modelled 1)" in r.output
    per_row = pd.read_csv(d / "classes_labels.csv")
    assert per_row.status.iloc[10] == "wt_mismatch: A1 but focus has H1"
    for name in ("classes_histogram.png", "classes_labels.png", "classes_metrics.csv"):
        assert (d / name).read_bytes()[:4] in (b"\x89PNG", b"reta")
    assert per_row.row.tolist() == list(range(2, 14))  # each row's file line, as its status names lines
    metrics = pd.read_csv(d / "classes_metrics.csv")  # the AUCs are machine-readable too, as in the report
    aucs = metrics[["auc_evolutionary_index", "auc_pathogenicity"]].drop_duplicates()
    assert len(aucs) == 1 and f"{aucs.iloc[0, 0]:.3f}" in report

    # the same scores from the scan CSV give the same classes
    scan = d / "singles.csv"
    assert run_cli("scan", "-m", model, "-o", scan, "--samples", 8, "--device", "cpu", "--no-progress").exit_code == 0
    out2 = d / "from_scan.csv"
    r = run_cli("classify", "--scan", scan, "-o", out2, "--protein", "DEMO", "--no-plots")
    assert r.exit_code == 0, r.output
    frame2 = pd.read_csv(out2)
    assert frame2.mutant.tolist() == frame.mutant.tolist()
    assert np.allclose(frame2.EVE_scores, frame.EVE_scores, atol=1e-4)
    assert (frame2.EVE_classes_75_pct_retained == frame.EVE_classes_75_pct_retained).mean() > 0.99
    r = run_cli("classify", "--scan", scan, "-o", d / "unnamed.csv", "--no-plots")  # no --protein: the file's name
    assert r.exit_code == 0 and set(pd.read_csv(d / "unnamed.csv").protein_name) == {"singles"}

    # a pooled prior from scans, then classify with it
    prior = d / "prior.json"
    r = run_cli("classify-prior", scan, scan, "-o", prior, "--n-init", 3)
    assert r.exit_code == 2 and "given twice" in r.output and not prior.exists()  # one scan pooled twice: a mistake
    r = run_cli("classify-prior", d / "singles_positions.csv", "-o", prior)
    assert r.exit_code == 2 and "not a scan CSV: no column of mutants" in r.output and "--mutant-col" not in r.output
    copy = d / "singles_copy.csv"  # the same scan under another name: it would count twice
    copy.write_bytes(scan.read_bytes())
    r = run_cli("classify-prior", scan, copy, "-o", prior, "--n-init", 3)
    assert r.exit_code == 2 and f"{copy}: the same scores as {scan} (a copy?)" in r.output and not prior.exists()
    twin = d / "singles_twin.csv"  # another protein's scan, here nearly the same numbers
    other = pd.read_csv(scan)
    other["score"] += 1e-3
    other.to_csv(twin, index=False)
    r = run_cli("classify-prior", scan, twin, "-o", prior, "--n-init", 3)
    assert r.exit_code == 0, r.output
    assert "variants of 2 scans" in r.output
    assert json.loads(prior.read_text())["mixture"]["n_fitted"] == 2 * 19 * 60
    saved = load_prior(prior).mixture
    assert f"separation (Ashman's D) {saved.separation:.2f}" in r.output
    r = run_cli("classify", "--scan", scan, "-o", d / "with_prior.csv", "--prior", prior, "--protein-weight", 0.3,
                "--retain", "75", "--no-plots")
    assert r.exit_code == 0, r.output
    cols = [c for c in pd.read_csv(d / "with_prior.csv").columns if c.startswith("EVE_classes")]
    assert cols == ["EVE_classes_100_pct_retained", "EVE_classes_75_pct_retained"]


def test_classify_command_errors_are_one_line(tiny):
    d, model = tiny
    r = CliRunner().invoke(main, ["classify", "-m", str(model), "-o", str(d / "x.csv"), "--retain", "65",
                                  "--samples", "2", "--device", "cpu", "--no-progress", "--no-plots"])
    assert r.exit_code == 2 and "Error: EVE has no default threshold for 65" in r.output
    r = CliRunner().invoke(main, ["classify", "-o", str(d / "x.csv")])
    assert r.exit_code == 2 and "give a checkpoint with --model or a scan CSV with --scan" in r.output
    _write_scan(d / "toy_scan.csv")
    r = CliRunner().invoke(main, ["classify", "--scan", str(d / "toy_scan.csv"), "--samples", "10"])
    assert r.exit_code == 2 and "a --scan CSV is scored already" in r.output  # not silently ignored
    r = CliRunner().invoke(main, ["classify", "--scan", str(d / "toy_scan.csv"), "--protein-weight", "0.5"])
    assert r.exit_code == 2 and "--protein-weight weighs the protein's mixture against a --prior" in r.output
    r = CliRunner().invoke(main, ["classify", "--scan", str(d / "toy_scan.csv"), "--prior", str(d / "nope.json")])
    assert r.exit_code == 2 and r.output.strip() == f"Error: {d / 'nope.json'}: no such prior file"
    assert not (d / "toy_scan_classes.csv").exists()
    # a retained share EVE has no threshold for fails before the model is even read, let alone scanned
    r = CliRunner().invoke(main, ["classify", "-m", str(d / "not_yet.pt"), "-o", str(d / "x.csv"), "--retain", "33"])
    assert r.exit_code == 2 and r.output.startswith("Error: EVE has no default threshold for 33"), r.output
    flat = d / "flat_scan.csv"  # every score equal: no mixture, and the message names the file
    pd.read_csv(d / "toy_scan.csv").assign(score=0.0).to_csv(flat, index=False)
    r = CliRunner().invoke(main, ["classify", "--scan", str(flat), "-o", str(d / "x.csv"), "--no-plots"])
    assert r.exit_code == 2 and r.output.strip() == (f"Error: {flat}: a two-component mixture needs at least two "
                                                     "distinct scores, got 57 (1 distinct)"), r.output
    r = CliRunner().invoke(main, ["classify-prior", str(flat), "-o", str(d / "prior.json")])
    assert r.exit_code == 2 and r.output.strip() == (f"Error: {flat}: a two-component mixture needs at least two "
                                                     "distinct scores, got 57 (1 distinct)"), r.output


def test_classify_figures_keep_their_legend_off_the_data():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from deepseqvae.plots import plot_score_histogram, plot_scores_vs_positions

    rng = np.random.default_rng(2)
    labels = (rng.random(160) < 0.8).astype(int)
    # scores fill 0-1 along the whole sequence, as P53's do: no corner inside the axes is free
    scatter = plot_scores_vs_positions(rng.integers(40, 380, 160), rng.random(160), labels, threshold=0.5)
    grid = np.linspace(-2, 12, 50)
    hist = plot_score_histogram(rng.normal(5, 3, 2000), grid, np.stack([np.exp(-(grid - 3) ** 2),
                                                                       np.exp(-(grid - 8) ** 2)], axis=1),
                                labelled_scores=rng.normal(6, 3, 160), labels=labels, boundary=5.5)
    for fig in (scatter, hist):
        FigureCanvasAgg(fig).draw()  # a real draw, so that the figure's constrained layout runs
        ax = fig.axes[0]
        legend, axes = ax.get_legend().get_window_extent(), ax.get_window_extent()
        assert legend.x0 >= axes.x1 and legend.x1 <= fig.bbox.x1  # right of the axes, inside the figure


def test_a_saturation_scan_is_classified_in_memory():
    from deepseqvae.score import saturation_scan

    from conftest import toy_vae_checkpoint

    ck, _ = toy_vae_checkpoint()
    result = saturation_scan(ck, n_samples=2, seed=0)
    scores = ScanScores.from_scan(result)
    assert scores.protein == "TOY" and scores.mutants == list(result.mutants)
    np.testing.assert_array_equal(scores.evolutionary_index, -result.score)
    direct = classify_scores(result, n_init=2)
    np.testing.assert_array_equal(direct.pathogenicity, classify_scores(scores, n_init=2).pathogenicity)
    with pytest.raises(TypeError, match="expected a ScanResult \\(saturation_scan\\) or ScanScores, not float"):
        classify_scores([1.0, 2.0])  # a list is an ensemble's scans: each must be one
    with pytest.raises(TypeError, match="expected a ScanResult \\(saturation_scan\\) or ScanScores, not dict"):
        classify_scores({"x": 1.0})


def test_classify_warns_of_a_model_of_too_few_sequences(tiny, caplog):
    """train warns when Neff/L < 1; classify of such a model says it too (its classes rest on little data)."""
    from dataclasses import replace

    from deepseqvae.checkpoint import load_checkpoint, save_checkpoint

    d, model = tiny
    ckpt = load_checkpoint(model)
    thin = d / "thin.pt"
    save_checkpoint(replace(ckpt, info=replace(ckpt.info, neff=30.0)), thin)  # 30 over 60 columns
    with caplog.at_level(logging.WARNING, logger="deepseqvae"):
        r = run_cli("classify", "-m", thin, "-o", d / "c.csv", "--samples", 2, "--device", "cpu", "--no-progress")
    assert r.exit_code == 0, r.output
    assert (f"{thin}: Neff/L = 0.50 (Neff 30.0 over L = 60 columns) is below 1: too few effective sequences for the "
            "VAE") in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="deepseqvae"):
        r = run_cli("classify", "-m", model, "-o", d / "c2.csv", "--samples", 2, "--device", "cpu", "--no-progress")
    assert r.exit_code == 0 and "Neff/L" not in caplog.text


def test_classify_scores_takes_an_ensembles_scans_as_a_list():
    # classify_scores([a, b]) was a TypeError; the ensemble is classified by the mean of its scans
    from dataclasses import replace

    from deepseqvae.classify import mean_scans

    rng = np.random.default_rng(5)
    x = np.concatenate([rng.normal(0, 1, 300), rng.normal(8, 1, 300)])
    a = ScanScores("a.csv", [f"A{i}C" for i in range(x.size)], -x, None, "A" * x.size,
                   np.arange(x.size), np.arange(x.size), np.ones(x.size, dtype=np.int64), "a.csv")
    b = replace(a, delta_elbo=-x - 1.0, source="b.csv")
    together = classify_scores([a, b], n_init=2)
    np.testing.assert_allclose(together.scan.delta_elbo, -x - 0.5, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(together.pathogenicity, classify_scores(mean_scans([a, b]), n_init=2).pathogenicity)
    with pytest.raises(ClassifyError, match="no scan to classify"):
        classify_scores([])
