"""End-to-end stages as library functions: what ``deepseqvae train`` and ``score`` run.

Side effects (device choice, seeding, file writes) happen here, at the edge, not in the model.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .alignment import read_alignment
from .checkpoint import Checkpoint, ModelInfo, load_checkpoint, save_checkpoint
from .errors import CheckpointError, DeepSeqVAEError, MutantTableError
from .fileio import atomic_write
from .weights import check_theta, compute_weights, resolve_device

log = logging.getLogger(__name__)


@dataclass
class TrainSummary:
    """What a training run did (printed by ``deepseqvae train``)."""

    output: Path
    kind: str
    n_seqs: int
    seq_len: int
    neff: float
    steps: int
    final_elbo: float | None
    train_seconds: float
    steps_per_second: float | None
    device: str
    weights_seconds: float

    def summary(self, total_seconds: float) -> str:
        lines = [f"Model: {self.kind}, trained on N = {self.n_seqs} sequences, L = {self.seq_len} columns, "
                 f"Neff = {self.neff:.1f}"]
        if self.kind == "vae":
            lines.append(f"Steps: {self.steps} ({self.steps_per_second:.1f} steps/s on {self.device}); "
                         f"final ELBO {self.final_elbo:.2f} (mean of the last logging interval)")
        lines.append(f"Time: {total_seconds:.1f} s (weights {self.weights_seconds:.1f} s, "
                     f"training {self.train_seconds:.1f} s)")
        lines.append(f"Wrote {self.output}")
        return "\n".join(lines)


def load_or_compute_weights(aln, theta: float, weights_file: str | os.PathLike | None,
                            device) -> np.ndarray:
    """Weights of ``aln``'s sequences: from a .npy file (checked against N) or computed."""
    if weights_file is None:
        return compute_weights(aln.codes, theta, device=device)
    try:
        weights = np.load(weights_file, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DeepSeqVAEError(f"{weights_file}: cannot read weights ({exc})") from None
    if weights.ndim != 1 or weights.shape[0] != aln.N:
        raise DeepSeqVAEError(f"{weights_file}: holds {weights.shape} weights but {aln.path} has "
                              f"{aln.N} sequences after filtering (same filters and alignment?)")
    return weights.astype(np.float64)


def fit_independent(aln, weights: np.ndarray, theta: float, pseudocount: float = 0.1) -> Checkpoint:
    """The site-independent model of ``aln`` as a checkpoint (scored like any other)."""
    from .independent import IndependentModel

    model = IndependentModel.fit(aln.codes, weights, pseudocount)
    return Checkpoint(kind="independent", model_config=model.config_dict(), state=model.state_dict(),
                      info=ModelInfo.from_alignment(aln, weights, theta))


def train_from_alignment(
    msa: str | os.PathLike,
    output: str | os.PathLike,
    *,
    model_kind: str = "vae",
    align_opts: dict | None = None,
    theta: float = 0.2,
    weights_file: str | os.PathLike | None = None,
    model_options: dict | None = None,
    train_options: dict | None = None,
    pseudocount: float = 0.1,
    device: str = "auto",
    resume: bool = False,
    progress: bool = False,
) -> TrainSummary:
    """Read ``msa``, weight it, train a model and write its checkpoint to ``output``."""
    from .model import VAEConfig
    from .train import TrainConfig, fit_alignment

    theta = check_theta(theta)
    dev = resolve_device(device)
    output = Path(output)
    aln = read_alignment(msa, **(align_opts or {}))
    t0 = time.perf_counter()
    weights = load_or_compute_weights(aln, theta, weights_file, dev)
    t_weights = time.perf_counter() - t0
    neff = float(weights.sum())
    log.info("%s: N=%d L=%d Neff=%.1f", msa, aln.N, aln.L, neff)
    if model_kind == "independent":
        t1 = time.perf_counter()
        save_checkpoint(fit_independent(aln, weights, theta, pseudocount), output)
        return TrainSummary(output, "independent", aln.N, aln.L, neff, 0, None, time.perf_counter() - t1, None,
                            "cpu", t_weights)
    if model_kind != "vae":
        raise ValueError(f"unknown model kind {model_kind!r}")
    ckpt = None
    if resume:
        if not output.exists():
            raise CheckpointError(f"{output}: nothing to resume (no such checkpoint)")
        ckpt = load_checkpoint(output)
    model_cfg = VAEConfig(seq_len=aln.L, **(model_options or {}))
    train_cfg = TrainConfig(**(train_options or {}))
    result = fit_alignment(aln, weights, model_cfg, train_cfg, theta=theta, device=dev, checkpoint_path=output,
                           resume=ckpt, progress=progress)
    elbo = result.history.get("elbo") or [float("nan")]
    return TrainSummary(output, "vae", aln.N, aln.L, neff, result.checkpoint.step, elbo[-1], result.seconds,
                        result.steps_per_second, str(dev), t_weights)


def default_score_output(mutants: str | os.PathLike) -> Path:
    """``<stem>_scored.csv`` beside the input table."""
    p = Path(mutants)
    return p.with_name(f"{p.stem}_scored.csv")


def score_file(
    mutants: str | os.PathLike,
    models: list[str | os.PathLike],
    *,
    output: str | os.PathLike | None = None,
    mutant_col: str | None = None,
    wt_col: str | None = None,
    pos_col: str | None = None,
    mut_col: str | None = None,
    offset: int = 0,
    n_samples: int | None = None,
    seed: int = 0,
    device: str = "auto",
    strict: bool = False,
    fitness_col: str | None = None,
    batch_size: int = 2048,
    progress: bool = False,
):
    """Score the table ``mutants`` with the checkpoints ``models`` and write the result.

    Returns ``(TableScores, output path, Spearman JSON path or None)``. The output keeps every
    input row and column in order, adding per-model scores (ensembles), ``score``, ``score_sem``
    and ``status``; it is written atomically and never onto the input file.
    """
    from .mutations import detect_fitness_col, read_mutant_table
    from .runtime import LARGE_TABLE_ROWS, bound_heap_growth
    from .score import model_column_names, score_table

    out = Path(output) if output else default_score_output(mutants)
    if out.resolve() == Path(mutants).resolve():
        raise MutantTableError(f"{out}: refusing to overwrite the input table; choose another -o")
    table = read_mutant_table(mutants, mutant_col=mutant_col, wt_col=wt_col, pos_col=pos_col, mut_col=mut_col)
    if len(table.mutants) > LARGE_TABLE_ROWS:
        bound_heap_growth()  # bounded memory at some cost in speed (see runtime.py)
    checkpoints = [load_checkpoint(m) for m in models]
    if fitness_col is None:
        fitness_col = detect_fitness_col(table.frame)
    dev = resolve_device(device)
    result = score_table(checkpoints, table, model_names=model_column_names([str(m) for m in models]),
                         n_samples=n_samples, seed=seed, device=dev, offset=offset, strict=strict,
                         fitness_col=fitness_col, chunk_size=batch_size, progress=progress)
    with atomic_write(out, "w", newline="") as fh:
        result.frame.to_csv(fh, index=False, na_rep="", float_format="%.6g")
    json_path = None
    if result.spearman is not None:
        json_path = out.with_suffix(".spearman.json")
        payload = {**result.spearman, "mutants": str(mutants), "models": [str(m) for m in models],
                   "status_summary": result.summary}
        # NaN (too few scorable rows) is not valid JSON: write null.
        payload = {k: (None if isinstance(v, float) and v != v else v) for k, v in payload.items()}
        with atomic_write(json_path, "w") as fh:
            json.dump(payload, fh, indent=2, allow_nan=False)
    return result, out, json_path
