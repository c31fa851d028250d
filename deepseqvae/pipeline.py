"""End-to-end stages as library functions: what ``deepseqvae train``, ``score`` and ``classify`` run.

Side effects (device choice, seeding, file writes) happen here, at the edge, not in the model.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .alignment import read_alignment
from .checkpoint import Checkpoint, ModelInfo, load_checkpoint, save_checkpoint
from .errors import CheckpointError, ClassifyError, DeepSeqVAEError, MutantTableError
from .fileio import atomic_write
from .weights import check_theta, compute_weights, resolve_device

if TYPE_CHECKING:  # pragma: no cover
    from .classify import Classification, Evaluation, ScanScores

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


# --------------------------------------------------------------------------------------------
# Pathogenicity classes (EVE's mixture step)
# --------------------------------------------------------------------------------------------


@dataclass
class ClassifyRun:
    """What :func:`classify_file` computed and wrote."""

    classification: Classification
    output: Path
    evaluation: Evaluation | None   # with labels only
    written: list[Path]             # every file written, the classes CSV first


def classify_paths(output: str | os.PathLike) -> dict[str, Path]:
    """Files written beside the classes CSV: ``<stem>_report.md``, ``_labels.csv``, ``_metrics.csv``,
    ``_histogram.png`` and ``_labels.png``."""
    p = Path(output)
    return {"report": p.with_name(f"{p.stem}_report.md"), "labels": p.with_name(f"{p.stem}_labels.csv"),
            "metrics": p.with_name(f"{p.stem}_metrics.csv"), "histogram": p.with_name(f"{p.stem}_histogram.png"),
            "positions": p.with_name(f"{p.stem}_labels.png")}


def scan_scores(models: list[str | os.PathLike], *, protein: str | None = None, n_samples: int | None = None,
                seed: int = 0, device: str = "auto", batch_size: int = 2048, progress: bool = False):
    """Saturation scans of one or more checkpoints of the same protein, averaged (an ensemble)."""
    from .classify import ScanScores, mean_scans, protein_name
    from .explore import saturation_scan

    dev = resolve_device(device)
    scans = []
    for m in models:
        ckpt = load_checkpoint(m)
        res = saturation_scan(ckpt, n_samples=n_samples, seed=seed, device=dev, chunk_size=batch_size,
                              progress=progress)
        scans.append(ScanScores(protein=protein or protein_name(res.focus_id), mutants=res.mutants,
                                delta_elbo=res.score, sem=res.score_sem, focus_seq=res.focus_seq,
                                positions=res.positions, columns=res.columns, codes=res.codes, source=str(m)))
    return mean_scans(scans)


def classify_file(
    output: str | os.PathLike,
    *,
    models: list[str | os.PathLike] = (),
    scan: str | os.PathLike | None = None,
    scores: ScanScores | None = None,
    labels: str | os.PathLike | None = None,
    prior: str | os.PathLike | None = None,
    protein: str | None = None,
    protein_weight: float | None = None,
    retain: tuple[int, ...] | None = None,
    thresholds: str = "eve",
    n_init: int | None = None,
    gmm_seed: int = 0,
    label_col: str | None = None,
    offset: int = 0,
    plots: bool = True,
    monotone: bool = True,
    n_samples: int | None = None,
    seed: int = 0,
    device: str = "auto",
    batch_size: int = 2048,
    progress: bool = False,
) -> ClassifyRun:
    """Classify every single mutant of a protein as EVE does and write the classes CSV.

    The scores come from a saturation scan of ``models`` (their mean for several), from a scan
    CSV (``scan``) or from a :class:`~deepseqvae.classify.ScanScores` already computed (``scores``).
    With ``labels`` also writes the per-label table, the metrics, a Markdown report and the
    labelled-variants figure (:func:`classify_paths`); the histogram is drawn when ``plots``.
    """
    from . import classify as C

    if sum((bool(models), scan is not None, scores is not None)) != 1:
        raise ClassifyError("give one source of scores: checkpoints (--model) or a scan CSV (--scan)")
    out = Path(output)
    if scan is not None and out.resolve() == Path(scan).resolve():
        raise ClassifyError(f"{out}: refusing to overwrite the input scan; choose another -o")
    # read the small inputs first: a bad one fails before minutes of scanning
    pooled = C.load_prior(prior).mixture if prior is not None else None
    table = C.read_labels(labels, label_col=label_col) if labels is not None else None
    if scan is not None:
        scores = C.read_scan(scan, protein or "")
    elif models:
        scores = scan_scores(list(models), protein=protein, n_samples=n_samples, seed=seed, device=device,
                             batch_size=batch_size, progress=progress)
    cls = C.classify_scores(scores, prior=pooled,
                            protein_weight=C.PROTEIN_GMM_WEIGHT if protein_weight is None else protein_weight,
                            retain=C.DEFAULT_RETAIN if retain is None else retain, thresholds=thresholds,
                            n_init=C.N_INIT if n_init is None else n_init, seed=gmm_seed, monotone=monotone)
    with atomic_write(out, "w", newline="") as fh:
        cls.frame().to_csv(fh, index=False, float_format="%.6g")
    written, paths, ev = [out], classify_paths(out), None
    if table is not None:
        ev = C.evaluate(cls, C.match_labels(table, scores, protein=scores.protein, offset=offset))
        for key, frame in (("labels", ev.table), ("metrics", ev.by_retain)):
            with atomic_write(paths[key], "w", newline="") as fh:
                frame.to_csv(fh, index=False, float_format="%.6g")
            written.append(paths[key])
        with atomic_write(paths["report"], "w") as fh:
            fh.write(f"# deepseqvae classify\n\n- scores: {scores.source}\n- classes: {out}\n\n")
            fh.write(C.report_markdown(cls, ev))
        written.append(paths["report"])
    if plots:
        written += _classify_figures(cls, ev, paths)
    return ClassifyRun(classification=cls, output=out, evaluation=ev, written=written)


def _classify_figures(cls: Classification, ev: Evaluation | None, paths: dict[str, Path]) -> list[Path]:
    """The histogram with the fitted components (labelled variants marked) and, with labels, scores along
    the sequence."""
    from .classify import pathogenicity
    from .plots import plot_score_histogram, plot_scores_vs_positions, save_figure

    x = cls.scan.evolutionary_index
    pad = 0.05 * (x.max() - x.min())
    grid = np.linspace(x.min() - pad, x.max() + pad, 400)  # (G,)
    p_grid = pathogenicity(grid, cls.mixture, cls.prior, cls.protein_weight, cls.monotone)
    above = np.flatnonzero(p_grid > 0.5)
    boundary = float(grid[above[0]]) if above.size and above[0] > 0 else None
    name = cls.scan.protein or Path(cls.scan.source).stem
    labelled = labels = None
    if ev is not None:
        ok = ev.match.ok
        labelled, labels = x[ev.match.index[ok]], ev.match.labels.labels[ok]
    fig = plot_score_histogram(x, grid, cls.mixture.component_densities(grid), labelled_scores=labelled,
                               labels=labels, boundary=boundary,
                               title=f"{name}: evolutionary index of {x.size:,} single mutants and the fitted mixture")
    out = [save_figure(fig, paths["histogram"])]
    if ev is not None:
        idx = ev.match.index[ev.match.ok]
        fig = plot_scores_vs_positions(cls.scan.positions[cls.scan.columns[idx]], cls.pathogenicity[idx], labels,
                                       title=f"{name}: EVE_scores of the {idx.size} labelled variants")
        out.append(save_figure(fig, paths["positions"]))
    return out


def prior_file(scans: list[str | os.PathLike], output: str | os.PathLike, *, n_init: int | None = None,
               seed: int = 0):
    """Fit the pooled mixture of several scan CSVs and write it as JSON; returns ``(PooledPrior, path)``."""
    from . import classify as C

    prior = C.fit_prior([C.read_scan(s) for s in scans], n_init=C.N_INIT if n_init is None else n_init, seed=seed)
    return prior, C.save_prior(prior, output)
