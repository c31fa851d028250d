"""What each command runs, file in and file out: one ``<command>_file`` function per command.

``weights_file``, ``train_file``, ``score_file``, ``scan_file``, ``embed_file``, ``sample_file``,
``classify_file``, ``classify_prior_file`` and ``batch_file`` read their inputs, call the library
(alignment, weights, train, score, latent, generate, classify, plots, batch)
and write their outputs atomically. Side effects (device choice, file writes) happen here, at the
edge, not in the library; the CLI only parses options and prints what these return.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shlex
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .alignment import Alignment, AlignmentOptions
from .checkpoint import Checkpoint, ModelInfo, kind_of, load_checkpoint, model_kind, save_checkpoint
from .errors import CheckpointError, ClassifyError, ConfigError, DeepSeqVAEError, OutputError
from .fileio import atomic_write, check_distinct, check_output, is_stream, path_list, plain_name, replace_with
from .generate import GeneratedSequence, interpolate_sequences, iter_samples
from .latent import Embedding, color_values, embed_alignment, find_sequence, latent_2d, read_matching_alignment
from .outliers import drop_outlier_records
from .recipes import DEFAULT_RECIPE, check_model_options
from .runtime import LARGE_TABLE_ROWS, bound_heap_growth, whole_number
from .score import ScanResult, TableScores, model_column_names, saturation_scan, score_table
from .tables import detect_fitness_col, read_mutant_table
from .weights import (
    check_theta,
    check_weights,
    compute_weights,
    default_weights_path,
    resolve_device,
    resolve_kernel,
    save_weights,
)

if TYPE_CHECKING:  # pragma: no cover
    from .classify import Classification, Evaluation, ScanScores

log = logging.getLogger(__name__)

#: float format of every CSV written (scores, scans, latents)
FLOAT_FORMAT = "%.6g"

#: below this Neff/L a family is too small for the VAE to learn much (DeepSequence's families have
#: Neff/L of about 1 and more); a warning suggests the site-independent baseline
MIN_NEFF_PER_COLUMN = 1.0


# --- weights --------------------------------------------------------------------------------


def check_family_size(where: str | os.PathLike, neff: float, length: int) -> None:
    """Warn, naming ``where`` (an alignment, or a model trained on one), when Neff/L is below
    :data:`MIN_NEFF_PER_COLUMN` (``length``: the family's L)."""
    if length and neff / length < MIN_NEFF_PER_COLUMN:
        log.warning("%s: Neff/L = %.2f (Neff %.1f over L = %d columns) is below %g: too few effective sequences "
                    "for the VAE, its predictions will be weak; compare with the site-independent baseline "
                    "(deepseqvae train --model independent)", where, neff / length, neff, length,
                    MIN_NEFF_PER_COLUMN)


@dataclass
class WeightsSummary:
    """What ``deepseqvae weights`` did."""

    alignment: Alignment
    weights: np.ndarray       # (N,) float64 weights of the kept sequences
    theta: float
    output: Path
    device: str
    kernel: str
    read_seconds: float
    weights_seconds: float

    def summary(self) -> str:
        aln, neff = self.alignment, float(self.weights.sum())
        return "\n".join([
            aln.summary(),
            f"Neff = {neff:.2f} (theta = {self.theta:g}; Neff/N = {neff / aln.N:.3f}, Neff/L = {neff / aln.L:.2f})"
            + _empty_rows_note(aln),
            f"Time: {self.read_seconds + self.weights_seconds:.2f} s (reading {self.read_seconds:.2f} s, "
            f"weights {self.weights_seconds:.2f} s on {self.device}, {self.kernel} kernel)",
            f"Wrote {self.weights.size} weights to {self.output}",
        ])


def _empty_rows_note(aln: Alignment) -> str:
    """Said after Neff: kept rows with no residue in the modelled columns, whose weight is 0 (as in EVE: a row
    without residues has no neighbour), so that they are not taken for training data."""
    from .alphabet import GAP_CODE

    empty = int((aln.codes == GAP_CODE).all(axis=1).sum())
    return f"; {empty} kept row(s) have no residue in the modelled columns: weight 0, never trained on" if empty else ""


def weights_file(msa: str | os.PathLike, output: str | os.PathLike | None = None, *, theta: float = 0.2,
                 options: AlignmentOptions | None = None, device: str = "auto",
                 progress: bool = False) -> WeightsSummary:
    """Read ``msa``, compute its sequence weights and write them as a ``.npy`` (default name from ``msa``)."""
    theta = check_theta(theta)
    dev = resolve_device(device)
    kernel = resolve_kernel("auto", dev)
    out = check_output(output if output is not None else default_weights_path(msa, theta), msa)
    t0 = time.perf_counter()
    aln = (options or AlignmentOptions()).read(msa)
    t1 = time.perf_counter()
    weights = compute_weights(aln.codes, theta, device=dev, progress=progress, kernel=kernel)
    t2 = time.perf_counter()
    out = save_weights(out, weights)
    check_family_size(aln.path, float(weights.sum()), aln.L)
    return WeightsSummary(aln, weights, theta, out, str(dev), kernel, t1 - t0, t2 - t1)


def load_or_compute_weights(aln: Alignment, theta: float, weights_path: str | os.PathLike | None,
                            device, progress: bool = False) -> np.ndarray:
    """Weights of ``aln``'s sequences: from a .npy file (checked against N) or computed (``progress``: with a
    progress bar)."""
    if weights_path is None:
        return compute_weights(aln.codes, theta, device=device, progress=progress)
    try:
        weights = np.load(weights_path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:  # EOFError: an empty file
        if "allow_pickle" in str(exc):  # numpy's advice to load it unsafely is not ours to give
            raise DeepSeqVAEError(f"{weights_path}: not a .npy array of weights (expected a .npy from "
                                  "'deepseqvae weights')") from None
        raise DeepSeqVAEError(f"{weights_path}: cannot read weights ({exc}); expected a .npy from "
                              "'deepseqvae weights'") from None
    if not isinstance(weights, np.ndarray):  # an .npz archive (or a pickle np.load refused above)
        raise DeepSeqVAEError(f"{weights_path}: not a .npy array of weights (expected a .npy from "
                              "'deepseqvae weights')")
    return check_weights(weights, aln.ids, str(weights_path), str(aln.path))


# --- train ----------------------------------------------------------------------------------


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
    steps_per_second: float | None    # None for a model fitted in closed form (no steps)
    device: str
    weights_seconds: float
    recipe: str = ""                  # training recipe of a VAE
    note: str = ""                    # what the held-out evaluation did, when there was one
    pace_of: str = ""                 # what steps_per_second counts when not the saved run's steps alone

    def summary(self, total_seconds: float) -> str:
        what = f"{self.kind} ({self.recipe} recipe)" if self.recipe else self.kind
        lines = [f"Model: {what}, alignment of N = {self.n_seqs} sequences, L = {self.seq_len} columns, "
                 f"Neff = {self.neff:.1f}"]
        if self.steps_per_second is not None:
            of = f" ({self.pace_of})" if self.pace_of else ""
            pace = (f"{self.steps_per_second:.1f} steps/s on {self.device}{of}" if self.steps_per_second > 0
                    else "nothing left to train")  # a resume already at its steps
            lines.append(f"Steps: {self.steps} ({pace}); "
                         f"final ELBO {self.final_elbo:.2f} (log p(x|z) − KL(z) per sequence, KL(θ)/Neff apart; "
                         "mean of the last logging interval)")
        if self.note:
            lines.append(self.note)
        lines.append(f"Time: {total_seconds:.1f} s (weights {self.weights_seconds:.1f} s, "
                     f"training {self.train_seconds:.1f} s)")
        lines.append(f"Wrote {self.output}")
        return "\n".join(lines)


def fit_independent(aln: Alignment, weights: np.ndarray, theta: float, pseudocount: float = 0.1) -> Checkpoint:
    """The site-independent model of ``aln`` as a checkpoint (scored like any other)."""
    from .independent import IndependentModel

    weights = check_weights(weights, aln.ids, f"the weights given for {aln.path}")
    theta = check_theta(theta)
    model = IndependentModel.fit(aln.codes, weights, pseudocount)
    return Checkpoint(kind=kind_of(model), model_config=model.config_dict(), state=model.state_dict(),
                      info=ModelInfo.from_alignment(aln, weights, theta))


@dataclass(frozen=True)
class _Fit:
    """What ``train_file`` needs to fit one model kind."""

    aln: Alignment
    weights: np.ndarray
    theta: float
    output: Path
    device: object          # torch.device
    model_options: dict
    train_options: dict
    pseudocount: float
    resume: bool
    progress: bool
    recipe: str | None       # the named recipe; None: the default, or a resumed run's own
    refit_beside: bool | None = None  # the refit beside the held-out run (None: train.refits_beside decides)
    slim: bool = False                # save only what scoring needs (no resume state)


def _train_independent(fit: _Fit) -> tuple[int, float | None, float, float | None, str, str, str]:
    if fit.resume:
        raise CheckpointError(f"{fit.output}: --resume continues a VAE's training; the independent model is fitted "
                              "in closed form (seconds): drop --resume")
    t0 = time.perf_counter()
    save_checkpoint(fit_independent(fit.aln, fit.weights, fit.theta, fit.pseudocount), fit.output)
    return 0, None, time.perf_counter() - t0, None, "", "", ""


def _as_tuple(value):
    """A config value as the dataclass holds it: a checkpoint file stores lists where the config has tuples."""
    return tuple(value) if isinstance(value, list | tuple) else value


def _check_resume_model(resume: Checkpoint, model_options: dict, path: Path) -> None:
    """A resumed run keeps its checkpoint's model: an explicit model option that says otherwise is an error."""
    def shown(value) -> str:  # as the option is written: 1500,1500
        return ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value)

    differ = [f"{k} {shown(resume.model_config[k])} (asked: {shown(v)})" for k, v in model_options.items()
              if v is not None and k in resume.model_config and _as_tuple(resume.model_config[k]) != _as_tuple(v)]
    if differ:
        raise CheckpointError(f"{path}: --resume keeps the checkpoint's model, which has {'; '.join(differ)}; "
                              "drop those options or train anew")


def _resumed_train_config(resume: Checkpoint, base, overrides: dict, path: Path):
    """The training settings of a resumed run: the checkpoint's own (on ``base``, its recipe's, for fields an older
    checkpoint lacks), then the options given anew (``overrides``, None = not given)."""
    from dataclasses import fields, replace

    names = {f.name for f in fields(base)}
    stored = {k: _as_tuple(v) for k, v in (resume.train_config or {}).items() if k in names}
    given = {k: v for k, v in overrides.items() if v is not None and k in names}
    try:
        return replace(base, **{**stored, **given})
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: its training settings cannot be resumed ({exc})") from None


def partial_checkpoint(output: str | os.PathLike) -> Path:
    """``<stem>.partial<suffix>`` beside ``output`` (beside a link's target, where the model is renamed to at the end:
    one file system, one folder to write in): the checkpoints of a run whose output holds an earlier model."""
    p = Path(output)
    if p.is_symlink():
        p = Path(os.path.realpath(p))
    return p.with_name(f"{p.stem}.partial{p.suffix}")


def _resumes_partial(output: Path) -> bool:
    """Whether ``train --resume`` continues ``output``'s partial checkpoint: there, and not older than ``output`` (a
    partial left by an abandoned run, older than a model finished since, must not replace it)."""
    partial = partial_checkpoint(output)
    if not partial.exists():
        return False
    return not output.exists() or partial.stat().st_mtime >= output.stat().st_mtime


def _train_vae(fit: _Fit) -> tuple[int, float | None, float, float | None, str, str, str]:
    from .recipes import recipe_configs
    from .runtime import keep_heap
    from .train import fit_alignment

    resume, recipe = None, fit.recipe or DEFAULT_RECIPE
    # Where this run's checkpoints go: the output, unless a file is there already (an earlier model), which is kept
    # until this run ends: its checkpoints go to <stem>.partial<suffix> beside it, renamed onto it at the end, and
    # --resume continues from that file when it is there.
    partial = partial_checkpoint(fit.output)
    ckpt_path = fit.output
    if fit.resume:
        ckpt_path = partial if _resumes_partial(fit.output) else fit.output
        if ckpt_path == partial:
            log.warning("resuming the run interrupted in %s (%s holds an earlier model, replaced when it ends)",
                        partial, fit.output)
        elif partial.exists():
            log.warning("%s is older than %s: resuming %s", partial, fit.output, fit.output)
        if not ckpt_path.exists():
            raise CheckpointError(f"{fit.output}: nothing to resume (no such checkpoint)")
        resume = load_checkpoint(ckpt_path)
        _check_resume_model(resume, fit.model_options, ckpt_path)
        stored = (resume.train_config or {}).get("recipe")
        if fit.recipe and stored and fit.recipe != stored:
            raise CheckpointError(f"{ckpt_path}: was trained with the {stored} recipe; resume it without --recipe "
                                  f"{fit.recipe}, or train anew")
        recipe = stored or recipe
    elif fit.output.is_file():  # an earlier model: kept until this run ends
        ckpt_path = partial
    elif partial.exists():  # an abandoned run's: kept (--resume takes the newer of it and the output, it alone before)
        log.warning("%s holds an interrupted run's checkpoint and is left as it is (--resume continues it until %s "
                    "exists); this run writes %s", partial, fit.output, fit.output)
    model_cfg, train_cfg = recipe_configs(recipe, fit.aln.L, neff=float(np.sum(fit.weights)),
                                          model_overrides=fit.model_options,
                                          train_overrides=None if resume is not None else fit.train_options)
    if resume is not None:  # the run's own settings go on; only the options given anew change them
        train_cfg = _resumed_train_config(resume, train_cfg, fit.train_options, ckpt_path)
    log.info("recipe %s: %d steps, decoder %s", recipe, train_cfg.steps, model_cfg.decoder_hidden)
    keep_heap()  # a training process reuses its freed memory instead of page-faulting it in every step
    result = fit_alignment(fit.aln, fit.weights, model_cfg, train_cfg, theta=fit.theta, device=fit.device,
                           checkpoint_path=ckpt_path, resume=resume, progress=fit.progress,
                           refit_beside=fit.refit_beside)
    if fit.slim:  # the interim checkpoints were complete; the final one keeps what scoring needs
        save_checkpoint(result.checkpoint.scoring_only(), fit.output)
        if ckpt_path != fit.output:
            ckpt_path.unlink(missing_ok=True)
    elif ckpt_path != fit.output:  # the finished run replaces the earlier model now, not at its first checkpoint
        replace_with(ckpt_path, fit.output)
    elbo = result.history.get("elbo") or [float("nan")]
    h, note = result.history, ""
    if h.get("heldout_iwll"):
        share = "the sequence weight" if train_cfg.holdout_by == "weight" else "the sequences"
        held = (f"{result.heldout[0]:,} sequence{'s' * (result.heldout[0] != 1)}, {result.heldout[1]:.0%} of {share}"
                if result.heldout
                else "as the finished run's split, not redone")  # a finished refit resumed: nothing split
        split = f"; split in {result.heldout[2]:.1f} s" if result.heldout else ""
        note = (f"Held out: {held} (by {train_cfg.holdout_by}, {train_cfg.holdout_fraction:.0%} asked{split}); "
                f"held-out log-likelihood {h['heldout_iwll'][-1]:.2f} at step {h['eval_step'][-1]}")
        if h.get("refit_step"):
            everyone = f"a second run on all {fit.aln.N:,} sequences"
            second = f"{everyone} beside it, on a second thread," if result.refit_beside else f"then {everyone}"
            chosen = (f"best at step {h['best_step'][-1]} ({h['best_iwll'][-1]:.2f}) of {h['eval_step'][-1]:,}; "
                      f"{second} up to that step" if h.get("best_step")  # --early-stopping 0: no step is chosen
                      else f"no early stopping; {second} to its last step, {h['refit_step'][-1]:,}")
            note += f"; {chosen} (--refit), the model saved"
        elif h.get("best_step"):
            stopped = result.checkpoint.step < train_cfg.steps
            note += (f"; scored with the weights of step {h['best_step'][-1]} (best, {h['best_iwll'][-1]:.2f})"
                     + (", stopped early" if stopped else ""))
    ran = result.checkpoint.train_config
    used = precision = ran.get("matmul_dtype", "float32")
    if train_cfg.matmul_dtype == "auto":  # say what "auto" chose: a CPU without bf16 units trains in float32
        used += f" (auto: {'native' if used == 'bfloat16' else 'no native bfloat16 units'} on {fit.device})"
    # the encoder's hidden product follows the run's precision where the recipe (from Neff) or --encoder-products says
    encoder = precision if ran.get("encoder_products") else "float32"
    note = "\n".join(filter(None, [note, f"Decoder products: {used}", f"Encoder products: {encoder}"]))
    # a refit's pace counts the steps of both runs (beside each other, or one after the other) over their time
    pace_of = f"{result.steps_run:,} steps of both runs" if h.get("refit_step") else ""
    return result.checkpoint.step, elbo[-1], result.seconds, result.steps_per_second, note, recipe, pace_of


@dataclass(frozen=True)
class Trainer:
    """How ``train_file`` fits one model kind."""

    fit: Callable[[_Fit], tuple[int, float | None, float, float | None, str, str, str]]  # -> (steps, ELBO, s,
    #                                                           steps/s, note, recipe used, what the steps/s counts)
    iterative: bool  # trained by steps (their number matters for run time), else fitted in closed form


#: how to fit each model kind ``deepseqvae train --model`` offers (loading and scoring a
#: checkpoint's kind is :data:`deepseqvae.checkpoint.KINDS`' job)
TRAINERS: dict[str, Trainer] = {
    "vae": Trainer(_train_vae, iterative=True),
    "independent": Trainer(_train_independent, iterative=False),
}


#: seconds of weights after which ``train`` suggests computing them once (``--weights``) for the next runs
SLOW_WEIGHTS_SECONDS = 60.0


def train_file(
    msa: str | os.PathLike,
    output: str | os.PathLike,
    *,
    model_kind: str = "vae",
    options: AlignmentOptions | None = None,
    theta: float = 0.2,
    weights_path: str | os.PathLike | None = None,
    model_options: dict | None = None,
    train_options: dict | None = None,
    pseudocount: float = 0.1,
    device: str = "auto",
    resume: bool = False,
    progress: bool = False,
    recipe: str | None = None,
    refit_beside: bool | None = None,
    slim: bool = False,
) -> TrainSummary:
    """Read ``msa``, weight it, train a ``model_kind`` model and write its checkpoint to ``output``.

    A VAE is trained with the named training ``recipe`` (:data:`deepseqvae.recipes.RECIPES`, default
    ``fast``); ``model_options`` / ``train_options`` override its settings (``None`` values are
    ignored). The alignment ``options`` are recorded in the checkpoint (``embed`` and ``sample
    --msa`` reuse them). ``refit_beside``: train a refit beside the held-out run (True), after it
    (False) or as :func:`deepseqvae.train.refits_beside` decides (None). ``slim``: the final checkpoint keeps only
    what scoring needs (:meth:`~deepseqvae.checkpoint.Checkpoint.scoring_only`; it cannot be resumed).
    A closed-form ``model_kind`` (``independent``) given a VAE setting (a model or training option, ``recipe``,
    ``refit_beside``, ``slim``) raises :class:`~deepseqvae.errors.ConfigError` rather than ignore it.
    """
    if model_kind not in TRAINERS:
        raise ValueError(f"unknown model kind {model_kind!r} (known: {', '.join(TRAINERS)})")
    if not TRAINERS[model_kind].iterative:  # the CLI refuses these as options; from Python, the same error
        given = {**(model_options or {}), **(train_options or {}), "recipe": recipe, "refit_beside": refit_beside}
        unused = sorted(k for k, v in given.items() if v is not None) + (["slim"] if slim else [])
        if unused:
            raise ConfigError(f"the {model_kind} model is fitted in closed form: {', '.join(unused)} "
                              f"{'applies' if len(unused) == 1 else 'apply'} to the VAE only")
    theta = check_theta(theta)
    check_output(output, msa, weights_path)
    if is_stream(output):  # a training run writes its checkpoint again and again: into a stream they would pile up
        raise OutputError(f"{output}: train writes its model as a file, rewritten at each checkpoint; give -o a file "
                          "name (not a device or pipe)")
    if TRAINERS[model_kind].iterative and not resume:  # a resumed run's model is the checkpoint's
        check_model_options(recipe or DEFAULT_RECIPE, model_options)
    dev = resolve_device(device)
    options = options or AlignmentOptions()
    aln = options.read(msa)  # first: an alignment that cannot be read is the one line said, no warning before it
    if not resume and Path(output).is_file():  # said now, not when it is replaced
        again = (f"the run interrupted in {partial_checkpoint(output)}" if _resumes_partial(Path(output))
                 else "the earlier run")
        log.warning("%s exists: this run replaces it when it ends%s", output,
                    f" (its checkpoints meanwhile go to {partial_checkpoint(output)}; --resume would continue {again})"
                    if TRAINERS[model_kind].iterative else "")
    t0 = time.perf_counter()
    weights = load_or_compute_weights(aln, theta, weights_path, dev, progress)
    took = time.perf_counter() - t0
    if weights_path is None and took > SLOW_WEIGHTS_SECONDS:  # every seed would pay it again
        command = shlex.join(["deepseqvae", "weights", str(msa), *options.reading_args(), "--theta", f"{theta:g}",
                              "-o", "W.npy"])
        log.warning("%s: the sequence weights took %.0f s; compute them once (%s) and give --weights W.npy to the "
                    "other runs of this alignment", msa, took, command)
    if options.max_invariant_changes is not None:
        n_read = aln.N
        aln, weights = drop_outlier_records(aln, weights, options.max_invariant_changes, theta, dev)
        if weights_path is not None and n_read > aln.N:  # the dropped records were neighbours of others: said
            log.warning("%s: not used: --max-invariant-changes dropped records, so the weights of the %d kept are "
                        "recomputed", weights_path, aln.N)
    t_weights = time.perf_counter() - t0
    neff = float(weights.sum())
    log.info("%s: N=%d L=%d Neff=%.1f", msa, aln.N, aln.L, neff)
    if TRAINERS[model_kind].iterative:  # the warning advises the independent model: not to its own run
        check_family_size(aln.path, neff, aln.L)
    fit = _Fit(aln, weights, theta, Path(output), dev, dict(model_options or {}), dict(train_options or {}),
               pseudocount, resume, progress, recipe, refit_beside, slim)
    steps, elbo, seconds, rate, note, used, pace_of = TRAINERS[model_kind].fit(fit)
    return TrainSummary(fit.output, model_kind, aln.N, aln.L, neff, steps, elbo, seconds, rate,
                        str(dev) if rate is not None else "cpu", t_weights, used, note, pace_of)


# --- score ----------------------------------------------------------------------------------


def default_score_output(mutants: str | os.PathLike) -> Path:
    """``<stem>_scored.csv`` beside the input table (``x.csv.gz``: ``x_scored.csv``)."""
    p = Path(mutants)
    return p.with_name(f"{plain_name(p).stem}_scored.csv")


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
) -> tuple[TableScores, Path, Path | None]:
    """Score the table ``mutants`` with the checkpoints ``models`` and write the result.

    Returns ``(TableScores, output path, Spearman JSON path or None)``. The output keeps every
    input row and column in order, adding per-model scores (ensembles), ``score``, ``score_sem``
    and ``status``; it is written atomically and never onto the input file.
    """
    models = path_list(models, "models")
    out = check_output(Path(output) if output else default_score_output(mutants), mutants, *models)
    check_distinct(models, "model")
    checkpoints = [load_checkpoint(m) for m in models]
    if len({c.kind for c in checkpoints}) > 1:  # their scores are on different scales: the mean follows the widest
        log.warning("an ensemble of different model kinds (%s): their mean is dominated by the kind whose scores "
                    "spread widest", ", ".join(sorted({c.kind for c in checkpoints})))
    table = read_mutant_table(mutants, mutant_col=mutant_col, wt_col=wt_col, pos_col=pos_col, mut_col=mut_col)
    if len(table.mutants) > LARGE_TABLE_ROWS:
        bound_heap_growth()  # bounded memory at some cost in speed (see runtime.py)
    if fitness_col is None:
        fitness_col = detect_fitness_col(table)
    beside = fitness_col is not None and not is_stream(out)  # a stream output has no "beside": it is printed only
    if beside:  # the Spearman is written beside the output: checked before the work
        check_output(out.with_suffix(".spearman.json"), mutants, *models)
    dev = resolve_device(device)
    result = score_table(checkpoints, table, model_names=model_column_names([str(m) for m in models]),
                         n_samples=n_samples, seed=seed, device=dev, offset=offset, strict=strict,
                         fitness_col=fitness_col, batch_size=batch_size, progress=progress)
    with atomic_write(out, "w", newline="") as fh:
        result.frame.to_csv(fh, index=False, na_rep="", float_format=FLOAT_FORMAT)
    json_path = None
    if result.spearman is not None and beside:
        json_path = out.with_suffix(".spearman.json")
        payload = {**result.spearman, "mutants": str(mutants), "models": [str(m) for m in models],
                   "status_summary": result.summary}
        # NaN (too few scorable rows) is not valid JSON: write null.
        payload = {k: (None if isinstance(v, float) and v != v else v) for k, v in payload.items()}
        with atomic_write(json_path, "w") as fh:
            json.dump(payload, fh, indent=2, allow_nan=False)
    return result, out, json_path


# --- scan -----------------------------------------------------------------------------------


def default_scan_output(model: str | os.PathLike) -> Path:
    """``<model stem>_singles.csv`` beside the checkpoint."""
    p = Path(model)
    return p.with_name(f"{p.stem}_singles.csv")


def positions_path(output: str | os.PathLike) -> Path:
    """``<output stem>_positions.csv`` beside ``output``."""
    p = Path(output)
    return p.with_name(f"{p.stem}_positions.csv")


def write_scan(result: ScanResult, output: str | os.PathLike) -> tuple[Path, Path]:
    """Write the scan CSV and its per-position summary (both atomically); return both paths."""
    out, pos = Path(output), positions_path(output)
    with atomic_write(out, "w", newline="") as fh:
        result.frame.to_csv(fh, index=False, float_format=FLOAT_FORMAT)
    with atomic_write(pos, "w", newline="") as fh:
        result.position_summary().to_csv(fh, index=False, float_format=FLOAT_FORMAT)
    return out, pos


def scan_file(
    model: str | os.PathLike,
    output: str | os.PathLike | None = None,
    *,
    plot: str | os.PathLike | None = None,
    n_samples: int | None = None,
    seed: int = 0,
    device: str = "auto",
    batch_size: int = 2048,
    max_per_row: int = 100,
    progress: bool = False,
) -> tuple[ScanResult, Path, Path]:
    """Scan every single substitution of ``model``; write the scan, the position summary and a heatmap.

    Returns ``(result, scan CSV, positions CSV)``.
    """
    out = check_output(output if output is not None else default_scan_output(model), model)
    check_output(positions_path(out), model)
    if plot is not None:
        from .plots import check_figure_path

        check_figure_path(plot, model, outputs=(out, positions_path(out)))
    ckpt = load_checkpoint(model)
    dev = resolve_device(device)
    result = saturation_scan(ckpt, n_samples=n_samples, seed=seed, device=dev, batch_size=batch_size,
                             progress=progress)
    out, pos = write_scan(result, out)
    if plot is not None:
        from .plots import plot_heatmap, save_figure

        save_figure(plot_heatmap(result.matrix(), result.positions, result.focus_seq, title=result.title(),
                                 colorbar_label=result.score_label, max_per_row=max_per_row), plot)
    return result, out, pos


# --- embed ----------------------------------------------------------------------------------


def embed_file(
    model: str | os.PathLike,
    msa: str | os.PathLike,
    output: str | os.PathLike,
    *,
    options: AlignmentOptions | None = None,
    plot: str | os.PathLike | None = None,
    color_by: str = "weight",
    batch_size: int = 1024,
    device: str = "auto",
) -> tuple[Embedding, Path]:
    """Encode the alignment ``msa`` with ``model``, write the latent CSV and optionally a 2-D map.

    ``msa`` is read with the options recorded in the checkpoint; fields set in ``options`` override them.
    """
    colours = color_by if color_by not in ("weight", "identity") else None  # a CSV of values: an input too
    out = check_output(output, model, msa, colours)
    if plot is not None:
        from .plots import check_figure_path

        check_figure_path(plot, model, msa, colours, outputs=(out,))
    ckpt = load_checkpoint(model)
    ckpt.latent_model("embed", model)  # fail before reading the alignment
    dev = resolve_device(device)
    emb = embed_alignment(ckpt, msa, options=options, batch_size=batch_size, device=dev)
    with atomic_write(out, "w", newline="") as fh:
        emb.frame.to_csv(fh, index=False, float_format=FLOAT_FORMAT)
    if plot is not None:
        from .plots import plot_latent, save_figure

        values, label = color_values(emb, color_by, theta=ckpt.info.theta, device=dev)
        coords, xlabel, ylabel = latent_2d(emb.mu)
        aln = emb.alignment
        fig = plot_latent(coords, values, focus_index=aln.focus_index, focus_label=aln.focus_id,
                          xlabel=xlabel, ylabel=ylabel, color_label=label,
                          title=f"Latent space of {ckpt.info.focus_id} family ({aln.N:,} sequences, "
                                f"D = {emb.mu.shape[1]})")
        save_figure(fig, plot)
    return emb, out


# --- training curves ------------------------------------------------------------------------


def plot_history_file(model: str | os.PathLike, plot: str | os.PathLike, *, ckpt: Checkpoint | None = None) -> Path:
    """Draw the training history the checkpoint ``model`` carries (``deepseqvae info --plot``): its training ELBO
    and regulariser per logged step and, where the run held sequences out, their ELBO and importance-weighted
    log-likelihood per evaluation and the step the model keeps. ``ckpt``: that checkpoint, when the caller has
    loaded it already. Returns the figure's path."""
    from .plots import check_figure_path, plot_training_history, save_figure

    check_figure_path(plot, model)
    ckpt = load_checkpoint(model) if ckpt is None else ckpt
    h = ckpt.history or {}
    if not h.get("step"):
        raise CheckpointError(f"{model}: holds no training history to plot (a model of kind "
                              f"'{ckpt.kind}' is not trained step by step)")
    cfg = ckpt.train_config or {}
    refit = h.get("refit_step")
    kept = int(refit[0]) if refit else (int(h["best_step"][-1]) if h.get("best_step") else None)
    run_label = "the refit on every sequence" if refit else "training batches"
    heldout_label = "held-out clusters (first run)" if refit else "held-out sequences"
    bayesian = (ckpt.model_config or {}).get("decoder", "svi") == "svi"
    info = ckpt.info
    fig = plot_training_history(
        h["step"], h["elbo"], h.get("kl_theta", [math.nan] * len(h["step"])), eval_steps=h.get("eval_step"),
        heldout_elbo=h.get("heldout_elbo"), heldout_iwll=h.get("heldout_iwll"), kept_step=kept,
        run_label=run_label, heldout_label=heldout_label, kl_label="KL(θ) / Neff" if bayesian else "penalty / Neff",
        title=f"{info.focus_id}: {ckpt.kind} ({cfg.get('recipe', 'custom')} recipe), N = {info.n_seqs:,}, "
              f"Neff = {info.neff:.1f}")
    return save_figure(fig, plot)


# --- sample ---------------------------------------------------------------------------------


def write_fasta(records: Iterable[GeneratedSequence], path: str | os.PathLike) -> int:
    """Write records atomically (as they come: a generator is not held in memory), one header line and one
    sequence line each; the number written."""
    count = 0
    with atomic_write(Path(path), "w") as fh:
        for rec in records:
            fh.write(f">{rec.header()}\n{rec.seq}\n")
            count += 1
    return count


def sample_file(
    model: str | os.PathLike,
    output: str | os.PathLike,
    *,
    n: int | None = None,
    temperature: float = 1.0,
    seed: int = 0,
    near: str | None = None,
    interpolate: tuple[str, str] | None = None,
    steps: int = 10,
    msa: str | os.PathLike | None = None,
    options: AlignmentOptions | None = None,
    device: str = "auto",
    batch_size: int = 100,
    elbo_samples: int = 20,
    progress: bool = False,
) -> tuple[int, Path]:
    """Generate sequences (prior, ``near`` one sequence, or ``interpolate`` between two) into a FASTA; the number
    written and its path. Drawn sequences are written as they come, so a large ``n`` does not fill memory.

    ``msa`` (for ``near`` / ``interpolate``) is read with the options recorded in the checkpoint;
    fields set in ``options`` override them.
    """
    n = None if n is None else whole_number("n", n, 1)
    steps, batch_size = whole_number("steps", steps, 2), whole_number("batch_size", batch_size, 1)
    elbo_samples = whole_number("elbo_samples", elbo_samples, 1)
    if near is not None and interpolate is not None:  # as the CLI: one way to place the latents
        raise ValueError("near and interpolate cannot be combined")
    check_output(output, model, msa)
    ckpt = load_checkpoint(model)
    ckpt.latent_model("sample", model)  # fail before reading the alignment
    dev = resolve_device(device)
    aln = None
    if near is not None or interpolate is not None:
        if msa is None:
            raise DeepSeqVAEError("--near and --interpolate need --msa, the alignment holding the sequences")
        aln = read_matching_alignment(msa, ckpt, options)
    if interpolate is not None:
        assert aln is not None
        a, b = (aln.codes[find_sequence(aln, i)] for i in interpolate)
        records = interpolate_sequences(ckpt, a, b, steps, device=dev, seed=seed, elbo_samples=elbo_samples)
    else:
        if n is None:
            raise DeepSeqVAEError("give the number of sequences to draw (-n)")
        start = aln.codes[find_sequence(aln, near)] if (aln is not None and near is not None) else None
        records = iter_samples(ckpt, n, temperature=temperature, seed=seed, near=start, device=dev,
                               batch_size=batch_size, elbo_samples=elbo_samples, progress=progress)
    return write_fasta(records, output), Path(output)


# --- classify (EVE's mixture step) ---------------------------------------------------------


@dataclass
class ClassifyRun:
    """What :func:`classify_file` computed and wrote."""

    classification: Classification
    output: Path
    evaluation: Evaluation | None   # with labels only
    written: list[Path]             # every file written, the classes CSV first


def default_classify_output(source: str | os.PathLike) -> Path:
    """``<stem>_classes.csv`` beside the first checkpoint or the scan CSV."""
    p = Path(source)
    return p.with_name(f"{plain_name(p).stem}_classes.csv")


def classify_paths(output: str | os.PathLike) -> dict[str, Path]:
    """Files written beside the classes CSV: ``<stem>_report.md``, ``_labels.csv``, ``_metrics.csv``,
    ``_histogram.png`` and ``_labels.png``."""
    p = Path(output)
    return {"report": p.with_name(f"{p.stem}_report.md"), "labels": p.with_name(f"{p.stem}_labels.csv"),
            "metrics": p.with_name(f"{p.stem}_metrics.csv"), "histogram": p.with_name(f"{p.stem}_histogram.png"),
            "positions": p.with_name(f"{p.stem}_labels.png")}


def scan_scores(models: list[str | os.PathLike], *, protein: str | None = None, n_samples: int | None = None,
                seed: int = 0, device: str = "auto", batch_size: int = 2048, progress: bool = False,
                first: Checkpoint | None = None):
    """Saturation scans of one or more checkpoints of the same protein, averaged (an ensemble). ``first``: the
    first checkpoint, when the caller has loaded it already (one read of a file of up to a GB, not two)."""
    from .classify import ScanScores, mean_scans

    dev = resolve_device(device)
    # every checkpoint before any scan: one of another protein fails now, not after minutes of scanning the others
    checkpoints = [(first if (i == 0 and first is not None) else load_checkpoint(m)).scoring_only()
                   for i, m in enumerate(models)]  # (a resumable file's optimizer state is 4x the weights: dropped)
    for m, other in zip(models[1:], checkpoints[1:], strict=True):
        if diff := checkpoints[0].info.focus_difference(other.info):
            raise ClassifyError(f"{m}: not a model of the protein and numbering of {models[0]} ({diff}): an ensemble "
                                "averages the models of one protein")
    scans = []
    for m, ckpt in zip(models, checkpoints, strict=True):
        if model_kind(ckpt.kind).has_latent:  # a VAE of too few sequences: said here too, not only when it was trained
            check_family_size(m, ckpt.info.neff, len(ckpt.info.positions))
        res = saturation_scan(ckpt, n_samples=n_samples, seed=seed, device=dev, batch_size=batch_size,
                              progress=progress)
        scans.append(ScanScores.from_scan(res, protein=protein or None, source=str(m)))
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
    label_mutant_col: str | None = None,
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
    labelled-variants figure (:func:`classify_paths`); the histogram is drawn when ``plots``. ``label_col`` and
    ``label_mutant_col`` name the label table's columns (:func:`deepseqvae.classify.read_labels`).
    """
    from . import classify as C

    models = path_list(models, "models")
    if sum((bool(models), scan is not None, scores is not None)) != 1:
        raise ClassifyError("give one source of scores: checkpoints (--model) or a scan CSV (--scan)")
    check_distinct(models, "model")
    C.check_retain(C.DEFAULT_RETAIN if retain is None else retain, thresholds)  # before minutes of scanning
    inputs = (*models, scan, labels, prior)
    out = check_output(output, *inputs)
    for key, path in classify_paths(out).items():  # the files written beside it
        if labels is not None or key == "histogram":
            check_output(path, *inputs)
    # read the small inputs first: a bad one fails before minutes of scanning
    pooled = C.load_prior(prior).mixture if prior is not None else None
    table = C.read_labels(labels, label_col=label_col, mutant_col=label_mutant_col) if labels is not None else None
    first = None
    if table is not None and models:  # a label table of another protein fails before the scan, not after it
        first = load_checkpoint(models[0])
        C.choose_protein(table, protein or C.protein_name(first.info.focus_id))
    if scan is not None:
        # the protein: --protein, else the one the label table names, else the scan file's name
        name = protein or (C.choose_protein(table, "") if table is not None and table.proteins is not None else "")
        scores = C.read_scan(scan, name)  # else a classes CSV's own protein_name, else the file's name
        if not scores.protein:
            scores.protein = plain_name(scan).stem.removesuffix("_singles")
    elif models:
        scores = scan_scores(list(models), protein=protein, n_samples=n_samples, seed=seed, device=device,
                             batch_size=batch_size, progress=progress, first=first)
    matched = None
    if table is not None:  # before anything is written: labels of another protein fail here, not after the classes
        matched = C.match_labels(table, scores, protein=scores.protein, offset=offset)
        if not matched.ok.any():
            counts = ", ".join(f"{k} {v}" for k, v in matched.summary().items() if k != "ok")
            raise ClassifyError(f"{labels}: none of its {len(matched.status)} rows can be used for "
                                f"{scores.protein or scores.source} ({counts}): labels of another protein, or another "
                                "numbering (--protein, --offset)?")
    cls = C.classify_scores(scores, prior=pooled,
                            protein_weight=C.PROTEIN_GMM_WEIGHT if protein_weight is None else protein_weight,
                            retain=C.DEFAULT_RETAIN if retain is None else retain, thresholds=thresholds,
                            n_init=C.N_INIT if n_init is None else n_init, seed=gmm_seed, monotone=monotone)
    with atomic_write(out, "w", newline="") as fh:
        cls.frame.to_csv(fh, index=False, float_format=FLOAT_FORMAT)
    written, paths, ev = [out], classify_paths(out), None
    if table is not None:
        ev = C.evaluate(cls, matched)
        for key, frame in (("labels", ev.table), ("metrics", ev.by_retain)):
            with atomic_write(paths[key], "w", newline="") as fh:
                frame.to_csv(fh, index=False, float_format=FLOAT_FORMAT)
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


def classify_prior_file(scans: list[str | os.PathLike], output: str | os.PathLike, *, n_init: int | None = None,
               seed: int = 0):
    """Fit the pooled mixture of several scan CSVs and write it as JSON; returns ``(PooledPrior, path)``."""
    from . import classify as C

    scans = path_list(scans, "scans")
    check_output(output, *scans)
    check_distinct(scans, "scan")  # one protein twice would count double in the pooled fit
    read = [C.read_scan(s) for s in scans]
    for i, a in enumerate(read):  # a copy of one file: the same mutants with the same scores
        for j in range(i):
            b = read[j]
            if a.mutants == b.mutants and np.array_equal(a.delta_elbo, b.delta_elbo):
                raise ClassifyError(f"{scans[i]}: the same scores as {scans[j]} (a copy?); each protein's scan counts "
                                    "once in the pooled mixture")
    prior = C.fit_prior(read, n_init=C.N_INIT if n_init is None else n_init, seed=seed)
    return prior, C.save_prior(prior, output)


# --- batch (many assays through the Snakemake workflow) ------------------------------------


def batch_file(
    reference: str | os.PathLike,
    out: str | os.PathLike,
    *,
    msa_dir: str | os.PathLike = ".",
    dms_dir: str | os.PathLike = ".",
    weights_dir: str | os.PathLike | None = None,
    rows: str | None = None,
    seeds: str | list[int] = "1",
    columns: str = "all",
    samples: int | None = None,
    device: str = "auto",
    train_options: dict | None = None,
    cores: int | None = None,
    keep_going: bool = True,
    snakemake_args: list[str] | tuple[str, ...] = (),
    train_cli=None,
) -> tuple[int, dict[str, str]]:
    """Run every row of the ProteinGym-style ``reference`` through the workflow into ``out``.

    ``train_options`` are ``deepseqvae train`` options by name (None values are left out); with ``train_cli``
    (``deepseqvae.cli.train_command``) they are checked against it before any job runs.
    Returns ``(Snakemake's exit status, {DMS_id: reason} of the failed assays)``; see
    :func:`deepseqvae.batch.run_batch`.
    """
    from .batch import parse_seeds, run_batch

    config = {"reference": str(reference), "msa_dir": str(msa_dir), "dms_dir": str(dms_dir),
              "weights_dir": None if weights_dir is None else str(weights_dir), "rows": rows,
              "seeds": parse_seeds(seeds), "columns": columns, "samples": samples, "device": device,
              "train": {k: v for k, v in (train_options or {}).items() if v is not None}}
    return run_batch(config, out, cores=cores, keep_going=keep_going, snakemake_args=snakemake_args,
                     train_cli=train_cli)
