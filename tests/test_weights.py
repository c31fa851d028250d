"""Tests of deepseqvae.weights: the DeepSequence/EVE reweighting, exactness, blocking, CLI."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from deepseqvae.alignment import read_alignment
from deepseqvae.alphabet import GAP_CODE, encode_many
from deepseqvae.cli import main
from deepseqvae.errors import DeepSeqVAEError
from deepseqvae.hardware import native_int8_matmul
from deepseqvae.weights import (
    WeightsError,
    block_size,
    check_theta,
    compute_weights,
    default_weights_path,
    int8_matmul_available,
    min_matches_table,
    resolve_device,
    resolve_kernel,
    save_weights,
)

from conftest import ancestral_family

KERNELS = ["float32"] + (["int8"] if int8_matmul_available("cpu") else [])


def eve_reference(codes: np.ndarray, theta: float) -> np.ndarray:
    """EVE's own recipe, literally: float64 one-hot, matches / nongap(query) > 1 - theta."""
    x = np.eye(GAP_CODE + 1)[codes.astype(np.int64)][:, :, :GAP_CODE].reshape(len(codes), -1)
    out = np.zeros(len(codes))
    for i, seq in enumerate(x):
        denom = seq @ seq
        if denom == 0:
            continue
        out[i] = 1.0 / np.sum((x @ seq) / denom > 1 - theta)
    return out


# --- the definition, by hand ----------------------------------------------------------------------

HAND = ["ACDEF",
        "ACDEG",  # 4 of 5 shared with s0
        "ACD--",  # 3 residues, all shared with s0 and s1
        "WWWWW",
        "-----"]  # all gaps


def test_hand_counted_example():
    codes = encode_many(HAND)
    # Hand count (identity is normalised by the query's non-gap length; neighbours need > 1 - theta):
    #   matches: s0-s1 = 4, s0-s2 = 3, s1-s2 = 3, anything with s3 or s4 = 0
    #   theta = 0.2 (identity > 0.8):
    #     s0: s1 4/5 = 0.8 (not > 0.8), s2 3/5 -> n = 1 (itself)       -> w = 1
    #     s1: s0 4/5 = 0.8 (not > 0.8), s2 3/5 -> n = 1                -> w = 1
    #     s2: s0 3/3 = 1, s1 3/3 = 1           -> n = 3                -> w = 1/3
    #     s3: nobody                           -> n = 1                -> w = 1
    #     s4: no non-gap residue                                       -> w = 0
    #   Neff = 3 + 1/3
    np.testing.assert_allclose(compute_weights(codes, 0.2), [1, 1, 1 / 3, 1, 0], rtol=0, atol=1e-15)
    #   theta = 0.25 (identity > 0.75): s0 and s1 now see each other (0.8 > 0.75)
    #     s0: n = 2 -> 1/2; s1: n = 2 -> 1/2; s2: n = 3 -> 1/3; s3: 1; s4: 0; Neff = 2 + 1/3
    w = compute_weights(codes, 0.25)
    np.testing.assert_allclose(w, [0.5, 0.5, 1 / 3, 1, 0], rtol=0, atol=1e-15)
    assert w.dtype == np.float64 and w.shape == (5,)
    np.testing.assert_array_equal(w, eve_reference(codes, 0.25))


def test_identical_sequences_half_each_and_all_gap_zero():
    codes = encode_many(["ACDEFG", "ACDEFG", "------"])
    np.testing.assert_array_equal(compute_weights(codes), [0.5, 0.5, 0.0])
    np.testing.assert_array_equal(compute_weights(encode_many(["----", "----"])), [0.0, 0.0])


@pytest.mark.parametrize("kernel", KERNELS)
def test_one_column_of_one_residue(kernel):
    """A one-hot of one column (one modelled column holding one residue): torch 2.13's int8 product returns
    uninitialised sums for one inner column, so these weights were wrong (and changed from run to run)."""
    for n in (3, 4, 8, 40):
        np.testing.assert_array_equal(compute_weights(encode_many(["A"] * n), kernel=kernel), [1 / n] * n)
    np.testing.assert_array_equal(compute_weights(encode_many(["A", "-", "A"]), kernel=kernel), [0.5, 0.0, 0.5])


def test_empty_and_single():
    assert compute_weights(np.zeros((0, 7), dtype=np.int8)).shape == (0,)
    np.testing.assert_array_equal(compute_weights(encode_many(["ACD"])), [1.0])


@pytest.mark.parametrize("theta", [0, 1, -0.1, 1.5, float("nan"), "abc", None, True])
def test_theta_validated(theta):
    with pytest.raises(WeightsError, match="theta must be"):
        compute_weights(encode_many(["ACD", "ACE"]), theta)
    with pytest.raises(ValueError):
        check_theta(theta)
    assert issubclass(WeightsError, DeepSeqVAEError)


def test_theta_below_float_precision_is_refused_not_neff_zero():
    # 1 - 1e-17 == 1.0: no sequence would be its own neighbour, every weight 1/0 -> 0, Neff 0
    with pytest.raises(WeightsError, match=r"theta 1e-17 is below float precision \(1 - theta rounds to 1\)"):
        compute_weights(encode_many(["ACD", "ACE"]), 1e-17)
    assert compute_weights(encode_many(["ACD", "ACE"]), 1e-15).tolist() == [1.0, 1.0]  # the smallest kind still works


@pytest.mark.parametrize("bad, match", [
    (np.zeros(5, dtype=np.int8), "2-D"),
    (np.zeros((2, 3), dtype=np.float32), "integer"),
    (np.full((2, 3), 21), r"0\.\.20"),
    (np.full((2, 3), -1), r"0\.\.20"),
])
def test_codes_validated(bad, match):
    with pytest.raises(WeightsError, match=match):
        compute_weights(bad)


@pytest.mark.parametrize("cuda", [False, True])
def test_devices(cuda, monkeypatch):
    """auto is CUDA exactly when it is available; asking for an absent CUDA is a clear error."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if cuda else "cpu")
    if cuda:
        assert resolve_device("cuda") == torch.device("cuda")
    else:
        with pytest.raises(WeightsError, match="CUDA is not available"):
            resolve_device("cuda")
    with pytest.raises(WeightsError, match="unknown device"):
        resolve_device("tpu9")


# --- exactness of the threshold and of blocking -----------------------------------------------------


@pytest.mark.parametrize("theta", [0.2, 0.01, 0.1, 0.25, 0.3, 1 / 3, 0.5, 0.7, 0.999, 1e-9])
def test_min_matches_table_is_eves_float64_decision(theta):
    length = 600
    table = min_matches_table(length, theta)
    assert table[0] == math.inf
    m = np.arange(length + 1)[None, :]
    n = np.arange(1, length + 1)[:, None]
    with np.errstate(divide="ignore"):
        eve = (m.astype(np.float64) / n.astype(np.float64)) > (1.0 - theta)
    np.testing.assert_array_equal(eve, m >= table[1:, None])


@pytest.mark.parametrize("kernel", KERNELS)
def test_blocked_equals_unblocked_and_eve_reference(kernel):
    codes = ancestral_family(n=257, length=37, n_ancestors=6, rate=0.12, seed=3)
    reference = eve_reference(codes, 0.2)
    assert 10 < reference.sum() < 200  # neighbour counts are non-trivial
    width = 20 * codes.shape[1]
    tiny = 60_000
    assert block_size(len(codes), codes.shape[1], width, tiny, kernel=kernel) < 30  # >= 9 blocks
    np.testing.assert_array_equal(compute_weights(codes, 0.2, memory_budget_bytes=tiny, kernel=kernel),
                                  reference)
    np.testing.assert_array_equal(compute_weights(codes, 0.2, kernel=kernel), reference)
    small = codes[:40]
    np.testing.assert_array_equal(compute_weights(small, 0.2, memory_budget_bytes=1, kernel=kernel),
                                  eve_reference(small, 0.2))  # B = 1
    np.testing.assert_array_equal(compute_weights(torch.as_tensor(codes), 0.2, kernel=kernel), reference)
    for theta in (0.05, 0.35):
        np.testing.assert_array_equal(
            compute_weights(codes, theta, memory_budget_bytes=tiny, kernel=kernel),
            eve_reference(codes, theta))


def test_kernels():
    cpu = torch.device("cpu")
    assert resolve_kernel("float32", cpu) == "float32"
    native = native_int8_matmul("cpu") and int8_matmul_available("cpu")
    assert resolve_kernel("auto", cpu) == ("int8" if native else "float32")
    assert resolve_kernel("auto", torch.device("meta")) == "float32"
    with pytest.raises(WeightsError, match="unknown kernel"):
        compute_weights(encode_many(["ACD"]), kernel="fp8")  # type: ignore[arg-type]
    with pytest.raises(WeightsError, match="not available"):
        resolve_kernel("int8", torch.device("meta"))


def test_progress_bar_runs(capsys):
    codes = ancestral_family(n=50, length=10, n_ancestors=3, rate=0.1, seed=0)
    np.testing.assert_array_equal(compute_weights(codes, progress=True, memory_budget_bytes=20_000),
                                  eve_reference(codes, 0.2))


def test_save_weights_atomic_and_default_name(tmp_path):
    out = save_weights(tmp_path / "sub" / "w.npy", np.array([0.5, 1.0]))
    np.testing.assert_array_equal(np.load(out), [0.5, 1.0])
    assert [p.name for p in out.parent.iterdir()] == ["w.npy"]  # no temporary file left behind
    assert default_weights_path("x/BLAT.a2m", 0.2).name == "BLAT_theta_0.2.npy"


# --- CLI -------------------------------------------------------------------------------------------


def test_cli_weights_writes_npy_and_prints(tmp_path):
    path = tmp_path / "toy.a2m"
    path.write_text(">wt/5-9\nACDEF\n>s1\nACDEG\n>s2\nACD--\n>s3\nWWWWW\n>x\nXCDEF\n")
    out = tmp_path / "w.npy"
    result = CliRunner().invoke(main, ["weights", str(path), "-o", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(np.load(out), [1, 1, 1 / 3, 1])
    assert "Sequences: 4 kept, 1 dropped (1 with non-standard residues" in result.output
    assert "L = 5 focus columns, residues 5-9" in result.output
    assert "Neff = 3.33 (theta = 0.2" in result.output
    assert "Time: " in result.output and f"Wrote 4 weights to {out}" in result.output
    assert "weights: " in result.stderr  # the progress bar, on by default (a large family's weights take minutes)
    quiet = CliRunner().invoke(main, ["weights", str(path), "-o", str(out), "--device", "cpu", "--no-progress"])
    assert quiet.exit_code == 0 and "weights: " not in quiet.stderr


def test_cli_weights_default_output_and_theta_error(tmp_path, monkeypatch):
    path = tmp_path / "toy.a2m"
    path.write_text(">wt\nACDEF\n>s1\nACDEF\n")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["weights", str(path), "--theta", "0.3"])
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(np.load(tmp_path / "toy_theta_0.3.npy"), [0.5, 0.5])
    result = CliRunner().invoke(main, ["weights", str(path), "--theta", "1"])
    assert result.exit_code == 2
    assert result.output.startswith("Error: theta must be strictly between 0 and 1")
    assert "Traceback" not in result.output


def test_cli_help_documents_every_option():
    result = CliRunner().invoke(main, ["weights", "--help"])
    assert result.exit_code == 0
    for option in ("--theta", "--output", "--focus", "--first-index", "--msa-format",
                   "--max-gap-fraction", "--min-column-coverage", "--device", "--progress"):
        assert option in result.output


# --- real data -------------------------------------------------------------------------------------


@pytest.mark.integration
def test_pten_reproduces_eve_weights_exactly(shared_data):
    aln = read_alignment(shared_data / "PTEN_HUMAN" / "msa.a2m")
    eve = np.load(shared_data / "PTEN_HUMAN" / "PTEN_HUMAN_theta_0.2.npy")
    w = compute_weights(aln.codes, 0.2)
    assert w.shape == eve.shape == (1179,)
    assert np.abs(w - eve).max() < 1e-9
    for kernel in KERNELS:
        np.testing.assert_array_equal(
            compute_weights(aln.codes, 0.2, memory_budget_bytes=8_000_000, kernel=kernel), eve)


@pytest.mark.integration
def test_blat_and_gfp_neff(shared_data):
    blat = read_alignment(shared_data / "BLAT_ECOLX" / "msa.a2m")
    assert compute_weights(blat.codes).sum() == pytest.approx(2605.0, abs=0.1)
    gfp = read_alignment(shared_data / "GFP_AEQVI" / "msa.a2m")
    assert compute_weights(gfp.codes).sum() == pytest.approx(13.1, abs=0.05)


@pytest.mark.integration
def test_cli_weights_on_gfp(shared_data, tmp_path):
    out = tmp_path / "gfp.npy"
    result = CliRunner().invoke(main, ["weights", str(shared_data / "GFP_AEQVI" / "msa.a2m"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "Sequences: 380 kept, 16 dropped" in result.output
    assert "Neff = 13.08" in result.output
    assert np.load(out).shape == (380,)
