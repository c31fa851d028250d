"""Command-line interface. Commands only parse options and call library functions."""

from __future__ import annotations

import logging
import math
import sys

import click

from . import __version__
from .errors import DeepSeqVAEError
from .recipes import FAST_LATENT_DIM, FAST_STEP_BUDGET, FAST_STEPS_MAX, FAST_STEPS_MIN, FAST_STEPS_PER_COLUMN
from .runtime import SEED_MAX

#: the default of every --samples option (literal, so that --help does not import torch; a test checks it
#: against deepseqvae.score: AUTO_ROUND, AUTO_PROBE, AUTO_RELIABILITY, DEFAULT_SAMPLES_CPU, _GPU)
SAMPLES_DEFAULT_HELP = ("[default: automatic, per model: rounds of 50 samples until the scores of 200 fixed single "
                        "substitutions reach reliability 0.999 (their expected squared correlation with the "
                        "K → ∞ limit); at most 400 on a CPU, 2000 on a GPU]")


#: every seed option's range: what numpy, torch and scikit-learn (random_state) all accept
SEED = click.IntRange(0, SEED_MAX)


class UserError(click.ClickException):
    """A bad-input error: one line on stderr, exit status 2, no traceback."""

    exit_code = 2

    def show(self, file=None) -> None:  # noqa: D102 - click API
        click.echo(f"Error: {self.format_message()}", err=True)


def _say(text: str, *outputs) -> None:
    """A command's summary line: on stdout, unless an output is written there (``-o /dev/stdout``), where it would
    land inside the table or sequences."""
    from .fileio import is_stream

    click.echo(text, err=any(o is not None and is_stream(o) for o in outputs))


def _given(source: click.core.ParameterSource = click.core.ParameterSource.COMMANDLINE) -> set[str]:
    """Names of the current command's parameters whose value came from ``source`` (default: typed by the user)."""
    ctx = click.get_current_context()
    return {n for n in ctx.params if ctx.get_parameter_source(n) is source}


def repeated_model(command: click.Command, ctx: click.Context, args: list[str]) -> str | None:
    """Why ``args`` give a command that takes one ``--model`` several different ones, else None.

    Click keeps an option's last value (scripts rely on it: common options, then one overridden), but ``score`` and
    ``classify`` average several ``--model`` (an ensemble), so ``scan -m a.pt -m b.pt`` reads as an ensemble scan
    while it would scan ``b.pt`` alone."""
    option = next((p for p in command.get_params(ctx) if isinstance(p, click.Option) and p.name == "model"), None)
    if option is None or option.multiple or any(a in ("-h", "--help") for a in args):  # the help first
        return None
    names = [n for n in option.opts if n.startswith("--")]
    shorts = [n for n in option.opts if not n.startswith("--")]
    models: list[str] = []
    i = 0
    while i < len(args) and args[i] != "--":
        token, i = args[i], i + 1
        name, eq, value = token.partition("=")
        if name in names or token in shorts:
            value = value if eq else (args[i] if i < len(args) else "")
            i += 0 if eq else 1
        elif any(token.startswith(s) and len(token) > len(s) for s in shorts):  # -mfile.pt
            value = token[2:]
        else:
            continue
        if value not in models:
            models.append(value)
    if len(models) < 2:
        return None
    return (f"{'/'.join(option.opts)} given {len(models)} times ({', '.join(map(repr, models))}): "
            f"{ctx.info_name} uses one model; 'score' and 'classify' take several --model (an ensemble)")


class _Command(click.Command):
    """A command that refuses several ``--model`` where it uses one (:func:`repeated_model`)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        problem = repeated_model(self, ctx, args)
        if problem:
            raise click.UsageError(problem, ctx)
        return super().parse_args(ctx, args)


class _Group(click.Group):
    """Turns domain errors raised by any command, and click's usage errors, into :class:`UserError`: one line."""

    command_class = _Command

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # the group's own options (``deepseqvae --bogus``) are parsed here, before invoke
        try:
            return super().parse_args(ctx, args)
        except click.exceptions.NoArgsIsHelpError:  # a bare ``deepseqvae``: click prints the help
            raise
        except click.UsageError as exc:
            raise _one_line(exc, ctx) from None

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM/SIGHUP (_interrupt_on_terminate): click said "Aborted!", exit 1
            again = ("; the same batch command again continues it (training jobs resume from their checkpoints: "
                     "their logs' --resume is done for you)" if ctx.invoked_subcommand == "batch" else "")
            click.echo(f"\nInterrupted: {ctx.invoked_subcommand or ctx.command_path} stopped; every output is written "
                       f"whole or not at all (an earlier one is kept){again}", err=True)
            sys.exit(130)
        except DeepSeqVAEError as exc:
            raise UserError(str(exc)) from None
        except click.UsageError as exc:
            raise _one_line(exc, ctx) from None
        except (MemoryError, RuntimeError) as exc:
            if not _out_of_memory(exc):
                raise
            raise UserError(_memory_message(ctx, exc)) from None


def _out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation failure: Python's MemoryError, torch's CPU allocator or CUDA's."""
    text = str(exc)
    return isinstance(exc, MemoryError) or "can't allocate memory" in text or "out of memory" in text.lower()


#: what lowers the memory a command needs, for its out-of-memory error
MEMORY_HINTS = {
    "train": "--refit-after (the two runs one after the other), --no-refit, a narrower --encoder-hidden or "
             "--decoder-hidden, or a machine with more memory",
    "score": "a smaller --batch-size",
    "scan": "a smaller --batch-size",
    "classify": "a smaller --batch-size",
}


def _memory_message(ctx: click.Context, exc: BaseException) -> str:
    """One line for an allocation failure in a subcommand: what failed, and the options that need less memory."""
    name = ctx.invoked_subcommand or ctx.command_path
    detail = " ".join(str(exc).split())
    detail = f" ({detail[:120]}{'...' if len(detail) > 120 else ''})" if detail else ""
    hint = MEMORY_HINTS.get(name)
    return f"{name}: out of memory{detail}" + (f"; try {hint}" if hint else "")


def _flags(names: set[str]) -> list[str]:
    """The current command's option names (``--steps``) of the parameters ``names``, in the order of its --help, as
    typed: the second of an on/off pair (``--no-refit``) where its value is off."""
    ctx = click.get_current_context()

    def typed(p: click.Parameter) -> str:
        opts = p.secondary_opts if getattr(p, "secondary_opts", None) and ctx.params.get(p.name) is False else p.opts
        return next((o for o in opts if o.startswith("--")), opts[0])

    return [typed(p) for p in ctx.command.params if p.name in names]


#: train's parameters that only the VAE uses: given with --model independent, an error rather than ignored
VAE_TRAIN_OPTIONS = frozenset({
    "recipe", "steps", "batch_size", "learning_rate", "variance_lr", "seed", "decoder", "latent_dim", "encoder_hidden",
    "decoder_hidden", "dictionary_size", "sparsity_tiles", "dropout", "holdout_fraction", "holdout_by", "refit",
    "early_stopping", "stop_on", "eval_rows", "init_bias", "profile_pseudocount", "checkpoint_every",
    "compile_kernels", "matmul_dtype", "encoder_products", "refit_beside", "slim"})


def _one_line(exc: click.UsageError, ctx: click.Context) -> UserError:
    """Click's usage error (which click prints as Usage, Try and Error: four lines) as one line naming the
    command and its ``--help``."""
    where = exc.ctx.command_path if exc.ctx is not None else ctx.command_path
    return UserError(f"{where}: {' '.join(exc.format_message().split())} (see '{where} --help')")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"],
                                           "max_content_width": 100})
@click.version_option(__version__, prog_name="deepseqvae")
@click.option("-v", "--verbose", is_flag=True, help="Log debugging detail to stderr.")
def main(verbose: bool) -> None:
    """deepseqvae: DeepSequence-style VAE mutation-effect prediction.

    \b
    Typical use:
      deepseqvae weights msa.a2m -o weights.npy
      deepseqvae train msa.a2m -o model.pt --weights weights.npy
      deepseqvae score mutants.csv --model model.pt
    """
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    _interrupt_on_terminate(click.get_current_context())


def _interrupt_on_terminate(ctx: click.Context) -> None:
    """Make SIGTERM and SIGHUP (a job scheduler's cancel, a closed terminal) interrupt as Ctrl-C does, for the
    command's run: its temporary files are removed, a checkpoint being written is finished first, a batch stops its
    jobs. Their default ends the process at once, leaving a checkpoint-sized temporary file behind."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    for name in ("SIGTERM", "SIGHUP"):  # (no SIGHUP on Windows)
        sig = getattr(signal, name, None)
        if sig is None or signal.getsignal(sig) is not signal.SIG_DFL:  # nohup's ignored SIGHUP stays ignored
            continue
        previous = signal.signal(sig, signal.default_int_handler)
        ctx.call_on_close(lambda sig=sig, previous=previous: signal.signal(sig, previous))


# --- commands are added below, one section each -------------------------------------------

# --- weights (and the shared alignment options) ---------------------------------------------


def recorded_alignment_options(func):
    """:func:`alignment_options` for a command that reads an alignment as the model's training did: the options
    recorded in the model are the defaults, and each one given overrides its recorded value."""
    return alignment_options(func, recorded=True)


def alignment_options(func, recorded: bool = False):
    """Add the shared alignment-reading options to a command.

    The command receives them as one argument ``align_opts``, an
    :class:`~deepseqvae.alignment.AlignmentOptions`. ``recorded``: the defaults are the model's own
    (:func:`recorded_alignment_options`), which the help says instead of the reading defaults.
    """
    import functools

    def default(text: str) -> str:  # the help's default of an option
        return "[default: as recorded in the model]" if recorded else text

    @functools.wraps(func)
    def wrapper(*args, focus, first_index, msa_format, max_gap_fraction, min_column_coverage, columns,
                **kwargs):
        from .alignment import AlignmentOptions

        kwargs["align_opts"] = AlignmentOptions(
            focus=focus, first_index=first_index, fmt=msa_format,
            max_gap_fraction=max_gap_fraction, min_column_coverage=min_column_coverage, columns=columns)
        return func(*args, **kwargs)

    options = [
        click.option("--focus", metavar="NAME", default=None,
                     help="Id of the focus (wild-type) record: its header up to the first whitespace. "
                          + default("[default: the first record]")),
        click.option("--first-index", type=int, metavar="N", default=None,
                     help="Residue number of the first focus residue; overrides a NAME/start-end region "
                          "in the focus id. " + default("[default: the region start, else 1]")),
        click.option("--msa-format", type=click.Choice(["auto", "a2m", "a3m", "fasta"]), default="auto",
                     help="Alignment format. a3m: lowercase insertions and '.' are removed from every "
                          "row; a2m/fasta: rows must have equal length; auto: a3m for *.a3m or when "
                          "rows differ in length, else a2m. " + default("[default: auto]")),
        click.option("--max-gap-fraction", type=click.FloatRange(0, 1), metavar="F", default=None,
                     help="Drop sequences whose gap fraction over the focus columns is > F "
                          "(EVE uses 0.5). " + default("[default: off, as DeepSequence]")),
        click.option("--min-column-coverage", type=click.FloatRange(0, 1), metavar="F", default=None,
                     help="After the sequence filters, drop focus columns with a non-gap fraction < F "
                          "(EVE uses 0.7). " + default("[default: off, as DeepSequence]")),
        click.option("--columns", type=click.Choice(["uppercase", "all"]), default="uppercase",
                     help="Modelled columns: uppercase = where the focus has an uppercase residue "
                          "(DeepSequence); all = every column where the focus has a residue, upper or "
                          "lower case (ProteinGym's EVE setting; every mutant of the focus can be scored). "
                          + default("[default: uppercase]")),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


@main.command("weights")
@click.argument("msa", type=click.Path(dir_okay=False))
@click.option("--theta", type=float, default=0.2, show_default=True,
              help="Sequences with identity > 1 - THETA to a sequence are its neighbours; its weight is "
                   "1 / #neighbours. 0 < THETA < 1 (0.2 for most families, 0.01 for viruses).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Output .npy: float64 weights of the kept sequences in alignment order "
                   "(written atomically). [default: <MSA stem>_theta_<THETA>.npy in the current folder]")
@alignment_options
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where to compute: auto = cuda when available, else cpu.")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Show a progress bar on stderr.")
def weights_command(msa, theta, output, align_opts, device, progress):
    """Compute DeepSequence/EVE sequence weights and Neff for the alignment MSA.

    Reads MSA (a2m, a3m or aligned FASTA), keeps the focus columns (--columns), drops sequences
    with non-standard residues, prints what was kept and dropped, L, Neff and the time taken, and
    writes the weights as a NumPy .npy file.
    """
    from .pipeline import weights_file

    result = weights_file(msa, output, theta=theta, options=align_opts, device=device, progress=progress)
    click.echo(result.summary())


# --- train and info -------------------------------------------------------------------------


def _comma_ints(value, *, kind: str, example: str, valid, allowed: str):
    """Parse "a,b,c" into a tuple of ints each passing ``valid``; a BadParameter naming ``example`` or ``allowed``."""
    if value is None:
        return None
    try:
        out = tuple(int(v) for v in str(value).split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated {kind} such as {example}, not {value!r}") from None
    if not out or not all(valid(v) for v in out):
        raise click.BadParameter(f"expected {allowed}, not {value!r}")
    return out


def _int_tuple(ctx, param, value):
    """Parse "1500,1500" into (1500, 1500)."""
    return _comma_ints(value, kind="integers", example="1500,1500", valid=lambda v: v > 0,
                       allowed="positive integers")


def _recipe_help() -> str:
    return (f"Training recipe. fast (default, for a CPU): a {FAST_LATENT_DIM}-dimensional latent space (the "
            "paper's: 30; --latent-dim), the paper's encoder (narrower below 150 columns: --encoder-hidden), a "
            "100-500 Bayesian decoder, Adam with warm-up and cosine decay, a moving average of the weights for "
            "scoring, bf16 decoder products (and encoder products, from 100 effective sequences on) where the "
            "device has native bf16 units (else float32); "
            f"steps = min({FAST_STEPS_PER_COLUMN}·L, {FAST_STEP_BUDGET:,}/L) for L modelled "
            f"columns, within {FAST_STEPS_MIN:,}-{FAST_STEPS_MAX:,}, rounded to a multiple of 100 (the demo's 60 "
            "columns: 1,100), ending earlier when the held-out "
            "log-likelihood (80 %-identity clusters worth 10 % of the sequence weight) stops improving, then "
            "trained again on every sequence up to that step (--refit); in families with fewer than 1,000 "
            "effective sequences the posterior variances step faster (--variance-lr) and the other parameters "
            "more slowly (--learning-rate). paper: DeepSequence "
            "exactly (100-2000 decoder, DeepSequence's Adam, 300,000 steps: a GPU job). "
            "The options below override the recipe.")


@main.command("train")
@click.argument("msa", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Checkpoint file to write (atomically, also every --checkpoint-every steps). "
                   "[default: <MSA stem>.pt in the current folder]")
@click.option("--model", "model_kind", type=click.Choice(["vae", "independent"]), default="vae", show_default=True,
              help="vae: the DeepSequence VAE; independent: the site-independent baseline "
                   "(weighted column frequencies, trained in seconds, scored by the same 'score').")
@click.option("--recipe", type=click.Choice(["fast", "paper"]), default="fast", show_default=True,
              help=_recipe_help())
@click.option("--steps", type=click.IntRange(1), default=None,
              help="Optimisation steps. [default: from --recipe]")
@click.option("--batch-size", type=click.IntRange(1), default=None,
              help="Sequences per step, drawn with replacement with probability proportional to weight. "
                   "[default: 100]")
@click.option("--learning-rate", type=click.FloatRange(0, min_open=True), default=None,
              help="Base Adam step size (every parameter outside the variance group). [default: fast: 0.001 × "
                   "√(Neff / 1000) within 0.3-1× 0.001 (Neff 13: 3e-4; 131: 3.63e-4; >= 1,000: 0.001); paper: 0.001]")
@click.option("--variance-lr", type=click.FloatRange(0, min_open=True), default=None,
              help="Step size of the decoder's posterior log σ's and sparsity logits. [default: fast: 0.001 (or "
                   "--learning-rate when given) × √(1000 / Neff) within 1-3× it (Neff 131: 2.76e-3; >= 1,000: "
                   "0.001); paper: the learning rate]")
@click.option("--seed", type=SEED, default=42, show_default=True,
              help="Seeds initialisation, batch sampling and noise; a CPU run is bitwise reproducible.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="auto = cuda when available, else cpu.")
@click.option("--decoder", type=click.Choice(["svi", "mle"]), default=None,
              help="svi: Bayesian decoder weights (the paper); mle: point weights with L2 and "
                   "group-sparsity penalties. [default: svi]")
@click.option("--theta", type=float, default=0.2, show_default=True,
              help="Reweighting threshold: neighbours share > 1 - THETA identity.")
@click.option("--weights", "weights_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Precomputed weights (.npy from 'deepseqvae weights') instead of computing them. [default: "
                   "computed from MSA with --theta]")
@click.option("--max-invariant-changes", type=click.IntRange(1), metavar="K", default=None,
              help="Drop the focus's neighbours (records >= 50 % identical to it) that have another residue at K "
                   "or more of the columns where the focus residue holds >= 95 % of that neighbourhood's "
                   "sequence weight, then compute the weights again: translated pseudogenes and other records not "
                   "under the family's selection, which the VAE otherwise learns as the focus's closest relatives "
                   "(EVE's TP53 alignment: 12 records that look like TP53 retrogene translations, 9-14 changes "
                   "each; functional neighbours "
                   "of TP53, PTEN and beta-lactamase: 2-5 at the 95th percentile). The dropped records are logged (the "
                   "first 20; all with deepseqvae -v). "
                   "8 is the setting measured (README, 'classify'). [default: off, as DeepSequence and EVE]")
@click.option("--latent-dim", type=click.IntRange(1), default=None,
              help=f"Latent dimension. [default: the recipe's: fast {FAST_LATENT_DIM}, paper 30]")
@click.option("--encoder-hidden", callback=_int_tuple, default=None,
              help="Encoder layer widths, comma-separated. [default: paper 1500,1500; fast h,h with h = "
                   "min(1500, 10·L): 1500,1500 from L = 150 columns on, 600,600 for L = 60]")
@click.option("--decoder-hidden", callback=_int_tuple, default=None,
              help="Decoder layer widths, comma-separated; the last must be divisible by --sparsity-tiles. "
                   "[default: 100,500 (fast), 100,2000 (paper)]")
@click.option("--dictionary-size", type=click.IntRange(0), default=None,
              help="Size of the amino-acid dictionary shared by all output weights (0 = none). [default: 40]")
@click.option("--sparsity-tiles", type=click.IntRange(0), default=None,
              help="Hidden units per group sharing one sparsity scale per position (0 = no sparsity). "
                   "[default: 4]")
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=None,
              help="Dropout on the decoder's hidden layers while training (svi and mle decoders; never when "
                   "scoring). [default: 0]")
@click.option("--pseudocount", type=click.FloatRange(0), default=0.1, show_default=True,
              help="Pseudocount of the independent model, as a fraction of each column's weighted count.")
@click.option("--holdout", "holdout_fraction", type=click.FloatRange(0, 1, max_open=True), default=None,
              help="Share held out of training (drawn as --holdout-by says: 80 %-identity clusters, or "
                   "sequences), to measure generalisation and stop early (0 = train on all). "
                   "[default: 0.1 (fast), 0 (paper)]")
@click.option("--holdout-by", type=click.Choice(["cluster", "weight", "sequence"]), default=None,
              help="How --holdout is drawn: whole 80 %-identity clusters until that fraction of the rows (cluster) "
                   "or of the total sequence weight, Neff (weight), or single sequences (sequence). "
                   "[default: the recipe's: weight (fast), cluster (paper)]")
@click.option("--refit/--no-refit", default=None,
              help="With --holdout: after early stopping, train again from the same start on every sequence up to "
                   "the step the held-out set chose, and save that model (a second run up to that step). "
                   "[default: fast: --refit; paper: no hold-out]")
@click.option("--refit-beside/--refit-after", "refit_beside", default=None,
              help="With --refit: train the second run at the same time as the held-out run, on a second thread "
                   "with half of torch's threads each, stopping at the step the held-out run chooses; or after it "
                   "with all threads. The same model for the same threads per run; beside it takes 0.72-0.83x the time "
                   "on 2 cores and more memory (800 columns, 20,000 sequences: 4.9 GB at the peak, 111 s; after: "
                   "2.7 GB, 154 s). [default: beside on a CPU where torch uses at least 2 threads]")
@click.option("--early-stopping", type=click.IntRange(0), default=None,
              help="Stop after N held-out evaluations (every 100 steps in the fast recipe) without a better held-out "
                   "log-likelihood and keep the best weights (0 = run all steps). [default: fast: 15 % of the "
                   "steps, e.g. 7 evaluations for 4,500 steps; paper: 0]")
@click.option("--stop-on", type=click.Choice(["iwll", "iwll_mean"]), default=None,
              help="Held-out criterion of --early-stopping: the importance-weighted log-likelihood with the decoder "
                   "weights drawn from their posterior (iwll) or held at their posterior means (iwll_mean: the "
                   "fit without the weights' sampling noise). [default: iwll]")
@click.option("--eval-rows", type=click.IntRange(0), default=None, metavar="N",
              help="Held-out estimates on a fixed sample of N draws from the held-out sequences, in proportion to "
                   "their weights, when more than N are held out: bounds the evaluations' cost on a very large "
                   "family, at the price of a noisier stopping criterion (0 = every held-out sequence). "
                   "[default: fast: 5,000; paper: 0]")
@click.option("--init-bias", type=click.Choice(["constant", "profile"]), default=None,
              help="Start of the decoder's output bias: DeepSequence's constant, or the alignment's site-independent "
                   "profile (conserved columns are fitted from the first step; README, \"Training recipes\"). "
                   "[default: constant]")
@click.option("--profile-pseudocount", type=click.FloatRange(0, min_open=True), default=None, metavar="C",
              help="With --init-bias profile: effective sequences added to each residue's count (a family much "
                   "smaller than 20·C effective sequences starts near the uniform). [default: 1]")
@click.option("--checkpoint-every", type=click.IntRange(0), default=1000, show_default=True,
              help="Save a checkpoint every N steps (0 = only at the end).")
@click.option("--compile/--no-compile", "compile_kernels", default=None,
              help="Sample and regularise the largest decoder weights (>= 4M) with torch.compile'd kernels; "
                   "without a working C++ compiler training says so and runs eagerly. [default: --compile]")
@click.option("--products", "matmul_dtype", type=click.Choice(["auto", "float32", "bfloat16"]), default=None,
              help="Precision of the decoder's large products in training and in the held-out evaluations (scoring "
                   "is float32). auto: bfloat16 inputs (float32 sums) where "
                   "the device has native bfloat16 units (AVX-512 BF16 or AMX CPUs, CUDA from compute capability "
                   "8), float32 elsewhere, where emulated bfloat16 is far slower; float32 gives the same model on "
                   "every machine. The checkpoint records the one used. [default: the recipe's: fast auto, paper "
                   "float32]")
@click.option("--encoder-products/--no-encoder-products", default=None,
              help="Run the encoder's hidden product (h-h) in the --products precision too (bfloat16 inputs, "
                   "float32 sums; the first layer, the heads and scoring stay float32). [default: fast: on for "
                   "families of at least 100 effective sequences (up to 26 % less training time, the same "
                   "held-out fit), off below; paper: off]")
@click.option("--resume", is_flag=True,
              help="Continue the run saved in --output (weights, optimizer and random state) up to --steps; or, "
                   "where one is there, the run interrupted in <OUTPUT stem>.partial.pt, whose checkpoints went "
                   "beside an earlier model in --output (kept until the run ends).")
@click.option("--slim", is_flag=True,
              help="Save only what score, scan, classify, embed and sample need (the scored weights, configs and "
                   "numbering: about a fifth of a resumable file); such a checkpoint cannot be continued with "
                   "--resume. The checkpoints written during training stay complete. A refit's model (the fast "
                   "recipe) is final and saved so anyway.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar on stderr.")
@alignment_options
def train_command(msa, output, model_kind, recipe, steps, batch_size, learning_rate, variance_lr, seed, device,
                  decoder, theta, weights_file, max_invariant_changes, latent_dim, encoder_hidden, decoder_hidden,
                  dictionary_size, sparsity_tiles, dropout, pseudocount, holdout_fraction, holdout_by, refit,
                  early_stopping, stop_on, eval_rows, init_bias, profile_pseudocount, checkpoint_every,
                  compile_kernels, matmul_dtype, encoder_products, refit_beside, resume, slim, progress, align_opts):
    """Train a model on the alignment MSA and save it as a self-describing checkpoint.

    Reads MSA, computes sequence weights, trains the DeepSequence VAE with a training recipe (or
    the site-independent baseline) and prints N, L, Neff, steps, the final ELBO and the time taken.

    \b
    Examples:
      deepseqvae train alignments/demo.a2m -o demo.pt                 # the fast recipe
      deepseqvae train msa.a2m -o model.pt --recipe paper --device cuda
    """
    import dataclasses
    import time
    from pathlib import Path

    from .fileio import plain_name
    from .pipeline import TRAINERS, train_file
    from .recipes import RECIPES
    from .weights import resolve_device

    if profile_pseudocount is not None and init_bias != "profile":
        raise click.UsageError("--profile-pseudocount sets the profile start's pseudocount: "
                               "it needs --init-bias profile")
    given = _given()
    if model_kind == "independent" and (unused := _flags(given & VAE_TRAIN_OPTIONS)):
        raise click.UsageError(f"the independent model is fitted in closed form: {', '.join(unused)} "
                               f"{'applies' if len(unused) == 1 else 'apply'} to the VAE only")
    if model_kind == "vae" and "pseudocount" in given:
        raise click.UsageError("--pseudocount is the independent model's (--model independent): the VAE has none")
    out = Path(output) if output else Path(plain_name(msa).stem + ".pt")
    total = steps if steps is not None else RECIPES[recipe][1].get("steps")
    if TRAINERS[model_kind].iterative and total and total > 50_000 and resolve_device(device).type == "cpu":
        # The paper's 300,000 steps are a GPU job; say so before the user waits for days.
        advice = ("without --steps the fast recipe sizes its run for a CPU" if recipe == "fast"
                  else "the default, --recipe fast, is made for a CPU")
        click.echo(f"Note: {total:,} steps on the CPU can take days at the paper's model size "
                   f"(benchmarks/README.md); {advice}. Interrupted runs continue with --resume.", err=True)
    model_options = dict(decoder=decoder, latent_dim=latent_dim, encoder_hidden=encoder_hidden,
                         decoder_hidden=decoder_hidden, dictionary_size=dictionary_size,
                         sparsity_tiles=sparsity_tiles, dropout=dropout)
    train_options = dict(steps=steps, batch_size=batch_size, learning_rate=learning_rate, variance_lr=variance_lr,
                         seed=seed, checkpoint_every=checkpoint_every, holdout_fraction=holdout_fraction,
                         holdout_by=holdout_by, refit=refit, early_stopping=early_stopping, stop_on=stop_on,
                         eval_rows=eval_rows, init_bias=init_bias, profile_pseudocount=profile_pseudocount,
                         compile_kernels=compile_kernels, matmul_dtype=matmul_dtype, encoder_products=encoder_products)
    if resume:  # an option left at its default keeps the checkpoint's own setting, not the default's
        unset = _given(click.core.ParameterSource.DEFAULT)
        model_options = {k: None if k in unset else v for k, v in model_options.items()}
        train_options = {k: None if k in unset else v for k, v in train_options.items()}
        recipe = None if "recipe" in unset else recipe
    if max_invariant_changes is not None:
        align_opts = dataclasses.replace(align_opts, max_invariant_changes=max_invariant_changes)
    if not TRAINERS[model_kind].iterative:  # its VAE options were refused above: what is left are their defaults
        model_options = train_options = recipe = refit_beside = None
    t0, started = time.perf_counter(), time.time()
    try:
        result = train_file(
            msa, out, model_kind=model_kind, options=align_opts, theta=theta, weights_path=weights_file,
            model_options=model_options, train_options=train_options,
            pseudocount=pseudocount, device=device, resume=resume, progress=progress, recipe=recipe,
            refit_beside=refit_beside, slim=slim)
    except KeyboardInterrupt:  # Ctrl-C: say what is on disk instead of click's bare "Aborted!"
        from .pipeline import partial_checkpoint

        partial = partial_checkpoint(out)
        if partial.exists() and partial.stat().st_mtime >= started:  # the output held an earlier model: kept
            click.echo(f"\nInterrupted: {partial} holds this run's last checkpoint and {out} the earlier model; "
                       "continue this run with --resume.", err=True)
        elif out.exists() and out.stat().st_mtime >= started:
            click.echo(f"\nInterrupted: {out} holds this run's last checkpoint; continue it with --resume.", err=True)
        else:
            click.echo(f"\nInterrupted before this run's first checkpoint (every --checkpoint-every steps): "
                       f"{out} {'is untouched' if out.exists() else 'was not written'}.", err=True)
        sys.exit(130)
    click.echo(result.summary(time.perf_counter() - t0))


@main.command("info")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--plot", type=click.Path(dir_okay=False), default=None,
              help="Also draw the training curves to this image (.png, .pdf, .svg): training ELBO and KL(θ)/Neff "
                   "per logged step, the held-out ELBO and log-likelihood per evaluation, the step kept.")
def info_command(checkpoint, plot):
    """Print what a checkpoint holds: model, data it was trained on, training state.

    \b
    Example:
      deepseqvae info demo.pt
      deepseqvae info demo.pt --plot demo_training.png
    """
    from .checkpoint import describe, load_checkpoint
    from .pipeline import plot_history_file

    ckpt = load_checkpoint(checkpoint)
    written = plot_history_file(checkpoint, plot, ckpt=ckpt) if plot is not None else None  # fails: nothing printed
    for key, value in describe(ckpt).items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        click.echo(f"{key:>22}: {value}")
    if written is not None:
        click.echo(f"Wrote {written}")


# --- score ----------------------------------------------------------------------------------


@main.command("score")
@click.argument("mutants", type=click.Path(dir_okay=False))
@click.option("-m", "--model", "models", multiple=True, required=True, type=click.Path(dir_okay=False),
              help="Checkpoint from 'deepseqvae train'. Repeat for an ensemble: one score column per "
                   "model and their mean as 'score'.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Output CSV: every input row and column plus score, score_sem and status (written "
                   "atomically; never the input file). [default: <MUTANTS stem>_scored.csv beside the input]")
@click.option("--mutant-col", default=None, metavar="COL",
              help="Column holding mutants such as A42G or A42G:L50P. [default: the column named "
                   "mutant, mutation(s) or variant(s)]")
@click.option("--wt-col", default=None, metavar="COL",
              help="Wild-type residue column (three-column form). [default: none; with --pos-col and --mut-col]")
@click.option("--pos-col", default=None, metavar="COL",
              help="Residue number column (three-column form). [default: none]")
@click.option("--mut-col", default=None, metavar="COL", help="New residue column (three-column form). [default: none]")
@click.option("--offset", type=int, default=0, show_default=True,
              help="Added to every position in the table before it is matched to the model's numbering.")
@click.option("--samples", "n_samples", type=click.IntRange(1), default=None,
              help="Posterior samples K per mutant. " + SAMPLES_DEFAULT_HELP)
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the sampling; same seed, same scores.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="auto = cuda when available, else cpu.")
@click.option("--strict", is_flag=True, help="Fail on the first row that cannot be scored, named by its file "
                                              "line, instead of keeping it with an empty score and a status.")
@click.option("--fitness-col", default=None, metavar="COL",
              help="Measured fitness column: print Spearman rho against the scores and write it to "
                   "<output stem>.spearman.json. [default: the first numeric column named DMS_score, fitness, "
                   "log_fitness or score, any case]")
@click.option("--batch-size", type=click.IntRange(1), default=2048, show_default=True,
              help="Mutants per batch; bounds memory whatever the table size.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar on stderr.")
def score_command(mutants, models, output, mutant_col, wt_col, pos_col, mut_col, offset, n_samples, seed,
                  device, strict, fitness_col, batch_size, progress):
    """Score every mutant in the table MUTANTS as ΔELBO = ELBO(mutant) − ELBO(wild type).

    Higher scores are fitter. Rows that cannot be scored (wrong wild-type letter, position not
    modelled, stop codon, indel, unknown residue) keep an empty score and a status saying why;
    a summary of them goes to stderr.

    \b
    Example:
      deepseqvae score alignments/demo_mutants.csv --model demo.pt --fitness-col fitness
    """
    from .pipeline import score_file

    result, out, json_path = score_file(
        mutants, list(models), output=output, mutant_col=mutant_col, wt_col=wt_col, pos_col=pos_col,
        mut_col=mut_col, offset=offset, n_samples=n_samples, seed=seed, device=device, strict=strict,
        fitness_col=fitness_col, batch_size=batch_size, progress=progress)
    n_ok = result.summary.get("ok", 0)
    n_rows = len(result.frame)
    others = {k: v for k, v in result.summary.items() if k != "ok"}
    _say(f"Scored {n_ok} of {n_rows} rows with {len(models)} model(s), {result.samples_text()}.", out)
    if others:
        _say("Not scored (kept with an empty score): " + ", ".join(f"{k} {v}" for k, v in others.items()), out)
    if result.spearman is not None:
        sp = result.spearman
        rho = f"{sp['rho']:.4f}"
        if not math.isfinite(sp["rho"]):  # say why there is no number (the JSON holds null)
            rho = "none (" + ("fewer than 3 mutants with both a score and a fitness" if sp["n"] < 3
                              else "the scores or the fitness values are all equal") + ")"
        where = f"written to {json_path}" if json_path is not None else "not written beside a stream output"
        _say(f"Spearman rho = {rho} against '{sp['fitness_col']}' over {sp['n']} mutants "
             f"({sp['excluded']} excluded: {sp['excluded_unscorable']} unscorable, "
             f"{sp['excluded_no_fitness']} without fitness, {sp['excluded_no_substitution']} wild-type or "
             f"synonymous); {where}", out)
    _say(f"Wrote {n_rows} row{'s' if n_rows != 1 else ''} to {out}", out)


# --- simulate -------------------------------------------------------------------------------


@main.command("simulate")
@click.option("-o", "--out-dir", type=click.Path(file_okay=False), default="alignments", show_default=True,
              help="Folder for demo.a2m and demo_mutants.csv.")
@click.option("--seed", type=SEED, default=None, help="Random seed. [default: the seed of the committed demo]")
@click.option("--n-seqs", type=click.IntRange(2), default=3000, show_default=True, help="Sequences in the family.")
@click.option("--length", "L", type=click.IntRange(5, 1000), default=60, show_default=True,
              help="Sequence length L (the Potts couplings are a dense L×L×20×20 array: at L = 1,000, the most, "
                   "8.8 GB of memory and 43 s for 200 sequences; L = 300: 1.1 GB; benchmarks/results/simulate-*.md).")
@click.option("--pairs", "n_pairs", type=click.IntRange(0), default=None,
              help="Coupled residue pairs of the Potts model (its epistasis). [default: round(7·L/6), 70 for "
                   "L = 60: as dense in couplings as the demo at any length; at most the pairs 3 apart]")
@click.option("--n-doubles", type=click.IntRange(0), default=500, show_default=True,
              help="Double mutants in demo_mutants.csv (after all 19·L singles).")
def simulate_command(out_dir, seed, n_seqs, L, n_pairs, n_doubles):
    """Sample a protein-like family from a known Potts model (a demo with a known answer).

    Writes demo.a2m (wild type first, >DEMO/1-L) and demo_mutants.csv (mutant,fitness with the true
    Potts energy difference). The defaults regenerate the files shipped in alignments/.

    \b
    Example:
      deepseqvae simulate -o my_demo
    """
    from .simulate import DEMO_SEED, demo_pairs, write_demo

    stats = write_demo(out_dir, seed=DEMO_SEED if seed is None else seed, n_seqs=n_seqs, L=L,
                       n_pairs=demo_pairs(L) if n_pairs is None else n_pairs, n_doubles=n_doubles)
    click.echo(", ".join(f"{k} = {v:.3g}" if isinstance(v, float) else f"{k} = {v}" for k, v in stats.items()))
    click.echo(f"Wrote {out_dir}/demo.a2m and {out_dir}/demo_mutants.csv")


# --- scan, embed, sample (exploring a family) -----------------------------------------------


@main.command("scan")
@click.option("-m", "--model", required=True, type=click.Path(dir_okay=False),
              help="Checkpoint from 'deepseqvae train' (a VAE or the independent baseline).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Output CSV mutant,score,score_sem with all 19·L single substitutions (written atomically); "
                   "a per-position summary goes to <OUTPUT stem>_positions.csv. "
                   "[default: <MODEL stem>_singles.csv beside MODEL]")
@click.option("--plot", type=click.Path(dir_okay=False), default=None,
              help="Also draw a heatmap (positions × 20 amino acids, wild type dotted) to this PNG.")
@click.option("--samples", "n_samples", type=click.IntRange(1), default=None,
              help="Posterior samples K per mutant, as in 'score'. " + SAMPLES_DEFAULT_HELP)
@click.option("--seed", type=SEED, default=0, show_default=True,
              help="Seed of the sampling; the same seed, K and --batch-size give the numbers 'score' gives.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="auto = cuda when available, else cpu.")
@click.option("--batch-size", type=click.IntRange(1), default=2048, show_default=True,
              help="Mutants per batch; bounds memory.")
@click.option("--per-row", "max_per_row", type=click.IntRange(10), default=100, show_default=True,
              help="Most positions per heatmap panel; longer proteins wrap into several panels.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar on stderr.")
def scan_command(model, output, plot, n_samples, seed, device, batch_size, max_per_row, progress):
    """Score every single substitution at every modelled position (a saturation scan).

    Uses exactly the estimator of 'score' (ΔELBO over K posterior samples, or the independent
    model's log-ratio) and writes a ProteinGym-style table, the mean/min/max score per position
    (mean = mutational sensitivity) and optionally a heatmap.

    \b
    Example:
      deepseqvae scan --model demo.pt -o demo_singles.csv --plot demo_heatmap.png
    """
    from .pipeline import scan_file

    result, out, pos = scan_file(model, output, plot=plot, n_samples=n_samples, seed=seed, device=device,
                                 batch_size=batch_size, max_per_row=max_per_row, progress=progress)
    how = "independent model" if result.n_samples is None else \
        f"K = {result.n_samples} samples" + (" (automatic)" if n_samples is None else "")
    click.echo(f"Scanned {len(result.mutants)} single substitutions at {len(result.focus_seq)} positions ({how}).",
               err=True)
    _say(f"Wrote {out} and {pos}" + (f"; heatmap {plot}" if plot else ""), out, pos, plot)


def _color_by(ctx, param, value):
    """'weight', 'identity' or an existing CSV file with columns id,value."""
    import os

    if value in ("weight", "identity") or os.path.isfile(value):
        return value
    raise click.BadParameter(f"expected 'weight', 'identity' or a CSV file with columns id,value; "
                             f"{value!r} is neither")


@main.command("embed")
@click.argument("msa", type=click.Path(dir_okay=False))
@click.option("-m", "--model", required=True, type=click.Path(dir_okay=False),
              help="VAE checkpoint from 'deepseqvae train'.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True,
              help="Output CSV: id, latent means z1..zD and log-variances logvar1..logvarD per sequence.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None,
              help="Also draw a 2-D map to this PNG (the latents when D = 2, else the first two principal "
                   "components of the means); the focus is a labelled star.")
@click.option("--color-by", default="weight", show_default=True, callback=_color_by,
              metavar="weight|identity|FILE",
              help="Colour of the points: sequence weight (with the model's theta), identity to the focus over "
                   "the modelled columns, or the values of a CSV FILE with columns id,value.")
@click.option("--batch-size", type=click.IntRange(1), default=1024, show_default=True,
              help="Sequences encoded per batch; bounds memory.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="auto = cuda when available, else cpu.")
@recorded_alignment_options
def embed_command(msa, model, output, plot, color_by, batch_size, device, align_opts):
    """Encode every sequence of MSA into the model's latent space.

    MSA (or an aligned FASTA) is read and filtered exactly as in training; its modelled columns
    must be the model's. It is read with the alignment options recorded in the model at training;
    options given here override them.

    \b
    Example:
      deepseqvae embed alignments/demo.a2m --model demo.pt -o latent.csv --plot latent.png
    """
    from .pipeline import embed_file

    if "color_by" in _given() and plot is None:
        raise click.UsageError("--color-by colours the 2-D map: it needs --plot")
    emb, out = embed_file(model, msa, output, options=align_opts, plot=plot, color_by=color_by,
                          batch_size=batch_size, device=device)
    aln = emb.alignment
    dropped = (f" ({aln.n_dropped} records left out: {', '.join(aln.drop_reasons())})" if aln.n_dropped else "")
    click.echo(f"Embedded {aln.N} sequences into D = {emb.mu.shape[1]} latent dimensions{dropped}.", err=True)
    _say(f"Wrote {out}" + (f"; map {plot}" if plot else ""), out, plot)


@main.command("sample")
@click.option("-m", "--model", required=True, type=click.Path(dir_okay=False),
              help="VAE checkpoint from 'deepseqvae train'.")
@click.option("-n", "n", type=click.IntRange(1), default=None,
              help="Number of sequences to draw (required, except with --interpolate).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True,
              help="Output FASTA (written atomically); headers like '>gen_0001 identity=0.63 elbo=-123.4' "
                   "(identity to the focus over the modelled columns, ELBO estimated with the model).")
@click.option("--temperature", type=click.FloatRange(0, 1e6, min_open=True), default=1.0, show_default=True,
              help="Residues are drawn from softmax(logits / T); T < 1 sharpens, T > 1 flattens.")
@click.option("--seed", type=SEED, default=0, show_default=True,
              help="Seed of all sampling; the same seed, options and device give the same file.")
@click.option("--near", metavar="SEQUENCE_ID", default=None,
              help="Draw z from the posterior around this sequence of --msa instead of the prior N(0, I).")
@click.option("--interpolate", nargs=2, metavar="ID1 ID2", default=None,
              help="Decode --steps points on the line between the latent means of two sequences of --msa "
                   "(most probable residues at the mean decoder weights: deterministic; it cannot be combined "
                   "with -n, --near or --temperature).")
@click.option("--steps", type=click.IntRange(2), default=10, show_default=True,
              help="Records written by --interpolate, both ends included.")
@click.option("--msa", type=click.Path(dir_okay=False), default=None,
              help="Alignment holding the --near / --interpolate sequences, read as in training (with the "
                   "alignment options recorded in the model; options given here override them).")
@click.option("--elbo-samples", type=click.IntRange(1), default=20, show_default=True,
              help="Samples for the ELBO estimate in each header.")
@click.option("--batch-size", type=click.IntRange(1), default=100, show_default=True,
              help="Sequences decoded per batch; each batch shares one decoder-weight draw.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="auto = cuda when available, else cpu.")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Progress bars on stderr (sampling, then the ELBO estimates).")
@recorded_alignment_options
def sample_command(model, n, output, temperature, seed, near, interpolate, steps, msa, elbo_samples, batch_size,
                   device, progress, align_opts):
    """Generate new sequences of the family from the model.

    Latents come from the prior N(0, I), or with --near from the posterior around one sequence;
    each batch is decoded with one draw of the decoder weights and every column's residue is
    sampled from softmax(logits / T). With --interpolate, points between two sequences are
    decoded instead.

    \b
    Examples:
      deepseqvae sample --model demo.pt -n 100 -o generated.fasta --temperature 0.8
      deepseqvae sample --model demo.pt -n 20 -o near.fasta --near SIM_000001/1-60 --msa alignments/demo.a2m
      deepseqvae sample --model demo.pt -o path.fasta --interpolate DEMO/1-60 SIM_000002/1-60 --steps 8 \\
          --msa alignments/demo.a2m
    """
    from .pipeline import sample_file

    given = _given()
    if interpolate is not None and (near is not None or n is not None or "temperature" in given):
        raise click.UsageError("--interpolate cannot be combined with -n, --near or --temperature (it decodes the "
                               "most probable residues)")
    if interpolate is None and "steps" in given:
        raise click.UsageError("--steps sets the records of --interpolate: it needs --interpolate ID1 ID2")
    if msa is not None and near is None and interpolate is None:
        raise click.UsageError("--msa holds the --near / --interpolate sequences: it needs one of them")
    if interpolate is None and n is None:
        raise click.UsageError("give the number of sequences to draw with -n (or use --interpolate ID1 ID2)")
    if (near is not None or interpolate is not None) and msa is None:
        raise click.UsageError("--near and --interpolate need --msa, the alignment holding the sequences")
    written, out = sample_file(model, output, n=n, temperature=temperature, seed=seed, near=near,
                               interpolate=tuple(interpolate) if interpolate else None, steps=steps, msa=msa,
                               options=align_opts, device=device, batch_size=batch_size,
                               elbo_samples=elbo_samples, progress=progress)
    _say(f"Wrote {written} sequences to {out}", out)


# --- classify (EVE's mixture step) ----------------------------------------------------------


def _retain(ctx, param, value):
    """Parse "75" or "10,25,75" into (10, 25, 75): percentages in 1-100."""
    return _comma_ints(value, kind="percentages", example="75 or 10,25,75", valid=lambda v: 0 < v <= 100,
                       allowed="percentages in 1-100")


def _fmt_pct(v: float) -> str:
    return "–" if v != v else f"{100 * v:.1f} %"


@main.command("classify")
@click.option("-m", "--model", "models", multiple=True, type=click.Path(dir_okay=False),
              help="Checkpoint from 'deepseqvae train': its saturation scan is classified. Repeat for an "
                   "ensemble (the mean ΔELBO of the models). One of --model or --scan is required.")
@click.option("--scan", type=click.Path(dir_okay=False), default=None,
              help="A scan CSV from 'deepseqvae scan' (mutant,score[,score_sem]) instead of --model.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Output CSV, one row per single mutant (written atomically). "
                   "[default: <MODEL or SCAN stem>_classes.csv beside it]")
@click.option("--labels", type=click.Path(dir_okay=False), default=None,
              help="Labelled variants to evaluate against: EVE's protein_name,mutations,ClinVar_labels or a "
                   "plain mutant,label table (1/pathogenic, 0/benign). Writes <OUTPUT stem>_report.md, "
                   "_labels.csv (every row with a status), _metrics.csv and _labels.png.")
@click.option("--label-col", default=None, metavar="COL",
              help="Label column of --labels. [default: ClinVar_labels, label or labels]")
@click.option("--label-mutant-col", default=None, metavar="COL",
              help="Mutant column of --labels (e.g. a ClinVar export's 'Protein change'). [default: detected as "
                   "'score' does: mutant, mutations, ...]")
@click.option("--protein", default=None, metavar="NAME",
              help="Protein name: the rows of --labels' protein column (protein_name, or protein, gene, symbol, "
                   "uniprot_id ...; matched ignoring case) to use and the name in the output. "
                   "[default: the checkpoint's focus id up to '/', e.g. P53_HUMAN; with --scan, a classes CSV's "
                   "protein_name, else the scan file's name without _singles.csv]")
@click.option("--offset", type=int, default=0, show_default=True,
              help="Added to every position of --labels before it is matched to the scan.")
@click.option("--prior", type=click.Path(dir_okay=False), default=None,
              help="Pooled mixture from 'deepseqvae classify-prior': the protein's mixture starts from it and "
                   "P(pathogenic) = w·P_protein + (1 − w)·P_pooled, as EVE.")
@click.option("--protein-weight", type=click.FloatRange(0, 1), default=0.3, show_default=True,
              help="w above (EVE's protein_GMM_weight); only with --prior.")
@click.option("--retain", callback=_retain, default=None, metavar="PCT[,PCT...]",
              help="Retained percentages to report classes at (100 is always added). "
                   "[default: EVE's 10,20,...,90,25,75]")
@click.option("--thresholds", type=click.Choice(["eve", "protein"]), default="eve", show_default=True,
              help="Entropy thresholds: EVE's defaults (its proteome-wide deciles and quartiles; only for "
                   "10,20,...,100,25,75) or recomputed on this protein so that PCT % of it is classified.")
@click.option("--monotone/--no-monotone", default=True, show_default=True,
              help="Make P(pathogenic) non-decreasing in −ΔELBO. With unequal component variances EVE's raw "
                   "posterior rises again in one tail (e.g. variants much fitter than the wild type called "
                   "pathogenic); --no-monotone reproduces EVE exactly.")
@click.option("--n-init", type=click.IntRange(1), default=30, show_default=True,
              help="Random initialisations of the mixture (the best likelihood wins); unused with --prior.")
@click.option("--gmm-seed", type=SEED, default=0, show_default=True, help="Seed of the mixture fit.")
@click.option("--plots/--no-plots", default=True, show_default=True,
              help="Draw <OUTPUT stem>_histogram.png (and _labels.png with --labels).")
@click.option("--samples", "n_samples", type=click.IntRange(1), default=None,
              help="Posterior samples K per mutant for the scan, as in 'scan'. " + SAMPLES_DEFAULT_HELP)
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the scan's sampling.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="auto = cuda when available, else cpu.")
@click.option("--batch-size", type=click.IntRange(1), default=2048, show_default=True,
              help="Mutants per batch; bounds memory.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar on stderr.")
def classify_command(models, scan, output, labels, label_col, label_mutant_col, protein, offset, prior, protein_weight,
                     retain, thresholds, monotone, n_init, gmm_seed, plots, n_samples, seed, device, batch_size,
                     progress):
    """Classify every single mutant as Pathogenic, Benign or Uncertain, as EVE does.

    Fits a two-component Gaussian mixture to the evolutionary index (−ΔELBO) of all single mutants
    of the protein (the component with the lower ΔELBO is pathogenic) and writes per variant
    ΔELBO, the evolutionary index, pathogenicity = P(pathogenic) (EVE_scores), uncertainty (the
    entropy of that posterior) and the classes at each retained percentage
    (EVE_classes_<PCT>_pct_retained: Uncertain where the uncertainty is above the threshold).

    \b
    Examples:
      deepseqvae classify --model p53.pt -o p53_classes.csv --labels clinvar.csv
      deepseqvae classify --scan p53_singles.csv -o p53_classes.csv --retain 75 --thresholds protein
      deepseqvae classify --scan p53_singles.csv -o p53_classes.csv --prior prior.json
    """
    from .pipeline import classify_file, default_classify_output

    if not models and scan is None:
        raise click.UsageError("give a checkpoint with --model or a scan CSV with --scan")
    if models and scan is not None:
        raise click.UsageError("--model and --scan cannot be combined")
    given = _given()
    if scan is not None and given & {"n_samples", "seed", "device", "batch_size"}:  # a scan CSV is scored already
        raise click.UsageError("--samples, --seed, --device and --batch-size set the scan of --model; a --scan CSV "
                               "is scored already")
    if labels is None and given & {"label_col", "label_mutant_col"}:
        raise click.UsageError("--label-col and --label-mutant-col name columns of --labels: give one")
    if prior is None and "protein_weight" in given:
        raise click.UsageError("--protein-weight weighs the protein's mixture against a --prior: give one")
    if output is None:
        output = default_classify_output(scan if scan is not None else models[0])
    run = classify_file(output, models=list(models), scan=scan, labels=labels, prior=prior, protein=protein,
                        protein_weight=protein_weight, retain=retain, thresholds=thresholds, n_init=n_init,
                        gmm_seed=gmm_seed, label_col=label_col, label_mutant_col=label_mutant_col, offset=offset,
                        plots=plots, monotone=monotone, n_samples=n_samples, seed=seed,
                        device=device, batch_size=batch_size, progress=progress)
    cls, ev = run.classification, run.evaluation
    m = cls.mixture
    click.echo(f"Classified {len(cls.scan.mutants):,} single mutants of {cls.scan.protein or cls.scan.source}: "
               f"mixture means {m.means[0]:.2f} (benign) and {m.means[1]:.2f} (pathogenic) in −ΔELBO, "
               f"separation (Ashman's D) {m.separation:.2f}"
               + (f", mixed with the prior at w = {protein_weight:g}" if prior else "") + ".")
    retained = cls.retained()
    for r, c in sorted(cls.classes.items()):
        n = {k: int((c == k).sum()) for k in ("Pathogenic", "Benign", "Uncertain")}
        click.echo(f"  {r:>3} % retained: {n['Pathogenic']} Pathogenic, {n['Benign']} Benign, "
                   f"{n['Uncertain']} Uncertain ({_fmt_pct(retained[r])} classified)")
    if ev is not None:
        counts = ev.match.summary()
        unused = ", ".join(f"{k} {v}" for k, v in counts.items() if k != "ok")
        aucs = ("no AUC: too few labels in a class" if ev.auc_evolutionary_index != ev.auc_evolutionary_index
                else f"AUC {ev.auc_evolutionary_index:.3f} (−ΔELBO), {ev.auc_pathogenicity:.3f} (EVE_scores)")
        click.echo(f"Labels: {counts['ok']} of {len(ev.match.status)} rows used" + (f" ({unused})" if unused else "")
                   + f"; {ev.n_pathogenic} pathogenic, {ev.n_benign} benign; {aucs}")
        for _, row in ev.by_retain.iterrows():
            click.echo(f"  {int(row.retain_pct):>3} % retained: accuracy {_fmt_pct(row.accuracy)} on "
                       f"{int(row.classified)} classified; of those, pathogenic called pathogenic "
                       f"{_fmt_pct(row.pathogenic_accuracy)}, benign called benign {_fmt_pct(row.benign_accuracy)}")
    click.echo("Wrote " + ", ".join(str(p) for p in run.written))


@main.command("classify-prior")
@click.argument("scans", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True,
              help="Output JSON with the pooled mixture (written atomically).")
@click.option("--n-init", type=click.IntRange(1), default=30, show_default=True,
              help="Random initialisations of the mixture (the best likelihood wins).")
@click.option("--gmm-seed", "--seed", "seed", type=SEED, default=0, show_default=True,
              help="Seed of the mixture fit (classify's --gmm-seed; --seed is the same option here, where nothing is "
                   "sampled).")
def classify_prior_command(scans, output, n_init, seed):
    """Fit EVE's pooled ("main") mixture to the scans SCANS of several proteins, for 'classify --prior'.

    Pools the evolutionary indices (−ΔELBO) of every single mutant in the scan CSVs (from
    'deepseqvae scan') and fits one two-component Gaussian mixture; writes its weights, means and
    variances as JSON and prints their separation (Ashman's D): below 2 the two components overlap,
    and it warns that such a prior would blur every protein's classes (pool more proteins).

    \b
    Example:
      deepseqvae classify-prior p53_singles.csv pten_singles.csv brca1_singles.csv -o prior.json
    """
    from .pipeline import classify_prior_file

    prior, out = classify_prior_file(list(scans), output, n_init=n_init, seed=seed)
    m = prior.mixture
    click.echo(f"Pooled {m.n_fitted:,} variants of {len(scans)} scan{'s' * (len(scans) != 1)}: benign mean "
               f"{m.means[0]:.3f} "
               f"(weight {m.weights[0]:.3f}), pathogenic mean {m.means[1]:.3f} (weight {m.weights[1]:.3f}); "
               f"separation (Ashman's D) {m.separation:.2f}")
    click.echo(f"Wrote {out}")


# --- batch: many proteins through the Snakemake workflow ------------------------------------


@main.command("batch", context_settings={"ignore_unknown_options": True})
@click.argument("reference", type=click.Path(dir_okay=False))
@click.option("--msa-dir", type=click.Path(file_okay=False), default=".", show_default=True,
              help="Folder of the alignments named in MSA_filename (which may hold sub-folders).")
@click.option("--dms-dir", type=click.Path(file_okay=False), default=".", show_default=True,
              help="Folder of the DMS tables named in DMS_filename.")
@click.option("--weights-dir", type=click.Path(file_okay=False), default=None,
              help="Folder of precomputed weights named in weight_file_name, used when present (they must "
                   "match the alignment as read here); missing ones are computed into OUT/weights/.")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False),
              help="Output folder (Snakemake's working directory): scores/<DMS_id>.csv, unscored/, "
                   "summary.md/.csv/.png, models/, logs/.")
@click.option("--rows", default=None, metavar="0,3-5",
              help="Reference rows to run (0-based, as in ProteinGym's --DMS_index). [default: all]")
@click.option("--seeds", default="1", show_default=True, metavar="1,2,3",
              help="Training seeds: one model per alignment and seed; the scores' mean is the ensemble.")
@click.option("--columns", type=click.Choice(["all", "uppercase"]), default="all", show_default=True,
              help="Modelled columns (see 'train --columns'): all = every focus residue, so every mutant "
                   "of the focus can be scored (ProteinGym's EVE setting).")
@click.option("--steps", type=click.IntRange(1), default=None, help="train --steps. [default: train's]")
@click.option("--recipe", default=None, help="train --recipe, forwarded when given. [default: train's, fast]")
@click.option("--latent-dim", type=click.IntRange(1), default=None, help="train --latent-dim. [default: train's]")
@click.option("--encoder-hidden", default=None, help="train --encoder-hidden. [default: train's]")
@click.option("--decoder-hidden", default=None, help="train --decoder-hidden. [default: train's]")
@click.option("--dictionary-size", type=click.IntRange(0), default=None,
              help="train --dictionary-size. [default: train's]")
@click.option("--sparsity-tiles", type=click.IntRange(0), default=None,
              help="train --sparsity-tiles. [default: train's]")
@click.option("--checkpoint-every", type=click.IntRange(0), default=1000, show_default=True,  # BATCH_CHECKPOINT_EVERY
              help="train --checkpoint-every: a killed training job resumes from its last checkpoint.")
@click.option("--train-option", "train_extra", multiple=True, metavar="NAME=VALUE",
              help="Any other 'train' option, e.g. --train-option learning_rate=0.0005 (repeatable).")
@click.option("--samples", "n_samples", type=click.IntRange(1), default=None,
              help="score --samples: posterior samples K. " + SAMPLES_DEFAULT_HELP)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Device of the training and scoring jobs.")
@click.option("--cores", type=click.IntRange(1), default=None,
              help="Snakemake --cores for a local run. [default: 1, unless an executor or profile is given]")
@click.option("--keep-going/--no-keep-going", default=True, show_default=True,
              help="Let the other jobs finish when one fails (a failed row fails alone).")
@click.argument("snakemake_args", nargs=-1, type=click.UNPROCESSED)
def batch_command(reference, msa_dir, dms_dir, weights_dir, out, rows, seeds, columns, steps, recipe, latent_dim,
                  encoder_hidden, decoder_hidden, dictionary_size, sparsity_tiles, checkpoint_every, train_extra,
                  n_samples, device, cores, keep_going, snakemake_args):
    """Train, score and summarise every row of a ProteinGym-style REFERENCE file with Snakemake.

    REFERENCE is a CSV in the schema of ProteinGym's DMS_substitutions.csv (DMS_id, DMS_filename,
    target_seq, MSA_filename, MSA_start, MSA_end, MSA_theta, weight_file_name; optional
    DMS_mutant_column and DMS_score_column for other DMS formats). One model per alignment and
    seed; scores per assay and seed, their ensemble, and a summary (Spearman, AUC, NDCG, top-10%
    recall). Reruns do only what is missing. Other options go to Snakemake as they are.

    \b
    Examples:
      deepseqvae batch ref.csv --msa-dir msas --dms-dir dms -o run --seeds 1,2 --steps 6000 --cores 2
      deepseqvae batch ref.csv --msa-dir msas --dms-dir dms -o run --workflow-profile slurm
      deepseqvae batch ref.csv --msa-dir msas --dms-dir dms -o run -n        # Snakemake's dry run: what would run
      deepseqvae batch ref.csv --msa-dir msas --dms-dir dms -o run --unlock  # after a killed run left its lock
    """
    import time
    from pathlib import Path

    from .batch import merge_train_options, outcome_line
    from .pipeline import batch_file

    train = dict(steps=steps, recipe=recipe, latent_dim=latent_dim, encoder_hidden=encoder_hidden,
                 decoder_hidden=decoder_hidden, dictionary_size=dictionary_size, sparsity_tiles=sparsity_tiles,
                 checkpoint_every=checkpoint_every)
    train = merge_train_options(train, train_extra, given=_given())
    started = time.time()
    status, failed = batch_file(reference, out, msa_dir=msa_dir, dms_dir=dms_dir, weights_dir=weights_dir, rows=rows,
                                seeds=seeds, columns=columns, samples=n_samples, device=device,
                                train_options=train, cores=cores, keep_going=keep_going,
                                snakemake_args=snakemake_args, train_cli=train_command)
    for dms_id, reason in failed.items():
        click.echo(f"FAILED {dms_id}: {reason}", err=True)
    if status != 0:
        if not failed:
            raise UserError(f"Snakemake exited with status {status} before any job failed; see its messages above")
        partial = Path(out) / "summary-partial.md"
        raise UserError(f"Snakemake exited with status {status}; {len(failed)} assay(s) failed"
                        + (f"; the others are summarised in {partial}" if partial.is_file() else ""))
    click.echo(outcome_line(out, started, snakemake_args))


@main.group("batch-job", hidden=True)
def batch_job():
    """Single jobs of the batch workflow (called by its Snakefile)."""


def _plan(config_json: str, reference: str, assay: str):
    import json

    from .batch import job_plan

    return job_plan(json.loads(config_json), reference, assay)


@batch_job.command("check")
@click.option("--config-json", required=True, help="What the job depends on (batch.job_config).")
@click.option("--reference", required=True, help="The reference file; the assay's row is found by its DMS_id.")
@click.option("--assay", required=True)
@click.option("-o", "--output", required=True)
def batch_check(config_json, reference, assay, output):
    """Check an assay's numbering against its alignment's focus."""
    from .batch import check_assay

    c = check_assay(_plan(config_json, reference, assay), assay, output)
    click.echo(f"{assay}: offset {c.offset}; {len(c.focus_mismatches)} focus residue(s) differ from target_seq")


@batch_job.command("score")
@click.option("--config-json", required=True, help="What the job depends on (batch.job_config).")
@click.option("--reference", required=True, help="The reference file; the assay's row is found by its DMS_id.")
@click.option("--assay", required=True)
@click.option("--seed", type=SEED, required=True,
              help="The model's training seed, for the message; every model is scored with sampling seed 0, as "
                   "'deepseqvae score -m a.pt -m b.pt' scores an ensemble.")
@click.option("--model", required=True)
@click.option("--check", required=True)
@click.option("-o", "--output", required=True)
def batch_score(config_json, reference, assay, seed, model, check, output):
    """Score one assay with one model."""
    from .batch import score_assay

    frame = score_assay(_plan(config_json, reference, assay), assay, model, check, output)
    click.echo(f"{assay} seed {seed}: scored {int(frame['score'].notna().sum())} of {len(frame)}")


if __name__ == "__main__":  # pragma: no cover
    main()
