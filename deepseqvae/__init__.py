"""deepseqvae: a fast DeepSequence-style VAE for protein mutation-effect prediction.

The public API, one name per stage (imported on first use, so ``deepseqvae --help`` stays fast)::

    from deepseqvae import read_alignment, compute_weights, VAEConfig, TrainConfig, fit_alignment
    from deepseqvae import read_mutant_table, mutant_table, score_table, saturation_scan, load_checkpoint
"""

import importlib

__version__ = "0.1.0"

#: public name -> module that defines it
_API = {
    "AlignmentOptions": "alignment",
    "read_alignment": "alignment",
    "compute_weights": "weights",
    "VAEConfig": "model",
    "TrainConfig": "train",
    "fit_alignment": "train",
    "Checkpoint": "checkpoint",
    "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "read_mutant_table": "tables",
    "mutant_table": "tables",
    "score_table": "score",
    "saturation_scan": "score",
    "DeepSeqVAEError": "errors",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
