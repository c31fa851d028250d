"""Tests of deepseqvae.simulate: the Potts model, Gibbs sampling, exact mutant fitness, demo files."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from deepseqvae.alignment import read_alignment
from deepseqvae.alphabet import AA_TO_CODE, ALPHABET, GAP_CODE, N_AA
from deepseqvae.errors import DeepSeqVAEError
from deepseqvae.simulate import (
    PottsModel,
    SimulationError,
    double_mutants,
    gibbs_sample,
    max_double_mutants,
    mutant_fitness,
    random_potts,
    simulate_family,
    single_mutants,
    write_demo,
)
from deepseqvae.tables import read_mutant_table

A, C, D, E = (AA_TO_CODE[a] for a in "ACDE")


def tiny_model() -> PottsModel:
    """L = 3 with a few hand-set numbers: couplings on pairs (0, 1) and (0, 2) only."""
    h = np.zeros((3, N_AA))
    h[0, A] = 1.0
    h[1, C] = -0.5
    h[2, D] = 2.0
    J = np.zeros((3, 3, N_AA, N_AA))
    J[0, 1, A, C] = -1.0
    J[0, 2, A, D] = 0.25
    J[0, 2, C, E] = 3.0
    J[1, 0] = J[0, 1].T
    J[2, 0] = J[0, 2].T
    return PottsModel(h=h, J=J)


def brute_energy(model: PottsModel, x) -> float:
    """H(x) = sum_i h_i(x_i) + sum_{i<j} J_ij(x_i, x_j), literally."""
    L = model.L
    e = sum(model.h[i, x[i]] for i in range(L))
    e += sum(model.J[i, j, x[i], x[j]] for i in range(L) for j in range(i + 1, L))
    return float(e)


def softmax(z: np.ndarray) -> np.ndarray:
    p = np.exp(z - z.max(axis=-1, keepdims=True))
    return p / p.sum(axis=-1, keepdims=True)


# --- the model -------------------------------------------------------------------------------------


def test_energy_by_hand():
    model = tiny_model()
    # H(ACD) = h0(A) + h1(C) + h2(D) + J01(A, C) + J02(A, D) + J12(C, D) = 1 - 0.5 + 2 - 1 + 0.25 + 0 = 1.75
    assert model.energy(np.array([A, C, D])) == pytest.approx(1.75, abs=1e-12)
    # H(ACE) = 1 - 0.5 + 0 - 1 + 0 = -0.5 ; H(CAE) = 0 + 0 + 0 + 0 + J02(C, E) = 3
    batch = np.array([[A, C, D], [A, C, E], [C, A, E], [E, E, E]])
    np.testing.assert_allclose(model.energy(batch), [1.75, -0.5, 3.0, 0.0], rtol=0, atol=1e-12)
    assert model.energy(batch).shape == (4,) and np.ndim(model.energy(batch[0])) == 0
    np.testing.assert_array_equal(model.pairs, [[0, 1], [0, 2]])
    assert list(model.neighbours(0)) == [1, 2] and list(model.neighbours(1)) == [0]


def test_energy_equals_brute_force_on_a_random_model():
    model = random_potts(L=10, n_pairs=8, seed=4)
    x = np.random.default_rng(0).integers(0, N_AA, size=(25, 10))
    np.testing.assert_allclose(model.energy(x), [brute_energy(model, row) for row in x], rtol=1e-12, atol=1e-12)


def test_energy_rejects_gaps_and_wrong_length():
    model = tiny_model()
    with pytest.raises(ValueError, match="no gaps"):
        model.energy(np.array([A, GAP_CODE, D]))
    with pytest.raises(ValueError, match="length"):
        model.energy(np.array([A, C]))


def test_conditional_logits_are_the_energy_differences():
    model = random_potts(L=8, n_pairs=6, seed=2)
    x = np.random.default_rng(1).integers(0, N_AA, size=(5, 8))
    for i in range(8):
        logits = model.conditional_logits(x, i)  # (5, 20)
        alt = np.repeat(x[:, None, :], N_AA, axis=1)  # (5, 20, L): every residue at site i
        alt[:, :, i] = np.arange(N_AA)
        energies = model.energy(alt.reshape(-1, 8)).reshape(5, N_AA)
        np.testing.assert_allclose(softmax(logits), softmax(energies), rtol=1e-10, atol=1e-12)


def test_couplings_symmetric_zero_diagonal():
    model = random_potts(L=20, n_pairs=15, seed=0)
    J = model.J
    np.testing.assert_array_equal(J, J.transpose(1, 0, 3, 2))
    assert not J[np.arange(20), np.arange(20)].any()
    pairs = model.pairs
    assert len(pairs) == 15 and (pairs[:, 1] - pairs[:, 0] >= 3).all()  # min_separation
    nz = np.any(J != 0, axis=(2, 3))
    assert nz.sum() == 2 * 15 and all(nz[i, j] and nz[j, i] for i, j in pairs)
    assert model.h.shape == (20, N_AA)


def test_potts_model_validates_its_arrays():
    good = tiny_model()
    J = good.J.copy()
    J[0, 1, A, D] = 1.0  # J[1, 0] not updated
    with pytest.raises(ValueError, match="symmetric"):
        PottsModel(h=good.h, J=J)
    J = good.J.copy()
    J[1, 1, A, A] = 1.0
    with pytest.raises(ValueError, match="diagonal"):
        PottsModel(h=good.h, J=J)
    with pytest.raises(ValueError, match="shape"):
        PottsModel(h=good.h[:, :5], J=good.J)
    with pytest.raises(ValueError, match="shape"):
        PottsModel(h=good.h, J=good.J[:2, :2])


def test_random_potts_is_seeded():
    a, b, c = random_potts(L=12, n_pairs=8, seed=5), random_potts(L=12, n_pairs=8, seed=5), random_potts(
        L=12, n_pairs=8, seed=6)
    np.testing.assert_array_equal(a.h, b.h)
    np.testing.assert_array_equal(a.J, b.J)
    assert not np.array_equal(a.h, c.h)


# --- sampling --------------------------------------------------------------------------------------


def test_gibbs_sample_reproducible():
    model = random_potts(L=10, n_pairs=8, seed=1)
    x = gibbs_sample(model, 130, n_chains=40, burn_in=5, thin=2, seed=7)
    assert x.shape == (130, 10) and x.dtype == np.int8
    assert x.min() >= 0 and x.max() < N_AA
    np.testing.assert_array_equal(x, gibbs_sample(model, 130, n_chains=40, burn_in=5, thin=2, seed=7))
    np.testing.assert_array_equal(x, gibbs_sample(model, 130, n_chains=40, burn_in=5, thin=2,
                                                  seed=np.random.default_rng(7)))
    assert not np.array_equal(x, gibbs_sample(model, 130, n_chains=40, burn_in=5, thin=2, seed=8))
    assert gibbs_sample(model, 0, seed=0).shape == (0, 10)
    with pytest.raises(ValueError):
        gibbs_sample(model, 10, thin=0)


def test_gibbs_independent_sites_reproduce_softmax_of_the_fields():
    # J = 0: every sweep draws each site afresh from softmax(h_i), so the samples are independent
    rng = np.random.default_rng(3)
    L, n = 4, 8000
    h = rng.normal(0.0, 1.5, size=(L, N_AA))
    model = PottsModel(h=h, J=np.zeros((L, L, N_AA, N_AA)))
    x = gibbs_sample(model, n, n_chains=400, burn_in=1, thin=1, seed=11)
    freq = np.stack([np.bincount(x[:, i], minlength=N_AA) for i in range(L)]) / n  # (L, 20)
    exact = softmax(h)
    # binomial standard error per cell; 5 sigma over 80 cells fails with probability < 1e-4
    tol = 5 * np.sqrt(exact * (1 - exact) / n) + 1e-3
    assert (np.abs(freq - exact) <= tol).all(), np.abs(freq - exact).max()
    assert 0.5 * np.abs(freq - exact).sum(axis=1).max() < 0.05  # total variation per site


def test_gibbs_coupled_model_matches_exact_enumeration():
    # L = 3 has 8,000 states: the exact single-site marginals come from enumerating them all
    rng = np.random.default_rng(5)
    L = 3
    h = rng.normal(0.0, 1.0, size=(L, N_AA))
    J = np.zeros((L, L, N_AA, N_AA))
    for i, j in ((0, 1), (1, 2)):
        block = rng.normal(0.0, 1.0, size=(N_AA, N_AA))
        J[i, j], J[j, i] = block, block.T
    model = PottsModel(h=h, J=J)
    states = np.array(list(itertools.product(range(N_AA), repeat=L)))
    p = softmax(model.energy(states))
    exact = np.stack([np.bincount(states[:, i], weights=p, minlength=N_AA) for i in range(L)])
    n = 9000
    x = gibbs_sample(model, n, n_chains=300, burn_in=20, thin=3, seed=2)
    freq = np.stack([np.bincount(x[:, i], minlength=N_AA) for i in range(L)]) / n
    # samples of a chain 3 sweeps apart are nearly independent here; allow for some correlation
    tol = 6 * np.sqrt(exact * (1 - exact) / n) + 2e-3
    assert (np.abs(freq - exact) <= tol).all(), np.abs(freq - exact).max()


def test_simulate_family_shapes_and_wild_type_first():
    model = random_potts(L=12, n_pairs=8, seed=3)
    fam = simulate_family(model, n_seqs=150, seed=1, n_roots=8, branch_sweeps=(1.0, 0.5, 0.2, 0.1, 0.05))
    assert fam.codes.shape == fam.full.shape == (150, 12)
    assert (fam.codes[0] == fam.full[0]).all() and (fam.codes[0] != GAP_CODE).all()  # no gap in the wild type
    assert (fam.full != GAP_CODE).all()
    gapped = fam.codes == GAP_CODE
    assert ((fam.codes == fam.full) | gapped).all()  # gaps only replace residues
    assert model.energy(fam.full[0]) == model.energy(fam.full).max()  # the fittest leaf is the wild type
    with pytest.raises(ValueError, match="exceeds"):
        simulate_family(model, n_seqs=1000, seed=1, n_roots=2, branch_sweeps=(1.0,))
    # without n_roots the roots are sized from n_seqs: 48 roots · 2 leaves would be 96 < 250
    big = simulate_family(model, n_seqs=250, seed=1, root_burn_in=5, branch_sweeps=(0.1,))
    assert big.codes.shape == (250, 12)


# --- mutants and their exact fitness ---------------------------------------------------------------


def test_single_mutants_all_19_per_site():
    wt = np.array([A, C, D, E, A], dtype=np.int8)
    singles = single_mutants(wt)
    assert len(singles) == 19 * len(wt) and len(set(singles)) == len(singles)
    assert all(len(m) == 1 and m[0][1] == wt[m[0][0]] and m[0][2] != m[0][1] for m in singles)
    positions = [m[0][0] for m in singles]
    assert positions == sorted(positions) and all(positions.count(i) == 19 for i in range(len(wt)))
    assert [m[0][2] for m in singles[:19]] == [b for b in range(N_AA) if b != A]  # alphabet order


def test_mutant_fitness_equals_energy_differences():
    model = random_potts(L=10, n_pairs=8, seed=1)
    wt = gibbs_sample(model, 1, n_chains=1, burn_in=10, seed=0)[0]
    rng = np.random.default_rng(0)
    mutants = single_mutants(wt)[::7] + double_mutants(wt, model, 30, rng)
    got = mutant_fitness(model, wt, mutants)
    for muts, f in zip(mutants, got, strict=True):
        seq = wt.astype(np.int64).copy()
        for i, _, b in muts:
            seq[i] = b
        assert f == pytest.approx(brute_energy(model, seq) - brute_energy(model, wt), abs=1e-10)
    # additivity only breaks through the coupling of the two positions
    singles = single_mutants(wt)
    by_single = dict(zip((m[0] for m in singles), mutant_fitness(model, wt, singles), strict=True))
    for (s1, s2), f in zip(mutants[-30:], got[-30:], strict=True):
        i, j = s1[0], s2[0]
        epistasis = (model.J[i, j, s1[2], s2[2]] - model.J[i, j, s1[2], wt[j]] - model.J[i, j, wt[i], s2[2]]
                     + model.J[i, j, wt[i], wt[j]])
        assert f == pytest.approx(by_single[s1] + by_single[s2] + epistasis, abs=1e-10)
    wrong = ((0, (int(wt[0]) + 1) % N_AA, int(wt[0])),)
    with pytest.raises(ValueError, match="wild type has"):
        mutant_fitness(model, wt, [wrong])


def test_double_mutants_distinct_sorted_and_half_coupled():
    model = random_potts(L=15, n_pairs=10, seed=2)
    wt = gibbs_sample(model, 1, n_chains=1, burn_in=10, seed=0)[0]
    doubles = double_mutants(wt, model, 40, np.random.default_rng(1))
    assert len(doubles) == len(set(doubles)) == 40 and doubles == sorted(doubles)
    coupled = {tuple(p) for p in model.pairs.tolist()}
    for (i, a, b), (j, c, d) in doubles:
        assert i < j and a == wt[i] and c == wt[j] and b != a and d != c
    assert sum((s1[0], s2[0]) in coupled for s1, s2 in doubles) >= 20


def test_double_mutants_up_to_every_double_and_no_further():
    """Asking for every double (or more coupled ones than exist) ends; asking for more is an error."""
    model = random_potts(L=6, n_pairs=1, seed=2, min_separation=3)
    wt = gibbs_sample(model, 1, n_chains=1, burn_in=5, seed=0)[0]
    assert max_double_mutants(6) == 15 * 19 * 19 == 5415 and max_double_mutants(1) == 0
    every = double_mutants(wt, model, 5415, np.random.default_rng(0))
    everything = {((i, int(wt[i]), a), (j, int(wt[j]), b)) for i, j in itertools.combinations(range(6), 2)
                  for a in range(N_AA) if a != wt[i] for b in range(N_AA) if b != wt[j]}
    assert len(every) == 5415 and set(every) == everything and every == sorted(every)
    # one coupled pair has 361 doubles: half of 2,000 cannot be coupled; all 361 are, the rest are not
    (pair,) = model.pairs.tolist()
    doubles = double_mutants(wt, model, 2000, np.random.default_rng(1))
    assert len(set(doubles)) == 2000
    assert sum([s1[0], s2[0]] == pair for s1, s2 in doubles) == 19 * 19
    # dense requests are reproducible too
    assert double_mutants(wt, model, 2000, np.random.default_rng(1)) == doubles
    with pytest.raises(SimulationError, match=r"^cannot draw 5416 distinct double mutants: a sequence of length 6 "
                                              r"has 5,415 \(15 pairs of positions × 19 × 19\)$") as info:
        double_mutants(wt, model, 5416, np.random.default_rng(0))
    assert isinstance(info.value, ValueError) and isinstance(info.value, DeepSeqVAEError)
    assert double_mutants(wt, model, 0, np.random.default_rng(0)) == []


def test_write_demo_refuses_more_doubles_than_exist_before_simulating(tmp_path):
    with pytest.raises(SimulationError, match=r"^--n-doubles 100,000: a sequence of length 5 has only 3,610 "
                                              r"distinct double mutants \(10 pairs of positions × 19 × 19\); "
                                              r"ask for at most that many, or a longer --length$"):
        write_demo(tmp_path / "sim", n_seqs=2, L=5, n_pairs=2, n_doubles=100_000)
    assert not (tmp_path / "sim").exists()
    write_demo(tmp_path / "sim", n_seqs=2, L=5, n_pairs=2, n_doubles=3610)  # every double: written, promptly
    lines = (tmp_path / "sim" / "demo_mutants.csv").read_text().splitlines()
    assert len(lines) == 1 + 19 * 5 + 3610 and len(set(lines)) == len(lines)


def test_simulate_cli_too_many_doubles_is_a_one_line_error(tmp_path):
    from click.testing import CliRunner

    from deepseqvae.cli import main

    result = CliRunner().invoke(main, ["simulate", "-o", str(tmp_path / "sim2"), "--n-seqs", "2", "--length", "5",
                                       "--n-doubles", "100000"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "Error: --n-doubles 100,000: a sequence of length 5 has only 3,610 distinct double mutants (10 pairs of "
        "positions × 19 × 19); ask for at most that many, or a longer --length"]


# --- the demo files --------------------------------------------------------------------------------

SMALL = dict(n_seqs=200, L=12, n_pairs=8, n_doubles=20)


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return out, write_demo(out, seed=3, **SMALL)


def test_write_demo_stats_and_files_parse(small_demo):
    out, stats = small_demo
    assert set(stats) == {"n_seqs", "neff", "spearman_si_singles", "spearman_si_doubles",
                          "mean_abs_epistasis_doubles"}
    assert stats["n_seqs"] == 200 and 1.0 <= stats["neff"] <= 200
    assert -1 <= stats["spearman_si_singles"] <= 1 and stats["mean_abs_epistasis_doubles"] >= 0
    assert sorted(p.name for p in out.iterdir()) == ["demo.a2m", "demo_mutants.csv"]  # no temporary files

    aln = read_alignment(out / "demo.a2m")
    assert (aln.N, aln.L) == (200, 12)
    assert aln.focus_id == "DEMO/1-12" and list(aln.positions) == list(range(1, 13))
    table = read_mutant_table(out / "demo_mutants.csv")
    assert list(table.frame.columns) == ["mutant", "fitness"] and len(table.frame) == 19 * 12 + 20
    mutants = list(table.mutants)
    assert all(":" not in m for m in mutants[:228]) and all(m.count(":") == 1 for m in mutants[228:])

    # the fitness column is the exact energy difference under the model write_demo used
    model = random_potts(L=12, n_pairs=8, seed=3)
    wt = np.array([AA_TO_CODE[a] for a in aln.focus_seq])
    parsed = []
    for m in mutants:
        parsed.append(tuple((int(p[1:-1]) - 1, AA_TO_CODE[p[0]], AA_TO_CODE[p[-1]]) for p in m.split(":")))
    np.testing.assert_allclose(table.frame["fitness"].astype(float), mutant_fitness(model, wt, parsed),
                               rtol=0, atol=5e-7)
    assert [ALPHABET[b] for (_, _, b), in parsed[:19]] == [a for a in ALPHABET if a != aln.focus_seq[0]]


def test_write_demo_same_seed_same_bytes_other_seed_other_bytes(small_demo, tmp_path):
    out, _ = small_demo
    write_demo(tmp_path / "same", seed=3, **SMALL)
    write_demo(tmp_path / "other", seed=4, **SMALL)
    for name in ("demo.a2m", "demo_mutants.csv"):
        assert (tmp_path / "same" / name).read_bytes() == (out / name).read_bytes()
        assert (tmp_path / "other" / name).read_bytes() != (out / name).read_bytes()


def test_simulate_length_is_bounded_by_the_dense_couplings_memory(tmp_path):
    from click.testing import CliRunner

    from deepseqvae.cli import main

    result = CliRunner().invoke(main, ["simulate", "-o", str(tmp_path / "big"), "--length", "1001"])
    assert result.exit_code == 2 and "1001 is not in the range 5<=x<=1000" in result.output
    assert not (tmp_path / "big").exists()


def test_write_demo_replaces_both_files_or_neither(tmp_path, monkeypatch):
    # a full disk while the mutants were written left the new alignment beside the old family's mutants
    import errno

    import deepseqvae.simulate as sim
    from deepseqvae.errors import OutputError

    write_demo(tmp_path, n_seqs=20, L=8, n_pairs=2, n_doubles=3, seed=1)
    before = {n: (tmp_path / n).read_text() for n in ("demo.a2m", "demo_mutants.csv")}

    def full(muts):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sim, "_label", full)
    with pytest.raises(OutputError, match="demo_mutants.csv: cannot write: No space left on device"):
        write_demo(tmp_path, n_seqs=20, L=8, n_pairs=2, n_doubles=3, seed=2)
    assert {n: (tmp_path / n).read_text() for n in before} == before
    monkeypatch.undo()
    # the disk full at the second file's flush, after the first was written whole: neither is replaced
    import os

    real_fsync, calls = os.fsync, []

    def second_fails(fd):
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", second_fails)
    with pytest.raises(OutputError, match="No space left on device"):
        write_demo(tmp_path, n_seqs=20, L=8, n_pairs=2, n_doubles=3, seed=2)
    assert {n: (tmp_path / n).read_text() for n in before} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.a2m", "demo_mutants.csv"]
