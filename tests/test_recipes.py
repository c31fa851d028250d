"""Training recipes: DeepSequence's Adam, step-size schedules, local reparameterisation, weight
averaging and the held-out split, each against a hand computation."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from test_train import fresh_model

from deepseqvae.errors import ConfigError, TrainingError
from deepseqvae.holdout import (
    _has_neighbour_in,
    _neighbour_mask,
    _neighbour_rows,
    cluster_holdout_split,
    heldout_sample,
    holdout_split,
)
from deepseqvae.model import VAE, VAEConfig, _GaussianKLFromVar, gaussian_kl, loss_terms
from deepseqvae.optim import DeepSequenceAdam, delayed_factor, lr_factor
from deepseqvae.pace import RefitAbandoned, RefitPace
from deepseqvae.train import (
    TrainConfig,
    heldout_estimates,
    profile_logits,
    run_holdout_split,
    train,
    variance_group,
)

from conftest import toy_family as family
from conftest import toy_info as info_for


def test_deepsequence_adam_first_updates_by_hand():
    # DeepSequence: m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= lr * gamma * m / (sqrt(v) + eps)
    # with gamma frozen at its t = 1 value sqrt(1 - b2) / (1 - b1) = sqrt(0.001) / 0.1.
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    opt = DeepSequenceAdam([p], lr=1e-3)
    grads = [[0.5, -1.0], [0.2, 3.0], [-0.4, 0.0]]
    m, v, want = np.zeros(2), np.zeros(2), np.array([1.0, -2.0])
    gamma = math.sqrt(0.001) / 0.1
    for g in grads:
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        g = np.array(g)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        want = want - 1e-3 * gamma * m / (np.sqrt(v) + 1e-8)
        np.testing.assert_allclose(p.detach().numpy(), want, rtol=0, atol=1e-15)
    # The first step moves every coordinate by lr * sign(g) (m / sqrt(v) = 0.1 / sqrt(0.001) = 1 / gamma).
    q = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    opt = DeepSequenceAdam([q], lr=1e-3)
    q.grad = torch.tensor([2.0, -7.0, 0.1], dtype=torch.float64)
    opt.step()
    np.testing.assert_allclose(q.detach().numpy(), [-1e-3, 1e-3, -1e-3], rtol=1e-5)


def test_deepsequence_adam_resumes_from_the_earlier_state_layout():
    # the hand-written optimiser of earlier versions saved its moments as "m" and "v"
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    opt = DeepSequenceAdam([p], lr=1e-3)
    state = opt.state_dict()
    m, v = np.array([0.05, -0.1]), np.array([2.5e-4, 1e-3])
    state["state"] = {0: {"m": torch.tensor(m), "v": torch.tensor(v)}}
    opt.load_state_dict(state)
    p.grad = torch.tensor([0.2, 3.0], dtype=torch.float64)
    opt.step()
    m = 0.9 * m + 0.1 * np.array([0.2, 3.0])
    v = 0.999 * v + 0.001 * np.array([0.2, 3.0]) ** 2
    want = np.array([1.0, -2.0]) - 1e-3 * math.sqrt(0.001) / 0.1 * m / (np.sqrt(v) + 1e-8)
    np.testing.assert_allclose(p.detach().numpy(), want, rtol=0, atol=1e-15)


def test_deepsequence_adam_late_step_is_0316_lr():
    # A constant gradient for many steps: m -> g, v -> g^2, so each step moves by lr * gamma = 3.16e-4.
    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = DeepSequenceAdam([p], lr=1e-3)
    for _ in range(20000):
        p.grad = torch.ones(1, dtype=torch.float64)
        before = float(p.detach())
        opt.step()
    assert before - float(p.detach()) == pytest.approx(1e-3 * math.sqrt(0.001) / 0.1, rel=1e-4)


def test_lr_factor_warmup_then_cosine():
    assert lr_factor(1, 1000, 100, 0.0) == pytest.approx(0.01)
    assert lr_factor(100, 1000, 100, 0.0) == pytest.approx(1.0)
    assert lr_factor(550, 1000, 100, 0.0) == pytest.approx(0.5)       # half-way through the decay
    assert lr_factor(1000, 1000, 100, 0.1) == pytest.approx(0.1)       # ends at the final fraction
    assert delayed_factor(50, 1000, 100, 10, 0.0) == 0.0              # frozen during the delay
    assert delayed_factor(105, 1000, 100, 10, 0.0) == pytest.approx(0.5)  # warm-up restarts at the delay


def test_lr_factor_constant_then_late_decay():
    # warm-up 100 of 1000 steps, decay over the last 30 % of the other 900: constant until step 730
    assert lr_factor(500, 1000, 100, 0.0, 0.3) == pytest.approx(1.0)
    assert lr_factor(730, 1000, 100, 0.0, 0.3) == pytest.approx(1.0)
    assert lr_factor(865, 1000, 100, 0.0, 0.3) == pytest.approx(0.5)      # half-way through the decay
    assert lr_factor(1000, 1000, 100, 0.1, 0.3) == pytest.approx(0.1)
    assert delayed_factor(50, 1000, 100, 10, 0.0, 0.3) == 0.0


def test_variance_group_holds_log_sigmas_and_scale_logits():
    model = fresh_model()
    special, rest = variance_group(model)
    names = {id(p): n for n, p in model.named_parameters()}
    got = sorted(names[id(p)] for p in special)
    assert got == sorted([n for n in names.values() if n.startswith("decoder.log_sigma.")] + ["decoder.mu.scale_logit"])
    assert len(special) + len(rest) == len(list(model.parameters()))


def test_kl_from_var_matches_gaussian_kl_and_its_gradient():
    g = torch.Generator().manual_seed(1)
    mu0 = torch.randn(5, 4, generator=g, dtype=torch.float64)
    ls0 = torch.randn(5, 4, generator=g, dtype=torch.float64) - 2
    for prior in [(0.0, 1.0), (-12.36, 4.0)]:
        mu, ls = mu0.clone().requires_grad_(), ls0.clone().requires_grad_()
        want = gaussian_kl(mu, ls, *prior)
        want.backward()
        mu2, ls2 = mu0.clone().requires_grad_(), ls0.clone().requires_grad_()
        got = _GaussianKLFromVar.apply(mu2, ls2, torch.exp(2 * ls2), *prior)
        got.backward()
        assert float(got.detach()) == pytest.approx(float(want.detach()), rel=1e-12)
        torch.testing.assert_close(mu2.grad, mu.grad)
        torch.testing.assert_close(ls2.grad, ls.grad)


def test_local_reparameterisation_moments_by_hand():
    # Given the small weights (dictionary D, scales S, hidden layers), the logits are linear in the
    # raw output weights W_raw ~ N(mu, sigma^2): logit[b, l, a] = sum_{h,c} h[b,h] S[h,l] W[h,l,c] D[c,a],
    # so mean = sum h S mu D and var = sum h^2 S^2 sigma^2 D^2, written out with einsum.
    torch.manual_seed(0)
    cfg = VAEConfig(seq_len=3, encoder_hidden=(8,), latent_dim=2, decoder_hidden=(4, 8), dictionary_size=5,
                    sparsity_tiles=2, temperature=False, output_bias=False, init_log_sigma=-1.0)
    dec = VAE(cfg).decoder.double()
    g = torch.Generator().manual_seed(3)
    w = {k: v for k, v in dec.draw(generator=g).items() if k != "W_out"}
    z = torch.randn(2, 2, generator=g, dtype=torch.float64)
    h = dec.hidden(z, w).detach()  # (B, H)
    S = torch.sigmoid(w["scale_logit"]).repeat(2, 1).detach()  # (H, L)
    mu, var_raw = dec.mu["W_out"].detach(), torch.exp(2 * dec.log_sigma["W_out"]).detach()  # (H, L, C)
    D = w["dictionary"].detach()  # (C, A)
    mean = torch.einsum("bh,hl,hlc,ca->bla", h, S, mu, D)
    var = torch.einsum("bh,hl,hlc,ca->bla", h**2, S**2, var_raw, D**2)
    # The local path with its noise replaced by 0 and by 1 recovers mean and mean + sqrt(var).
    out = {}
    real_randn = torch.randn
    for fill in (0.0, 1.0):
        def fixed(*shape, fill=fill, **kw):
            kw.pop("generator", None)
            return torch.full(*shape, fill, **{k: v for k, v in kw.items() if k in ("dtype", "device")})
        torch.randn = fixed
        try:
            out[fill] = dec.forward_local(z, w, var_raw, generator=g).detach()
        finally:
            torch.randn = real_randn
    torch.testing.assert_close(out[0.0], torch.log_softmax(mean, -1))
    torch.testing.assert_close(out[1.0], torch.log_softmax(mean + var.sqrt(), -1))
    # And the mean is what shared sampling gives at sigma = 0 (the output weight of the means).
    shared_mean = (h @ dec.output_weight(dict(w, W_out=mu))).view(2, 3, 20)
    torch.testing.assert_close(shared_mean, mean)


def test_local_loss_equals_shared_loss_without_noise():
    # With every posterior sigma ~ 0 both estimators are deterministic and must agree exactly.
    torch.manual_seed(0)
    model = VAE(VAEConfig(seq_len=6, encoder_hidden=(8,), latent_dim=2, decoder_hidden=(4, 8), dictionary_size=5,
                          sparsity_tiles=2, init_log_sigma=-40.0)).double()
    with torch.no_grad():
        model.encoder.log_sigma.bias.fill_(-40.0)
        model.encoder.log_sigma.weight.zero_()
    codes = torch.randint(0, 21, (16, 6), generator=torch.Generator().manual_seed(1))
    shared, s1 = loss_terms(model, codes, 50.0, generator=torch.Generator().manual_seed(0))
    local, s2 = loss_terms(model, codes, 50.0, generator=torch.Generator().manual_seed(5), local=True)
    assert float(local.detach()) == pytest.approx(float(shared.detach()), rel=1e-8)  # sd floor 1e-6 in the local path
    assert float(s1["kl_theta"]) == pytest.approx(float(s2["kl_theta"]), rel=1e-12)


def test_holdout_split_is_seeded_disjoint_and_keeps_the_focus():
    tr, held = holdout_split(200, 0.1, seed=4, keep=7)
    assert len(held) == 20 and 7 in tr and not set(tr) & set(held)
    assert sorted(np.concatenate([tr, held]).tolist()) == list(range(200))
    tr2, held2 = holdout_split(200, 0.1, seed=4, keep=7)
    assert np.array_equal(held, held2)
    assert not np.array_equal(held, holdout_split(200, 0.1, seed=5, keep=7)[1])


def _clustered_family(seed: int = 0) -> np.ndarray:
    """12 clusters of 10 near-identical sequences (1 of 20 positions mutated) around random centres."""
    rng = np.random.default_rng(seed)
    rows = []
    for centre in rng.integers(0, 20, size=(12, 20)):
        for _ in range(10):
            row = centre.copy()
            row[rng.integers(0, 20)] = rng.integers(0, 20)
            rows.append(row)
    codes = np.array(rows, dtype=np.int8)
    codes[5, :3] = 20  # a few gaps: identity counts non-gap residues only
    return codes


def test_cluster_holdout_keeps_every_neighbour_of_a_held_out_sequence_out_of_training():
    codes = _clustered_family()
    tr, held = cluster_holdout_split(codes, 0.15, seed=3, keep=0)  # 18 rows asked: two whole clusters
    assert 0 in tr and not set(tr) & set(held)
    # whole clusters: 2 of the 12 groups of 10 (rows 10k..10k+9), none of them the focus's group
    assert len(held) == 20 and len({r // 10 for r in held}) == 2
    assert all(set(range(10 * (r // 10), 10 * (r // 10) + 10)) <= set(held) for r in held)
    assert not {r // 10 for r in held} & {0}
    t = torch.tensor(codes, dtype=torch.int16)
    assert not _neighbour_mask(t, torch.as_tensor(held), 0.2)[:, tr].any()
    assert np.array_equal(held, cluster_holdout_split(codes, 0.15, seed=3, keep=0)[1])
    # a random split of the same family leaks: held-out rows have training neighbours
    tr_r, held_r = holdout_split(len(codes), 0.2, seed=3, keep=0)
    assert _neighbour_mask(t, torch.as_tensor(held_r), 0.2)[:, tr_r].any()


def test_neighbour_mask_by_hand():
    a = torch.tensor([[0, 1, 2, 3, 4], [0, 1, 2, 3, 5], [0, 1, 20, 20, 20], [5, 6, 7, 8, 9]], dtype=torch.int16)
    # row 0 vs 1: 4 of 5 identical (0.8, not > 0.8); vs 2: 2 of min(5, 2) = 1.0; vs 3: 0
    got = _neighbour_mask(a, torch.tensor([0]), 0.2)[0].tolist()
    assert got == [True, False, True, False]
    assert _neighbour_mask(a, torch.tensor([0]), 0.25)[0].tolist() == [True, True, True, False]


def test_neighbour_products_are_the_pairwise_mask():
    # random codes with many gaps and some near-copies, so that every branch of the threshold is hit
    rng = np.random.default_rng(0)
    base = rng.integers(0, 20, size=(12, 30))
    codes = base[rng.integers(0, 12, size=90)].copy()
    flip = rng.random(codes.shape) < rng.choice([0.05, 0.2, 0.5], size=(90, 1))
    codes[flip] = rng.integers(0, 21, size=int(flip.sum()))  # mutations and gaps (code 20)
    codes[3, :25] = 20  # a mostly-gap row: normalised by the shorter length
    codes[4, :] = 20  # an all-gap row: nobody's neighbour
    t = torch.tensor(codes, dtype=torch.int16)
    others = torch.tensor([1, 4, 5, 60, 89, 3])
    for theta, rows in [(0.2, [0, 3, 17, 50]), (0.5, list(range(0, 90, 7))), (0.05, [4]), (0.2, [])]:
        rows = torch.tensor(rows, dtype=torch.int64)
        full = _neighbour_mask(t, rows, theta) if len(rows) else torch.zeros((0, 90), dtype=torch.bool)
        for block in (2048, 8):  # one block, and blocks smaller than both sides
            assert torch.equal(_neighbour_rows(t, rows, theta, block=block), full), (theta, block)
            assert torch.equal(_neighbour_rows(t, rows, theta, cols=others, block=block), full[:, others])
            # the relation is symmetric: "has a neighbour among rows" is the pairwise mask's any over rows
            assert torch.equal(_has_neighbour_in(t, torch.arange(90), rows, theta, block=block), full.any(0))
    # one column of one residue (one inner column of the one-hot product) and none (every row a gap)
    one = torch.tensor([[0], [0], [20], [0]], dtype=torch.int16)
    assert _neighbour_rows(one, torch.arange(4), 0.2).tolist() == _neighbour_mask(one, torch.arange(4), 0.2).tolist()
    assert _neighbour_rows(one, torch.arange(4), 0.2)[0].tolist() == [True, True, False, True]
    gaps = torch.full((3, 2), 20, dtype=torch.int16)
    assert not _neighbour_rows(gaps, torch.arange(3), 0.2).any()
    assert _has_neighbour_in(t, torch.tensor([0]), torch.tensor([0]), 0.2).all()
    assert not _has_neighbour_in(t, torch.tensor([4]), torch.arange(90), 0.2).any()


@pytest.mark.parametrize("batch", [1, 7, 256])
def test_cluster_holdout_split_with_batched_centres_is_the_one_at_a_time_split(monkeypatch, batch):
    import deepseqvae.holdout as holdout_module
    from benchmarks.bench_split import split_pairwise

    monkeypatch.setattr(holdout_module, "SPLIT_CENTRE_BATCH", batch)
    rng = np.random.default_rng(1)
    base = rng.integers(0, 20, size=(15, 40))
    codes = base[rng.integers(0, 15, size=150)].copy()
    flip = rng.random(codes.shape) < rng.choice([0.02, 0.1, 0.3], size=(150, 1))
    codes[flip] = rng.integers(0, 21, size=int(flip.sum()))
    weights = rng.uniform(0.1, 1.0, size=150)
    for seed in range(4):
        got = cluster_holdout_split(codes, 0.3, seed, keep=0, theta=0.2, weights=weights)
        expect = split_pairwise(codes, 0.3, seed, keep=0, theta=0.2, weights=weights)
        assert np.array_equal(got[0], expect[0]) and np.array_equal(got[1], expect[1])
        assert len(expect[1]) > 10  # several clusters, so the batches' order matters


def test_cluster_holdout_split_progress_bars_reach_their_totals_and_change_nothing(monkeypatch):
    import deepseqvae.holdout as holdout_module

    bars = []

    class Bar:
        def __init__(self, total, enabled, desc, unit):
            self.total, self.enabled, self.desc, self.done, self.closed = total, enabled, desc, 0.0, False
            bars.append(self)

        def update(self, n):
            assert n >= 0
            self.done += n

        def close(self):
            self.closed = True

    monkeypatch.setattr(holdout_module, "progress_bar", Bar)
    codes = _clustered_family()
    shown = cluster_holdout_split(codes, 0.15, seed=3, keep=0, progress=True)
    assert [(b.desc, b.enabled, b.closed) for b in bars] == [("held-out clusters", True, True),
                                                            ("held-out neighbours", True, True)]
    # the target (18 rows) is reached: 100 %; then every row not held out is checked for a held-out neighbour
    assert bars[0].done == pytest.approx(100.0)
    assert bars[1].total == bars[1].done == len(codes) - len(shown[1])
    quiet = cluster_holdout_split(codes, 0.15, seed=3, keep=0)
    assert all(np.array_equal(a, b) for a, b in zip(shown, quiet, strict=True))
    assert not bars[2].enabled


def _log_importance_weight(log_px: torch.Tensor, z: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor
                           ) -> torch.Tensor:
    """log p(x|z, θ) + log p(z) − log q(z|x) per sequence, by torch.distributions (the held-out tests' hand side)."""
    prior = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1).double()
    post = torch.distributions.Normal(mu, sigma).log_prob(z).sum(-1).double()
    return log_px + prior - post


def test_heldout_estimates_against_a_hand_computation():
    codes, w = family(n=30)
    model = fresh_model()
    x = torch.tensor(codes[:7])
    wt = torch.linspace(0.5, 1.5, 7, dtype=torch.float64)
    K = 5
    got = heldout_estimates(model, x, wt, K, torch.Generator().manual_seed(11), batch_size=4)
    # the same draws in the same order: per k one decoder sample, then one eps per batch of 4
    g = torch.Generator().manual_seed(11)
    log_w, elbos = [], []
    with torch.no_grad():
        mu, log_sigma = model.encoder(x)
        sigma = log_sigma.exp()
        for _ in range(K):
            dec = model.decoder.draw(generator=g)
            eps = torch.cat([torch.randn(mu[s:s + 4].shape, generator=g) for s in (0, 4)])
            z = mu + sigma * eps
            log_px = model.log_likelihood(model.decoder(z, dec), x).double()
            log_w.append(_log_importance_weight(log_px, z, mu, sigma))
            kl = torch.distributions.kl_divergence(torch.distributions.Normal(mu, sigma),
                                                   torch.distributions.Normal(0.0, 1.0)).sum(-1).double()
            elbos.append(log_px - kl)
    iw = torch.logsumexp(torch.stack(log_w), 0) - math.log(K)
    assert got["iwll"] == pytest.approx(float((iw * wt).sum() / wt.sum()), rel=1e-5)
    assert got["elbo"] == pytest.approx(float((torch.stack(elbos).mean(0) * wt).sum() / wt.sum()), rel=1e-5)
    # Jensen on the same draws: the importance-weighted estimate is never below their mean log weight
    assert got["iwll"] >= float((torch.stack(log_w).mean(0) * wt).sum() / wt.sum())



def test_heldout_estimates_with_bfloat16_output_products_by_hand():
    """matmul_dtype rounds the inputs of the output product only: the hand computation with h and the output
    matrix rounded to bfloat16 (float32 accumulation) agrees; float32 is the default's value exactly."""
    codes, w = family(n=30)
    model = fresh_model()
    x = torch.tensor(codes[:6])
    wt = torch.ones(6, dtype=torch.float64)
    K = 3
    got = heldout_estimates(model, x, wt, K, torch.Generator().manual_seed(7), matmul_dtype=torch.bfloat16)
    full = heldout_estimates(model, x, wt, K, torch.Generator().manual_seed(7))
    assert heldout_estimates(model, x, wt, K, torch.Generator().manual_seed(7), matmul_dtype=torch.float32) == full
    g = torch.Generator().manual_seed(7)
    dec = model.decoder
    log_w = []
    with torch.no_grad():
        mu, log_sigma = model.encoder(x)
        for _ in range(K):
            theta = dec.draw(generator=g)
            z = mu + log_sigma.exp() * torch.randn(mu.shape, generator=g)
            h = dec.hidden(z, theta)  # (B, H)
            w_out = dec.output_weight(theta)  # (H, 20L)
            logits = h.bfloat16().float() @ w_out.bfloat16().float()  # rounded inputs, float32 sums
            log_px = model.log_likelihood(dec._finish(logits, theta), x).double()
            log_w.append(_log_importance_weight(log_px, z, mu, log_sigma.exp()))
    iw = torch.logsumexp(torch.stack(log_w), 0) - math.log(K)
    assert got["iwll"] == pytest.approx(float(iw.mean()), rel=1e-5)
    assert got["iwll"] != full["iwll"]  # the rounding is real
    assert got["iwll"] == pytest.approx(full["iwll"], rel=1e-2)


FAST = dict(schedule="cosine", warmup_steps=5, final_lr_fraction=0.05, variance_lr=1e-2, variance_delay=6,
            local_reparam=True, ema_decay=0.9)


def test_profile_logits_by_hand():
    # Column 0: A (weight 2), C (weight 1), gap (weight 5, not counted); column 1: D in all three.
    codes = torch.tensor([[0, 2], [1, 2], [20, 2]], dtype=torch.int8)
    w = torch.tensor([2.0, 1.0, 5.0], dtype=torch.float64)
    got = profile_logits(codes, w, pseudocount=0.5)  # (2, 20)
    f0 = np.full(20, 0.5)
    f0[0], f0[1] = 2.5, 1.5
    f1 = np.full(20, 0.5)
    f1[2] = 8.5
    for col, f in ((0, f0), (1, f1)):
        log_f = np.log(f / f.sum())
        np.testing.assert_allclose(got[col].numpy(), log_f - log_f.mean(), rtol=1e-6)
    assert got.dtype == torch.float32 and abs(float(got.sum())) < 1e-4


def test_profile_start_makes_the_first_decoding_the_site_independent_model():
    codes, w = family()
    model = fresh_model()
    res = train(model, codes, w, TrainConfig(steps=1, batch_size=16, learning_rate=1e-12, init_bias="profile"),
                info_for(codes, w))
    bias = res.checkpoint.state["decoder.mu.b_out"]  # one step of lr 1e-12 later: the start
    temp = torch.nn.functional.softplus(res.checkpoint.state["decoder.mu.temperature"])
    expected = profile_logits(torch.as_tensor(codes), torch.as_tensor(w))
    torch.testing.assert_close(bias * temp, expected, rtol=1e-5, atol=1e-5)
    # The log-softmax of the bias alone is the profile: log((count + 1) / (total + 20)).
    counts = np.stack([np.bincount(codes[:, j], minlength=20) for j in range(codes.shape[1])])
    torch.testing.assert_close(torch.log_softmax(bias * temp, -1).double(),
                               torch.as_tensor(np.log((counts + 1.0) / (counts.sum(1, keepdims=True) + 20.0))),
                               rtol=1e-5, atol=1e-5)
    default = train(fresh_model(), codes, w, TrainConfig(steps=1, batch_size=16, learning_rate=1e-12),
                    info_for(codes, w))
    torch.testing.assert_close(default.checkpoint.state["decoder.mu.b_out"], torch.full_like(bias, 0.1))
    with pytest.raises(ValueError, match="init_bias"):
        TrainConfig(init_bias="uniform")


def test_profile_pseudocount_reaches_the_start():
    codes, w = family()
    cfg = TrainConfig(steps=1, batch_size=16, learning_rate=1e-12, init_bias="profile", profile_pseudocount=5.0)
    res = train(fresh_model(), codes, w, cfg, info_for(codes, w))
    temp = torch.nn.functional.softplus(res.checkpoint.state["decoder.mu.temperature"])
    logp = torch.log_softmax(res.checkpoint.state["decoder.mu.b_out"] * temp, -1).double()  # (L, 20)
    counts = np.stack([np.bincount(codes[:, j], weights=w, minlength=20) for j in range(codes.shape[1])])
    torch.testing.assert_close(logp, torch.as_tensor(np.log((counts + 5.0) / (counts.sum(1, keepdims=True) + 100.0))),
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="profile_pseudocount"):
        TrainConfig(profile_pseudocount=0.0)


def test_variance_group_frozen_during_its_delay():
    codes, w = family()
    model = fresh_model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    res = train(model, codes, w, TrainConfig(steps=6, batch_size=16, log_every=3, **FAST), info_for(codes, w))
    after = res.checkpoint.train_state
    assert torch.equal(after["decoder.log_sigma.W_out"], before["decoder.log_sigma.W_out"])
    assert torch.equal(after["decoder.mu.scale_logit"], before["decoder.mu.scale_logit"])
    assert not torch.equal(after["decoder.mu.W_out"], before["decoder.mu.W_out"])


def test_output_bias_steps_at_its_own_step_size():
    # Adam's first step moves each parameter by its step size times sign(gradient) (m/sqrt(v) = ±1), so
    # after one constant-schedule step the output bias has moved by bias_lr and the other means by the base.
    codes, w = family()
    model = fresh_model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    cfg = TrainConfig(steps=1, batch_size=16, learning_rate=1e-4, bias_lr=3e-2)
    after = train(model, codes, w, cfg, info_for(codes, w)).checkpoint.state
    moved = (after["decoder.mu.b_out"] - before["decoder.mu.b_out"]).abs()  # (L, 20)
    assert float(moved.max()) == pytest.approx(3e-2, rel=1e-3)
    for name in ("decoder.mu.W_out", "decoder.log_sigma.b_out", "encoder.mu.weight"):
        # (float32 near log σ = −5 rounds a 1e-4 step to within 0.5 %)
        assert float((after[name] - before[name]).abs().max()) == pytest.approx(1e-4, rel=1e-2)
    plain = train(fresh_model(), codes, w, TrainConfig(steps=1, batch_size=16, learning_rate=1e-4),
                  info_for(codes, w)).checkpoint.state
    assert float((plain["decoder.mu.b_out"] - before["decoder.mu.b_out"]).abs().max()) == pytest.approx(1e-4, rel=1e-3)
    with pytest.raises(ValueError, match="bias_lr"):
        TrainConfig(bias_lr=0.0)


def test_encoder_weight_decay_shrinks_only_the_encoder_weight_matrices_by_lr_times_decay():
    # AdamW's step: w ← w·(1 − lr·λ) − lr·m̂/(√v̂ + eps). The same run without the decay takes the same Adam step
    # from the same weights (one step: same batch, noise and gradient), so their difference is lr·λ·w exactly
    # (to float32 rounding) on the encoder's weight matrices and zero on every other parameter.
    codes, w = family()
    model = fresh_model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    lr, lam = 1e-3, 5.0
    cfg = TrainConfig(steps=1, batch_size=16, learning_rate=lr)
    plain = train(model, codes, w, cfg, info_for(codes, w)).checkpoint.state
    decayed = train(fresh_model(), codes, w, replace(cfg, encoder_weight_decay=lam),
                    info_for(codes, w)).checkpoint.state
    n_decayed = 0
    for name, w0 in before.items():
        diff = plain[name] - decayed[name]
        if name.startswith("encoder.") and name.endswith("weight") and w0.dim() >= 2:
            torch.testing.assert_close(diff, lr * lam * w0, rtol=1e-3, atol=1e-7)
            n_decayed += 1
        else:
            assert torch.equal(diff, torch.zeros_like(diff)), name
    assert n_decayed == len(model.cfg.encoder_hidden) + 2  # each hidden layer's weight and the two heads'
    with pytest.raises(ValueError, match="encoder_weight_decay"):
        TrainConfig(encoder_weight_decay=-1.0)
    with pytest.raises(ValueError, match="optimizer 'adam'"):
        TrainConfig(encoder_weight_decay=1.0, optimizer="deepsequence")


def test_kl_neff_floor_divides_the_weight_kl_by_the_larger_of_neff_and_the_floor():
    # Step 1 draws the same batch and noise whatever the divisor, so the logged KL(θ) term of a floored run is the
    # plain run's times Neff / floor, the data term is unchanged, and a floor below Neff changes nothing at all.
    codes, w = family()
    neff = float(w.sum())
    cfg = dict(steps=1, batch_size=16, log_every=1)
    plain = train(fresh_model(), codes, w, TrainConfig(**cfg), info_for(codes, w))
    floor = 4.0 * neff
    tempered = train(fresh_model(), codes, w, TrainConfig(kl_neff_floor=floor, **cfg), info_for(codes, w))
    assert tempered.history["kl_theta"][0] == pytest.approx(plain.history["kl_theta"][0] * neff / floor, rel=1e-5)
    assert tempered.history["elbo"][0] == pytest.approx(plain.history["elbo"][0], rel=1e-6)
    below = train(fresh_model(), codes, w, TrainConfig(kl_neff_floor=neff / 2, **cfg), info_for(codes, w))
    for name, value in plain.checkpoint.state.items():
        assert torch.equal(below.checkpoint.state[name], value), name
    # Adam's steps are scale-free, but the floor changes the mix of the data and KL gradients: a few steps apart
    longer = dict(cfg, steps=5)
    a = train(fresh_model(), codes, w, TrainConfig(**longer), info_for(codes, w)).checkpoint.state
    b = train(fresh_model(), codes, w, TrainConfig(kl_neff_floor=floor, **longer), info_for(codes, w)).checkpoint.state
    assert not torch.equal(a["decoder.mu.W_out"], b["decoder.mu.W_out"])
    with pytest.raises(ValueError, match="kl_neff_floor"):
        TrainConfig(kl_neff_floor=0.0)


def test_ema_is_the_average_of_the_raw_weights():
    # With a constant schedule the raw trajectory does not depend on the total step count, so the
    # raw weights after t steps come from runs of t steps; average them by hand.
    codes, w = family()
    cfg = dict(batch_size=16, log_every=1, local_reparam=True, ema_decay=0.9)
    raws = [dict(fresh_model().named_parameters())]
    raws = [{k: v.detach().clone() for k, v in raws[0].items()}]
    for t in range(1, 5):
        r = train(fresh_model(), codes, w, TrainConfig(steps=t, **cfg), info_for(codes, w))
        raws.append(r.checkpoint.train_state)
    final = r.checkpoint.state
    for name in ("decoder.mu.W_out", "encoder.mu.weight", "decoder.log_sigma.b0"):
        e = raws[0][name].clone()
        for t in range(1, 5):
            d = min(0.9, (1.0 + t) / (10.0 + t))
            e = d * e + (1 - d) * raws[t][name]
        torch.testing.assert_close(final[name], e, rtol=1e-5, atol=1e-7)
        assert not torch.equal(final[name], raws[4][name])


def test_resume_with_ema_and_schedule_is_bit_exact(tmp_path, monkeypatch):
    import deepseqvae.train as train_mod
    from deepseqvae.checkpoint import load_checkpoint

    codes, w = family()
    cfg = TrainConfig(steps=12, batch_size=16, seed=3, log_every=3, checkpoint_every=6, **FAST)
    full = train(fresh_model(2), codes, w, cfg, info_for(codes, w)).checkpoint
    # Interrupt the same run after its step-6 checkpoint (at step 8), then resume from the file.
    real, calls = train_mod.loss_terms, {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 8:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    path = tmp_path / "run.pt"
    monkeypatch.setattr(train_mod, "loss_terms", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(fresh_model(2), codes, w, cfg, info_for(codes, w), checkpoint_path=path)
    monkeypatch.setattr(train_mod, "loss_terms", real)
    ck = load_checkpoint(path)
    assert ck.step == 6 and ck.train_state is not None
    resumed = train(fresh_model(9), codes, w, cfg, info_for(codes, w), resume=ck).checkpoint
    for k in full.state:
        assert torch.equal(full.state[k], resumed.state[k]), k
        assert torch.equal(full.train_state[k], resumed.train_state[k]), k


@pytest.mark.parametrize("local", [False, True])
def test_bfloat16_products_stay_close_to_float32(local):
    # bf16 rounds the inputs of the decoder's large products only (8 bits of mantissa): the loss
    # and every gradient stay within ~1 % of float32, and the weights themselves stay float32.
    model = fresh_model(4)
    codes = torch.tensor(family(n=32)[0])
    out = {}
    for dtype in (None, torch.bfloat16):
        model.zero_grad()
        loss, _ = loss_terms(model, codes, 30.0, generator=torch.Generator().manual_seed(0), local=local,
                             matmul_dtype=dtype)
        loss.backward()
        out[dtype] = (float(loss.detach()), {n: p.grad.clone() for n, p in model.named_parameters()})
    assert out[torch.bfloat16][0] == pytest.approx(out[None][0], rel=1e-2)
    for name, g in out[None][1].items():
        g16 = out[torch.bfloat16][1][name]
        assert g16.dtype == torch.float32
        assert float((g16 - g).norm()) <= 0.05 * float(g.norm()) + 1e-6, name


def test_gather_sum_encoder_equals_the_dense_one_hot_product():
    from deepseqvae.alphabet import one_hot

    torch.manual_seed(0)
    model = VAE(VAEConfig(seq_len=7, encoder_hidden=(16, 8), latent_dim=3, decoder_hidden=(4, 8)))
    codes = torch.randint(0, 21, (32, 7), generator=torch.Generator().manual_seed(2))  # gaps included
    codes[0] = 20  # an all-gap sequence: bias only
    x = one_hot(codes).requires_grad_(False)
    dense = model.encoder(x)
    gather = model.encoder(codes)
    for a, b in zip(dense, gather, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    # By hand for one sequence: the first layer is the sum of its non-gap rows plus the bias.
    first = model.encoder.hidden[0]
    rows = [col * 20 + int(c) for col, c in enumerate(codes[1]) if int(c) < 20]
    torch.testing.assert_close(first(codes[1:2])[0], first.weight[rows].sum(0) + first.bias)
    torch.testing.assert_close(first(codes[0:1])[0], first.bias)
    # Same gradients for the weights.
    grads = []
    for inp in (x, codes):
        model.zero_grad()
        sum(t.sum() for t in model.encoder(inp)).backward()
        grads.append(first.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-6)


def test_encoder_products_in_bfloat16_by_hand():
    """Encoder(matmul_dtype=bf16) rounds the hidden product's inputs only: the gather-sum first layer and the
    heads stay float32, the bias is added in float32; float32 (or None) is the plain encoder exactly."""
    torch.manual_seed(0)
    model = VAE(VAEConfig(seq_len=7, encoder_hidden=(16, 8), latent_dim=3, decoder_hidden=(4, 8)))
    enc = model.encoder
    codes = torch.randint(0, 21, (32, 7), generator=torch.Generator().manual_seed(2))
    h1 = torch.relu(enc.hidden[0](codes))  # (B, 16), float32
    lin = enc.hidden[1]
    h2 = torch.relu((h1.bfloat16().float() @ lin.weight.bfloat16().float().t()).bfloat16().float() + lin.bias)
    got = enc(codes, torch.bfloat16)
    for a, b in zip(got, (enc.mu(h2), enc.log_sigma(h2)), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    plain = enc(codes)
    assert all(torch.equal(a, b) for a, b in zip(enc(codes, torch.float32), plain, strict=True))
    assert not torch.equal(got[0], plain[0])  # the rounding is real
    got[0].sum().backward()  # gradients reach the float32 weights through the casts
    assert lin.weight.grad.dtype == torch.float32 and lin.weight.grad.abs().sum() > 0


def test_training_with_encoder_products():
    """TrainConfig.encoder_products runs the encoder's hidden products in the run's precision: deterministic,
    and a different run from the float32 encoder; without bfloat16 decoder products it changes nothing."""
    codes, w = family(n=60)
    base = dict(steps=6, batch_size=8, seed=2, log_every=3)
    states = {}
    for key, kw in {"bf16": dict(matmul_dtype="bfloat16"), "bf16+enc": dict(matmul_dtype="bfloat16",
                    encoder_products=True), "f32": {}, "f32+enc": dict(encoder_products=True)}.items():
        torch.manual_seed(0)  # the same start for every arm
        model = VAE(VAEConfig(seq_len=codes.shape[1], encoder_hidden=(16, 8), latent_dim=2, decoder_hidden=(4, 8)))
        train(model, codes, w, TrainConfig(**base, **kw), info_for(codes, w))
        states[key] = model.state_dict()

    def same(a: str, b: str) -> bool:
        return all(torch.equal(states[a][k], states[b][k]) for k in states[a])

    assert not same("bf16", "bf16+enc") and same("f32", "f32+enc")
    assert not same("bf16", "f32")  # and the decoder's products alone change the run too


def test_format_1_checkpoint_loads_with_the_first_layer_transposed(tmp_path):
    from dataclasses import asdict

    from deepseqvae.checkpoint import Checkpoint, build_model, load_checkpoint, save_checkpoint

    codes, w = family()
    model = fresh_model()
    ck = Checkpoint(kind="vae", model_config=asdict(model.cfg), state=model.state_dict(), info=info_for(codes, w))
    path = tmp_path / "v1.pt"
    save_checkpoint(ck, path)
    payload = torch.load(path, weights_only=True)
    payload["format_version"] = 1
    payload["state"]["encoder.hidden.0.weight"] = payload["state"]["encoder.hidden.0.weight"].t().contiguous()
    torch.save(payload, path)
    loaded = build_model(load_checkpoint(path))
    torch.testing.assert_close(loaded.encoder.hidden[0].weight, model.encoder.hidden[0].weight)


@pytest.mark.parametrize("recipe, optimizer, decoder, latent, steps",
                         [("fast", "adam", (100, 500), 10, 1100),
                          ("paper", "deepsequence", (100, 2000), 30, 300_000)])
def test_recipe_configs_and_overrides(recipe, optimizer, decoder, latent, steps):
    from deepseqvae.recipes import recipe_configs

    model_cfg, train_cfg = recipe_configs(recipe, 60, neff=500.0)
    assert (train_cfg.recipe, train_cfg.optimizer, model_cfg.decoder_hidden, model_cfg.latent_dim,
            train_cfg.steps) == (recipe, optimizer, decoder, latent, steps)
    # an override left unset (None) keeps the recipe's value; one given replaces it
    model_cfg, train_cfg = recipe_configs(recipe, 60, neff=500.0,
                                          model_overrides={"decoder_hidden": (8, 16), "latent_dim": None},
                                          train_overrides={"steps": 7, "seed": None})
    assert (model_cfg.decoder_hidden, model_cfg.latent_dim, train_cfg.steps, train_cfg.seed) == (
        (8, 16), latent, 7, 42)
    model_cfg, _ = recipe_configs(recipe, 60, neff=500.0, model_overrides={"latent_dim": 20})
    assert model_cfg.latent_dim == 20
    with pytest.raises(ConfigError, match="unknown recipe 'slow'"):
        recipe_configs("slow", 60)


def test_fast_step_rule():
    from deepseqvae.recipes import fast_steps

    # min(18 L, 1.15e6 / L) within [1000, 6000], rounded to 100
    assert [fast_steps(L) for L in (10, 60, 253, 387, 1000, 2000)] == [1000, 1100, 4500, 3000, 1200, 1000]


def test_fast_early_stopping_rule():
    from deepseqvae.recipes import recipe_configs

    fast, paper = recipe_configs("fast", 253, neff=100.0)[1], recipe_configs("paper", 253)[1]
    assert (fast.holdout_fraction, fast.holdout_by, fast.refit) == (0.1, "weight", True)
    assert (paper.holdout_fraction, paper.refit) == (0.0, False)
    # evaluations on a sample of 5,000 draws only where more rows are held out (no shared family: <= 3,526)
    assert (fast.eval_rows, paper.eval_rows) == (5000, 0)

    # held-out every 100 steps; stop after 15 % of the steps without a better one, counted in evaluations:
    # ceil(0.15 * steps / 100), so L = 253 (4,500 steps) -> 7, L = 387 (3,000) -> 5, L = 60 (1,100) -> 2
    got = [(c.steps, c.eval_every, c.early_stopping)
           for c in (recipe_configs("fast", L, neff=100.0)[1] for L in (253, 387, 60))]
    assert got == [(4500, 100, 7), (3000, 100, 5), (1100, 100, 2)]
    # an explicit patience is kept; a shorter run gets a shorter patience (ceil(0.15 * 1000 / 100) = 2), at least 1
    assert recipe_configs("fast", 253, neff=100.0, train_overrides={"early_stopping": 5})[1].early_stopping == 5
    assert recipe_configs("fast", 253, neff=100.0, train_overrides={"steps": 1000})[1].early_stopping == 2
    assert recipe_configs("fast", 253, neff=100.0, train_overrides={"steps": 200})[1].early_stopping == 1
    assert recipe_configs("fast", 253, neff=100.0, train_overrides={"early_stopping": 0})[1].early_stopping == 0
    assert recipe_configs("paper", 253)[1].early_stopping == 0


def test_fast_variance_step_size_rule():
    from deepseqvae.recipes import fast_variance_lr, recipe_configs

    # 1e-3 * sqrt(1000 / Neff) within [1e-3, 3e-3], by hand: Neff 13 -> 8.77e-3 clipped to 3e-3;
    # 131 -> sqrt(7.634) = 2.763e-3; 443 -> sqrt(2.257) = 1.502e-3; 1000 and 2605 -> 1e-3
    got = [fast_variance_lr(n) for n in (13.0, 131.0, 443.0, 1000.0, 2605.0)]
    assert got == pytest.approx([3e-3, 2.7629e-3, 1.5024e-3, 1e-3, 1e-3], rel=1e-4)
    assert fast_variance_lr(131.0, learning_rate=2e-3) == pytest.approx(2 * 2.7629e-3, rel=1e-4)
    assert recipe_configs("fast", 253, neff=131.0)[1].variance_lr == pytest.approx(2.7629e-3, rel=1e-4)
    # an explicit value wins and needs no Neff; the paper recipe has one step size for every parameter
    assert recipe_configs("fast", 253, train_overrides={"variance_lr": 5e-3, "encoder_products": False,
                                                        "learning_rate": 1e-3})[1].variance_lr == 5e-3
    assert recipe_configs("paper", 253)[1].variance_lr is None
    with pytest.raises(ValueError, match="derives the variance step size from Neff: pass neff"):
        recipe_configs("fast", 253, train_overrides={"learning_rate": 1e-3})
    with pytest.raises(ValueError, match="Neff must be > 0"):
        fast_variance_lr(0.0)


def test_fast_base_step_size_rule():
    from deepseqvae.recipes import fast_learning_rate, recipe_configs

    # 1e-3 * sqrt(Neff / 1000) within [3e-4, 1e-3], by hand: Neff 13 -> 1.14e-4 raised to 3e-4; 131 -> sqrt(0.131)
    # = 3.619e-4; 443 -> 6.656e-4; 1000 and 2605 -> 1e-3
    got = [fast_learning_rate(n) for n in (13.0, 131.0, 443.0, 1000.0, 2605.0)]
    assert got == pytest.approx([3e-4, 3.6194e-4, 6.6558e-4, 1e-3, 1e-3], rel=1e-4)
    train = recipe_configs("fast", 253, neff=131.0)[1]
    # the variance group keeps its rule on 1e-3, not on the smaller base step
    assert train.learning_rate == pytest.approx(3.6194e-4, rel=1e-4)
    assert train.variance_lr == pytest.approx(2.7629e-3, rel=1e-4)
    # a learning rate the user gives wins, and the variance rule scales it, as before
    given = recipe_configs("fast", 253, neff=131.0, train_overrides={"learning_rate": 2e-3})[1]
    assert given.learning_rate == 2e-3 and given.variance_lr == pytest.approx(2 * 2.7629e-3, rel=1e-4)
    assert recipe_configs("paper", 253)[1].learning_rate == 1e-3
    with pytest.raises(ValueError, match="Neff must be > 0"):
        fast_learning_rate(-1.0)
    with pytest.raises(ValueError, match="derives the base step size from Neff: pass neff"):
        recipe_configs("fast", 253)


def test_fast_encoder_width_rule():
    """The fast recipe's encoder is (h, h), h = min(1500, 10 L); the paper's is always 1500-1500."""
    from deepseqvae.recipes import fast_encoder_hidden, recipe_configs

    # by hand: 10 L below 150 columns, the paper's width from there on
    assert [fast_encoder_hidden(L)[0] for L in (5, 48, 60, 120, 149, 150, 253, 2000)] == [
        50, 480, 600, 1200, 1490, 1500, 1500, 1500]
    assert recipe_configs("fast", 60, neff=500.0)[0].encoder_hidden == (600, 600)
    assert recipe_configs("fast", 253, neff=500.0)[0].encoder_hidden == (1500, 1500)
    assert recipe_configs("paper", 60)[0].encoder_hidden == (1500, 1500)
    # an explicit width wins
    assert recipe_configs("fast", 60, neff=500.0, model_overrides={"encoder_hidden": (32, 16)}
                          )[0].encoder_hidden == (32, 16)


def test_fast_encoder_products_rule():
    """The fast recipe's encoder products follow the run's precision from 100 effective sequences on."""
    from deepseqvae.recipes import fast_encoder_products, recipe_configs

    assert [fast_encoder_products(n) for n in (13.1, 99.9, 100.0, 131.5, 2605.0)] == [False, False, True, True, True]
    assert recipe_configs("fast", 253, neff=13.1)[1].encoder_products is False
    assert recipe_configs("fast", 253, neff=131.5)[1].encoder_products is True
    # an explicit choice wins (and needs no Neff for this field); the paper recipe keeps a float32 encoder
    assert recipe_configs("fast", 253, neff=2605.0, train_overrides={"encoder_products": False}
                          )[1].encoder_products is False
    assert recipe_configs("fast", 253, neff=13.1, train_overrides={"encoder_products": True})[1].encoder_products
    assert recipe_configs("paper", 253)[1].encoder_products is False
    with pytest.raises(ValueError, match="derives the encoder's product precision from Neff: pass neff"):
        recipe_configs("fast", 253, train_overrides={"variance_lr": 1e-3, "learning_rate": 1e-3})
    with pytest.raises(ValueError, match="Neff must be > 0"):
        fast_encoder_products(0.0)


def test_train_command_records_the_recipe(tmp_path):
    from click.testing import CliRunner

    from deepseqvae.checkpoint import load_checkpoint
    from deepseqvae.cli import main

    out = tmp_path / "m.pt"
    res = CliRunner().invoke(main, ["train", "alignments/demo.a2m", "-o", str(out), "--recipe", "paper", "--steps", "3",
                                    "--encoder-hidden", "16", "--decoder-hidden", "8,16", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "vae (paper recipe)" in res.output
    ck = load_checkpoint(out)
    assert (ck.train_config["recipe"], ck.train_config["optimizer"], ck.step) == ("paper", "deepsequence", 3)
    assert ck.model_config["decoder_hidden"] in ([8, 16], (8, 16))
    # --eval-rows reaches the run (the fast recipe evaluates every held-out sequence unless told)
    res = CliRunner().invoke(main, ["train", "alignments/demo.a2m", "-o", str(out), "--steps", "3", "--eval-rows", "50",
                                    "--no-refit", "--encoder-hidden", "16", "--decoder-hidden", "8,16",
                                    "--no-progress"])
    assert res.exit_code == 0, res.output
    ck = load_checkpoint(out)
    assert (ck.train_config["recipe"], ck.train_config["eval_rows"], ck.step) == ("fast", 50, 3)


def _scripted_heldout(monkeypatch, values, mean_values=(0.0,)):
    """Replace the held-out estimates by scripted sequences of IWLL values (one per evaluation): ``values``
    with θ sampled, ``mean_values`` at the decoder's means."""
    import deepseqvae.train as train_mod

    calls = {"n": 0, "mean": 0}

    def fake(*args, sample_theta=True, **kwargs):
        key, seq = ("n", values) if sample_theta else ("mean", mean_values)
        v = seq[min(calls[key], len(seq) - 1)]
        calls[key] += 1
        return {"elbo": v - 1.0, "iwll": v}

    monkeypatch.setattr(train_mod, "heldout_estimates", fake)
    return calls


def test_early_stopping_on_the_mean_decoder_criterion(monkeypatch):
    codes, w = family()
    held = (codes[:10], w[:10])
    base = dict(batch_size=16, seed=3, log_every=5, eval_every=5, early_stopping=2)
    sampled = [-10.0, -11.0, -12.0, -13.0, -14.0, -15.0]  # best at the first evaluation
    means = [-10.0, -9.0, -8.0, -8.5, -8.6, -7.0]  # best at step 15, then two worse -> stop at 25
    _scripted_heldout(monkeypatch, sampled, means)
    ck = train(fresh_model(2), codes, w, TrainConfig(steps=100, stop_on="iwll_mean", **base), info_for(codes, w),
               heldout=held).checkpoint
    assert ck.step == 25 and ck.history["best_step"] == [15] and ck.history["best_iwll"] == [-8.0]
    assert ck.history["heldout_iwll"] == sampled[:5] and ck.history["heldout_iwll_mean"] == means[:5]
    # the same estimates, the default criterion: best at step 5, stop at 15
    _scripted_heldout(monkeypatch, sampled, means)
    ck = train(fresh_model(2), codes, w, TrainConfig(steps=100, **base), info_for(codes, w), heldout=held).checkpoint
    assert ck.step == 15 and ck.history["best_step"] == [5] and ck.history["best_iwll"] == [-10.0]
    assert "heldout_iwll_mean" not in ck.history  # not computed where it is not the criterion
    with pytest.raises(ValueError, match="stop_on must be one of iwll, iwll_mean, not 'elbo'"):
        TrainConfig(stop_on="elbo")


@pytest.mark.parametrize("stop_on", ["iwll", "iwll_mean"])
def test_heldout_evaluations_beside_training_give_the_same_record(stop_on):
    """Real estimates (not scripted) on a worker thread: the same values in the same order (the same noise), the
    same best step and best weights as in turn; only the run's end may come later."""
    codes, w = family()
    held = (codes[:10], w[:10])
    cfg = TrainConfig(steps=80, batch_size=16, seed=3, log_every=5, eval_every=5, early_stopping=2, ema_decay=0.9,
                      schedule="cosine", warmup_steps=5, stop_on=stop_on, eval_samples=3)
    turn = train(fresh_model(2), codes[10:], w[10:], cfg, info_for(codes, w), heldout=held).checkpoint
    beside = train(fresh_model(2), codes[10:], w[10:], cfg, info_for(codes, w), heldout=held,
                   evaluate_beside=True).checkpoint
    for key in ("eval_step", "heldout_elbo", "heldout_iwll", "best_step", "best_iwll"):
        assert beside.history[key] == turn.history[key], key
    assert len(turn.history["eval_step"]) >= 3 and turn.step < 80  # it stopped early, on an evaluated step
    assert beside.step >= turn.step and beside.history["eval_step"][-1] == turn.step
    for k in turn.state:  # the scored weights: the best step's moving average
        assert torch.equal(beside.state[k], turn.state[k]), k


def test_slow_evaluations_beside_training_do_not_pile_up(monkeypatch):
    # each waiting evaluation holds a copy of the weights: where one takes longer than the steps between two, training
    # waits instead (at most MAX_PENDING_EVALUATIONS queued or running), with the same record
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    import deepseqvae.train as train_mod

    outstanding, most, lock = [0], [0], threading.Lock()

    class Counting(ThreadPoolExecutor):
        def submit(self, fn, *args, **kwargs):
            with lock:
                outstanding[0] += 1
                most[0] = max(most[0], outstanding[0])
            future = super().submit(fn, *args, **kwargs)
            future.add_done_callback(lambda f: outstanding.__setitem__(0, outstanding[0] - 1))
            return future

    real = train_mod.heldout_estimates

    def slow(*args, **kwargs):
        time.sleep(0.2)
        return real(*args, **kwargs)

    monkeypatch.setattr(train_mod, "ThreadPoolExecutor", Counting)
    monkeypatch.setattr(train_mod, "heldout_estimates", slow)
    codes, w = family()
    held = (codes[:10], w[:10])
    cfg = TrainConfig(steps=60, batch_size=16, seed=3, log_every=5, eval_every=5, early_stopping=0, eval_samples=2)
    beside = train(fresh_model(2), codes[10:], w[10:], cfg, info_for(codes, w), heldout=held,
                   evaluate_beside=True).checkpoint
    assert most[0] <= train_mod.MAX_PENDING_EVALUATIONS and len(beside.history["eval_step"]) == 12
    turn = train(fresh_model(2), codes[10:], w[10:], cfg, info_for(codes, w), heldout=held).checkpoint
    assert beside.history["heldout_iwll"] == turn.history["heldout_iwll"]


def test_heldout_estimates_at_the_decoder_means_by_hand():
    codes, w = family(n=30)
    model = fresh_model()
    x = torch.tensor(codes[:6])
    wt = torch.ones(6, dtype=torch.float64)
    K = 3
    got = heldout_estimates(model, x, wt, K, torch.Generator().manual_seed(5), sample_theta=False)
    g = torch.Generator().manual_seed(5)
    log_w = []
    with torch.no_grad():
        mu, log_sigma = model.encoder(x)
        means = {k: v.detach() for k, v in model.decoder.mu.items()}  # no θ drawn: only z's noise
        for _ in range(K):
            z = mu + log_sigma.exp() * torch.randn(mu.shape, generator=g)
            log_px = model.log_likelihood(model.decoder(z, means), x).double()
            log_w.append(_log_importance_weight(log_px, z, mu, log_sigma.exp()))
    iw = torch.logsumexp(torch.stack(log_w), 0) - math.log(K)
    assert got["iwll"] == pytest.approx(float(iw.mean()), rel=1e-5)
    sampled = heldout_estimates(model, x, wt, K, torch.Generator().manual_seed(5))
    assert sampled["iwll"] != pytest.approx(got["iwll"], rel=1e-6)  # the sampled estimate does draw θ


def test_early_stopping_keeps_the_best_evaluation_and_resumes(tmp_path, monkeypatch):
    from deepseqvae.checkpoint import load_checkpoint, save_checkpoint

    codes, w = family()
    held = (codes[:10], w[:10])
    base = dict(batch_size=16, seed=3, log_every=5, eval_every=5, ema_decay=0.9, early_stopping=2)
    # IWLL at steps 5, 10, 15, 20: best at step 10, then two worse evaluations -> stop at step 20
    _scripted_heldout(monkeypatch, [-10.0, -9.0, -9.5, -9.7, -8.0])
    run = train(fresh_model(2), codes, w, TrainConfig(steps=100, **base), info_for(codes, w), heldout=held)
    ck = run.checkpoint
    assert ck.step == 20 and ck.history["best_step"] == [10] and ck.history["best_iwll"] == [-9.0]
    assert ck.history["eval_step"] == [5, 10, 15, 20]
    # the scored weights are the moving average at step 10: the same run stopped there by its length
    _scripted_heldout(monkeypatch, [0.0])
    at10 = train(fresh_model(2), codes, w, TrainConfig(steps=10, **{**base, "early_stopping": 0}),
                 info_for(codes, w), heldout=held).checkpoint
    for k in at10.state:
        assert torch.equal(ck.state[k], at10.state[k]), k
    assert not all(torch.equal(ck.state[k], ck.average_state[k]) for k in ck.state)  # it went on to 20
    # resuming after step 15 (best 10, one worse evaluation) stops at 20 with the same weights
    _scripted_heldout(monkeypatch, [-10.0, -9.0, -9.5])
    part = train(fresh_model(2), codes, w, TrainConfig(steps=15, **base), info_for(codes, w), heldout=held)
    save_checkpoint(part.checkpoint, tmp_path / "part.pt")
    _scripted_heldout(monkeypatch, [-9.7])
    resumed = train(fresh_model(7), codes, w, TrainConfig(steps=100, **base), info_for(codes, w), heldout=held,
                    resume=load_checkpoint(tmp_path / "part.pt")).checkpoint
    assert resumed.step == 20 and resumed.history["best_step"] == [10]
    for k in ck.state:
        assert torch.equal(ck.state[k], resumed.state[k]), k
        assert torch.equal(ck.train_state[k], resumed.train_state[k]), k


def test_weight_holdout_counts_the_weight_not_the_rows():
    # 10 copies of one sequence (weight 0.1 each: 1 effective sequence) and 9 distinct singletons (weight 1 each).
    rng = np.random.default_rng(0)
    base = rng.integers(0, 20, size=40).astype(np.int8)
    dense = np.tile(base, (10, 1))
    singles = rng.integers(0, 20, size=(9, 40)).astype(np.int8)  # ~5 % identical to anything: own clusters
    codes = np.concatenate([singles[:1], dense, singles[1:]])  # focus = row 0, a singleton
    weights = np.array([1.0] + [0.1] * 10 + [1.0] * 8)  # Neff 10
    for seed in range(6):
        tr, held = cluster_holdout_split(codes, 0.2, seed=seed, keep=0, weights=weights)
        # a fifth of the weight is 2 effective sequences: the dense cluster alone (1.0) never suffices
        assert weights[held].sum() >= 2.0 - 1e-9
        assert 0 not in held and set(tr).isdisjoint(held)
    # by rows, 20 % is 4 of 19 rows: a draw landing in the dense cluster first holds out its 10 rows and stops
    # there, one effective sequence of the ten
    by_rows = [cluster_holdout_split(codes, 0.2, seed=seed, keep=0)[1] for seed in range(6)]
    assert sum(list(h) == list(range(1, 11)) for h in by_rows) >= 3
    cfg = TrainConfig(holdout_fraction=0.2, holdout_by="weight", seed=3)
    with pytest.raises(ValueError, match="needs the sequence weights"):
        run_holdout_split(codes, cfg, 0, 0.2)
    assert np.array_equal(run_holdout_split(codes, cfg, 0, 0.2, weights=weights)[1],
                          cluster_holdout_split(codes, 0.2, seed=3, keep=0, weights=weights)[1])


def test_refit_trains_every_sequence_to_the_kept_step(tmp_path, monkeypatch):
    from test_train import CFG

    from deepseqvae.alignment import read_alignment
    from deepseqvae.alphabet import ALPHABET
    from deepseqvae.checkpoint import ModelInfo, load_checkpoint
    from deepseqvae.errors import CheckpointError
    from deepseqvae.train import fit_alignment

    codes, _ = family()
    msa = tmp_path / "toy.a2m"
    msa.write_text("".join(f">s{i}\n{''.join(ALPHABET[c] for c in row)}\n" for i, row in enumerate(codes)))
    aln = read_alignment(msa)
    w = np.ones(aln.N)
    model_cfg = VAEConfig(seq_len=aln.L, **CFG)
    base = dict(batch_size=16, seed=3, log_every=5, eval_every=5, ema_decay=0.9, schedule="cosine", warmup_steps=2,
                final_lr_fraction=0.1)
    # IWLL at steps 5, 10, 15, 20: best at step 10, then two worse evaluations -> the first stage stops at 20
    _scripted_heldout(monkeypatch, [-10.0, -9.0, -9.5, -9.7, -8.0])
    cfg = TrainConfig(steps=100, early_stopping=2, holdout_fraction=0.2, holdout_by="sequence", refit=True, **base)
    res = fit_alignment(aln, w, model_cfg, cfg, theta=0.2, checkpoint_path=tmp_path / "m.pt")
    ck = res.checkpoint
    assert ck.step == 10 and ck.history["refit_step"] == [10]
    assert res.steps_run == 20 + 10  # the first stage to its stop, then the refit to the kept step
    assert ck.history["best_step"] == [10] and ck.history["eval_step"] == [5, 10, 15, 20]  # the first stage's record
    assert ck.train_config["stop_step"] == 10 and ck.train_config["refit"]
    assert ck.train_config["holdout_fraction"] == 0.2
    # the refit is a run on all 120 sequences from the same start and learning-rate path (100 steps), ended at 10
    info = ModelInfo.from_alignment(aln, w, 0.2)
    torch.manual_seed(3)
    direct = train(VAE(model_cfg), aln.codes, w, TrainConfig(steps=100, stop_step=10, **base), info).checkpoint
    for k in direct.state:
        assert torch.equal(ck.state[k], direct.state[k]), k
    torch.manual_seed(3)
    short = train(VAE(model_cfg), aln.codes, w, TrainConfig(steps=10, **base), info).checkpoint  # its own schedule
    assert not all(torch.equal(ck.state[k], short.state[k]) for k in ck.state)
    # the file holds the refit; resuming it trains nothing more (the first stage is not run on top of it)
    saved = load_checkpoint(tmp_path / "m.pt")
    assert saved.history["refit_step"] == [10] and saved.step == 10
    again = fit_alignment(aln, w, model_cfg, cfg, theta=0.2, resume=saved).checkpoint
    assert again.step == 10 and all(torch.equal(again.state[k], ck.state[k]) for k in ck.state)
    with pytest.raises(CheckpointError, match="refit on every sequence up to step 10 of a 100-step run; it cannot be "
                       "continued with other settings: train anew"):
        fit_alignment(aln, w, model_cfg, replace(cfg, steps=200), theta=0.2, resume=saved)
    with pytest.raises(ValueError, match=r"stop_step must lie in \[1, steps = 100\], not 101"):
        TrainConfig(steps=100, stop_step=101)


def _toy_alignment(tmp_path):
    from deepseqvae.alignment import read_alignment
    from deepseqvae.alphabet import ALPHABET

    codes, _ = family()
    msa = tmp_path / "toy.a2m"
    msa.write_text("".join(f">s{i}\n{''.join(ALPHABET[c] for c in row)}\n" for i, row in enumerate(codes)))
    return read_alignment(msa)


#: a refit setting with evaluations every 5 steps (logged every 5), patience 2, 100 planned steps
REFIT_BASE = dict(steps=100, batch_size=16, seed=3, log_every=5, eval_every=5, ema_decay=0.9, schedule="cosine",
                  warmup_steps=2, final_lr_fraction=0.1, early_stopping=2, holdout_fraction=0.2,
                  holdout_by="sequence", refit=True)


@pytest.mark.parametrize("script, kept, steps_first", [
    ([-10.0, -9.0, -9.5, -9.7, -8.0], 10, 20),  # best at step 10, two worse: the held-out run stops at 20
    ([-10.0, -9.0, -8.0, -7.0, -6.0, -6.5, -6.6], 25, 35),  # the best moves forward four times
    ([-1.0, -2.0, -3.0], 5, 15),  # best at the first evaluation
])
def test_refit_beside_the_heldout_run_is_the_refit_after_it(tmp_path, monkeypatch, script, kept, steps_first):
    from test_train import CFG

    from deepseqvae import train as train_module
    from deepseqvae.checkpoint import load_checkpoint
    from deepseqvae.train import fit_alignment

    aln = _toy_alignment(tmp_path)
    w = np.ones(aln.N)
    model_cfg = VAEConfig(seq_len=aln.L, **CFG)
    cfg = TrainConfig(**REFIT_BASE)
    _scripted_heldout(monkeypatch, script)
    after = fit_alignment(aln, w, model_cfg, cfg, theta=0.2, refit_beside=False)
    _scripted_heldout(monkeypatch, script)
    refit_steps = []
    both_runs = train_module._both_runs

    def spy(first_steps, refit, seconds, *, beside):
        refit_steps.append(refit.steps_run)
        return both_runs(first_steps, refit, seconds, beside=beside)

    monkeypatch.setattr(train_module, "_both_runs", spy)
    beside = fit_alignment(aln, w, model_cfg, cfg, theta=0.2, refit_beside=True, checkpoint_path=tmp_path / "m.pt")
    a, b = after.checkpoint, beside.checkpoint
    assert refit_steps == [kept]  # the refit beside it held at each best step: it never trained past the chosen one
    assert a.step == b.step == kept and b.history["refit_step"] == [kept] and b.train_config["stop_step"] == kept
    for k in a.state:  # the same model, bit for bit (one torch thread per run in both)
        assert torch.equal(a.state[k], b.state[k]), k
    assert a.history == b.history and a.train_config == b.train_config
    # a finished refit is final: both keep only what scoring needs (the beside run copies no optimizer state)
    assert all(x is None for ck in (a, b) for x in (ck.optimizer, ck.rng_state, ck.train_state, ck.average_state))
    # the refit beside it stops at the held-out run's last evaluation at the latest, never a step later
    assert after.steps_run == steps_first + kept
    # beside it, the held-out run trains on while each evaluation runs and the refit stops at its verdict
    assert beside.steps_run >= steps_first + kept
    saved = load_checkpoint(tmp_path / "m.pt")  # the file holds the refit, not the held-out run's end
    assert saved.step == kept and all(torch.equal(saved.state[k], a.state[k]) for k in a.state)


def test_refit_beside_a_resumed_heldout_run(tmp_path, monkeypatch):
    from test_train import CFG

    from deepseqvae.checkpoint import load_checkpoint
    from deepseqvae.train import fit_alignment

    aln = _toy_alignment(tmp_path)
    w = np.ones(aln.N)
    model_cfg = VAEConfig(seq_len=aln.L, **CFG)
    cfg = TrainConfig(**REFIT_BASE, checkpoint_every=10)
    script = [-10.0, -9.0, -9.5, -8.0, -8.5, -8.6]  # best at 10, then at 20; stops at 30
    _scripted_heldout(monkeypatch, script)
    whole = fit_alignment(aln, w, model_cfg, cfg, theta=0.2, refit_beside=True).checkpoint
    assert whole.step == 20
    # the held-out run interrupted at its evaluation of step 25, after its checkpoint at step 20 (best so far: 20)
    import deepseqvae.train as train_mod

    def interrupted(*args, **kwargs):
        if interrupted.n == 4:
            raise KeyboardInterrupt
        v = script[interrupted.n]
        interrupted.n += 1
        return {"elbo": v - 1.0, "iwll": v}

    interrupted.n = 0
    monkeypatch.setattr(train_mod, "heldout_estimates", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fit_alignment(aln, w, model_cfg, cfg, theta=0.2, refit_beside=True, checkpoint_path=tmp_path / "m.pt")
    first = load_checkpoint(tmp_path / "m.pt")
    assert first.step == 20 and first.history["best_step"] == [20] and "refit_step" not in first.history
    calls = _scripted_heldout(monkeypatch, script[4:])  # the evaluations after step 20
    resumed = fit_alignment(aln, w, model_cfg, cfg, theta=0.2, refit_beside=True, resume=first).checkpoint
    assert calls["n"] == 2 and resumed.step == 20 and resumed.history["refit_step"] == [20]
    for k in whole.state:  # the refit beside the resumed run is the uninterrupted one's
        assert torch.equal(whole.state[k], resumed.state[k]), k


def test_a_failed_heldout_run_stops_the_refit_beside_it(tmp_path, monkeypatch):
    import threading

    from test_train import CFG

    from deepseqvae.train import fit_alignment

    aln = _toy_alignment(tmp_path)
    model_cfg = VAEConfig(seq_len=aln.L, **CFG)

    def broken(*args, **kwargs):
        raise TrainingError("held-out estimate failed")

    import deepseqvae.train as train_mod

    monkeypatch.setattr(train_mod, "heldout_estimates", broken)
    with pytest.raises(TrainingError, match="held-out estimate failed"):
        fit_alignment(aln, np.ones(aln.N), model_cfg, TrainConfig(**REFIT_BASE), theta=0.2, refit_beside=True)
    assert not any(t.name == "deepseqvae-refit" for t in threading.enumerate())  # the refit thread has ended


def test_a_failed_refit_beside_is_run_again_after(tmp_path, monkeypatch, caplog):
    from test_train import CFG

    from deepseqvae.train import fit_alignment

    aln = _toy_alignment(tmp_path)
    w = np.ones(aln.N)
    model_cfg = VAEConfig(seq_len=aln.L, **CFG)
    cfg = TrainConfig(**REFIT_BASE)
    script = [-10.0, -9.0, -9.5, -9.7]
    _scripted_heldout(monkeypatch, script)
    after = fit_alignment(aln, w, model_cfg, cfg, theta=0.2, refit_beside=False).checkpoint

    def fail(self, step):
        raise RuntimeError("lost the pace")

    _scripted_heldout(monkeypatch, script)
    monkeypatch.setattr(RefitPace, "wait", fail)
    with caplog.at_level("WARNING", logger="deepseqvae.train"):
        res = fit_alignment(aln, w, model_cfg, cfg, theta=0.2, refit_beside=True)
    assert "the refit beside the held-out run failed (lost the pace); refitting after it" in caplog.text
    assert res.checkpoint.step == 10 and res.checkpoint.history["refit_step"] == [10]
    assert all(torch.equal(after.state[k], res.checkpoint.state[k]) for k in after.state)


@pytest.mark.parametrize("beside", [True, False], ids=["refit-beside", "refit-after"])
def test_a_training_error_of_the_refit_is_said_as_the_refits(tmp_path, monkeypatch, beside):
    # "loss became nan at step 1" while the file held the held-out run at a later step: whose step was not said
    import threading

    from test_train import CFG

    import deepseqvae.train as train_mod
    from deepseqvae.train import fit_alignment

    aln = _toy_alignment(tmp_path)
    model_cfg = VAEConfig(seq_len=aln.L, **CFG)
    _scripted_heldout(monkeypatch, [-10.0, -9.0, -9.5, -9.7])
    real, real_refit, refitting = train_mod.loss_terms, train_mod._refit, []

    def nan_in_the_refit(*args, **kwargs):
        loss, stats = real(*args, **kwargs)
        in_refit = threading.current_thread().name == "deepseqvae-refit" or refitting
        return (loss * float("nan"), stats) if in_refit else (loss, stats)

    def refit_after(*args, **kwargs):
        refitting.append(True)
        return real_refit(*args, **kwargs)

    monkeypatch.setattr(train_mod, "loss_terms", nan_in_the_refit)
    monkeypatch.setattr(train_mod, "_refit", refit_after)
    with pytest.raises(TrainingError, match=r"^the refit on every sequence: loss became nan at step 1"):
        fit_alignment(aln, np.ones(aln.N), model_cfg, TrainConfig(**REFIT_BASE), theta=0.2, refit_beside=beside)


def test_refit_pace_holds_at_the_best_step_and_stops_at_the_chosen_one():
    import threading

    def waiting(pace, step):
        got: list = []  # what wait returned, or the exception it raised

        def run() -> None:
            try:
                got.append(pace.wait(step))
            except RefitAbandoned as exc:
                got.append(exc)

        t = threading.Thread(target=run)
        t.start()
        return t, got

    def held(t, got):
        t.join(timeout=0.2)
        return t.is_alive() and got == []

    pace = RefitPace()
    t, got = waiting(pace, 10)
    assert held(t, got)  # the refit waits at an evaluation step until the held-out run has evaluated it
    pace.report(10, 10, False)
    assert held(t, got)  # step 10 is the best so far: the refit holds there instead of training on
    pace.report(20, 10, False)
    assert held(t, got)  # still the best
    pace.report(30, 30, False)  # a later best: the refit trains on towards it, keeping nothing at 10
    t.join(timeout=10)
    assert got == [(False, False)]
    assert pace.wait(20) == (False, False)
    t, got = waiting(pace, 30)
    assert held(t, got)
    pace.report(40, 30, True)  # the held-out run stops at 40 and chose 30: the refit keeps 30 and stops there
    t.join(timeout=10)
    assert got == [(True, True)]
    # a held-out run ahead: step 10 was its best but 20 is now; only the current best is kept
    pace = RefitPace()
    pace.report(20, 20, False)
    assert pace.wait(10) == (False, False)
    t, got = waiting(pace, 20)
    assert held(t, got)
    pace.finish(20)
    t.join(timeout=10)
    assert got == [(True, True)]
    # a refit behind the held-out run's end goes on to the chosen step, keeps it and stops there
    pace = RefitPace()
    pace.finish(30)
    assert [pace.wait(s) for s in (10, 20, 30)] == [(False, False), (False, False), (True, True)]
    # a refit holding at the best step stops when the held-out run is abandoned
    pace = RefitPace()
    pace.report(10, 10, False)
    t, got = waiting(pace, 10)
    assert held(t, got)
    pace.abandon()
    t.join(timeout=10)
    assert not t.is_alive() and len(got) == 1 and isinstance(got[0], RefitAbandoned)
    pace = RefitPace()
    pace.abandon()
    with pytest.raises(RefitAbandoned, match="ended without choosing a step"):
        pace.wait(10)
    with pytest.raises(RefitAbandoned):
        pace.check()


def test_refits_beside_on_a_multithreaded_cpu_only():
    from deepseqvae.train import refits_beside

    cfg = TrainConfig(**REFIT_BASE)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert refits_beside(cfg, "cpu")
        assert not refits_beside(cfg, "cpu", on_eval=lambda step, model: None)  # called from both runs: in turn
        assert not refits_beside(cfg, "meta")  # an accelerator runs one thing at a time anyway
        assert not refits_beside(replace(cfg, eval_every=7), "cpu")  # evaluations off the logging steps
        assert not refits_beside(cfg, "cpu", requested=False)
        torch.set_num_threads(1)
        assert not refits_beside(cfg, "cpu") and refits_beside(cfg, "cpu", requested=True)
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ValueError, match="needs early stopping and eval_every a multiple of log_every"):
        refits_beside(replace(cfg, early_stopping=0), "cpu", requested=True)


def test_heldout_sample_draws_each_row_in_proportion_to_its_weight():
    w = np.array([0.5, 0.0, 2.0, 1.0, 0.1, 0.4])  # total 4.0: 40 draws give 5, 0, 20, 10, 1, 4 exactly
    rows, counts = heldout_sample(w, 40, seed=3)
    assert rows.tolist() == [0, 2, 3, 4, 5] and counts.tolist() == [5, 20, 10, 1, 4]
    # 7 draws: row i is drawn floor or ceil of 7 w_i / W times, 7 in all, never the zero-weight row
    for seed in range(20):
        rows, counts = heldout_sample(w, 7, seed=seed)
        expected = 7 * w[rows] / w.sum()
        assert counts.sum() == 7 and 1 not in rows
        assert np.all(counts >= np.floor(expected)) and np.all(counts <= np.ceil(expected))
    # unbiased: over many starts the mean count of each row is n w_i / W
    mean = np.zeros_like(w)
    for seed in range(2000):
        rows, counts = heldout_sample(w, 7, seed=seed)
        mean[rows] += counts / 2000
    assert mean == pytest.approx(7 * w / w.sum(), abs=0.05)
    a, b = heldout_sample(w, 7, seed=5), heldout_sample(w, 7, seed=5)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    with pytest.raises(ValueError, match="positive sum"):
        heldout_sample(np.zeros(3), 2, seed=0)
    with pytest.raises(ValueError, match="n_draws must be >= 1"):
        heldout_sample(w, 0, seed=0)


def test_eval_rows_estimates_on_the_weight_sample_of_the_held_out_set():
    from deepseqvae.train import make_generator

    codes, w = family(n=60)
    held = (codes[40:], np.linspace(0.2, 2.0, 20))
    base = dict(steps=10, batch_size=8, seed=2, log_every=5, eval_every=5, eval_samples=3)
    out = {}
    for rows in (0, 8, 20):  # 20 = every held-out row: no sample
        model = fresh_model(seed=1)
        res = train(model, codes[:40], w[:40], TrainConfig(eval_rows=rows, **base), info_for(codes[:40], w[:40]),
                    heldout=held)
        out[rows] = res.history["heldout_iwll"]
        if rows == 8:  # the last evaluation, by hand: the sample's rows weighted by their counts
            idx, counts = heldout_sample(held[1], 8, seed=2)
            assert len(idx) <= 8 and counts.sum() == 8
            gen = make_generator(torch.device("cpu"), 3)  # train's evaluation stream (seed + 1)
            args = (torch.tensor(held[0][idx]), torch.as_tensor(counts, dtype=torch.float64), 3)
            heldout_estimates(model, *args, gen)  # the first evaluation's draws
            # the model's final weights are the last evaluation's (no moving average here)
            assert heldout_estimates(model, *args, gen)["iwll"] == pytest.approx(out[8][-1], rel=1e-6)
    assert out[0] == out[20] and out[0] != out[8]
    with pytest.raises(ValueError, match="eval_rows must be >= 0"):
        TrainConfig(eval_rows=-1)


def test_heldout_evaluations_use_the_runs_product_precision():
    """A run with bfloat16 decoder products evaluates its held-out set with them too (float32 runs: float32)."""
    from deepseqvae.train import make_generator

    codes, w = family(n=60)
    held = (codes[40:], np.linspace(0.2, 2.0, 20))
    base = dict(steps=10, batch_size=8, seed=2, log_every=5, eval_every=10, eval_samples=3)
    for name, dtype in (("bfloat16", torch.bfloat16), ("float32", None)):
        model = fresh_model(seed=1)
        res = train(model, codes[:40], w[:40], TrainConfig(matmul_dtype=name, **base), info_for(codes[:40], w[:40]),
                    heldout=held)
        args = (torch.tensor(held[0]), torch.as_tensor(held[1], dtype=torch.float64), 3)
        gen = make_generator(torch.device("cpu"), 3)  # train's evaluation stream (seed + 1); one evaluation
        expect = heldout_estimates(model, *args, gen, matmul_dtype=dtype)["iwll"]
        other = heldout_estimates(model, *args, make_generator(torch.device("cpu"), 3),
                                  matmul_dtype=None if dtype else torch.bfloat16)["iwll"]
        assert res.history["heldout_iwll"] == [pytest.approx(expect, rel=1e-9)]
        assert other != pytest.approx(expect, rel=1e-9)  # the two precisions are told apart


def test_training_finished_by_steps_early_stopping_or_refit():
    from deepseqvae.checkpoint import Checkpoint
    from deepseqvae.train import training_finished

    def ck(step, cfg, **history):
        return Checkpoint(kind="vae", model_config={}, state={}, info=None, train_config=cfg, step=step,
                          history=history)

    assert training_finished(ck(100, {"steps": 100}))
    assert not training_finished(ck(60, {"steps": 100}))
    stopping = {"steps": 100, "early_stopping": 2}
    assert training_finished(ck(40, stopping, eval_step=[10, 20, 30, 40], best_step=[20]))  # two worse since 20
    assert not training_finished(ck(30, stopping, eval_step=[10, 20, 30], best_step=[20]))
    refit = {"steps": 100, "early_stopping": 2, "holdout_fraction": 0.1, "refit": True}
    # the first run's early-stopped end is not the model yet; the refit's checkpoint is
    assert not training_finished(ck(40, refit, eval_step=[10, 20, 30, 40], best_step=[20]))
    assert training_finished(ck(20, {**refit, "stop_step": 20}, eval_step=[10, 20, 30, 40], best_step=[20],
                                refit_step=[20]))


def test_a_refit_beside_a_resume_stops_at_a_kept_step_off_its_evaluation_grid(tmp_path, monkeypatch):
    # the refit checks the held-out run's verdict at its own evaluation steps: resumed with more steps, the kept step
    # 23 (the first run's end) is off that grid, and the refit beside saved step 25 labelled as step 23
    from test_train import CFG

    import deepseqvae.train as train_mod
    from deepseqvae.checkpoint import load_checkpoint
    from deepseqvae.train import fit_alignment

    aln = _toy_alignment(tmp_path)
    w = np.ones(aln.N)
    model_cfg = VAEConfig(seq_len=aln.L, **CFG)
    cfg = TrainConfig(**{**REFIT_BASE, "steps": 23})  # evaluations at 5, 10, 15, 20 and 23 (its end)
    _scripted_heldout(monkeypatch, [-10.0, -9.0, -8.0, -7.0, -6.0])  # the best at 23
    real_refit = train_mod._refit

    def interrupted(*args, **kwargs):  # the refit after the held-out run interrupted: the file holds that run
        raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "_refit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fit_alignment(aln, w, model_cfg, cfg, theta=0.2, refit_beside=False, checkpoint_path=tmp_path / "m.pt")
    monkeypatch.setattr(train_mod, "_refit", real_refit)
    first = load_checkpoint(tmp_path / "m.pt")
    assert first.step == 23 and first.history["best_step"] == [23]
    more = replace(cfg, steps=40)  # evaluations at 25, 30, ...: two worse ones stop it at 30
    got = {}
    for beside in (False, True):
        _scripted_heldout(monkeypatch, [-20.0])
        got[beside] = fit_alignment(aln, w, model_cfg, more, theta=0.2, refit_beside=beside, resume=first).checkpoint
    for ck in got.values():
        assert ck.step == 23 and ck.history["refit_step"] == [23]
    for k in got[False].state:
        assert torch.equal(got[False].state[k], got[True].state[k]), k


def test_a_second_interrupt_while_the_refit_ends_restores_the_thread_count(tmp_path, monkeypatch):
    import os
    import signal
    import threading
    import time

    from test_train import CFG

    import deepseqvae.train as train_mod
    from deepseqvae.train import fit_alignment

    aln = _toy_alignment(tmp_path)
    model_cfg = VAEConfig(seq_len=aln.L, **CFG)

    def broken(*args, **kwargs):
        raise KeyboardInterrupt  # the first Ctrl-C, in the held-out run

    monkeypatch.setattr(train_mod, "heldout_estimates", broken)
    real_check, real_abandon = RefitPace.check, RefitPace.abandon

    def slow_check(self):  # the refit's step under way takes a while (a large model, a compile)
        if self._abandoned:
            time.sleep(3.0)  # the second Ctrl-C (0.3 s after the first) comes while the join waits
        real_check(self)

    def abandon_then_ctrl_c_again(self):
        real_abandon(self)
        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()  # pressed again while the refit ends

    monkeypatch.setattr(RefitPace, "check", slow_check)
    monkeypatch.setattr(RefitPace, "abandon", abandon_then_ctrl_c_again)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with pytest.raises(KeyboardInterrupt):
            fit_alignment(aln, np.ones(aln.N), model_cfg, TrainConfig(**REFIT_BASE), theta=0.2, refit_beside=True)
        assert torch.get_num_threads() == 2  # it was left at 1, the refit's share
    finally:
        torch.set_num_threads(before)
        for t in threading.enumerate():
            if t.name == "deepseqvae-refit":
                t.join(timeout=10)
