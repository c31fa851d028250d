"""Training loop: weighted minibatches, Adam, checkpoints, resume, NaN guard.

One readable loop. Batches of ``batch_size`` sequences are drawn with replacement with probability
proportional to the sequence weights (DeepSequence/EVE); there are no epochs. The loss is
``-mean ELBO + KL(q(θ)||p(θ)) / Neff`` (see :func:`deepseqvae.model.loss_terms`).
"""

from __future__ import annotations

import copy
import functools
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch

from .alignment import Alignment
from .alphabet import N_AA
from .checkpoint import Checkpoint, ModelInfo, model_kind, save_checkpoint
from .errors import TrainingError
from .hardware import MATMUL_DTYPES, resolve_matmul_dtype
from .holdout import cluster_holdout_split, heldout_sample, holdout_split
from .model import VAE, VAEConfig, loss_terms
from .optim import DeepSequenceAdam, delayed_factor, lr_factor
from .pace import RefitAbandoned, RefitPace
from .runtime import MODEL_INIT_LOCK, available_memory, flush_subnormals, whole_number
from .weights import resolve_device

log = logging.getLogger(__name__)

STAT_NAMES = ("elbo", "log_px_z", "kl_z", "kl_theta")
#: early stopping's held-out criteria (``TrainConfig.stop_on``), recorded as ``history['heldout_<name>']``
STOP_CRITERIA = ("iwll", "iwll_mean")
#: how a held-out set is drawn (``TrainConfig.holdout_by``, :func:`run_holdout_split`)
HOLDOUT_KINDS = ("cluster", "weight", "sequence")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings. The field defaults are DeepSequence's loop with torch's Adam;
    the named recipes (:data:`RECIPES`, :func:`recipe_config`) are what ``deepseqvae train`` uses."""

    steps: int = 300_000            # total optimisation steps (the paper's 300,000)
    batch_size: int = 100           # sequences per step, drawn with replacement ∝ weight
    learning_rate: float = 1e-3     # base Adam step size of every parameter outside the variance group
    seed: int = 42                  # seeds model initialisation, batch sampling and all noise
    checkpoint_every: int = 10_000  # save a checkpoint every this many steps (0 = only at the end)
    log_every: int = 100            # average and record the loss terms every this many steps
    recipe: str = "custom"          # name of the recipe these settings came from (for the record)
    optimizer: str = "adam"         # "adam" (torch) or "deepsequence" (DeepSequence's frozen-t Adam)
    schedule: str = "constant"      # "constant" or "cosine": linear warm-up, then cosine decay
    warmup_steps: int = 0           # linear warm-up steps of the cosine schedule
    final_lr_fraction: float = 0.0  # the cosine schedule ends at this fraction of each group's step size
    decay_fraction: float = 1.0     # cosine: decay over this last fraction of the post-warm-up steps (constant before)
    variance_lr: float | None = None  # step size of the variance group (decoder log σ, scale logits); None = base
    variance_delay: int = 0         # the variance group is frozen for this many first steps
    bias_lr: float | None = None    # step size of the output bias's posterior mean (its own group); None = base
    encoder_weight_decay: float = 0.0  # > 0: decoupled (AdamW) weight decay of the encoder's weight matrices, each
    #                                 step w ← w·(1 − lr·this); the encoder is the one unregularised part of the
    #                                 objective (optimizer "adam" only; 0 = none, DeepSequence's)
    kl_neff_floor: float | None = None  # divide KL(q(θ)||p(θ)) by max(Neff, this) instead of Neff (None: by Neff;
    #                                 1,000 generalised worse: benchmarks/results/recipes-kl-floor-2026-12-01.md)
    local_reparam: bool = False     # integrate the output weights out per sequence (same expected ELBO, lower variance)
    matmul_dtype: str = "float32"   # decoder's large products in training and in the held-out evaluations:
    #                                 "bfloat16" rounds their inputs (sums, weights stay fp32; scoring is fp32);
    #                                 "auto": bfloat16 where the device runs it natively, else float32
    #                                 (hardware.resolve_matmul_dtype; a run records what it used)
    encoder_products: bool = False  # the encoder's hidden products (1500-1500) in matmul_dtype too (the gather-sum
    #                                 first layer and the heads stay fp32); off: fp32 encoder. The fast recipe
    #                                 turns it on from Neff (fast_encoder_products)
    compile_kernels: bool = True    # sample + KL of the largest decoder weights as compiled loops (eager fallback)
    ema_decay: float = 0.0          # > 0: keep an exponential moving average of the weights and score with it
    ema_warmup: float = 10.0        # the average's decay at step t is min(ema_decay, (1 + t) / (ema_warmup + t))
    #                                 (ema_decay_at): until ema_decay caps it, step s weighs ∝ s^(ema_warmup − 2)
    #                                 and the average's mean age is ~t / ema_warmup (10: the last tenth of the run)
    holdout_fraction: float = 0.0   # fraction of sequences held out to measure the held-out ELBO (0 = train on all)
    holdout_by: str = "cluster"     # "cluster": whole 80 %-identity neighbourhoods until holdout_fraction of the rows;
    #                                 "weight": the same until holdout_fraction of the total weight (Neff); "sequence"
    eval_every: int = 1000          # held-out ELBO every this many steps (with holdout_fraction > 0)
    early_stopping: int = 0         # > 0 with held-out data: stop after this many evaluations without a better
    #                                 held-out importance-weighted log-likelihood, and score with the best weights
    eval_samples: int = 4           # decoder-weight samples of each held-out ELBO estimate
    eval_rows: int = 0              # > 0: estimate on a fixed sample of at most this many held-out sequences, drawn
    #                                 in proportion to their weights (heldout_sample); 0 = every held-out sequence
    stop_on: str = "iwll"           # early stopping's criterion: "iwll" (θ sampled from q(θ)) or "iwll_mean" (the
    #                                 decoder at its posterior means: the fit without θ's sampling noise)
    init_bias: str = "constant"     # output-bias start: "constant" (DeepSequence's 0.1) or "profile": the training
    #                                 sequences' weighted log-frequencies per column (the site-independent model)
    profile_pseudocount: float = 1.0  # init_bias="profile": effective sequences added to each residue's count
    refit: bool = False             # with held-out data: then train again from the same start on every sequence,
    #                                 up to the step early stopping kept, and keep that model (fit_alignment)
    stop_step: int | None = None    # end the run at this step (None: at steps); the schedule still spans steps

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size"):  # 0 steps would return an untrained model
            # a plain int: a numpy integer in train_config would make the checkpoint unreadable (weights_only), and
            # older checkpoints and JSON configs may hold 3000.0
            object.__setattr__(self, name, whole_number(name, getattr(self, name), 1, integral_floats=True))
        if self.optimizer not in ("adam", "deepsequence"):
            raise ValueError(f"optimizer must be 'adam' or 'deepsequence', not {self.optimizer!r}")
        if self.schedule not in ("constant", "cosine"):
            raise ValueError(f"schedule must be 'constant' or 'cosine', not {self.schedule!r}")
        if self.matmul_dtype not in MATMUL_DTYPES:
            raise ValueError(f"matmul_dtype must be one of {', '.join(MATMUL_DTYPES)}, not {self.matmul_dtype!r}")
        if self.stop_on not in STOP_CRITERIA:
            raise ValueError(f"stop_on must be one of {', '.join(STOP_CRITERIA)}, not {self.stop_on!r}")
        if self.early_stopping < 0:
            raise ValueError("early_stopping must be >= 0")
        if self.eval_rows < 0:
            raise ValueError("eval_rows must be >= 0 (0 = every held-out sequence)")
        if not 0.0 < self.decay_fraction <= 1.0:
            raise ValueError("decay_fraction must lie in (0, 1]")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError("ema_decay must lie in [0, 1)")
        if not self.ema_warmup > 1.0:
            raise ValueError("ema_warmup must be > 1 (the average's decay (1 + t) / (ema_warmup + t) must be < 1)")
        if self.holdout_by not in HOLDOUT_KINDS:
            raise ValueError(f"holdout_by must be one of {', '.join(HOLDOUT_KINDS)}, not {self.holdout_by!r}")
        if not 0.0 <= self.holdout_fraction < 1.0:
            raise ValueError("holdout_fraction must lie in [0, 1)")
        if self.init_bias not in ("constant", "profile"):
            raise ValueError(f"init_bias must be 'constant' or 'profile', not {self.init_bias!r}")
        if self.bias_lr is not None and not self.bias_lr > 0:
            raise ValueError("bias_lr must be > 0 (or None: the learning rate)")
        if not self.encoder_weight_decay >= 0:
            raise ValueError("encoder_weight_decay must be >= 0 (0 = none)")
        if self.encoder_weight_decay and self.optimizer != "adam":
            raise ValueError("encoder_weight_decay needs optimizer 'adam' (decoupled weight decay, AdamW)")
        if self.kl_neff_floor is not None and not self.kl_neff_floor > 0:
            raise ValueError("kl_neff_floor must be > 0 (or None: divide by Neff)")
        if self.stop_step is not None and not 0 < self.stop_step <= self.steps:
            raise ValueError(f"stop_step must lie in [1, steps = {self.steps}], not {self.stop_step}")
        if not self.profile_pseudocount > 0:
            raise ValueError("profile_pseudocount must be > 0 (a zero count would give a log of zero)")


#: default pseudocount (effective sequences per residue) of the profile that ``init_bias='profile'`` starts the
#: output bias at (``TrainConfig.profile_pseudocount``)
PROFILE_PSEUDOCOUNT = TrainConfig.profile_pseudocount


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    checkpoint: Checkpoint          # final state (also written to disk when a path was given)
    seconds: float                  # wall time of this call
    steps_per_second: float         # steps_run / seconds
    steps_run: int = 0              # optimisation steps this call ran (with a refit: both runs')
    history: dict[str, list[float]] = field(default_factory=dict)
    refit_beside: bool = False      # the refit trained beside the held-out run, on a second thread
    heldout: tuple[int, float, float] | None = None  # held-out rows, their share of the rows or weight, and the
    #                                                  split's seconds (fit_alignment)


def make_generator(device: torch.device, seed: int) -> torch.Generator:
    """The one random-number generator of a training run (on the training device)."""
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


def variance_group(model: VAE) -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
    """(variance group, the rest): the decoder's posterior log σ's and sparsity-logit means form
    the variance group, whose step size the recipes set apart (they travel far from their start:
    log σ from −5 to ~0 for unused weights, scale logits from 0 to −6…−12)."""
    special: list[torch.nn.Parameter] = []
    if model.decoder.bayesian:
        special += list(model.decoder.log_sigma.parameters())
    if "scale_logit" in model.decoder.mu:
        special.append(model.decoder.mu["scale_logit"])
    ids = {id(p) for p in special}
    return special, [p for p in model.parameters() if id(p) not in ids]


def _base_lr(cfg: TrainConfig, group: str) -> float:
    """The unscheduled step size of parameter group ``group`` ("main", "variance" or "bias")."""
    own = {"variance": cfg.variance_lr, "bias": cfg.bias_lr}.get(group)
    return own if own is not None else cfg.learning_rate


def _make_optimizer(model: VAE, cfg: TrainConfig) -> torch.optim.Optimizer:
    special, rest = variance_group(model)
    groups = [{"params": rest, "name": "main"}] + ([{"params": special, "name": "variance"}] if special else [])
    bias = model.decoder.mu.get("b_out", None)
    if cfg.bias_lr is not None and bias is not None:
        # Its own group only when asked for, so the optimiser state of earlier runs still loads. The output
        # bias's mean holds the columns' log-odds and Adam moves it by about its step size per step. Off in
        # both recipes: 10x made no held-out difference (benchmarks/results/recipes-bias-lr-2026-12-01.md).
        groups[0]["params"] = [p for p in rest if p is not bias]
        groups.append({"params": [bias], "name": "bias"})
    if cfg.encoder_weight_decay:
        # the encoder's weight matrices in their own group, the only one that decays (biases do not)
        decayed = [p for p in model.encoder.parameters() if p.dim() >= 2]
        ids = {id(p) for p in decayed}
        groups[0]["params"] = [p for p in groups[0]["params"] if id(p) not in ids]
        groups.append({"params": decayed, "name": "encoder", "weight_decay": cfg.encoder_weight_decay})
    for g in groups:
        g["lr"] = g["base_lr"] = _base_lr(cfg, g["name"])
    if cfg.optimizer == "deepsequence":
        return DeepSequenceAdam(groups, lr=cfg.learning_rate)
    # AdamW only with a decay: the groups without one get weight_decay 0, the same update as Adam's. The fused
    # kernel updates all parameters in one pass (CPU and CUDA).
    kind, kw = (torch.optim.AdamW, {"weight_decay": 0.0}) if cfg.encoder_weight_decay else (torch.optim.Adam, {})
    try:
        return kind(groups, lr=cfg.learning_rate, fused=True, **kw)
    except (RuntimeError, TypeError):  # older torch or unsupported device
        return kind(groups, lr=cfg.learning_rate, **kw)


def ema_decay_at(step: int, cfg: TrainConfig) -> float:
    """Decay of the weights' moving average after optimizer step ``step`` (1-based): min(ema_decay,
    (1 + step) / (ema_warmup + step)). The second term (TensorFlow's ``num_updates`` start) keeps the average off the
    random start: while it is the smaller, iterate s enters with weight ∝ s^(ema_warmup − 2) (a polynomial-decay
    average), so the average spans the later part of the run, its mean age ~step / ema_warmup."""
    return min(cfg.ema_decay, (1.0 + step) / (cfg.ema_warmup + step))


def _set_step_sizes(optimizer: torch.optim.Optimizer, cfg: TrainConfig, step: int) -> None:
    """Step sizes for optimisation step ``step`` (1-based) from the schedule and the variance delay."""
    for g in optimizer.param_groups:
        if cfg.schedule == "cosine":
            delay = cfg.variance_delay if g["name"] == "variance" else 0
            factor = delayed_factor(step, cfg.steps, delay, cfg.warmup_steps, cfg.final_lr_fraction,
                                    cfg.decay_fraction)
        else:
            factor = 0.0 if (g["name"] == "variance" and step <= cfg.variance_delay) else 1.0
        g["lr"] = g["base_lr"] * factor


def _run_matmul_dtype(cfg: TrainConfig, device: torch.device, resume: Checkpoint | None) -> str:
    """The decoder-product precision a run uses: ``cfg.matmul_dtype`` when explicit; for "auto", a resumed
    run's recorded choice (it continues the same arithmetic) or else what ``device`` runs natively."""
    if cfg.matmul_dtype != "auto":
        return cfg.matmul_dtype
    recorded = (resume.train_config or {}).get("matmul_dtype") if resume is not None else None
    if recorded is not None and recorded != "auto":  # a run always records a concrete precision
        return recorded
    chosen = resolve_matmul_dtype("auto", device)
    log.info("decoder products in %s (%s)", chosen, "native on this device" if chosen == "bfloat16"
             else "no native bfloat16 products on this device")
    return chosen


@torch.no_grad()
def heldout_estimates(model: VAE, codes: torch.Tensor, weights: torch.Tensor, n_samples: int,
                      generator: torch.Generator, batch_size: int = 1024, sample_theta: bool = True,
                      matmul_dtype: torch.dtype | None = None) -> dict[str, float]:
    """Weighted means over held-out sequences ``codes`` (M, L) with weights (M,) of two label-free
    criteria, from the same ``n_samples`` joint draws (decoder weights θ_k shared by all
    sequences, one latent z_k per sequence):

    - ``elbo``: the mean over k of log p(x|z_k, θ_k) − KL(q(z|x) || p(z)), the objective itself;
    - ``iwll``: log (1/K) Σ_k p(x|z_k, θ_k) p(z_k) / q(z_k|x), the importance-weighted estimate
      of the held-out log-likelihood under the posterior predictive (Burda et al. 2016). Unlike the
      mean ELBO it does not charge a broad q(θ) its full Jensen gap, so it compares recipes that
      end with narrow and with wide decoder posteriors on an equal footing.
    Higher is better for both. With ``sample_theta=False`` every draw uses the decoder's posterior
    means (only z is drawn): the held-out fit of the mean decoder, free of θ's sampling noise.
    ``matmul_dtype`` (e.g. bfloat16) rounds the inputs of the decoder's output product, the bulk of an
    evaluation's work (float32 accumulation; log-softmax and the sums stay float32); None: float32.
    """
    was_training = model.training
    model.eval()
    elbo = torch.zeros(codes.shape[0], dtype=torch.float64, device=codes.device)
    log_w = torch.empty((n_samples, codes.shape[0]), dtype=torch.float64, device=codes.device)
    # the encoder is deterministic: its outputs once, (M, D) each, reused by every draw
    enc = [model.encoder(codes[start:start + batch_size]) for start in range(0, codes.shape[0], batch_size)]
    w = w_out = None
    for k in range(n_samples):
        if sample_theta or w is None:  # the means draw no noise: one output matrix serves every k
            w = model.decoder.draw(sample=sample_theta, generator=generator)
            w_out = model.decoder.output_weight(w)  # (H, 20L), once per draw, shared by the batches
            if matmul_dtype is not None:
                w_out = w_out.to(matmul_dtype)  # rounded once per draw, not once per batch
        for b, start in enumerate(range(0, codes.shape[0], batch_size)):
            x = codes[start:start + batch_size]
            mu, log_sigma = enc[b]  # (B, D) each
            eps = torch.randn(mu.shape, device=mu.device, dtype=mu.dtype, generator=generator)
            z = mu + torch.exp(log_sigma) * eps
            log_px = model.log_likelihood(model.decoder(z, w, w_out, matmul_dtype=matmul_dtype), x).double()  # (B,)
            # log p(z) − log q(z|x) for z = mu + σ·eps; the 2π constants cancel
            log_ratio = (0.5 * (eps**2 - z**2) + log_sigma).sum(-1).double()
            elbo[start:start + x.shape[0]] += log_px - model.latent_kl(mu, log_sigma).double()
            log_w[k, start:start + x.shape[0]] = log_px + log_ratio
    model.train(was_training)
    iw = torch.logsumexp(log_w, dim=0) - math.log(n_samples)  # (M,)
    total = weights.sum()
    return {"elbo": float((elbo / n_samples * weights).sum() / total),
            "iwll": float((iw * weights).sum() / total)}


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
    heldout: tuple[np.ndarray, np.ndarray] | None = None,
    on_eval: Callable[[int, VAE], None] | None = None,
    report_to: RefitPace | None = None,
    follow: RefitPace | None = None,
    label: str | None = None,
    evaluate_beside: bool = False,
) -> TrainResult:
    """Train ``model`` on int8 ``codes`` (N, L) with sequence ``weights`` (N,).

    ``resume`` continues from a checkpoint (model weights, optimizer, averaged weights, RNG state
    and step); a resumed CPU run ends with exactly the parameters of an uninterrupted one.
    Checkpoints are written atomically to ``checkpoint_path`` every ``cfg.checkpoint_every`` steps
    and at the end; a NaN/inf loss raises :class:`TrainingError` and leaves the last good
    checkpoint in place. ``heldout`` = (codes (M, L), weights (M,)) of sequences kept out of
    training: their ELBO and importance-weighted log-likelihood are recorded every ``cfg.eval_every``
    steps (``history['heldout_elbo']``, ``history['heldout_iwll']``).
    With ``cfg.ema_decay`` the checkpoint's weights are the moving average (what scoring uses)
    and the raw weights travel in ``Checkpoint.train_state`` for resuming. ``on_eval(step, model)``
    is called every ``cfg.eval_every`` steps with the model holding the weights scoring would use
    (benchmarks follow accuracy along a run with it; it must not change the model).

    A refit running beside a held-out run on another thread (:mod:`deepseqvae.pace`): the held-out
    run passes ``report_to`` and reports each evaluation to it; the refit passes ``follow``, waits at
    each evaluation step for the held-out run's verdict and ends at the step it chose, returning the
    checkpoint of that step (as a run with ``stop_step`` at it would). ``label`` names the progress bar.
    With ``evaluate_beside`` (and no ``on_eval``) the held-out estimates run on a worker thread while
    training goes on: the same values and best weights, early stopping up to an evaluation interval later.
    """
    device = resolve_device(device)
    cfg = replace(cfg, matmul_dtype=_run_matmul_dtype(cfg, device, resume))  # the checkpoint records the one used
    if codes.shape[0] != weights.shape[0]:
        raise ValueError("codes and weights differ in length")
    neff = float(weights.sum())
    if not neff > 0:
        raise TrainingError("all sequence weights are zero; nothing to train on")
    model.to(device).train()
    data = torch.tensor(np.asarray(codes), dtype=torch.int8, device=device)  # (N, L) copy, stays compact
    probs = torch.as_tensor(weights, dtype=torch.float64, device=device) / neff  # (N,)
    # KL(θ) is shared by the whole family, so the per-sequence objective carries KL(θ)/Neff; a floor tempers the
    # weight prior of families with few effective sequences (a change to DeepSequence's objective, off by default)
    kl_neff = neff if cfg.kl_neff_floor is None else max(neff, cfg.kl_neff_floor)
    if resume is None and cfg.init_bias == "profile":
        init_output_bias(model, data, torch.as_tensor(weights, dtype=torch.float64, device=device),
                         pseudocount=cfg.profile_pseudocount)
    optimizer = _make_optimizer(model, cfg)
    gen = make_generator(device, cfg.seed)
    step = 0
    history: dict[str, list[float]] = {"step": [], **{k: [] for k in STAT_NAMES}}
    params = list(model.parameters())
    params_data = [p.detach() for p in params]  # views of the weights, made once for the moving average
    ema: list[torch.Tensor] | None = [p.detach().clone() for p in params] if cfg.ema_decay > 0 else None
    if resume is not None:
        model.load_state_dict(resume.train_state if resume.train_state is not None else resume.state)
        if resume.optimizer is not None:
            optimizer.load_state_dict(resume.optimizer)
            for g in optimizer.param_groups:  # the recipe's base step sizes, not the last scheduled ones
                g["base_lr"] = _base_lr(cfg, g["name"])
        if ema is not None and resume.train_state is not None:
            names = [n for n, _ in model.named_parameters()]
            average = resume.average_state if resume.average_state is not None else resume.state
            ema = [average[n].to(device).clone() for n in names]
        if resume.rng_state is not None:
            gen.set_state(resume.rng_state.to(gen.get_state().device))
        step = resume.step
        history = {k: list(v) for k, v in resume.history.items()} or history
        log.info("resuming at step %d", step)
    held = None
    if heldout is not None and heldout[0].shape[0] > 0:
        held_codes, held_weights = np.asarray(heldout[0]), np.asarray(heldout[1], dtype=np.float64)
        if cfg.eval_rows and held_codes.shape[0] > cfg.eval_rows:
            # a large family's held-out set costs more to evaluate than the training between evaluations
            rows, counts = heldout_sample(held_weights, cfg.eval_rows, cfg.seed)
            log.info("held-out estimates on %d of the %d held-out sequences (a weight-proportional sample)",
                     len(rows), held_codes.shape[0])
            held_codes, held_weights = held_codes[rows], counts.astype(np.float64)
        held = (torch.tensor(held_codes, dtype=torch.int8, device=device),
                torch.as_tensor(held_weights, dtype=torch.float64, device=device))
        history.setdefault("eval_step", [])
        history.setdefault("heldout_elbo", [])
        history.setdefault("heldout_iwll", [])
        if cfg.stop_on == "iwll_mean":
            history.setdefault("heldout_iwll_mean", [])
    eval_gen = make_generator(device, cfg.seed + 1)  # held-out noise never perturbs the training stream
    mean_gen = make_generator(device, cfg.seed + 2)  # the mean decoder's draws of z: nor the sampled estimate's
    if resume is not None and resume.eval_rng_state is not None:  # (older checkpoints: draws started anew)
        for g, state in zip((eval_gen, mean_gen), resume.eval_rng_state, strict=True):
            g.set_state(state.to(g.get_state().device))
    # Early stopping: the best held-out snapshot so far and the evaluations since it (restored on resume,
    # where the checkpoint's scoring state is that snapshot).
    best_state: dict[str, torch.Tensor] | None = None
    n_worse = 0
    if cfg.early_stopping and history.get("best_step"):
        best_state = {k: v.to(device) for k, v in resume.state.items()}
        n_worse = _evaluations_since_best(history)
    stopped = bool(cfg.early_stopping) and n_worse >= cfg.early_stopping
    if report_to is not None and history.get("best_step"):  # resumed: what the refit beside it may use already
        report_to.report(history["eval_step"][-1], history["best_step"][-1], stopped)
    local = cfg.local_reparam and model.decoder.bayesian
    mm_dtype = torch.bfloat16 if cfg.matmul_dtype == "bfloat16" else None
    enc_dtype = mm_dtype if cfg.encoder_products else None

    def scoring_state() -> dict[str, torch.Tensor]:
        """The weights scoring uses: the moving average when there is one, else the raw weights."""
        if ema is None:
            return model.state_dict()
        state = dict(model.state_dict())
        for (name, _), e in zip(model.named_parameters(), ema, strict=True):
            state[name] = e
        return state

    def scoring_copy() -> dict[str, torch.Tensor]:
        """A copy of the scoring weights (training goes on changing them in place)."""
        return {k: v.detach().clone() for k, v in scoring_state().items()}

    def snapshot() -> Checkpoint:
        current = scoring_state()
        if best_state is None:
            state, average, raw = current, None, None if ema is None else model.state_dict()
        else:  # score with the best held-out snapshot; keep what training needs to go on
            state, average, raw = best_state, None if ema is None else current, model.state_dict()
        return Checkpoint(kind="vae", model_config=asdict(model.cfg), state=state,
                          info=info, train_config=asdict(cfg), step=step,
                          optimizer=optimizer.state_dict(), rng_state=gen.get_state(),
                          history=history, train_state=raw, average_state=average,
                          eval_rng_state=[eval_gen.get_state(), mean_gen.get_state()])

    def estimates(m: VAE) -> dict[str, float]:
        """The held-out estimates of ``m`` (holding the scoring weights), in the order of the run's evaluations."""
        # the output product in the run's precision: bfloat16 where the training products are
        # (benchmarks/results/eval-precision-2026-12-03.md: the same kept step on every screened run)
        value = heldout_estimates(m, held[0], held[1], cfg.eval_samples, eval_gen, matmul_dtype=mm_dtype)
        if cfg.stop_on == "iwll_mean":  # one more pass, only where it is the criterion
            value["iwll_mean"] = heldout_estimates(m, held[0], held[1], cfg.eval_samples, mean_gen,
                                                   sample_theta=False, matmul_dtype=mm_dtype)["iwll"]
        return value

    def record(at: int, value: dict[str, float], state_at: Callable[[], dict[str, torch.Tensor]]) -> None:
        """Record step ``at``'s held-out ``value`` and apply early stopping (``state_at()``: its scoring weights)."""
        nonlocal best_state, n_worse, stopped
        history["eval_step"].append(at)
        history["heldout_elbo"].append(value["elbo"])
        history["heldout_iwll"].append(value["iwll"])
        log.info("step %d: held-out ELBO %.3f, importance-weighted log-likelihood %.3f", at,
                 value["elbo"], value["iwll"])
        if "iwll_mean" in value:
            history["heldout_iwll_mean"].append(value["iwll_mean"])
            log.info("step %d: held-out IWLL of the decoder at its means %.3f", at, value["iwll_mean"])
        if not cfg.early_stopping:
            return
        current = value[cfg.stop_on]
        if not history.get("best_iwll") or current > history["best_iwll"][-1]:
            best_state = state_at()
            history["best_step"], history["best_iwll"] = [at], [current]
            n_worse = 0
        else:
            n_worse += 1
        if n_worse >= cfg.early_stopping:
            stopped = True
            log.info("stopping at step %d: no better held-out log-likelihood in %d evaluations; "
                     "keeping step %d's weights", at, n_worse, history["best_step"][-1])
        if report_to is not None:
            report_to.report(at, history["best_step"][-1], stopped or at == end)

    # Held-out evaluations beside training (evaluate_beside): each on a copy of the scoring weights, on a worker
    # thread, in step order (so with the same noise as in turn); training goes on and applies each result once
    # it is in, all of them before a checkpoint and at the end. Early stopping then ends the run up to an
    # evaluation interval after the step whose evaluation decided it, with the same record and best weights.
    pending: deque[tuple[int, dict[str, torch.Tensor], Future]] = deque()
    evaluator: ThreadPoolExecutor | None = None
    if evaluate_beside and held is not None and on_eval is None:
        eval_model = copy.deepcopy(model)
        eval_threads = torch.get_num_threads()

        def evaluate_copy(state: dict[str, torch.Tensor]) -> dict[str, float]:
            torch.set_num_threads(eval_threads)  # per thread where the threading backend keeps it so
            # assign: the copy's tensors become the model's (the evaluation only reads them), not a second copy
            eval_model.load_state_dict(state, assign=True)
            return estimates(eval_model)

        evaluator = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deepseqvae-eval")

    def evaluate() -> dict[str, float] | None:
        """Held-out estimates (None without held-out data) and ``on_eval``, with the scoring weights."""
        raw = None
        if ema is not None:
            raw = [p.detach().clone() for p in params]
            torch._foreach_copy_([p.data for p in params], ema)
        try:
            value = estimates(model) if held is not None else None
            if on_eval is not None:
                was_training = model.training
                on_eval(step, model.eval())
                model.train(was_training)
            return value
        finally:
            if raw is not None:
                torch._foreach_copy_([p.data for p in params], raw)

    def apply_oldest() -> None:
        """Record the oldest evaluation beside training (waiting for it), with the weights it evaluated."""
        at, state, job = pending.popleft()
        record(at, job.result(), lambda: state)

    end = cfg.steps if cfg.stop_step is None else cfg.stop_step  # the schedule still spans cfg.steps
    kept: Checkpoint | None = None  # following a held-out run: a copy of the state at its best step so far
    start_step, t0 = step, time.perf_counter()
    # the step of the checkpoint this run can be continued from (a NaN error names it; a resumed run's file holds
    # its start): None until this run has written one
    saved_at = start_step if resume is not None and checkpoint_path is not None else None
    running = torch.zeros(len(STAT_NAMES), device=device, dtype=torch.float64)
    bad_step = torch.full((), -1, device=device, dtype=torch.long)  # first non-finite step, on device
    n_running = 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=end, initial=step, unit="step", dynamic_ncols=True, leave=True, desc=label,
                   position=1 if follow is not None else None)
    # Adam's moments of weights whose gradient is often zero decay into subnormal floats, ~12x slower on a CPU's
    # vector units: flushed to zero, as they would be ~150 steps later (runtime.flush_subnormals). This thread and
    # the evaluations' (started in the loop); the refit beside it sets its own.
    restore_subnormals = flush_subnormals()
    paced = follow is not None  # a refit beside a held-out run follows that run's pace: only the leading run tells
    try:
        while step < end and not stopped:
            if follow is not None:
                follow.check()  # the held-out run failed or was interrupted: stop here too
            _set_step_sizes(optimizer, cfg, step + 1)
            idx = torch.multinomial(probs, cfg.batch_size, replacement=True, generator=gen)  # (B,)
            loss, stats = loss_terms(model, data[idx], kl_neff, generator=gen, local=local, matmul_dtype=mm_dtype,
                                     compiled=cfg.compile_kernels, encoder_dtype=enc_dtype)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if ema is not None:
                torch._foreach_lerp_(ema, params_data, 1.0 - ema_decay_at(step, cfg))
            # Record the first non-finite step without a host sync on every step.
            bad = ~torch.isfinite(loss.detach())
            bad_step = torch.where(bad & (bad_step < 0), torch.tensor(step, device=device), bad_step)
            running += torch.stack([stats[k] for k in STAT_NAMES]).double()
            n_running += 1
            at_log = step % cfg.log_every == 0 or step == end
            at_ckpt = checkpoint_path is not None and cfg.checkpoint_every and step % cfg.checkpoint_every == 0
            at_eval = (held is not None or on_eval is not None) and (step % cfg.eval_every == 0 or step == end)
            if at_log or at_ckpt or at_eval:
                first_bad = int(bad_step)
                if first_bad >= 0:
                    # (a refit's second run writes no checkpoint of its own: its caller's file is not named here)
                    where = ""
                    if checkpoint_path is not None:
                        where = ("; no checkpoint of this run was written" if saved_at is None
                                 else f"; the last good checkpoint is {checkpoint_path} (step {saved_at})")
                    raise TrainingError(f"loss became {float(loss.detach()):.4g} at step {first_bad}{where}. "
                                        "Try a lower --learning-rate or check the alignment.")
            if at_log:
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
            if bar is not None:  # every step (tqdm redraws at most ~10 times a second): a slow step shows at once
                bar.update(step - bar.n)
            if not paced and step - start_step >= PACE_STEPS and time.perf_counter() - t0 >= PACE_SECONDS:
                paced = True
                warn_if_long(step - start_step, time.perf_counter() - t0, end - step)
            if at_eval and evaluator is not None:
                # at most one evaluation queued behind the running one: where an evaluation takes longer than the
                # steps between two (a large held-out set), training waits rather than pile up copies of the weights
                while len(pending) >= MAX_PENDING_EVALUATIONS and not stopped:
                    apply_oldest()
                if not stopped:
                    state = scoring_copy()
                    pending.append((step, state, evaluator.submit(evaluate_copy, state)))
            elif at_eval:
                value = evaluate()
                if value is not None:
                    record(step, value, scoring_copy)
            # evaluations beside training: apply those done (every one before a checkpoint and at the end)
            while pending and not stopped and (at_ckpt or step >= end or pending[0][2].done()):
                apply_oldest()
            if follow is not None and (step % cfg.eval_every == 0 or step == end):
                keep, stop = follow.wait(step)  # the held-out run's verdict on this step
                if keep:  # a copy (training goes on in place) of what the refit's model keeps: its scored
                    #         weights and record, not the optimizer state (a finished refit is final: _finish_refit)
                    kept = copy.deepcopy(snapshot().scoring_only())
                    kept = replace(kept, train_config={**kept.train_config, "stop_step": step})
                if stop:
                    break
            if at_ckpt:
                save_checkpoint(snapshot(), checkpoint_path)
                saved_at = step
    finally:
        if evaluator is not None:  # evaluations after the deciding one are dropped, as in turn they never ran
            evaluator.shutdown(wait=True, cancel_futures=True)
        restore_subnormals()
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t0
    final = snapshot() if kept is None else kept
    if resume is not None and kept is None and step == start_step:
        # a resume with nothing left to train: the file keeps the run as it was (its own steps and settings)
        final = resume
    elif checkpoint_path is not None:
        save_checkpoint(final, checkpoint_path)
    rate = (step - start_step) / seconds if seconds > 0 else math.nan
    return TrainResult(checkpoint=final, seconds=seconds, steps_per_second=rate, steps_run=step - start_step,
                       history=final.history)


#: training settings whose change at a resume is reported (the run is then no longer one uninterrupted run)
RESUME_SETTINGS = ("seed", "batch_size", "learning_rate", "variance_lr", "optimizer", "schedule", "warmup_steps",
                   "final_lr_fraction", "ema_decay", "ema_warmup", "holdout_fraction", "holdout_by")


#: peak resident memory of a training run on a CPU: a fixed part (torch, the data) and bytes per model parameter
#: (weights, gradients, Adam's moments, the moving average, the evaluations' copies), by how the refit runs; fitted
#: a little above what the fast recipe's runs peaked at with L = 1,200 and 2,000 (87 M and 143 M parameters; beside:
#: 5.66 and 8.90 GB, after: 4.01 and 6.59, one run: 3.36 and 5.43; benchmarks/results/train-memory-2026-12-05.md)
TRAIN_MEMORY_BASE = 2**29
TRAIN_BYTES_PER_PARAMETER = {"refit beside": 66, "refit after": 48, "one run": 40}


@functools.cache
def _parameter_count(model_cfg: VAEConfig) -> int:
    """Parameters of a ``model_cfg`` model, counted on the meta device (nothing is allocated)."""
    with torch.device("meta"):
        return sum(p.numel() for p in VAE(model_cfg).parameters())


def training_memory(model_cfg: VAEConfig, way: str) -> int:
    """Estimated peak bytes of training a ``model_cfg`` model on a CPU, ``way`` a key of
    :data:`TRAIN_BYTES_PER_PARAMETER`."""
    return int(TRAIN_MEMORY_BASE + TRAIN_BYTES_PER_PARAMETER[way] * _parameter_count(model_cfg))


def warn_if_memory_short(model_cfg: VAEConfig, way: str, where: str = "") -> None:
    """Warn, before the work, when training in ``way`` likely needs more memory than is available (a long family's
    run would otherwise be killed, or fail, minutes later), naming the ways that need less."""
    free = available_memory()
    need = training_memory(model_cfg, way)
    if free is None or need <= free:
        return
    gb = 2**30
    ways = list(TRAIN_BYTES_PER_PARAMETER)
    cheaper = [f"{flag} about {training_memory(model_cfg, w) / gb:.1f} GB"
               for w, flag in zip(ways, ("", "--refit-after", "--no-refit"), strict=True)
               if ways.index(w) > ways.index(way)]
    log.warning("%straining this model (%s) needs about %.1f GB (%s), more than the %.1f GB available: %s", where,
                f"L = {model_cfg.seq_len}, encoder {model_cfg.encoder_hidden}, decoder {model_cfg.decoder_hidden}",
                need / gb, way, free / gb, "; ".join(cheaper + ["narrower --encoder-hidden or --decoder-hidden "
                                                                "need less"]))


#: held-out evaluations beside training that may wait for the worker (each holds a copy of the scoring weights)
MAX_PENDING_EVALUATIONS = 2

#: after this many steps and seconds a run projects its length (:func:`warn_if_long`)
PACE_STEPS, PACE_SECONDS = 10, 30.0
#: a run projected to take longer than this (seconds) says so, with what shortens it
LONG_RUN_SECONDS = 1800.0


def warn_if_long(steps_done: int, seconds: float, steps_left: int) -> None:
    """Warn when ``steps_left`` more steps at the pace so far (``steps_done`` in ``seconds``, the first steps'
    one-off costs included: an upper estimate) take longer than :data:`LONG_RUN_SECONDS`, so that a run of a
    long family on a CPU, or a batch job without a progress bar, says so early rather than hours later."""
    left = steps_left * seconds / max(steps_done, 1)
    if left > LONG_RUN_SECONDS:
        log.warning("at %.2f steps/s, the %d steps left take up to about %.0f min (early stopping may end the run "
                    "sooner); fewer --steps, or a GPU (--device cuda), shorten it", steps_done / seconds, steps_left,
                    left / 60)


def _setting(value: object) -> str:
    """A training setting for a message: floats to 6 significant digits (a Neff-derived step size is
    0.000808465, not 0.0008084647493687083), anything else as its repr."""
    return f"{value:.6g}" if isinstance(value, float) else repr(value)


def _check_same_data(resume: Checkpoint, info: ModelInfo, alignment, where: str = "") -> None:
    """A resumed run must see the data its checkpoint was trained on: the same sequences and weights."""
    from .errors import CheckpointError

    was = resume.info
    # a checkpoint of float32 weights has a Neff summed in float32 (fit_alignment now sums float64): equal to ~1e-7;
    # the digest guards the data itself
    same_neff = math.isclose(was.neff, info.neff, rel_tol=1e-6, abs_tol=1e-9)
    other_data = bool(was.data_digest and info.data_digest and was.data_digest != info.data_digest)
    if was.n_seqs != info.n_seqs or not same_neff or was.theta != info.theta or other_data:
        but = ", but other sequences or weights" if other_data else ""
        raise CheckpointError(f"{where}the checkpoint to resume was trained on N = {was.n_seqs} sequences, Neff = "
                              f"{was.neff:.2f}, theta {was.theta:g} ({was.alignment or 'its alignment'}); "
                              f"{alignment.path} gives N = {info.n_seqs}, Neff = {info.neff:.2f}, theta "
                              f"{info.theta:g}{but}: resume with the same alignment, filters and weights, or train "
                              "anew")


def fit_alignment(
    alignment: Alignment,
    weights: np.ndarray,
    model_cfg: VAEConfig,
    train_cfg: TrainConfig,
    *,
    theta: float,
    device: torch.device | str = "cpu",
    checkpoint_path: str | os.PathLike | None = None,
    resume: Checkpoint | None = None,
    progress: bool = False,
    on_eval: Callable[[int, VAE], None] | None = None,
    refit_beside: bool | None = None,
) -> TrainResult:
    """Build a VAE for ``alignment`` (seeded by ``train_cfg.seed``) and train it.

    With ``resume``, the model configuration comes from the checkpoint, whose focus sequence must
    equal the alignment's.

    With ``train_cfg.refit`` and held-out data, the (early-stopped) run is followed by a second one
    from the same start and learning-rate path on every sequence, ended at the step the held-out
    set chose; that model is returned and saved, its history carrying the first run's held-out
    record and ``refit_step``, without the training state (final: a resume of it trains nothing
    more). The second run writes no intermediate checkpoint: interrupted, a resume finds the first run's end
    in ``checkpoint_path`` and runs the second again. On a CPU with at least 2 torch threads
    (``refit_beside`` None; True or False decides) the second run trains at the same time as the first, on a
    second thread, each with half the threads (:func:`refits_beside`):
    the same model as the two one after the other with that many threads each, in less time.
    """
    from .errors import CheckpointError, ConfigError
    from .weights import check_theta, check_weights

    # the Python caller's mistakes, said here rather than deep in torch
    if not isinstance(alignment, Alignment):
        raise TypeError(f"alignment must be an Alignment (read_alignment or AlignmentOptions.read), not "
                        f"{type(alignment).__name__}")
    if not isinstance(model_cfg, VAEConfig) or not isinstance(train_cfg, TrainConfig):
        raise TypeError(f"model_cfg and train_cfg must be a VAEConfig and a TrainConfig (recipes.recipe_configs "
                        f"makes both), not {type(model_cfg).__name__} and {type(train_cfg).__name__}")
    weights = check_weights(weights, alignment.ids, f"the weights given for {alignment.path}")
    if resume is None and model_cfg.seq_len != alignment.L:
        raise ConfigError(f"VAEConfig.seq_len {model_cfg.seq_len} is not the alignment's L = {alignment.L} "
                          f"({alignment.path})")
    theta = check_theta(theta)
    device = resolve_device(device)
    info = ModelInfo.from_alignment(alignment, weights, theta)
    where = f"{checkpoint_path}: " if checkpoint_path is not None else ""  # resume errors name the file
    if resume is not None:
        if model_kind(resume.kind).model_class is not VAE:
            raise CheckpointError(f"{where}--resume needs a VAE checkpoint; this one holds the '{resume.kind}' model")
        if not resume.resumable and not resume.history.get("refit_step"):  # a finished refit: below
            raise CheckpointError(f"{where}the checkpoint to resume was saved without its training state (--slim): it "
                                  "scores, but cannot be continued; train anew")
        if resume.info.focus_seq != alignment.focus_seq:
            raise CheckpointError(f"{where}the checkpoint to resume was trained on a different focus sequence "
                                  f"({resume.info.focus_id}) than {alignment.path} ({alignment.focus_id}): "
                                  f"{resume.info.focus_difference(info)} (checkpoint against alignment)")
        _check_same_data(resume, info, alignment, where)
        model_cfg = VAEConfig(**resume.model_config)
        if resume.step >= train_cfg.steps and not resume.history.get("refit_step"):
            log.warning("the checkpoint to resume is at step %d, already at or past the %d steps asked: nothing "
                        "to train (give a larger --steps to continue it)", resume.step, train_cfg.steps)
        changed = {k: (v, getattr(train_cfg, k)) for k, v in (resume.train_config or {}).items()
                   if k in RESUME_SETTINGS and hasattr(train_cfg, k) and v != getattr(train_cfg, k)}
        if changed:  # allowed (e.g. a lower learning rate for the rest), but the run is then not one uninterrupted run
            log.warning("resuming with settings other than the checkpoint's: %s",
                        ", ".join(f"{k} {_setting(a)} -> {_setting(b)}" for k, (a, b) in changed.items()))
        planned = (resume.train_config or {}).get("steps")  # the steps the checkpoint's run was set for

        def factor(total: int) -> float:  # the step size of the first resumed step, over the base one
            return lr_factor(resume.step + 1, total, train_cfg.warmup_steps, train_cfg.final_lr_fraction,
                             train_cfg.decay_fraction)

        if (train_cfg.schedule == "cosine" and planned and planned != train_cfg.steps and resume.step < train_cfg.steps
                and not math.isclose(factor(planned), factor(train_cfg.steps))
                and not resume.history.get("refit_step")):  # a finished refit is refused below, not resumed
            # the schedule spans --steps: continuing to other steps moves the step size, not only the run's end
            log.warning("resuming a %d-step run to %d steps: the cosine step-size schedule spans the steps, so at step "
                        "%d the step size goes from %.3g to %.3g times the base one (not the run a %d-step run from "
                        "the start would be)", planned, train_cfg.steps, resume.step + 1, factor(planned),
                        factor(train_cfg.steps), train_cfg.steps)
    refitting = train_cfg.refit and train_cfg.holdout_fraction > 0
    if resume is not None and resume.history.get("refit_step"):  # a finished refit: its model is final
        if not refitting or planned != train_cfg.steps:
            raise CheckpointError(f"{where}the checkpoint to resume was refit on every sequence up to step "
                                  f"{resume.step} of a {planned}-step run; it cannot be continued with other "
                                  "settings: train anew")
        log.warning("the checkpoint to resume is a finished refit on every sequence (step %d of %d): nothing to "
                    "train", resume.step, planned)
        return TrainResult(checkpoint=resume, seconds=0.0, steps_per_second=math.nan, steps_run=0,
                           history=resume.history)
    codes, heldout, all_weights, split = alignment.codes, None, weights, None
    beside = refitting and refits_beside(train_cfg, device, on_eval, refit_beside)  # decided once, used below
    if device.type == "cpu":
        warn_if_memory_short(model_cfg, "refit beside" if beside else "refit after" if refitting else "one run",
                             f"{alignment.path}: ")
    if train_cfg.holdout_fraction > 0:
        t_split = time.perf_counter()
        train_rows, held_rows = run_holdout_split(codes, train_cfg, alignment.focus_index, theta, weights=weights,
                                                  progress=progress)
        log.info("held out %d sequences (by %s), training on %d of %d (split in %.1f s)", len(held_rows),
                 train_cfg.holdout_by, len(train_rows), alignment.N, time.perf_counter() - t_split)
        if len(held_rows) == 0:
            # nothing to stop early on, and a refit would repeat the same run; the checkpoint records the run that
            # happened (a resume of it holds out nothing again: the split is seeded and the data checked)
            why = ("the family is too small for that share" if train_cfg.holdout_by == "sequence"
                   else "every cluster holds the focus's neighbours")
            log.warning("%s: no sequence could be held out (--holdout %g by %s: %s); training one run on every "
                        "sequence, without early stopping or a refit", alignment.path, train_cfg.holdout_fraction,
                        train_cfg.holdout_by, why)
            train_cfg = replace(train_cfg, holdout_fraction=0.0, refit=False, early_stopping=0)
            refitting = False
        else:
            # what the split gave, said where it is far from what was asked (a small or clustered family splits
            # coarsely) or leaves training under half the sequence weight (the shared families and the demo:
            # 10-17 % held out, 80-89 % trained on)
            # the share in what the kind aims at: the sequence weight (weight), else the rows
            by_weight = train_cfg.holdout_by == "weight"
            share = (float(weights[held_rows].sum() / weights.sum()) if by_weight
                     else len(held_rows) / alignment.N)
            trained = float(weights[train_rows].sum() / weights.sum())
            asked = train_cfg.holdout_fraction
            if not asked / 2 < share < 2 * asked or trained < 0.5:
                log.warning("%s: held out %d of %d sequences (%.0f%% of the %s; --holdout %g by %s asked %.0f%%), "
                            "training on %d (%.0f%% of the sequence weight)", alignment.path, len(held_rows),
                            alignment.N, 100 * share, "sequence weight" if by_weight else "sequences", asked,
                            train_cfg.holdout_by, 100 * asked, len(train_rows), 100 * trained)
            codes, heldout = codes[train_rows], (codes[held_rows], weights[held_rows])
            weights = weights[train_rows]
            split = (len(held_rows), share, time.perf_counter() - t_split)
    model = initial_model(model_cfg, train_cfg.seed)  # all later noise comes from the run's generator
    if refitting and beside:
        return replace(_fit_with_refit_beside(model, codes, weights, heldout, alignment, all_weights, train_cfg,
                                              info, device=device, checkpoint_path=checkpoint_path, resume=resume,
                                              progress=progress), heldout=split)
    result = train(model, codes, weights, train_cfg, info, device=device,
                   checkpoint_path=checkpoint_path, resume=resume, progress=progress, heldout=heldout,
                   on_eval=on_eval)
    if not refitting:
        return replace(result, heldout=split)
    kept, record = _chosen_step(result)
    first_steps, first_seconds = result.steps_run, result.seconds
    del result  # its model and optimizer state go before the refit's come (peak memory)
    log.info("refitting on all %d sequences up to step %d, the step the held-out set chose", alignment.N, kept)
    refit = _refit(alignment, all_weights, model_cfg, train_cfg, info, kept, record, device=device,
                   checkpoint_path=checkpoint_path, progress=progress, on_eval=on_eval)
    return replace(_both_runs(first_steps, refit, first_seconds + refit.seconds, beside=False), heldout=split)


def refits_beside(cfg: TrainConfig, device: torch.device | str, on_eval: Callable | None = None,
                  requested: bool | None = None) -> bool:
    """Whether :func:`fit_alignment` runs a refit on a second thread beside the held-out run
    (:mod:`deepseqvae.pace`) instead of after it: as ``requested`` if given, else on a CPU whose torch
    uses at least 2 threads. Either way the refit's model is the same for the same threads per run; a
    refit needs early stopping to choose its step and evaluations on logging steps, and ``on_eval``
    (called from both runs) keeps the runs one after the other."""
    possible = cfg.early_stopping > 0 and cfg.eval_every % cfg.log_every == 0
    if requested is not None:
        if requested and not possible:
            raise ValueError("a refit beside the held-out run needs early stopping and eval_every a multiple of "
                             "log_every")
        return requested
    return possible and on_eval is None and resolve_device(device).type == "cpu" and torch.get_num_threads() >= 2


def _chosen_step(result: TrainResult) -> tuple[int, dict[str, list]]:
    """(the step the held-out run chose, its held-out record for the refit's history)."""
    h = result.history
    kept = int(h["best_step"][-1]) if h.get("best_step") else result.checkpoint.step
    record = {k: list(h[k]) for k in ("eval_step", "heldout_elbo", "heldout_iwll", "heldout_iwll_mean", "best_step",
                                      "best_iwll") if k in h}
    return kept, record


def _fit_with_refit_beside(model: VAE, codes: np.ndarray, weights: np.ndarray,
                           heldout: tuple[np.ndarray, np.ndarray] | None, alignment, all_weights: np.ndarray,
                           train_cfg: TrainConfig, info: ModelInfo, *, device, checkpoint_path,
                           resume: Checkpoint | None, progress: bool) -> TrainResult:
    """The held-out run (``model`` on ``codes``) and the refit (on every sequence of ``alignment``) at the
    same time, on two threads with half of torch's threads each: the refit paces itself on the held-out
    run's evaluations and keeps the state of the step it chooses (:class:`deepseqvae.pace.RefitPace`).
    The held-out evaluations run on a third thread (``train(evaluate_beside=True)``): the refit, with no
    evaluations, would otherwise wait for each of them, leaving its core idle."""
    threads = torch.get_num_threads()
    each = max(1, threads // 2)
    pace = RefitPace()
    refit_model = initial_model(model.cfg, train_cfg.seed)  # the held-out run's start
    refit_cfg = replace(train_cfg, early_stopping=0)  # its end comes from the pace
    out: dict[str, object] = {}

    def run_refit() -> None:
        torch.set_num_threads(each)  # per thread where the threading backend keeps it so
        try:
            out["result"] = train(refit_model, alignment.codes, all_weights, refit_cfg, info, device=device,
                                  progress=progress, follow=pace, label="refit on all")
        except RefitAbandoned:
            pass
        except Exception as exc:  # noqa: BLE001 - reported, or replaced by a refit after the held-out run
            out["error"] = exc

    log.info("refitting on all %d sequences beside the held-out run (two threads, %d torch thread%s each)",
             alignment.N, each, "" if each == 1 else "s")
    t0 = time.perf_counter()
    torch.set_num_threads(each)
    refit_thread = threading.Thread(target=run_refit, name="deepseqvae-refit", daemon=True)
    refit_thread.start()
    try:
        result = train(model, codes, weights, train_cfg, info, device=device, checkpoint_path=checkpoint_path,
                       resume=resume, progress=progress, heldout=heldout, report_to=pace,
                       label="held-out run" if progress else None, evaluate_beside=True)
        kept, record = _chosen_step(result)
        first_steps = result.steps_run
        del result  # the refit's copy and a fallback refit need the memory more than its model does
        pace.finish(kept)
    except BaseException:
        pace.abandon()
        raise
    finally:
        try:
            refit_thread.join()
        finally:  # a second Ctrl-C during the join must not leave the caller with half the threads
            torch.set_num_threads(threads)
    error = out.get("error")
    if isinstance(error, TrainingError):  # said as the refit's: the file, if any, holds the held-out run
        raise TrainingError(f"the refit on every sequence: {error}") from None
    if error is None and "result" in out and out["result"].checkpoint.step != kept:
        # the refit checks the verdict at its own evaluation steps only: a kept step off that grid (a resume with
        # other --steps) ended it at the next one, past the kept step; trained again after, it stops there
        log.info("the refit beside the held-out run stopped at step %d, off the kept step %d (a resume with other "
                 "steps): refitting after it", out["result"].checkpoint.step, kept)
        out.pop("result")
    elif error is not None or "result" not in out:  # not expected: the refit after the held-out run instead
        log.warning("the refit beside the held-out run failed (%s); refitting after it", error)
    if "result" not in out:
        refit = _refit(alignment, all_weights, model.cfg, train_cfg, info, kept, record, device=device,
                       checkpoint_path=checkpoint_path, progress=progress, on_eval=None)
    else:
        refit = _finish_refit(out["result"], kept, record, checkpoint_path)
    return _both_runs(first_steps, refit, time.perf_counter() - t0, beside="result" in out)


def _both_runs(first_steps: int, refit: TrainResult, seconds: float, *, beside: bool) -> TrainResult:
    """The refit's model with the steps of both runs (``first_steps``: the held-out run's) and ``seconds``,
    their wall time together."""
    n_steps = first_steps + refit.steps_run
    return TrainResult(checkpoint=refit.checkpoint, seconds=seconds,
                       steps_per_second=n_steps / seconds if seconds > 0 else math.nan, steps_run=n_steps,
                       history=refit.history, refit_beside=beside)


def training_finished(ck: Checkpoint) -> bool:
    """Whether ``ck`` ends its training run: a refit's second run is done (with ``refit`` and held-out
    data), else the run reached its steps or early stopping ended it. A resume of a finished checkpoint
    trains no further; one of an unfinished checkpoint goes on (:func:`fit_alignment`)."""
    cfg, h = ck.train_config or {}, ck.history or {}
    if cfg.get("refit") and cfg.get("holdout_fraction", 0) > 0:
        return bool(h.get("refit_step"))  # the first run's end is not yet the model
    if ck.step >= cfg.get("steps", math.inf):
        return True
    patience = cfg.get("early_stopping", 0)
    if not patience or not h.get("best_step"):
        return False
    return _evaluations_since_best(h) >= patience


def _evaluations_since_best(history: dict[str, list]) -> int:
    """Held-out evaluations after the best one so far (early stopping's count, also on resume)."""
    return sum(s > history["best_step"][-1] for s in history.get("eval_step", []))


def initial_model(cfg: VAEConfig, seed: int) -> VAE:
    """The VAE ``seed`` starts from, built on the CPU (a default device set elsewhere does not move its draws to
    another generator): its initialisers draw from torch's global CPU generator, seeded here and then given back in
    the state the caller left it (a notebook's own random stream continues as it would have), one model at a time in
    the process (:data:`~deepseqvae.runtime.MODEL_INIT_LOCK`), so that runs started on several threads each get
    their seed's model."""
    with MODEL_INIT_LOCK, torch.random.fork_rng(devices=[]), torch.device("cpu"):
        torch.default_generator.manual_seed(seed)
        return VAE(cfg)


def _refit(alignment, weights: np.ndarray, model_cfg, train_cfg: TrainConfig, info: ModelInfo, kept: int,
           record: dict[str, list], *, device, checkpoint_path, progress: bool, on_eval) -> TrainResult:
    """The second stage of ``TrainConfig.refit``: the same start (seed), recipe and learning-rate path on
    every sequence, ended at step ``kept``; its checkpoint's history also carries the first stage's
    held-out ``record`` and ``refit_step``."""
    # the record keeps holdout_fraction and refit (what was done); no early stopping in this stage
    cfg = replace(train_cfg, early_stopping=0, stop_step=kept)
    model = initial_model(model_cfg, cfg.seed)  # the first stage's initialisation
    try:
        result = train(model, alignment.codes, weights, cfg, info, device=device, checkpoint_path=None,
                       progress=progress, on_eval=on_eval)
    except TrainingError as exc:  # said as the refit's: the file, if any, holds the held-out run at a later step
        raise TrainingError(f"the refit on every sequence: {exc}") from None
    return _finish_refit(result, kept, record, checkpoint_path)


def _finish_refit(result: TrainResult, kept: int, record: dict[str, list], checkpoint_path) -> TrainResult:
    """The refit's result with the first stage's held-out ``record`` and ``refit_step`` in its history, saved.

    A finished refit is final (a resume trains nothing more; other settings are an error), so it keeps only what
    scoring needs (:meth:`Checkpoint.scoring_only`): a quarter of a complete checkpoint, and the refit beside the
    held-out run keeps a copy of that much, not of its optimizer state, at each best step (peak memory)."""
    history = {**result.history, **record, "refit_step": [kept]}
    ck = replace(result.checkpoint, history=history).scoring_only()
    if checkpoint_path is not None:
        save_checkpoint(ck, checkpoint_path)
    return TrainResult(checkpoint=ck, seconds=result.seconds, steps_per_second=result.steps_per_second,
                       steps_run=result.steps_run, history=history)


def profile_logits(codes: torch.Tensor, weights: torch.Tensor, pseudocount: float = PROFILE_PSEUDOCOUNT
                   ) -> torch.Tensor:
    """Centred log-frequencies (L, 20) of int8 ``codes`` (N, L) under sequence ``weights`` (N,)
    (unnormalised: the pseudocount is in the same units).

    Gaps are not counted; every residue gets ``pseudocount`` (in units of effective sequences)
    so that one never seen in a column has a finite logit. Each column's logits sum to zero: the
    softmax ignores a shift, and the zero-mean one is the cheapest under the N(0, 1) prior.
    """
    from .independent import weighted_counts

    counts = torch.from_numpy(weighted_counts(codes.cpu().numpy(), weights.cpu().numpy()))  # (L, 20) float64
    log_f = torch.log(counts + pseudocount) - torch.log(counts.sum(1, keepdim=True) + N_AA * pseudocount)
    return (log_f - log_f.mean(1, keepdim=True)).float().to(codes.device)  # (L, 20)


def init_output_bias(model: VAE, codes: torch.Tensor, weights: torch.Tensor,
                     pseudocount: float = PROFILE_PSEUDOCOUNT) -> None:
    """Start the decoder's output bias at the site-independent model of the training sequences.

    With DeepSequence's constant start the bias must travel to log-odds of 4-6 nats in conserved
    columns, ~one learning rate per Adam step: thousands of steps, so a short run under-scores
    exactly the most conserved (often the most damaging) positions. Starting at the profile's
    logits (divided by the initial inverse temperature, which multiplies them) changes the starting
    point only: same model, priors and objective.
    """
    decoder = model.decoder
    if "b_out" not in decoder.mu:
        raise ValueError("init_bias='profile' needs a model with an output bias (output_bias=True)")
    logits = profile_logits(codes, weights, pseudocount).to(decoder.mu["b_out"].device)  # (L, 20)
    if "temperature" in decoder.mu:
        logits = logits / torch.nn.functional.softplus(decoder.mu["temperature"].detach())
    with torch.no_grad():
        decoder.mu["b_out"].copy_(logits)


def run_holdout_split(codes: np.ndarray, cfg: TrainConfig, focus_index: int, theta: float, *,
                      weights: np.ndarray | None = None, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, held-out rows) of a run with configuration ``cfg`` on int8 ``codes`` (N, L):
    its kind (``holdout_by``), fraction and seed; the focus row is never held out. What
    :func:`fit_alignment` trains and evaluates on, and how a checkpoint's split is found again.
    ``weights`` (N,), the sequence weights, are needed by ``holdout_by="weight"``; ``progress``: the cluster
    split's progress bars."""
    if cfg.holdout_by == "weight":
        if weights is None:
            raise ValueError("holdout_by='weight' needs the sequence weights")
        return cluster_holdout_split(codes, cfg.holdout_fraction, cfg.seed, keep=focus_index, theta=theta,
                                     weights=weights, progress=progress)
    if cfg.holdout_by == "cluster":
        return cluster_holdout_split(codes, cfg.holdout_fraction, cfg.seed, keep=focus_index, theta=theta,
                                     progress=progress)
    return holdout_split(codes.shape[0], cfg.holdout_fraction, cfg.seed, keep=focus_index)
