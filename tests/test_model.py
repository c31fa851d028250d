"""The VAE's maths: KL terms, the ELBO by hand, gaps, dictionary and sparsity semantics."""

import math

import numpy as np
import pytest
import torch
from torch.distributions import Normal, kl_divergence

from deepseqvae.alphabet import GAP_CODE
from deepseqvae.model import VAE, VAEConfig, gaussian_kl, loss_terms


def tiny_config(**kw):
    base = dict(seq_len=3, encoder_hidden=(8,), latent_dim=2, decoder_hidden=(4, 8), dictionary_size=5,
                sparsity_tiles=2)
    base.update(kw)
    return VAEConfig(**base)


def test_gaussian_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(7, 3, generator=g, dtype=torch.float64)
    log_sigma = torch.randn(7, 3, generator=g, dtype=torch.float64) - 1
    for prior_mu, prior_sigma in [(0.0, 1.0), (-12.36, 4.0), (0.5, 0.3)]:
        prior = Normal(torch.tensor(prior_mu, dtype=torch.float64), torch.tensor(prior_sigma, dtype=torch.float64))
        want = kl_divergence(Normal(mu, log_sigma.exp()), prior).sum()
        assert float(gaussian_kl(mu, log_sigma, prior_mu, prior_sigma)) == pytest.approx(float(want), rel=1e-10)


def test_latent_kl_matches_torch_distributions():
    mu = torch.tensor([[0.3, -1.2], [0.0, 0.0]], dtype=torch.float64)
    log_sigma = torch.tensor([[-0.5, 0.2], [0.0, 0.0]], dtype=torch.float64)
    want = kl_divergence(Normal(mu, log_sigma.exp()), Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(VAE.latent_kl(mu, log_sigma), want)
    assert float(VAE.latent_kl(mu, log_sigma)[1]) == 0.0  # q = prior


def test_sparsity_prior_mean_is_deepsequence_value():
    # sqrt(2)·4·erfinv(2·0.001 − 1) = −12.36 (DeepSequence, logit_p = 0.001)
    assert VAEConfig(seq_len=5).sparsity_prior_mu == pytest.approx(-12.3613, abs=1e-3)
    assert VAEConfig(seq_len=5, sparsity_p=0.01).sparsity_prior_mu == pytest.approx(-9.3054, abs=1e-3)


def test_paper_defaults():
    cfg = VAEConfig(seq_len=253)
    assert cfg.encoder_hidden == (1500, 1500) and cfg.latent_dim == 30
    assert cfg.decoder_hidden == (100, 2000) and cfg.dictionary_size == 40 and cfg.sparsity_tiles == 4
    model = VAE(cfg)
    assert model.decoder.mu["W_out"].shape == (2000, 253, 40)
    assert model.decoder.mu["scale_logit"].shape == (500, 253)
    assert float(model.decoder.log_sigma["W_out"].detach().mean()) == -5.0
    assert float(model.encoder.log_sigma.bias.detach().mean()) == -5.0


def test_elbo_by_hand():
    """A 2-position model with hand-set weights: log p(x|z) − KL computed with numpy."""
    cfg = VAEConfig(seq_len=2, encoder_hidden=(), latent_dim=1, decoder_hidden=(2,), decoder="mle",
                    dictionary_size=0, sparsity_tiles=0, temperature=True, output_bias=True)
    model = VAE(cfg).double()
    rng = np.random.default_rng(3)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.from_numpy(rng.normal(size=tuple(p.shape))))
    codes = torch.tensor([[3, GAP_CODE], [0, 19]])
    eps = torch.tensor([[0.7], [-0.2]], dtype=torch.float64)
    terms = model(codes, eps=eps)

    E, D = model.encoder, model.decoder.mu
    for b in range(2):
        x = np.zeros(40)
        for col, c in enumerate(codes[b].tolist()):
            if c != GAP_CODE:
                x[col * 20 + c] = 1.0
        mu = x @ E.mu.weight.detach().numpy() + E.mu.bias.detach().numpy()  # (20L, D): gather-sum layout
        ls = x @ E.log_sigma.weight.detach().numpy() + E.log_sigma.bias.detach().numpy()
        z = mu + np.exp(ls) * eps[b].numpy()
        h = 1 / (1 + np.exp(-(z @ D["W0"].detach().numpy() + D["b0"].detach().numpy())))  # sigmoid (last layer)
        logits = (h @ D["W_out"].detach().numpy().reshape(2, 40)).reshape(2, 20) + D["b_out"].detach().numpy()
        logits *= math.log1p(math.exp(float(D["temperature"].detach())))
        logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        want_lp = sum(logp[col, c] for col, c in enumerate(codes[b].tolist()) if c != GAP_CODE)
        want_kl = 0.5 * np.sum(np.exp(2 * ls) + mu**2 - 1 - 2 * ls)
        assert float(terms.log_px_z[b].detach()) == pytest.approx(want_lp, rel=1e-10)
        assert float(terms.kl_z[b].detach()) == pytest.approx(want_kl, rel=1e-10)
        assert float(terms.elbo[b].detach()) == pytest.approx(want_lp - want_kl, rel=1e-10)


def test_gap_positions_contribute_nothing():
    log_probs = torch.log_softmax(torch.randn(2, 3, 20), -1)
    codes = torch.tensor([[1, GAP_CODE, 4], [1, 7, 4]])
    ll = VAE.log_likelihood(log_probs, codes)
    assert float(ll[0]) == pytest.approx(float(log_probs[0, 0, 1] + log_probs[0, 2, 4]))
    assert float(ll[1]) == pytest.approx(float(log_probs[1, 0, 1] + log_probs[1, 1, 7] + log_probs[1, 2, 4]))
    assert float(VAE.log_likelihood(log_probs, torch.full((1, 3), GAP_CODE))[0]) == 0.0


def test_dictionary_and_tiled_sparsity_semantics():
    cfg = tiny_config()
    dec = VAE(cfg).decoder
    w = dec.draw(sample=False)
    W = dec.output_weight(w).view(8, 3, 20)
    raw, Dm, s = w["W_out"], w["dictionary"], torch.sigmoid(w["scale_logit"])  # (8,3,5), (5,20), (4,3)
    for h in range(8):
        for pos in range(3):
            # DeepSequence: W[h, l, :] = W_raw[h, l, :] @ D, scaled by the group of unit h (h mod H/k)
            torch.testing.assert_close(W[h, pos], (raw[h, pos] @ Dm) * s[h % 4, pos])


def test_svi_draw_shares_one_sample_and_mle_is_deterministic():
    model = VAE(tiny_config())
    g = torch.Generator().manual_seed(0)
    w1, w2 = model.decoder.draw(generator=g), model.decoder.draw(generator=g)
    assert not torch.equal(w1["W_out"], w2["W_out"])
    assert torch.equal(model.decoder.draw(sample=False)["W_out"], model.decoder.mu["W_out"])
    mle = VAE(tiny_config(decoder="mle"))
    assert mle.decoder.draw()["W_out"] is mle.decoder.mu["W_out"]


def test_loss_is_negative_elbo_plus_scaled_regulariser():
    torch.manual_seed(0)
    model = VAE(tiny_config())
    codes = torch.randint(0, 21, (5, 3))
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    loss, stats = loss_terms(model, codes, neff=10.0, generator=g1)
    terms = model(codes, weights=model.decoder.draw(generator=g2), generator=g2)  # same draws, same order
    want = -terms.elbo.mean() + model.decoder.kl() / 10.0
    assert float(loss.detach()) == pytest.approx(float(want.detach()), rel=1e-6)
    assert float(stats["kl_theta"]) == pytest.approx(float(model.decoder.kl().detach() / 10.0), rel=1e-6)


def test_config_validation():
    with pytest.raises(ValueError, match="divisible"):
        VAEConfig(seq_len=3, decoder_hidden=(10, 6), sparsity_tiles=4)
    with pytest.raises(ValueError, match="decoder"):
        VAEConfig(seq_len=3, decoder="bayes")


@pytest.mark.parametrize("prior", [(0.0, 1.0), (-12.36, 4.0)])
def test_fused_sample_and_kl_values_and_gradients(prior):
    from deepseqvae.model import _SampleWithKL

    g = torch.Generator().manual_seed(1)
    mu = torch.randn(4, 3, dtype=torch.float64, generator=g).requires_grad_()
    log_sigma = (torch.randn(4, 3, dtype=torch.float64, generator=g) - 1).requires_grad_()
    eps = torch.randn(4, 3, dtype=torch.float64, generator=g)
    w, kl = _SampleWithKL.apply(mu, log_sigma, eps, *prior)
    torch.testing.assert_close(w, mu + log_sigma.exp() * eps)
    torch.testing.assert_close(kl, gaussian_kl(mu, log_sigma, *prior))
    assert torch.autograd.gradcheck(lambda a, b: _SampleWithKL.apply(a, b, eps, *prior), (mu, log_sigma))


@pytest.mark.parametrize("decoder", ["svi", "mle"])
def test_dropout_acts_in_training_only_and_follows_the_generator(decoder):
    torch.manual_seed(0)
    model = VAE(tiny_config(decoder=decoder, dropout=0.5))
    plain = VAE(tiny_config(decoder=decoder))
    plain.load_state_dict(model.state_dict())
    z, w = torch.randn(6, 2), model.decoder.draw(sample=False)
    model.eval(), plain.eval()
    assert torch.equal(model.decoder.hidden(z, w), plain.decoder.hidden(z, w))  # scoring: no dropout
    model.train()
    h = model.decoder.hidden(z, w, torch.Generator().manual_seed(4))
    again = model.decoder.hidden(z, w, torch.Generator().manual_seed(4))
    assert torch.equal(h, again)
    # by hand: the same masks from the same stream, kept units scaled by 1 / (1 - p)
    g = torch.Generator().manual_seed(4)
    x = z
    for i in range(model.decoder.n_layers):
        x = x @ w[f"W{i}"] + w[f"b{i}"]
        x = torch.sigmoid(x) if i == model.decoder.n_layers - 1 else torch.relu(x)
        x = x * torch.empty_like(x).bernoulli_(0.5, generator=g) * 2.0
    torch.testing.assert_close(h, x, rtol=0, atol=0)
    assert (h == 0).any() and not torch.equal(h, plain.decoder.hidden(z, w))


def test_decoder_output_without_autograd_is_the_same_arithmetic_in_place():
    # Scoring runs without autograd, where the output bias and temperature update the fresh product in place:
    # bit for bit the out-of-place result training computes, and the caller's product tensor is reused.
    torch.manual_seed(0)
    dec = VAE(tiny_config()).decoder
    w = dec.draw(generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        w["b_out"] = w["b_out"] + torch.randn_like(w["b_out"])  # a bias that is not constant
    product = torch.randn(5, dec.cfg.seq_len * dec.cfg.alphabet_size)
    with torch.enable_grad():
        reference = dec._finish(product.clone(), w)
    mine = product.clone()
    with torch.no_grad():
        out = dec._finish(mine, w)
    assert torch.equal(out, reference.detach())
    scale = torch.nn.functional.softplus(w["temperature"])
    assert torch.equal(mine.view_as(out), (product.view_as(out) + w["b_out"]) * scale)  # updated in place


def test_one_hot_by_hand_and_of_read_only_codes():
    import warnings

    from deepseqvae.alphabet import one_hot

    codes = np.array([[0, 19, GAP_CODE]], dtype=np.int8)
    codes.setflags(write=False)  # as Alignment.codes are
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns on a read-only array it would share
        x = one_hot(codes)
    assert x.shape == (1, 3, 20) and x.dtype == torch.float32
    assert x[0, 0, 0] == 1 and x[0, 1, 19] == 1 and x.sum().item() == 2  # the gap is a zero row
    assert torch.equal(one_hot(torch.as_tensor(codes.copy())), x)
