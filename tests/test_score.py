"""ΔELBO scoring: common random numbers, determinism, table handling, ensembles, Spearman."""

import json
import logging
import math
import re
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import spearmanr

from deepseqvae.alphabet import ALPHABET
from deepseqvae.checkpoint import Checkpoint, ModelInfo, save_checkpoint
from deepseqvae.errors import CheckpointError, InvalidMutantError, MutantTableError, OutputError
from deepseqvae.independent import IndependentModel
from deepseqvae.pipeline import score_file
from deepseqvae.score import (
    AUTO_ROUND,
    VAEScorer,
    Welford,
    apply_changes,
    auto_samples,
    delta_elbo,
    probe_changes,
    saturation_scan,
    score_table,
)
from deepseqvae.tables import read_mutant_table

from conftest import TOY_FOCUS, TOY_POSITIONS, TOY_WT, toy_vae_checkpoint


def write_table(path, rows, header="mutant,fitness"):
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def test_apply_changes():
    out = apply_changes(TOY_WT, [(), ((0, 5),), ((1, 2), (9, 0))])
    assert out.shape == (3, 10)
    assert (out[0] == TOY_WT).all()
    assert out[1, 0] == 5 and (out[1, 1:] == TOY_WT[1:]).all()
    assert out[2, 1] == 2 and out[2, 9] == 0


def test_wild_type_and_synonymous_score_exactly_zero():
    _, model = toy_vae_checkpoint()
    variants = apply_changes(TOY_WT, [(), ((3, int(TOY_WT[3])),), ((0, 5),)])
    res = delta_elbo(model, TOY_WT, variants, n_samples=7, seed=1)
    assert res.mean[0] == 0.0 and res.mean[1] == 0.0 and res.sem[0] == 0.0
    assert res.mean[2] != 0.0 and res.sem[2] > 0


def test_scores_are_deterministic_by_seed_and_chunking():
    _, model = toy_vae_checkpoint()
    changes = [((c, a),) for c in range(10) for a in (0, 7, 13) if a != TOY_WT[c]]
    variants = apply_changes(TOY_WT, changes)
    a = delta_elbo(model, TOY_WT, variants, n_samples=5, seed=3)
    b = delta_elbo(model, TOY_WT, variants, n_samples=5, seed=3, batch_size=4)
    c = delta_elbo(model, TOY_WT, variants, n_samples=5, seed=4)
    np.testing.assert_allclose(a.mean, b.mean, rtol=1e-4, atol=1e-5)  # float32 batch-size effects only
    assert np.array_equal(a.mean, delta_elbo(model, TOY_WT, variants, n_samples=5, seed=3).mean)
    assert not np.allclose(a.mean, c.mean)


def test_mean_and_sem_match_per_sample_estimates():
    """With K samples the mean and SEM are those of the K per-sample differences (Welford check)."""
    _, model = toy_vae_checkpoint()
    variants = apply_changes(TOY_WT, [((2, 0),), ((4, 19),)])
    res = delta_elbo(model, TOY_WT, variants, n_samples=6, seed=0)
    # Recompute the 6 per-sample differences by replaying the same generator stream.
    gen = torch.Generator().manual_seed(0)
    diffs = []
    with torch.no_grad():
        codes = torch.as_tensor(np.vstack([TOY_WT[None], variants]))
        for _ in range(6):
            w = model.decoder.draw(generator=gen)
            eps = torch.randn(3, generator=gen).expand(3, 3)
            terms = model(codes, weights=w, eps=eps)
            elbo = terms.elbo.double().numpy()
            diffs.append(elbo[1:] - elbo[0])
    diffs = np.array(diffs)
    np.testing.assert_allclose(res.mean, diffs.mean(0), rtol=1e-5)
    np.testing.assert_allclose(res.sem, diffs.std(0, ddof=1) / np.sqrt(6), rtol=1e-4)


def test_score_table_keeps_every_row_in_order_with_status(tmp_path):
    ck, _ = toy_vae_checkpoint()
    rows = ["K6A:T7W,1.0", "WT,0.0", "L6A,2.0", "M5M,0.5", "K6*,0.1", "Q13A:Q13C,3", "A4G,0.2", "bogus,1", "T7V,"]
    table = read_mutant_table(write_table(tmp_path / "m.csv", rows))
    res = score_table([ck], table, n_samples=3, fitness_col="fitness")
    f = res.frame
    assert list(f["mutant"]) == [r.split(",")[0] for r in rows]
    assert list(f.columns) == ["mutant", "fitness", "score", "score_sem", "status"]
    assert f.loc[1, "score"] == 0.0 and f.loc[3, "score"] == 0.0
    assert f.loc[2, "status"] == "wt_mismatch: L6 but focus has K6"
    assert f.loc[4, "status"].startswith("stop:")
    assert f.loc[5, "status"].startswith("conflicting_substitutions:")
    assert f.loc[6, "status"].startswith("position_not_modelled: 4")
    assert f.loc[7, "status"].startswith("parse_error:")
    assert np.isnan(f.loc[2, "score"]) and np.isfinite(f.loc[0, "score"])
    assert res.summary == {"ok": 4, "parse_error": 1, "stop": 1, "position_not_modelled": 1, "wt_mismatch": 1,
                           "conflicting_substitutions": 1}
    sp = res.spearman
    # scored rows with a fitness value: 0, 1 (WT) and 3 (M5M; row 8 has none); the wild type and the synonymous
    # row score 0 by definition and are not ranked, which leaves one row: no correlation
    assert sp["n"] == 1 and sp["excluded"] == 8 and sp["excluded_no_fitness"] == 1
    assert sp["excluded_no_substitution"] == 2 and math.isnan(sp["rho"])
    # with more substitutions the rho is over exactly those rows
    more = read_mutant_table(write_table(tmp_path / "m2.csv", ["K6A,1.0", "WT,0.0", "L6A,2.0", "M5M,0.5", "Y9F,0.2",
                                                             "T7V,3.0", "I10L,1.5"]))
    res2 = score_table([ck], more, n_samples=8, fitness_col="fitness")
    use = [0, 4, 5, 6]  # L6A is a wt_mismatch (K6)
    want = spearmanr(res2.frame.loc[use, "score"], [1.0, 0.2, 3.0, 1.5]).statistic
    assert res2.spearman["n"] == 4 and res2.spearman["rho"] == pytest.approx(want)


def test_strict_and_nothing_scorable_errors(tmp_path):
    ck, _ = toy_vae_checkpoint()
    table = read_mutant_table(write_table(tmp_path / "m.csv", ["K6A,1", "L6A,2"]))
    with pytest.raises(InvalidMutantError, match=r"line 3 \('L6A'\): wt_mismatch: L6 but focus has K6"):
        score_table([ck], table, n_samples=2, strict=True)
    # every position shifted by +3: the error suggests the offset
    shifted = [f"{a}{p + 3}G,1" for i, (a, p) in enumerate(zip(TOY_FOCUS, TOY_POSITIONS, strict=True))
               if i + 3 >= len(TOY_FOCUS) or TOY_FOCUS[i + 3] != a]  # no coincidental wild-type matches
    table = read_mutant_table(write_table(tmp_path / "s.csv", shifted))
    with pytest.raises(InvalidMutantError, match=r"no mutant can be scored: positions look shifted by -3.*--offset -3"):
        score_table([ck], table, n_samples=2)
    assert score_table([ck], table, n_samples=2, offset=-3).summary["ok"] == len(shifted)


def test_ensemble_columns_and_mean(tmp_path):
    ck1, _ = toy_vae_checkpoint(0)
    ck2, _ = toy_vae_checkpoint(1)
    table = read_mutant_table(write_table(tmp_path / "m.csv", ["K6A,1", "T7W,2", "Y9F,3"]))
    res = score_table([ck1, ck2], table, model_names=["score_a", "score_b"], n_samples=4)
    f = res.frame
    np.testing.assert_allclose(f["score"], (f["score_a"] + f["score_b"]) / 2)
    single = score_table([ck1], table, n_samples=4).frame
    np.testing.assert_allclose(f["score_a"], single["score"])


def test_a_residue_between_modelled_ones_gets_the_columns_all_hint(tmp_path, caplog):
    # residue 9 of the focus is a lowercase (gappy) column of the alignment: not modelled by an uppercase-column model
    ck, _ = toy_vae_checkpoint()
    positions = [p if p < 9 else p + 1 for p in TOY_POSITIONS]  # 5-8 and 10-15
    ck = Checkpoint(**{**ck.__dict__, "info": ModelInfo(**{**ck.info.__dict__, "positions": positions})})
    table = read_mutant_table(write_table(tmp_path / "m.csv", ["K6A,1", "Y9A,2", "M4A,3"]))
    with caplog.at_level(logging.WARNING, logger="deepseqvae"):
        frame = score_table([ck], table, n_samples=2).frame
    assert frame["status"].tolist()[1].startswith("position_not_modelled: 9 is not a modelled column")
    assert "m.csv: 1 row(s) mutate a residue between modelled ones (e.g. 'Y9A'): the model covers the alignment's " \
           "uppercase columns only; one trained with --columns all covers every residue of the focus" in caplog.text
    caplog.clear()  # a residue outside the modelled range (M4A) is not one a wider column choice would cover
    with caplog.at_level(logging.WARNING, logger="deepseqvae"):
        score_table([ck], read_mutant_table(write_table(tmp_path / "n.csv", ["K6A,1", "M4A,3"])), n_samples=2)
    assert "--columns all" not in caplog.text


def test_ensemble_of_models_of_other_focuses_names_the_difference(tmp_path):
    ck, _ = toy_vae_checkpoint()
    table = read_mutant_table(write_table(tmp_path / "m.csv", ["K6A,1"]))
    shifted = Checkpoint(**{**ck.__dict__, "info": ModelInfo(**{**ck.info.__dict__, "focus_id": "TOY/5-14",
                                                                "positions": [p + 1 for p in TOY_POSITIONS]})})
    with pytest.raises(CheckpointError, match=r"numbering: model 2 \(TOY/5-14\) against model 1 \(TOY/5-14\): "
                                              r"modelled residues 6-15 \(10 columns\) against 5-14 \(10 columns\)$"):
        score_table([ck, shifted], table, n_samples=2)
    other = "MKTGYIAKQW"  # residues 8 (A -> G) and 14 (R -> W)
    mutated = Checkpoint(**{**ck.__dict__, "info": ModelInfo(**{**ck.info.__dict__, "focus_seq": other})})
    with pytest.raises(CheckpointError, match=r"residue 8 is G against A \(2 residues differ\)$"):
        score_table([ck, mutated], table, n_samples=2)


def test_api_refuses_what_the_cli_options_refuse(tmp_path):
    # from Python too: no all-zero "ok" scores from n_samples=0, no model column lost to a repeated name
    ck, _ = toy_vae_checkpoint()
    table = read_mutant_table(write_table(tmp_path / "m.csv", ["K6A,1", "T7W,2"]))
    for kwargs, match in [({"n_samples": 0}, "n_samples must be a whole number >= 1"),
                          ({"n_samples": -1}, "n_samples must be"), ({"batch_size": 0}, "batch_size must be"),
                          ({"seed": -1}, r"seed must be a whole number in 0-4294967295"),
                          ({"seed": 2**40}, "seed must be")]:
        with pytest.raises(ValueError, match=match):
            score_table([ck], table, **kwargs)
        with pytest.raises(ValueError, match=match):
            saturation_scan(ck, **kwargs)
    with pytest.raises(ValueError, match=r"model_names must name each of the 2 models once, got \['a', 'a'\]"):
        score_table([ck, ck], table, n_samples=2, model_names=["a", "a"])
    with pytest.raises(ValueError, match=r"each of the 2 models once, got \['a'\]"):
        score_table([ck, ck], table, n_samples=2, model_names=["a"])
    with pytest.raises(TypeError, match="checkpoints must be a Checkpoint or a non-empty list of them"):
        score_table(["m.pt"], table)
    with pytest.raises(TypeError, match="'m.csv' is a path: pass a list of mutants"):
        score_table([ck], "m.csv")
    with pytest.raises(TypeError, match="ckpt must be a Checkpoint"):
        saturation_scan("m.pt")
    assert score_table([ck], table, n_samples=np.int64(2), seed=np.int64(1)).frame["score"].notna().all()


def test_pipeline_takes_lists_of_paths_not_one_path(tmp_path):
    from deepseqvae.pipeline import classify_file, classify_prior_file

    for call in (lambda: score_file("m.csv", "m.pt"), lambda: classify_file("c.csv", models="m.pt"),
                 lambda: classify_prior_file("scan.csv", "p.json")):
        with pytest.raises(TypeError, match=r"must be a list of paths, not one path \('(m\.pt|scan\.csv)'\): "
                                            r"pass \['\1'\]"):
            call()


def test_independent_model_scores_log_ratio(tmp_path):
    codes = np.vstack([TOY_WT, TOY_WT, TOY_WT]).astype(np.int8)
    codes[0, 1] = ALPHABET.index("A")
    model = IndependentModel.fit(codes, np.ones(3), pseudocount=0.0 + 1e-9)
    info = ModelInfo(focus_id="TOY", focus_seq=TOY_FOCUS, positions=TOY_POSITIONS, n_seqs=3, neff=3.0, theta=0.2)
    ck = Checkpoint(kind="independent", model_config=model.config_dict(), state=model.state_dict(), info=info)
    table = read_mutant_table(write_table(tmp_path / "m.csv", ["K6A,1"]))
    score = score_table([ck], table).frame.loc[0, "score"]
    assert score == pytest.approx(np.log(1 / 3) - np.log(2 / 3), abs=1e-6)
    # a negative pseudocount gave NaN scores and a checkpoint its own loader refused; the wrong number of weights
    # numpy's "weights and list don't have the same length"
    from deepseqvae.errors import ConfigError

    for pseudocount in (-0.5, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match=rf"pseudocount must be a number >= 0, not {pseudocount}$"):
            IndependentModel.fit(codes, np.ones(3), pseudocount=pseudocount)
    with pytest.raises(ConfigError, match=r"one weight per sequence, not codes \(3, 10\) and weights \(2,\)"):
        IndependentModel.fit(codes, np.ones(2))
    assert IndependentModel.fit(codes, np.ones(3), pseudocount=np.float32(0.5)).cfg.pseudocount == 0.5


def test_score_file_writes_atomically_and_never_overwrites_input(tmp_path):
    ck, _ = toy_vae_checkpoint()
    save_checkpoint(ck, tmp_path / "m.pt")
    table = write_table(tmp_path / "muts.csv", ["K6A,1", "T7W,2", "Y9F,0.5"], header="mutant,DMS_score")
    res, out, js = score_file(table, [tmp_path / "m.pt"], n_samples=2, device="cpu")
    assert out == tmp_path / "muts_scored.csv" and js == tmp_path / "muts_scored.spearman.json"
    assert json.loads(js.read_text())["fitness_col"] == "DMS_score"  # auto-detected
    assert len(pd.read_csv(out)) == 3
    with pytest.raises(OutputError, match="refusing to overwrite the input"):
        score_file(table, [tmp_path / "m.pt"], output=table, n_samples=2)
    with pytest.raises(OutputError, match=r"refusing to overwrite the input .*m\.pt"):  # the model is an input too
        score_file(table, [tmp_path / "m.pt"], output=tmp_path / "sub" / ".." / "m.pt", n_samples=2)


def test_input_column_named_score_is_not_overwritten(tmp_path):
    ck, _ = toy_vae_checkpoint()
    table = read_mutant_table(write_table(tmp_path / "m.csv", ["K6A,0.9", "T7W,0.1"], header="mutant,score"))
    f = score_table([ck], table, n_samples=2, fitness_col="score").frame
    assert list(f["score"]) == ["0.9", "0.1"]
    assert {"score_deepseqvae", "score_sem_deepseqvae", "status_deepseqvae"} <= set(f.columns)


def test_trace_equals_runs_with_fewer_samples():
    """trace[k] is exactly what a run with n_samples = k (same seed) returns."""
    _, model = toy_vae_checkpoint()
    variants = apply_changes(TOY_WT, [(), ((2, 0),), ((4, 19), (7, 3))])
    full = delta_elbo(model, TOY_WT, variants, n_samples=6, seed=2, trace_at=(1, 3, 6))
    assert sorted(full.trace) == [1, 3, 6]
    for k in (1, 3):
        assert np.array_equal(full.trace[k], delta_elbo(model, TOY_WT, variants, n_samples=k, seed=2).mean)
    assert np.array_equal(full.trace[6], full.mean)
    assert full.trace[1][0] == 0.0  # the wild type stays exactly 0 in the trace too


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_heap_growth_bound_is_applied_on_linux():
    from deepseqvae.runtime import bound_heap_growth

    assert bound_heap_growth() is True
    assert bound_heap_growth(1 << 20) is True  # idempotent (cached)


def test_welford_reliability_is_one_minus_noise_over_spread():
    """R = 1 − mean(s²_m / K) / var_m(mean), by hand on a small matrix."""
    x = np.random.default_rng(0).normal(size=(7, 5)) + np.arange(5) * 0.8  # (K, M)
    acc = Welford(5, "cpu")
    for row in x:
        acc.add(torch.tensor(row, dtype=torch.float64))
    np.testing.assert_allclose(acc.mean.numpy(), x.mean(0))
    np.testing.assert_allclose(acc.m2.numpy(), ((x - x.mean(0)) ** 2).sum(0))
    expected = 1.0 - (x.var(axis=0, ddof=1) / 7).mean() / x.mean(0).var(ddof=1)
    assert acc.reliability() == pytest.approx(expected, rel=1e-12)
    one = Welford(5, "cpu")
    one.add(torch.zeros(5, dtype=torch.float64))
    assert one.reliability() == -np.inf  # undefined from a single sample


def test_min_reliability_stops_on_a_round_with_the_fixed_k_estimate():
    _, model = toy_vae_checkpoint()
    variants = apply_changes(TOY_WT, probe_changes(TOY_WT))
    early = delta_elbo(model, TOY_WT, variants, n_samples=3 * AUTO_ROUND, seed=5, min_reliability=0.0)
    assert early.n_samples == AUTO_ROUND  # any reliability passes at the first check
    fixed = delta_elbo(model, TOY_WT, variants, n_samples=AUTO_ROUND, seed=5)
    assert np.array_equal(early.mean, fixed.mean) and np.array_equal(early.sem, fixed.sem)
    never = delta_elbo(model, TOY_WT, variants, n_samples=2 * AUTO_ROUND + 3, seed=5, min_reliability=1.0)
    assert never.n_samples == 2 * AUTO_ROUND + 3


def test_an_automatic_k_bar_spans_the_round_under_way(capsys):
    """The bar of an automatic K counts to the end of the round under way (its time left is that round's, not the
    most K's), and grows by a round each time one more is needed; a fixed K's bar counts to K."""
    _, model = toy_vae_checkpoint()
    variants = apply_changes(TOY_WT, probe_changes(TOY_WT))

    def bar_totals() -> set[str]:
        text = capsys.readouterr().err
        return set(re.findall(r"\d+/(\d+) \[", text))

    capsys.readouterr()
    delta_elbo(model, TOY_WT, variants, n_samples=3 * AUTO_ROUND, seed=5, min_reliability=0.0, progress=True)
    assert bar_totals() == {str(AUTO_ROUND)}  # done after one round
    delta_elbo(model, TOY_WT, variants, n_samples=2 * AUTO_ROUND + 3, seed=5, min_reliability=1.0, progress=True)
    assert bar_totals() == {str(AUTO_ROUND), str(2 * AUTO_ROUND), str(2 * AUTO_ROUND + 3)}  # round by round
    delta_elbo(model, TOY_WT, variants, n_samples=7, seed=5, progress=True)
    assert bar_totals() == {"7"}


def test_probe_is_a_fixed_set_of_single_substitutions():
    wt = np.tile(TOY_WT, 3)  # L = 30: 570 singles
    probe = probe_changes(wt)
    assert len(probe) == 200 and probe == probe_changes(wt)
    assert all(len(ch) == 1 and ch[0][1] != wt[ch[0][0]] for ch in probe)
    assert len(probe_changes(TOY_WT)) == 19 * len(TOY_WT)  # fewer than 200: all of them


def test_automatic_k_follows_the_posterior_noise():
    """A decoder posterior this narrow needs the first round; one this wide needs the most allowed."""
    _, model = toy_vae_checkpoint()
    with torch.no_grad():
        for ls in model.decoder.log_sigma.values():
            ls.fill_(-10.0)
    assert auto_samples(model, TOY_WT, seed=0, most=400) == AUTO_ROUND
    with torch.no_grad():
        for ls in model.decoder.log_sigma.values():
            ls.fill_(0.0)
    assert auto_samples(model, TOY_WT, seed=0, most=400) == 400


def test_automatic_k_in_one_pass_equals_auto_samples_then_that_k():
    """The probe scored in the table's own pass stops at the K auto_samples finds alone, and the table's scores
    are those of a fixed-K run with that K (the same draws; float rounding apart: other rows share the batches)."""
    ck, model = toy_vae_checkpoint()
    wt = TOY_WT
    changes = [((1, 3),), ((4, 7), (6, 2)), ((2, 11),)]
    for noise, want in ((-10.0, AUTO_ROUND), (-3.0, 3 * AUTO_ROUND), (-1.0, 400)):  # first, third, last round
        with torch.no_grad():
            for ls in model.decoder.log_sigma.values():
                ls.fill_(noise)
        scorer = VAEScorer(model)
        mean, sem, k = scorer.score_changes(wt, changes, n_samples=None, seed=3, device="cpu", batch_size=2048,
                                            progress=False)
        assert k == auto_samples(model, wt, seed=3, most=400) == want
        fixed = delta_elbo(model, wt, apply_changes(wt, changes), n_samples=k, seed=3)
        np.testing.assert_allclose(mean, fixed.mean, rtol=1e-5, atol=1e-6)  # float32 sums in other batch shapes
        np.testing.assert_allclose(sem, fixed.sem, rtol=1e-4, atol=1e-6)
        again = scorer.score_changes(wt, changes, n_samples=7, seed=3, device="cpu", batch_size=2048, progress=False)
        assert again[2] == 7


def test_table_and_scan_agree_under_the_automatic_k(tmp_path):
    """The automatic K depends on the model and seed only: a table of a few singles gets the scan's numbers."""
    ck, _ = toy_vae_checkpoint()
    table = read_mutant_table(write_table(tmp_path / "m.csv", ["K6A,1", "T7W,2", "Y9F,0.5"]))
    res = score_table([ck], table)
    scan = saturation_scan(ck)
    assert res.automatic and res.samples == [scan.n_samples] and scan.n_samples % AUTO_ROUND == 0
    assert res.samples_text() == f"K = {scan.n_samples} samples (automatic)"
    by_name = dict(zip(scan.mutants, scan.score, strict=True))
    np.testing.assert_allclose(res.frame["score"], [by_name[m] for m in ("K6A", "T7W", "Y9F")], rtol=1e-5)
    fixed = score_table([ck], table, n_samples=7)
    assert not fixed.automatic and fixed.samples_text() == "K = 7 samples"


def test_score_table_takes_a_dataframe_or_a_list_in_memory():
    from deepseqvae.tables import mutant_table

    ck, _ = toy_vae_checkpoint()
    frame = pd.DataFrame({"id": [7, 8, 9], "variant": ["M5A", "K6R:T7S", "Z8A"], "fitness": [0.5, -1.0, np.nan]})
    from_file_like = score_table([ck], mutant_table(frame), n_samples=4, seed=1, device="auto", fitness_col="fitness")
    one = score_table(ck, frame, n_samples=4, seed=1)  # one checkpoint, the frame as it is
    assert list(one.frame.columns) == ["id", "variant", "fitness", "score", "score_sem", "status"]
    assert one.frame["id"].dtype == np.int64 and one.frame["fitness"].dtype == np.float64  # the caller's types
    np.testing.assert_array_equal(one.frame["score"], from_file_like.frame["score"])
    assert one.frame["status"].tolist()[2].startswith("unknown_residue")
    assert from_file_like.spearman["n"] == 2
    listed = score_table([ck], ["M5A", "K6R:T7S"], n_samples=4, seed=1)
    np.testing.assert_array_equal(listed.frame["score"], one.frame["score"][:2])
    assert list(listed.frame["mutant"]) == ["M5A", "K6R:T7S"]
    with pytest.raises(InvalidMutantError, match=r"^row 3 \('Z8A'\): unknown_residue"):
        score_table([ck], frame, n_samples=4, strict=True)  # rows in memory are named by number, not file line
    with pytest.raises(TypeError, match=r"'m.csv' is a path: pass a list of mutants \(\['A42G'\]\), a DataFrame, or "
                                        r"read_mutant_table\(path\) for a file"):
        score_table([ck], "m.csv")
    for text in ("M5A", "H1A.R2C"):  # not "a path" (a dot is no file suffix)
        with pytest.raises(TypeError, match=rf"'{text}' is a string: pass a list of mutants"):
            score_table([ck], text)
    # the caller's index stays (it was 0..n-1: assigning the scores back onto a sliced frame gave NaN)
    sliced = frame.set_axis([100, 101, 102])
    kept = score_table(ck, sliced, n_samples=4, seed=1).frame
    assert list(kept.index) == [100, 101, 102]
    np.testing.assert_array_equal(sliced.assign(vae=kept["score"])["vae"], one.frame["score"])
    # column labels that are not strings: mutant_col=1 names the column labelled 1 (was AttributeError: 'int' ...)
    numbered = score_table(ck, mutant_table(frame.set_axis([0, 1, 2], axis=1), mutant_col=1), n_samples=4, seed=1,
                           fitness_col=2)  # the fitness column by its label too (was AttributeError: 'int' ...)
    np.testing.assert_array_equal(numbered.frame["score"], one.frame["score"])
    assert numbered.spearman["fitness_col"] == "2" and numbered.spearman["n"] == 2
    # in memory, messages name mutant_table's arguments, not score's command-line options
    with pytest.raises(MutantTableError, match=r"no mutant column found in the table .* choose the mutant column "
                                               r"with mutant_col=, or give wt_col=/pos_col=/mut_col=$"):
        score_table([ck], pd.DataFrame({"x": ["a"]}))
    with pytest.raises(MutantTableError, match=r"column 'mutnt' \(mutant_col=\) not found in the table"):
        score_table([ck], mutant_table(frame, mutant_col="mutnt"))
    with pytest.raises(TypeError, match="a list of mutant strings"):
        score_table([ck], [1, 2])
    with pytest.raises(TypeError, match="checkpoints must be a Checkpoint or a non-empty list of them"):
        score_table("m.pt", frame)


def test_model_columns_never_replace_an_input_column():
    from deepseqvae.score import model_column_names

    assert model_column_names(["a/m.pt", "b/m.pt", "m_2.pt"]) == ["score_m", "score_m_2", "score_m_2_2"]
    ck, _ = toy_vae_checkpoint()
    ck2, _ = toy_vae_checkpoint(seed=1)
    frame = pd.DataFrame({"mutant": ["K6A", "T7W"], "score_vae": ["x", "y"]})
    got = score_table([ck, ck2], frame, n_samples=2, model_names=["score_vae", "score_sem"]).frame
    # the input's score_vae kept; a model named like the standard columns does not push them aside
    assert list(got.columns) == ["mutant", "score_vae", "score_vae_deepseqvae", "score_sem_deepseqvae", "score",
                                 "score_sem", "status"]
    assert list(got["score_vae"]) == ["x", "y"]
    np.testing.assert_allclose(got["score"], (got["score_vae_deepseqvae"] + got["score_sem_deepseqvae"]) / 2)
