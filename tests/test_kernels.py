"""The split noise draw and the compiled sampling + KL kernels (deepseqvae.kernels)."""

import logging
import shutil

import pytest
import torch

from deepseqvae import kernels
from deepseqvae.checkpoint import build_model, load_checkpoint
from deepseqvae.model import VAE, VAEConfig, _SampleWithKL
from deepseqvae.train import TrainConfig, train

from conftest import TINY_VAE, toy_family, toy_info

needs_compiler = pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                                    reason="torch.compile needs a C++ compiler")


def test_small_draws_are_one_randn_from_the_generator():
    want = torch.randn((7, 5), generator=torch.Generator().manual_seed(3))
    got = kernels.standard_normal((7, 5), generator=torch.Generator().manual_seed(3))
    assert torch.equal(got, want)


def test_large_draw_is_one_chunk_per_seed_taken_from_the_generator():
    n = kernels.NOISE_SPLIT_MIN + 11  # uneven: the last chunk is shorter
    got = kernels.standard_normal((n,), generator=torch.Generator().manual_seed(9))
    # by hand: NOISE_SPLITS seeds from the caller's generator, chunk k filled from seed k
    seeds = torch.randint(0, 2**62, (kernels.NOISE_SPLITS,), generator=torch.Generator().manual_seed(9)).tolist()
    size = -(-n // kernels.NOISE_SPLITS)
    for k, seed in enumerate(seeds):
        chunk = torch.empty(min(size, n - k * size)).normal_(generator=torch.Generator().manual_seed(seed))
        assert torch.equal(got[k * size:(k + 1) * size], chunk)
    assert abs(float(got.mean())) < 5.0 / n**0.5 and abs(float(got.std()) - 1.0) < 0.01
    # distinct streams per chunk, not one chunk repeated
    m = size - 1
    assert abs(float(torch.corrcoef(torch.stack([got[:m], got[size:size + m]]))[0, 1])) < 0.01


def test_large_draw_does_not_depend_on_the_thread_count():
    shape = (kernels.NOISE_SPLIT_MIN // 512 + 1, 512)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = kernels.standard_normal(shape, generator=torch.Generator().manual_seed(4))
        torch.set_num_threads(2)
        two = kernels.standard_normal(shape, generator=torch.Generator().manual_seed(4))
    finally:
        torch.set_num_threads(before)
    assert one.shape == shape and torch.equal(one, two)


def _sample_and_grads(n, compiled, prior=(0.0, 1.0)):
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(n, generator=g).requires_grad_()
    log_sigma = (torch.randn(n, generator=g) - 3).requires_grad_()
    eps = torch.randn(n, generator=g)
    w, kl = _SampleWithKL.apply(mu.view(-1, 64), log_sigma.view(-1, 64), eps.view(-1, 64), *prior, compiled)
    up = torch.randn(w.shape, generator=g)
    ((w * up).sum() + 0.37 * kl).backward()
    return w.detach(), kl.detach(), mu.grad, log_sigma.grad


@needs_compiler
@pytest.mark.parametrize("prior", [(0.0, 1.0), (-12.36, 4.0)])
def test_compiled_sampling_and_kl_equal_the_eager_kernel(monkeypatch, prior):
    monkeypatch.setattr(kernels, "COMPILE_MIN", 1024)  # compile a small tensor, quickly
    monkeypatch.setattr(kernels, "_compile_failure", None)
    want = _sample_and_grads(64 * 40, compiled=False, prior=prior)
    got = _sample_and_grads(64 * 40, compiled=True, prior=prior)
    assert kernels.compile_failure() is None
    assert got[0].shape == (40, 64)
    torch.testing.assert_close(got[0], want[0], rtol=1e-6, atol=1e-6)  # w
    torch.testing.assert_close(got[1], want[1], rtol=1e-5, atol=1e-3)  # KL: a sum of 2,560 terms
    torch.testing.assert_close(got[2], want[2], rtol=1e-5, atol=1e-6)  # d/d mu
    torch.testing.assert_close(got[3], want[3], rtol=1e-5, atol=1e-6)  # d/d log_sigma


def test_a_failing_compiler_falls_back_to_the_eager_kernel_once(monkeypatch, caplog):
    def broken_compile(fn, **kw):
        def run(*args):
            raise RuntimeError("no working C++ compiler\nsecond line")
        return run

    monkeypatch.setattr(kernels, "COMPILE_MIN", 1024)
    monkeypatch.setattr(kernels, "_compile_failure", None)
    monkeypatch.setattr(kernels, "_compiled", {})
    monkeypatch.setattr(kernels.torch, "compile", broken_compile)
    want = _sample_and_grads(64 * 40, compiled=False)
    with caplog.at_level(logging.WARNING, logger="deepseqvae.kernels"):
        got = _sample_and_grads(64 * 40, compiled=True)
        _sample_and_grads(64 * 40, compiled=True)
    assert kernels.compile_failure() == "RuntimeError: no working C++ compiler"
    assert [r.getMessage() for r in caplog.records] == [
        "torch.compile is not available here (RuntimeError: no working C++ compiler); "
        "training uses the eager kernels"]
    for a, b in zip(got, want, strict=True):
        assert torch.equal(a, b)


@needs_compiler
def test_resume_is_bit_exact_with_the_compiled_kernels(monkeypatch, tmp_path):
    monkeypatch.setattr(kernels, "COMPILE_MIN", 256)  # the toy decoder's output weights take the compiled path
    monkeypatch.setattr(kernels, "_compile_failure", None)
    codes, w = toy_family()
    cfg = dict(TINY_VAE, latent_dim=2)

    def fresh():
        torch.manual_seed(2)
        return VAE(VAEConfig(seq_len=8, **cfg))

    assert fresh().decoder.mu["W_out"].numel() >= 256
    full_cfg = TrainConfig(steps=16, batch_size=16, seed=3, log_every=4, checkpoint_every=0)
    full = train(fresh(), codes, w, full_cfg, toy_info(codes, w)).checkpoint.state
    eager = train(fresh(), codes, w, TrainConfig(**{**full_cfg.__dict__, "compile_kernels": False}),
                  toy_info(codes, w)).checkpoint.state
    path = tmp_path / "half.pt"
    train(fresh(), codes, w, TrainConfig(**{**full_cfg.__dict__, "steps": 6}), toy_info(codes, w),
          checkpoint_path=path)
    ck = load_checkpoint(path)
    resumed = train(build_model(ck), codes, w, full_cfg, toy_info(codes, w), resume=ck).checkpoint.state
    assert kernels.compile_failure() is None
    for k in full:
        assert torch.equal(full[k], resumed[k]), k
        # the compiled loop sums the KL in another order: the same run up to float rounding
        torch.testing.assert_close(full[k], eager[k], rtol=1e-3, atol=1e-4)
