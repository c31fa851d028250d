"""Training loop, checkpoints, resume and failure handling on tiny synthetic data."""

import pytest
import torch

from deepseqvae.checkpoint import Checkpoint, build_model, load_checkpoint, save_checkpoint
from deepseqvae.errors import CheckpointError, TrainingError
from deepseqvae.model import VAE, VAEConfig
from deepseqvae.train import TrainConfig, train

from conftest import TINY_VAE, toy_family, toy_info

CFG = dict(TINY_VAE, latent_dim=2)


def fresh_model(seed=0, **kw):
    torch.manual_seed(seed)
    return VAE(VAEConfig(seq_len=8, **{**CFG, **kw}))


def test_training_raises_the_elbo():
    codes, w = toy_family()
    result = train(fresh_model(), codes, w, TrainConfig(steps=300, batch_size=32, log_every=50),
                   toy_info(codes, w))
    elbo = result.history["elbo"]
    assert len(elbo) == 6 and result.history["step"][-1] == 300
    assert elbo[-1] > elbo[0] + 2.0


def test_cpu_training_is_bitwise_reproducible():
    codes, w = toy_family()
    cfg = TrainConfig(steps=20, batch_size=16, seed=5, log_every=10)
    a = train(fresh_model(1), codes, w, cfg, toy_info(codes, w)).checkpoint.state
    b = train(fresh_model(1), codes, w, cfg, toy_info(codes, w)).checkpoint.state
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoint_round_trip(tmp_path):
    codes, w = toy_family()
    path = tmp_path / "m.pt"
    res = train(fresh_model(), codes, w, TrainConfig(steps=10, batch_size=8, log_every=5), toy_info(codes, w),
                checkpoint_path=path)
    ck = load_checkpoint(path)
    assert ck.kind == "vae" and ck.step == 10
    assert ck.info.focus_seq == "ACDEFGHI" and ck.info.positions == list(range(1, 9))
    assert ck.model_config["decoder_hidden"] == (8, 16) or list(ck.model_config["decoder_hidden"]) == [8, 16]
    model = build_model(ck)
    for k, v in res.checkpoint.state.items():
        assert torch.equal(model.state_dict()[k], v)
    assert not model.training


@pytest.mark.parametrize("model_kw", [{}, {"dropout": 0.3}, {"dropout": 0.3, "decoder": "mle"}],
                         ids=["plain", "svi-dropout", "mle-dropout"])
def test_resume_equals_uninterrupted_run(tmp_path, model_kw):
    # dropout masks come from the run's generator, whose state the checkpoint carries: a resume that
    # drew them from torch's global generator would continue another stream
    codes, w = toy_family()
    full_cfg = TrainConfig(steps=30, batch_size=16, seed=3, log_every=5, checkpoint_every=0)
    full = train(fresh_model(2, **model_kw), codes, w, full_cfg, toy_info(codes, w)).checkpoint.state

    path = tmp_path / "half.pt"
    half_cfg = TrainConfig(steps=12, batch_size=16, seed=3, log_every=5, checkpoint_every=0)
    train(fresh_model(2, **model_kw), codes, w, half_cfg, toy_info(codes, w), checkpoint_path=path)
    ck = load_checkpoint(path)
    torch.manual_seed(123)  # whatever else the resuming process drew from torch's global generator
    resumed = train(build_model(ck), codes, w, full_cfg, toy_info(codes, w), resume=ck).checkpoint
    assert resumed.step == 30
    for k in full:
        assert torch.equal(full[k], resumed.state[k]), k


def test_nan_loss_stops_with_step_and_keeps_last_good_checkpoint(tmp_path):
    codes, w = toy_family()
    path = tmp_path / "m.pt"
    model = fresh_model()
    train(model, codes, w, TrainConfig(steps=10, batch_size=8, checkpoint_every=5, log_every=5),
          toy_info(codes, w), checkpoint_path=path)
    good = load_checkpoint(path)
    with torch.no_grad():
        model.decoder.mu["b_out"].fill_(float("nan"))
    with pytest.raises(TrainingError, match=r"loss became nan at step 11.*last good checkpoint"):
        train(model, codes, w, TrainConfig(steps=20, batch_size=8, checkpoint_every=5, log_every=5),
              toy_info(codes, w), checkpoint_path=path,
              resume=Checkpoint(**{**good.__dict__, "state": model.state_dict()}))
    after = load_checkpoint(path)
    assert after.step == 10
    assert all(torch.equal(after.state[k], good.state[k]) for k in good.state)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", None, "foreign", "truncated"])
def test_bad_checkpoint_files_raise_checkpoint_error(tmp_path, content):
    path = tmp_path / "bad.pt"
    if content == "foreign":
        torch.save({"weights": torch.zeros(3)}, path)
    elif content == "truncated":
        codes, w = toy_family()
        train(fresh_model(), codes, w, TrainConfig(steps=2, batch_size=4), toy_info(codes, w), checkpoint_path=path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=str(path.name)) as err:
        load_checkpoint(path)
    assert "\n" not in str(err.value)


def test_checkpoint_refuses_arbitrary_pickles(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"format": "deepseqvae-checkpoint", "x": Evil()}, path)
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(path)


def test_save_is_atomic_on_failure(tmp_path, monkeypatch):
    codes, w = toy_family()
    path = tmp_path / "m.pt"
    res = train(fresh_model(), codes, w, TrainConfig(steps=2, batch_size=4), toy_info(codes, w), checkpoint_path=path)
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        save_checkpoint(res.checkpoint, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]
