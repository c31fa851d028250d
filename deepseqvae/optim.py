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


class DeepSequenceAdam(torch.optim.Optimizer):
    """Adam with DeepSequence's frozen bias correction (gradient descent on the loss).

    Per parameter: ``m ← b1·m + (1 − b1)·g``, ``v ← b2·v + (1 − b2)·g²`` and
    ``p ← p − lr·γ·m / (sqrt(v) + eps)`` with the constant ``γ = sqrt(1 − b2) / (1 − b1)``
    (DeepSequence maximises the objective with ``+``; we minimise its negative).
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        if lr <= 0 or eps <= 0 or not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError("invalid DeepSequenceAdam hyper-parameters")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102 - torch API
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            b1, b2 = group["betas"]
            gamma = math.sqrt(1.0 - b2) / (1.0 - b1)  # t stays 1 in DeepSequence's code
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads, ms, vs = [], [], []
            for p in params:
                state = self.state[p]
                if not state:
                    state["m"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["v"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                grads.append(p.grad)
                ms.append(state["m"])
                vs.append(state["v"])
            torch._foreach_lerp_(ms, grads, 1.0 - b1)            # m = b1·m + (1 − b1)·g
            torch._foreach_mul_(vs, b2)
            torch._foreach_addcmul_(vs, grads, grads, 1.0 - b2)  # v = b2·v + (1 − b2)·g²
            denom = torch._foreach_sqrt(vs)
            torch._foreach_add_(denom, group["eps"])
            torch._foreach_addcdiv_(params, ms, denom, -group["lr"] * gamma)
        return loss


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
