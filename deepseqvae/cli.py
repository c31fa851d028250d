"""Command-line interface. Commands only parse options and call library functions."""

from __future__ import annotations

import logging
import sys

import click

from . import __version__
from .errors import DeepSeqVAEError


class UserError(click.ClickException):
    """A bad-input error: one line on stderr, exit status 2, no traceback."""

    exit_code = 2

    def show(self, file=None) -> None:  # noqa: D102 - click API
        click.echo(f"Error: {self.format_message()}", err=True)


class _Group(click.Group):
    """Turns domain errors raised by any command into :class:`UserError`."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except DeepSeqVAEError as exc:
            raise UserError(str(exc)) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"],
                                           "max_content_width": 100})
@click.version_option(__version__, prog_name="deepseqvae")
@click.option("-v", "--verbose", is_flag=True, help="Log debugging detail to stderr.")
def main(verbose: bool) -> None:
    """deepseqvae: DeepSequence-style VAE mutation-effect prediction.

    \b
    Typical use:
      deepseqvae weights msa.a2m -o weights.npy
      deepseqvae train msa.a2m -o model.pt
      deepseqvae score mutants.csv --model model.pt
    """
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


# --- commands are added below, one section each -------------------------------------------


if __name__ == "__main__":  # pragma: no cover
    main()
