"""End-to-end tests of the ``deepseqvae`` command line (click's CliRunner, plus real subprocesses).

The demo family (``alignments/demo.a2m``, ``alignments/demo_mutants.csv``) has a known answer:
``fitness`` is the exact Potts energy difference of every mutant. A tiny VAE trained for 300 steps
(a few seconds on one CPU thread) reaches a Spearman rho of about 0.79-0.80 against it (seeds 1-3),
the site-independent model about 0.75. Bad input must give exit status 2 and one line
``Error: ...`` on stderr that names the file (and the record), never a traceback.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner, Result

from deepseqvae import __version__
from deepseqvae.alignment import read_alignment
from deepseqvae.cli import main
from deepseqvae.errors import DeepSeqVAEError, OutputError
from deepseqvae.fileio import check_output

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_A2M = REPO_ROOT / "alignments" / "demo.a2m"
DEMO_CSV = REPO_ROOT / "alignments" / "demo_mutants.csv"
N_DEMO_MUTANTS = 19 * 60 + 500

#: a tiny VAE: 300 steps take ~1.5 s on one CPU thread
TINY_VAE = ["--steps", "300", "--encoder-hidden", "64", "--decoder-hidden", "16,64", "--latent-dim", "4",
            "--dictionary-size", "0", "--seed", "1", "--no-progress", "--device", "cpu"]
#: measured rho of the tiny VAE on the demo (K = 20): 0.792 (seed 1), 0.791 (2), 0.802 (3)
MIN_VAE_RHO = 0.6
#: measured rho of the site-independent model on the demo: 0.747
MIN_INDEPENDENT_RHO = 0.5


def invoke(*args, **kwargs) -> Result:
    """Run the CLI in-process with string arguments (stderr kept apart from stdout)."""
    return CliRunner().invoke(main, [str(a) for a in args], **kwargs)


def assert_ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "Traceback" not in result.output
    return result


def assert_user_error(result: Result, *fragments: str) -> str:
    """Exit status 2, exactly one line on stderr starting with 'Error:', nothing on stdout, no traceback.

    Returns the line; every fragment must occur in it.
    """
    assert result.exit_code == 2, f"exit code {result.exit_code}: {result.output!r} {result.exception!r}"
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert result.stdout == ""
    lines = result.stderr.strip("\n").splitlines()
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith("Error: "), line
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    return line


def read_csv_text(path: Path) -> pd.DataFrame:
    """A CSV with every cell as the exact text written."""
    return pd.read_csv(path, dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def demo_focus() -> str:
    return read_alignment(DEMO_A2M).focus_seq


@pytest.fixture(scope="module")
def vae_model(tmp_path_factory) -> tuple[Path, Result]:
    """The tiny VAE trained on the demo family (checkpoint path, result of 'train')."""
    out = tmp_path_factory.mktemp("vae") / "demo.pt"
    result = assert_ok(invoke("train", DEMO_A2M, "-o", out, *TINY_VAE))
    return out, result


@pytest.fixture(scope="module")
def vae_scored(vae_model, tmp_path_factory) -> tuple[Path, Result]:
    """The demo mutants scored by the tiny VAE (output CSV path, result of 'score')."""
    out = tmp_path_factory.mktemp("scored") / "demo_scored.csv"
    result = assert_ok(invoke("score", DEMO_CSV, "--model", vae_model[0], "-o", out, "--fitness-col", "fitness",
                              "--samples", 20, "--no-progress", "--device", "cpu"))
    return out, result


@pytest.fixture(scope="module")
def independent_model(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("independent") / "si.pt"
    assert_ok(invoke("train", DEMO_A2M, "--model", "independent", "-o", out, "--no-progress", "--device", "cpu"))
    return out


# --- help and version ----------------------------------------------------------------------------------


#: the commands these tests exercise; the help tests cover every registered command
CORE_COMMANDS = ["weights", "train", "info", "score", "simulate"]


def test_group_help_lists_every_command():
    assert set(CORE_COMMANDS) <= set(main.commands)
    for flag in ("--help", "-h"):
        result = assert_ok(invoke(flag))
        assert "Usage:" in result.output and "--version" in result.output and "--verbose" in result.output
        for name, command in main.commands.items():
            if command.hidden:  # batch-job: the batch workflow's single jobs, not for users
                assert not re.search(rf"^\s+{name}\s", result.output, re.MULTILINE), name
                continue
            assert re.search(rf"^\s+{name}\s", result.output, re.MULTILINE), name


#: every option of every command, written out: users' scripts depend on them, so renaming or
#: dropping one must fail here (and so must a command added without its options listed)
ALIGNMENT_OPTIONS = ["--focus", "--first-index", "--msa-format", "--max-gap-fraction", "--min-column-coverage",
                     "--columns"]
COMMAND_OPTIONS = {
    "weights": ["--theta", "-o", "--output", "--device", "--progress", "--no-progress", *ALIGNMENT_OPTIONS],
    "train": ["-o", "--output", "--model", "--recipe", "--steps", "--batch-size", "--learning-rate", "--variance-lr",
              "--seed", "--device",
              "--decoder", "--theta", "--weights", "--max-invariant-changes", "--latent-dim", "--encoder-hidden",
              "--decoder-hidden",
              "--dictionary-size", "--sparsity-tiles", "--dropout", "--pseudocount", "--holdout", "--holdout-by",
              "--refit", "--no-refit", "--refit-beside", "--refit-after", "--early-stopping", "--stop-on",
              "--eval-rows",
              "--init-bias", "--profile-pseudocount", "--checkpoint-every", "--compile", "--no-compile",
              "--products", "--encoder-products", "--no-encoder-products", "--resume", "--slim", "--progress",
              "--no-progress",
              *ALIGNMENT_OPTIONS],
    "info": ["--plot"],
    "score": ["-m", "--model", "-o", "--output", "--mutant-col", "--wt-col", "--pos-col", "--mut-col", "--offset",
              "--samples", "--seed", "--device", "--strict", "--fitness-col", "--batch-size", "--progress",
              "--no-progress"],
    "simulate": ["-o", "--out-dir", "--seed", "--n-seqs", "--length", "--pairs", "--n-doubles"],
    "scan": ["-m", "--model", "-o", "--output", "--plot", "--samples", "--seed", "--device", "--batch-size",
             "--per-row", "--progress", "--no-progress"],
    "embed": ["-m", "--model", "-o", "--output", "--plot", "--color-by", "--batch-size", "--device",
              *ALIGNMENT_OPTIONS],
    "sample": ["-m", "--model", "-n", "-o", "--output", "--temperature", "--seed", "--near", "--interpolate",
               "--steps", "--msa", "--elbo-samples", "--batch-size", "--device", "--progress", "--no-progress",
               *ALIGNMENT_OPTIONS],
    "classify": ["-m", "--model", "--scan", "-o", "--output", "--labels", "--label-col", "--label-mutant-col",
                 "--protein", "--offset",
                 "--prior", "--protein-weight", "--retain", "--thresholds", "--monotone", "--no-monotone", "--n-init",
                 "--gmm-seed", "--plots", "--no-plots", "--samples", "--seed", "--device", "--batch-size",
                 "--progress", "--no-progress"],
    "classify-prior": ["-o", "--output", "--n-init", "--gmm-seed", "--seed"],
    "batch": ["--msa-dir", "--dms-dir", "--weights-dir", "-o", "--out", "--rows", "--seeds", "--columns", "--steps",
              "--recipe", "--latent-dim", "--encoder-hidden", "--decoder-hidden", "--dictionary-size",
              "--sparsity-tiles", "--checkpoint-every", "--train-option", "--samples", "--device", "--cores",
              "--keep-going", "--no-keep-going"],
    "batch-job": [],  # hidden: the workflow's single jobs (check, score)
}


def test_every_command_has_its_listed_options():
    assert sorted(main.commands) == sorted(COMMAND_OPTIONS)
    for name, flags in COMMAND_OPTIONS.items():
        have = {f for p in main.commands[name].params if isinstance(p, click.Option) for f in p.opts + p.secondary_opts}
        assert have == set(flags), f"{name}: missing {set(flags) - have}, unlisted {have - set(flags)}"


@pytest.mark.parametrize("name", sorted(COMMAND_OPTIONS))
def test_command_help_lists_every_option(name):
    result = assert_ok(invoke(name, "--help"))
    assert "Usage:" in result.output and "--help" in result.output
    for flag in COMMAND_OPTIONS[name]:
        # the flag as a word of the option column, not inside another flag's name
        assert re.search(rf"(^|[\s,/]){re.escape(flag)}([\s,/=]|$)", result.output, re.MULTILINE), \
            f"{name} --help does not list {flag}"


def test_train_help_names_the_options_the_tests_use():
    text = assert_ok(invoke("train", "--help")).output
    for flag in [a for a in TINY_VAE if a.startswith("--")] + ["--model", "--output", "-o"]:
        assert flag in text, flag


def test_version():
    result = assert_ok(invoke("--version"))
    assert result.output.strip() == f"deepseqvae, version {__version__}"


@pytest.mark.parametrize("args, fragments", [
    (["scan", "-m", "a.pt", "-m", "b.pt"], ["scan: -m/--model given 2 times ('a.pt', 'b.pt'): scan uses one model",
                                           "'score' and 'classify' take several --model"]),
    (["embed", "msa.a2m", "-ma.pt", "--model=b.pt", "-o", "e.csv"], ["-m/--model given 2 times ('a.pt', 'b.pt')"]),
    (["sample", "-m", "a.pt", "-n", "3", "--model", "b.pt", "-m", "c.pt"],
     ["sample: -m/--model given 3 times ('a.pt', 'b.pt', 'c.pt'): sample uses one model"]),
])
def test_several_models_where_one_is_used_is_an_error(args, fragments):
    # click keeps the last value without a word: an "ensemble scan" would scan the last model alone
    assert_user_error(invoke(*args), *fragments)


def test_classify_refuses_an_ensemble_of_two_proteins_before_scanning(independent_model, tmp_path, monkeypatch):
    lines = DEMO_A2M.read_text().splitlines(keepends=True)
    lines[1] = lines[1][:5].lower() + lines[1][5:]  # another numbering: the focus's first 5 columns not modelled
    (tmp_path / "narrower.a2m").write_text("".join(lines))
    other = tmp_path / "other.pt"
    assert_ok(invoke("train", tmp_path / "narrower.a2m", "--model", "independent", "-o", other, "--no-progress"))

    def no_scan(*args, **kwargs):
        raise AssertionError("scanned before the models were compared")

    monkeypatch.setattr("deepseqvae.pipeline.saturation_scan", no_scan)
    assert_user_error(invoke("classify", "-m", independent_model, "-m", other, "-o", tmp_path / "c.csv"),
                      f"{other}: not a model of the protein and numbering of {independent_model} (modelled residues "
                      "1-60 (60 columns) against 6-60 (55 columns)): an ensemble averages the models of one protein")
    assert not (tmp_path / "c.csv").exists()


def test_repeated_model_allows_what_is_not_a_conflict():
    from deepseqvae.cli import repeated_model

    scan = main.commands["scan"]
    ctx = click.Context(scan, info_name="scan")
    # one model twice, another option repeated (click's last value wins, as scripts expect), a model after "--"
    for args in (["-m", "a.pt", "--model", "a.pt"], ["-m", "a.pt", "-o", "x.csv", "-o", "y.csv"],
                 ["-m", "a.pt", "--", "-m", "b.pt"]):
        assert repeated_model(scan, ctx, args) is None, args
    assert repeated_model(scan, ctx, ["-m", "a.pt", "-m", "b.pt", "--help"]) is None  # the help first
    score = main.commands["score"]  # takes several (an ensemble)
    assert repeated_model(score, click.Context(score), ["t.csv", "-m", "a.pt", "-m", "b.pt"]) is None


# --- train -> info -> score on the demo ----------------------------------------------------------------


def test_train_prints_a_summary(vae_model):
    path, result = vae_model
    assert path.is_file()
    assert "Model: vae (fast recipe), alignment of N = 3000 sequences, L = 60 columns, Neff = 653.6" in result.stdout
    assert re.search(r"Steps: 300 \([\d.]+ steps/s on cpu \(600 steps of both runs\)\); final ELBO -?\d",
                     result.stdout)  # the fast recipe's held-out run and its refit
    assert f"Wrote {path}" in result.stdout
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind


def test_info_describes_the_checkpoint(vae_model):
    result = assert_ok(invoke("info", vae_model[0]))
    fields = dict(line.strip().split(": ", 1) for line in result.stdout.splitlines())
    assert fields["kind"] == "vae"
    assert fields["focus"] == "DEMO/1-60"
    assert fields["modelled columns (L)"] == "60"
    assert fields["residues"] == "1-60"
    assert fields["sequences (N)"] == "3000"
    assert fields["Neff"] == "653.62"
    assert fields["steps"] == "300"
    assert "encoder_hidden=(64,)" in fields["model config"] and "latent_dim=4" in fields["model config"]
    assert "decoder_hidden=(16, 64)" in fields["model config"] and "dictionary_size=0" in fields["model config"]
    assert "seed=1" in fields["train config"]
    assert math.isfinite(float(fields["final ELBO"])) and len(fields["final ELBO"].split(".")[-1]) <= 2
    # the training data's digest, as a resume checks it; a checkpoint written before digests says what that means
    from dataclasses import replace

    from deepseqvae.checkpoint import describe, load_checkpoint

    ckpt = load_checkpoint(vae_model[0])
    assert fields["training data"] == f"digest {ckpt.info.data_digest}" and ckpt.info.data_digest
    old = describe(replace(ckpt, info=replace(ckpt.info, data_digest="")))
    assert old["training data"].startswith("no digest") and "N, Neff and theta only" in old["training data"]
    before = replace(ckpt, info=replace(ckpt.info, positions=list(range(-5, 55))))  # numbered from before residue 1
    assert describe(before)["residues"] == "-5 to 54"
    # the fast recipe's run: what the held-out set decided and the second run that made the model
    assert re.fullmatch(r"0\.1 by weight, evaluated every 100 steps to step 300; it chose step \d+ \(best "
                        r"held-out log-likelihood -[\d.]+\)", fields["held out"]), fields["held out"]
    assert fields["refit"] == ("a second run on all 3,000 sequences to step 300: the model saved (the train config is "
                               "the refit's: early_stopping 0 and stop_step that step; the held-out run stopped early)")
    assert "early_stopping=0" in fields["train config"]  # what that line explains


def test_train_summary_says_what_was_held_out(tmp_path):
    """The summary gives the split's own share, not the one asked: a family of 8 unrelated sequences (each its own
    80 %-identity cluster, weight 1) holds out one whole sequence, 1/8 = 12.5 % of the weight (it said "10 %")."""
    amino = "ACDEFGHIKLMNPQRSTVWY"
    rng = random.Random(0)
    focus = "".join(rng.choice(amino) for _ in range(30))
    records = [(">focus/1-30", focus)]
    for i in range(7):  # 12 of 30 residues redrawn: at most ~60 % identity to the focus or to each other
        seq = list(focus)
        for k in rng.sample(range(30), 12):
            seq[k] = rng.choice(amino)
        records.append((f">s{i}", "".join(seq)))
    msa = tmp_path / "eight.a2m"
    msa.write_text("".join(f"{h}\n{s}\n" for h, s in records))
    result = invoke("train", msa, "-o", tmp_path / "m.pt", "--steps", 20, "--latent-dim", 2, "--encoder-hidden", "8,8",
                    "--decoder-hidden", "8,16", "--dictionary-size", 0, "--no-progress", "--device", "cpu")
    assert_ok(result)
    assert re.search(r"Held out: 1 sequence, 12% of the sequence weight \(by weight, 10% asked; split in \d+\.\d s\); "
                     "held-out", result.stdout), result.stdout


def test_score_demo_spearman_and_output(vae_scored):
    out, result = vae_scored
    assert f"Scored {N_DEMO_MUTANTS} of {N_DEMO_MUTANTS} rows with 1 model(s), K = 20 samples." in result.stdout
    assert "Not scored" not in result.stderr
    match = re.search(r"Spearman rho = (-?[\d.]+) against 'fitness' over (\d+) mutants \(0 excluded", result.stdout)
    assert match, result.stdout
    rho = float(match.group(1))
    assert int(match.group(2)) == N_DEMO_MUTANTS
    assert rho > MIN_VAE_RHO, rho
    assert f"Wrote {N_DEMO_MUTANTS} rows to {out}" in result.stdout

    # every input row and cell, in order, plus score, score_sem and status
    given, scored = read_csv_text(DEMO_CSV), read_csv_text(out)
    assert list(scored.columns) == list(given.columns) + ["score", "score_sem", "status"]
    pd.testing.assert_frame_equal(scored[given.columns], given)
    assert (scored["status"] == "ok").all()
    score = scored["score"].astype(float).to_numpy()
    sem = scored["score_sem"].astype(float).to_numpy()
    assert np.isfinite(score).all() and np.isfinite(sem).all() and (sem > 0).all()

    json_path = out.with_suffix(".spearman.json")
    assert f"written to {json_path}" in result.stdout
    payload = json.loads(json_path.read_text())
    assert payload["rho"] == pytest.approx(rho, abs=5e-5)
    assert payload["n"] == N_DEMO_MUTANTS and payload["fitness_col"] == "fitness"
    assert payload["n_samples"] == 20 and payload["status_summary"] == {"ok": N_DEMO_MUTANTS}
    # the rho in the JSON is that of the written scores
    from scipy.stats import spearmanr
    assert spearmanr(score, given["fitness"].astype(float)).statistic == pytest.approx(payload["rho"], abs=1e-3)


def test_score_same_seed_same_file(vae_model, vae_scored, tmp_path):
    again = tmp_path / "again.csv"
    assert_ok(invoke("score", DEMO_CSV, "-m", vae_model[0], "-o", again, "--fitness-col", "fitness",
                     "--samples", 20, "--no-progress", "--device", "cpu"))
    assert again.read_bytes() == vae_scored[0].read_bytes()


def test_score_uses_the_automatic_k_by_default(vae_model, tmp_path):
    table = tmp_path / "few.csv"
    table.write_text("\n".join(DEMO_CSV.read_text().splitlines()[:6]) + "\n")  # header + 5 mutants
    out = tmp_path / "few_scored.csv"
    result = assert_ok(invoke("score", table, "-m", vae_model[0], "-o", out, "--fitness-col", "fitness",
                              "--no-progress", "--device", "cpu"))
    match = re.search(r"rows with 1 model\(s\), K = (\d+) samples \(automatic\)\.", result.stdout)
    assert match, result.stdout
    k = int(match.group(1))
    assert k % 50 == 0 and 50 <= k <= 400
    assert json.loads(out.with_suffix(".spearman.json").read_text())["n_samples"] == k
    fixed = tmp_path / "fixed.csv"  # the automatic K is what --samples K gives
    assert_ok(invoke("score", table, "-m", vae_model[0], "-o", fixed, "--fitness-col", "fitness", "--samples", k,
                     "--no-progress", "--device", "cpu"))
    assert fixed.read_bytes() == out.read_bytes()


def test_samples_help_states_the_automatic_rule():
    from deepseqvae import score
    from deepseqvae.cli import SAMPLES_DEFAULT_HELP

    for value in (score.AUTO_ROUND, score.AUTO_PROBE, score.AUTO_RELIABILITY, score.DEFAULT_SAMPLES_CPU,
                  score.DEFAULT_SAMPLES_GPU):
        assert re.search(rf"(?<![\d.]){re.escape(str(value))}(?![\d.])", SAMPLES_DEFAULT_HELP), value


def test_info_plots_the_training_history_or_says_why_not(vae_model, independent_model, tmp_path):
    out = tmp_path / "curves.png"
    result = assert_ok(invoke("info", vae_model[0], "--plot", out))
    assert result.stdout.rstrip().endswith(f"Wrote {out}")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]  # written atomically: no temporary file left
    assert_user_error(invoke("info", independent_model, "--plot", tmp_path / "si.png"), str(independent_model),
                      "no training history to plot")
    assert_user_error(invoke("info", vae_model[0], "--plot", tmp_path / "c.xyz"), "cannot save a figure as '.xyz'")
    # matplotlib lists .pgf, but it needs a LaTeX installation: not offered, so it fails before the work
    assert_user_error(invoke("info", vae_model[0], "--plot", tmp_path / "c.pgf"), "cannot save a figure as '.pgf'")
    # a backend that fails while saving: one line naming the file, and no temporary file left
    from matplotlib.figure import Figure

    from deepseqvae.plots import save_figure

    def broken(*args, **kwargs):
        raise RuntimeError("xelatex not found\n(details)")

    fig = Figure()
    fig.savefig = broken
    with pytest.raises(DeepSeqVAEError, match=r"b\.png: cannot save the figure: xelatex not found \(details\)$"):
        save_figure(fig, tmp_path / "b.png")
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]


def test_independent_model_end_to_end(independent_model, tmp_path):
    table = tmp_path / "demo_mutants.csv"
    table.write_bytes(DEMO_CSV.read_bytes())
    info = assert_ok(invoke("info", independent_model)).stdout
    assert re.search(r"kind: independent$", info, re.MULTILINE)
    assert "final ELBO" not in info and "train config" not in info and " steps:" not in info  # fitted, not trained
    # no -o: <stem>_scored.csv beside the input; the 'fitness' column is found without --fitness-col
    result = assert_ok(invoke("score", table, "-m", independent_model, "--no-progress", "--device", "cpu"))
    out = tmp_path / "demo_mutants_scored.csv"
    assert f"Wrote {N_DEMO_MUTANTS} rows to {out}" in result.stdout
    assert "rows with 1 model(s), exact scores." in result.stdout  # no K: nothing is sampled
    payload = json.loads((tmp_path / "demo_mutants_scored.spearman.json").read_text())
    rho = payload["rho"]
    assert rho > MIN_INDEPENDENT_RHO, rho
    assert payload["n_samples"] is None and payload["samples_per_model"] == [None]
    scored = read_csv_text(out)
    assert len(scored) == N_DEMO_MUTANTS and (scored["score_sem"].astype(float) == 0).all()


# --- weights and simulate ------------------------------------------------------------------------------


def test_weights_on_the_demo(tmp_path):
    out = tmp_path / "w.npy"
    result = assert_ok(invoke("weights", DEMO_A2M, "-o", out, "--device", "cpu"))
    match = re.search(r"^Neff = ([\d.]+) \(theta = 0.2;", result.stdout, re.MULTILINE)
    assert match, result.stdout
    weights = np.load(out)
    assert weights.shape == (3000,) and weights.dtype == np.float64
    assert weights.sum() == pytest.approx(float(match.group(1)), abs=0.005)
    assert float(match.group(1)) == pytest.approx(653.62, abs=0.01)
    assert "Sequences: 3000 kept, 0 dropped" in result.stdout
    assert f"Wrote 3000 weights to {out}" in result.stdout
    assert "no residue in the modelled columns" not in result.stdout
    # rows of gaps only were "kept" with weight 0 and no word
    empty = tmp_path / "empty_rows.a2m"
    empty.write_text(">f/1-4\nACDE\n>a\nAC-E\n>gap\n----\n>dot\n....\n")
    result = assert_ok(invoke("weights", empty, "-o", out, "--device", "cpu", "--no-progress"))
    assert "Neff = 1.50 (theta = 0.2; Neff/N = 0.375, Neff/L = 0.38); 2 kept row(s) have no residue in the modelled " \
           "columns: weight 0, never trained on" in result.stdout
    assert np.load(out).tolist() == [1.0, 0.5, 0.0, 0.0]


def test_simulate_regenerates_the_committed_demo(tmp_path):
    result = assert_ok(invoke("simulate", "-o", tmp_path))
    assert "n_seqs = 3000" in result.stdout and "spearman_si_singles = " in result.stdout
    assert (tmp_path / "demo.a2m").read_bytes() == DEMO_A2M.read_bytes()
    assert (tmp_path / "demo_mutants.csv").read_bytes() == DEMO_CSV.read_bytes()


def test_simulate_pairs_set_the_epistasis(tmp_path):
    from deepseqvae.simulate import demo_pairs

    assert (demo_pairs(60), demo_pairs(120), demo_pairs(800)) == (70, 140, 933)  # the demo's density at any L
    assert (demo_pairs(5), demo_pairs(8)) == (3, 9)  # a short chain: every pair 3 apart at most
    # no coupled pairs: a site-independent landscape, every double mutant is the sum of its singles
    result = assert_ok(invoke("simulate", "-o", tmp_path, "--length", "20", "--n-seqs", "40", "--pairs", "0",
                              "--n-doubles", "30"))
    epistasis = re.compile(r"mean_abs_epistasis_doubles = ([0-9.e+-]+)")
    assert float(epistasis.search(result.stdout).group(1)) < 1e-5  # the fitness is written to 6 decimals
    result = assert_ok(invoke("simulate", "-o", tmp_path, "--length", "20", "--n-seqs", "40", "--n-doubles", "30"))
    assert float(epistasis.search(result.stdout).group(1)) > 0.01
    assert_user_error(invoke("simulate", "-o", tmp_path, "--length", "8", "--pairs", "16"),
                      "--pairs 16: a sequence of length 8 has only 15 pairs of positions at least 3 apart")


# --- bad input: one line, exit status 2, no traceback ----------------------------------------------------


ALIGNMENT_ERRORS = {
    # name: (file text, extra options, fragments of the message besides the file name)
    "empty": ("", [], ["file is empty"]),
    "not_fasta": ("mutant,fitness\nA1C,0.5\n", [], ["not a FASTA", "line 1"]),
    "ragged_a2m": (">wt\nACDEF\n>s1\nACDE\n>s2\nACDEF\n", ["--msa-format", "a2m"],
                   ["different aligned lengths", "'s1'", "'wt'"]),
    "ragged_auto": (">wt\nACDEF\n>s1\nACDEF\n>s2\nACDEFGH\n", [], ["different aligned lengths", "'s2'"]),
    "focus_missing": (">wt\nACDEF\n>s1\nACDEG\n", ["--focus", "nosuchseq"], ["'nosuchseq'", "not found"]),
    "duplicate_names": (">wt\nACDEF\n>s1 first\nACDEG\n>s1 second\nACDEF\n", [],
                        ["duplicate record id 's1'", "records 2 and 3"]),
}


@pytest.mark.parametrize("case", sorted(ALIGNMENT_ERRORS))
def test_bad_alignment_weights(case, tmp_path):
    text, options, fragments = ALIGNMENT_ERRORS[case]
    msa = tmp_path / f"{case}.a2m"
    msa.write_text(text)
    out = tmp_path / "w.npy"
    assert_user_error(invoke("weights", msa, "-o", out, "--device", "cpu", *options), str(msa), *fragments)
    assert not out.exists()


@pytest.mark.parametrize("case", ["empty", "duplicate_names"])
def test_bad_alignment_train(case, tmp_path):
    text, options, fragments = ALIGNMENT_ERRORS[case]
    msa = tmp_path / f"{case}.a2m"
    msa.write_text(text)
    out = tmp_path / "model.pt"
    assert_user_error(invoke("train", msa, "-o", out, "--steps", 5, "--no-progress", "--device", "cpu", *options),
                      str(msa), *fragments)
    assert not out.exists()


def test_missing_alignment(tmp_path):
    msa = tmp_path / "nothere.a2m"
    assert_user_error(invoke("weights", msa, "-o", tmp_path / "w.npy"), str(msa))


@pytest.mark.parametrize("theta", ["0", "1", "1.5", "-0.2", "nan"])
def test_weights_theta_outside_0_1(theta, tmp_path):
    out = tmp_path / "w.npy"
    assert_user_error(invoke("weights", DEMO_A2M, "--theta", theta, "-o", out),
                      "theta must be strictly between 0 and 1")
    assert not out.exists()


@pytest.fixture(params=["random_bytes", "truncated", "foreign_torch_file", "pickle", "text", "missing"])
def bad_checkpoint(request, vae_model, tmp_path) -> tuple[Path, str]:
    """A file that is not a usable checkpoint, and a fragment of the expected message."""
    path = tmp_path / f"{request.param}.pt"
    if request.param == "random_bytes":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
        return path, "not a readable deepseqvae checkpoint"
    if request.param == "truncated":
        data = vae_model[0].read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return path, "not a readable deepseqvae checkpoint"
    if request.param == "foreign_torch_file":
        import torch

        torch.save({"state": {"w": torch.zeros(3)}}, path)
        return path, "not a deepseqvae checkpoint"
    if request.param == "pickle":  # torch warns about it before failing: the user sees only our line
        import pickle

        path.write_bytes(pickle.dumps({"state": [1, 2, 3]}, protocol=2))
        return path, "not a readable deepseqvae checkpoint"
    if request.param == "text":
        path.write_text("mutant,fitness\nA1C,0.5\n")
        return path, "not a readable deepseqvae checkpoint"
    return path, "no such checkpoint file"


def test_bad_checkpoint_info(bad_checkpoint):
    path, fragment = bad_checkpoint
    assert_user_error(invoke("info", path), str(path), fragment)


def test_bad_checkpoint_score(bad_checkpoint, tmp_path):
    path, fragment = bad_checkpoint
    out = tmp_path / "scored.csv"
    assert_user_error(invoke("score", DEMO_CSV, "-m", path, "-o", out, "--no-progress", "--device", "cpu"),
                      str(path), fragment)
    assert not out.exists()


def test_no_scorable_row_suggests_a_cause(independent_model, demo_focus, tmp_path):
    # every wild-type letter is wrong: another protein?
    table = tmp_path / "other_protein.csv"
    rows = [f"{'W' if demo_focus[p - 1] != 'W' else 'Y'}{p}A" for p in range(1, 11)]
    table.write_text("mutant,fitness\n" + "".join(f"{m},{k}\n" for k, m in enumerate(rows)))
    out = tmp_path / "out.csv"
    assert_user_error(invoke("score", table, "-m", independent_model, "-o", out, "--no-progress"),
                      str(table), "no mutant can be scored", "wild-type letters do not match", "wt_mismatch: 10")
    assert not out.exists()


def test_no_scorable_row_shifted_numbering_suggests_offset(independent_model, demo_focus, tmp_path):
    # the right letters, numbered 5 too high: the message proposes --offset -5, which then works
    positions = [p for p in range(1, 31) if demo_focus[p - 1] != demo_focus[p + 4]]
    rows = []
    for p in positions:
        wt = demo_focus[p - 1]
        rows.append(f"{wt}{p + 5}{'A' if wt != 'A' else 'G'}")
    table = tmp_path / "shifted.csv"
    table.write_text("mutant\n" + "\n".join(rows) + "\n")
    out = tmp_path / "out.csv"
    assert_user_error(invoke("score", table, "-m", independent_model, "-o", out, "--no-progress"),
                      str(table), "positions look shifted by -5", "try --offset -5")
    result = assert_ok(invoke("score", table, "-m", independent_model, "-o", out, "--offset", -5, "--no-progress"))
    assert f"Scored {len(rows)} of {len(rows)} rows" in result.stdout
    assert (read_csv_text(out)["status"] == "ok").all()


def test_strict_fails_on_one_bad_row(independent_model, demo_focus, tmp_path):
    bad_wt = "W" if demo_focus[1] != "W" else "Y"
    table = tmp_path / "one_bad.csv"
    # the row is named by its file line, as an editor shows it: the header and a comment line come before it
    table.write_text(f"mutant,fitness\n{demo_focus[0]}1A,1\n# a comment\n{bad_wt}2A,2\n{demo_focus[2]}3C,3\n")
    out = tmp_path / "out.csv"
    assert_user_error(invoke("score", table, "-m", independent_model, "-o", out, "--strict", "--no-progress"),
                      str(table), f"line 4 ('{bad_wt}2A')", "wt_mismatch", "--strict")
    assert not out.exists()
    # without --strict the row is kept with a status
    assert_ok(invoke("score", table, "-m", independent_model, "-o", out, "--no-progress"))
    assert read_csv_text(out)["status"].str.split(":").str[0].tolist() == ["ok", "wt_mismatch", "ok"]


def test_score_refuses_to_overwrite_its_input(independent_model, tmp_path):
    table = tmp_path / "mutants.csv"
    table.write_bytes(DEMO_CSV.read_bytes())
    (tmp_path / "sub").mkdir()
    for output in (table, tmp_path / "sub" / ".." / "mutants.csv"):
        assert_user_error(invoke("score", table, "-m", independent_model, "-o", output, "--no-progress"),
                          "refusing to overwrite the input", "mutants.csv")
    assert table.read_bytes() == DEMO_CSV.read_bytes()


def test_missing_mutant_table(independent_model, tmp_path):
    table = tmp_path / "nothere.csv"
    assert_user_error(invoke("score", table, "-m", independent_model, "-o", tmp_path / "o.csv"),
                      "mutant table not found", str(table))


# --- unscorable rows are kept --------------------------------------------------------------------------


def test_score_keeps_unscorable_rows_with_a_status(vae_model, demo_focus, tmp_path):
    good = f"{demo_focus[0]}1{'A' if demo_focus[0] != 'A' else 'C'}"
    bad_wt = "W" if demo_focus[1] != "W" else "Y"
    rows = [good, f"{bad_wt}2A", f"{demo_focus[0]}100A", f"{demo_focus[0]}1*"]
    table = tmp_path / "mixed.csv"
    table.write_text("id,mutant\n" + "".join(f"r{k},{m}\n" for k, m in enumerate(rows)))
    out = tmp_path / "mixed_out.csv"
    result = assert_ok(invoke("score", table, "-m", vae_model[0], "-o", out, "--samples", 5, "--no-progress",
                              "--device", "cpu"))
    assert "Scored 1 of 4 rows with 1 model(s), K = 5 samples." in result.stdout
    assert "Not scored (kept with an empty score): stop 1, position_not_modelled 1, wt_mismatch 1" in result.stdout
    assert "Spearman" not in result.output  # no fitness column
    assert not out.with_suffix(".spearman.json").exists()
    scored = read_csv_text(out)
    assert scored["id"].tolist() == ["r0", "r1", "r2", "r3"] and scored["mutant"].tolist() == rows
    status = scored["status"].tolist()
    assert status[0] == "ok"
    assert status[1] == f"wt_mismatch: {bad_wt}2 but focus has {demo_focus[1]}2"
    assert status[2].startswith("position_not_modelled: 100 ") and "1-60" in status[2]
    assert status[3].startswith("stop: ")
    assert scored["score"].tolist()[1:] == ["", "", ""] and scored["score_sem"].tolist()[1:] == ["", "", ""]
    assert math.isfinite(float(scored["score"][0]))


# --- atomic writes -------------------------------------------------------------------------------------


def test_failed_score_leaves_an_existing_output_untouched(independent_model, demo_focus, tmp_path):
    table = tmp_path / "one_bad.csv"
    bad_wt = "W" if demo_focus[1] != "W" else "Y"
    table.write_text(f"mutant\n{demo_focus[0]}1A\n{bad_wt}2A\n")
    out = tmp_path / "out.csv"
    out.write_text("precious\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    assert_user_error(invoke("score", table, "-m", independent_model, "-o", out, "--strict", "--no-progress"),
                      "line 3")
    assert out.read_text() == "precious\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_crash_while_writing_leaves_an_existing_output_untouched(independent_model, tmp_path, monkeypatch):
    out = tmp_path / "out.csv"
    out.write_text("precious\n")

    def half_written(self, fh, *args, **kwargs):
        fh.write("mutant,fitness,score\nH1A,")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", half_written)
    # a full disk: one line (it was a traceback), the earlier output kept
    assert_user_error(invoke("score", DEMO_CSV, "-m", independent_model, "-o", out, "--no-progress"),
                      f"{out}: cannot write: No space left on device; nothing was replaced")
    assert out.read_text() == "precious\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]  # no temporary file left behind


def test_a_full_disk_while_saving_a_checkpoint_is_one_line(tmp_path, monkeypatch):
    import torch

    def full(obj, fh, *args, **kwargs):  # what torch's zip writer raises when a write falls short
        fh.write(b"PK")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 14528 vs 14422")

    monkeypatch.setattr(torch, "save", full)
    out = tmp_path / "m.pt"
    out.write_bytes(b"precious")
    assert_user_error(invoke("train", DEMO_A2M, "--model", "independent", "-o", out, "--no-progress"),
                      f"{out}: cannot write the checkpoint (the file system may be full: [enforce fail",
                      "nothing was replaced")
    assert out.read_bytes() == b"precious" and sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


def test_an_output_link_writes_its_target_and_a_device_is_written_in_place(independent_model, tmp_path):
    target = tmp_path / "target.csv"
    target.write_text("old\n")
    (tmp_path / "link.csv").symlink_to(target)
    assert_ok(invoke("score", DEMO_CSV, "-m", independent_model, "-o", tmp_path / "link.csv", "--no-progress"))
    assert (tmp_path / "link.csv").is_symlink()  # the link kept (it was replaced by a file, its target unwritten)
    assert target.read_text().startswith("mutant,fitness,")
    # a pipe (as /dev/stdout is in `... -o /dev/stdout | head`, through a link) is written in place: a rename onto a
    # device would replace it by a file (as root, /dev/null too)
    import os
    import threading

    from deepseqvae.fileio import atomic_path, atomic_write, check_output

    read_end, write_end = os.pipe()
    # as /dev/stdout -> /proc/self/fd/1, whose target "pipe:[...]" is no path: resolved, it could not be written
    (tmp_path / "stdout").symlink_to(f"/proc/{os.getpid()}/fd/{write_end}")
    try:
        assert check_output(tmp_path / "stdout") == tmp_path / "stdout"
        with atomic_write(tmp_path / "stdout") as fh:
            fh.write("written in place\n")
        assert os.read(read_end, 100) == b"written in place\n"
    finally:
        os.close(read_end)
        os.close(write_end)
    fifo = tmp_path / "fifo"  # a writer that takes a file name (a figure): made apart, then copied in
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    with atomic_path(fifo) as tmp:
        tmp.write_bytes(b"a figure")
    reader.join(timeout=10)
    assert got == [b"a figure"] and fifo.is_fifo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo", "link.csv", "link.spearman.json", "stdout",
                                                          "target.csv"]


def test_failed_weights_leaves_an_existing_output_untouched(tmp_path):
    msa = tmp_path / "dup.a2m"
    msa.write_text(ALIGNMENT_ERRORS["duplicate_names"][0])
    out = tmp_path / "w.npy"
    out.write_bytes(b"precious")
    assert_user_error(invoke("weights", msa, "-o", out), "duplicate record id")
    assert out.read_bytes() == b"precious"


# --- outputs: never an input, an unwritable path fails first -------------------------------------------


def test_a_figure_named_as_the_commands_own_output_is_refused(vae_model, tmp_path):
    out = tmp_path / "a.csv"
    for args in (["scan", "-m", vae_model[0], "-o", out, "--plot", out, "--samples", 2, "--no-progress"],
                 ["embed", DEMO_A2M, "-m", vae_model[0], "-o", out, "--plot", out]):
        assert_user_error(invoke(*args), f"{out}: is also this command's output {out}; give each output its own name")
    assert not out.exists()


@pytest.mark.parametrize("command", ["weights", "train", "scan", "sample", "embed", "classify", "info"])
def test_no_command_overwrites_its_input(command, vae_model, tmp_path):
    msa, model = tmp_path / "msa.a2m", tmp_path / "m.pt"
    msa.write_bytes(DEMO_A2M.read_bytes())
    model.write_bytes(vae_model[0].read_bytes())
    args, victim = {
        "weights": (["weights", msa, "-o", msa], msa),
        "train": (["train", msa, "-o", msa, "--model", "independent", "--no-progress"], msa),
        "scan": (["scan", "-m", model, "-o", model, "--samples", 2, "--no-progress"], model),
        "sample": (["sample", "-m", model, "-n", 3, "-o", model], model),
        "embed": (["embed", msa, "-m", model, "-o", msa], msa),
        "classify": (["classify", "-m", model, "-o", model, "--samples", 2], model),
        "info": (["info", model, "--plot", model], model),
    }[command]
    before = victim.read_bytes()
    assert_user_error(invoke(*args), "refusing to overwrite the input", victim.name)
    assert victim.read_bytes() == before


def test_model_options_that_build_no_model_fail_before_the_alignment_is_read(tmp_path):
    broken = tmp_path / "broken.a2m"  # never read: the options are checked first
    broken.write_text(">a\nAC\n>b\nACD\n")
    assert_user_error(invoke("train", broken, "--msa-format", "a2m", "-o", tmp_path / "m.pt", "--decoder-hidden",
                             "20,41"),
                      "recipe fast: the last decoder layer (41) must be divisible by sparsity_tiles (4)")
    assert_user_error(invoke("train", broken, "--msa-format", "a2m", "-o", tmp_path / "m.pt", "--sparsity-tiles",
                             "300", "--recipe", "paper", "--steps", "5"),
                      "recipe paper: the last decoder layer (2000) must be divisible by sparsity_tiles (300)")
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.parametrize("command, option", [("train", "--seed"), ("score", "--seed"), ("simulate", "--seed"),
                                             ("scan", "--seed"), ("sample", "--seed"), ("classify", "--seed"),
                                             ("classify", "--gmm-seed"), ("classify-prior", "--gmm-seed")])
@pytest.mark.parametrize("value", ["-1", "4294967296"])
def test_seed_options_take_what_numpy_torch_and_sklearn_all_accept(command, option, value):
    # numpy's SeedSequence refuses -1, scikit-learn's random_state and torch 2**32 and more: one range, at parsing
    assert_user_error(invoke(command, option, value), f"Invalid value for '{option}'", "0<=x<=4294967295")


def test_unwritable_output_fails_before_the_work(independent_model, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    out = blocker / "x.csv"  # its folder cannot be made: a file is in the way
    assert_user_error(invoke("score", DEMO_CSV, "-m", independent_model, "-o", out, "--no-progress"),
                      "cannot create its folder", "a_file")
    assert_user_error(invoke("train", DEMO_A2M, "-o", blocker / "m.pt", "--model", "independent"),
                      "cannot create its folder")
    with pytest.raises(OutputError, match="is a folder"):  # the CLI's own check says so first, as a usage error
        check_output(tmp_path)
    broken = tmp_path / "broken.a2m"  # never read: the output is checked first
    broken.write_text(">a\nAC\n>b\nACD\n")
    if Path("/sys/kernel").is_dir():  # a folder no one can make a file in, whatever os.access says (root: anything)
        assert_user_error(invoke("train", broken, "-o", "/sys/m.pt", "--steps", "5", "--msa-format", "a2m"),
                          "/sys/m.pt: cannot write in /sys")
        assert not Path("/sys/m.pt").exists()
    # /dev and /proc hold devices and a process's files, never an output (score -o /dev/stdout's Spearman beside it)
    assert_user_error(invoke("train", broken, "-o", "/proc/m.pt", "--steps", "5", "--msa-format", "a2m"),
                      "/proc/m.pt: not a place for a file (beside a stream output such as /dev/stdout?)")
    assert_user_error(invoke("scan", "-m", independent_model, "-o", "/dev/stdout", "--no-progress"),
                      "/dev/stdout_positions.csv: not a place for a file")
    assert not Path("/proc/m.pt").exists() and not Path("/dev/stdout_positions.csv").exists()
    if Path("/dev/shm").is_dir():  # a memory file system below /dev: a folder like any other
        shm = Path("/dev/shm") / tmp_path.name / "out.csv"
        assert check_output(shm) == shm
        shm.parent.rmdir()
    # click's usage errors are one line too, naming the command and its help
    assert_user_error(invoke("weights", DEMO_A2M, "-o", tmp_path), "weights: Invalid value for '-o'",
                      "is a directory", "weights --help'")
    assert_user_error(invoke("train"), "train: Missing argument 'MSA'")
    # the group's own options too, parsed before any command
    assert_user_error(invoke("--bogus"), "No such option '--bogus'", " --help')")


def test_scan_checks_the_figure_name_before_scanning(independent_model, tmp_path):
    out = tmp_path / "scan.csv"
    assert_user_error(invoke("scan", "-m", independent_model, "-o", out, "--plot", tmp_path / "heat.jpgx"),
                      "cannot save a figure as '.jpgx'")
    assert not out.exists()  # failed before the scan wrote anything


@pytest.mark.parametrize("case", ["negative", "nan", "zeros", "npz", "csv"])
def test_train_rejects_bad_weights(case, tmp_path):
    n = 3000  # the demo's sequences
    path = tmp_path / ("w.npz" if case == "npz" else "w.csv" if case == "csv" else "w.npy")
    w = np.ones(n)
    if case == "negative":
        w[41] = -1e6
    elif case == "nan":
        w[7] = np.nan
    elif case == "zeros":
        w[:] = 0
    if case == "npz":
        with open(path, "wb") as fh:
            np.savez(fh, w=w)
    elif case == "csv":
        path.write_text("\n".join("1.0" for _ in range(n)))
    else:
        np.save(path, w)
    expected = {"negative": ["negative, NaN or infinite", "sequence 42", "-1000000.0"],
                "nan": ["negative, NaN or infinite", "sequence 8"], "zeros": ["every weight is 0"],
                "npz": ["not a .npy array"], "csv": ["not a .npy array", "expected a .npy"]}[case]
    for kind in ("independent", "vae"):
        assert_user_error(invoke("train", DEMO_A2M, "-o", tmp_path / "m.pt", "--weights", path, "--model", kind,
                                 *(TINY_VAE[:2] if kind == "vae" else [])), path.name, *expected)
    assert not (tmp_path / "m.pt").exists()


def test_options_of_the_other_model_kind_are_refused_not_ignored(tmp_path):
    out = tmp_path / "m.pt"
    assert_user_error(invoke("train", DEMO_A2M, "-o", out, "--model", "independent", "--steps", 5, "--no-refit",
                             "--latent-dim", 3, "--slim"),
                      "the independent model is fitted in closed form: --steps, --latent-dim, --no-refit, --slim "
                      "apply to the VAE only")
    assert_user_error(invoke("train", DEMO_A2M, "-o", out, "--model", "independent", "--seed", 3),
                      "--seed applies to the VAE only")
    assert_user_error(invoke("train", DEMO_A2M, "-o", out, "--pseudocount", 0.5, "--steps", 3),
                      "--pseudocount is the independent model's (--model independent): the VAE has none")
    assert not out.exists()
    # what the independent model does use: its pseudocount, the weights' theta, the alignment options
    assert_ok(invoke("train", DEMO_A2M, "-o", out, "--model", "independent", "--pseudocount", 0.5, "--theta", 0.3,
                     "--columns", "all", "--no-progress"))


def test_train_file_refuses_vae_settings_for_the_independent_model(tmp_path):
    """From Python as from the CLI: a VAE setting given to a closed-form model is an error, not ignored."""
    from deepseqvae.errors import ConfigError
    from deepseqvae.pipeline import train_file

    out = tmp_path / "m.pt"
    with pytest.raises(ConfigError, match=r"fitted in closed form: latent_dim, recipe, steps apply to the VAE only"):
        train_file(DEMO_A2M, out, model_kind="independent", model_options={"latent_dim": 3, "dropout": None},
                   train_options={"steps": 5}, recipe="fast")
    with pytest.raises(ConfigError, match=r"closed form: slim applies to the VAE only"):
        train_file(DEMO_A2M, out, model_kind="independent", slim=True)
    assert not out.exists()
    # None values are options left unset (as the CLI passes them): accepted
    train_file(DEMO_A2M, out, model_kind="independent", model_options={"latent_dim": None},
               train_options={"steps": None}, device="cpu")
    assert out.exists()


def test_resume_refuses_other_data_or_another_model(tmp_path, caplog):
    model = tmp_path / "r.pt"
    assert_ok(invoke("train", DEMO_A2M, "-o", model, *TINY_VAE[2:], "--steps", 20, "--holdout", 0))
    assert "resumable: yes" in assert_ok(invoke("info", model)).stdout
    before = model.read_bytes()
    fewer = tmp_path / "fewer.a2m"
    fewer.write_text("".join(DEMO_A2M.read_text().splitlines(keepends=True)[:400]))  # the first 200 records
    assert_user_error(invoke("train", fewer, "-o", model, *TINY_VAE[2:], "--steps", 40, "--holdout", 0, "--resume"),
                      "trained on N = 3000 sequences", "fewer.a2m gives N = 200", "train anew")
    edited = tmp_path / "edited.a2m"  # the same N (and here the same Neff), one residue of one record changed
    lines = DEMO_A2M.read_text().splitlines(keepends=True)
    lines[21] = ("A" if lines[21][5] != "A" else "C").join([lines[21][:5], lines[21][6:]])
    edited.write_text("".join(lines))
    assert_user_error(invoke("train", edited, "-o", model, *TINY_VAE[2:], "--steps", 40, "--holdout", 0, "--resume"),
                      "but other sequences or weights", "train anew")
    lines = DEMO_A2M.read_text().splitlines(keepends=True)
    lines[1] = lines[1][:5].lower() + lines[1][5:]  # the focus's first 5 columns no longer modelled
    narrower = tmp_path / "narrower.a2m"
    narrower.write_text("".join(lines))
    assert_user_error(invoke("train", narrower, "-o", model, *TINY_VAE[2:], "--steps", 40, "--holdout", 0,
                             "--resume"),
                      "different focus sequence (DEMO/1-60) than", "modelled residues 1-60 (60 columns) against 6-60 "
                      "(55 columns) (checkpoint against alignment)")
    tiny = TINY_VAE[2:]
    other = tiny[:tiny.index("--encoder-hidden") + 1] + ["60"] + tiny[tiny.index("--encoder-hidden") + 2:]
    assert_user_error(invoke("train", DEMO_A2M, "-o", model, *other, "--steps", 40, "--holdout", 0, "--resume"),
                      "--resume keeps the checkpoint's model", "encoder_hidden 64 (asked: 60)")
    assert model.read_bytes() == before
    # the same data and model: allowed, and what differs from the first run is said
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="deepseqvae"):
        result = assert_ok(invoke("train", DEMO_A2M, "-o", model, *TINY_VAE[2:], "--steps", 10, "--holdout", 0,
                                  "--resume"))
        assert "already at or past the 10 steps asked" in caplog.text
        assert "Steps: 20 (nothing left to train)" in result.stdout
        assert model.read_bytes() == before  # the file keeps the run as it was (not steps=10 in its settings)
        assert_ok(invoke("train", DEMO_A2M, "-o", model, *TINY_VAE[2:], "--steps", 25, "--holdout", 0, "--resume",
                         "--learning-rate", "0.002"))
        assert "resuming with settings other than the checkpoint's: learning_rate 0.000808465 -> 0.002" in caplog.text


def test_score_text_fitness_column_and_shifted_numbering(independent_model, tmp_path, caplog):
    assert_user_error(invoke("score", DEMO_CSV, "-m", independent_model, "-o", tmp_path / "s.csv", "--fitness-col",
                             "mutant", "--no-progress"), "column 'mutant' holds no numbers", "--fitness-col")
    with caplog.at_level(logging.WARNING, logger="deepseqvae"):
        assert_ok(invoke("score", DEMO_CSV, "-m", independent_model, "-o", tmp_path / "s.csv", "--offset", "1",
                         "--no-progress"))
    # the demo table shifted by one: most rows mismatch the wild type, and the cause is named with its fix
    assert "rows cannot be scored: positions look shifted by -1" in caplog.text and "try --offset 0" in caplog.text
    # most rows unscorable for no one cause: the warning counts them by status (and does not say none was scored)
    caplog.clear()
    first = pd.read_csv(DEMO_CSV)["mutant"][0]
    mixed = tmp_path / "mixed.csv"
    mixed.write_text(f"mutant\n{first}\n{first[:-1]}X\n{first[:-1]}*\n{first[:-1]}del\n")
    with caplog.at_level(logging.WARNING, logger="deepseqvae"):
        assert_ok(invoke("score", mixed, "-m", independent_model, "-o", tmp_path / "m.csv", "--no-progress"))
    assert "3 of 4 rows cannot be scored: rows by status: ok: 1, " in caplog.text
    assert "no row" not in caplog.text


def test_scoring_a_scored_table_again_keeps_every_earlier_column(vae_model, independent_model, tmp_path, caplog):
    """A scan's or an earlier run's prediction is neither replaced by the next model's nor taken as the measured
    fitness (a Spearman of one model against another, shown as a DMS validation)."""
    scan = tmp_path / "scan.csv"
    assert_ok(invoke("scan", "-m", independent_model, "-o", scan, "--no-progress"))
    with caplog.at_level(logging.WARNING, logger="deepseqvae"):
        result = invoke("score", scan, "-m", vae_model[0], "-o", tmp_path / "a.csv", "--no-progress")
    assert_ok(result)
    assert "Spearman" not in result.output and not (tmp_path / "a.spearman.json").exists()
    assert "column 'score' is a deepseqvae prediction (it has a 'score_sem' beside it)" in caplog.text
    a = pd.read_csv(tmp_path / "a.csv")
    assert list(a.columns) == ["mutant", "score", "score_sem", "score_deepseqvae", "score_sem_deepseqvae",
                               "status_deepseqvae"]
    assert_ok(invoke("score", tmp_path / "a.csv", "-m", independent_model, "-o", tmp_path / "b.csv", "--no-progress"))
    b = pd.read_csv(tmp_path / "b.csv")
    assert list(b.columns) == list(a.columns) + ["score_deepseqvae_2", "score_sem_deepseqvae_2", "status_deepseqvae_2"]
    pd.testing.assert_frame_equal(b[a.columns], a)  # the earlier model's scores kept, as written
    np.testing.assert_allclose(b["score_deepseqvae_2"], b["score"], atol=1e-5)  # the scan's model, scored again
    # a measured score beside the predictions is still the fitness
    measured = a.drop(columns=["score_sem"])
    measured.to_csv(tmp_path / "m.csv", index=False)
    result = invoke("score", tmp_path / "m.csv", "-m", independent_model, "-o", tmp_path / "c.csv", "--no-progress")
    assert_ok(result)
    assert "against 'score'" in result.output


def test_score_warns_of_a_variant_on_several_rows(independent_model, tmp_path, caplog):
    m = pd.read_csv(DEMO_CSV)["mutant"][:2].tolist()
    table = tmp_path / "dup.csv"  # one variant three times (case and spaces apart), the wild type twice (not warned)
    table.write_text(f"mutant,fitness\n{m[0]},1\n {m[0].lower()} ,2\n{m[1]},3\nWT,0\nWT,0\n{m[0]},5\n")
    with caplog.at_level(logging.WARNING, logger="deepseqvae"):
        assert_ok(invoke("score", table, "-m", independent_model, "-o", tmp_path / "s.csv", "--no-progress"))
    assert (f"dup.csv: 1 variant(s) are named on more than one row (3 rows in all; e.g. '{m[0]}' on line 2, "
            "line 3, line 7); each row is kept and scored (a Spearman counts each)") in caplog.text
    assert len(pd.read_csv(tmp_path / "s.csv")) == 6
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="deepseqvae"):
        assert_ok(invoke("score", DEMO_CSV, "-m", independent_model, "-o", tmp_path / "d.csv", "--no-progress"))
    assert "more than one row" not in caplog.text


def test_out_of_memory_is_one_line_naming_what_needs_less(independent_model, tmp_path, monkeypatch):
    """An allocation failure (torch's CPU allocator, CUDA, Python) is a one-line error with the options that need
    less memory, not a traceback; any other RuntimeError is left alone (a bug shows its traceback)."""
    import deepseqvae.pipeline as pipeline

    def fail(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 160000000 bytes. Error code 12 (Cannot allocate memory)")

    monkeypatch.setattr(pipeline, "train_file", fail)
    line = assert_user_error(invoke("train", DEMO_A2M, "-o", tmp_path / "m.pt"), "train: out of memory (",
                             "can't allocate memory", "; try --refit-after (the two runs one after the other), "
                             "--no-refit, a narrower --encoder-hidden")
    assert len(line) < 400
    monkeypatch.setattr(pipeline, "score_file", lambda *a, **k: (_ for _ in ()).throw(MemoryError()))
    assert_user_error(invoke("score", DEMO_CSV, "-m", independent_model, "-o", tmp_path / "s.csv"),
                      "Error: score: out of memory; try a smaller --batch-size")
    monkeypatch.setattr(pipeline, "score_file", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("a bug")))
    result = invoke("score", DEMO_CSV, "-m", independent_model, "-o", tmp_path / "s.csv")
    assert result.exit_code != 0 and str(result.exception) == "a bug"


def test_train_suggests_reusing_slow_weights(tmp_path, monkeypatch, caplog):
    import deepseqvae.pipeline as pipeline

    monkeypatch.setattr(pipeline, "SLOW_WEIGHTS_SECONDS", 0.0)  # every computation is "slow"
    with caplog.at_level(logging.WARNING, logger="deepseqvae"):
        assert_ok(invoke("train", DEMO_A2M, "-o", tmp_path / "m.pt", "--model", "independent", "--max-gap-fraction",
                         0.05))
    # the command reads the alignment as train did (else its weights are of other rows)
    assert (f"{DEMO_A2M}: the sequence weights took 0 s; compute them once (deepseqvae weights {DEMO_A2M} "
            "--max-gap-fraction 0.05 --theta 0.2 -o W.npy) and give --weights W.npy to the other runs of this "
            "alignment") in caplog.text
    caplog.clear()
    assert_ok(invoke("weights", DEMO_A2M, "-o", tmp_path / "w.npy", "--no-progress"))
    with caplog.at_level(logging.WARNING, logger="deepseqvae"):
        assert_ok(invoke("train", DEMO_A2M, "-o", tmp_path / "m.pt", "--model", "independent", "--weights",
                         tmp_path / "w.npy"))
    assert "the sequence weights took" not in caplog.text


def test_an_unknown_fitness_column_fails_before_any_scoring(independent_model, tmp_path, monkeypatch):
    from deepseqvae.checkpoint import Checkpoint

    def not_now(self):
        raise AssertionError("scored before the fitness column was checked")

    monkeypatch.setattr(Checkpoint, "scorer", not_now)
    assert_user_error(invoke("score", DEMO_CSV, "-m", independent_model, "-o", tmp_path / "s.csv", "--fitness-col",
                             "nope", "--no-progress"),
                      "column 'nope' not found in",
                      "columns: 'mutant', 'fitness' (the measured fitness: --fitness-col)")
    assert not (tmp_path / "s.csv").exists()


def test_score_says_why_there_is_no_spearman(independent_model, tmp_path):
    first = pd.read_csv(DEMO_CSV)["mutant"][:3].tolist()
    two = tmp_path / "two.csv"
    two.write_text(f"mutant,fitness\n{first[0]},1.5\n{first[1]},0.2\n")
    result = invoke("score", two, "-m", independent_model, "-o", tmp_path / "two_s.csv", "--no-progress")
    assert_ok(result)
    assert ("Spearman rho = none (fewer than 3 mutants with both a score and a fitness) against 'fitness' over 2 "
            "mutants") in result.stdout
    assert json.loads((tmp_path / "two_s.spearman.json").read_text())["rho"] is None
    flat = tmp_path / "flat.csv"
    flat.write_text("mutant,fitness\n" + "".join(f"{m},1.0\n" for m in first))
    result = invoke("score", flat, "-m", independent_model, "-o", tmp_path / "flat_s.csv", "--no-progress")
    assert "Spearman rho = none (the scores or the fitness values are all equal) against 'fitness'" in result.stdout


def test_training_onto_an_existing_model_says_it_replaces_it(tmp_path, caplog):
    model = tmp_path / "m.pt"
    with caplog.at_level(logging.WARNING, logger="deepseqvae"):
        assert_ok(invoke("train", DEMO_A2M, "-o", model, "--model", "independent"))
        assert "exists" not in caplog.text
        assert_ok(invoke("train", DEMO_A2M, "-o", model, "--model", "independent"))
    assert f"{model} exists: this run replaces it when it ends\n" in caplog.text + "\n"  # no --resume advice


def test_resume_keeps_the_runs_own_settings(tmp_path, caplog):
    """Options not given again keep the checkpoint's values, not the defaults; the result is the uninterrupted run."""
    own = ["--learning-rate", "0.002", "--batch-size", "50", "--seed", "7", "--holdout", "0", "--no-progress",
           "--device", "cpu"]
    tiny = [a for a in TINY_VAE if a not in ("--seed", "1", "--no-progress", "--device", "cpu")]
    tiny = tiny[2:]  # without --steps 300
    whole, part = tmp_path / "whole.pt", tmp_path / "part.pt"
    assert_ok(invoke("train", DEMO_A2M, "-o", whole, *tiny, *own, "--steps", 40))
    assert_ok(invoke("train", DEMO_A2M, "-o", part, *tiny, *own, "--steps", 20))
    with caplog.at_level(logging.WARNING, logger="deepseqvae"):
        assert_ok(invoke("train", DEMO_A2M, "-o", part, "--steps", 40, "--resume", "--no-progress", "--device", "cpu"))
    assert "resuming with settings other" not in caplog.text
    import torch

    a, b = (torch.load(p, weights_only=True) for p in (whole, part))
    assert b["train_config"]["learning_rate"] == 0.002 and b["train_config"]["batch_size"] == 50
    assert all(torch.equal(a["state"][k], b["state"][k]) for k in a["state"])


def test_a_holdout_that_finds_nothing_to_hold_out_trains_one_run(tmp_path, caplog):
    # 200 copies of the focus: every sequence is its neighbour, so no cluster can be held out
    focus = DEMO_A2M.read_text().splitlines()[1]
    same = tmp_path / "same.a2m"
    same.write_text("".join(f">S{i}\n{focus}\n" for i in range(200)))
    model = tmp_path / "m.pt"
    with caplog.at_level(logging.WARNING, logger="deepseqvae"):
        result = assert_ok(invoke("train", same, "-o", model, *TINY_VAE[2:], "--steps", 30))
    assert "no sequence could be held out (--holdout 0.1 by weight" in caplog.text
    assert "(60 steps of both runs)" not in result.stdout and "Held out" not in result.stdout
    from deepseqvae.checkpoint import load_checkpoint

    ck = load_checkpoint(model)
    assert ck.train_config["holdout_fraction"] == 0.0 and not ck.train_config["refit"] and ck.step == 30
    assert "resumable: yes" in assert_ok(invoke("info", model)).stdout
    # a split far from the share asked is said too: 5 sequences, 1 held out = 20 % of the weight, not 10 %
    five = tmp_path / "five.a2m"
    five.write_text("".join(DEMO_A2M.read_text().splitlines(keepends=True)[:10]))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="deepseqvae"):
        assert_ok(invoke("train", five, "-o", tmp_path / "f.pt", *TINY_VAE[2:], "--steps", 20, "--no-refit"))
    assert re.search(r"held out 1 of 5 sequences \(20% of the sequence weight; --holdout 0\.1 by weight asked 10%\), "
                     r"training on 4 \(80% of the sequence weight\)", caplog.text), caplog.text


def test_resume_to_other_steps_says_the_cosine_schedule_moves(tmp_path, caplog):
    # past the fast recipe's 200 warm-up steps the step size depends on --steps: 210 of 210 is at its floor (0.02),
    # step 211 of 420 near its top; within the warm-up (the test above) it does not, and nothing is said
    model = tmp_path / "r.pt"
    assert_ok(invoke("train", DEMO_A2M, "-o", model, *TINY_VAE[2:], "--steps", 210, "--holdout", 0))
    with caplog.at_level(logging.WARNING, logger="deepseqvae"):
        assert_ok(invoke("train", DEMO_A2M, "-o", model, *TINY_VAE[2:], "--steps", 420, "--holdout", 0, "--resume"))
    assert re.search(r"resuming a 210-step run to 420 steps: the cosine step-size schedule spans the steps, so at "
                     r"step 211 the step size goes from 0\.02 to 0\.99\d* times the base one", caplog.text), caplog.text


def test_slim_checkpoint_scores_the_same_but_does_not_resume(tmp_path):
    tiny = [a for a in TINY_VAE]
    tiny[tiny.index("--steps") + 1] = "30"
    full, slim = tmp_path / "full.pt", tmp_path / "slim.pt"
    for out, flags in ((full, []), (slim, ["--slim"])):  # the early-stopped run without the refit: resumable
        assert_ok(invoke("train", DEMO_A2M, "-o", out, *tiny, "--no-refit", *flags))
    assert slim.stat().st_size < 0.4 * full.stat().st_size
    for model in (full, slim):
        assert_ok(invoke("score", DEMO_CSV, "-m", model, "-o", tmp_path / f"{model.stem}.csv", "--samples", 5,
                         "--no-progress", "--device", "cpu"))
    scores = [pd.read_csv(tmp_path / f"{m.stem}.csv").score.to_numpy() for m in (full, slim)]
    assert np.array_equal(*scores)  # the same scored weights
    assert "resumable: no (saved --slim" in assert_ok(invoke("info", slim)).stdout
    assert "resumable: yes" in assert_ok(invoke("info", full)).stdout
    assert_user_error(invoke("train", DEMO_A2M, "-o", slim, *tiny, "--no-refit", "--steps", 40, "--resume"),
                      "saved without its training state (--slim)", "train anew")


def test_a_finished_refit_is_saved_for_scoring_only_and_resumes_to_nothing(vae_model, caplog):
    """The fast recipe's model (a refit on every sequence) is final: saved as --slim would, and --resume with the
    same settings trains nothing and leaves the file as it is; other settings are an error."""
    from deepseqvae.checkpoint import load_checkpoint

    model = vae_model[0]
    ck = load_checkpoint(model)
    assert ck.history["refit_step"] == [ck.step]
    assert all(x is None for x in (ck.optimizer, ck.rng_state, ck.train_state, ck.average_state))
    assert "resumable: no: a finished refit on every sequence" in assert_ok(invoke("info", model)).stdout
    before = model.read_bytes()
    with caplog.at_level(logging.WARNING, logger="deepseqvae"):
        result = assert_ok(invoke("train", DEMO_A2M, "-o", model, *TINY_VAE, "--resume"))
    assert f"is a finished refit on every sequence (step {ck.step} of 300): nothing to train" in caplog.text
    assert f"Steps: {ck.step} (nothing left to train)" in result.stdout
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="deepseqvae"):
        assert_user_error(invoke("train", DEMO_A2M, "-o", model, *TINY_VAE, "--steps", 400, "--resume"),
                          f"refit on every sequence up to step {ck.step} of a 300-step run", "train anew")
    assert "cosine step-size schedule" not in caplog.text  # no advice on a resume that is refused
    assert model.read_bytes() == before


def test_gzip_inputs_give_plain_default_names(independent_model, tmp_path, monkeypatch):
    import gzip

    msa, table = tmp_path / "demo.a2m.gz", tmp_path / "muts.csv.gz"
    msa.write_bytes(gzip.compress(DEMO_A2M.read_bytes()))
    table.write_bytes(gzip.compress(DEMO_CSV.read_bytes()))
    monkeypatch.chdir(tmp_path)
    assert_ok(invoke("weights", msa))
    assert (tmp_path / "demo_theta_0.2.npy").exists()  # not demo.a2m_theta_0.2.npy
    assert_ok(invoke("train", msa, "--model", "independent"))
    assert (tmp_path / "demo.pt").exists()
    assert_ok(invoke("score", table, "-m", independent_model, "--no-progress"))
    assert len(pd.read_csv(tmp_path / "muts_scored.csv")) == 19 * 60 + 500


def test_sample_and_embed_option_limits(vae_model, tmp_path):
    result = invoke("sample", "-m", vae_model[0], "-n", 3, "-o", tmp_path / "s.fasta", "--temperature", "inf")
    assert result.exit_code == 2 and "--temperature" in result.output and not (tmp_path / "s.fasta").exists()
    result = invoke("embed", DEMO_A2M, "-m", vae_model[0], "-o", tmp_path / "e.csv", "--color-by", "identity")
    assert result.exit_code == 2 and "--color-by colours the 2-D map: it needs --plot" in result.output


def test_interrupted_training_says_what_is_on_disk(monkeypatch, tmp_path):
    import deepseqvae.pipeline

    def interrupted(msa, out, **kwargs):
        if kwargs["train_options"]["checkpoint_every"] == 7:  # as if a checkpoint was written before Ctrl-C
            Path(out).write_bytes(b"checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(deepseqvae.pipeline, "train_file", interrupted)
    out = tmp_path / "m.pt"
    result = invoke("train", DEMO_A2M, "-o", out)
    assert result.exit_code == 130 and "Interrupted before this run's first checkpoint" in result.stderr
    assert f"{out} was not written" in result.stderr
    result = invoke("train", DEMO_A2M, "-o", out, "--checkpoint-every", 7)
    assert result.exit_code == 130 and f"{out} holds this run's last checkpoint; continue it with --resume" in \
        result.stderr


def test_a_run_over_an_earlier_model_keeps_it_until_it_ends(monkeypatch, tmp_path):
    # the first periodic checkpoint replaced the earlier model: interrupted, the run lost it
    import os

    import deepseqvae.train as train_mod
    from deepseqvae.checkpoint import load_checkpoint

    out = tmp_path / "m.pt"
    assert_ok(invoke("train", DEMO_A2M, "-o", out, *TINY_VAE[2:], "--steps", 20, "--holdout", 0))
    earlier = out.read_bytes()
    real, saves = train_mod.save_checkpoint, []

    def interrupted_after_one_checkpoint(ckpt, path):
        real(ckpt, path)
        saves.append(Path(path).name)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "save_checkpoint", interrupted_after_one_checkpoint)
    result = invoke("train", DEMO_A2M, "-o", out, *TINY_VAE[2:], "--steps", 40, "--holdout", 0, "--checkpoint-every",
                    10)
    assert result.exit_code == 130 and saves == ["m.partial.pt"]
    assert f"Interrupted: {tmp_path / 'm.partial.pt'} holds this run's last checkpoint and {out} the earlier " \
           "model; continue this run with --resume" in result.stderr
    assert out.read_bytes() == earlier and load_checkpoint(tmp_path / "m.partial.pt").step == 10
    monkeypatch.setattr(train_mod, "save_checkpoint", real)
    assert_ok(invoke("train", DEMO_A2M, "-o", out, "--resume", "--no-progress"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]  # the finished run replaced the earlier model
    assert load_checkpoint(out).step == 40
    # a partial left by an abandoned run is kept (resumable work), and one older than the output is not resumed
    # over it
    out.rename(tmp_path / "keep.pt")
    (tmp_path / "m.partial.pt").write_bytes((tmp_path / "keep.pt").read_bytes())
    os.utime(tmp_path / "m.partial.pt", (1, 1))
    assert_ok(invoke("train", DEMO_A2M, "-o", out, *TINY_VAE[2:], "--steps", 20, "--holdout", 0))
    assert (tmp_path / "m.partial.pt").exists() and load_checkpoint(out).step == 20
    assert_ok(invoke("train", DEMO_A2M, "-o", out, "--resume", "--no-progress"))
    assert load_checkpoint(out).step == 20  # m.pt resumed (finished: nothing to train), not the older partial


def test_a_site_independent_model_without_pseudocount_loads(tmp_path):
    # its log-probabilities of residues never seen are -inf: not a damaged file (the non-finite check refused it)
    out = tmp_path / "ind0.pt"
    assert_ok(invoke("train", DEMO_A2M, "--model", "independent", "--pseudocount", 0, "-o", out))
    assert "kind: independent" in assert_ok(invoke("info", out)).stdout
    # its -inf scores are scores (ranked last), not rows left out of the Spearman while their status says ok
    result = assert_ok(invoke("score", DEMO_CSV, "-m", out, "-o", tmp_path / "s.csv", "--no-progress"))
    assert "over 1640 mutants (0 excluded: 0 unscorable" in result.stdout
    assert np.isneginf(pd.read_csv(tmp_path / "s.csv")["score"]).sum() > 0


def test_a_run_over_a_linked_model_writes_the_link_target(tmp_path):
    real = tmp_path / "real.pt"
    assert_ok(invoke("train", DEMO_A2M, "-o", real, *TINY_VAE[2:], "--steps", 20, "--holdout", 0))
    (tmp_path / "link.pt").symlink_to(real)
    assert_ok(invoke("train", DEMO_A2M, "-o", tmp_path / "link.pt", *TINY_VAE[2:], "--steps", 30, "--holdout", 0))
    from deepseqvae.checkpoint import load_checkpoint

    assert (tmp_path / "link.pt").is_symlink() and load_checkpoint(real).step == 30


# --- a real process ------------------------------------------------------------------------------------


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_terminate_signals_interrupt_for_the_command_only_and_nohup_is_kept(monkeypatch):
    import signal

    from deepseqvae.cli import _interrupt_on_terminate

    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as nohup leaves it
        ctx = click.Context(main)
        _interrupt_on_terminate(ctx)
        assert signal.getsignal(signal.SIGTERM) is signal.default_int_handler
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN  # it interrupted a nohup run
        ctx.close()
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def test_sigterm_interrupts_as_ctrl_c_and_leaves_no_temporary_file(vae_model, tmp_path):
    # a scheduler's cancel (SIGTERM) killed the process at once: atomic_write's clean-up never ran, leaving
    # .<name>.<random>.tmp (checkpoint-sized for train)
    import signal
    import time

    out = tmp_path / "g.fasta"
    proc = subprocess.Popen([sys.executable, "-m", "deepseqvae", "sample", "-m", str(vae_model[0]), "-n", "5000000",
                             "-o", str(out), "--no-progress"], cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".g.fasta.*.tmp")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # until the output's temporary file is being written
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err
    assert "Interrupted: sample stopped; every output is written whole or not at all" in err
    assert list(tmp_path.iterdir()) == []


def test_output_to_stdout_appends_where_stdout_appends(independent_model, tmp_path):
    # -o /dev/stdout with stdout appending to a log: a rename onto the file /dev/stdout names (or reopening it, which
    # truncates) replaced the log with the table
    table = tmp_path / "m.csv"
    table.write_text("mutant\nH1A\nH1C\n")
    log_file = tmp_path / "log.txt"
    log_file.write_text("precious\n")
    with open(log_file, "a") as out:
        proc = subprocess.run([sys.executable, "-m", "deepseqvae", "score", str(table), "-m", str(independent_model),
                               "-o", "/dev/stdout", "--no-progress"], stdout=out, stderr=subprocess.PIPE, text=True,
                              timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = log_file.read_text().splitlines()
    assert lines == ["precious", "mutant,score,score_sem,status", *lines[2:]] and len(lines) == 4  # the summary: stderr
    assert "Wrote 2 rows to /dev/stdout" in proc.stderr
    # a table with a fitness column: its Spearman is said, not written beside a stream (/dev/stdout.spearman.json)
    fit = tmp_path / "f.csv"
    fit.write_text("mutant,fitness\nH1A,1\nH1C,2\nH1D,3\n")
    proc = subprocess.run([sys.executable, "-m", "deepseqvae", "score", str(fit), "-m", str(independent_model),
                           "-o", "/dev/stdout", "--no-progress"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.splitlines()[0] == "mutant,fitness,score,score_sem,status"
    assert "not written beside a stream output" in proc.stderr and not Path("/dev/stdout.spearman.json").exists()
    fit.unlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.txt", "m.csv"]
    (tmp_path / "so.csv").symlink_to("/dev/stdout")  # the same through a link (stdout's file seen as a plain file)
    with open(log_file, "a") as out:
        proc = subprocess.run([sys.executable, "-m", "deepseqvae", "score", str(table), "-m", str(independent_model),
                               "-o", str(tmp_path / "so.csv"), "--no-progress"], stdout=out, stderr=subprocess.PIPE,
                              text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert log_file.read_text().splitlines()[0] == "precious" and len(log_file.read_text().splitlines()) >= 7
    # a descriptor that is not open: one line, before the work
    assert_user_error(invoke("score", table, "-m", independent_model, "-o", "/dev/fd/57", "--no-progress"),
                      "/dev/fd/57: cannot write in /dev/fd")
    # training rewrites its checkpoint: into a stream, the copies would pile up
    assert_user_error(invoke("train", DEMO_A2M, "-o", "/dev/stdout", "--model", "independent"),
                      "/dev/stdout: train writes its model as a file, rewritten at each checkpoint")


def test_help_does_not_import_torch(tmp_path):
    # --help of every command is read before anything runs: it must not wait for torch (~2 s) to import
    code = ("import sys\n"
            "from click.testing import CliRunner\n"
            "from deepseqvae.cli import main\n"
            "for name in [None, *main.commands]:\n"
            "    result = CliRunner().invoke(main, [name, '--help'] if name else ['--help'])\n"
            "    assert result.exit_code == 0, (name, result.output)\n"
            "print(sorted(m for m in ('torch', 'pandas', 'scipy') if m in sys.modules))\n")
    proc = _run([sys.executable, "-c", code], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_real_process_bad_input_one_line_exit_2(tmp_path):
    msa = tmp_path / "empty.a2m"
    msa.write_text("")
    proc = _run([sys.executable, "-m", "deepseqvae.cli", "weights", str(msa), "-o", str(tmp_path / "w.npy")], tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [f"Error: {msa}: file is empty"]


def test_real_process_corrupt_checkpoint(tmp_path):
    ckpt = tmp_path / "junk.pt"
    ckpt.write_bytes(b"\x00garbage" * 100)
    script = Path(sys.executable).with_name("deepseqvae")
    cmd = [str(script)] if script.is_file() else [sys.executable, "-m", "deepseqvae.cli"]
    proc = _run(cmd + ["info", str(ckpt)], tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {ckpt}: not a readable deepseqvae checkpoint"), lines


def test_train_init_bias_profile_starts_at_the_alignments_profile(tmp_path):
    """--init-bias profile reaches TrainConfig: one step of a vanishing step size later the output bias
    (times the inverse temperature) is the weighted profile's centred log-frequencies, by hand."""
    import torch

    from deepseqvae.checkpoint import load_checkpoint
    from deepseqvae.weights import compute_weights

    out = tmp_path / "p.pt"
    tiny = [a for a in TINY_VAE]
    tiny[tiny.index("--steps") + 1] = "1"
    assert_ok(invoke("train", DEMO_A2M, "-o", out, *tiny, "--learning-rate", "1e-12", "--holdout", "0",
                     "--init-bias", "profile", "--profile-pseudocount", "3"))
    ckpt = load_checkpoint(out)
    assert ckpt.train_config["init_bias"] == "profile" and ckpt.train_config["profile_pseudocount"] == 3.0
    bias = ckpt.state["decoder.mu.b_out"] * torch.nn.functional.softplus(ckpt.state["decoder.mu.temperature"])
    codes = read_alignment(DEMO_A2M).codes
    w = np.asarray(compute_weights(codes, 0.2), dtype=np.float64)  # (N,)
    counts = np.stack([np.bincount(codes[:, j], weights=w, minlength=21)[:20] for j in range(codes.shape[1])])
    log_f = np.log(counts + 3.0) - np.log(counts.sum(1, keepdims=True) + 60.0)  # (L, 20), pseudocount 3
    expected = log_f - log_f.mean(1, keepdims=True)
    np.testing.assert_allclose(bias.double().numpy(), expected, rtol=1e-4, atol=1e-4)
    assert "--init-bias [constant|profile]" in assert_ok(invoke("train", "--help")).output
    # the pseudocount alone would be ignored silently: an error instead, and no file
    bad = invoke("train", DEMO_A2M, "-o", tmp_path / "q.pt", *tiny, "--profile-pseudocount", "3")
    assert bad.exit_code == 2 and "--profile-pseudocount sets the profile start's pseudocount: it needs --init-bias " \
        "profile" in bad.output
    assert not (tmp_path / "q.pt").exists()


def test_long_cpu_training_is_announced(monkeypatch, tmp_path):
    """The paper recipe's 300,000 steps on a CPU: a note pointing to the fast recipe, before any training."""
    import deepseqvae.pipeline as pipeline
    from deepseqvae.errors import DeepSeqVAEError

    def stop(*args, **kwargs):
        raise DeepSeqVAEError("stopped before training")

    monkeypatch.setattr(pipeline, "train_file", stop)
    res = invoke("train", DEMO_A2M, "-o", tmp_path / "m.pt", "--device", "cpu", "--recipe", "paper")
    assert res.exit_code == 2
    assert "300,000 steps on the CPU can take days" in res.stderr and "--recipe fast" in res.stderr
    res = invoke("train", DEMO_A2M, "-o", tmp_path / "m.pt", "--device", "cpu", "--recipe", "paper", "--steps", "1000")
    assert "can take days" not in res.stderr
    res = invoke("train", DEMO_A2M, "-o", tmp_path / "m.pt", "--device", "cpu")  # the default: the fast recipe
    assert res.exit_code == 2 and "can take days" not in res.stderr


def test_small_family_warns_that_predictions_will_be_weak(tmp_path, caplog):
    """Neff/L below 1: a warning that names the file and suggests the site-independent baseline."""
    aln = tmp_path / "small.a2m"
    aln.write_text(">F/1-12\nACDEFGHIKLMN\n>a\nACDEFGHIKLMQ\n>b\nWCDEFGHIKLMN\n")  # 3 neighbours: Neff = 1
    with caplog.at_level(logging.WARNING, logger="deepseqvae"):
        assert_ok(invoke("weights", aln, "-o", tmp_path / "w.npy"))
        assert f"{aln}: Neff/L = 0.08" in caplog.text and "--model independent" in caplog.text
        caplog.clear()
        assert_ok(invoke("weights", DEMO_A2M, "-o", tmp_path / "w2.npy"))
        assert "Neff/L" not in caplog.text
        assert_ok(invoke("train", aln, "-o", tmp_path / "si.pt", "--model", "independent"))
        assert "Neff/L" not in caplog.text  # the advice would be to run what is running


def test_an_ensemble_of_two_model_kinds_is_flagged(vae_model, independent_model, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="deepseqvae"):
        assert_ok(invoke("score", DEMO_CSV, "-m", vae_model[0], "-m", independent_model, "-o", tmp_path / "s.csv",
                         "--samples", 2, "--no-progress", "--device", "cpu"))
    assert "an ensemble of different model kinds (independent, vae)" in caplog.text


@pytest.mark.parametrize("products", ["float32", "bfloat16", "auto"])
def test_train_products_reach_the_run_and_the_checkpoint(tmp_path, monkeypatch, products):
    """--products sets the decoder-product precision; "auto" is resolved from the CPU's flags (here
    made an AVX2-only CPU, which has no bfloat16 units) and the checkpoint records what ran."""
    from deepseqvae import hardware
    from deepseqvae.checkpoint import load_checkpoint

    monkeypatch.setattr(hardware, "cpu_flags", lambda: {})
    out = tmp_path / "m.pt"
    tiny = [a for a in TINY_VAE]
    tiny[tiny.index("--steps") + 1] = "2"
    result = assert_ok(invoke("train", DEMO_A2M, "-o", out, *tiny, "--holdout", "0", "--products", products))
    expected = "float32" if products == "auto" else products
    assert load_checkpoint(out).train_config["matmul_dtype"] == expected
    said = "float32 (auto: no native bfloat16 units on cpu)" if products == "auto" else products
    assert f"Decoder products: {said}\n" in result.output


@pytest.mark.parametrize("flag, used", [(None, "bfloat16"), ("--no-encoder-products", "float32"),
                                        ("--encoder-products", "bfloat16")])
def test_train_encoder_products_follow_neff_or_the_flag(tmp_path, flag, used):
    """The fast recipe runs the encoder's hidden products in the run's precision for the demo (Neff 654 >= 100);
    --no-encoder-products keeps them float32; the summary and the checkpoint say which ran."""
    from deepseqvae.checkpoint import load_checkpoint

    out = tmp_path / "m.pt"
    tiny = [a for a in TINY_VAE]
    tiny[tiny.index("--steps") + 1] = "2"
    result = assert_ok(invoke("train", DEMO_A2M, "-o", out, *tiny, "--holdout", "0", "--products", "bfloat16",
                              *([flag] if flag else [])))
    assert load_checkpoint(out).train_config["encoder_products"] is (used == "bfloat16")
    assert f"Decoder products: bfloat16\nEncoder products: {used}\n" in result.output


def test_train_refit_beside_or_after_the_heldout_run(tmp_path, monkeypatch):
    """With two torch threads the fast recipe's refit trains beside the held-out run unless --refit-after; the
    summary says which, and both give the same model for the same threads per run."""
    import torch

    from deepseqvae.checkpoint import load_checkpoint

    tiny = [a for a in TINY_VAE]
    tiny[tiny.index("--steps") + 1] = "30"
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)  # the default decides by torch's threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # the suite stays on one thread
    states = {}
    beside = "a second run on all 3,000 sequences beside it, on a second thread, up to that step (--refit)"
    for flag, when in [(None, beside), ("--refit-beside", beside),
                       ("--refit-after", "then a second run on all 3,000 sequences up to that step (--refit)")]:
        out = tmp_path / f"{flag}.pt"
        result = assert_ok(invoke("train", DEMO_A2M, "-o", out, *tiny, "--holdout", "0.1", "--early-stopping", "1",
                                  *([flag] if flag else [])))
        assert f"; {when}, the model saved" in result.output
        ck = load_checkpoint(out)
        assert ck.history["refit_step"] == [ck.step] == [30]
        # the pace counts both runs' 60 steps, and says so (not the saved model's 30 at twice the rate)
        assert re.search(r"Steps: 30 \([\d.]+ steps/s on cpu \(60 steps of both runs\)\)", result.output), \
            result.output
        states[flag] = ck.state
    for k in states[None]:
        assert torch.equal(states[None][k], states["--refit-after"][k]), k


def test_train_rejects_unknown_products(tmp_path):
    bad = invoke("train", DEMO_A2M, "-o", tmp_path / "m.pt", "--products", "fp8")
    assert bad.exit_code == 2 and "Invalid value for '--products'" in bad.output
    assert not (tmp_path / "m.pt").exists()


def test_train_without_early_stopping_refits_to_the_last_step(tmp_path):
    # --early-stopping 0: the held-out run chooses no step, the refit trains all of them (its summary crashed)
    out = tmp_path / "m.pt"
    r = assert_ok(invoke("train", DEMO_A2M, "-o", out, *TINY_VAE[2:], "--steps", 200, "--early-stopping", 0))
    assert "no early stopping; " in r.output and "to its last step, 200 (--refit), the model saved" in r.output
    from deepseqvae.checkpoint import load_checkpoint

    assert load_checkpoint(out).history["refit_step"] == [200]


def test_weights_file_replaced_by_the_invariant_filter_is_said(tmp_path, caplog):
    ones = tmp_path / "ones.npy"
    np.save(ones, np.ones(3000))
    with caplog.at_level(logging.WARNING, logger="deepseqvae.pipeline"):
        assert_ok(invoke("train", DEMO_A2M, "-o", tmp_path / "m.pt", "--model", "independent", "--weights", ones,
                         "--max-invariant-changes", 8))
    assert f"{ones}: not used: --max-invariant-changes dropped records, so the weights of the 2994 kept are " \
        "recomputed" in caplog.text


def test_numbering_beyond_a_billion_is_refused():
    assert_user_error(invoke("weights", DEMO_A2M, "-o", "w.npy", "--first-index", 99999999999999999999),
                      "demo.a2m: --first-index 99999999999999999999 numbers residues beyond ±1,000,000,000")
    assert_user_error(invoke("weights", DEMO_A2M, "-o", "w.npy", "--first-index", 10**9 - 10),
                      "numbers residues beyond")


def test_gz_output_names_are_refused_and_simulate_says_what_it_replaces(tmp_path, caplog):
    # a .gz name would hold plain text, which pandas.read_csv('x.csv.gz') cannot read
    assert_user_error(invoke("weights", DEMO_A2M, "-o", tmp_path / "w.npy.gz"),
                      "w.npy.gz: outputs are written uncompressed: name it without .gz")
    assert not (tmp_path / "w.npy.gz").exists()
    assert_ok(invoke("simulate", "-o", tmp_path, "--n-seqs", 5, "--length", 8, "--n-doubles", 0))
    with caplog.at_level(logging.WARNING, logger="deepseqvae.simulate"):
        assert_ok(invoke("simulate", "-o", tmp_path, "--n-seqs", 5, "--length", 8, "--n-doubles", 0))
    assert f"replacing {tmp_path / 'demo.a2m'} and {tmp_path / 'demo_mutants.csv'}" in caplog.text
