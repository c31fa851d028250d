"""Training loop, checkpoints, resume and failure handling on tiny synthetic data."""

import platform
import re
from pathlib import Path

import pytest
import torch

from deepseqvae.checkpoint import Checkpoint, build_model, load_checkpoint, save_checkpoint
from deepseqvae.errors import CheckpointError, TrainingError
from deepseqvae.model import VAE, VAEConfig
from deepseqvae.train import TrainConfig, ema_decay_at, train

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


#: torch.set_flush_denormal works on x86 CPUs only (elsewhere flush_subnormals does nothing)
x86_only = pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"),
                              reason="flushing subnormals is an x86 CPU mode")


@x86_only
def test_flush_subnormals_in_this_thread_and_those_it_starts_until_restored():
    import threading

    from deepseqvae.runtime import _flushing_subnormals, flush_subnormals

    tiny = torch.tensor([1e-30], dtype=torch.float32)
    assert not _flushing_subnormals() and float(tiny * 1e-10) > 0  # a subnormal result (~1e-40) by default
    restore = flush_subnormals()
    try:
        assert float(tiny * 1e-10) == 0.0 and float(torch.tensor([1e-39]) + 0.0) == 0.0  # results and inputs
        seen = []
        t = threading.Thread(target=lambda: seen.append(_flushing_subnormals()))
        t.start()
        t.join()
        assert seen == [True]  # a thread started meanwhile inherits it
        flush_subnormals()()  # nested: already on, so its restore leaves it on
        assert _flushing_subnormals()
    finally:
        restore()
    assert not _flushing_subnormals() and float(tiny * 1e-10) > 0


@x86_only
def test_training_steps_flush_subnormals_and_leave_the_thread_as_it_was(monkeypatch):
    import deepseqvae.train as train_mod
    from deepseqvae.runtime import _flushing_subnormals

    real, during = train_mod.loss_terms, []

    def spy(*args, **kwargs):
        during.append(_flushing_subnormals())
        return real(*args, **kwargs)

    monkeypatch.setattr(train_mod, "loss_terms", spy)
    codes, w = toy_family()
    train(fresh_model(), codes, w, TrainConfig(steps=3, batch_size=8, log_every=1), toy_info(codes, w))
    assert during == [True, True, True] and not _flushing_subnormals()


@x86_only
def test_flushing_does_not_leak_into_torchs_thread_pool():
    # the pool's OpenMP workers, started inside train() after the setting, copied it and kept flushing after train()
    # restored the caller's: half of every later 2-thread operation lost its subnormals (a fresh process: the pool
    # must start inside train())
    import subprocess
    import sys

    code = (
        "import sys, torch\n"
        "sys.path.insert(0, 'tests')\n"
        "from conftest import toy_family, toy_info\n"
        "from test_train import fresh_model\n"
        "from deepseqvae.train import TrainConfig, train\n"
        "torch.set_num_threads(2)\n"
        "codes, w = toy_family()\n"
        "train(fresh_model(0), codes, w, TrainConfig(steps=5, log_every=5, compile_kernels=False), "
        "toy_info(codes, w))\n"
        "y = torch.full((1 << 20,), 1e-30) * 1e-10\n"
        "print(int((y == 0).sum()))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "0"


def test_checkpoint_round_trip(tmp_path):
    codes, w = toy_family()
    path = tmp_path / "m.pt"
    res = train(fresh_model(), codes, w, TrainConfig(steps=10, batch_size=8, log_every=5), toy_info(codes, w),
                checkpoint_path=path)
    ck = load_checkpoint(path)
    assert ck.kind == "vae" and ck.step == 10
    # a notebook shows what it is, not every weight (the dataclass's repr ran to ~50,000 characters)
    assert repr(ck) == f"Checkpoint(kind='vae', focus='toy', L=8, N=120, Neff=120.0, step=10, source={str(path)!r})"
    assert ck.info.focus_seq == "ACDEFGHI" and ck.info.positions == list(range(1, 9))
    assert ck.model_config["decoder_hidden"] == (8, 16) or list(ck.model_config["decoder_hidden"]) == [8, 16]
    model = build_model(ck)
    for k, v in res.checkpoint.state.items():
        assert torch.equal(model.state_dict()[k], v)
    assert not model.training


def test_a_damaged_or_diverged_checkpoint_is_refused(tmp_path):
    # torch.load checks no CRC: a changed byte in a weight loaded and scored silently; NaN weights scored every row
    # NaN with the status "ok"
    codes, w = toy_family()
    path = tmp_path / "m.pt"
    res = train(fresh_model(), codes, w, TrainConfig(steps=5, batch_size=8, log_every=5), toy_info(codes, w),
                checkpoint_path=path)
    data = bytearray(path.read_bytes())
    import zipfile

    with zipfile.ZipFile(path) as z:  # the first byte of the data of the first tensor record
        info = next(i for i in z.infolist() if "/data/" in i.filename)
        local = data[info.header_offset:info.header_offset + 30]  # the local header: its name and extra lengths
        name_len, extra_len = int.from_bytes(local[26:28], "little"), int.from_bytes(local[28:30], "little")
        start = info.header_offset + 30 + name_len + extra_len
    data[start] ^= 0xFF
    (tmp_path / "flipped.pt").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=rf"flipped\.pt: damaged checkpoint: the data of its record "
                                              rf"{re.escape(info.filename)} fails its checksum"):
        load_checkpoint(tmp_path / "flipped.pt")
    state = dict(res.checkpoint.state)
    name = next(iter(state))
    state[name] = torch.full_like(state[name], float("nan"))
    save_checkpoint(Checkpoint(**{**res.checkpoint.__dict__, "state": state}), tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match=rf"nan\.pt: weight {re.escape(name)} holds {state[name].numel()} "
                                              r"non-finite value\(s\): the model of a run that diverged"):
        load_checkpoint(tmp_path / "nan.pt")
    assert load_checkpoint(path).step == 5
    # a file saved without checksums (torch's option: every CRC 0) cannot be checked, and loads
    torch.serialization.set_crc32_options(False)
    try:
        save_checkpoint(res.checkpoint, tmp_path / "nocrc.pt")
    finally:
        torch.serialization.set_crc32_options(True)
    assert load_checkpoint(tmp_path / "nocrc.pt").step == 5


def test_an_edited_checkpoint_is_one_error_naming_the_file(tmp_path):
    # a weight of another shape or an unknown configuration field was a traceback; a missing weight did not name
    # the file
    codes, w = toy_family()
    ck = train(fresh_model(), codes, w, TrainConfig(steps=2, batch_size=8, log_every=1), toy_info(codes, w)).checkpoint
    name = next(iter(ck.state))
    edits = {
        "shape.pt": ({**ck.__dict__, "state": {**ck.state, name: torch.zeros(3, 3)}},
                     rf"shape\.pt: checkpoint weights do not fit the model: size mismatch for {re.escape(name)}"),
        "config.pt": ({**ck.__dict__, "model_config": {**ck.model_config, "bogus": 1}},
                      r"config\.pt: its model configuration does not make a model \(.*bogus"),
        "missing.pt": ({**ck.__dict__, "state": {k: v for k, v in ck.state.items() if k != name}},
                       rf"missing\.pt: checkpoint weights do not fit the model: missing \['{re.escape(name)}'\]"),
    }
    for file, (fields, message) in edits.items():
        save_checkpoint(Checkpoint(**fields), tmp_path / file)
        with pytest.raises(CheckpointError, match=message):
            build_model(load_checkpoint(tmp_path / file))


def test_a_signal_during_a_checkpoint_write_waits_for_it_unless_ignored(tmp_path, monkeypatch):
    # Ctrl-C inside torch's zip writer surfaced as a RuntimeError mid-file: it is held until the file is whole; an
    # ignored SIGINT (a script's background job) must stay ignored, not become an interrupt there
    import os
    import signal

    from conftest import toy_vae_checkpoint

    ck, _ = toy_vae_checkpoint()
    real_save = torch.save

    def save_and_signal(obj, fh):
        os.kill(os.getpid(), signal.SIGINT)  # arrives during the write
        real_save(obj, fh)

    monkeypatch.setattr(torch, "save", save_and_signal)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(ck, tmp_path / "held.pt")
    assert load_checkpoint(tmp_path / "held.pt").step == ck.step  # written whole before the interrupt
    # a SIGTERM made an interrupt by the command line is held the same way
    sent = signal.SIGTERM
    before_term = signal.signal(signal.SIGTERM, signal.default_int_handler)

    def save_and_terminate(obj, fh):
        os.kill(os.getpid(), sent)
        real_save(obj, fh)

    monkeypatch.setattr(torch, "save", save_and_terminate)
    try:
        with pytest.raises(KeyboardInterrupt):
            save_checkpoint(ck, tmp_path / "term.pt")
    finally:
        signal.signal(signal.SIGTERM, before_term)
    assert load_checkpoint(tmp_path / "term.pt").step == ck.step
    monkeypatch.setattr(torch, "save", save_and_signal)
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        save_checkpoint(ck, tmp_path / "ignored.pt")  # no KeyboardInterrupt
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)
    assert load_checkpoint(tmp_path / "ignored.pt").step == ck.step


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


@pytest.mark.parametrize("beside", [False, True], ids=["evaluations-in-turn", "evaluations-beside"])
def test_resume_continues_the_heldout_estimates_draws(tmp_path, monkeypatch, beside):
    # the held-out estimates draw from generators of their own: started anew at a resume, the evaluations after it
    # differed from the uninterrupted run's, and so did the step early stopping kept and the saved weights
    import deepseqvae.train as train_mod

    codes, w = toy_family()
    held = (codes[:20], w[:20])
    cfg = TrainConfig(steps=40, batch_size=16, seed=3, log_every=5, eval_every=5, eval_samples=4,
                      checkpoint_every=10, early_stopping=100, ema_decay=0.9)
    whole = train(fresh_model(2), codes, w, cfg, toy_info(codes, w), heldout=held, evaluate_beside=beside,
                  checkpoint_path=tmp_path / "whole.pt").checkpoint
    real = train_mod.save_checkpoint

    def killed_after_step_20(ckpt, path):
        real(ckpt, path)
        if ckpt.step == 20:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "save_checkpoint", killed_after_step_20)
    with pytest.raises(KeyboardInterrupt):
        train(fresh_model(2), codes, w, cfg, toy_info(codes, w), heldout=held, evaluate_beside=beside,
              checkpoint_path=tmp_path / "part.pt")
    monkeypatch.setattr(train_mod, "save_checkpoint", real)
    part = load_checkpoint(tmp_path / "part.pt")
    assert part.step == 20 and len(part.eval_rng_state) == 2
    resumed = train(build_model(part), codes, w, cfg, toy_info(codes, w), heldout=held, evaluate_beside=beside,
                    resume=part).checkpoint
    assert resumed.history["heldout_iwll"] == whole.history["heldout_iwll"]  # every evaluation, to the last bit
    assert resumed.history["best_step"] == whole.history["best_step"]
    for k in whole.state:
        assert torch.equal(whole.state[k], resumed.state[k]), k
    # a slim checkpoint carries no generator state (it cannot be resumed)
    assert whole.scoring_only().eval_rng_state is None


def test_nan_loss_stops_with_step_and_keeps_last_good_checkpoint(tmp_path):
    codes, w = toy_family()
    path = tmp_path / "m.pt"
    model = fresh_model()
    train(model, codes, w, TrainConfig(steps=10, batch_size=8, checkpoint_every=5, log_every=5),
          toy_info(codes, w), checkpoint_path=path)
    good = load_checkpoint(path)
    with torch.no_grad():
        model.decoder.mu["b_out"].fill_(float("nan"))
    with pytest.raises(TrainingError, match=r"loss became nan at step 11; the last good checkpoint is .*m\.pt "
                                            r"\(step 10\)"):
        train(model, codes, w, TrainConfig(steps=20, batch_size=8, checkpoint_every=5, log_every=5),
              toy_info(codes, w), checkpoint_path=path,
              resume=Checkpoint(**{**good.__dict__, "state": model.state_dict()}))
    after = load_checkpoint(path)
    assert after.step == 10
    assert all(torch.equal(after.state[k], good.state[k]) for k in good.state)


def test_nan_loss_before_any_checkpoint_names_none(tmp_path):
    # a file already at the path belongs to an earlier run: the error must not offer it as this run's
    codes, w = toy_family()
    path = tmp_path / "m.pt"
    path.write_bytes(b"an earlier run's model")
    model = fresh_model()
    with torch.no_grad():
        model.decoder.mu["b_out"].fill_(float("nan"))
    with pytest.raises(TrainingError, match=r"loss became nan at step 1; no checkpoint of this run was written"):
        train(model, codes, w, TrainConfig(steps=20, batch_size=8, checkpoint_every=5, log_every=5),
              toy_info(codes, w), checkpoint_path=path)
    assert path.read_bytes() == b"an earlier run's model"


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


def test_checkpoint_of_an_unknown_model_kind_names_the_file(tmp_path):
    codes, w = toy_family()
    path = tmp_path / "m.pt"
    train(fresh_model(), codes, w, TrainConfig(steps=2, batch_size=4), toy_info(codes, w), checkpoint_path=path)
    payload = torch.load(path, weights_only=True)
    torch.save({**payload, "kind": "potts"}, path)
    with pytest.raises(CheckpointError, match=r"m\.pt: unknown model kind 'potts' \(known: vae, independent\)"):
        load_checkpoint(path)


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


def test_ema_decay_at_spans_the_later_part_of_the_run_by_ema_warmup():
    # The default (10) is TensorFlow's num_updates start: (1 + t) / (10 + t), capped by ema_decay.
    cfg = TrainConfig(ema_decay=0.998)
    assert ema_decay_at(1, cfg) == pytest.approx(2 / 11)
    assert ema_decay_at(100_000, cfg) == 0.998
    t = 3000
    for c in (4.0, 10.0):
        cfg = TrainConfig(ema_decay=0.99999, ema_warmup=c)  # the cap never binds before t
        d = [ema_decay_at(s, cfg) for s in range(1, t + 1)]
        # Weight of iterate s in the average after t steps: (1 - d_s) · prod_{r > s} d_r (the start: prod of all).
        w, tail = [0.0] * (t + 1), 1.0
        for s in range(t, 0, -1):
            w[s] = (1 - d[s - 1]) * tail
            tail *= d[s - 1]
        w[0] = tail
        assert sum(w) == pytest.approx(1.0)
        mean_age = sum(wi * (t - s) for s, wi in enumerate(w))
        assert mean_age == pytest.approx(t / c, rel=0.01)  # density ∝ s^(c - 2) on [0, t]: mean age t / c


def test_the_moving_average_takes_its_first_step_by_ema_warmup():
    codes, w = toy_family()
    base = dict(steps=1, batch_size=16, seed=5, log_every=1)
    start = fresh_model(seed=3).state_dict()
    for c in (4.0, 10.0):
        ck = train(fresh_model(seed=3), codes, w, TrainConfig(**base, ema_decay=0.998, ema_warmup=c),
                   toy_info(codes, w)).checkpoint
        keep = 2 / (c + 1)  # decay after step 1: (1 + 1) / (c + 1)
        moved = 0
        for name, p0 in start.items():
            if p0.is_floating_point():
                raw = ck.train_state[name]  # the weights after the one step
                torch.testing.assert_close(ck.state[name], keep * p0 + (1 - keep) * raw)
                moved += int(not torch.equal(raw, p0))
        assert moved > 0


def test_ema_warmup_must_keep_the_decay_below_one():
    with pytest.raises(ValueError, match="ema_warmup must be > 1"):
        TrainConfig(ema_warmup=1.0)


def test_fit_alignment_names_a_python_callers_mistakes():
    import numpy as np

    from deepseqvae.alignment import read_alignment
    from deepseqvae.errors import ConfigError
    from deepseqvae.train import fit_alignment
    from deepseqvae.weights import WeightsError, compute_weights

    from conftest import DEMO_A2M

    aln = read_alignment(DEMO_A2M)
    w = compute_weights(aln.codes, 0.2)
    cfg = VAEConfig(seq_len=aln.L, latent_dim=2, **TINY_VAE)
    tc = TrainConfig(steps=2, checkpoint_every=0)
    with pytest.raises(TypeError, match="alignment must be an Alignment .* not str"):
        fit_alignment(str(DEMO_A2M), w, cfg, tc, theta=0.2)
    with pytest.raises(TypeError, match="must be a VAEConfig and a TrainConfig .* not VAEConfig and dict"):
        fit_alignment(aln, w, cfg, {"steps": 2}, theta=0.2)
    with pytest.raises(WeightsError, match=rf"the weights given for .*demo.a2m: holds \({aln.N}, 1\) weights but "
                                           rf"the alignment has {aln.N} sequences"):
        fit_alignment(aln, w[:, None], cfg, tc, theta=0.2)
    # a NaN was "all sequence weights are zero", a negative or infinite one torch's "invalid multinomial distribution"
    for bad, shown in ((np.nan, "nan"), (-1.0, "-1.0"), (np.inf, "inf")):
        broken = w.copy()
        broken[5] = bad
        with pytest.raises(WeightsError, match=rf"demo.a2m: 1 weight\(s\) negative, NaN or infinite, the first of "
                                               rf"sequence 6 \({aln.ids[5]!r}\): {shown}$"):
            fit_alignment(aln, broken, cfg, tc, theta=0.2)
    with pytest.raises(ConfigError, match=r"VAEConfig.seq_len 50 is not the alignment's L = 60"):
        fit_alignment(aln, w, VAEConfig(seq_len=50, latent_dim=2, **TINY_VAE), tc, theta=0.2)
    with pytest.raises(WeightsError, match="theta must be strictly between 0 and 1"):
        fit_alignment(aln, w, cfg, tc, theta=5)
    if not torch.cuda.is_available():
        with pytest.raises(WeightsError, match="CUDA is not available"):
            fit_alignment(aln, w, cfg, tc, theta=0.2, device="cuda")
    # a list of weights and device "auto" are what a user passes: accepted
    res = fit_alignment(aln, list(w), cfg, tc, theta=0.2, device="auto")
    assert res.checkpoint.step == 2


@pytest.mark.parametrize("field,value", [("steps", 0), ("steps", -5), ("steps", 2.5), ("batch_size", 0),
                                         ("batch_size", True)])
def test_train_config_refuses_runs_that_train_nothing(field, value):
    with pytest.raises(ValueError, match=f"{field} must be a whole number >= 1, not {value!r}"):
        TrainConfig(**{field: value})
    import numpy as np

    # a numpy integer or a float such as 3000.0 (older checkpoints, JSON) is a whole number, kept as a plain int
    for whole in (np.int64(3), 3.0):
        kept = getattr(TrainConfig(**{field: whole}), field)
        assert kept == 3 and type(kept) is int


def test_vae_config_refuses_empty_layers():
    with pytest.raises(ValueError, match="latent_dim and every hidden width must be >= 1"):
        VAEConfig(seq_len=5, latent_dim=0)
    with pytest.raises(ValueError, match="latent_dim and every hidden width must be >= 1"):
        VAEConfig(seq_len=5, encoder_hidden=(16, 0))


def test_resume_check_allows_a_neff_summed_in_float32():
    from dataclasses import replace as dc_replace

    from deepseqvae.train import _check_same_data

    from conftest import toy_family

    codes, weights = toy_family()
    info = toy_info(codes, weights)
    ck = Checkpoint(kind="vae", model_config={}, state={}, info=info)
    aln = type("Aln", (), {"path": "toy.a2m"})()  # the message names its path only
    _check_same_data(ck, dc_replace(info, neff=info.neff * (1 + 1e-7)), aln)  # float32 rounding of the sum
    with pytest.raises(CheckpointError, match="toy.a2m gives N = 120, Neff"):
        _check_same_data(ck, dc_replace(info, neff=info.neff * 1.001), aln)


def test_memory_estimate_and_the_warning_before_training(monkeypatch, caplog):
    """Estimated peak = 512 MiB + bytes per parameter by way of running the refit (parameters counted by hand); a run
    that does not fit what is available is warned about before any work, with the ways that need less."""
    import logging

    import numpy as np

    import deepseqvae.train as train_mod
    from deepseqvae.alignment import read_alignment
    from deepseqvae.train import TRAIN_BYTES_PER_PARAMETER, fit_alignment, training_memory

    cfg = VAEConfig(seq_len=10, latent_dim=2, encoder_hidden=(8,), decoder_hidden=(4, 8), dictionary_size=0)
    n = sum(p.numel() for p in VAE(cfg).parameters())
    assert training_memory(cfg, "one run") == 2**29 + 40 * n
    assert training_memory(cfg, "refit beside") == 2**29 + TRAIN_BYTES_PER_PARAMETER["refit beside"] * n
    long = VAEConfig(seq_len=2000, latent_dim=10, encoder_hidden=(1500, 1500), decoder_hidden=(100, 500))
    assert 8.90 < training_memory(long, "refit beside") / 2**30 < 9.5  # measured: 8.90 GB (L = 2,000)

    from conftest import REPO_ROOT

    aln = read_alignment(REPO_ROOT / "alignments" / "demo.a2m")
    weights = np.ones(aln.N)
    small = VAEConfig(seq_len=aln.L, latent_dim=2, encoder_hidden=(8,), decoder_hidden=(4, 8), dictionary_size=0)
    tc = TrainConfig(steps=2, holdout_fraction=0.0, seed=1)
    monkeypatch.setattr(train_mod, "available_memory", lambda: 2**28)  # 0.25 GB left
    with caplog.at_level(logging.WARNING, logger="deepseqvae"):
        fit_alignment(aln, weights, small, tc, theta=0.2)
    assert ("training this model (L = 60, encoder (8,), decoder (4, 8)) needs about 0.5 GB (one run), more than "
            "the 0.2 GB available: narrower --encoder-hidden or --decoder-hidden need less") in caplog.text
    caplog.clear()
    monkeypatch.setattr(train_mod, "available_memory", lambda: 2**33)
    with caplog.at_level(logging.WARNING, logger="deepseqvae"):
        fit_alignment(aln, weights, small, tc, theta=0.2)
    assert "needs about" not in caplog.text
    caplog.clear()
    monkeypatch.setattr(train_mod, "available_memory", lambda: 7 * 2**30)
    with caplog.at_level(logging.WARNING, logger="deepseqvae"):
        train_mod.warn_if_memory_short(long, "refit beside", "x.a2m: ")
    assert ("x.a2m: training this model (L = 2000, encoder (1500, 1500), decoder (100, 500)) needs about 9.3 GB "
            "(refit beside), more than the 7.0 GB available: --refit-after about 6.9 GB; --no-refit about 5.8 GB; "
            "narrower") in caplog.text


def test_a_long_run_says_so_early(monkeypatch, caplog):
    """Projected from the pace of its first steps (PACE_STEPS steps and PACE_SECONDS seconds), a run longer than
    LONG_RUN_SECONDS warns once, with what shortens it; a short one does not."""
    import logging

    import deepseqvae.train as train_mod

    with caplog.at_level(logging.WARNING, logger="deepseqvae"):
        train_mod.warn_if_long(10, 30.0, 990)  # 3 s a step: 990 more take 49.5 min
    assert ("at 0.33 steps/s, the 990 steps left take up to about 50 min (early stopping may end the run sooner); "
            "fewer --steps, or a GPU (--device cuda), shorten it") in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="deepseqvae"):
        train_mod.warn_if_long(10, 30.0, 500)  # 25 min
    assert caplog.text == ""
    # in a run: with no time needed for the pace and any run "long", the warning comes once, after PACE_STEPS steps
    monkeypatch.setattr(train_mod, "PACE_SECONDS", 0.0)
    monkeypatch.setattr(train_mod, "LONG_RUN_SECONDS", 0.0)
    codes, weights = toy_family()
    cfg = VAEConfig(seq_len=codes.shape[1], latent_dim=2, **TINY_VAE)
    with caplog.at_level(logging.WARNING, logger="deepseqvae"):
        train(VAE(cfg), codes, weights, TrainConfig(steps=30, seed=0), toy_info(codes, weights))
    assert caplog.text.count("steps left take up to about") == 1 and "the 20 steps left" in caplog.text


@pytest.mark.parametrize("version", ["v2", "v1"])
def test_available_memory_is_the_least_room_under_the_process_groups_limits(tmp_path, version):
    """MemAvailable, lowered to the room under the limit of the process's control group or any above it (a SLURM
    job's group inside the host's), page cache that can be dropped counted as free; a group without a limit or
    out of sight (a container's parents) is passed over."""
    from deepseqvae.runtime import available_memory

    gib = 2**30
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/meminfo").write_text(f"MemTotal: {64 * gib // 1024} kB\nMemAvailable: {20 * gib // 1024} kB\n")
    assert available_memory(tmp_path) == 20 * gib  # no cgroup file: the machine's
    if version == "v2":
        base, limit, usage, inactive = tmp_path / "sys/fs/cgroup", "memory.max", "memory.current", "inactive_file"
        (tmp_path / "proc/self/cgroup").write_text("0::/slurm/job_7/step_0\n")
    else:
        base, limit, usage, inactive = (tmp_path / "sys/fs/cgroup/memory", "memory.limit_in_bytes",
                                        "memory.usage_in_bytes", "total_inactive_file")
        (tmp_path / "proc/self/cgroup").write_text("5:cpu,cpuacct:/slurm/job_7\n4:memory:/slurm/job_7/step_0\n")
    for folder, lim, used, cache in ((base / "slurm/job_7/step_0", None, 1, 0), (base / "slurm/job_7", 4, 3, 1),
                                     (base / "slurm", 12, 9, 0), (base, None, 30, 0)):
        folder.mkdir(parents=True, exist_ok=True)
        no_limit = "max" if version == "v2" else str(2**63 - 4096)
        (folder / limit).write_text(f"{lim * gib}\n" if lim else no_limit + "\n")
        (folder / usage).write_text(f"{used * gib}\n")
        (folder / "memory.stat").write_text(f"anon 5\n{inactive} {cache * gib}\nactive_file 7\n")
    # job_7: 4 GiB less (3 used - 1 cache) = 2; slurm: 12 - 9 = 3; the machine: 20
    assert available_memory(tmp_path) == 2 * gib
    (base / "slurm/job_7" / limit).write_text("max\n" if version == "v2" else no_limit)
    assert available_memory(tmp_path) == 3 * gib
    assert available_memory(tmp_path / "nowhere") is None  # not Linux


def test_a_models_start_leaves_the_callers_random_stream_and_threads_alone(tmp_path):
    # fit_alignment seeded torch's global generator and left it so (a notebook's torch.rand stream changed), and two
    # runs started on two threads at once could draw each other's initial weights
    from concurrent.futures import ThreadPoolExecutor

    from deepseqvae.train import initial_model

    cfg = VAEConfig(seq_len=8, latent_dim=2, **TINY_VAE)
    torch.manual_seed(123)
    expected = torch.rand(5)
    codes, w = toy_family()
    ck = train(initial_model(cfg, 1), codes, w, TrainConfig(steps=2, batch_size=8), toy_info(codes, w)).checkpoint
    torch.manual_seed(123)
    initial_model(cfg, 1)
    build_model(ck)  # a loaded model's initial draws (overwritten by its weights) too
    assert torch.equal(torch.rand(5), expected)
    alone = {seed: initial_model(cfg, seed).state_dict() for seed in (1, 2)}
    assert not all(torch.equal(alone[1][k], alone[2][k]) for k in alone[1])
    with ThreadPoolExecutor(2) as pool:
        for _ in range(10):
            states = list(pool.map(lambda s: (s, initial_model(cfg, s).state_dict()), (1, 2) * 4))
            for seed, state in states:
                assert all(torch.equal(state[k], alone[seed][k]) for k in state)
        # a checkpoint loaded on another thread meanwhile (its fork of the generator given back mid-start gave 47 of
        # 200 starts other weights)
        loads = pool.submit(lambda: [build_model(ck) for _ in range(40)])
        for _ in range(40):
            state = initial_model(cfg, 1).state_dict()
            assert all(torch.equal(state[k], alone[1][k]) for k in state)
        loads.result()
    # built on the CPU from its seeded generator whatever default device a notebook set
    torch.set_default_device("meta")
    try:
        state = initial_model(cfg, 1).state_dict()
        loaded = build_model(ck)
    finally:
        torch.set_default_device(None)
    assert all(v.device.type == "cpu" and torch.equal(v, alone[1][k]) for k, v in state.items())
    assert all(v.device.type == "cpu" for v in loaded.state_dict().values())
