"""Self-describing checkpoints: weights, configs, focus sequence and numbering in one file.

A checkpoint is a plain dict of tensors and Python literals saved with ``torch.save`` and loaded
with ``torch.load(..., weights_only=True)``, so loading never runs arbitrary pickled code.
Scoring needs nothing but this file (no training alignment); the options the training alignment
was read with are recorded too, so it can be read again the same way.

This is the one module that knows the model kinds: :data:`KINDS` maps a checkpoint's ``kind`` to
the class that rebuilds it, its scoring interface and whether it has a latent space. A new kind
(a classifier, an EVE-style model) is one entry here.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import signal
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__
from .alignment import AlignmentOptions
from .alphabet import AA_TO_CODE, ALPHABET
from .errors import CheckpointError, OutputError
from .fileio import atomic_write
from .independent import IndependentModel
from .model import VAE, VAEConfig
from .runtime import MODEL_INIT_LOCK
from .score import MutationScorer, VAEScorer

log = logging.getLogger(__name__)

FORMAT = "deepseqvae-checkpoint"
FORMAT_VERSION = 2  # 2: the first encoder layer is stored (20L, H) (gather-sum layout)


@dataclass
class ModelInfo:
    """Everything about the data a model was trained on that scoring needs."""

    focus_id: str                      # name of the focus (wild-type) record
    focus_seq: str                     # (L,) modelled residues of the focus sequence
    positions: list[int]               # residue number of every modelled column, (L,)
    n_seqs: int                        # sequences in the training alignment (after filtering)
    neff: float                        # effective number of sequences (sum of weights)
    theta: float                       # reweighting identity threshold 1 - theta
    alignment: str = ""                # path of the training alignment, for the record only
    alphabet: str = ALPHABET           # one-hot alphabet order
    # how the training alignment was read (focus, numbering, format, filters); older checkpoints
    # have none and get the defaults
    alignment_options: AlignmentOptions = field(default_factory=AlignmentOptions)
    # digest of the training data (codes and weights, :func:`data_digest`): a resume checks it is the same data;
    # older checkpoints have none
    data_digest: str = ""

    def __post_init__(self) -> None:
        self.positions = [int(p) for p in self.positions]
        if len(self.positions) != len(self.focus_seq):
            raise ValueError("positions and focus_seq differ in length")
        if not isinstance(self.alignment_options, AlignmentOptions):  # a dict, as stored in the file
            self.alignment_options = AlignmentOptions.from_dict(self.alignment_options)

    @property
    def focus_codes(self) -> np.ndarray:
        """``(L,)`` int8 codes of the focus (wild-type) sequence."""
        return np.array([AA_TO_CODE[a] for a in self.focus_seq], dtype=np.int8)

    def focus_difference(self, other: ModelInfo) -> str:
        """How ``other``'s modelled focus differs from this one's, in words ("" where it does not): the numbered
        residues (first and last, count), else the first residue that differs and how many do."""
        def span(positions: list[int]) -> str:
            return f"{positions[0]}-{positions[-1]} ({len(positions)} columns)" if positions else "none"

        if list(self.positions) != list(other.positions):
            return f"modelled residues {span(self.positions)} against {span(other.positions)}"
        diffs = [(p, a, b) for p, a, b in zip(self.positions, self.focus_seq, other.focus_seq, strict=True) if a != b]
        if not diffs:
            return ""
        p, a, b = diffs[0]
        return f"residue {p} is {a} against {b}" + (f" ({len(diffs)} residues differ)" if len(diffs) > 1 else "")

    @classmethod
    def from_alignment(cls, aln, weights: np.ndarray, theta: float) -> ModelInfo:
        """The record of a model trained on ``aln`` (an :class:`~deepseqvae.alignment.Alignment`)."""
        return cls(focus_id=aln.focus_id, focus_seq=aln.focus_seq, positions=list(aln.positions),
                   n_seqs=int(aln.N), neff=float(weights.sum()), theta=float(theta), alignment=str(aln.path),
                   alignment_options=aln.options, data_digest=data_digest(aln.codes, weights))


def _residue_range(positions: list[int]) -> str:
    """'1-60', or '-5 to 54' where a number is negative (a numbering that starts before the protein)."""
    if not positions:
        return ""
    first, last = positions[0], positions[-1]
    return f"{first} to {last}" if min(first, last) < 0 else f"{first}-{last}"


def data_digest(codes: np.ndarray, weights: np.ndarray) -> str:
    """A short digest of training data: int8 codes (N, L) and weights (N,) (SHA-256, 16 hex digits)."""
    h = hashlib.sha256(np.ascontiguousarray(codes, dtype=np.int8).tobytes())
    h.update(np.ascontiguousarray(weights, dtype=np.float64).tobytes())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class ModelKind:
    """How to rebuild, score and use the model of one checkpoint kind."""

    model_class: type[torch.nn.Module]                        # the nn.Module stored in the checkpoint
    build: Callable[[dict[str, Any]], torch.nn.Module]        # model_config dict -> model (untrained)
    scorer: Callable[[torch.nn.Module], MutationScorer]       # model -> its scoring interface
    has_latent: bool                                          # an encoder and decoder: embed and sample work


#: the model kinds a checkpoint can hold, by the ``kind`` string stored in it
KINDS: dict[str, ModelKind] = {
    "vae": ModelKind(VAE, lambda config: VAE(VAEConfig(**config)), VAEScorer, has_latent=True),
    "independent": ModelKind(IndependentModel, IndependentModel.from_config, lambda model: model,
                             has_latent=False),
}


def kind_of(model: torch.nn.Module) -> str:
    """The ``kind`` string of a model instance (what :class:`Checkpoint` stores)."""
    for name, spec in KINDS.items():
        if isinstance(model, spec.model_class):
            return name
    raise TypeError(f"no checkpoint kind for {type(model).__name__}")


def model_kind(kind: str) -> ModelKind:
    """The registry entry of ``kind``; a :class:`CheckpointError` for an unknown kind."""
    try:
        return KINDS[kind]
    except (KeyError, TypeError):  # TypeError: a kind that is not even a name (a list)
        raise CheckpointError(f"unknown model kind {kind!r} (known: {', '.join(KINDS)})") from None


@dataclass
class Checkpoint:
    """In-memory form of a checkpoint file."""

    kind: str                          # "vae" or "independent"
    model_config: dict[str, Any]       # asdict(VAEConfig) (or the independent model's config)
    state: dict[str, torch.Tensor]     # model state_dict
    info: ModelInfo
    train_config: dict[str, Any] = field(default_factory=dict)
    step: int = 0                      # optimisation steps done
    optimizer: dict[str, Any] | None = None
    rng_state: torch.Tensor | None = None
    history: dict[str, list[float]] = field(default_factory=dict)  # logged training curves
    train_state: dict[str, torch.Tensor] | None = None  # raw weights when ``state`` holds their moving average
    average_state: dict[str, torch.Tensor] | None = None  # the moving average when ``state`` holds the best
    #                                                       held-out snapshot instead (early stopping)
    eval_rng_state: list[torch.Tensor] | None = None  # the held-out estimates' two generators (a resume continues
    #                                                   their draws, so its evaluations, and what they keep, are exact)
    source: str = field(default="", compare=False, repr=False)  # the file it was loaded from (messages), not saved

    def __repr__(self) -> str:  # the dataclass's printed every weight: ~50,000 characters for a notebook cell
        info = self.info
        source = f", source={self.source!r}" if self.source else ""
        return (f"Checkpoint(kind={self.kind!r}, focus={info.focus_id!r}, L={len(info.focus_seq)}, N={info.n_seqs}, "
                f"Neff={info.neff:.1f}, step={self.step}{source})")

    @property
    def resumable(self) -> bool:
        """Whether ``train --resume`` can continue it: it holds its optimizer state (not saved ``--slim``)."""
        return self.optimizer is not None

    def scoring_only(self) -> Checkpoint:
        """This checkpoint without what only a resume needs (optimizer state, random state, raw and averaged
        weights beside the scored ones): ``train --slim``. Scores, scans, embeds and samples the same."""
        return replace(self, optimizer=None, rng_state=None, train_state=None, average_state=None,
                       eval_rng_state=None)

    def scorer(self) -> MutationScorer:
        """The model with its weights, as the scoring interface of its kind (on the CPU, eval mode)."""
        return model_kind(self.kind).scorer(build_model(self))

    def latent_model(self, what: str, path: str | os.PathLike | None = None) -> VAE:
        """The model for an operation that needs a latent space (``what``: "embed", "sample", ...).

        A model without one raises :class:`CheckpointError` naming the file and the operation.
        """
        if not model_kind(self.kind).has_latent:
            where = f"{path}: " if path is not None else ""
            raise CheckpointError(f"{where}{what} needs a VAE checkpoint, but this model's kind is "
                                  f"'{self.kind}' (it has no latent space); train with --model vae")
        return build_model(self)


@contextlib.contextmanager
def _interrupt_deferred() -> Iterator[None]:
    """Hold a Ctrl-C that comes while a checkpoint is written until the write is done, then raise it.

    Inside torch's zip writer a KeyboardInterrupt surfaces as a RuntimeError with a traceback (the file itself is
    safe: the write is atomic). Only the main thread can handle signals; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    # the signals that interrupt: Ctrl-C, unless ignored (a script's background job), and SIGTERM/SIGHUP where the
    # command line made them interrupt too (cli._interrupt_on_terminate)
    signals = [sig for sig in (getattr(signal, n, None) for n in ("SIGINT", "SIGTERM", "SIGHUP"))
               if sig is not None and signal.getsignal(sig) is signal.default_int_handler]
    previous = {sig: signal.signal(sig, lambda signum, frame: caught.append(signum)) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if caught:
        raise KeyboardInterrupt


def save_checkpoint(ckpt: Checkpoint, path: str | os.PathLike) -> None:
    """Write ``ckpt`` atomically (temporary file, then rename; missing folders of ``path`` are created); a Ctrl-C
    meanwhile waits for the write to end."""
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "deepseqvae_version": __version__,
        "kind": ckpt.kind,
        "model_config": ckpt.model_config,
        "train_config": ckpt.train_config,
        "state": {k: v.detach().cpu() for k, v in ckpt.state.items()},
        "info": asdict(ckpt.info),
        "step": int(ckpt.step),
        "optimizer": ckpt.optimizer,
        "rng_state": None if ckpt.rng_state is None else ckpt.rng_state.cpu(),
        "history": ckpt.history,
        "train_state": None if ckpt.train_state is None else {k: v.detach().cpu() for k, v in ckpt.train_state.items()},
        "average_state": None if ckpt.average_state is None else {k: v.detach().cpu()
                                                                  for k, v in ckpt.average_state.items()},
        "eval_rng_state": None if ckpt.eval_rng_state is None else [t.cpu() for t in ckpt.eval_rng_state],
    }
    with _interrupt_deferred(), atomic_write(path, "wb") as fh:
        try:
            torch.save(payload, fh)
        except RuntimeError as exc:  # torch's zip writer reports a failed write (a full disk) as "unexpected pos"
            if "unexpected pos" not in str(exc) and "PytorchStreamWriter failed" not in str(exc):
                raise
            raise OutputError(f"{path}: cannot write the checkpoint (the file system may be full: "
                              f"{' '.join(str(exc).split())[:100]}); nothing was replaced") from None


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint safely; any unreadable or foreign file raises :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    _check_crc(path)
    try:
        with warnings.catch_warnings():  # a foreign pickle makes torch warn before it fails: our one line says it
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated/corrupt/foreign files
        # torch's own message may advise weights_only=False, which is unsafe for an untrusted file:
        # say what is wrong in our words and keep the exception type for diagnosis.
        log.debug("torch.load(%s) failed: %r", path, exc)
        raise CheckpointError(f"{path}: not a readable deepseqvae checkpoint: corrupt, truncated or not a "
                              f"PyTorch file ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a deepseqvae checkpoint (no '{FORMAT}' marker)")
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: written by a newer deepseqvae "
                              f"({payload.get('deepseqvae_version')}); please upgrade")
    if payload.get("format_version", 0) < 2 and payload.get("kind") == "vae":
        _upgrade_v1(payload, path)
    if "kind" in payload:  # one this version cannot rebuild: said here, where the file can be named
        try:
            model_kind(payload["kind"])
        except CheckpointError as exc:
            raise CheckpointError(f"{path}: {exc}; written by another deepseqvae "
                                  f"({payload.get('deepseqvae_version')})?") from None
    try:
        ckpt = Checkpoint(
            kind=payload["kind"],
            model_config=dict(payload["model_config"]),
            state=dict(payload["state"]),
            info=ModelInfo(**payload["info"]),
            train_config=dict(payload.get("train_config") or {}),
            step=int(payload.get("step", 0)),
            optimizer=payload.get("optimizer"),
            rng_state=payload.get("rng_state"),
            history={k: list(v) for k, v in (payload.get("history") or {}).items()},
            train_state=None if payload.get("train_state") is None else dict(payload["train_state"]),
            average_state=None if payload.get("average_state") is None else dict(payload["average_state"]),
            eval_rng_state=None if payload.get("eval_rng_state") is None else list(payload["eval_rng_state"]),
            source=str(path),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: incomplete deepseqvae checkpoint ({exc})") from None
    for name, value in ckpt.state.items():  # NaN weights score every mutant NaN, each row still "ok"
        if not (isinstance(value, torch.Tensor) and value.is_floating_point()):
            continue
        # a VAE's weights are all finite; the site-independent model's log-probabilities may be -inf (--pseudocount 0)
        bad = ~torch.isfinite(value) if ckpt.kind == "vae" else torch.isnan(value) | (value == math.inf)
        if bad.any():
            raise CheckpointError(f"{path}: weight {name} holds {int(bad.sum())} non-finite value(s): the model of a "
                                  "run that diverged, or a damaged file")
    return ckpt


def _check_crc(path: Path) -> None:
    """Raise :class:`CheckpointError` when a record of the checkpoint's zip archive fails its CRC-32: torch.load
    does not check them, so a damaged file (a flipped bit, a bad copy) loaded and scored, wrongly and silently."""
    import zipfile

    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return  # not a zip archive (truncated, another format): torch.load says what it is
    with archive:
        try:
            bad = archive.testzip()  # reads every record: ~0.5 s a GB
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:  # a record's header
            raise CheckpointError(f"{path}: damaged checkpoint: {' '.join(str(exc).split())}; restore a copy or "
                                  "train again") from None
    if bad is not None and archive.getinfo(bad).CRC == 0:  # saved without checksums (torch's compute_crc32 off)
        return
    if bad is not None:
        raise CheckpointError(f"{path}: damaged checkpoint: the data of its record {bad} fails its checksum (the "
                              "file changed after it was written); restore a copy or train again")


def _upgrade_v1(payload: dict, path: Path) -> None:
    """Format 1 stored the first encoder layer as nn.Linear's (H, 20L); format 2 stores (20L, H)."""
    state = payload.get("state")
    key = "encoder.hidden.0.weight"
    if isinstance(state, dict) and key in state:
        state[key] = state[key].t().contiguous()
    if payload.get("optimizer") is not None:
        # Its parameter groups and moment shapes predate the recipes: scoring is unaffected, a
        # --resume restarts the optimiser's moments.
        log.warning("%s: written by an older deepseqvae; resuming it restarts the optimiser state", path)
        payload["optimizer"] = None


def build_model(ckpt: Checkpoint) -> torch.nn.Module:
    """Instantiate the model stored in ``ckpt`` (on the CPU, in eval mode) with its weights; a configuration or
    weights that do not make one (an edited or foreign file) raise :class:`CheckpointError` naming the file."""
    where = f"{ckpt.source}: " if ckpt.source else ""
    try:
        # its initial draws, overwritten below, leave the caller's stream, and no other thread's seeded start
        with MODEL_INIT_LOCK, torch.random.fork_rng(devices=[]), torch.device("cpu"):
            model = model_kind(ckpt.kind).build(ckpt.model_config)
    except (TypeError, ValueError) as exc:  # an unknown or missing configuration field, an impossible value
        raise CheckpointError(f"{where}its model configuration does not make a model "
                              f"({' '.join(str(exc).split())})") from None
    try:
        missing, unexpected = model.load_state_dict(ckpt.state, strict=False)
    except RuntimeError as exc:  # a weight of another shape
        first = next((ln.strip() for ln in str(exc).splitlines() if "size mismatch" in ln), str(exc).splitlines()[0])
        raise CheckpointError(f"{where}checkpoint weights do not fit the model: {first}") from None
    if missing or unexpected:
        raise CheckpointError(f"{where}checkpoint weights do not fit the model: missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]}")
    return model.eval()


def describe(ckpt: Checkpoint) -> dict[str, Any]:
    """A flat summary for ``deepseqvae info``."""
    info = ckpt.info
    n_params = int(sum(np.prod(v.shape) for v in ckpt.state.values()))
    out = {
        "kind": ckpt.kind,
        "focus": info.focus_id,
        "modelled columns (L)": len(info.focus_seq),
        "residues": _residue_range(info.positions),
        "sequences (N)": info.n_seqs,
        "Neff": round(info.neff, 2),
        "theta": info.theta,
        "alignment": info.alignment,
        "alignment options": {k: v for k, v in asdict(info.alignment_options).items() if v is not None},
        "training data": (f"digest {info.data_digest}" if info.data_digest else
                          "no digest (written before checkpoints had one: a resume checks N, Neff and theta only)"),
        "steps": ckpt.step,
        "resumable": ("no: a finished refit on every sequence (its model is final)" if ckpt.history.get("refit_step")
                      else "no (saved --slim, or a model fitted in closed form)" if not ckpt.resumable else "yes"),
        "parameters": n_params,
        "model config": ckpt.model_config,
        "train config": ckpt.train_config,
        "final ELBO": None if not ckpt.history.get("elbo") else round(float(ckpt.history["elbo"][-1]), 2),
    }
    h, cfg = ckpt.history or {}, ckpt.train_config or {}
    if h.get("heldout_iwll"):  # what the held-out set decided: the weights scored and how the run ended
        chose = "it chose step" if h.get("refit_step") else "scored weights: step"  # a refit's model is its own
        best = (f"; {chose} {h['best_step'][-1]:,} (best held-out log-likelihood {h['best_iwll'][-1]:.2f})"
                if h.get("best_step") else "")
        out["held out"] = (f"{cfg.get('holdout_fraction', 0):g} by {cfg.get('holdout_by', '?')}, evaluated every "
                           f"{cfg.get('eval_every', '?')} steps to step {h['eval_step'][-1]:,}{best}")
    if h.get("refit_step"):
        out["refit"] = (f"a second run on all {info.n_seqs:,} sequences to step {h['refit_step'][-1]:,}: the model "
                        "saved (the train config is the refit's: early_stopping 0 and stop_step that step; the "
                        "held-out run stopped early)")
    if not ckpt.train_config and not h.get("elbo"):  # a model fitted in closed form: nothing trained by steps
        for key in ("steps", "train config", "final ELBO"):
            out.pop(key)
    return out
