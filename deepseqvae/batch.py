"""Many proteins at once: a ProteinGym-style reference file run through a Snakemake workflow.

``deepseqvae batch`` (and ``snakemake -s deepseqvae/workflow/Snakefile``) read a reference CSV in
ProteinGym's ``DMS_substitutions.csv`` schema and run, with Snakemake as the scheduler:

    weights (per alignment) -> train (per alignment x seed) -> check (per assay)
    -> score (per assay x seed) -> ensemble, metrics (per assay) -> summary

This module holds everything the workflow's jobs do; the Snakefile only wires files together.

Numbering (ProteinGym): ``mutant`` positions are 1-based on ``target_seq``; the alignment's focus
covers ``target_seq[MSA_start - 1 : MSA_end]``. A model numbers residues as its focus header says
(``NAME/start-end``, else from 1), so the offset added to every mutant position is
``header start - MSA_start``. Mutants are scored against ``target_seq`` as the wild type: where
the focus has another residue than the target (a point difference), ΔELBO is taken relative to
the target's residue there.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import json
import logging
import math
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import pandas as pd

from .alignment import TRAINING_ONLY, AlignmentOptions
from .alphabet import ALPHABET
from .errors import ConfigError, DeepSeqVAEError
from .fileio import atomic_write
from .recipes import check_model_options
from .runtime import SEED_MAX
from .weights import WeightsError, check_theta

log = logging.getLogger(__name__)

#: columns of ProteinGym's reference file that a run needs (other columns are ignored)
REQUIRED_COLUMNS = ("DMS_id", "DMS_filename", "target_seq", "MSA_filename", "MSA_start", "MSA_end",
                    "MSA_theta", "weight_file_name")
#: optional columns (not in ProteinGym's file): for DMS tables not in ProteinGym's format
OPTIONAL_COLUMNS = ("DMS_mutant_column", "DMS_score_column")

#: the Snakefile shipped with the package
SNAKEFILE = Path(__file__).resolve().parent / "workflow" / "Snakefile"

#: name of the score columns in ``scores/<DMS_id>.csv``: one per seed, and the ensemble mean
SCORE_PREFIX = "deepseqvae"
#: ProteinGym directionality of those columns: higher = fitter (their DeepSequence/EVE evol indices are -1)
DIRECTIONALITY = 1

#: the most focus residues that may differ from ``target_seq`` before a row is an error (fraction)
MAX_FOCUS_MISMATCH_FRACTION = 0.05

#: per-rule Snakemake resources; override with the ``resources`` config key or a profile's set-resources
DEFAULT_RESOURCES: dict[str, dict[str, int]] = {
    "weights": {"threads": 2, "mem_mb": 4000, "runtime": 60},
    "train": {"threads": 4, "mem_mb": 8000, "runtime": 1440, "gpu": 0},
    "check": {"threads": 1, "mem_mb": 2000, "runtime": 15},
    "score": {"threads": 4, "mem_mb": 8000, "runtime": 240},
    "ensemble": {"threads": 1, "mem_mb": 2000, "runtime": 15},
    "metrics": {"threads": 1, "mem_mb": 2000, "runtime": 15},
    "summary": {"threads": 1, "mem_mb": 2000, "runtime": 15},
}

INSTALL_HINT = ('the batch workflow needs Snakemake: pip install "deepseqvae[workflow]" '
                '(snakemake>=8 and snakemake-executor-plugin-slurm)')


class BatchError(DeepSeqVAEError):
    """A reference file, a row of it or a batch option is wrong (one line, naming file and row)."""


# --------------------------------------------------------------------------------------------
# Options: rows and seeds
# --------------------------------------------------------------------------------------------


def parse_rows(text: str | None) -> list[int] | None:
    """``"0,3-5"`` -> ``[0, 3, 4, 5]`` (0-based reference rows, sorted, unique); None/"" = all rows."""
    if text is None or not str(text).strip():
        return None
    out: set[int] = set()
    for part in str(text).split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if m is None:
            raise BatchError(f"rows: expected numbers and ranges such as 0,3-5, not {part!r}")
        lo, hi = int(m.group(1)), int(m.group(2) if m.group(2) is not None else m.group(1))
        if hi < lo:
            raise BatchError(f"rows: range {part!r} ends before it starts")
        out.update(range(lo, hi + 1))
    return sorted(out)


def format_rows(rows: list[int]) -> str:
    """The inverse of :func:`parse_rows`: ``[0, 3, 4, 5]`` -> ``"0,3-5"``."""
    runs: list[list[int]] = []  # [first, last] of each run of consecutive rows
    for r in sorted(set(rows)):
        if runs and r == runs[-1][1] + 1:
            runs[-1][1] = r
        else:
            runs.append([r, r])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def parse_seeds(value) -> list[int]:
    """``"1,2,3"`` or ``[1, 2, 3]`` -> ``[1, 2, 3]`` (unique, in order)."""
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    seeds: list[int] = []
    for item in items:
        try:
            seed = int(str(item).strip())
        except ValueError:
            raise BatchError(f"seeds: expected integers such as 1,2,3, not {item!r}") from None
        if not 0 <= seed <= SEED_MAX:  # train's --seed range
            raise BatchError(f"seeds: {seed} is outside 0-{SEED_MAX}")
        if seed not in seeds:
            seeds.append(seed)
    if not seeds:
        raise BatchError("seeds: give at least one seed")
    return seeds


def option_args(options: dict) -> list[str]:
    """``{"steps": 100, "decoder_hidden": "8,16", "flag": True}`` -> CLI arguments of ``train``.

    Keys are option names with ``_`` for ``-``; True is a bare flag, False/None are left out; so
    a new ``train`` option needs no change here or in the workflow.
    """
    args: list[str] = []
    for key, value in options.items():
        if value is None or value is False:
            continue
        flag = "--" + str(key).replace("_", "-")
        if value is True:
            args.append(flag)
        elif isinstance(value, (list, tuple)):
            args += [flag, ",".join(str(v) for v in value)]
        else:
            args += [flag, str(value)]
    return args


#: ``deepseqvae train`` options that change how a training job runs, not the model it saves (resume is bit-exact
#: whatever the checkpoint cadence; a slim checkpoint scores as the full one): changing one does not retrain
RUN_ONLY_TRAIN_OPTIONS = ("checkpoint_every", "slim")


#: ``batch --checkpoint-every``'s default (the one the workflow's jobs recorded before it stopped tracking it)
BATCH_CHECKPOINT_EVERY = 1000


def tracked_train_options(options: dict) -> dict:
    """The training options as the workflow tracks them (a change of one retrains the models; see the Snakefile):
    :data:`RUN_ONLY_TRAIN_OPTIONS` at their defaults, ``checkpoint_every`` at :data:`BATCH_CHECKPOINT_EVERY` and
    ``slim`` left out, so that changing them retrains nothing, and so that the text of runs made before they
    stopped counting (which recorded ``--checkpoint-every 1000``) is unchanged: an upgrade retrains nothing."""
    out = {}
    for key, value in options.items():
        name = str(key).replace("-", "_")
        if name == "checkpoint_every":
            out[key] = BATCH_CHECKPOINT_EVERY if value is not None else None
        elif name not in RUN_ONLY_TRAIN_OPTIONS:
            out[key] = value
    return out


#: ``deepseqvae train`` options the workflow sets itself, and what sets them instead
WORKFLOW_TRAIN_OPTIONS = {
    "--output": "the workflow names the checkpoints (models/<alignment>/seed<S>.pt)",
    "--seed": "the workflow trains one model per seed: give them with --seeds",
    "--device": "give it with batch --device",
    "--theta": "each row's MSA_theta sets it",
    "--weights": "the workflow computes the weights, or reuses those in --weights-dir",
    "--resume": "the workflow resumes a killed training job itself",
    "--progress": "the workflow's jobs run without a progress bar",
    "--no-progress": "the workflow's jobs run without a progress bar",
}
_TRUE = ("", "true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def _train_flags(train_cli) -> dict:
    """``{"--steps": <click.Option>, "--no-refit": ..., ...}``: the long options of the command ``train_cli``."""
    import click

    return {o: p for p in train_cli.params if isinstance(p, click.Option)
            for o in (*p.opts, *p.secondary_opts) if o.startswith("--")}


def merge_train_options(options: dict, items: Sequence[str], *, given: set[str] = frozenset()) -> dict:
    """``options`` (batch's own train options) with ``--train-option NAME=VALUE`` ``items`` added. ``given``: the
    names of batch's options the user typed. An item repeating a name, or naming an option typed as batch's own, is a
    :class:`BatchError`: neither value wins silently."""
    out, extra = dict(options), {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise BatchError(f"--train-option: expected NAME=VALUE, not {item!r}")
        key = name.strip().replace("-", "_")
        if key in extra:
            raise BatchError(f"--train-option {item}: {key} is already given ({key}={extra[key]})")
        if key in out and key in given:
            raise BatchError(f"--train-option {item}: batch's own --{key.replace('_', '-')} gives it already")
        extra[key] = out[key] = value
    return out


#: Snakemake options after which it runs no job: it reports, unlocks, draws or cleans up
NO_RUN_OPTIONS = ("--unlock", "--list-changes", "--lc", "--list-params-changes", "--lp", "--list-input-changes",
                  "--li", "--list-code-changes", "--list-untracked", "--lu", "--summary", "-S", "--detailed-summary",
                  "-D", "--dag", "--rulegraph", "--filegraph", "--list-rules", "--list", "-l", "--list-target-rules",
                  "--lt", "--lint", "--cleanup-metadata", "--cm", "--cleanup-shadow", "--touch", "-t",
                  "--delete-all-output", "--delete-temp-output", "--archive", "--d3dag", "--print-compilation",
                  "--report", "--version", "--containerize", "--generate-unit-tests", "--export-cwl",
                  "--list-conda-envs", "--conda-create-envs-only", "--conda-cleanup-envs")


def runs_no_job(snakemake_args: Sequence[str]) -> str | None:
    """The option of ``snakemake_args`` that makes Snakemake run no job (a dry run, ``--unlock``, a report), or
    None."""
    args = list(snakemake_args)
    for k, a in enumerate(args):
        if a in ("--dry-run", "--dryrun") or re.fullmatch(r"-[A-Za-z]*n[A-Za-z]*", a):
            return "--dry-run"
        if a.split("=", 1)[0] in NO_RUN_OPTIONS:
            return a.split("=", 1)[0]
        executor = a.split("=", 1)[1] if a.startswith("--executor=") else (
            args[k + 1] if a in ("--executor", "-e") and k + 1 < len(args) else None)
        if executor == "dryrun":  # Snakemake's executor that runs nothing
            return "--dry-run"
    return None


def outcome_line(out: str | os.PathLike, started: float, snakemake_args: Sequence[str] = ()) -> str:
    """What a finished ``batch`` run (started at time ``started``) wrote in ``out``: a dry run (Snakemake's -n) or a
    run of no job (``--unlock``, a report), the summary written now, one already up to date, or none (the run stopped
    before it, e.g. --until)."""
    summary = Path(out) / "summary.md"
    option = runs_no_job(snakemake_args)
    if option == "--dry-run":
        return f"Dry run: nothing trained, scored or summarised in {out}"
    if option is not None:
        return f"Snakemake {option}: nothing trained, scored or summarised in {out}"
    if summary.is_file() and summary.stat().st_mtime >= started - 1:  # -1: file systems with coarse times
        return f"Wrote {out}/scores/ and {summary}"
    if summary.is_file():
        return f"{summary} is up to date (not written again)"
    return f"Not summarised: {summary} was not written (the run stopped before the summary)"


def check_train_options(options: dict, train_cli) -> dict:
    """Check ``deepseqvae train`` options by name (as in ``--train-option NAME=VALUE``) against
    ``train``'s own, values included, before any job runs; return them as :func:`option_args` passes them.
    ``train_cli``: the ``train`` click command (``deepseqvae.cli.train_command``; the CLI hands it down, so this
    module does not import the CLI that imports it).

    On/off flags may be given as text (``refit=false`` -> ``--no-refit``, ``compile=true`` -> ``--compile``).
    Raises :class:`BatchError` naming the option: one ``train`` does not have, one the workflow sets
    itself (:data:`WORKFLOW_TRAIN_OPTIONS`, the alignment options), or a value ``train`` would reject.
    """
    import click

    flags = _train_flags(train_cli)
    names = {"fmt": "msa_format"}
    reserved = dict(WORKFLOW_TRAIN_OPTIONS)
    for name in AlignmentOptions().reading():
        flag = "--" + names.get(name, name).replace("_", "-")
        reserved[flag] = "the workflow reads every alignment with the same options (batch --columns)"
    allowed = [f for f in flags if f not in reserved]
    out: dict = {}
    for key, value in options.items():
        flag = "--" + str(key).strip().replace("_", "-")
        where = f"train option {key}={value}"
        if value is None or value is False:
            out[key] = value
            continue
        param = flags.get(flag)
        if param is None:
            close = difflib.get_close_matches(flag, allowed, n=1, cutoff=0.8)
            raise BatchError(f"{where}: 'deepseqvae train' has no option {flag}"
                             + (f" (did you mean {close[0]}?)" if close else ""))
        if flag in reserved:
            raise BatchError(f"{where}: {flag} cannot be set for the workflow's training jobs; {reserved[flag]}")
        if param.is_flag and not isinstance(value, bool):
            text = str(value).strip().lower()
            if text not in _TRUE + _FALSE:
                raise BatchError(f"{where}: {flag} is an on/off flag; give {key}=true or {key}=false")
            if text in _TRUE:
                value = True
            elif param.secondary_opts:  # --refit/--no-refit: false is the other flag of the pair
                other = param.secondary_opts[0] if flag in param.opts else param.opts[0]
                key, value = other[2:].replace("-", "_"), True
            else:
                value = None
        out[key] = value
    args = option_args(out)
    try:
        ctx = train_cli.make_context("train", ["MSA.a2m", *args])
    except click.UsageError as exc:
        param = getattr(exc, "param", None)
        key = next((k for k in out if param is not None and "--" + str(k).replace("_", "-") in param.opts
                    + param.secondary_opts), None)
        where = f"train option {key}={out[key]}" if key is not None else f"train options {' '.join(args)}"
        raise BatchError(f"{where}: {' '.join(exc.format_message().split())}") from None
    try:  # options that parse but build no model (--decoder-hidden 100,501: the sparsity tiles do not divide 501)
        check_model_options(ctx.params["recipe"], ctx.params)
    except ConfigError as exc:
        raise BatchError(f"train options {' '.join(args)}: {exc}") from None
    return out


# --------------------------------------------------------------------------------------------
# The reference file and the plan
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Assay:
    """One row of the reference file: a DMS assay scored with the models of one alignment."""

    row: int                  # 0-based row of the reference file
    dms_id: str
    dms_path: Path
    target_seq: str
    alignment: str            # key of the alignment (see Plan.alignments)
    msa_start: int            # 1-based position in target_seq of the focus's first residue
    msa_end: int
    mutant_col: str | None    # None: detected (ProteinGym: 'mutant')
    score_col: str | None     # None: DMS_score, else detected

    @property
    def where(self) -> str:
        return f"row {self.row} ({self.dms_id})"


@dataclass(frozen=True)
class AlignmentJob:
    """One alignment: its weights, and one model per seed shared by every row that uses it."""

    key: str
    msa_path: Path
    theta: float
    weights_path: Path        # precomputed (read), or weights/<key>.npy (computed, relative to the output folder)
    precomputed: bool
    rows: tuple[int, ...]


@dataclass
class Plan:
    """Everything a batch run does, resolved from its configuration (see :func:`make_plan`)."""

    reference: Path
    assays: dict[str, Assay]
    alignments: dict[str, AlignmentJob]
    seeds: list[int]
    train_options: dict
    samples: int | None
    device: str
    align_options: AlignmentOptions   # how every alignment is read (recorded in its checkpoints)
    resources: dict[str, dict]

    def model_path(self, key: str, seed: int) -> str:
        return f"models/{key}/seed{seed}.pt"

    def weights_file(self, key: str) -> str:
        return str(self.alignments[key].weights_path)


def _abs(base: Path, value) -> Path:
    """``value`` as an absolute path (relative to ``base``), resolved (``..`` taken out, symbolic links followed): one
    spelling per file, so that Snakemake does not see ``/data/x.a2m``, ``/lab/../data/x.a2m`` and a link to it as
    different inputs."""
    p = Path(str(value)).expanduser()
    return (p if p.is_absolute() else Path(base) / p).resolve()


def _key(name: str) -> str:
    """Name of an alignment's models: its file stem, after its folder when MSA_filename has one
    (``BLAT_ECOLX/msa.a2m`` -> ``BLAT_ECOLX_msa``); the same whichever rows are run."""
    path = Path(name)
    stem = path.name
    for suffix in (".a2m", ".a3m", ".fasta", ".fa", ".afa"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    if path.parent.name not in ("", ".", ".."):
        stem = f"{path.parent.name}_{stem}"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem) or "msa"


def _cell(frame: pd.DataFrame, i: int, col: str) -> str:
    value = frame.at[i, col] if col in frame.columns else ""
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value).strip()


def read_reference(path: str | os.PathLike, rows: list[int] | None = None) -> pd.DataFrame:
    """The selected rows of a reference CSV, checked: required columns, DMS_id unique in the whole file, numbers.

    The index keeps the 0-based row number of the file. Raises :class:`BatchError` naming the file
    (and the row) on any problem.
    """
    path = Path(path)
    return _selected_rows(_reference_table(path), path, rows)


def _reference_table(path: Path) -> pd.DataFrame:
    """Every row of a reference CSV, as text, its required columns checked."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise BatchError(f"{path}: reference file not found") from None
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise BatchError(f"{path}: cannot read reference file ({' '.join(str(exc).split())})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        header = " ".join(map(str, frame.columns))
        other = next((name for d, name in ((";", "semicolons"), ("\t", "tabs")) if d in header), None)
        hint = f"; its header is separated by {other}: a reference is comma-separated" if other else ""
        raise BatchError(f"{path}: missing column(s) {', '.join(missing)} (ProteinGym's DMS_substitutions.csv "
                         f"schema: {', '.join(REQUIRED_COLUMNS)}){hint}")
    return frame


def _selected_rows(frame: pd.DataFrame, path: Path, rows: list[int] | None) -> pd.DataFrame:
    """``rows`` of the reference table ``frame`` read from ``path`` (all when None), each checked (see
    :func:`read_reference`)."""
    ids = frame["DMS_id"].str.strip()
    dup = ids[ids.duplicated() & (ids != "")]  # in the whole file: a job finds its row by DMS_id
    if len(dup):
        first = int(ids[ids == dup.iloc[0]].index[0])
        raise BatchError(f"{path}: row {dup.index[0]}: DMS_id {dup.iloc[0]!r} appears twice (also row {first}); a "
                         "DMS_id names one row of the file")
    if rows is not None:
        bad = [r for r in rows if r >= len(frame)]
        if bad:
            raise BatchError(f"{path}: row {bad[0]} does not exist (rows 0-{len(frame) - 1})")
        frame = frame.iloc[rows]
    if frame.empty:
        raise BatchError(f"{path}: no rows to run")
    for i in frame.index:
        for col in ("DMS_id", "DMS_filename", "MSA_filename", "target_seq"):
            if not _cell(frame, i, col):
                raise BatchError(f"{path}: row {i}: empty {col}")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", _cell(frame, i, "DMS_id")):
            raise BatchError(f"{path}: row {i}: DMS_id {_cell(frame, i, 'DMS_id')!r} must be a file name "
                             "(ASCII letters, digits, _ . -)")
        where = f"{path}: row {i} ({_cell(frame, i, 'DMS_id')})"
        number = {}
        for col, kind in (("MSA_start", int), ("MSA_end", int), ("MSA_theta", float)):
            try:
                value = float(_cell(frame, i, col))
                number[col] = kind(value)
            except (ValueError, OverflowError):  # OverflowError: int(inf) of 1e400
                raise BatchError(f"{where}: {col} is not a number: {_cell(frame, i, col)!r}") from None
            if kind is int and number[col] != value:  # 1.5 would be read as residue 1
                raise BatchError(f"{where}: {col} is not a whole number: {_cell(frame, i, col)!r}")
        target = _cell(frame, i, "target_seq").upper()
        if (bad := next((k for k, a in enumerate(target) if a not in ALPHABET), None)) is not None:
            # the mutants are scored against target_seq's residues: a letter the model has none for fails there
            raise BatchError(f"{where}: target_seq has {target[bad]!r} at position {bad + 1}: only the 20 amino "
                             f"acids ({ALPHABET}) can be a wild type")
        # what the jobs would find late (the weights job, the check job) is found here, before any job
        start, end, n = number["MSA_start"], number["MSA_end"], len(_cell(frame, i, "target_seq"))
        if not 1 <= start <= end <= n:
            raise BatchError(f"{where}: MSA_start-MSA_end {start}-{end} is not a region of target_seq (1-{n})")
        try:
            check_theta(number["MSA_theta"])
        except WeightsError as exc:
            raise BatchError(f"{where}: MSA_theta: {exc}") from None
    return frame


@dataclass(frozen=True)
class _Source:
    """One (alignment file, theta) of the whole reference file: the name of its jobs and the weights it reads."""

    key: str               # models/<key>/, weights/<key>.npy
    first_row: int         # its first row in the file
    weights_name: str      # the weight_file_name its rows give, else <key's file name>_theta_<θ>.npy


#: the theta a weight file's name gives (ProteinGym's ``<MSA>_theta_0.2.npy``): "theta" after a separator or at the
#: start, before one or the end; the last such is the name's (``THETA1_HUMAN_theta_0.2``: 0.2)
_THETA_IN_NAME = re.compile(r"(?:^|[_.-])theta_?([0-9]*\.?[0-9]+(?:e-?[0-9]+)?)(?=$|[_.-])", re.IGNORECASE)


def _alignment_sources(reference: Path, frame: pd.DataFrame, msa_dir: Path,
                       weights_dir: Path | None) -> dict[tuple[Path, float], _Source]:
    """Every (alignment file, theta) of the whole reference ``frame`` (every row, selected or not), named in file
    order, so that a name depends on the file and its rows only, never on the rows run: an alignment is named after
    the first spelling of its file (:func:`_key`; a file another file's name already took gets ``_<row>``), and each
    theta after its first in the file gets ``_theta<θ>``; a name given twice gets ``_<row>`` too. Each one's weights:
    the ``weight_file_name`` its rows give (rows that give none take it), else ``<name>_theta_<θ>.npy``, read from
    ``weights_dir`` when that file exists. Raises :class:`BatchError` where rows disagree (with a ``weights_dir``: two
    names of weights for one alignment and theta; one weights file used for two; a name that gives another theta
    than ``MSA_theta``). Rows without a finite theta or a file name are left out here (a selected one is refused by
    :func:`read_reference`)."""
    out: dict[tuple[Path, float], _Source] = {}
    base_of: dict[Path, str] = {}      # file -> its name (from its first spelling)
    file_of: dict[str, Path] = {}      # name -> the file that took it
    first_theta: dict[Path, float] = {}
    used: set[str] = set()
    given: dict[tuple[Path, float], tuple[str, int]] = {}  # the weight_file_name rows give, and the first row giving it
    ids = [d.strip() for d in frame["DMS_id"]]
    wnames = frame["weight_file_name"] if "weight_file_name" in frame else [""] * len(frame)
    for i, (name, theta_text, wname) in enumerate(zip(frame["MSA_filename"], frame["MSA_theta"], wnames, strict=True)):
        name, wname = name.strip(), wname.strip()
        try:
            theta = float(theta_text)
        except ValueError:
            continue
        if not name or not math.isfinite(theta):
            continue
        path = _abs(msa_dir, name)
        if wname:
            earlier = given.setdefault((path, theta), (wname, i))
            if earlier[0] != wname and weights_dir is not None:
                raise BatchError(f"{reference}: row {i} ({ids[i]}): weight_file_name {wname} but row {earlier[1]} "
                                 f"names {earlier[0]} for the same alignment and theta: one of them is wrong")
        if (path, theta) in out:
            continue
        if path not in base_of:
            stem = _key(name)
            base_of[path] = stem if file_of.setdefault(stem, path) == path else f"{stem}_{i}"
        base = base_of[path]
        key = base if first_theta.setdefault(path, theta) == theta else f"{base}_theta{theta:g}"
        while key in used:  # a name given already (a file named like another's theta): made unique by the row
            key = f"{key}_{i}"
        used.add(key)
        out[(path, theta)] = _Source(key, i, f"{base}_theta_{theta:g}.npy")
    used_by: dict[Path, tuple[int, Path, float]] = {}
    for (path, theta), source in out.items():
        wname, row = given.get((path, theta), (source.weights_name, source.first_row))
        out[(path, theta)] = replace(source, weights_name=wname)
        if weights_dir is None or not (weights_dir / wname).is_file():
            if weights_dir is not None and (path, theta) in given:  # named, not there: computed, and said
                log.info("%s: row %d (%s): weight_file_name %s is not in %s: its weights are computed", reference,
                         row, ids[row], wname, weights_dir)
            continue
        where = f"{reference}: row {row} ({ids[row]})"
        named = _THETA_IN_NAME.findall(Path(wname).stem)
        if named and not math.isclose(float(named[-1]), theta):
            # the weights would be used as theta's, and the model labelled so (a row of 0.01 took 0.2's weights)
            raise BatchError(f"{where}: weight_file_name {wname} names theta {named[-1]} but MSA_theta is "
                             f"{theta:g}: fix one of them")
        taken = used_by.setdefault(weights_dir / wname, (row, path, theta))
        if taken[1:] != (path, theta):  # one weights file (given or by default), two thetas or alignments
            raise BatchError(f"{where}: weight_file_name {wname} is also row {taken[0]}'s, for {taken[1].name} at "
                             f"theta {taken[2]:g}: weights belong to one alignment and one theta")
    return out


def make_plan(config: dict) -> Plan:
    """Resolve a batch configuration (the Snakemake config) into a :class:`Plan`.

    Config keys: ``reference`` (CSV), ``msa_dir``, ``dms_dir``, optional ``weights_dir``, ``rows``
    ("0,3-5"), ``seeds`` ([1, 2] or "1,2"), ``train`` (dict of ``deepseqvae train`` options),
    ``samples``, ``device``, ``columns`` ("all" or "uppercase"), ``align`` (other
    ``read_alignment`` keywords), ``resources`` ({rule: {resource: value}}), ``base_dir`` (what
    relative paths are relative to; default the current directory). Files that do not exist do
    not stop the plan: the jobs of their rows fail alone, with a one-line message (``deepseqvae
    batch`` checks them before it starts Snakemake: :func:`check_files`).
    """
    base = Path(config.get("base_dir") or os.getcwd())
    if not config.get("reference"):
        raise BatchError("config: 'reference' (the reference CSV) is required")
    reference = _abs(base, config["reference"])
    table = _reference_table(reference)  # every row: the names of alignments depend on all of them
    frame = _selected_rows(table, reference, parse_rows(config.get("rows")))
    msa_dir = _abs(base, config.get("msa_dir") or ".")
    dms_dir = _abs(base, config.get("dms_dir") or ".")
    weights_dir = _abs(base, config["weights_dir"]) if config.get("weights_dir") else None

    assays: dict[str, Assay] = {}
    alignments: dict[str, AlignmentJob] = {}
    sources = _alignment_sources(reference, table, msa_dir, weights_dir)
    by_msa: dict[tuple[Path, float], str] = {}
    for i in frame.index:
        cell = functools.partial(_cell, frame, i)
        msa_path = _abs(msa_dir, cell("MSA_filename"))
        theta = float(cell("MSA_theta"))
        key = by_msa.get((msa_path, theta))
        if key is None:
            source = sources[(msa_path, theta)]
            key = source.key
            pre = weights_dir / source.weights_name if weights_dir is not None else None
            precomputed = pre is not None and pre.is_file()
            alignments[key] = AlignmentJob(key, msa_path, theta, pre if precomputed else Path(f"weights/{key}.npy"),
                                           precomputed, (int(i),))
            by_msa[(msa_path, theta)] = key
        else:
            job = alignments[key]
            alignments[key] = replace(job, rows=job.rows + (int(i),))
        assays[cell("DMS_id")] = Assay(
            row=int(i), dms_id=cell("DMS_id"), dms_path=_abs(dms_dir, cell("DMS_filename")),
            target_seq=cell("target_seq").upper(), alignment=key,
            msa_start=int(float(cell("MSA_start"))), msa_end=int(float(cell("MSA_end"))),
            mutant_col=cell("DMS_mutant_column") or None, score_col=cell("DMS_score_column") or None)

    resources = {rule: dict(values) for rule, values in DEFAULT_RESOURCES.items()}
    for rule, values in (config.get("resources") or {}).items():
        if rule not in resources:
            raise BatchError(f"config: resources for unknown rule {rule!r} (rules: {', '.join(resources)})")
        resources[rule].update(values or {})
    align = dict(config.get("align") or {})
    align["columns"] = config.get("columns") or align.get("columns") or "all"
    training_only = sorted(set(align) & set(TRAINING_ONLY))
    if training_only:
        raise BatchError(f"config: {', '.join(training_only)} in 'align' is a train option "
                         f"(train: {{{training_only[0]}: ...}}, or --train-option {training_only[0]}=...)")
    try:
        align_options = AlignmentOptions(**align)
    except TypeError:
        known = ", ".join(f.name for f in fields(AlignmentOptions))
        raise BatchError(f"config: unknown key in 'align' ({', '.join(sorted(align))}; known: {known})") from None
    samples = config.get("samples")
    return Plan(reference=reference, assays=assays, alignments=alignments,
                seeds=parse_seeds(config.get("seeds", [1])), train_options=dict(config.get("train") or {}),
                samples=int(samples) if samples not in (None, "") else None,
                device=str(config.get("device") or "auto"), align_options=align_options, resources=resources)


#: config keys a check job's result depends on: which file lists the assay and on which row does not, nor do the rows
#: run, the resources, or the weights (a renamed reference, a row inserted above, another --samples rerun no check)
CHECK_CONFIG_KEYS = ("msa_dir", "dms_dir", "base_dir", "columns", "align")
#: a score job's: the check's, the samples and the device
SCORE_CONFIG_KEYS = CHECK_CONFIG_KEYS + ("samples", "device")
#: config keys that name a file or folder: :func:`job_config` gives them as absolute paths
PATH_CONFIG_KEYS = ("msa_dir", "dms_dir")


def job_config(config: dict, rule: str) -> dict:
    """What a ``rule`` ("check" or "score") job's result depends on beyond its assay's own row (the Snakefile tracks
    both): :data:`CHECK_CONFIG_KEYS` or :data:`SCORE_CONFIG_KEYS`. Paths are absolute (``base_dir`` is then not
    needed), so that another spelling of the same folder (``../data`` from one folder, ``/lab/data`` from another)
    does not rerun the jobs. The job finds its row by DMS_id (:func:`job_plan`)."""
    keys = SCORE_CONFIG_KEYS if rule == "score" else CHECK_CONFIG_KEYS
    out = {k: config[k] for k in keys if config.get(k) not in (None, "", {})}
    base = Path(config.get("base_dir") or os.getcwd())
    for key in PATH_CONFIG_KEYS:
        if key in out:
            out[key] = str(_abs(base, out[key]))
    out.pop("base_dir", None)
    return out


def job_plan(config: dict, reference: str | os.PathLike, dms_id: str) -> Plan:
    """The plan of one assay's job: ``config`` (:func:`job_config`) on the row of ``reference`` whose DMS_id is
    ``dms_id``, found by that id (its row number is not tracked: a row inserted above it reruns nothing)."""
    try:
        ids = [s.strip() for s in pd.read_csv(reference, dtype=str, keep_default_na=False,
                                              usecols=["DMS_id"])["DMS_id"]]  # as _cell reads them
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise BatchError(f"{reference}: cannot read reference file ({' '.join(str(exc).split())})") from None
    if dms_id not in ids:
        raise BatchError(f"{reference}: no row has DMS_id {dms_id!r} (the reference file changed during the run?)")
    return make_plan({**config, "reference": str(reference), "rows": str(ids.index(dms_id))})


def align_args(options: AlignmentOptions) -> list[str]:
    """The alignment options that differ from the defaults, as options of ``deepseqvae weights`` / ``train``."""
    return options.reading_args()


# --------------------------------------------------------------------------------------------
# Numbering check (per assay)
# --------------------------------------------------------------------------------------------


@dataclass
class NumberingCheck:
    """How an assay's numbering maps onto its alignment's focus (written to checks/<DMS_id>.json)."""

    dms_id: str
    offset: int                         # added to every mutant position: header start - MSA_start
    header_start: int                   # residue number of the focus's first residue in the model
    msa_start: int
    msa_end: int
    n_compared: int                     # modelled focus residues compared with target_seq
    focus_mismatches: list[str]         # e.g. ["F64L"]: focus residue, target position, target residue
    n_mutants: int
    n_wt_mismatch_target: int           # DMS mutants whose wild-type letter is not target_seq's

    def to_json(self) -> dict:
        return self.__dict__.copy()


def check_numbering(assay: Assay, focus_id: str, focus_seq: str, positions) -> tuple[int, int, list[str]]:
    """Compare the modelled focus residues with ``target_seq`` under ``MSA_start``.

    Returns ``(offset, header_start, mismatches)``. Raises :class:`BatchError` when the focus
    does not fit in ``target_seq`` or differs from it at more than
    :data:`MAX_FOCUS_MISMATCH_FRACTION` of the compared residues.
    """
    from .alignment import focus_region

    region = focus_region(focus_id)
    header_start = region[0] if region is not None else 1
    offset = header_start - assay.msa_start
    target = assay.target_seq
    mismatches: list[str] = []
    outside: list[int] = []
    for pos, aa in zip(positions, focus_seq, strict=True):
        t = int(pos) - offset  # 1-based position in target_seq
        if not assay.msa_start <= t <= min(assay.msa_end, len(target)):  # the region the alignment covers
            outside.append(t)
        elif target[t - 1] != aa:
            mismatches.append(f"{aa}{t}{target[t - 1]}")
    prefix = f"{assay.where}: "
    if outside:
        raise BatchError(f"{prefix}the focus '{focus_id}' reaches position {outside[-1]} of target_seq, outside "
                         f"MSA_start-MSA_end {assay.msa_start}-{assay.msa_end} (target_seq has {len(target)} "
                         f"residues; offset {offset})")
    if len(mismatches) > MAX_FOCUS_MISMATCH_FRACTION * max(len(focus_seq), 1):
        hint = ""
        found = target.find(focus_seq) + 1  # only a contiguous focus (every residue modelled) can be found
        if found > 0 and len(positions):
            start = found - (int(positions[0]) - header_start)
            if start != assay.msa_start:
                hint = f"; the focus occurs in target_seq from position {start}: should MSA_start be {start}?"
        raise BatchError(f"{prefix}the alignment's focus '{focus_id}' disagrees with target_seq at "
                         f"{len(mismatches)} of {len(focus_seq)} residues (first: {', '.join(mismatches[:3])}; "
                         f"MSA_start {assay.msa_start}, offset {offset}){hint}")
    return offset, header_start, mismatches


def _read_dms(assay: Assay):
    from .errors import MutantColumnError
    from .tables import MUTANT_COLUMN_FIX, read_mutant_table

    if not assay.dms_path.is_file():
        raise BatchError(f"{assay.where}: DMS file not found: {assay.dms_path}")
    try:
        return read_mutant_table(assay.dms_path, mutant_col=assay.mutant_col)
    except MutantColumnError as exc:  # score's options do not reach the workflow: the reference's column does
        raise BatchError(f"{assay.where}: " + str(exc).replace(
            MUTANT_COLUMN_FIX, "name the mutant column in the reference's DMS_mutant_column")) from None


def check_assay(plan: Plan, dms_id: str, output: str | os.PathLike) -> NumberingCheck:
    """Check one assay's numbering against its alignment's focus; write the result as JSON."""
    from .mutants import resolve_mutants

    assay = plan.assays[dms_id]
    job = plan.alignments[assay.alignment]
    if not job.msa_path.is_file():
        raise BatchError(f"{assay.where}: alignment not found: {job.msa_path}")
    aln = plan.align_options.read(job.msa_path)
    offset, header_start, mismatches = check_numbering(assay, aln.focus_id, aln.focus_seq, aln.positions)
    table = _read_dms(assay)
    if assay.score_col is not None:  # looked up as the metrics job will (numeric_column), not found after training
        from .errors import MutantTableError
        from .tables import numeric_column

        try:
            numeric_column(table, assay.score_col)
        except MutantTableError:
            raise BatchError(f"{assay.where}: DMS_score_column {assay.score_col!r} is not a column of "
                             f"{assay.dms_path} (columns: {', '.join(map(str, table.frame.columns))})") from None
    # the DMS's wild-type letters against target_seq (ProteinGym's numbering), not the focus
    target = assay.target_seq
    resolved = resolve_mutants(table.mutants, target, list(range(1, len(target) + 1)),
                               separators=table.separators)
    n_wt = sum(r.reason == "wt_mismatch" for r in resolved)
    if n_wt > 0.5 * len(resolved):
        from .mutants import detect_shift

        first = next(r for r in resolved if r.reason == "wt_mismatch")
        status = first.status.replace(" but focus has ", " but target_seq has ")  # compared with target_seq here
        shift = detect_shift([s for r in resolved for s in r.substitutions], target, range(1, len(target) + 1))
        hint = (f"; its positions look {abs(shift[0])} {'higher' if shift[0] < 0 else 'lower'} than target_seq's "
                f"(so shifted, {shift[1]} of {shift[2]} wild-type letters match): number the DMS file on target_seq, "
                "or make target_seq the sequence it is numbered on" if shift else "")
        raise BatchError(f"{assay.where}: {n_wt} of {len(resolved)} mutants of {assay.dms_path} do not match "
                         f"target_seq ({status}); mutant positions must be 1-based on target_seq{hint}")
    check = NumberingCheck(dms_id, offset, header_start, assay.msa_start, assay.msa_end, aln.L, mismatches,
                           len(resolved), n_wt)
    if mismatches:
        log.warning("%s: focus differs from target_seq at %s; scored against target_seq", assay.where,
                    ", ".join(mismatches))
    log.info("%s: offset %d (focus starts at %d, MSA_start %d)", assay.where, offset, header_start, assay.msa_start)
    with atomic_write(output, "w") as fh:
        json.dump(check.to_json(), fh, indent=2)
    return check


# --------------------------------------------------------------------------------------------
# Scoring (per assay and seed), ensemble and metrics (per assay)
# --------------------------------------------------------------------------------------------


def target_checkpoint(ckpt, assay: Assay, offset: int):
    """``ckpt`` with the target's residues as wild type at the modelled positions.

    The model itself is unchanged; ΔELBO is then taken relative to ``target_seq`` also where the
    alignment's focus has another residue (e.g. GFP's focus F64 against the assay's L64).
    """
    target = assay.target_seq
    seq = "".join(target[int(p) - offset - 1] for p in ckpt.info.positions)
    return replace(ckpt, info=replace(ckpt.info, focus_seq=seq))


def score_assay(plan: Plan, dms_id: str, model: str | os.PathLike, check: str | os.PathLike,
                output: str | os.PathLike, *, seed: int = 0) -> pd.DataFrame:
    """Score every mutant of one assay with one model; write ``mutant, score, score_sem, status``."""
    from .checkpoint import load_checkpoint
    from .score import output_column_names, score_table
    from .weights import resolve_device

    assay = plan.assays[dms_id]
    offset = int(json.loads(Path(check).read_text())["offset"])
    ckpt = target_checkpoint(load_checkpoint(model), assay, offset)
    table = _read_dms(assay)
    result = score_table([ckpt], table, n_samples=plan.samples, seed=seed, device=resolve_device(plan.device),
                         offset=offset)
    cols = output_column_names(table.frame.columns)  # suffixed where the DMS has such columns (PTEN's score)
    frame = pd.DataFrame({"mutant": table.mutants, "score": result.frame[cols["score"]].to_numpy(),
                          "score_sem": result.frame[cols["score_sem"]].to_numpy(),
                          "status": result.frame[cols["status"]].to_numpy()})
    with atomic_write(output, "w", newline="") as fh:
        frame.to_csv(fh, index=False, float_format="%.6g")
    return frame


def seed_column(seed: int) -> str:
    return f"{SCORE_PREFIX}_seed{seed}"


ENSEMBLE_COLUMN = f"{SCORE_PREFIX}_ensemble"


def ensemble_frame(seed_files: dict[int, str | os.PathLike]) -> pd.DataFrame:
    """``mutant, status, <one column per seed>, ensemble`` from the per-seed score files."""
    frames = {s: pd.read_csv(p, dtype={"mutant": str, "status": str}, keep_default_na=False,
                             na_values={"score": [""], "score_sem": [""]}) for s, p in seed_files.items()}
    first = next(iter(frames.values()))
    out = pd.DataFrame({"mutant": first["mutant"], "status": first["status"]})
    for s, f in frames.items():
        if len(f) != len(first) or not (f["mutant"].to_numpy() == first["mutant"].to_numpy()).all():
            raise BatchError(f"{seed_files[s]}: rows differ from {next(iter(seed_files.values()))}")
        out[seed_column(s)] = pd.to_numeric(f["score"], errors="coerce")
    out[ENSEMBLE_COLUMN] = out[[seed_column(s) for s in frames]].mean(axis=1, skipna=False)
    return out


def write_ensemble(seed_files: dict[int, str | os.PathLike], scores_out: str | os.PathLike,
                   unscored_out: str | os.PathLike) -> tuple[int, int]:
    """ProteinGym's layout: scored mutants with one column per seed and the ensemble; the others
    with their reason. Returns ``(scored, unscored)``."""
    frame = ensemble_frame(seed_files)
    ok = frame[ENSEMBLE_COLUMN].notna().to_numpy()
    with atomic_write(scores_out, "w", newline="") as fh:
        frame.loc[ok].drop(columns="status").to_csv(fh, index=False, float_format="%.6g")
    with atomic_write(unscored_out, "w", newline="") as fh:
        frame.loc[~ok, ["mutant", "status"]].to_csv(fh, index=False)
    return int(ok.sum()), int((~ok).sum())


# --- ProteinGym's metrics (proteingym/performance_DMS_benchmarks.py), written afresh; Spearman and AUC: score ---


def _minmax(x: np.ndarray) -> np.ndarray:
    return (x - np.min(x)) / (np.max(x) - np.min(x))


def _dcg(ranks: np.ndarray, gains: np.ndarray, k: int) -> float:
    keep = (ranks <= k) & (gains != 0)
    return float(np.sum(gains[keep] / np.log2(ranks[keep] + 1)))


def ndcg(y_true: np.ndarray, y_score: np.ndarray, top: float = 10) -> float:
    """ProteinGym's NDCG: gains = min-max scaled DMS scores, cut at the top ``top`` % by rank.

    k = floor(n · top / 100); DCG sums gain / log2(rank + 1) over the k best-predicted mutants,
    normalised by the DCG of the ideal order (0 when no gain falls in the top k).
    """
    y_true, y_score = np.asarray(y_true, float), np.asarray(y_score, float)
    k = int(np.floor(len(y_true) * top / 100))
    gains = _minmax(y_true)
    ranks = np.argsort(np.argsort(-y_score)) + 1
    dcg = _dcg(ranks, gains, k)
    if dcg == 0:
        return 0.0
    ideal = np.argsort(np.argsort(-gains)) + 1
    return dcg / _dcg(ideal, gains, k)


def top_recall(y_true: np.ndarray, y_score: np.ndarray, top_true: float = 10, top_model: float = 10) -> float:
    """ProteinGym's top-10 % recall: the share of the truly top 10 % that the model puts in its top 10 %."""
    y_true, y_score = np.asarray(y_true, float), np.asarray(y_score, float)
    best_true = y_true >= np.percentile(y_true, 100 - top_true)
    best_model = y_score >= np.percentile(y_score, 100 - top_model)
    return float((best_true & best_model).sum() / best_true.sum()) if best_true.sum() > 0 else 0.0


def _fitness(assay: Assay, table) -> tuple[str | None, np.ndarray | None, np.ndarray | None]:
    from .errors import MutantTableError
    from .tables import detect_fitness_col, numeric_column

    col = assay.score_col or detect_fitness_col(table)
    try:
        fitness = numeric_column(table, col) if col else None
    except MutantTableError:  # said as the check job says it (the row and its column), not as a table's error
        raise BatchError(f"{assay.where}: DMS_score_column {col!r} is not a column of {assay.dms_path} (columns: "
                         f"{', '.join(map(str, table.frame.columns))})") from None
    bins = numeric_column(table, "DMS_score_bin") if "DMS_score_bin" in table.frame.columns else None
    return col, fitness, bins


def assay_metrics(plan: Plan, dms_id: str, seed_files: dict[int, str | os.PathLike],
                  check: str | os.PathLike, output: str | os.PathLike) -> dict:
    """Spearman (per seed and ensemble), AUC, NDCG and top-10 % recall of one assay; JSON out."""
    from .score import roc_auc, spearman

    assay = plan.assays[dms_id]
    table = _read_dms(assay)
    frame = ensemble_frame(seed_files)
    checked = json.loads(Path(check).read_text())
    col, fitness, bins = _fitness(assay, table)
    score = frame[ENSEMBLE_COLUMN].to_numpy()
    res: dict = {"DMS_id": dms_id, "row": assay.row, "alignment": assay.alignment, "fitness_col": col,
                 "n_mutants": len(frame), "n_scored": int(np.isfinite(score).sum()),
                 "offset": checked["offset"], "focus_mismatches": checked["focus_mismatches"],
                 "unscored": {k: int(v) for k, v in frame.loc[~np.isfinite(score), "status"]
                              .str.split(":").str[0].value_counts().items()}}
    if fitness is not None:
        use = np.isfinite(score) & np.isfinite(fitness)
        res["n_with_fitness"] = int(use.sum())
        res["spearman"] = spearman(fitness[use], score[use])
        res["spearman_seeds"] = {str(s): spearman(fitness[use], frame[seed_column(s)].to_numpy()[use])
                                 for s in seed_files}
        res["ndcg"] = ndcg(fitness[use], score[use]) if use.sum() > 1 else float("nan")
        res["top10_recall"] = top_recall(fitness[use], score[use]) if use.sum() > 0 else float("nan")
        if bins is not None:
            ub = use & np.isfinite(bins)
            res["auc"] = roc_auc(score[ub], bins[ub] > 0.5)
    res = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in res.items()}
    with atomic_write(output, "w") as fh:
        json.dump(res, fh, indent=2)
    return res


# --------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------

SUMMARY_COLUMNS = ("DMS_id", "n_mutants", "n_scored", "spearman", "auc", "ndcg", "top10_recall", "offset")
#: the summary's columns of counts (not averaged over assays)
COUNT_COLUMNS = ("n_mutants", "n_scored")


def summary_frame(metrics: list[dict], seeds: list[int]) -> pd.DataFrame:
    """One row per assay and the average over assays (``DMS_id = "average"``)."""
    rows = []
    for m in metrics:
        row = {c: m.get(c) for c in SUMMARY_COLUMNS}
        for s in seeds:
            row[f"spearman_seed{s}"] = (m.get("spearman_seeds") or {}).get(str(s))
        row["focus_mismatches"] = " ".join(m.get("focus_mismatches") or [])
        rows.append(row)
    frame = pd.DataFrame(rows)
    if not frame.empty:
        numeric = [c for c in frame.columns if c not in ("DMS_id", "offset", "focus_mismatches", *COUNT_COLUMNS)]
        avg = {c: pd.to_numeric(frame[c], errors="coerce").mean() for c in numeric}
        # the counts stay whole numbers (an empty cell in the average row), not floats written as 1640.0000
        frame = pd.concat([frame, pd.DataFrame([{"DMS_id": "average", **avg}])], ignore_index=True)
        for c in (*COUNT_COLUMNS, "offset"):  # whole numbers, not 1640.0000
            frame[c] = pd.to_numeric(frame[c], errors="coerce").astype("Int64")
    return frame


def _fmt(v, digits: int = 3) -> str:
    """A table cell: '–' for missing, ``digits`` decimals (0 = a whole number with thousands commas)."""
    if v is None or v is pd.NA or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, (int, float, np.integer, np.floating)):
        return f"{float(v):,.0f}" if digits == 0 else f"{float(v):.{digits}f}"
    return str(v)


def write_summary(plan: Plan, metric_files: list[str | os.PathLike], out_dir: str | os.PathLike = ".",
                  failed: dict[str, str] | None = None, name: str = "summary") -> pd.DataFrame:
    """``<name>.csv``, ``<name>.md`` and ``<name>.png`` (Spearman per assay) in ``out_dir``.

    ``failed`` (assay -> reason) are listed under the table (a partial summary). Writing the full
    summary (``name="summary"``) removes the ``summary-partial.*`` files an earlier failed run left.
    """
    out_dir = Path(out_dir)
    metrics = [json.loads(Path(p).read_text()) for p in metric_files if Path(p).is_file()]
    frame = summary_frame(metrics, plan.seeds)
    with atomic_write(out_dir / f"{name}.csv", "w", newline="") as fh:
        frame.to_csv(fh, index=False, float_format="%.4f")
    lines = [f"# deepseqvae batch: {plan.reference.name}", "",
             (f"Seeds {', '.join(map(str, plan.seeds))}; columns = {plan.align_options.columns}; "
              f"training options {json.dumps(plan.train_options)}; K = {plan.samples or 'automatic'}."),
             (f"Scores: `scores/<DMS_id>.csv`, columns `{seed_column(plan.seeds[0])}`… and `{ENSEMBLE_COLUMN}` "
              f"(ΔELBO, higher = fitter: ProteinGym directionality {DIRECTIONALITY})."), "",
             "| DMS_id | mutants | scored | Spearman (ensemble) | per seed | AUC | NDCG | top-10% recall | offset |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in frame.to_dict("records"):
        seeds = " / ".join(_fmt(r.get(f"spearman_seed{s}")) for s in plan.seeds)
        lines.append(f"| {r['DMS_id']} | {_fmt(r.get('n_mutants'), 0)} | {_fmt(r.get('n_scored'), 0)} | "
                     f"{_fmt(r.get('spearman'))} | {seeds} | {_fmt(r.get('auc'))} | {_fmt(r.get('ndcg'))} | "
                     f"{_fmt(r.get('top10_recall'))} | {_fmt(r.get('offset'), 0)} |")
    notes = [f"- {m['DMS_id']}: focus differs from target_seq at {' '.join(m['focus_mismatches'])}; "
             "scored against target_seq" for m in metrics if m.get("focus_mismatches")]
    notes += [f"- {m['DMS_id']}: not scored: " + ", ".join(f"{k} {v}" for k, v in m["unscored"].items())
              for m in metrics if m.get("unscored")]
    notes += [f"- {m['DMS_id']}: no fitness column (DMS_score_column is empty and the DMS file has none of "
              "DMS_score, fitness, log_fitness, score): scored, but no Spearman, NDCG or recall"
              for m in metrics if "fitness_col" in m and not m["fitness_col"]]
    notes += [f"- {k}: FAILED: {v}" for k, v in (failed or {}).items()]
    assays = frame[frame["DMS_id"] != "average"] if not frame.empty else frame
    have = {c: int(pd.to_numeric(assays[c], errors="coerce").notna().sum()) for c in ("spearman", "auc", "ndcg")
            if c in assays.columns}
    if len(assays) and any(v < len(assays) for v in have.values()):  # an average over fewer assays: say so
        notes.append("- average: over the assays that have each value (" + ", ".join(
            f"{'Spearman' if c == 'spearman' else c.upper()} {v} of {len(assays)}" for c, v in have.items()) + ")")
    if notes:
        lines += ["", *notes]
    with atomic_write(out_dir / f"{name}.md", "w") as fh:
        fh.write("\n".join(lines) + "\n")
    _plot(frame, plan.seeds, out_dir / f"{name}.png")
    if name == "summary":
        remove_partial_summary(out_dir)
        for path in _summary_files(out_dir, STALE_SUMMARY):  # the new summary replaces what an earlier one set aside
            path.unlink(missing_ok=True)
    return frame


PARTIAL_SUMMARY = "summary-partial"


STALE_SUMMARY = "summary-stale"


def set_aside_stale_summary(out_dir: str | os.PathLike, failed: Iterable[str] = ()) -> str | None:
    """Move ``summary.md/.csv/.png`` to ``summary-stale.*`` when it no longer describes the outputs: an assay's
    metrics changed after it was written (a failed or interrupted run, which writes no summary, after retraining or
    rescoring some assays), or an assay it lists has no metrics any more or ``failed`` in this run (Snakemake deletes a
    failed job's output, and with summary.md in place the next run would do nothing and report nothing). Returns
    the assay that made it stale, or None (nothing moved)."""
    out_dir = Path(out_dir)
    summary = out_dir / "summary.md"
    if not summary.is_file():
        return None
    written = summary.stat().st_mtime_ns
    stale = next((m.stem for m in sorted(out_dir.glob("metrics/*.json")) if m.stat().st_mtime_ns > written), None)
    why = "changed since"
    if stale is None:
        try:
            listed = [str(d) for d in pd.read_csv(out_dir / "summary.csv", dtype=str, keep_default_na=False)["DMS_id"]
                      if d != "average"]  # keep_default_na: a DMS_id "NA" is an id
        except (OSError, ValueError, KeyError, pd.errors.ParserError):
            listed = []
        failed = set(failed)
        stale = next((d for d in listed if d in failed or not (out_dir / "metrics" / f"{d}.json").is_file()), None)
        why = "failed or are gone"
    if stale is None:
        return None
    for path, aside in zip(_summary_files(out_dir, "summary"), _summary_files(out_dir, STALE_SUMMARY), strict=True):
        if path.exists():
            os.replace(path, aside)
    log.warning("%s described the outputs before this run (the metrics of %s %s): moved to %s.md", summary, stale,
                why, out_dir / STALE_SUMMARY)
    return stale


def _summary_files(out_dir: str | os.PathLike, name: str) -> list[Path]:
    """``<name>.md``, ``.csv`` and ``.png`` in ``out_dir``: the files of one summary."""
    return [Path(out_dir, f"{name}.{ext}") for ext in ("md", "csv", "png")]


def remove_partial_summary(out_dir: str | os.PathLike) -> None:
    """Delete ``summary-partial.md/.csv/.png`` (a failed run's summary) from ``out_dir``."""
    for path in _summary_files(out_dir, PARTIAL_SUMMARY):
        path.unlink(missing_ok=True)


def _plot(frame: pd.DataFrame, seeds: list[int], path: Path) -> None:
    """``summary.png``: the ensemble Spearman per assay, the single seeds as dots."""
    from .plots import plot_spearman_bars, save_figure

    per_seed = [pd.to_numeric(frame[c], errors="coerce").to_numpy() for c in (f"spearman_seed{s}" for s in seeds)
                if c in frame.columns]
    fig = plot_spearman_bars(frame["DMS_id"].astype(str).tolist(), pd.to_numeric(frame["spearman"], errors="coerce"),
                             np.array(per_seed) if per_seed else None)
    save_figure(fig, path, dpi=120)


# --------------------------------------------------------------------------------------------
# Running the workflow
# --------------------------------------------------------------------------------------------


def snakemake_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("snakemake") is not None


def write_config(config: dict, out: str | os.PathLike, name: str = "batch_config.json") -> Path:
    """Write the resolved config (absolute paths) to ``<out>/<name>`` and return its path."""
    path = Path(out) / name
    text = json.dumps(config, indent=2, sort_keys=True)
    if not path.is_file() or path.read_text() != text:  # unchanged: keep the file (and its mtime)
        with atomic_write(path, "w") as fh:
            fh.write(text)
    return path


def _option_values(args: list[str] | tuple[str, ...], name: str) -> list[str]:
    """The values given to the long option ``name`` in ``args`` (``--name VALUE`` or ``--name=VALUE``)."""
    values = []
    for k, a in enumerate(args):
        if a == name and k + 1 < len(args):
            values.append(args[k + 1])
        elif a.startswith(name + "="):
            values.append(a[len(name) + 1:])
    return values


#: what makes Snakemake rerun a finished job in ``deepseqvae batch`` (its default less "code"; ``--rerun-triggers``
#: among the Snakemake options replaces it)
RERUN_TRIGGERS = ("mtime", "params", "input", "software-env")


def snakemake_command(config_file: str | os.PathLike, out: str | os.PathLike, *, cores: int | None = None,
                      keep_going: bool = True, extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The Snakemake command line that runs the workflow into ``out``."""
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--directory", str(out),
           "--configfile", str(config_file), "--rerun-incomplete"]
    if not any(a == "--rerun-triggers" or a.startswith("--rerun-triggers=") for a in extra):
        # Snakemake's "code" trigger reruns a job when its rule's text changed: a new deepseqvae whose Snakefile
        # was edited would retrain every finished model, though what a model is (its options, theta, seed, device,
        # files) is in its params and inputs, and a change of deepseqvae's own code is invisible to it anyway.
        cmd += ["--rerun-triggers", *RERUN_TRIGGERS]
    if keep_going:
        cmd.append("--keep-going")
    executor = any(a in ("--executor", "-e", "--profile") or a.startswith(("--executor=", "--profile="))
                   for a in extra)
    executor = executor or any(v != "none" for v in _option_values(extra, "--workflow-profile"))
    if cores is not None:
        cmd += ["--cores", str(cores)]
    elif not executor and not any(a in ("--cores", "-c", "--jobs", "-j") for a in extra):
        cmd += ["--cores", "1"]
    return cmd + list(extra)


#: the files Snakemake reads a profile folder from: config.yaml, profile.yaml, or either for a
#: minimum Snakemake version (config.v8+.yaml)
_PROFILE_FILE = re.compile(r"(?:profile|config)(?:\.v\d+\+)?\.yaml")


def check_workflow_profile(snakemake_args: list[str] | tuple[str, ...]) -> None:
    """Raise :class:`BatchError` unless each ``--workflow-profile`` in ``snakemake_args`` is one
    Snakemake finds (it ignores a missing one without a word).

    As Snakemake looks it up: the path as given (relative to the current directory), else
    ``profiles/<it>`` there, else ``profiles/<it>`` beside the Snakefile (``--workflow-profile
    slurm`` is the shipped SLURM profile); a folder must hold a ``config.yaml`` (or ``profile.yaml``);
    ``none`` means no profile.
    """
    for value in _option_values(snakemake_args, "--workflow-profile"):
        if value == "none":
            continue
        candidates = [Path(value), Path("profiles") / value, SNAKEFILE.parent / "profiles" / value]
        found = next((p for p in candidates if p.exists()), None)
        if found is None:
            looked = "" if Path(value).is_absolute() else (f" (looked for {value}, profiles/{value} and "
                                                           f"{candidates[2]})")
            raise BatchError(f"--workflow-profile {value}: no such profile folder{looked}; a Snakemake profile is a "
                             "folder holding a config.yaml")
        if found.is_dir() and not any(_PROFILE_FILE.fullmatch(f.name) for f in found.iterdir() if f.is_file()):
            raise BatchError(f"--workflow-profile {value}: the folder {found} has no config.yaml (a Snakemake "
                             "profile is a folder holding a config.yaml)")
    profiles = [v for name in ("--workflow-profile", "--profile") for v in _option_values(snakemake_args, name)
                if v != "none"]
    blocks = [a.split("=", 1)[0] for a in snakemake_args if a.split("=", 1)[0] in ("--set-resources", "--set-threads")]
    if profiles and blocks:  # Snakemake replaces the profile's whole block with the command line's
        log.warning("%s on the command line replaces the whole %s block of the profile %s (training may lose its GPU "
                    "and partition there): change it in a copy of the profile instead", blocks[0],
                    blocks[0].lstrip("-"), profiles[0])


def check_files(plan: Plan) -> None:
    """Raise :class:`BatchError` naming the reference file and the first row whose alignment or DMS
    file does not exist, before any job runs (the count of such rows too)."""
    missing: list[tuple[str, str]] = []
    complete: list[int] = []  # rows with both files
    for assay in sorted(plan.assays.values(), key=lambda a: a.row):
        msa = plan.alignments[assay.alignment].msa_path
        if not msa.is_file():
            missing.append((f"{assay.where}: alignment not found: {msa}", "MSA_filename or --msa-dir"))
        elif not assay.dms_path.is_file():
            missing.append((f"{assay.where}: DMS file not found: {assay.dms_path}", "DMS_filename or --dms-dir"))
        else:
            complete.append(assay.row)
    if missing:
        first, fix = missing[0]
        more = f"; {len(missing) - 1} more row(s) lack a file" if len(missing) > 1 else ""
        rows = (f"run the {len(complete)} row(s) that have both with --rows {format_rows(complete)}" if complete
                else "no selected row has both files")
        raise BatchError(f"{plan.reference}: {first}{more} (fix {fix}; {rows})")


def assay_jobs(plan: Plan, dms_id: str) -> list[tuple[str, str, str]]:
    """``(rule, log, output)`` of every job an assay needs, in the workflow's order, relative to the
    output folder (see the Snakefile)."""
    assay = plan.assays[dms_id]
    key = assay.alignment
    jobs = [] if plan.alignments[key].precomputed else [("weights", f"logs/weights/{key}.log", f"weights/{key}.npy")]
    jobs += [("train", f"logs/train/{key}_seed{s}.log", plan.model_path(key, s)) for s in plan.seeds]
    jobs.append(("check", f"logs/check/{dms_id}.log", f"checks/{dms_id}.json"))
    jobs += [("score", f"logs/score/{dms_id}_seed{s}.log", f"work/scores/{dms_id}/seed{s}.csv") for s in plan.seeds]
    jobs += [("ensemble", f"logs/ensemble/{dms_id}.log", f"scores/{dms_id}.csv"),
             ("metrics", f"logs/metrics/{dms_id}.log", f"metrics/{dms_id}.json")]
    return jobs


def _error_line(log_file: Path) -> str | None:
    """The last ``Error...`` line of a job's log, else its last line; None when it is empty."""
    lines = [ln.strip() for ln in log_file.read_text(errors="replace").splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("Error")]
    return errors[-1] if errors else (lines[-1] if lines else None)


def collect_failures(plan: Plan, out: str | os.PathLike, since_ns: int = 0) -> dict[str, str]:
    """Assays with a job that failed in this run, with the last error line of that job's log.

    A job failed in this run when its log was written at or after ``since_ns`` (``st_mtime_ns``
    of the run's start) and its output does not exist (Snakemake deletes the output of a failed
    job). Logs of earlier runs are ignored, and so are assays whose jobs did not run (Snakemake
    stopped before them). An assay is reported with its first failed job, its alignment's
    included (a failed training job fails every assay of that alignment).
    """
    out = Path(out)
    failed = {}
    for dms_id in plan.assays:
        for rule, log_name, output in assay_jobs(plan, dms_id):
            log_file = out / log_name
            if (log_file.is_file() and log_file.stat().st_mtime_ns >= since_ns
                    and not (out / output).exists()):
                failed[dms_id] = _error_line(log_file) or f"the {rule} job failed without a message ({log_name})"
                break
    return failed


def _now_ns(folder: Path) -> int:
    """The time now on the clock of the file system of ``folder`` (that of the jobs' logs)."""
    import tempfile

    fd, name = tempfile.mkstemp(prefix=".batch-start-", dir=folder)
    try:
        return os.fstat(fd).st_mtime_ns
    finally:
        os.close(fd)
        os.unlink(name)


def logged(log_file: str | os.PathLike, func, *args, **kwargs):
    """Run ``func(*args, **kwargs)`` for a ``run:`` rule of the Snakefile, writing its error to
    ``log_file`` as one ``Error: ...`` line, as the command-line jobs do, before raising it."""
    with open(log_file, "w") as fh:
        try:
            return func(*args, **kwargs)
        except DeepSeqVAEError as exc:
            fh.write(f"Error: {exc}\n")
            raise
        except Exception as exc:
            fh.write(f"Error: {type(exc).__name__}: {' '.join(str(exc).split())}\n")
            raise


#: how long an interrupted Snakemake may take to stop its jobs and release its lock before it is killed (seconds)
SNAKEMAKE_STOP_SECONDS = 60


def _spawn_own_session(cmd: list[str], **popen) -> subprocess.Popen:
    """Start ``cmd`` in a session (and process group) of its own, with SIGINT at its default even where this process
    ignores it (a batch started in a script's background). ``start_new_session`` is done by the C fork-exec, where a
    ``preexec_fn`` ran Python between fork and exec (which can deadlock a threaded caller, such as a notebook's kernel);
    with no controlling terminal, Snakemake is not stopped by SIGTTOU when it writes to one (``stty tostop``)."""
    import signal
    import threading

    restore = None
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # an ignored signal stays ignored across exec, a handled one is reset to its default: handled for the start,
        # by a handler that does nothing (a Ctrl-C meanwhile cannot raise in the middle of Popen)
        restore = signal.signal(signal.SIGINT, lambda *_: None)
    try:
        return subprocess.Popen(cmd, start_new_session=True, **popen)
    finally:
        if restore is not None:
            signal.signal(signal.SIGINT, restore)


#: Snakemake's lock files in <out>/.snakemake/locks (other files there are not its locks)
_LOCK_FILE = re.compile(r"\d+\.(?:input|output)\.lock")
#: where batch records the pid of the Snakemake it started (in Snakemake's own folder of the output)
SNAKEMAKE_PID_FILE = Path(".snakemake") / "deepseqvae-batch.pid"


def _locked(out: Path) -> bool:
    """Whether Snakemake's lock files are in ``out`` (a run going on, or left by a killed one)."""
    locks = out / ".snakemake" / "locks"
    return locks.is_dir() and any(_LOCK_FILE.fullmatch(f.name) and f.is_file() for f in locks.iterdir())


def _running_snakemake(out: Path) -> int | None:
    """The pid of the Snakemake an earlier batch started in ``out``, if that process still runs."""
    try:
        pid = int((out / SNAKEMAKE_PID_FILE).read_text().split()[0])
        if pid <= 0:
            return None
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):  # no file, no process (or another user's: not ours to name)
        return None
    return pid


def _run_snakemake(cmd: list[str], out: Path | None = None) -> int:
    """Run Snakemake to its end; its exit status. Interrupted (Ctrl-C, or SIGTERM made an interrupt by the command
    line), Snakemake is asked to stop as Ctrl-C asks it, and waited for while it stops its jobs and releases the
    working folder's lock: subprocess.run killed it within a quarter second, leaving the lock (the next run then
    failed until --unlock) and, on SIGTERM, Snakemake and its jobs running on."""
    import signal

    # Snakemake's local jobs stop on the SIGINT a terminal's Ctrl-C sends the whole foreground group; Snakemake itself
    # then waits for them and releases its lock. In a session of its own, it and its jobs get that SIGINT from here,
    # whatever interrupted this process (Ctrl-C, or a SIGTERM made an interrupt by the command line)
    proc = _spawn_own_session(cmd)
    if out is not None:  # for a later batch that finds the folder locked: is this run still going?
        with contextlib.suppress(OSError):
            (out / SNAKEMAKE_PID_FILE).parent.mkdir(parents=True, exist_ok=True)
            (out / SNAKEMAKE_PID_FILE).write_text(f"{proc.pid}\n")
    try:
        return proc.wait()
    except KeyboardInterrupt:
        log.warning("interrupted: stopping Snakemake and its jobs (up to %d s)", SNAKEMAKE_STOP_SECONDS)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=SNAKEMAKE_STOP_SECONDS)
        except (subprocess.TimeoutExpired, KeyboardInterrupt):  # too long, or a second Ctrl-C: it and its jobs
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            log.warning("Snakemake was killed with its jobs before it stopped: if the next run says the folder is "
                        "locked, run it once with --unlock")
        raise


def run_batch(config: dict, out: str | os.PathLike, *, cores: int | None = None, keep_going: bool = True,
              snakemake_args: list[str] | tuple[str, ...] = (), train_cli=None) -> tuple[int, dict[str, str]]:
    """Run the workflow for ``config`` into ``out`` with Snakemake; return (exit status, failed assays).

    Checked before Snakemake starts, each an error naming what is wrong: the plan (the reference
    file), that every row's alignment and DMS file exist (:func:`check_files`), the training
    options (:func:`check_train_options`, given ``train_cli``, the ``train`` click command), any ``--workflow-profile``
    (:func:`check_workflow_profile`). The failed assays are those with a job that failed in this
    run (:func:`collect_failures`); then ``summary-partial.md/.csv/.png`` summarises the assays
    that finished and lists the failed ones with their error (the workflow's own ``summary.md``
    needs every assay). A partial summary of an earlier run is removed.
    """
    if not snakemake_available():
        raise BatchError(INSTALL_HINT)
    out = Path(out).resolve()
    plan = make_plan(config)
    check_files(plan)
    train = plan.train_options if train_cli is None else check_train_options(plan.train_options, train_cli)
    check_workflow_profile(snakemake_args)
    config = {**config, "base_dir": str(Path(config.get("base_dir") or os.getcwd()).resolve())}
    if train != plan.train_options:
        config["train"] = train
        plan = replace(plan, train_options=train)
    out.mkdir(parents=True, exist_ok=True)
    dry = runs_no_job(snakemake_args) is not None  # a dry run, --unlock, a report: outputs left as they are
    # a run of no job reads its own copy: batch_config.json stays the last real run's (README's snakemake line); in a
    # folder with none yet, it is written (nothing to keep, and the snakemake line then works)
    no_run_copy = dry and (out / "batch_config.json").is_file()
    if not dry and "--nolock" not in snakemake_args and _locked(out):
        # refused before its config is written: the running run's later jobs (a cluster's) read that file again
        pid = _running_snakemake(out)
        if pid is not None:  # batch was killed, its Snakemake runs on: --unlock would pull its lock from under it
            raise BatchError(f"{out} is locked by a Snakemake run still going in it (pid {pid}, started by a batch "
                             f"that was killed): wait for it to end, or stop it and its jobs with kill -INT -{pid}")
        raise BatchError(f"{out} is locked by another Snakemake run in it; if none is running (a killed run left its "
                         "lock), run this command once with --unlock")
    cfg = write_config(config, out, ".batch_config.no-run.json" if no_run_copy else "batch_config.json")
    cmd = snakemake_command(cfg, out, cores=cores, keep_going=keep_going, extra=snakemake_args)
    log.info("running %s", " ".join(cmd))
    started = _now_ns(out)
    try:
        status = _run_snakemake(cmd, out)
    except KeyboardInterrupt:  # what ran before the interrupt may have changed metrics a summary described
        if not dry:
            set_aside_stale_summary(out)
        raise
    finally:
        if no_run_copy:
            cfg.unlink(missing_ok=True)
    failed: dict[str, str] = {}
    if not dry:
        remove_partial_summary(out)
        if status != 0:
            failed = collect_failures(plan, out, started)
            set_aside_stale_summary(out, failed)
            done = [out / "metrics" / f"{d}.json" for d in plan.assays if d not in failed]
            if failed and any(p.is_file() for p in done):
                write_summary(plan, done, out, failed=failed, name=PARTIAL_SUMMARY)
    return status, failed
