"""The refit beside the held-out run: two training runs on two threads, one choosing the step.

The fast recipe trains twice from the same start: a run on 90 % of the weight that measures, on the
held-out 10 %, the step after which more training stops generalising, then a refit on every sequence
up to that step (:func:`deepseqvae.train.fit_alignment`). The refit depends on the first run only
through the chosen step, so the two can run at the same time, each on half the CPU threads: small
products gain little from a second thread (on 2 cores the demo family's two runs side by side took
0.74x the time of the two one after the other with both threads each, BLAT_ECOLX's 0.83x:
benchmarks/results/default-beside-2026-12-03.md), and the refit's model is bit-identical to a refit
run afterwards with the same number of threads per run. The held-out run's evaluations go to a third
thread (``train(evaluate_beside=True)``), so that the refit, which has none, does not wait for them.

:class:`RefitPace` is the hand-over between the two threads. The held-out run reports each
evaluation (the best step so far, and whether it has stopped); the refit waits at each evaluation
step until the held-out run has evaluated it, keeps a copy of its state where that step is the best
so far (bests only move forward, so one copy suffices), and stops once the held-out run has stopped
at or before it. At the best step so far the refit holds until the held-out run finds a later best (then it
trains on towards it) or stops: it never trains past the chosen step, and while the held-out run waits out
its patience (15 % of its step budget without a better evaluation: on BLAT_ECOLX ~700 of ~2,800 steps)
its core is left to the held-out run and its evaluations. The refit's model is the same either way; only
when it trains changes.
"""

from __future__ import annotations

import math
import threading


class RefitAbandoned(RuntimeError):
    """The held-out run ended without choosing a step (it failed or was interrupted)."""


class RefitPace:
    """What the held-out run tells the refit beside it: its latest evaluated step, best step and end."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._evaluated = 0                 # the held-out run's latest evaluated step
        self._best: int | None = None       # its best step so far (the step the refit keeps if the run ends)
        self._final = False                 # the best step is the chosen one
        self._abandoned = False

    # --- the held-out run's side ---------------------------------------------------------------

    def report(self, step: int, best_step: int, final: bool) -> None:
        """The held-out run evaluated ``step``; its best step so far is ``best_step``; ``final``: it stops here."""
        with self._cond:
            self._evaluated, self._best, self._final = step, best_step, final
            self._cond.notify_all()

    def finish(self, kept: int) -> None:
        """The held-out run has ended and chose step ``kept`` (also when it evaluated nothing)."""
        with self._cond:
            self._evaluated, self._best, self._final = math.inf, kept, True
            self._cond.notify_all()

    def abandon(self) -> None:
        """The held-out run failed or was interrupted: the refit beside it stops at its next step."""
        with self._cond:
            self._abandoned = True
            self._cond.notify_all()

    # --- the refit's side ----------------------------------------------------------------------

    def check(self) -> None:
        """Raise :class:`RefitAbandoned` if the held-out run has been abandoned (cheap; every step)."""
        if self._abandoned:
            raise RefitAbandoned("the held-out run ended without choosing a step")

    def wait(self, step: int) -> tuple[bool, bool]:
        """At an evaluation step of the refit: wait until the held-out run has evaluated ``step`` (or
        ended); while ``step`` is its best step so far, hold until a later step is or the run ends; then
        return (keep: ``step`` is its best step so far, stop: it has chosen ``step`` or an earlier one)."""
        with self._cond:
            # evaluated, and not the best so far: at the best step, training on is worth it only once a later one is
            self._cond.wait_for(lambda: self._abandoned or self._final
                                or (self._evaluated >= step and self._best != step))
            self.check()
            keep = self._best == step
            stop = self._final and self._best is not None and self._best <= step
            return keep, stop


__all__ = ["RefitAbandoned", "RefitPace"]
