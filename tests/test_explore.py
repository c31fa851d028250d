"""Exploring a family: saturation scans (== score), heatmaps, latent maps, generated sequences."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from matplotlib.collections import QuadMesh

from deepseqvae.alignment import AlignmentOptions
from deepseqvae.alphabet import ALPHABET, N_AA, one_hot
from deepseqvae.checkpoint import build_model, load_checkpoint
from deepseqvae.cli import main
from deepseqvae.errors import CheckpointError, DeepSeqVAEError
from deepseqvae.generate import decode_argmax, estimate_elbo, interpolate_sequences, iter_samples, sample_sequences
from deepseqvae.latent import embed_alignment, encode_latent, identity_to_focus, latent_2d, read_values
from deepseqvae.pipeline import positions_path, train_file, write_scan
from deepseqvae.plots import (
    DPI,
    HEATMAP_GID,
    HISTORY_FIGSIZE,
    HISTORY_MARKED_POINTS,
    LATENT_FIGSIZE,
    heatmap_figsize,
    plot_heatmap,
    plot_latent,
    plot_training_history,
    save_figure,
)
from deepseqvae.score import saturation_mutants, saturation_scan, score_table
from deepseqvae.tables import read_mutant_table

DEMO = Path(__file__).resolve().parent.parent / "alignments" / "demo.a2m"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HEADER_RE = re.compile(r"^>(?P<id>\S+)(?: t=(?P<t>[0-9.]+))? identity=(?P<identity>[0-9.]+) "
                       r"elbo=(?P<elbo>-?[0-9.]+|nan)$")


@pytest.fixture
def models(demo_models):
    return demo_models


def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def png_shape(path: Path) -> tuple[int, int]:
    assert path.read_bytes()[:8] == PNG_MAGIC
    img = mpimg.imread(path)
    return img.shape[0], img.shape[1]


def heatmap_meshes(fig) -> list[QuadMesh]:
    return [c for ax in fig.axes for c in ax.collections if isinstance(c, QuadMesh) and c.get_gid() == HEATMAP_GID]


def mesh_cells(fig) -> int:
    return sum(m.get_array().size for m in heatmap_meshes(fig))


# --- saturation scan ------------------------------------------------------------------------


def test_saturation_mutants_cover_every_substitution_once():
    names, changes = saturation_mutants("MKT", [5, 6, 8])
    assert len(names) == 3 * 19 == len(set(names))
    assert names[0] == "M5A" and names[19] == "K6A" and names[-1] == "T8Y"
    assert all(n[0] != n[-1] for n in names)  # no synonymous
    assert changes[0] == ((0, ALPHABET.index("A")),) and changes[-1] == ((2, ALPHABET.index("Y")),)


def test_scan_equals_score_and_writes_summary(models, tmp_path):
    ckpt = load_checkpoint(models["vae"])
    L = len(ckpt.info.focus_seq)
    res = saturation_scan(ckpt, n_samples=5, seed=3)
    assert len(res.mutants) == 19 * L and res.n_samples == 5
    assert not any(m[0] == m[-1] for m in res.mutants)
    out, pos = write_scan(res, tmp_path / "singles.csv")
    assert pos == positions_path(out) == tmp_path / "singles_positions.csv"
    # The same mutants through score_table, with the same seed and K: identical numbers.
    table = read_mutant_table(out)
    frame = score_table([ckpt], table, n_samples=5, seed=3).frame
    assert np.array_equal(frame["score_deepseqvae"].to_numpy(float), res.score)
    assert np.array_equal(frame["score_sem_deepseqvae"].to_numpy(float), res.score_sem)
    assert (res.score_sem > 0).all()
    # Per-position summary: mean / min / max of the 19 rows of each position.
    scan = pd.read_csv(out)
    summary = pd.read_csv(pos)
    assert list(summary.columns) == ["position", "wt", "mean_score", "min_score", "max_score"]
    assert len(summary) == L and list(summary["position"]) == list(ckpt.info.positions)
    assert "".join(summary["wt"]) == ckpt.info.focus_seq
    by_pos = scan["mutant"].str[1:-1].astype(int)
    for p in (1, 30, 60):
        rows = scan.loc[by_pos == p, "score"]
        assert len(rows) == 19
        row = summary.set_index("position").loc[p]
        assert row["mean_score"] == pytest.approx(rows.mean(), rel=1e-5)
        assert row["min_score"] == pytest.approx(rows.min(), rel=1e-5)
        assert row["max_score"] == pytest.approx(rows.max(), rel=1e-5)
    m = res.matrix()
    assert m.shape == (L, N_AA)
    wt = [ALPHABET.index(a) for a in ckpt.info.focus_seq]
    assert (m[np.arange(L), wt] == 0).all()


def test_scan_of_independent_model_uses_its_log_ratio(models):
    ckpt = load_checkpoint(models["independent"])
    res = saturation_scan(ckpt)
    model = build_model(ckpt)
    wt = np.array([ALPHABET.index(a) for a in ckpt.info.focus_seq], dtype=np.int8)
    _, changes = saturation_mutants(ckpt.info.focus_seq, ckpt.info.positions)
    assert np.array_equal(res.score, model.delta(wt, changes))
    assert (res.score_sem == 0).all() and res.n_samples is None


def test_heatmap_has_l_by_20_cells_and_expected_png_size(models, tmp_path):
    res = saturation_scan(load_checkpoint(models["vae"]), n_samples=2)
    L = len(res.focus_seq)
    fig = plot_heatmap(res.matrix(), res.positions, res.focus_seq, title=res.title(), colorbar_label=res.score_label)
    assert mesh_cells(fig) == L * 20
    assert fig._suptitle.get_text().startswith("Saturation scan of DEMO")
    path = save_figure(fig, tmp_path / "heat.png")
    w, h = heatmap_figsize(L)
    assert png_shape(path) == (round(h * DPI), round(w * DPI))


def test_heatmap_wraps_long_proteins_into_panels():
    rng = np.random.default_rng(0)
    L = 253
    seq = "".join(rng.choice(list(ALPHABET), L))
    fig = plot_heatmap(rng.normal(size=(L, 20)), np.arange(24, 24 + L), seq, max_per_row=100)
    assert len(heatmap_meshes(fig)) == 3 and mesh_cells(fig) == L * 20
    assert heatmap_figsize(L, 100)[1] > heatmap_figsize(60, 100)[1]


def test_cli_scan_matches_cli_score(models, tmp_path):
    out = tmp_path / "s.csv"
    r = run_cli("scan", "--model", models["vae"], "-o", out, "--plot", tmp_path / "h.png", "--samples", 3,
                "--seed", 7, "--device", "cpu", "--no-progress")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "s_positions.csv").exists() and png_shape(tmp_path / "h.png")[1] == 12 * DPI
    r = run_cli("score", out, "--model", models["vae"], "-o", tmp_path / "scored.csv", "--samples", 3, "--seed", 7,
                "--device", "cpu", "--no-progress")
    assert r.exit_code == 0, r.output
    scan = pd.read_csv(out, dtype=str)
    scored = pd.read_csv(tmp_path / "scored.csv", dtype=str)
    assert list(scan["score"]) == list(scored["score_deepseqvae"])
    assert list(scan.columns) == ["mutant", "score", "score_sem"]


# --- latent space ---------------------------------------------------------------------------


def test_embed_rows_and_logvar(models):
    ckpt = load_checkpoint(models["vae"])
    emb = embed_alignment(ckpt, DEMO, batch_size=700)
    aln = emb.alignment
    assert emb.mu.shape == (aln.N, 2) == emb.logvar.shape
    frame = emb.frame
    assert list(frame.columns) == ["id", "z1", "z2", "logvar1", "logvar2"] and len(frame) == aln.N
    model = build_model(ckpt)
    with torch.no_grad():
        mu, log_sigma = model.encoder(one_hot(torch.tensor(aln.codes[:5])))
    np.testing.assert_allclose(emb.mu[:5], mu.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(emb.logvar[:5], 2 * log_sigma.numpy(), rtol=1e-5, atol=1e-6)
    mu_b, _ = encode_latent(model, aln.codes, batch_size=3000)
    np.testing.assert_allclose(emb.mu, mu_b, rtol=1e-5, atol=1e-6)
    # an Alignment read already (checked the same way), as a Python caller has one
    again = embed_alignment(ckpt, aln, batch_size=700)
    assert again.alignment is aln and np.array_equal(again.mu, emb.mu)


def test_embed_rejects_alignment_with_other_columns(models, tmp_path):
    ckpt = load_checkpoint(models["vae"])
    lines = DEMO.read_text().splitlines()[:40]
    short = tmp_path / "short.a2m"
    short.write_text("\n".join(ln if ln.startswith(">") else ln[:50] for ln in lines) + "\n")
    with pytest.raises(DeepSeqVAEError, match=r"short\.a2m: its modelled columns \(50 columns"):
        embed_alignment(ckpt, short)
    with pytest.raises(DeepSeqVAEError, match=r"short\.a2m: its modelled columns \(50 columns"):
        embed_alignment(ckpt, AlignmentOptions().read(short))
    with pytest.raises(DeepSeqVAEError, match="demo.a2m: its modelled columns"):
        embed_alignment(ckpt, DEMO, options=AlignmentOptions(first_index=5))
    with pytest.raises(CheckpointError, match="needs a VAE checkpoint"):
        embed_alignment(load_checkpoint(models["independent"]), DEMO)


def test_latent_2d_pca_and_identity():
    rng = np.random.default_rng(1)
    mu = rng.normal(size=(200, 4)) * np.array([5.0, 2.0, 0.5, 0.1])
    coords, xl, yl = latent_2d(mu)
    assert coords.shape == (200, 2) and xl.startswith("PC1") and yl.startswith("PC2")
    assert coords[:, 0].var() > coords[:, 1].var() > 0.5 * mu[:, 1].var()
    # PC1 is the direction of largest variance: here the first latent axis (up to sign).
    assert abs(np.corrcoef(coords[:, 0], mu[:, 0])[0, 1]) > 0.99
    # D = 2 is drawn as it is, D = 1 along x.
    coords2, xl2, yl2 = latent_2d(mu[:, :2])
    assert np.array_equal(coords2, mu[:, :2]) and (xl2, yl2) == ("z1", "z2")
    coords1, xl1, _ = latent_2d(mu[:, :1])
    assert np.array_equal(coords1[:, 0], mu[:, 0]) and (coords1[:, 1] == 0).all() and xl1 == "z1"
    # one sequence (D = 4): one point at the origin, no second component to index
    one, xl, yl = latent_2d(mu[:1])
    assert one.tolist() == [[0.0, 0.0]] and (xl, yl) == ("PC1 (0% of variance)", "PC2 (0% of variance)")
    codes = np.array([[0, 1, 2, 20], [0, 1, 2, 3]], dtype=np.int8)
    assert identity_to_focus(codes, np.array([0, 1, 2, 3])).tolist() == [0.75, 1.0]


def test_sample_file_checks_its_counts(tmp_path):
    from deepseqvae.pipeline import sample_file

    for kwargs, match in [({"n": 2, "batch_size": 0}, "batch_size must be a whole number >= 1, not 0"),
                          ({"n": "5"}, "n must be a whole number >= 1, not '5'"),
                          ({"n": 2, "elbo_samples": 0}, "elbo_samples must be"),
                          ({"interpolate": ("a", "b"), "near": "a"}, "near and interpolate cannot be combined")]:
        with pytest.raises(ValueError, match=match):
            sample_file("m.pt", tmp_path / "s.fasta", **kwargs)
    assert not (tmp_path / "s.fasta").exists()


def test_read_values(tmp_path):
    p = tmp_path / "v.csv"
    p.write_text("id,value\na,1.5\nc,2\n")
    out = read_values(p, ["a", "b", "c"])
    assert out[0] == 1.5 and np.isnan(out[1]) and out[2] == 2.0
    (tmp_path / "bad.csv").write_text("name,value\na,1\n")
    with pytest.raises(DeepSeqVAEError, match="needs columns 'id' and 'value'"):
        read_values(tmp_path / "bad.csv", ["a"])
    with pytest.raises(DeepSeqVAEError, match="none of its 2 ids"):
        read_values(p, ["x"])
    # a bad value is named by its file line, as an editor shows it: blank lines count
    (tmp_path / "gap.csv").write_text("id,value\na,1\n\n\nb,high\n")
    with pytest.raises(DeepSeqVAEError, match=r"gap\.csv: line 5: value 'high' is not a number"):
        read_values(tmp_path / "gap.csv", ["a", "b"])
    # an id given twice: neither value wins silently
    (tmp_path / "twice.csv").write_text("id,value\na,1\nb,2\n\na,3\n")
    with pytest.raises(DeepSeqVAEError, match=r"twice\.csv: line 5: id 'a' repeats line 2$"):
        read_values(tmp_path / "twice.csv", ["a", "b"])


def test_latent_plot_png_size(tmp_path):
    coords = np.random.default_rng(0).normal(size=(50, 2))
    values = np.linspace(0, 1, 50)
    values[3] = np.nan
    fig = plot_latent(coords, values, focus_index=0, focus_label="WT", color_label="v", title="t")
    assert fig.axes[0].get_title() == "t" and fig.axes[0].get_xlabel() == "z1"
    path = save_figure(fig, tmp_path / "lat.png")
    assert png_shape(path) == (round(LATENT_FIGSIZE[1] * DPI), round(LATENT_FIGSIZE[0] * DPI))


def test_training_history_plot_draws_each_curve_and_the_kept_step(tmp_path):
    steps, elbo, kl = [100, 200, 300], [-90.0, -70.0, -65.0], [40.0, 30.0, 25.0]
    fig = plot_training_history(steps, elbo, kl, eval_steps=[100, 200, 300], heldout_elbo=[-95.0, -80.0, -85.0],
                                heldout_iwll=[-93.0, -78.0, -84.0], kept_step=200, title="t")
    top, bottom = fig.axes
    curves = {line.get_label(): line for line in top.get_lines()}
    assert list(curves["ELBO, training batches"].get_ydata()) == elbo
    assert list(curves["ELBO, held-out sequences"].get_ydata()) == [-95.0, -80.0, -85.0]
    iwll = curves["importance-weighted log-likelihood, held-out sequences"]
    assert list(iwll.get_xdata()) == [100, 200, 300] and list(iwll.get_ydata()) == [-93.0, -78.0, -84.0]
    assert list(curves["kept: step 200"].get_xdata()) == [200, 200]  # the dashed line, on both panels
    assert [list(line.get_xdata()) for line in bottom.get_lines()] == [steps, [200, 200]]
    assert list(bottom.get_lines()[0].get_ydata()) == kl and bottom.get_ylabel() == "KL(θ) / Neff"
    path = save_figure(fig, tmp_path / "curves.png")
    assert png_shape(path) == (round(HISTORY_FIGSIZE[1] * DPI), round(HISTORY_FIGSIZE[0] * DPI))
    # a run without held-out data or a kept step: the training curves alone
    plain = plot_training_history(steps, elbo, kl)
    assert [line.get_label() for line in plain.axes[0].get_lines()] == ["ELBO, training batches"]
    # a run shorter than one logging interval has one point per curve: drawn as a marker, a bare line would be empty
    one = plot_training_history([30], [-274.6], [8766.0])
    assert [line.get_marker() for ax in one.axes for line in ax.get_lines()] == ["o", "o"]
    long = HISTORY_MARKED_POINTS + 1
    many = plot_training_history(np.arange(long), np.zeros(long), np.zeros(long))
    assert [line.get_marker() for ax in many.axes for line in ax.get_lines()] == ["None", "None"]


def test_cli_embed(models, tmp_path):
    values = tmp_path / "vals.csv"
    values.write_text("id,value\nDEMO/1-60,1\nSIM_000001/1-60,2\n")
    for color in ("weight", "identity", values):
        r = run_cli("embed", DEMO, "--model", models["vae"], "-o", tmp_path / "lat.csv", "--plot", tmp_path / "lat.png",
                    "--color-by", color, "--device", "cpu")
        assert r.exit_code == 0, r.output
        assert png_shape(tmp_path / "lat.png") == (600, 700)
    assert len(pd.read_csv(tmp_path / "lat.csv")) == 3000
    r = run_cli("embed", DEMO, "--model", models["independent"], "-o", tmp_path / "x.csv")
    assert r.exit_code == 2 and r.output.count("\n") == 1 and "needs a VAE checkpoint" in r.output
    r = run_cli("embed", DEMO, "--model", models["vae"], "-o", tmp_path / "x.csv", "--first-index", "3")
    assert r.exit_code == 2 and "modelled columns" in r.output
    r = run_cli("embed", DEMO, "--model", models["vae"], "-o", tmp_path / "x.csv", "--color-by", "nofile.csv")
    assert r.exit_code == 2


# --- generation -----------------------------------------------------------------------------


def test_sample_count_reproducible_and_headers(models, tmp_path):
    ckpt = load_checkpoint(models["vae"])
    a = sample_sequences(ckpt, 7, seed=1, batch_size=3, elbo_samples=2)
    b = sample_sequences(ckpt, 7, seed=1, batch_size=3, elbo_samples=2)
    c = sample_sequences(ckpt, 7, seed=2, batch_size=3, elbo_samples=2)
    assert len(a) == 7 and [r.seq for r in a] == [r.seq for r in b] and [r.elbo for r in a] == [r.elbo for r in b]
    assert [r.seq for r in a] != [r.seq for r in c]
    focus = ckpt.info.focus_seq
    for rec in a:
        m = HEADER_RE.match(">" + rec.header())
        assert m, rec.header()
        assert len(rec.seq) == len(focus) and set(rec.seq) <= set(ALPHABET)
        same = [x == y for x, y in zip(rec.seq, focus, strict=True)]
        assert float(m["identity"]) == pytest.approx(np.mean(same), abs=0.005)
        assert np.isfinite(float(m["elbo"])) and float(m["elbo"]) < 0
    assert a[0].id == "gen_0001"
    # From the posterior around the focus, at a low temperature: closer to the focus than prior samples.
    wt = np.array([ALPHABET.index(x) for x in focus], dtype=np.int8)
    near = sample_sequences(ckpt, 20, seed=0, near=wt, temperature=0.1, elbo_samples=1)
    prior = sample_sequences(ckpt, 20, seed=0, elbo_samples=1)
    assert len(near) == 20
    assert np.mean([r.identity for r in near]) > np.mean([r.identity for r in prior])


def test_sampling_and_interpolation_take_a_sequence_as_letters_or_codes(models):
    ckpt = load_checkpoint(models["vae"])
    focus = ckpt.info.focus_seq
    wt = np.array([ALPHABET.index(x) for x in focus], dtype=np.int8)
    by_codes = sample_sequences(ckpt, 3, seed=0, near=wt, elbo_samples=1)
    by_letters = sample_sequences(ckpt, 3, seed=0, near=focus.lower(), elbo_samples=1)
    assert [r.seq for r in by_letters] == [r.seq for r in by_codes]
    line = interpolate_sequences(ckpt, focus, wt[::-1].copy(), 3, elbo_samples=1)
    assert [r.seq for r in line] == [r.seq for r in interpolate_sequences(ckpt, wt, wt[::-1].copy(), 3,
                                                                          elbo_samples=1)]
    L = len(focus)
    for near, message in [(focus[:-1], rf"near must be one sequence of the model's {L} modelled columns, not "
                                       rf"shape \({L - 1},\)"),
                          (wt[None], r"not shape \(1, 60\)"), ("X" * L, "near: .*X"),
                          (np.full(L, 0.5), "near must be a sequence's letters or its codes 0-20"),
                          (np.full(L, 21), "codes 0-20")]:
        with pytest.raises(DeepSeqVAEError, match=message):
            sample_sequences(ckpt, 1, near=near)
    with pytest.raises(DeepSeqVAEError, match="end must be one sequence"):
        interpolate_sequences(ckpt, focus, focus + "A", 3)


def test_sample_chunks_stream_the_same_records(models):
    ckpt = load_checkpoint(models["vae"])
    whole = sample_sequences(ckpt, 7, seed=3, batch_size=2, elbo_samples=2)
    # chunks of 4 = two whole batches: the same sequences, numbered on; the ELBO draws go on from chunk to chunk
    it = iter_samples(ckpt, 7, seed=3, batch_size=2, elbo_samples=2, chunk=4)
    first = [next(it) for _ in range(4)]  # the first chunk comes before the rest is drawn
    chunked = first + list(it)
    assert [r.seq for r in chunked] == [r.seq for r in whole]
    assert [r.id for r in chunked] == [f"gen_{i:04d}" for i in range(1, 8)]
    # the first chunk's ELBOs are those of a one-pass estimate of its 4 sequences with the seed's generator
    model = build_model(ckpt)
    codes = np.array([[ALPHABET.index(a) for a in r.seq] for r in chunked], dtype=np.int8)
    head = estimate_elbo(model, codes[:4], n_samples=2, seed=3)
    assert [r.elbo for r in chunked[:4]] == pytest.approx(head.tolist(), rel=1e-6)
    # within one chunk (the default's 10,000), a one-pass estimate over all of them
    assert [r.elbo for r in whole] == pytest.approx(estimate_elbo(model, codes, n_samples=2, seed=3).tolist(),
                                                    rel=1e-6)
    assert all(np.isfinite(r.elbo) for r in chunked)


def test_interpolation_endpoints(models):
    ckpt = load_checkpoint(models["vae"])
    emb = embed_alignment(ckpt, DEMO)
    codes = emb.alignment.codes
    recs = interpolate_sequences(ckpt, codes[0], codes[5], 5, elbo_samples=1)
    assert len(recs) == 5 and recs[0].extra["t"] == "0.000" and recs[-1].extra["t"] == "1.000"
    model = build_model(ckpt)
    ends = decode_argmax(model, emb.mu[[0, 5]])
    assert recs[0].seq == "".join(ALPHABET[i] for i in ends[0])
    assert recs[-1].seq == "".join(ALPHABET[i] for i in ends[1])
    with pytest.raises(DeepSeqVAEError, match=r"steps must be a whole number >= 2, not 1$"):
        interpolate_sequences(ckpt, codes[0], codes[5], 1)
    # sampling's numbers checked in the library, not only by the CLI: elbo_samples=-1 gave ELBO = -KL, batch_size=0
    # a ZeroDivisionError, n=2.5 a bare TypeError
    for call, match in ((lambda: sample_sequences(ckpt, 2, elbo_samples=-1), "elbo_samples must be a whole number"),
                        (lambda: sample_sequences(ckpt, 2, batch_size=0), "batch_size must be a whole number >= 1"),
                        (lambda: sample_sequences(ckpt, 2.5), r"n must be a whole number >= 1, not 2.5"),
                        (lambda: interpolate_sequences(ckpt, codes[0], codes[5], 2.5), "steps must be a whole"),
                        (lambda: estimate_elbo(model, codes[:2], n_samples=0), "n_samples must be a whole number")):
        with pytest.raises(DeepSeqVAEError, match=match):
            call()


def test_cli_sample(models, tmp_path):
    out = tmp_path / "gen.fasta"
    args = ["sample", "--model", models["vae"], "-n", 6, "-o", out, "--seed", 4, "--elbo-samples", 2,
            "--device", "cpu"]
    assert run_cli(*args).exit_code == 0
    first = out.read_text()
    assert run_cli(*args).exit_code == 0 and out.read_text() == first
    headers = [ln for ln in first.splitlines() if ln.startswith(">")]
    assert len(headers) == 6 and all(HEADER_RE.match(h) for h in headers)
    r = run_cli("sample", "--model", models["vae"], "-n", 3, "-o", tmp_path / "near.fasta", "--near",
                "SIM_000001/1-60", "--msa", DEMO, "--elbo-samples", 1, "--device", "cpu")
    assert r.exit_code == 0 and (tmp_path / "near.fasta").read_text().count(">") == 3
    r = run_cli("sample", "--model", models["vae"], "-o", tmp_path / "path.fasta", "--interpolate", "DEMO/1-60",
                "SIM_000002/1-60", "--steps", 4, "--msa", DEMO, "--elbo-samples", 1, "--device", "cpu")
    assert r.exit_code == 0
    hs = [h for h in (tmp_path / "path.fasta").read_text().splitlines() if h.startswith(">")]
    assert len(hs) == 4 and " t=0.000 " in hs[0] and " t=1.000 " in hs[-1]
    r = run_cli("sample", "--model", models["vae"], "-n", 2, "-o", tmp_path / "x.fasta", "--near", "nope",
                "--msa", DEMO)
    assert r.exit_code == 2 and "no sequence 'nope'" in r.output
    assert run_cli("sample", "--model", models["vae"], "-o", tmp_path / "x.fasta").exit_code == 2  # no -n
    no_msa = run_cli("sample", "--model", models["vae"], "-n", 2, "-o", tmp_path / "x.fasta", "--near", "x")
    assert no_msa.exit_code == 2 and "--msa" in no_msa.output
    # options that would not apply are refused, not ignored
    base = ["sample", "--model", models["vae"], "-o", tmp_path / "x.fasta"]
    for extra, message in [(["--interpolate", "DEMO/1-60", "DEMO/1-60", "--msa", DEMO, "--temperature", "0.5"],
                            "--interpolate cannot be combined with -n, --near or --temperature"),
                           (["-n", 2, "--steps", 5], "--steps sets the records of --interpolate"),
                           (["-n", 2, "--msa", DEMO], "--msa holds the --near / --interpolate sequences")]:
        r = run_cli(*base, *extra)
        assert r.exit_code == 2 and message in r.output, r.output
    r = run_cli("sample", "--model", models["independent"], "-n", 2, "-o", tmp_path / "x.fasta")
    assert r.exit_code == 2 and "needs a VAE checkpoint" in r.output
    assert not (tmp_path / "x.fasta").exists()


# --- alignment options recorded in the checkpoint -----------------------------------------------


def test_embed_and_sample_reuse_the_training_alignment_options(tmp_path):
    """Trained with --first-index 5: embed and sample --msa read the alignment the same way unasked."""
    model = tmp_path / "ind5.pt"
    vae = tmp_path / "vae5.pt"
    opts = AlignmentOptions(first_index=5, max_gap_fraction=0.9)
    train_file(DEMO, model, model_kind="independent", options=opts, device="cpu")
    assert load_checkpoint(model).info.alignment_options == opts
    train_file(DEMO, vae, options=opts, device="cpu",
               model_options=dict(encoder_hidden=(8,), latent_dim=2, decoder_hidden=(4, 8), dictionary_size=0,
                                  sparsity_tiles=0),
               train_options=dict(steps=2, checkpoint_every=0))
    r = run_cli("embed", DEMO, "--model", vae, "-o", tmp_path / "lat.csv")
    assert r.exit_code == 0, r.output
    r = run_cli("sample", "--model", vae, "-n", 2, "--near", "DEMO/1-60", "--msa", DEMO, "-o", tmp_path / "s.fasta")
    assert r.exit_code == 0, r.output
    # An option given on the command line still wins (and here no longer matches the model).
    r = run_cli("embed", DEMO, "--model", vae, "-o", tmp_path / "lat1.csv", "--first-index", "1")
    assert r.exit_code == 2 and "differ from the model's" in r.output


def test_checkpoint_without_alignment_options_loads_with_the_defaults(models, tmp_path):
    import torch

    payload = torch.load(models["vae"], weights_only=True)
    del payload["info"]["alignment_options"]  # as written before the options were recorded
    torch.save(payload, tmp_path / "old.pt")
    assert load_checkpoint(tmp_path / "old.pt").info.alignment_options == AlignmentOptions()


def test_a_new_model_kind_is_one_class(models, monkeypatch):
    """Scoring and the scan go through the MutationScorer interface: a new kind needs no other change."""
    from deepseqvae import checkpoint
    from deepseqvae.independent import IndependentModel

    class Hydrophobic(IndependentModel):
        method, score_label = "hydrophobicity", "gain in hydrophobic residues"

        def score_changes(self, wt_codes, changes, **kwargs):
            hydrophobic = np.isin(np.arange(N_AA), [ALPHABET.index(a) for a in "AILMFVW"])
            gain = np.array([sum(int(hydrophobic[a]) - int(hydrophobic[wt_codes[c]]) for c, a in ch)
                             for ch in changes], dtype=float)
            return gain, np.zeros(len(changes)), None  # exact: no samples

    monkeypatch.setitem(checkpoint.KINDS, "hydrophobic",
                        checkpoint.ModelKind(Hydrophobic, Hydrophobic.from_config, lambda m: m, has_latent=False))
    ckpt = load_checkpoint(models["independent"])
    ckpt.kind = "hydrophobic"
    scan = saturation_scan(ckpt)
    assert scan.method == "hydrophobicity" and scan.n_samples is None
    wt = ckpt.info.focus_seq[0]
    row = {m: s for m, s in zip(scan.mutants, scan.score, strict=True)}
    assert row[f"{wt}1A"] == (wt not in "AILMFVW") * 1.0
    with pytest.raises(CheckpointError, match="embedding needs a VAE checkpoint"):
        embed_alignment(ckpt, DEMO)


def test_find_sequence_names_a_shared_id(tmp_path, caplog):
    import logging

    from deepseqvae.latent import find_sequence

    path = tmp_path / "dup.a3m"  # a3m: ids may repeat (UniRef hits of one cluster)
    path.write_text(">F\nACDEFG\n>u\nACDEFW\n>u\nACDEWW\n>v\nACDWWW\n")
    aln = AlignmentOptions().read(path)
    with caplog.at_level(logging.WARNING, logger="deepseqvae"):
        assert find_sequence(aln, "v") == 3 and "share the id" not in caplog.text
        assert find_sequence(aln, ">u") == 1
    assert "2 kept sequences share the id 'u'; using the first of them (kept sequence 2)" in caplog.text
    with pytest.raises(DeepSeqVAEError, match="no sequence 'w' among its 4 kept sequences"):
        find_sequence(aln, "w")
    demo = AlignmentOptions().read(DEMO)  # sample --near SIM_000001: the id has its region
    with pytest.raises(DeepSeqVAEError, match=r"no sequence 'SIM_000001' among .*; did you mean 'SIM_000001/1-60'\?$"):
        find_sequence(demo, "SIM_000001")


def test_embed_says_how_many_records_the_filters_left_out(models, tmp_path):
    msa = tmp_path / "with_x.a2m"
    lines = DEMO.read_text().splitlines(keepends=True)
    bad = lines[1].strip()[:-2] + "XA\n"  # the focus with an X in a modelled column
    msa.write_text("".join(lines[:200]) + ">bad/1-60\n" + bad)
    r = CliRunner().invoke(main, ["embed", str(msa), "-m", str(models["vae"]), "-o", str(tmp_path / "e.csv")])
    assert r.exit_code == 0, r.output
    assert "Embedded 100 sequences" in r.stderr
    assert "(1 records left out: 1 with B/J/O/U/X/Z/* in a modelled column)" in r.stderr


def test_importing_the_figures_leaves_matplotlibs_backend_alone(tmp_path):
    # plots switched matplotlib to Agg on import: a notebook's inline backend stopped showing figures
    import subprocess
    import sys

    png = tmp_path / "h.png"
    code = ("import matplotlib, numpy as np; matplotlib.use('pdf'); import deepseqvae.plots as p; "
            "print(matplotlib.get_backend()); "
            f"p.save_figure(p.plot_heatmap(np.zeros((3, 20)), [1, 2, 3], 'ACD', title='t'), {str(png)!r})")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={k: v for k, v in __import__("os").environ.items() if k != "MPLBACKEND"})
    assert out.stdout.split() == ["pdf"]
    assert mpimg.imread(png).shape[2] == 4  # a PNG still written, without a display
