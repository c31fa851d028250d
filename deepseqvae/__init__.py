"""deepseqvae: a fast DeepSequence-style VAE for protein mutation-effect prediction."""

__version__ = "0.1.0"
