"""Domain exceptions.

Every error a user can provoke with bad input derives from :class:`DeepSeqVAEError`; the CLI turns
these into a one-line message and exit status 2, without a traceback.
"""

from __future__ import annotations


class DeepSeqVAEError(Exception):
    """Base class of all user-facing errors of deepseqvae."""


class AlignmentFormatError(DeepSeqVAEError):
    """An alignment file cannot be read or is inconsistent (the message names file and record)."""


class InvalidMutantError(DeepSeqVAEError):
    """A mutant string cannot be parsed or does not fit the modelled sequence."""


class MutantTableError(DeepSeqVAEError):
    """A mutant table (CSV/TSV) cannot be read or lacks the needed columns."""


class MutantColumnError(MutantTableError):
    """No column of a table holds mutants such as A42G (the message advises score's column options)."""


class CheckpointError(DeepSeqVAEError):
    """A checkpoint file is missing, truncated, corrupted or not a deepseqvae checkpoint."""


class ConfigError(DeepSeqVAEError, ValueError):
    """Options that build no model (for example a last decoder layer that the sparsity tiles do not divide)."""


class TrainingError(DeepSeqVAEError):
    """Training cannot go on (for example the loss became NaN or infinite)."""


class ClassifyError(DeepSeqVAEError):
    """Scores, labels or a mixture prior cannot be used for classification (the message names file and row)."""


class OutputError(DeepSeqVAEError):
    """An output file cannot be written, or would replace one of the command's own inputs."""
