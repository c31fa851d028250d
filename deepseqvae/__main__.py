"""``python -m deepseqvae``: the command line, as the ``deepseqvae`` script."""

from .cli import main

if __name__ == "__main__":
    main(prog_name="deepseqvae")
