"""Tests of deepseqvae.batch and the Snakemake workflow behind ``deepseqvae batch``.

The workflow tests run Snakemake for real (locally, tiny models, a few steps) and need the
``workflow`` extra; like the shared data, it is skipped on a developer machine without it and
required when ``CI`` is set.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deepseqvae import batch
from deepseqvae.alignment import AlignmentOptions
from deepseqvae.batch import BatchError
from deepseqvae.score import average_ranks, roc_auc, spearman

from conftest import REPO_ROOT, require_shared_data

DEMO_SEQ = "HRFQHAEVKSFHTERLTFAIAIDMIRYKVNAQVPLLLTPVSADHPKHEENEENKDIHFEA"
COLUMNS = ["DMS_id", "DMS_filename", "target_seq", "MSA_filename", "MSA_start", "MSA_end", "MSA_theta",
           "weight_file_name", "DMS_mutant_column", "DMS_score_column"]
TINY = ["--steps", "10", "--latent-dim", "2", "--encoder-hidden", "8,8", "--decoder-hidden", "8,16",
        "--dictionary-size", "0", "--samples", "2", "--device", "cpu"]
DEMO_KEY = "alignments_demo"  # the name of the demo alignment's models (folder_stem of MSA_filename)
SLURM_PROFILE = REPO_ROOT / "deepseqvae" / "workflow" / "profiles" / "slurm"


def require_workflow(*modules: str) -> None:
    """Skip without Snakemake (or the SLURM plugin); fail instead when CI is set."""
    for name in ("snakemake", *modules):
        if importlib.util.find_spec(name) is None:
            msg = f"{name} is not installed (pip install 'deepseqvae[workflow]')"
            if os.environ.get("CI"):
                pytest.fail(f"{msg} (CI is set, so a missing workflow extra is a failure)")
            pytest.skip(msg)


def demo_row(dms_id: str = "DEMO", **changes) -> dict:
    row = {"DMS_id": dms_id, "DMS_filename": "alignments/demo_mutants.csv", "target_seq": DEMO_SEQ,
           "MSA_filename": "alignments/demo.a2m", "MSA_start": 1, "MSA_end": 60, "MSA_theta": 0.2,
           "weight_file_name": "demo_theta_0.2.npy", "DMS_mutant_column": "mutant", "DMS_score_column": "fitness"}
    return {**row, **changes}


def write_reference(path: Path, rows: list[dict]) -> Path:
    pd.DataFrame(rows, columns=COLUMNS).to_csv(path, index=False)
    return path


def plan_for(tmp_path, rows, **config):
    ref = write_reference(tmp_path / "ref.csv", rows)
    return batch.make_plan({"reference": str(ref), "msa_dir": str(REPO_ROOT), "dms_dir": str(REPO_ROOT),
                            **config})


# --- options and the reference file -------------------------------------------------------------


def test_parse_rows_and_seeds():
    assert batch.parse_rows("0,3-5") == [0, 3, 4, 5]
    assert batch.parse_rows(" 2, 1,2 ") == [1, 2]
    assert batch.parse_rows(None) is None and batch.parse_rows("") is None
    for bad, match in (("5-3", "ends before it starts"), ("1,a", "not 'a'"), ("-1", "not '-1'")):
        with pytest.raises(BatchError, match=match):
            batch.parse_rows(bad)
    assert batch.parse_seeds("1,2,2,3") == [1, 2, 3] and batch.parse_seeds([4]) == [4]
    with pytest.raises(BatchError, match="seeds: expected integers"):
        batch.parse_seeds("1,x")
    with pytest.raises(BatchError, match="seeds: 4294967296 is outside 0-4294967295"):
        batch.parse_seeds("1,4294967296")
    assert batch.option_args({"steps": 10, "decoder_hidden": (8, 16), "recipe": None, "flag": True,
                              "off": False}) == ["--steps", "10", "--decoder-hidden", "8,16", "--flag"]


def test_reference_errors_name_file_and_row(tmp_path):
    ref = tmp_path / "ref.csv"
    pd.DataFrame([{"DMS_id": "A"}]).to_csv(ref, index=False)
    with pytest.raises(BatchError, match=r"ref\.csv: missing column\(s\) DMS_filename, target_seq"):
        batch.read_reference(ref)
    pd.DataFrame([demo_row("A")], columns=COLUMNS).to_csv(ref, index=False, sep=";")  # a European spreadsheet's
    with pytest.raises(BatchError, match=r"schema: .*\); its header is separated by semicolons: a reference is "
                                         r"comma-separated$"):
        batch.read_reference(ref)
    write_reference(ref, [demo_row("A"), demo_row("A")])
    with pytest.raises(BatchError, match=r"ref\.csv: row 1: DMS_id 'A' appears twice"):
        batch.read_reference(ref)
    write_reference(ref, [demo_row("A"), demo_row("B", MSA_start="x")])
    with pytest.raises(BatchError, match=r"ref\.csv: row 1 \(B\): MSA_start is not a number: 'x'"):
        batch.read_reference(ref)
    # a region outside target_seq or backwards, a theta no weights can have: before any job
    for changes, match in [({"MSA_end": 61}, r"MSA_start-MSA_end 1-61 is not a region of target_seq \(1-60\)$"),
                           ({"MSA_start": 30, "MSA_end": 1}, r"MSA_start-MSA_end 30-1 is not a region"),
                           ({"MSA_theta": 2}, r"row 1 \(B\): MSA_theta: theta must be strictly between 0 and 1"),
                           ({"MSA_start": "1e400"}, r"row 1 \(B\): MSA_start is not a number: '1e400'"),
                           ({"MSA_start": "1.5"}, r"row 1 \(B\): MSA_start is not a whole number: '1.5'"),
                           ({"target_seq": "X" + DEMO_SEQ[1:]}, r"row 1 \(B\): target_seq has 'X' at position 1: "
                                                                r"only the 20 amino acids"),
                           ({"target_seq": DEMO_SEQ[:9] + "*" + DEMO_SEQ[10:]}, r"has '\*' at position 10")]:
        write_reference(ref, [demo_row("A"), demo_row("B", **changes)])
        with pytest.raises(BatchError, match=match):
            batch.read_reference(ref)
    write_reference(ref, [demo_row("A"), demo_row("B", MSA_start="x")])
    assert list(batch.read_reference(ref, [0]).index) == [0]
    with pytest.raises(BatchError, match=r"row 7 does not exist \(rows 0-1\)"):
        batch.read_reference(ref, [0, 7])


def test_plan_shares_one_alignment_and_reuses_precomputed_weights(tmp_path):
    wdir = tmp_path / "w"
    wdir.mkdir()
    np.save(wdir / "demo_theta_0.2.npy", np.ones(3))
    three = [demo_row("A"), demo_row("B"), demo_row("C", weight_file_name="other.npy", MSA_theta=0.01)]
    plan = plan_for(tmp_path, three, weights_dir=str(wdir), seeds="1,2", train={"steps": 5})
    demo = "alignments_demo"  # folder and stem of MSA_filename
    assert list(plan.alignments) == [demo, f"{demo}_theta0.01"]  # same file, another theta: another model
    assert plan.alignments[demo].rows == (0, 1) and plan.alignments[demo].precomputed
    assert plan.alignments[demo].weights_path == wdir / "demo_theta_0.2.npy"
    assert not plan.alignments[f"{demo}_theta0.01"].precomputed
    assert plan.weights_file(f"{demo}_theta0.01") == f"weights/{demo}_theta0.01.npy"
    assert plan.align_options.columns == "all" and plan.seeds == [1, 2]
    # names follow the whole file, not the rows run (the first row run took the plain name, so running C alone
    # renamed its model and retrained it), nor another spelling of the same file
    linked = tmp_path / "link"
    linked.symlink_to(REPO_ROOT / "alignments")
    spelled = three + [demo_row("D", MSA_filename=str(linked / "demo.a2m"), MSA_theta=0.01,
                                weight_file_name="other.npy")]
    ref = write_reference(tmp_path / "ref.csv", spelled)
    for selected in ("2", "1,2", "2,0", "3", "3,1"):
        plan = batch.make_plan({"reference": str(ref), "rows": selected, "msa_dir": str(REPO_ROOT),
                                "dms_dir": str(REPO_ROOT), "weights_dir": str(wdir)})
        expected = {"A": demo, "B": demo, "C": f"{demo}_theta0.01", "D": f"{demo}_theta0.01"}
        assert {d: a.alignment for d, a in plan.assays.items()} == {d: expected[d] for d in plan.assays}, selected
    # a theta added in a later row leaves the first one's name (and models) as they were
    assert list(plan_for(tmp_path, [demo_row("A"), demo_row("B")]).alignments) == [demo]
    # names that would collide are made unique: a file named like another's second theta, thetas equal to 6 digits
    (tmp_path / "alignments").mkdir()
    (tmp_path / "alignments" / "demo_theta0.01.a2m").write_text((REPO_ROOT / "alignments" / "demo.a2m").read_text())
    clash = plan_for(tmp_path, [demo_row("A"), demo_row("C", MSA_theta=0.01),
                                demo_row("E", MSA_filename=str(tmp_path / "alignments" / "demo_theta0.01.a2m")),
                                demo_row("F", MSA_theta=0.1234561), demo_row("G", MSA_theta=0.1234564)])
    keys = {d: a.alignment for d, a in clash.assays.items()}
    assert len(set(keys.values())) == 5 and keys["A"] == demo and keys["C"] == f"{demo}_theta0.01", keys
    assert {clash.alignments[keys[d]].msa_path.name for d in "ACFG"} == {"demo.a2m"}
    # a weights file named for another theta, or given to two thetas (in rows run or not), would be used as theirs:
    # refused; a protein named THETA1 is no theta
    with pytest.raises(BatchError, match=r"row 0 \(A\): weight_file_name demo_theta_0.2.npy names theta 0.2 but "
                                         r"MSA_theta is 0.01: fix one of them"):
        plan_for(tmp_path, [demo_row("A", MSA_theta=0.01)], weights_dir=str(wdir))
    np.save(wdir / "demo.npy", np.ones(3))
    shared = [demo_row("A", weight_file_name="demo.npy"), demo_row("B", weight_file_name="demo.npy", MSA_theta=0.01)]
    ref = write_reference(tmp_path / "ref.csv", shared)
    for selected in (None, "1"):
        with pytest.raises(BatchError, match=r"row 1 \(B\): weight_file_name demo.npy is also row 0's, for demo.a2m "
                                             r"at theta 0.2: weights belong to one alignment and one theta"):
            batch.make_plan({"reference": str(ref), "rows": selected, "msa_dir": str(REPO_ROOT),
                             "dms_dir": str(REPO_ROOT), "weights_dir": str(wdir)})
    with pytest.raises(BatchError, match=r"row 1 \(B\): weight_file_name other.npy but row 0 names "
                                         r"demo_theta_0.2.npy for the same alignment and theta"):
        plan_for(tmp_path, [demo_row("A"), demo_row("B", weight_file_name="other.npy")], weights_dir=str(wdir))
    # a row naming no weights takes its alignment's other rows' name, in either order; without --weights-dir the
    # names are not read, and two of them are no error
    for rows in ([demo_row("A", weight_file_name=""), demo_row("B", weight_file_name="demo.npy")],
                 [demo_row("A", weight_file_name="demo.npy"), demo_row("B", weight_file_name="")]):
        assert plan_for(tmp_path, rows, weights_dir=str(wdir)).alignments[demo].weights_path == wdir / "demo.npy"
    plan_for(tmp_path, [demo_row("A"), demo_row("B", weight_file_name="other.npy")])
    # a default name used by one alignment, given by another: one file for two, refused
    np.save(wdir / "alignments_demo_theta_0.2.npy", np.ones(3))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "demo.a2m").write_text((REPO_ROOT / "alignments" / "demo.a2m").read_text())
    with pytest.raises(BatchError, match=r"weight_file_name alignments_demo_theta_0.2.npy is also row 0's, for "
                                         r"demo.a2m at theta 0.2"):
        plan_for(tmp_path, [demo_row("A", weight_file_name=""),
                            demo_row("B", MSA_filename=str(tmp_path / "other" / "demo.a2m"),
                                     weight_file_name="alignments_demo_theta_0.2.npy")], weights_dir=str(wdir))
    np.save(wdir / "THETA1_HUMAN_theta_0.2.npy", np.ones(3))
    assert plan_for(tmp_path, [demo_row("A", weight_file_name="THETA1_HUMAN_theta_0.2.npy")],
                    weights_dir=str(wdir)).alignments[demo].precomputed


def test_a_dms_id_names_one_row_of_the_whole_file(tmp_path):
    # a repeat outside the rows run sent the check and score jobs (which find their row by DMS_id) to the other row;
    # a DMS_id with a stray space failed them ("no row has DMS_id")
    rows = [demo_row("A"), demo_row("A", DMS_score_column="NOPE")]
    with pytest.raises(BatchError, match=r"row 1: DMS_id 'A' appears twice \(also row 0\)"):
        batch.make_plan({"reference": str(write_reference(tmp_path / "ref.csv", rows)), "rows": "1",
                         "msa_dir": str(REPO_ROOT), "dms_dir": str(REPO_ROOT)})
    ref = write_reference(tmp_path / "ref.csv", [demo_row("B"), demo_row("A ")])
    plan = batch.job_plan({"msa_dir": str(REPO_ROOT), "dms_dir": str(REPO_ROOT)}, ref, "A")
    assert list(plan.assays) == ["A"] and plan.assays["A"].row == 1


# --- numbering ------------------------------------------------------------------------------------


def test_numbering_offset_point_difference_and_wrong_target_fails_alone(tmp_path):
    shifted = pd.read_csv(REPO_ROOT / "alignments" / "demo_mutants.csv", dtype=str)
    shifted["mutant"] = [re.sub(r"\d+", lambda m: str(int(m.group()) + 5), m) for m in shifted["mutant"]]
    shifted.to_csv(tmp_path / "shifted.csv", index=False)  # numbered on a target with 5 more residues
    rows = [demo_row("SAME"),
            # target_seq with 5 extra residues in front: the focus starts at MSA_start 6, offset -5
            demo_row("LONGER", target_seq="MKTAY" + DEMO_SEQ, MSA_start=6, MSA_end=65,
                     DMS_filename=str(tmp_path / "shifted.csv")),
            # one point difference (as GFP's focus F64 against the assay's L64): allowed, reported
            demo_row("POINT", target_seq="A" + DEMO_SEQ[1:]),
            # wrong MSA_start: the focus does not match target_seq there
            demo_row("WRONG", target_seq="MKTAY" + DEMO_SEQ, MSA_start=1, MSA_end=60)]
    plan = plan_for(tmp_path, rows)
    checks = {}
    for dms_id in ("SAME", "LONGER", "POINT"):
        checks[dms_id] = batch.check_assay(plan, dms_id, tmp_path / f"{dms_id}.json")
    assert (checks["SAME"].offset, checks["LONGER"].offset, checks["POINT"].offset) == (0, -5, 0)
    assert checks["POINT"].focus_mismatches == ["H1A"] and checks["SAME"].focus_mismatches == []
    assert json.loads((tmp_path / "LONGER.json").read_text())["header_start"] == 1
    with pytest.raises(BatchError, match=r"^row 3 \(WRONG\): the alignment's focus 'DEMO/1-60' disagrees with "
                                         r"target_seq .*should MSA_start be 6\?$"):
        batch.check_assay(plan, "WRONG", tmp_path / "WRONG.json")
    assert not (tmp_path / "WRONG.json").exists()
    # DMS positions that are not 1-based on target_seq: an error for that row
    plan2 = plan_for(tmp_path, [demo_row("SHIFTED", target_seq="MKTAY" + DEMO_SEQ, MSA_start=6, MSA_end=65,
                                         DMS_filename="alignments/demo_mutants.csv")])
    # said against target_seq (it said "but focus has"), with the shift that explains it
    with pytest.raises(BatchError, match=r"row 0 \(SHIFTED\): \d+ of 1640 mutants .* do not match target_seq "
                                         r"\(wt_mismatch: \w\d+ but target_seq has \w\d+\); mutant positions must be "
                                         r"1-based on target_seq; its positions look 5 lower than target_seq's \(so "
                                         r"shifted, \d+ of \d+ wild-type letters match\)"):
        batch.check_assay(plan2, "SHIFTED", tmp_path / "SHIFTED.json")
    # the focus (residues 1-60) reaching past MSA_end; a DMS_score_column the DMS file does not have
    plan3 = plan_for(tmp_path, [demo_row("SHORT", MSA_end=50), demo_row("NOSCORE", DMS_score_column="DMS_score"),
                                demo_row("CASE", DMS_score_column=" Fitness")])
    batch.check_assay(plan3, "CASE", tmp_path / "CASE.json")  # found as the metrics job finds it: case, spaces
    with pytest.raises(BatchError, match=r"^row 0 \(SHORT\): the focus 'DEMO/1-60' reaches position 60 of "
                                         r"target_seq, outside MSA_start-MSA_end 1-50 "):
        batch.check_assay(plan3, "SHORT", tmp_path / "SHORT.json")
    with pytest.raises(BatchError, match=r"^row 1 \(NOSCORE\): DMS_score_column 'DMS_score' is not a column of "
                                         r"\S*demo_mutants\.csv \(columns: mutant, fitness\)$"):
        batch.check_assay(plan3, "NOSCORE", tmp_path / "NOSCORE.json")
    # a DMS file without a mutant column: the fix named is the reference's column, not score's --mutant-col
    (tmp_path / "nomut.csv").write_text("variant_name,fitness\nfirst,1\nsecond,2\n")
    plan4 = plan_for(tmp_path, [demo_row("NOMUT", DMS_filename=str(tmp_path / "nomut.csv"), DMS_mutant_column="")])
    with pytest.raises(BatchError, match=r"^row 0 \(NOMUT\): no mutant column found in \S*nomut\.csv .*; name the "
                                         r"mutant column in the reference's DMS_mutant_column$"):
        batch.check_assay(plan4, "NOMUT", tmp_path / "NOMUT.json")


def test_target_checkpoint_scores_against_the_target():
    from deepseqvae.checkpoint import Checkpoint, ModelInfo

    info = ModelInfo(focus_id="X/10-13", focus_seq="ACDE", positions=[10, 11, 12, 13], n_seqs=2, neff=2.0,
                     theta=0.2)
    ckpt = Checkpoint(kind="independent", model_config={}, state={}, info=info)
    assay = batch.Assay(0, "X", Path("x.csv"), "MMACWE", "x", 3, 6, None, None)
    out = batch.target_checkpoint(ckpt, assay, offset=7)  # residue 10 of the model = position 3 of target
    assert out.info.focus_seq == "ACWE" and out.info.positions == [10, 11, 12, 13]
    assert ckpt.info.focus_seq == "ACDE"  # the loaded checkpoint is not modified


# --- ProteinGym's metrics, against hand computation -------------------------------------------------


def test_auc_matches_hand_computation_with_ties():
    assert roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == pytest.approx(0.75)
    # ties between a positive and a negative count one half: pairs (1,1) .5, (1,2) 0, (2,1) 1, (2,2) .5
    assert roc_auc(np.array([1.0, 1.0, 2.0, 2.0]), np.array([0, 1, 0, 1])) == pytest.approx(0.5)
    assert math.isnan(roc_auc(np.array([0.1, 0.2]), np.array([True, True])))


@pytest.mark.filterwarnings("ignore:An input array is constant")  # scipy, on the constant draws
def test_ranks_and_spearman_match_scipy_with_ties_inf_nan_and_constants():
    from scipy.stats import rankdata, spearmanr

    # hand example: 3.0 twice shares ranks 2 and 3; inf ranks last
    assert average_ranks(np.array([5.0, 3.0, np.inf, 3.0, 1.0])).tolist() == [4.0, 2.5, 5.0, 2.5, 1.0]
    rng = np.random.default_rng(0)
    for trial in range(300):
        n = int(rng.integers(3, 40))
        x = rng.integers(0, 5, n).astype(float) if trial % 2 else rng.normal(size=n)
        y = rng.integers(0, 3, n).astype(float) if trial % 3 else rng.normal(size=n)
        assert np.array_equal(average_ranks(x), rankdata(x))
        assert spearman(x, y) == pytest.approx(spearmanr(x, y).statistic, abs=1e-12, nan_ok=True)
    assert np.isnan(average_ranks(np.array([1.0, np.nan, 2.0]))).all()  # scipy: a NaN makes every rank NaN
    assert math.isnan(spearman(np.array([1.0, np.nan, 2.0, 4.0]), np.arange(4.0)))
    assert math.isnan(spearman(np.ones(5), np.arange(5.0)))  # constant side: undefined
    assert math.isnan(spearman(np.arange(2.0), np.arange(2.0)))  # fewer than 3 pairs
    assert spearman(np.arange(6.0), -np.arange(6.0) ** 3) == -1.0


def test_ndcg_and_top_recall_match_hand_computation():
    y_true = np.arange(20.0)  # gains after min-max scaling: i / 19
    y_score = np.zeros(20)
    y_score[18], y_score[19], y_score[5] = 3.0, 2.0, 1.0  # model ranks: true 18 first, true 19 second
    # k = floor(20 * 10 %) = 2; DCG = g18 / log2(2) + g19 / log2(3); ideal: g19 / log2(2) + g18 / log2(3)
    dcg = (18 / 19) / 1 + 1 / np.log2(3)
    idcg = 1 / 1 + (18 / 19) / np.log2(3)
    assert batch.ndcg(y_true, y_score) == pytest.approx(dcg / idcg)
    assert batch.ndcg(y_true, y_true) == pytest.approx(1.0)
    # worst order: the top 2 are true 0 (gain 0, left out) and true 1 (gain 1/19, rank 2)
    assert batch.ndcg(y_true, -y_true) == pytest.approx((1 / 19) / np.log2(3) / idcg)
    assert batch.ndcg(y_true[:9], y_true[:9]) == 0.0  # k = floor(0.9) = 0: nothing in the top k
    # top 10 %: truly best are 18 and 19 (>= 90th percentile 17.1); the model's top 2 are 18 and 19
    assert batch.top_recall(y_true, y_score) == pytest.approx(1.0)
    y_score[19] = 0.0  # now the model's top 10 % is {18, 5}: half of the truly best
    assert batch.top_recall(y_true, y_score) == pytest.approx(0.5)
    assert spearman(y_true, y_true) == pytest.approx(1.0)


def test_ensemble_layout_and_unscored_rows(tmp_path):
    for seed, scores in ((1, ["1.0", "", "3.0"]), (2, ["2.0", "", "5.0"])):
        pd.DataFrame({"mutant": ["A1C", "A2*", "WT"], "score": scores, "score_sem": ["0.1", "", "0"],
                      "status": ["ok", "stop: A2* is a nonsense (stop) mutation", "ok"]}).to_csv(
            tmp_path / f"s{seed}.csv", index=False)
    files = {1: tmp_path / "s1.csv", 2: tmp_path / "s2.csv"}
    assert batch.write_ensemble(files, tmp_path / "scores.csv", tmp_path / "unscored.csv") == (2, 1)
    scores = pd.read_csv(tmp_path / "scores.csv")
    assert list(scores.columns) == ["mutant", "deepseqvae_seed1", "deepseqvae_seed2", "deepseqvae_ensemble"]
    assert scores["deepseqvae_ensemble"].tolist() == [1.5, 4.0]
    unscored = pd.read_csv(tmp_path / "unscored.csv")
    assert unscored["mutant"].tolist() == ["A2*"] and unscored["status"].iloc[0].startswith("stop:")


def test_batch_without_snakemake_says_how_to_install(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from deepseqvae.cli import main

    monkeypatch.setattr(batch, "snakemake_available", lambda: False)
    ref = write_reference(tmp_path / "ref.csv", [demo_row()])
    result = CliRunner().invoke(main, ["batch", str(ref), "-o", str(tmp_path / "run"), "--steps", "5"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [f"Error: {batch.INSTALL_HINT}"]
    assert 'pip install "deepseqvae[workflow]"' in result.output


# --- checks before Snakemake starts ------------------------------------------------------------------


def test_train_options_are_checked_against_train(tmp_path):
    from deepseqvae.cli import train_command

    def check(options):
        return batch.check_train_options(options, train_command)
    assert check({"steps": 10, "learning_rate": "0.0005", "recipe": None}) == {"steps": 10, "learning_rate": "0.0005",
                                                                              "recipe": None}
    # on/off flags as text: true is the flag, false its other half (or nothing)
    assert check({"refit": "false", "compile": "true", "no_encoder_products": "yes"}) == {
        "no_refit": True, "compile": True, "no_encoder_products": True}
    assert batch.option_args(check({"refit_beside": "off"})) == ["--refit-after"]
    cases = {
        "nonsense": ("3", r"^train option nonsense=3: 'deepseqvae train' has no option --nonsense$"),
        "decoder_hiden": ("8,16", r"no option --decoder-hiden \(did you mean --decoder-hidden\?\)$"),
        "learning_rate": ("fast", r"^train option learning_rate=fast: Invalid value for '--learning-rate': 'fast' "),
        "recipe": ("slow", r"^train option recipe=slow: Invalid value for '--recipe': 'slow' is not one of"),
        "encoder_hidden": ("8,x", r"^train option encoder_hidden=8,x: .*'8,x'"),
        "refit": ("maybe", r"^train option refit=maybe: --refit is an on/off flag; give refit=true or refit=false$"),
        "seed": ("3", r"^train option seed=3: --seed cannot be set .*give them with --seeds$"),
        "theta": ("0.1", r"--theta cannot be set .*MSA_theta"),
        "columns": ("uppercase", r"--columns cannot be set .*same options"),
        "msa_format": ("a3m", r"--msa-format cannot be set"),
        "output": ("x.pt", r"--output cannot be set"),
        # parses, but builds no model: the default 4 sparsity tiles do not divide 501 (found before any job runs)
        "decoder_hidden": ("100,501", r"^train options --steps 10 --decoder-hidden 100,501: recipe fast: the last "
                                      r"decoder layer \(501\) must be divisible by sparsity_tiles \(4\)$"),
    }
    for key, (value, match) in cases.items():
        with pytest.raises(BatchError, match=match):
            check({"steps": 10, key: value})
    # the training-only alignment filter is a train option: train gets it, the weights step does not
    assert check({"max_invariant_changes": "8"}) == {"max_invariant_changes": "8"}
    options = AlignmentOptions(max_gap_fraction=0.5, max_invariant_changes=8)
    assert batch.align_args(options) == ["--max-gap-fraction", "0.5"]


def test_training_only_alignment_option_in_align_is_an_error(tmp_path):
    with pytest.raises(BatchError, match=r"^config: max_invariant_changes in 'align' is a train option \(train: "
                                         r"\{max_invariant_changes: \.\.\.\}, or --train-option "
                                         r"max_invariant_changes=\.\.\.\)$"):
        plan_for(tmp_path, [demo_row("A")], align={"max_invariant_changes": 8})


def test_missing_alignment_or_dms_file_is_an_error_naming_the_row(tmp_path):
    plan = plan_for(tmp_path, [demo_row("A"), demo_row("B", MSA_filename="nothere.a2m"),
                               demo_row("C", DMS_filename="nodms.csv"), demo_row("D", MSA_filename="gone.a2m")])
    with pytest.raises(BatchError, match=r"^\S*ref\.csv: row 1 \(B\): alignment not found: \S*nothere\.a2m; 2 more "
                                         r"row\(s\) lack a file \(fix MSA_filename or --msa-dir; run the 1 row\(s\) "
                                         r"that have both with --rows 0\)$"):
        batch.check_files(plan)
    plan = plan_for(tmp_path, [demo_row("A"), demo_row("C", DMS_filename="nodms.csv")])
    with pytest.raises(BatchError, match=r"ref\.csv: row 1 \(C\): DMS file not found: \S*nodms\.csv \(fix "
                                         r"DMS_filename or --dms-dir; run the 1 row\(s\) that have both with "
                                         r"--rows 0\)$"):
        batch.check_files(plan)
    batch.check_files(plan_for(tmp_path, [demo_row("A")]))  # all there: no error
    plan = plan_for(tmp_path, [demo_row("B", MSA_filename="nothere.a2m")])
    with pytest.raises(BatchError, match=r"nothere\.a2m \(fix MSA_filename or --msa-dir; no selected row has both "
                                         r"files\)$"):
        batch.check_files(plan)


def test_rows_are_written_back_as_ranges():
    assert batch.format_rows([5, 0, 1, 2, 4, 9, 10]) == "0-2,4-5,9-10"
    assert batch.format_rows([3]) == "3" and batch.format_rows([]) == ""
    rows = [0, 1, 2, 7, 9, 10, 11, 40]
    assert batch.parse_rows(batch.format_rows(rows)) == rows


def test_workflow_profile_must_exist(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    check = batch.check_workflow_profile
    with pytest.raises(BatchError, match=r"^--workflow-profile /nonexistent: no such profile folder; a Snakemake "
                                         r"profile is a folder holding a config\.yaml$"):
        check(["--cores", "2", "--workflow-profile", "/nonexistent"])
    with pytest.raises(BatchError, match=r"^--workflow-profile mine: no such profile folder \(looked for mine, "
                                         r"profiles/mine and \S*/workflow/profiles/mine\)"):
        check(["--workflow-profile=mine"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(BatchError, match=r"^--workflow-profile empty: the folder empty has no config\.yaml"):
        check(["--workflow-profile", "empty"])
    (tmp_path / "profiles" / "mine").mkdir(parents=True)
    (tmp_path / "profiles" / "mine" / "config.v8+.yaml").write_text("cores: 2\n")
    (tmp_path / "local.yaml").write_text("cores: 2\n")
    for ok in ("mine", "local.yaml", "none", "slurm", str(SLURM_PROFILE)):  # slurm: the shipped profile, by name
        check(["--workflow-profile", ok])
    check(["--dry-run"])
    # 'none' is no profile: a local run still gets --cores 1; a profile may set the executor
    assert batch.snakemake_command("c.json", "out", extra=["--workflow-profile", "none"])[-4:] == [
        "--cores", "1", "--workflow-profile", "none"]
    assert "--cores" not in batch.snakemake_command("c.json", "out", extra=["--workflow-profile", "slurm"])


def test_run_only_train_options_are_tracked_at_fixed_values():
    """--checkpoint-every and --slim change how a job runs, not its model: the workflow tracks them at fixed values
    (the text jobs recorded before, with batch's default --checkpoint-every 1000), so neither a change of them nor an
    upgrade retrains; a model option still counts."""
    options = {"steps": 10, "latent_dim": 2, "checkpoint_every": 5, "slim": True}
    assert batch.tracked_train_options(options) == {"steps": 10, "latent_dim": 2, "checkpoint_every": 1000}
    assert batch.option_args(batch.tracked_train_options(options)) == batch.option_args(
        {"steps": 10, "latent_dim": 2, "checkpoint_every": 1000})  # what a run before this change recorded
    assert batch.tracked_train_options({"steps": 10, "checkpoint_every": None}) == {"steps": 10,
                                                                                     "checkpoint_every": None}


def test_an_edited_workflow_does_not_retrain():
    """Snakemake's "code" trigger is left out (a new deepseqvae with an edited Snakefile would retrain every finished
    model); the user's own --rerun-triggers replaces the list."""
    cmd = batch.snakemake_command("c.json", "out")
    k = cmd.index("--rerun-triggers")
    assert cmd[k + 1:k + 5] == ["mtime", "params", "input", "software-env"] and "code" not in cmd
    for given in (["--rerun-triggers", "mtime", "code"], ["--rerun-triggers=code"]):
        cmd = batch.snakemake_command("c.json", "out", extra=given)
        assert cmd.count("--rerun-triggers") + sum(a.startswith("--rerun-triggers=") for a in cmd) == 1
        assert cmd[-len(given):] == given


def test_batch_checks_options_and_files_before_snakemake(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from deepseqvae.cli import main

    monkeypatch.setattr(batch, "snakemake_available", lambda: True)

    def no_snakemake(*args, **kwargs):
        raise AssertionError("Snakemake started")

    monkeypatch.setattr(batch, "subprocess", type("NoSubprocess", (), {"run": staticmethod(no_snakemake),
                                                                        "Popen": no_snakemake}))
    ref = write_reference(tmp_path / "ref.csv", [demo_row(), demo_row("MISSING", MSA_filename="nothere.a2m")])
    base = ["batch", str(ref), "--msa-dir", str(REPO_ROOT), "--dms-dir", str(REPO_ROOT), "-o", str(tmp_path / "run")]
    for args, message in (
            (["--rows", "0", "--train-option", "nonsense=3"],
             "Error: train option nonsense=3: 'deepseqvae train' has no option --nonsense"),
            ([], f"Error: {ref}: row 1 (MISSING): alignment not found: {REPO_ROOT / 'nothere.a2m'} (fix MSA_filename "
                 "or --msa-dir; run the 1 row(s) that have both with --rows 0)"),
            (["--rows", "0", "--steps", "20", "--train-option", "steps=50"],
             "Error: --train-option steps=50: batch's own --steps gives it already"),
            (["--rows", "0", "--train-option", "learning_rate=1e-3", "--train-option", "learning-rate=2e-3"],
             "Error: --train-option learning-rate=2e-3: learning_rate is already given (learning_rate=1e-3)"),
            (["--rows", "0", "--workflow-profile", "/nonexistent"],
             "Error: --workflow-profile /nonexistent: no such profile folder; a Snakemake profile is a folder "
             "holding a config.yaml")):
        result = CliRunner().invoke(main, base + args)
        assert result.exit_code == 2, result.output
        assert result.output.strip().splitlines() == [message]
    assert not (tmp_path / "run").exists()


# --- which assays failed, and the partial summary ----------------------------------------------------


def fake_run(tmp_path, jobs_done: dict[str, str], jobs_failed: dict[str, str], status: int):
    """A stand-in for Snakemake: writes the outputs of the jobs done and the logs of all, removes the
    outputs of the failed ones (as Snakemake does), returns ``status``."""
    def run(cmd, check=False):
        out = Path(cmd[cmd.index("--directory") + 1])
        for output, log in jobs_done.items():
            for path, text in ((out / output, "{}"), (out / log, "")):
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
        for output, message in jobs_failed.items():
            log = out / message.split("|")[0]
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text(message.split("|")[1])
            (out / output).unlink(missing_ok=True)
        return subprocess.CompletedProcess(cmd, status)

    class Popen:  # what run_batch starts: the same effects, its status on wait()
        pid = 0  # no process

        def __init__(self, cmd, **kwargs):
            self.returncode = run(cmd).returncode

        def wait(self, timeout=None):
            return self.returncode

    return type("FakeSubprocess", (), {"run": staticmethod(run), "Popen": Popen,
                                       "TimeoutExpired": subprocess.TimeoutExpired})


def test_an_interrupted_batch_lets_snakemake_stop_and_release_its_lock(monkeypatch):
    # subprocess.run killed Snakemake a quarter second after Ctrl-C: its lock stayed (the next run failed until
    # --unlock), and after a SIGTERM to batch Snakemake and its jobs ran on
    import signal

    calls = []

    class Snakemake:
        def __init__(self, cmd, **kwargs):
            calls.append("start")
            self.pid = 12345

        def wait(self, timeout=None):
            calls.append(("wait", timeout))
            if len(calls) == 2:
                raise KeyboardInterrupt  # the user's Ctrl-C, while Snakemake runs
            return 1

        def send_signal(self, sig):
            calls.append(("signal", sig))

        def kill(self):
            calls.append("kill")

    monkeypatch.setattr(batch, "subprocess", type("S", (), {"Popen": Snakemake,
                                                             "TimeoutExpired": subprocess.TimeoutExpired}))
    monkeypatch.setattr(batch.os, "killpg", lambda pid, sig: calls.append(("group signal", sig)))
    with pytest.raises(KeyboardInterrupt):
        batch._run_snakemake(["snakemake"])
    assert calls == ["start", ("wait", None), ("group signal", signal.SIGINT), ("wait", batch.SNAKEMAKE_STOP_SECONDS)]
    # not stopped in time (a job that ignores SIGINT): it and its jobs are killed, not Snakemake alone
    calls.clear()

    def slow_wait(self, timeout=None):
        calls.append(("wait", timeout))
        if len(calls) == 2:
            raise KeyboardInterrupt
        if timeout is not None:
            raise subprocess.TimeoutExpired("snakemake", timeout)
        return -9

    monkeypatch.setattr(Snakemake, "wait", slow_wait)
    with pytest.raises(KeyboardInterrupt):
        batch._run_snakemake(["snakemake"])
    assert calls[-2:] == [("group signal", signal.SIGKILL), ("wait", None)]


def test_batch_says_whether_it_wrote_the_summary(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from deepseqvae.cli import main

    monkeypatch.setattr(batch, "snakemake_available", lambda: True)
    ref = write_reference(tmp_path / "ref.csv", [demo_row()])
    out = tmp_path / "run"
    args = ["batch", str(ref), "--msa-dir", str(REPO_ROOT), "--dms-dir", str(REPO_ROOT), "-o", str(out)]
    # a run that stopped before the summary (Snakemake's --until check), then one that wrote it, then an older one
    for done, until, line in [({}, ["--until", "check"], f"Not summarised: {out}/summary.md was not written (the run "
                                                           "stopped before the summary)"),
                              ({"summary.md": "logs/summary.log"}, [], f"Wrote {out}/scores/ and {out}/summary.md")]:
        monkeypatch.setattr(batch, "subprocess", fake_run(tmp_path, done, {}, status=0))
        result = CliRunner().invoke(main, args + until)
        assert result.exit_code == 0 and result.output.strip().splitlines()[-1] == line, result.output
    age(out)
    monkeypatch.setattr(batch, "subprocess", fake_run(tmp_path, {}, {}, status=0))
    result = CliRunner().invoke(main, args)
    assert result.output.strip().splitlines()[-1] == f"{out}/summary.md is up to date (not written again)"


def age(folder: Path) -> None:
    """Date every file in ``folder`` back to 2001 (an earlier run), whatever the file system's clock resolution."""
    for path in folder.rglob("*"):
        if path.is_file():
            os.utime(path, (1e9, 1e9))


def metrics_json(dms_id: str) -> str:
    return json.dumps({"DMS_id": dms_id, "n_mutants": 10, "n_scored": 10, "spearman": 0.5, "offset": 0,
                       "spearman_seeds": {"1": 0.5}, "focus_mismatches": [], "unscored": {}})


def test_failures_are_those_of_this_run(tmp_path, monkeypatch):
    """A stale log of an earlier run is not reported; a failed job whose old outputs remain is."""
    monkeypatch.setattr(batch, "snakemake_available", lambda: True)
    ref = write_reference(tmp_path / "ref.csv", [demo_row("A"), demo_row("B", MSA_theta=0.3)])
    config = {"reference": str(ref), "msa_dir": str(REPO_ROOT), "dms_dir": str(REPO_ROOT)}
    out = tmp_path / "run"
    plan = batch.make_plan(config)
    key_b = plan.assays["B"].alignment
    # an earlier run: every assay finished (metrics, a full summary), then B's training failed once
    for d in ("A", "B"):
        (out / "metrics").mkdir(parents=True, exist_ok=True)
        (out / "metrics" / f"{d}.json").write_text(metrics_json(d))
    (out / "logs" / "train").mkdir(parents=True)
    stale = out / "logs" / "train" / f"{key_b}_seed1.log"
    stale.write_text("Error: No such option '--nonsense'\n")
    (out / "summary-partial.md").write_text("old")
    age(out)

    # 1. Snakemake stops before any job (an unknown flag): nothing failed in this run
    monkeypatch.setattr(batch, "subprocess", fake_run(tmp_path, {}, {}, status=2))
    status, failed = batch.run_batch(config, out)
    assert (status, failed) == (2, {})
    assert not (out / "summary-partial.md").exists()  # a stale partial summary is removed
    assert batch.collect_failures(plan, out) == {"B": "Error: No such option '--nonsense'"}  # since the epoch

    # 2. A's score job fails (its metrics of the earlier run remain); B's jobs succeed
    model_a = plan.model_path(plan.assays["A"].alignment, 1)
    jobs_done = {f"checks/{d}.json": f"logs/check/{d}.log" for d in ("A", "B")}
    jobs_done[plan.model_path(key_b, 1)] = f"logs/train/{key_b}_seed1.log"
    jobs_done["work/scores/B/seed1.csv"] = "logs/score/B_seed1.log"
    failed_jobs = {"work/scores/A/seed1.csv": f"logs/score/A_seed1.log|Traceback\nError: {model_a}: truncated\n"}
    monkeypatch.setattr(batch, "subprocess", fake_run(tmp_path, jobs_done, failed_jobs, status=1))
    status, failed = batch.run_batch(config, out)
    assert (status, failed) == (1, {"A": f"Error: {model_a}: truncated"})
    partial = (out / "summary-partial.md").read_text()
    assert "| B | 10 | 10 | 0.500 |" in partial and f"- A: FAILED: Error: {model_a}: truncated" in partial
    assert "| A |" not in partial
    assert pd.read_csv(out / "summary-partial.csv")["DMS_id"].tolist() == ["B", "average"]

    # 3. a job failing without an Error line, and a failed training job fails every assay of its alignment
    age(out)
    failed_jobs = {plan.model_path(key_b, 1): f"logs/train/{key_b}_seed1.log|Killed\n",
                   "metrics/A.json": "logs/metrics/A.log|"}
    monkeypatch.setattr(batch, "subprocess", fake_run(tmp_path, {}, failed_jobs, status=1))
    status, failed = batch.run_batch(config, out)
    assert failed == {"A": "the metrics job failed without a message (logs/metrics/A.log)", "B": "Killed"}
    assert not (out / "summary-partial.md").exists()  # nothing finished: no partial summary, and no stale one

    # 4. a dry run, or a run of no job (--unlock, a report), leaves everything as it is
    (out / "summary-partial.md").write_text("old")
    monkeypatch.setattr(batch, "subprocess", fake_run(tmp_path, {}, {}, status=1))
    real_config = (out / "batch_config.json").read_text()
    for args in (["--dry-run"], ["--unlock"], ["--list-changes", "params"], ["-np"], ["--lp"], ["-e", "dryrun"],
                 ["--executor=dryrun"], ["--report", "r.html"], ["--list-untracked"]):
        assert batch.run_batch({**config, "rows": "0"}, out, snakemake_args=args) == (1, {}), args
        assert (out / "summary-partial.md").read_text() == "old"
        # nor is the last real run's config replaced by that of a run of no job (README's snakemake line reads it)
        assert (out / "batch_config.json").read_text() == real_config and not list(out.glob(".batch_config*"))
    # and says so, not "summary.md is up to date"
    assert batch.outcome_line(out, 0, ["--unlock"]) == f"Snakemake --unlock: nothing trained, scored or summarised " \
                                                       f"in {out}"
    assert batch.outcome_line(out, 0, ["--lc=params"]).startswith("Snakemake --lc: nothing trained")


def test_a_locked_folder_is_refused_before_its_config_is_written_and_a_dry_run_writes_a_missing_one(tmp_path,
                                                                                                     monkeypatch):
    # a second real run rewrote batch_config.json before Snakemake's lock refused it (a cluster run's later jobs read
    # that file again); a dry run in a new folder left none, so README's snakemake line failed
    monkeypatch.setattr(batch, "snakemake_available", lambda: True)
    monkeypatch.setattr(batch, "subprocess", fake_run(tmp_path, {}, {}, status=0))
    ref = write_reference(tmp_path / "ref.csv", [demo_row("A")])
    config = {"reference": str(ref), "msa_dir": str(REPO_ROOT), "dms_dir": str(REPO_ROOT)}
    out = tmp_path / "run"
    batch.run_batch(config, out, snakemake_args=["--dry-run"])
    assert json.loads((out / "batch_config.json").read_text())["reference"] == str(ref)
    (out / ".snakemake" / "locks").mkdir(parents=True)
    (out / ".snakemake" / "locks" / "0.input.lock").write_text("")
    before = (out / "batch_config.json").read_text()
    with pytest.raises(BatchError, match=r"run is locked by another Snakemake run in it; if none is running \(a "
                                         r"killed run left its lock\), run this command once with --unlock"):
        batch.run_batch({**config, "seeds": "1,2"}, out)
    assert (out / "batch_config.json").read_text() == before
    assert batch.run_batch(config, out, snakemake_args=["--unlock"])[0] == 0  # what clears it is not refused
    # batch killed while its Snakemake runs on (an orphan in its own session): not "--unlock", which would pull the
    # live run's lock from under it
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / ".snakemake" / "deepseqvae-batch.pid").write_text(f"{sleeper.pid}\n")
        with pytest.raises(BatchError, match=rf"locked by a Snakemake run still going in it \(pid {sleeper.pid}, "
                                             rf"started by a batch that was killed\): wait for it to end, or stop it "
                                             rf"and its jobs with kill -INT -{sleeper.pid}"):
            batch.run_batch(config, out)
    finally:
        sleeper.kill()
        sleeper.wait()
    # files in the locks folder that are not Snakemake's locks (an NFS placeholder) lock nothing
    (out / ".snakemake" / "locks" / "0.input.lock").unlink()
    (out / ".snakemake" / "locks" / ".nfs0000000000abcd").write_text("")
    assert batch.run_batch(config, out)[0] == 0


def test_a_misspelt_score_column_is_said_as_the_check_says_it(tmp_path):
    plan = plan_for(tmp_path, [demo_row("A", DMS_score_column="fitnes")])
    with pytest.raises(BatchError, match=r"row 0 \(A\): DMS_score_column 'fitnes' is not a column of .*demo_mutants"
                                         r"\.csv \(columns: "):
        batch._fitness(plan.assays["A"], batch._read_dms(plan.assays["A"]))


def test_a_failed_run_sets_aside_a_summary_whose_assays_changed_since(tmp_path, monkeypatch):
    # a run that retrained an assay and then failed another left the old summary.md/.csv beside the new outputs
    # (its rho no longer the scores'): it is moved to summary-stale.*, unless nothing it describes changed
    monkeypatch.setattr(batch, "snakemake_available", lambda: True)
    ref = write_reference(tmp_path / "ref.csv", [demo_row("A"), demo_row("B")])
    config = {"reference": str(ref), "msa_dir": str(REPO_ROOT), "dms_dir": str(REPO_ROOT)}
    out = tmp_path / "run"
    (out / "metrics").mkdir(parents=True)
    (out / "metrics" / "A.json").write_text(metrics_json("A"))
    for ext in ("md", "csv", "png"):
        (out / f"summary.{ext}").write_text(f"old {ext}")
    age(out)
    failed_jobs = {"checks/B.json": "logs/check/B.log|Error: row 1 (B): wrong\n"}
    monkeypatch.setattr(batch, "subprocess", fake_run(tmp_path, {}, failed_jobs, status=1))
    assert batch.run_batch(config, out)[1] == {"B": "Error: row 1 (B): wrong"}
    assert (out / "summary.md").read_text() == "old md"  # A's metrics unchanged: the summary still holds
    # now A was rescored in the run that failed: its metrics are newer than the summary
    monkeypatch.setattr(batch, "subprocess", fake_run(tmp_path, {"metrics/A.json": "logs/metrics/A.log"},
                                                      failed_jobs, status=1))
    batch.run_batch(config, out)
    assert not list(out.glob("summary.*"))
    assert sorted(p.name for p in out.glob("summary-stale.*")) == ["summary-stale.csv", "summary-stale.md",
                                                                  "summary-stale.png"]
    assert (out / "summary-stale.csv").read_text() == "old csv"
    # an interrupted run, after a job rewrote metrics, sets the summary aside too
    for ext in ("md", "csv", "png"):
        (out / f"summary.{ext}").write_text(f"old {ext}")
    age(out)

    def interrupted(cmd, out=None):
        (out / "metrics" / "A.json").write_text(metrics_json("A"))
        raise KeyboardInterrupt

    monkeypatch.setattr(batch, "_run_snakemake", interrupted)
    with pytest.raises(KeyboardInterrupt):
        batch.run_batch(config, out)
    assert not list(out.glob("summary.*")) and (out / "summary-stale.md").read_text() == "old md"

    # a summary listing an assay that failed in this run, or whose metrics are gone (a failed metrics job's output is
    # deleted): set aside, so that the next run rebuilds it and retries the assay (it said "Nothing to be done")
    for failed, missing in ((["B"], False), ([], True)):
        (out / "summary.md").write_text("old md")
        (out / "summary.csv").write_text("DMS_id,spearman\nA,0.5\nB,0.4\naverage,0.45\n")
        (out / "metrics" / "B.json").unlink(missing_ok=True)
        if not missing:
            (out / "metrics" / "B.json").write_text(metrics_json("B"))
        age(out)
        assert batch.set_aside_stale_summary(out, failed) == "B"
        assert not (out / "summary.md").exists() and (out / "summary-stale.csv").read_text().startswith("DMS_id")
    (out / "summary.md").write_text("old md")
    (out / "summary.csv").write_text("DMS_id,spearman\nA,0.5\naverage,0.5\n")
    age(out)
    assert batch.set_aside_stale_summary(out, ["B"]) is None and (out / "summary.md").exists()  # B is not in it
    (out / "metrics" / "NA.json").write_text(metrics_json("NA"))  # a DMS_id "NA" is an id, not a missing value
    (out / "summary.csv").write_text("DMS_id,spearman\nNA,0.5\naverage,0.5\n")
    age(out)
    assert batch.set_aside_stale_summary(out, []) is None and (out / "summary.md").exists()


def test_full_summary_removes_the_partial_one(tmp_path):
    plan = plan_for(tmp_path, [demo_row("A")])
    (tmp_path / "A.json").write_text(metrics_json("A"))
    for ext in ("md", "csv", "png"):
        (tmp_path / f"summary-partial.{ext}").write_text("old")
    batch.write_summary(plan, [tmp_path / "A.json"], tmp_path, failed={"B": "Error: x"}, name="summary-partial")
    assert "- B: FAILED: Error: x" in (tmp_path / "summary-partial.md").read_text()
    for ext in ("md", "csv", "png"):
        (tmp_path / f"summary-stale.{ext}").write_text("older")
    batch.write_summary(plan, [tmp_path / "A.json"], tmp_path)
    # the full summary replaces the partial one and any set aside as stale
    assert sorted(p.name for p in tmp_path.glob("summary*")) == ["summary.csv", "summary.md", "summary.png"]


def test_logged_leaves_the_error_in_the_log(tmp_path):
    def fails(kind):
        raise kind("no rows\nin the file")

    assert batch.logged(tmp_path / "ok.log", lambda x: x + 1, 1) == 2
    assert (tmp_path / "ok.log").read_text() == ""
    with pytest.raises(BatchError):
        batch.logged(tmp_path / "a.log", fails, BatchError)
    assert (tmp_path / "a.log").read_text() == "Error: no rows\nin the file\n"
    with pytest.raises(KeyError):
        batch.logged(tmp_path / "b.log", fails, KeyError)
    assert (tmp_path / "b.log").read_text() == "Error: KeyError: 'no rows\\nin the file'\n"


# --- the workflow -------------------------------------------------------------------------------


def run_batch_cli(reference: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "deepseqvae", "batch", str(reference), "--msa-dir", str(REPO_ROOT),
           "--dms-dir", str(REPO_ROOT), "-o", str(out), *args]
    return subprocess.run(cmd, cwd=out.parent, capture_output=True, text=True, env=env, timeout=600,
                          check=False)


def test_a_partial_checkpoint_of_other_settings_is_discarded_not_resumed(tmp_path):
    """A killed job's checkpoint is resumed only with its own settings: after an option changed, a resume would mix
    two runs' settings (or refuse another model)."""
    require_workflow()
    from deepseqvae.alignment import AlignmentOptions, read_alignment
    from deepseqvae.checkpoint import load_checkpoint
    from deepseqvae.pipeline import train_file
    from deepseqvae.weights import compute_weights

    wdir = tmp_path / "weights"
    wdir.mkdir()
    np.save(wdir / "demo_theta_0.2.npy", compute_weights(read_alignment(REPO_ROOT / "alignments" / "demo.a2m",
                                                                        columns="all").codes, 0.2))
    out = tmp_path / "run"
    partial = out / "models" / DEMO_KEY / "seed1.partial.pt"
    train_file(REPO_ROOT / "alignments" / "demo.a2m", partial, options=AlignmentOptions(columns="all"),
               weights_path=wdir / "demo_theta_0.2.npy", device="cpu",
               model_options={"latent_dim": 3, "encoder_hidden": (8, 8), "decoder_hidden": (8, 16),
                              "dictionary_size": 0},
               train_options={"steps": 5, "seed": 1, "checkpoint_every": 5, "refit": False})
    (out / "models" / DEMO_KEY / "seed1.partial.pt.settings").write_text("--latent-dim 3 (a killed job's)")
    ref = write_reference(tmp_path / "ref.csv", [demo_row()])
    proc = run_batch_cli(ref, out, *TINY, "--weights-dir", str(wdir), "--cores", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    log = (out / "logs" / "train" / f"{DEMO_KEY}_seed1.log").read_text()
    assert log.startswith(f"discarded models/{DEMO_KEY}/seed1.partial.pt: trained with other settings"), log
    model = load_checkpoint(out / "models" / DEMO_KEY / "seed1.pt")
    assert model.model_config["latent_dim"] == 2 and model.step == 10  # trained anew with this run's settings
    assert not partial.exists() and not partial.with_name("seed1.partial.pt.settings").exists()


def test_an_edited_reference_row_reruns_its_jobs(tmp_path):
    """A row's jobs follow its values: an edited DMS_score_column is not left to a stale check and summary."""
    require_workflow()
    ref = write_reference(tmp_path / "ref.csv", [demo_row()])
    out = tmp_path / "run"
    proc = run_batch_cli(ref, out, *TINY, "--cores", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = run_batch_cli(ref, out, *TINY, "--cores", "1")
    assert proc.returncode == 0 and executed_rules(proc) == [], proc.stdout + proc.stderr  # nothing to do
    # Neither how a job runs (the checkpoint cadence, a slim checkpoint) nor another spelling of the same files,
    # from another folder, changes a result: nothing reruns.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "link").symlink_to(REPO_ROOT)
    cmd = [sys.executable, "-m", "deepseqvae", "batch", "../ref.csv", "--msa-dir", str(tmp_path / "link"),
           "--dms-dir", os.path.relpath(REPO_ROOT, tmp_path / "elsewhere"), "-o", "../run", *TINY, "--cores", "1",
           "--train-option", "checkpoint_every=3", "--train-option", "slim=true"]
    proc = subprocess.run(cmd, cwd=tmp_path / "elsewhere", capture_output=True, text=True, env=env, timeout=600,
                          check=False)
    assert proc.returncode == 0 and executed_rules(proc) == [], proc.stdout + proc.stderr
    # Nor does the reference's name or the row's number: a copy with a row inserted above it (a new ProteinGym
    # release) reran every check and score job
    copy = write_reference(tmp_path / "ref_2027.csv", [demo_row("NEW", MSA_filename="nothere.a2m"), demo_row()])
    proc = run_batch_cli(copy, out, *TINY, "--cores", "1", "--rows", "1")
    assert proc.returncode == 0 and executed_rules(proc) == [], proc.stdout + proc.stderr
    # another --samples rescores, but checks nothing again (a check draws no sample)
    samples = TINY[:TINY.index("--samples")] + ["--samples", "3"] + TINY[TINY.index("--samples") + 2:]
    proc = run_batch_cli(ref, out, *samples, "--cores", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert set(executed_rules(proc)) == {"score", "ensemble", "metrics", "summary"}, executed_rules(proc)
    # another DMS_score_column: only the metrics read it (it reran the check and then every seed's scoring)
    write_reference(ref, [demo_row(DMS_score_column="")])  # now detected: the same column, but another value
    proc = run_batch_cli(ref, out, *samples, "--cores", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert set(executed_rules(proc)) == {"metrics", "summary"}, executed_rules(proc)
    # another mutant column (the same, detected): the assay's check and scoring run again, not its training
    write_reference(ref, [demo_row(DMS_score_column="", DMS_mutant_column="")])
    proc = run_batch_cli(ref, out, *samples, "--cores", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert {"check", "score", "metrics", "summary"} <= set(executed_rules(proc)) and "train" not in executed_rules(proc)


def executed_rules(proc: subprocess.CompletedProcess) -> list[str]:
    """Rules of the jobs Snakemake ran (the aggregate 'all' left out)."""
    rules = re.findall(r"^(?:local)?rule (\w+):", proc.stdout + proc.stderr, flags=re.MULTILINE)
    return sorted(r for r in rules if r != "all")


@pytest.mark.integration
def test_workflow_end_to_end_rerun_and_failed_row(tmp_path):
    """DEMO + GFP (shared data) + a row with a wrong MSA_start, with tiny models; then a broken model."""
    require_workflow()
    require_shared_data("GFP_AEQVI", "msa.a2m")
    shared = pd.read_csv(REPO_ROOT / "benchmarks" / "reference_shared.csv", dtype=str, keep_default_na=False)
    gfp = shared[shared["DMS_id"].str.startswith("GFP")].iloc[0].to_dict()
    gfp["MSA_filename"] = str(REPO_ROOT / gfp["MSA_filename"])
    gfp["DMS_filename"] = str(REPO_ROOT / gfp["DMS_filename"])
    # WRONG: the focus does not start at MSA_start 1 of this target_seq, which only its check job finds
    ref = write_reference(tmp_path / "ref.csv", [demo_row(), gfp, demo_row("WRONG", target_seq="MKTAY" + DEMO_SEQ)])
    from deepseqvae.alignment import read_alignment
    from deepseqvae.weights import compute_weights

    wdir = tmp_path / "weights"  # DEMO's weights precomputed (reused); GFP's computed by the workflow
    wdir.mkdir()
    np.save(wdir / "demo_theta_0.2.npy", compute_weights(read_alignment(REPO_ROOT / "alignments" / "demo.a2m",
                                                                        columns="all").codes, 0.2))
    out = tmp_path / "run"
    gfp_id = gfp["DMS_id"]
    # A training job killed at step 5 of 10 left its checkpoint: the workflow resumes it.
    from deepseqvae.alignment import AlignmentOptions
    from deepseqvae.pipeline import train_file

    train_file(REPO_ROOT / "alignments" / "demo.a2m", out / "models" / DEMO_KEY / "seed1.partial.pt",
               options=AlignmentOptions(columns="all"), weights_path=wdir / "demo_theta_0.2.npy", device="cpu",
               model_options={"latent_dim": 2, "encoder_hidden": (8, 8), "decoder_hidden": (8, 16),
                              "dictionary_size": 0},
               train_options={"steps": 5, "seed": 1, "checkpoint_every": 5, "refit": False})  # as a killed job

    # 1. All rows: the wrong row fails its own jobs, with one line; the others complete.
    one_thread = ["--set-threads", "weights=1", "train=1", "check=1", "score=1"]  # two jobs at a time
    proc = run_batch_cli(ref, out, *TINY, "--weights-dir", str(wdir), "--cores", "2", *one_thread)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    fail = [ln for ln in proc.stderr.splitlines() if ln.startswith("FAILED")]
    assert len(fail) == 1 and fail[0].startswith("FAILED WRONG: Error: row 2 (WRONG): the alignment's focus "
                                                 "'DEMO/1-60' disagrees with target_seq"), fail
    assert "Error: Snakemake exited with status 1; 1 assay(s) failed" in proc.stderr
    assert not (out / "weights" / f"{DEMO_KEY}.npy").exists()  # precomputed weights used
    train_log = (out / "logs" / "train" / f"{DEMO_KEY}_seed1.log").read_text()
    assert train_log.startswith(f"resuming models/{DEMO_KEY}/seed1.partial.pt")
    from deepseqvae.checkpoint import load_checkpoint

    assert load_checkpoint(out / "models" / DEMO_KEY / "seed1.pt").step == 10
    assert not (out / "models" / DEMO_KEY / "seed1.partial.pt").exists()
    assert [p.name for p in (out / "weights").glob("*.npy")] == ["GFP_AEQVI_msa.npy"]  # computed
    demo = pd.read_csv(out / "scores" / "DEMO.csv")
    assert list(demo.columns) == ["mutant", "deepseqvae_seed1", "deepseqvae_ensemble"] and len(demo) == 1640
    gfp_scores = pd.read_csv(out / "scores" / f"{gfp_id}.csv")
    assert len(gfp_scores) == 1084 and gfp_scores["deepseqvae_ensemble"].notna().all()  # every mutant, L64 too
    assert {"L64M", "L64V", "L64P"} <= set(gfp_scores["mutant"])
    assert pd.read_csv(out / "unscored" / f"{gfp_id}.csv").empty
    metrics = json.loads((out / "metrics" / f"{gfp_id}.json").read_text())
    assert metrics["focus_mismatches"] == ["F64L"] and metrics["n_scored"] == 1084
    assert metrics["auc"] is not None and -1 <= metrics["spearman"] <= 1
    partial = (out / "summary-partial.md").read_text()
    assert "| DEMO | 1,640 | 1,640 |" in partial and "WRONG: FAILED: Error: row 2 (WRONG)" in partial

    # 2. The good rows only: just the summary is left to do; then a rerun does nothing.
    proc = run_batch_cli(ref, out, *TINY, "--weights-dir", str(wdir), "--rows", "0-1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert executed_rules(proc) == ["summary"]
    assert f"Wrote {out}/scores/ and {out}/summary.md" in proc.stdout
    summary = pd.read_csv(out / "summary.csv")
    assert summary["DMS_id"].tolist() == ["DEMO", gfp_id, "average"]
    assert (out / "summary.csv").read_text().splitlines()[1].startswith("DEMO,1640,1640,0.")  # counts as integers
    assert summary["n_scored"].isna().tolist() == [False, False, True]  # no average of counts
    assert (out / "summary.png").stat().st_size > 0
    assert not list(out.glob("summary-partial.*"))  # the full summary replaces the partial one
    proc = run_batch_cli(ref, out, *TINY, "--weights-dir", str(wdir), "--rows", "0-1")
    assert proc.returncode == 0 and executed_rules(proc) == [], proc.stdout + proc.stderr
    assert "Nothing to be done" in proc.stdout + proc.stderr
    assert f"{out}/summary.md is up to date (not written again)" in proc.stdout and "Wrote" not in proc.stdout

    # 3. Delete one score file: only the job that writes it runs again.
    (out / "scores" / "DEMO.csv").unlink()
    proc = run_batch_cli(ref, out, *TINY, "--weights-dir", str(wdir), "--rows", "0-1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert executed_rules(proc) == ["ensemble"]
    assert pd.read_csv(out / "scores" / "DEMO.csv").equals(demo)

    # 4. A truncated model: its score job fails, though the assay's metrics of step 2 are still there.
    model = out / "models" / DEMO_KEY / "seed1.pt"
    model.write_bytes(model.read_bytes()[:500])
    proc = run_batch_cli(ref, out, *TINY, "--weights-dir", str(wdir), "--rows", "0-1")
    assert proc.returncode == 2 and executed_rules(proc) == ["score"], proc.stdout + proc.stderr
    fail = [ln for ln in proc.stderr.splitlines() if ln.startswith("FAILED")]
    assert len(fail) == 1 and fail[0].startswith(f"FAILED DEMO: Error: models/{DEMO_KEY}/seed1.pt: "), fail
    assert "Error: Snakemake exited with status 1; 1 assay(s) failed" in proc.stderr
    partial = (out / "summary-partial.md").read_text()
    assert f"| {gfp_id} | 1,084 | 1,084 |" in partial and "- DEMO: FAILED: Error: models/" in partial

    # 5. Snakemake refuses an option, so no job runs: the failure of step 4 is not reported again.
    proc = run_batch_cli(ref, out, *TINY, "--weights-dir", str(wdir), "--rows", "0-1", "--no-such-option")
    assert proc.returncode == 2 and executed_rules(proc) == [], proc.stdout + proc.stderr
    assert "--no-such-option" in proc.stderr and not [ln for ln in proc.stderr.splitlines() if "FAILED" in ln]
    assert proc.stderr.strip().splitlines()[-1].startswith("Error: Snakemake exited with status 2")
    assert not list(out.glob("summary-partial.*"))


def test_slurm_dry_run_one_training_job_per_alignment_and_seed(tmp_path):
    require_workflow("snakemake_executor_plugin_slurm")
    other = tmp_path / "other" / "demo.a2m"  # a second alignment (a copy of the demo's)
    other.parent.mkdir()
    other.write_text((REPO_ROOT / "alignments" / "demo.a2m").read_text())
    ref = write_reference(tmp_path / "ref.csv", [demo_row("A"), demo_row("B"), demo_row("C", MSA_filename=str(other))])
    out = tmp_path / "run"
    out.mkdir()
    proc = run_batch_cli(ref, out, *TINY, "--seeds", "1,2,3", "--workflow-profile", str(SLURM_PROFILE),
                         "--dry-run")
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text
    jobs = re.findall(r"^rule (\w+):\n(.*?)(?=^\S)", text, flags=re.MULTILINE | re.DOTALL)
    train = [body for rule, body in jobs if rule == "train"]
    assert len(train) == 2 * 3  # 2 alignments x 3 seeds; the three rows share them
    wildcards = sorted(re.search(r"wildcards: (.*)", b).group(1) for b in train)
    assert wildcards == sorted(f"aln={a}, seed={s}" for a in (DEMO_KEY, "other_demo") for s in (1, 2, 3))
    for body in train:  # the profile's resources for training
        res = re.search(r"resources: (.*)", body).group(1)
        for item in ("mem_mb=32000", "runtime=1440", "slurm_partition=gpu", "slurm_account=my_account", "gpu=1"):
            assert item in res.split(", "), res
    assert sum(rule == "score" for rule, _ in jobs) == 3 * 3
    weights = [body for rule, body in jobs if rule == "weights"]
    assert len(weights) == 2 and all("slurm_partition=cpu" in b and "mem_mb=16000" in b for b in weights)
    checks = [body for rule, body in jobs if rule == "check"]  # its own resources (the defaults never applied)
    assert len(checks) == 3 and all("slurm_partition=cpu" in b and "mem_mb=8000" in b for b in checks)
    # the account given on the command line, as the profile says: it replaces default-resources, and every job keeps
    # its partition (the weights and check jobs lost theirs)
    proc = run_batch_cli(ref, out, *TINY, "--seeds", "1", "--workflow-profile", str(SLURM_PROFILE), "--dry-run",
                         "--default-resources", "slurm_account=abc123")
    text = proc.stdout + proc.stderr
    bodies = re.findall(r"^rule (\w+):\n(.*?)(?=^\S)", proc.stdout + proc.stderr, flags=re.MULTILINE | re.DOTALL)
    assert proc.returncode == 0 and bodies, text
    assert {"weights", "check", "train", "score"} <= {rule for rule, _ in bodies}, text
    for rule, body in bodies:
        if rule in ("weights", "check", "train", "score"):
            res = re.search(r"resources: (.*)", body).group(1).split(", ")
            assert "slurm_account=abc123" in res and any(r.startswith("slurm_partition=") for r in res), (rule, res)
    assert "Job stats" in text and not (out / "models").exists()
    assert f"Dry run: nothing trained, scored or summarised in {out}" in text and "Wrote" not in text


def test_an_interrupted_batch_says_that_the_same_command_continues_it(tmp_path, monkeypatch):
    # its jobs' logs say "continue it with --resume", which batch does not take: rerunning it is what resumes them
    from click.testing import CliRunner

    from deepseqvae.cli import main

    monkeypatch.setattr(batch, "snakemake_available", lambda: True)

    def interrupted(cmd, out=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(batch, "_run_snakemake", interrupted)
    ref = write_reference(tmp_path / "ref.csv", [demo_row()])
    result = CliRunner().invoke(main, ["batch", str(ref), "--msa-dir", str(REPO_ROOT), "--dms-dir", str(REPO_ROOT),
                                       "-o", str(tmp_path / "run")])
    assert result.exit_code == 130
    assert result.output.strip().splitlines()[-1] == (
        "Interrupted: batch stopped; every output is written whole or not at all (an earlier one is kept); the same "
        "batch command again continues it (training jobs resume from their checkpoints: their logs' --resume is "
        "done for you)")


def test_summary_notes_an_assay_without_fitness_and_what_the_average_covers(tmp_path):
    # an assay with no fitness column showed dashes and an empty bar with no word, and the average row silently
    # averaged Spearman over fewer assays
    plan = plan_for(tmp_path, [demo_row("A"), demo_row("B")])
    (tmp_path / "A.json").write_text(json.dumps({**json.loads(metrics_json("A")), "fitness_col": "DMS_score"}))
    b = json.loads(metrics_json("B"))
    b.update(fitness_col=None, spearman=None)
    (tmp_path / "B.json").write_text(json.dumps(b))
    batch.write_summary(plan, [tmp_path / "A.json", tmp_path / "B.json"], tmp_path)
    text = (tmp_path / "summary.md").read_text()
    assert ("- B: no fitness column (DMS_score_column is empty and the DMS file has none of DMS_score, fitness, "
            "log_fitness, score): scored, but no Spearman, NDCG or recall") in text
    assert "- average: over the assays that have each value (Spearman 1 of 2" in text
    assert "- A: no fitness column" not in text


def test_a_command_line_block_beside_a_profile_is_warned_about(caplog):
    # --set-resources train:mem_mb=64000 with the SLURM profile replaced its whole block: training lost its GPU
    with caplog.at_level(logging.WARNING, logger="deepseqvae"):
        batch.check_workflow_profile(["--workflow-profile", "slurm", "--set-resources", "train:mem_mb=64000"])
    assert "--set-resources on the command line replaces the whole set-resources block of the profile slurm" in \
        caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="deepseqvae"):
        batch.check_workflow_profile(["--set-threads", "train=8"])  # no profile: nothing to replace
    assert caplog.text == ""


def test_snakemake_starts_in_a_session_of_its_own_with_sigint_at_its_default():
    # preexec_fn ran Python between fork and exec (unsafe in a threaded caller, a notebook's kernel); the child must
    # still lead its own process group (one signal stops it and its jobs) and get SIGINT even where batch ignores it
    import signal

    code = ("import os, signal; print(os.getsid(0) == os.getpid(), os.getpgid(0) == os.getpid(), "
            "signal.getsignal(signal.SIGINT) is signal.default_int_handler)")
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as in a script's background
    try:
        proc = batch._spawn_own_session([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # the caller's disposition given back
    finally:
        signal.signal(signal.SIGINT, before)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and out.split() == ["True", "True", "True"]
