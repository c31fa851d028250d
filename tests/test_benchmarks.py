"""The benchmark machinery: datasets.csv against the reference tables, and reproduce.py end to end."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from benchmarks import reproduce
from deepseqvae.checkpoint import load_checkpoint
from deepseqvae.mutants import resolve_mutants
from deepseqvae.score import score_table
from deepseqvae.tables import numeric_column, read_mutant_table

REPO = Path(__file__).resolve().parent.parent


def test_datasets_csv_rows_and_reading_instructions():
    ds = reproduce.read_datasets()
    assert list(ds.index) == ["BLAT_ECOLX", "PTEN_HUMAN", "GFP_AEQVI", "GFP_AEQVI_ALT", "DEMO"]
    assert ds.loc["BLAT_ECOLX", "fitness_col"] == "2500"
    assert ds.loc["PTEN_HUMAN", "fitness_col"] == "score" and ds.loc["PTEN_HUMAN", "subset"] == "missense"
    assert (ds.loc["PTEN_HUMAN", ["wt_col", "pos_col", "mut_col"]] == ["wildtype", "site", "mutant"]).all()
    assert ds.loc["GFP_AEQVI", "fitness_col"] == "DMS_score"
    # every published value carries its source
    for _, row in ds.iterrows():
        if row["pub_deepsequence_single"]:
            assert row["pub_source"] and row["rho_pp_id"]
        if row["pg_deepsequence_single"]:
            assert row["pg_source"] and row["proteingym_id"]
    assert reproduce.resolve_path("@repo/alignments/demo.a2m", Path("/nowhere")).is_file()
    assert reproduce.resolve_path("BLAT_ECOLX/msa.a2m", Path("/data")) == Path("/data/BLAT_ECOLX/msa.a2m")


@pytest.mark.integration
def test_published_values_equal_the_reference_tables(shared_data):
    """Nothing typed in by hand: every published value equals the reference file it cites."""
    ds = reproduce.read_datasets()
    pg = pd.read_csv(shared_data / "reference" / "DMS_substitutions_Spearman_DMS_level.csv").set_index("DMS ID")
    rp = pd.read_csv(shared_data / "reference" / "rho_pp.csv")
    pg_cols = {"pg_site_independent": "Site-Independent", "pg_evmutation": "EVmutation",
               "pg_deepsequence_single": "DeepSequence (single)", "pg_deepsequence_ensemble": "DeepSequence (ensemble)",
               "pg_eve_single": "EVE (single)", "pg_eve_ensemble": "EVE (ensemble)"}
    rp_cols = {"pub_deepsequence_single": "DeepSequence (published) - single",
               "pub_deepsequence_ensemble": "DeepSequence (published)",
               "pub_deepsequence_replicated": "DeepSequence (replicated)",
               "pub_evmutation": "EVMutation (published)", "pub_site_independent": "PSSM"}
    checked = 0
    for _, row in ds.iterrows():
        if row["proteingym_id"]:
            for col, name in pg_cols.items():
                assert float(row[col]) == pytest.approx(pg.loc[row["proteingym_id"], name], abs=5e-4)
                checked += 1
        if row["rho_pp_id"]:
            sub = rp[rp.protein_name == row["rho_pp_id"]].set_index("prediction_name").rho
            for col, name in rp_cols.items():
                assert float(row[col]) == pytest.approx(sub[name], abs=5e-4)
                checked += 1
    assert checked == 3 * 6 + 2 * 5


def test_missense_mask_excludes_synonymous_and_wild_type_rows():
    res = resolve_mutants(["A1C", "A1A", "WT", "A1*", "C2A:A1A"], "AC", [1, 2])
    assert reproduce.missense_mask(res).tolist() == [True, False, False, True, True]  # stop stays (unscorable)


@pytest.mark.integration
def test_reproduce_end_to_end_on_the_demo(tmp_path):
    """A tiny run of the real script: report files, one row per dataset, a failed dataset reported."""
    out = tmp_path / "res"
    cmd = [sys.executable, "-m", "benchmarks.reproduce", "--profile", "quick", "--datasets", "DEMO,GFP_AEQVI",
           "--steps", "4",
           "--samples", "2", "--data-dir", str(tmp_path / "no-data"), "--out", str(out),
           "--run-dir", str(tmp_path / "runs"), "--save-steps", "2",
           "--model-options", '{"encoder_hidden": [16], "decoder_hidden": [8, 16], "latent_dim": 2}']
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = pd.read_csv(out.with_suffix(".csv"))
    assert table.dataset.tolist() == ["DEMO", "GFP_AEQVI"]
    demo = table.set_index("dataset").loc["DEMO"]
    assert demo.status == "ok" and demo.N == 3000 and demo.L == 60 and demo.rows == 1640
    assert demo.rho_independent > 0.5  # site-independent ~0.75 on the demo
    # The reported rho is that of the saved checkpoint's scores (K = 2, scoring seed 0), recomputed here.
    table_demo = read_mutant_table(REPO / "alignments" / "demo_mutants.csv")
    scored = score_table([load_checkpoint(tmp_path / "runs" / "DEMO_seed1.pt")], table_demo, n_samples=2, seed=0)
    want = spearmanr(scored.frame["score"].to_numpy(float), numeric_column(table_demo, "fitness")).statistic
    assert demo.rho_seed1 == pytest.approx(want, abs=5e-5)  # the CSV keeps 4 decimals
    gfp = table.set_index("dataset").loc["GFP_AEQVI"]
    assert gfp.status.startswith("AlignmentFormatError") or "no-data" in gfp.status  # missing data: failed, kept
    md = out.with_suffix(".md").read_text()
    assert "FAILED" in md and "- command:" in md and "- commit:" in md
    assert (tmp_path / "runs" / "DEMO_seed1_step2.pt").is_file() and (tmp_path / "runs" / "DEMO_seed1.pt").is_file()
    assert np.isfinite(demo.t_train_s)
    json.dumps(demo.to_dict(), default=str)  # the row is plain data


def test_label_neighbours_counts_carriers_by_identity_to_the_focus(tmp_path):
    from benchmarks.label_neighbours import carriers
    from deepseqvae.alignment import AlignmentOptions
    from deepseqvae.weights import compute_weights

    # Focus ACDE (positions 1-4). Carriers of F at position 4: ACDF (identity 3/4) and KKKF (0/4);
    # ACDE itself and GGGE do not carry it; ACD- has a gap there (not counted in the frequency).
    path = tmp_path / "tiny.a2m"
    path.write_text(">focus/1-4\nACDE\n>s1\nACDF\n>s2\nKKKF\n>s3\nGGGE\n>s4\nACD-\n")
    aln = AlignmentOptions().read(path)
    w = np.asarray(compute_weights(aln.codes, 0.2))  # (5,)
    got = carriers(aln, w, "E4F")
    assert (got["n_0.0"], got["n_0.3"], got["n_0.5"], got["n_0.7"], got["n_close"]) == (1, 0, 0, 1, 1)
    # band < 30 %: KKKF (carrier) and GGGE (present, not a carrier); band >= 70 %: focus, ACDF, ACD- (gap)
    assert got["freq_0.0"] == pytest.approx(w[2] / (w[2] + w[3]))
    assert got["freq_0.7"] == pytest.approx(w[1] / (w[0] + w[1]))
    assert np.isnan(got["freq_0.3"]) and np.isnan(got["freq_0.5"])
    assert got["freq_close"] == pytest.approx(got["freq_0.7"])


def test_compare_screen_pairs_runs_and_applies_the_rule(tmp_path):
    from benchmarks.compare_screen import compare, load_runs

    def run(ds, seed, iwll):  # a recipe_search line with held-out IWLL at steps 100, 200, ...
        return json.dumps({"dataset": ds, "train": {"seed": seed}, "heldout_iwll": iwll,
                           "eval_step": [100 * (i + 1) for i in range(len(iwll))], "train_s": 1.0, "rho": None})

    cur, cand = tmp_path / "cur.jsonl", tmp_path / "cand.jsonl"
    cur.write_text("\n".join([run("A", 1, [-10, -8, -9]), run("B", 1, [-20, -21]), run("C", 2, [-5])]))
    # best -8 → -3 (+5), -20 → -19 (+1), -5 → -9 (−4): mean +2/3, one pair worse by > 3
    cand.write_text("\n".join([run("A", 1, [-3]), run("B", 1, [-19, -30]), run("C", 2, [-9, -12]),
                               run("D", 1, [-1])]))
    text, adopted = compare(load_runs(cur), load_runs(cand), min_mean=1.0, max_worse=2, worse_by=3.0)
    assert not adopted and "mean Δ +0.67" in text and "1 worse by more than 3" in text
    assert "| A | 1 | -8.00 (200) | -3.00 (100) | +5.00 |" in text
    assert "| D | 1 | missing | present | unpaired" in text  # listed, not dropped
    _, adopted = compare(load_runs(cur), load_runs(cand), min_mean=0.5, max_worse=1, worse_by=3.0)
    assert adopted
    _, adopted = compare(load_runs(cur), load_runs(cand), min_mean=0.5, max_worse=0, worse_by=3.0)
    assert not adopted
    cand.write_text(run("A", 1, [-3]) + "\n" + run("A", 1, [-4]))
    with pytest.raises(SystemExit, match="a second run of A seed 1"):
        load_runs(cand)


def test_train_benchmark_runs_bfloat16_paths_only_on_native_units():
    from benchmarks.bench_train import PATHS, planned_paths

    assert planned_paths(True) == PATHS
    emulated = planned_paths(False)
    assert all(spec[1].get("matmul_dtype") != "bfloat16" for spec in emulated.values())
    # the fast recipe's rows remain, in float32 (its "auto" choice there); the other bf16 paths are dropped
    assert "fast recipe (float32 products here, weight average)" in emulated
    assert "paper recipe, bf16 products" not in emulated and "paper recipe, float32" in emulated
    assert len(emulated) == len(PATHS) - 2


def test_bench_commits_run_once_reports_the_childs_own_peak_memory(tmp_path):
    """A command that allocates ~200 MB reports a peak above it; a failing one is an error naming its tree."""
    from benchmarks.bench_commits import run_once

    repo = Path(__file__).resolve().parents[1]
    seconds, peak, last = run_once(repo, ["--version"], tmp_path)
    assert seconds > 0 and 0.01 < peak < 2.0 and "deepseqvae" in last.lower()
    # the same helper with a fake deepseqvae package that holds 200 MB: its own peak, not the parent's
    fake = tmp_path / "fake" / "deepseqvae"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "__main__.py").write_text("import sys\nblock = bytearray(200 * 2**20)\nblock[::4096] = b'x' * "
                                      "len(block[::4096])\nprint('held', len(block))\nsys.exit(int(sys.argv[1]))\n")
    _, peak, last = run_once(fake.parent, ["0"], tmp_path)
    assert peak > 200 / 1024 and last == f"held {200 * 2**20}"
    with pytest.raises(SystemExit, match="fake: the command failed \\(exit 3\\): held"):
        run_once(fake.parent, ["3"], tmp_path)


def test_epistasis_by_hand():
    from benchmarks.epistasis import compare, epistasis

    mutants = pd.Series(["A1C", "D2E", "F3G", "A1C:D2E", "A1C:F3G", "D2E:F3G"])
    truth = epistasis(mutants, pd.Series([-1.0, -2.0, -3.0, -5.0, -4.0, -6.0]))
    assert truth["mutant"].tolist() == ["A1C:D2E", "A1C:F3G", "D2E:F3G"]
    assert truth["additive"].tolist() == [-3.0, -4.0, -5.0]  # ε = -2, 0, -1
    model = epistasis(mutants, pd.Series([-1.0, -2.0, -3.0, -3.5, -4.0, -5.5]))  # ε = -0.5, 0, -0.5
    m = compare(truth, model)
    assert m["mean_abs_eps_true"] == pytest.approx(1.0) and m["mean_abs_eps_model"] == pytest.approx(1 / 3)
    assert m["pearson_eps"] == pytest.approx(np.corrcoef([-0.5, 0, -0.5], [-2, 0, -1])[0, 1])
    assert m["rho_doubles"] == pytest.approx(0.5)  # ranks 3, 2, 1 against the truth's 2, 3, 1: 1 - 6 * 2 / 24
    additive = compare(truth, epistasis(mutants, pd.Series([-1.0, -2.0, -3.0, -3.00001, -4.0, -5.0])))  # rounding
    assert np.isnan(additive["pearson_eps"]) and additive["mean_abs_eps_model"] == pytest.approx(0.0, abs=1e-5)
