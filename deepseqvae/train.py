"""Training loop: weighted minibatches, Adam, checkpoints, resume, NaN guard.

One readable loop. Batches of ``batch_size`` sequences are drawn with replacement with probability
proportional to the sequence weights (DeepSequence/EVE); there are no epochs. The loss is
``-mean ELBO + KL(q(θ)||p(θ)) / Neff`` (see :func:`deepseqvae.model.loss_terms`).
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from .checkpoint import Checkpoint, ModelInfo, save_checkpoint
from .errors import TrainingError
from .model import VAE, loss_terms

log = logging.getLogger(__name__)

STAT_NAMES = ("elbo", "log_px_z", "kl_z", "kl_theta")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; the defaults are DeepSequence's."""

    steps: int = 300_000            # total optimisation steps (the paper's 300,000)
    batch_size: int = 100           # sequences per step, drawn with replacement ∝ weight
    learning_rate: float = 1e-3     # Adam step size
    seed: int = 42                  # seeds model initialisation, batch sampling and all noise
    checkpoint_every: int = 10_000  # save a checkpoint every this many steps (0 = only at the end)
    log_every: int = 100            # average and record the loss terms every this many steps


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    checkpoint: Checkpoint          # final state (also written to disk when a path was given)
    seconds: float                  # wall time of this call
    steps_per_second: float         # over this call
    history: dict[str, list[float]] = field(default_factory=dict)


def make_generator(device: torch.device, seed: int) -> torch.Generator:
    """The one random-number generator of a training run (on the training device)."""
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


def _make_optimizer(model: VAE, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    # The fused kernel updates all ~50M parameters in one pass (CPU and CUDA).
    try:
        return torch.optim.Adam(model.parameters(), lr=cfg.learning_rate, fused=True)
    except (RuntimeError, TypeError):  # older torch or unsupported device
        return torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)


def train(
    model: VAE,
    codes: np.ndarray,
    weights: np.ndarray,
    cfg: TrainConfig,
    info: ModelInfo,
    *,
    device: torch.device | str = "cpu",
    checkpoint_path: str | os.PathLike | None = None,
    resume: Checkpoint | None = None,
    progress: bool = False,
) -> TrainResult:
    """Train ``model`` on int8 ``codes`` (N, L) with sequence ``weights`` (N,).

    ``resume`` continues from a checkpoint (model weights, optimizer, RNG state and step); a
    resumed CPU run ends with exactly the parameters of an uninterrupted one. Checkpoints are
    written atomically to ``checkpoint_path`` every ``cfg.checkpoint_every`` steps and at the end;
    a NaN/inf loss raises :class:`TrainingError` and leaves the last good checkpoint in place.
    """
    device = torch.device(device)
    if codes.shape[0] != weights.shape[0]:
        raise ValueError("codes and weights differ in length")
    neff = float(weights.sum())
    if not neff > 0:
        raise TrainingError("all sequence weights are zero; nothing to train on")
    model.to(device).train()
    data = torch.tensor(np.asarray(codes), dtype=torch.int8, device=device)  # (N, L) copy, stays compact
    probs = torch.as_tensor(weights, dtype=torch.float64, device=device) / neff  # (N,)
    optimizer = _make_optimizer(model, cfg, device)
    gen = make_generator(device, cfg.seed)
    step = 0
    history: dict[str, list[float]] = {"step": [], **{k: [] for k in STAT_NAMES}}
    if resume is not None:
        model.load_state_dict(resume.state)
        if resume.optimizer is not None:
            optimizer.load_state_dict(resume.optimizer)
        if resume.rng_state is not None:
            gen.set_state(resume.rng_state.to(gen.get_state().device))
        step = resume.step
        history = {k: list(v) for k, v in resume.history.items()} or history
        log.info("resuming at step %d", step)

    def snapshot() -> Checkpoint:
        return Checkpoint(kind="vae", model_config=asdict(model.cfg), state=model.state_dict(),
                          info=info, train_config=asdict(cfg), step=step,
                          optimizer=optimizer.state_dict(), rng_state=gen.get_state(),
                          history=history)

    start_step, t0 = step, time.perf_counter()
    running = torch.zeros(len(STAT_NAMES), device=device, dtype=torch.float64)
    bad_step = torch.full((), -1, device=device, dtype=torch.long)  # first non-finite step, on device
    n_running = 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, initial=step, unit="step", dynamic_ncols=True, leave=True)
    try:
        while step < cfg.steps:
            idx = torch.multinomial(probs, cfg.batch_size, replacement=True, generator=gen)  # (B,)
            loss, stats = loss_terms(model, data[idx], neff, generator=gen)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            # Record the first non-finite step without a host sync on every step.
            bad = ~torch.isfinite(loss.detach())
            bad_step = torch.where(bad & (bad_step < 0), torch.tensor(step, device=device), bad_step)
            running += torch.stack([stats[k] for k in STAT_NAMES]).double()
            n_running += 1
            at_log = step % cfg.log_every == 0 or step == cfg.steps
            at_ckpt = checkpoint_path is not None and cfg.checkpoint_every and step % cfg.checkpoint_every == 0
            if at_log or at_ckpt:
                first_bad = int(bad_step)
                if first_bad >= 0:
                    where = f"; the last good checkpoint is {checkpoint_path}" if checkpoint_path else ""
                    raise TrainingError(f"loss became {float(loss.detach()):.4g} at step {first_bad}{where}. "
                                        "Try a lower --learning-rate or check the alignment.")
                means = (running / n_running).tolist()
                history["step"].append(step)
                for k, v in zip(STAT_NAMES, means, strict=True):
                    history[k].append(v)
                running.zero_()
                n_running = 0
                if bar is not None:
                    rate = (step - start_step) / max(time.perf_counter() - t0, 1e-9)
                    bar.set_postfix_str(f"ELBO {means[0]:.2f} (logp {means[1]:.2f}, KLz {means[2]:.2f}, "
                                        f"KLθ/Neff {means[3]:.2f}) {rate:.1f} step/s", refresh=False)
                    bar.update(step - bar.n)
            if at_ckpt:
                save_checkpoint(snapshot(), checkpoint_path)
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t0
    final = snapshot()
    if checkpoint_path is not None:
        save_checkpoint(final, checkpoint_path)
    rate = (step - start_step) / seconds if seconds > 0 else math.nan
    return TrainResult(checkpoint=final, seconds=seconds, steps_per_second=rate, history=history)


def fit_alignment(
    alignment,
    weights: np.ndarray,
    model_cfg,
    train_cfg: TrainConfig,
    *,
    theta: float,
    device: torch.device | str = "cpu",
    checkpoint_path: str | os.PathLike | None = None,
    resume: Checkpoint | None = None,
    progress: bool = False,
) -> TrainResult:
    """Build a VAE for ``alignment`` (seeded by ``train_cfg.seed``) and train it.

    With ``resume``, the model configuration comes from the checkpoint, whose focus sequence must
    equal the alignment's.
    """
    from .errors import CheckpointError
    from .model import VAEConfig

    info = ModelInfo.from_alignment(alignment, weights, theta)
    if resume is not None:
        if resume.kind != "vae":
            raise CheckpointError("--resume needs a VAE checkpoint")
        if resume.info.focus_seq != alignment.focus_seq:
            raise CheckpointError("the checkpoint to resume was trained on a different focus sequence "
                                  f"({resume.info.focus_id}) than {alignment.path} ({alignment.focus_id})")
        model_cfg = VAEConfig(**resume.model_config)
    torch.manual_seed(train_cfg.seed)  # model initialisation; all later noise comes from the run's generator
    model = VAE(model_cfg)
    return train(model, alignment.codes, weights, train_cfg, info, device=device,
                 checkpoint_path=checkpoint_path, resume=resume, progress=progress)
