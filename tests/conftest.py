"""Shared pytest fixtures and the toy data every test file builds on.

* Toy families: :func:`toy_family` (two sub-families, learnable), :func:`ancestral_family` (mutated
  copies of a few ancestors, with fragments: non-trivial weights), and the 10-residue toy focus
  :data:`TOY_FOCUS` numbered :data:`TOY_POSITIONS` with :func:`toy_vae_checkpoint` on it.
* Tiny models: :data:`TINY_VAE` (VAEConfig sizes that train in milliseconds) and the session
  fixture ``demo_models``: a tiny 2-D VAE and the site-independent model of the demo family.

``shared_data`` is the real benchmark data folder ``../shared/data`` (relative to the repository
root). Tests that need it are marked ``@pytest.mark.integration``. When the folder is missing
they are skipped on a developer machine, but fail when the ``CI`` environment variable is set, so
that CI can never pass by silently skipping the real-data checks.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from deepseqvae.alphabet import ALPHABET, GAP_CODE
from deepseqvae.checkpoint import Checkpoint, ModelInfo
from deepseqvae.model import VAE, VAEConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
DEMO_A2M = REPO_ROOT / "alignments" / "demo.a2m"

#: VAE sizes that train in milliseconds (seq_len and latent_dim given per test)
TINY_VAE = dict(encoder_hidden=(16,), decoder_hidden=(8, 16), dictionary_size=4, sparsity_tiles=4)

#: a 10-residue toy focus sequence numbered 5..14
TOY_FOCUS = "MKTAYIAKQR"
TOY_POSITIONS = list(range(5, 15))
TOY_WT = np.array([ALPHABET.index(a) for a in TOY_FOCUS], dtype=np.int8)


def require_shared_data(*parts: str) -> Path:
    """Path of ``../shared/data/<parts>``; skip (or fail under ``CI``) when it does not exist."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        msg = f"benchmark data not found: {path}"
        if os.environ.get("CI"):
            pytest.fail(f"{msg} (CI is set, so missing data is a failure)")
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Run the suite's tiny models on one thread.

    Their matrices are too small to gain from a second thread, and on the 2-core CI machine two
    threads per process slow a busy machine down many times over (the README example: 5 s on one
    thread, 55 s on two while other jobs ran).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real benchmark data folder ``../shared/data`` (skip or, under CI, fail when missing)."""
    return require_shared_data()


# --- toy families ---------------------------------------------------------------------------------


def write_truncated_gzip(path: Path, text: str) -> Path:
    """``text`` gzip-compressed with its second half cut off, written to ``path`` (a damaged download)."""
    import gzip

    whole = gzip.compress(text.encode())
    path.write_bytes(whole[: len(whole) // 2])
    return path


def toy_family(n: int = 120, L: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two conserved sub-families: a learnable toy alignment (int8 codes (n, L)) with uniform weights."""
    rng = np.random.default_rng(seed)
    centres = rng.integers(0, 20, size=(2, L))
    codes = centres[rng.integers(0, 2, n)]
    noise = rng.random((n, L)) < 0.1
    codes = np.where(noise, rng.integers(0, 20, (n, L)), codes).astype(np.int8)
    return codes, np.ones(n)


def toy_info(codes: np.ndarray, weights: np.ndarray) -> ModelInfo:
    """The checkpoint record of a model trained on a :func:`toy_family`."""
    return ModelInfo(focus_id="toy", focus_seq="ACDEFGHI"[: codes.shape[1]],
                     positions=list(range(1, codes.shape[1] + 1)), n_seqs=len(codes),
                     neff=float(weights.sum()), theta=0.2)


def ancestral_family(n: int, length: int, n_ancestors: int, rate: float, seed: int) -> np.ndarray:
    """Mutated copies of a few ancestors (with some gaps): non-trivial neighbour counts, (n, length) int8."""
    rng = np.random.default_rng(seed)
    anc = rng.integers(0, 20, size=(n_ancestors, length))
    codes = anc[rng.integers(0, n_ancestors, size=n)]
    mutate = rng.random((n, length)) < rate
    codes = np.where(mutate, rng.integers(0, 21, size=(n, length)), codes)
    codes[rng.random(n) < 0.1, : length // 3] = GAP_CODE  # fragments
    return codes.astype(np.int8)


# --- tiny models ----------------------------------------------------------------------------------


def toy_vae_checkpoint(seed: int = 0, latent_dim: int = 3, **kw) -> tuple[Checkpoint, VAE]:
    """An untrained tiny VAE on :data:`TOY_FOCUS` (seeded) and its checkpoint."""
    torch.manual_seed(seed)
    cfg = VAEConfig(seq_len=len(TOY_FOCUS), latent_dim=latent_dim, **{**TINY_VAE, **kw})
    model = VAE(cfg)
    info = ModelInfo(focus_id="TOY/5-14", focus_seq=TOY_FOCUS, positions=TOY_POSITIONS, n_seqs=10, neff=5.0,
                     theta=0.2)
    return Checkpoint(kind="vae", model_config=asdict(cfg), state=model.state_dict(), info=info), model


@pytest.fixture(scope="session")
def demo_models(tmp_path_factory) -> dict[str, Path]:
    """A tiny VAE (D = 2, 20 steps) and the independent baseline, both trained on the demo family."""
    from deepseqvae.pipeline import train_file

    d = tmp_path_factory.mktemp("demo_models")
    vae, ind = d / "vae.pt", d / "ind.pt"
    train_file(DEMO_A2M, vae, model_options=dict(encoder_hidden=(32,), latent_dim=2, decoder_hidden=(16, 32),
                                                 dictionary_size=4, sparsity_tiles=4),
               train_options=dict(steps=20, batch_size=50, checkpoint_every=0, log_every=10), device="cpu")
    train_file(DEMO_A2M, ind, model_kind="independent", device="cpu")
    return {"vae": vae, "independent": ind, "dir": d}
