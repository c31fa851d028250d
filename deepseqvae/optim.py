"""Optimisers and step-size schedules of the training recipes.

* :class:`DeepSequenceAdam` reproduces the hand-written Adam of DeepSequence's Theano code
  (``model.py`` there): its step counter ``t`` is built once and never advanced, so the bias
  correction stays at its t = 1 value ``sqrt(1 − b2) / (1 − b1)`` = 0.316 for the whole run. The
  effective step is then lr at step 1, ~2·lr near step 10, ~0.4·lr at 1,000 and a constant
  0.316·lr from ~5,000 steps on (see ``../shared/docs/deepsequence-reference.md`` §4.1).
* :func:`lr_factor` is the warm-up / cosine-decay multiplier of the ``fast`` recipe, a pure
  function of the step in the style of nanoGPT's ``get_lr``.
"""

from __future__ import annotations

import math

import torch


class DeepSequenceAdam(torch.optim.Adam):
    """Adam with DeepSequence's frozen bias correction (gradient descent on the loss).

    Per parameter: ``m ← b1·m + (1 − b1)·g``, ``v ← b2·v + (1 − b2)·g²`` and
    ``p ← p − lr·γ·m / (sqrt(v) + eps)`` with the constant ``γ = sqrt(1 − b2) / (1 − b1)``
    (DeepSequence maximises the objective with ``+``; we minimise its negative).

    It runs as torch's Adam (the fused kernel where the device has one: one pass over the
    weights instead of six) whose step counter is set back to 0 before every step, so every
    update uses the t = 1 bias correction, and whose ``eps`` is stored as ``eps / sqrt(1 − b2)``:
    torch's update ``lr/(1 − b1) · m / (sqrt(v/(1 − b2)) + eps')`` is then exactly the one above.
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        if lr <= 0 or eps <= 0 or not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError("invalid DeepSequenceAdam hyper-parameters")
        kw = {"lr": lr, "betas": tuple(betas), "eps": eps / math.sqrt(1.0 - betas[1])}
        params = list(params)
        try:
            super().__init__(params, fused=True, **kw)
        except (RuntimeError, TypeError):  # no fused kernel for this device or dtype
            super().__init__(params, **kw)

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102 - torch API
        steps = [s["step"] for s in self.state.values() if "step" in s]
        if steps:
            torch._foreach_zero_(steps)  # DeepSequence's t never advances: torch's Adam counts it to 1
        return super().step(closure)

    def load_state_dict(self, state_dict: dict) -> None:  # noqa: D102 - torch API
        # checkpoints of the earlier, hand-written version kept the moments as "m" and "v"
        for st in state_dict.get("state", {}).values():
            if "m" in st and "exp_avg" not in st:
                st["exp_avg"], st["exp_avg_sq"] = st.pop("m"), st.pop("v")
                st["step"] = torch.zeros((), dtype=torch.float32)
        super().load_state_dict(state_dict)


def lr_factor(step: int, total: int, warmup: int, final_fraction: float, decay_fraction: float = 1.0) -> float:
    """Multiplier of the base step size at optimisation step ``step`` (1-based) of ``total``.

    1) linear warm-up from ~0 to 1 over the first ``warmup`` steps; 2) constant 1 until the last
    ``decay_fraction`` of the remaining steps; 3) cosine decay from 1 to ``final_fraction`` over
    those (``decay_fraction`` 1: cosine over everything after the warm-up).
    """
    if warmup > 0 and step <= warmup:
        return step / warmup
    if total <= warmup:
        return 1.0
    decay_steps = max(decay_fraction * (total - warmup), 1e-9)
    decay_start = total - decay_steps
    progress = min(1.0, max(0.0, (step - decay_start) / decay_steps))
    return final_fraction + (1.0 - final_fraction) * 0.5 * (1.0 + math.cos(math.pi * progress))


def delayed_factor(step: int, total: int, delay: int, warmup: int, final_fraction: float,
                   decay_fraction: float = 1.0) -> float:
    """Multiplier of a parameter group frozen for its first ``delay`` steps, then scheduled like
    :func:`lr_factor` over the remaining ``total − delay`` steps (warm-up restarting at ``delay``)."""
    if step <= delay:
        return 0.0
    return lr_factor(step - delay, max(total - delay, 1), warmup, final_fraction, decay_fraction)
