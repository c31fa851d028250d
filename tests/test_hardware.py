"""The choice of reduced-precision products from the CPU's features (int8 weights, bf16 training)."""

import pytest
import torch

from deepseqvae import hardware
from deepseqvae.checkpoint import build_model, load_checkpoint
from deepseqvae.hardware import native_bf16_matmul, native_int8_matmul, resolve_matmul_dtype
from deepseqvae.model import VAE, VAEConfig
from deepseqvae.recipes import RECIPES
from deepseqvae.train import TrainConfig, train
from deepseqvae.weights import int8_matmul_available, resolve_kernel

from conftest import TINY_VAE, toy_family, toy_info

CPU = torch.device("cpu")
#: flag sets of real processors: AVX2 only (e.g. AMD EPYC Milan), AVX-512 with VNNI but no BF16
#: (Intel Cascade Lake), AVX-512 BF16 (AMD EPYC Genoa), AMX (Intel Sapphire Rapids)
MACHINES = {
    "avx2": ({}, False, False),
    "vnni": ({"avx512_vnni": True}, True, False),
    "genoa": ({"avx512_vnni": True, "avx512_bf16": True}, True, True),
    "amx": ({"amx_tile": True}, True, True),
}


@pytest.mark.parametrize("machine", MACHINES)
def test_native_products_follow_the_cpu_flags(monkeypatch, machine):
    flags, int8, bf16 = MACHINES[machine]
    monkeypatch.setattr(hardware, "cpu_flags", lambda: dict(flags))
    assert native_int8_matmul("cpu") is int8
    assert native_bf16_matmul(CPU) is bf16
    assert resolve_matmul_dtype("auto", CPU) == ("bfloat16" if bf16 else "float32")
    # the weights' "auto" kernel: int8 only where it is native (and exact)
    assert resolve_kernel("auto", CPU) == ("int8" if int8 and int8_matmul_available("cpu") else "float32")
    # explicit choices are kept whatever the machine
    assert resolve_matmul_dtype("float32", CPU) == "float32"
    assert resolve_matmul_dtype("bfloat16", CPU) == "bfloat16"


def test_other_devices_and_bad_names():
    assert not native_int8_matmul("cuda")
    assert not native_bf16_matmul(torch.device("meta"))
    with pytest.raises(ValueError, match="matmul_dtype must be one of auto, float32, bfloat16"):
        resolve_matmul_dtype("fp8", CPU)
    with pytest.raises(ValueError, match="matmul_dtype must be one of"):
        TrainConfig(matmul_dtype="half")


def test_the_fast_recipe_asks_for_native_products():
    assert RECIPES["fast"][1]["matmul_dtype"] == "auto"
    assert "matmul_dtype" not in RECIPES["paper"][1]  # DeepSequence's float32


def _model() -> VAE:
    torch.manual_seed(0)
    return VAE(VAEConfig(seq_len=8, **{**TINY_VAE, "latent_dim": 2}))


@pytest.mark.parametrize("bf16", [False, True])
def test_an_auto_run_records_and_resumes_with_the_precision_it_used(tmp_path, monkeypatch, bf16):
    codes, w = toy_family()
    monkeypatch.setattr(hardware, "cpu_flags", lambda: {"avx512_bf16": bf16})
    cfg = TrainConfig(steps=6, batch_size=8, log_every=3, checkpoint_every=0, matmul_dtype="auto")
    chosen = "bfloat16" if bf16 else "float32"
    path = tmp_path / "m.pt"
    auto = train(_model(), codes, w, cfg, toy_info(codes, w), checkpoint_path=path).checkpoint
    assert auto.train_config["matmul_dtype"] == chosen
    explicit = train(_model(), codes, w, TrainConfig(**{**cfg.__dict__, "matmul_dtype": chosen}),
                     toy_info(codes, w)).checkpoint
    assert all(torch.equal(auto.state[k], explicit.state[k]) for k in auto.state)
    # resumed on a machine that chooses the other way, the run keeps the precision it started with
    monkeypatch.setattr(hardware, "cpu_flags", lambda: {"avx512_bf16": not bf16})
    ck = load_checkpoint(path)
    longer = TrainConfig(**{**cfg.__dict__, "steps": 9})
    resumed = train(build_model(ck), codes, w, longer, toy_info(codes, w), resume=ck).checkpoint
    assert resumed.train_config["matmul_dtype"] == chosen
