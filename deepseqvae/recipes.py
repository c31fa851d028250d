"""The named training recipes (``fast``, ``paper``) and the rules that size the ``fast`` one for a family.

Torch-free on purpose: ``deepseqvae --help`` states the step rule from these constants without importing
torch. :func:`recipe_configs` turns a recipe name, the family's L and Neff, and explicit overrides into the
(:class:`~deepseqvae.model.VAEConfig`, :class:`~deepseqvae.train.TrainConfig`) pair that training takes.
"""

from __future__ import annotations

import math

from .errors import ConfigError

#: the fast recipe's early stopping: FAST_HOLDOUT of the sequences held out by clusters, an evaluation
#: every FAST_EVAL_EVERY steps, stop once FAST_PATIENCE_FRACTION of the step budget has passed without a
#: better held-out importance-weighted log-likelihood (benchmarks/results/recipes-heldout-2026-11-30.md;
#: the 100-step cadence: benchmarks/results/recipes-cadence-2026-12-01.md: small families peak within
#: the first few hundred steps, between the evaluations of a coarser cadence). The held-out clusters are worth
#: FAST_HOLDOUT of the sequence weight (not of the rows), and the kept step count is then refit on every sequence
#: (benchmarks/results/holdout-refit-2026-12-01.md: on an outer set no arm trained on, +15.5 nats on average).
#: The patience is 15 % of the budget: the first run only chooses the step (the refit trains the saved model),
#: and on 9 new runs 15 % kept the same step as 30 % (benchmarks/results/recipes-patience-2026-12-02.md; the
#: longest wait for a new best there: 5 evaluations, GFP_AEQVI, whose patience is 7)
FAST_HOLDOUT = 0.1
FAST_EVAL_EVERY = 100
FAST_PATIENCE_FRACTION = 0.15
#: the fast recipe's bound on an evaluation's cost: with more held-out rows than this, the held-out estimates
#: use a fixed weight-proportional sample of this many draws (TrainConfig.eval_rows). Above every shared
#: family (the most: BLAT_ECOLX, 3,526 held-out rows over seeds 1-10), so none of them changes; a
#: 40,000-row family holding out ~22,000 rows would otherwise spend longer on one evaluation than on the
#: 100 steps between two (benchmarks/results/heldout-cap-large-2026-12-02.md). A sample of 1,000 was
#: screened on BLAT_ECOLX and P53_HUMAN and not adopted (heldout-cap-2026-12-02.md)
FAST_EVAL_ROWS = 5000
#: the fast recipe's step size for the variance group (decoder log σ's, sparsity logits): the learning rate
#: times √(FAST_VARIANCE_NEFF / Neff), within [1, FAST_VARIANCE_MAX_FACTOR] times it. KL(θ)/Neff, which drives
#: those parameters, is stronger the fewer effective sequences a family has, and Adam moves a parameter by at
#: most about its step size per step, so small families get a faster path out of the start; a family of
#: Neff >= 1,000 keeps the learning rate (adopted by the held-out rule of
#: benchmarks/results/recipes-variance-neff-seeds-2026-12-01.md)
FAST_VARIANCE_NEFF = 1000.0
FAST_VARIANCE_MAX_FACTOR = 3.0
#: the fast recipe's base step size (every parameter outside the variance group): FAST_LEARNING_RATE times
#: √(Neff / FAST_LR_NEFF) within [FAST_LR_MIN_FACTOR, 1] times it. A family of few effective sequences goes from
#: its start to memorising its training sequences within a few hundred steps at 1e-3 (PTEN_HUMAN, Neff 131, kept
#: step 400 of 3,000); a smaller step reaches a better held-out fit, later, through more of the weight average.
#: The variance group keeps its own rule on FAST_LEARNING_RATE (fast_variance_lr). Adopted by the held-out rule of
#: benchmarks/results/recipes-lr-neff-2026-12-03.md
FAST_LEARNING_RATE = 1e-3
FAST_LR_NEFF = 1000.0
FAST_LR_MIN_FACTOR = 0.3
#: the fast recipe runs the encoder's hidden products in the run's product precision (TrainConfig.encoder_products;
#: bfloat16 where it is native) for families of at least FAST_ENCODER_PRODUCTS_NEFF effective sequences, float32
#: below. On 16 of 16 screened runs of families with Neff 131-2,605 the best held-out log-likelihood was within
#: ±0.71 nats of the float32 encoder's, in 0-26 % less training time; on GFP_AEQVI (Neff 13) it lost 1.6-6.0 nats
#: (benchmarks/results/recipes-encoder-bf16-2026-12-03.md, and, gated at this threshold on fresh seeds,
#: recipes-encoder-bf16-neff-2026-12-03.md)
FAST_ENCODER_PRODUCTS_NEFF = 100.0
#: the fast recipe's encoder for short families: hidden widths (h, h) with h = min(FAST_ENCODER_WIDTH_MAX,
#: FAST_ENCODER_WIDTH_PER_COLUMN · L), half the one-hot input's 20·L; the paper's 1500-1500 from L = 150 on. In a
#: short family the encoder is most of a step's work (L = 60: ~70 % of the product FLOPs, 60 % of the weights
#: Adam and the average pass over). On 9 screened runs of families with L = 48-120 (the demo and three new simulated
#: ones) the best held-out log-likelihood changed by +0.35 nats on average, the worst run by −0.07
#: (benchmarks/results/recipes-encoder-width-2026-12-03.md). A change to the model, named in the README. A cap of
#: 750 for long families too was screened and not adopted (BLAT_ECOLX −1.71, GFP_AEQVI −5.89 nats per family mean:
#: recipes-encoder-cap-2026-12-03.md)
FAST_ENCODER_WIDTH_PER_COLUMN = 10
FAST_ENCODER_WIDTH_MAX = 1500
#: the fast recipe's latent space: FAST_LATENT_DIM dimensions where DeepSequence has 30 (a change to the model,
#: named in the README). Its early-stopped models fit held-out sequences better with a smaller latent space: latent
#: 10 gained 6.0 nats on average over PTEN_HUMAN and P53_HUMAN × 3 seeds (latent 20: 3.2; EVE's 50 lost 4.7), still
#: 5.9 at K = 1,024 importance samples (so not the K = 16 bound's tightness alone), and 1.1 over BLAT_ECOLX, GFP_AEQVI
#: and the demo (8 pairs; per family +3.5, +0.3, +0.4) (benchmarks/results/recipes-latent-small-2026-12-04.md,
#: recipes-latent50-2026-12-04.md). Latent 5 gained again on PTEN_HUMAN and P53_HUMAN (+2.8) but not over BLAT_ECOLX,
#: GFP_AEQVI and the demo (−0.8; GFP −2.5): not adopted (recipes-latent5-2026-12-04.md)
FAST_LATENT_DIM = 10
#: marks a recipe field that :func:`recipe_configs` derives from the family's Neff
FROM_NEFF = "from_neff"
#: marks a model field that :func:`recipe_configs` derives from the family's length L
FROM_LENGTH = "from_length"

#: The named recipes: (model-configuration overrides, training-configuration overrides).
#: ``paper`` is DeepSequence exactly; ``fast`` is the CPU default (see README "Training recipes").
RECIPES: dict[str, tuple[dict, dict]] = {
    "paper": (
        {"decoder_hidden": (100, 2000)},
        {"steps": 300_000, "batch_size": 100, "learning_rate": 1e-3, "optimizer": "deepsequence"},
    ),
    "fast": (
        {"decoder_hidden": (100, 500), "encoder_hidden": FROM_LENGTH, "latent_dim": FAST_LATENT_DIM},
        {"steps": None, "batch_size": 100, "learning_rate": FROM_NEFF, "optimizer": "adam", "schedule": "cosine",
         "warmup_steps": 200, "final_lr_fraction": 0.02, "ema_decay": 0.998, "matmul_dtype": "auto",
         "holdout_fraction": FAST_HOLDOUT, "holdout_by": "weight", "refit": True, "early_stopping": None,
         "eval_every": FAST_EVAL_EVERY, "eval_samples": 16, "eval_rows": FAST_EVAL_ROWS, "variance_lr": FROM_NEFF,
         "encoder_products": FROM_NEFF},
    ),
}
DEFAULT_RECIPE = "fast"

#: the fast recipe's step rule: FAST_STEPS_PER_COLUMN steps per modelled column (a small family has
#: fewer decoder weights to fit), at most FAST_STEP_BUDGET / L (a step's cost grows with L, so
#: long families keep a bounded run time), within [FAST_STEPS_MIN, FAST_STEPS_MAX]
FAST_STEPS_PER_COLUMN = 18
FAST_STEP_BUDGET = 1_150_000
FAST_STEPS_MIN = 1000
FAST_STEPS_MAX = 6000


def fast_steps(seq_len: int) -> int:
    """Steps of the ``fast`` recipe for L = ``seq_len``: min(18·L, 1.15e6 / L) within [1000, 6000],
    rounded to 100 (L = 60: 1,100; L = 253: 4,500; L = 387: 3,000). The budget keeps a model of a
    few hundred columns under ~10 minutes on a 2-core CPU (benchmarks/results/train-cpu-*.md)."""
    L = max(int(seq_len), 1)
    steps = min(FAST_STEPS_PER_COLUMN * L, FAST_STEP_BUDGET / L)
    return int(round(min(max(steps, FAST_STEPS_MIN), FAST_STEPS_MAX) / 100.0)) * 100


def fast_patience(steps: int, eval_every: int) -> int:
    """Evaluations without a better held-out score after which the ``fast`` recipe stops:
    FAST_PATIENCE_FRACTION of ``steps``, in evaluations every ``eval_every`` steps, at least 1
    (4,500 steps every 100: 7; 3,000: 5; the demo's 1,100: 2)."""
    return max(1, math.ceil(FAST_PATIENCE_FRACTION * steps / max(int(eval_every), 1)))


def fast_variance_lr(neff: float, learning_rate: float = FAST_LEARNING_RATE) -> float:
    """Step size of the ``fast`` recipe's variance group for a family of ``neff`` effective sequences:
    ``learning_rate`` · √(1000 / Neff) within [1, 3] × ``learning_rate`` (Neff 13: 3e-3; 131: 2.76e-3;
    443: 1.50e-3; >= 1,000: ``learning_rate``)."""
    if not neff > 0:
        raise ValueError(f"Neff must be > 0, not {neff}")
    factor = min(max(math.sqrt(FAST_VARIANCE_NEFF / neff), 1.0), FAST_VARIANCE_MAX_FACTOR)
    return learning_rate * factor


def fast_learning_rate(neff: float) -> float:
    """Base step size of the ``fast`` recipe for a family of ``neff`` effective sequences:
    1e-3 · √(Neff / 1000) within [0.3, 1] × 1e-3 (Neff 13: 3e-4; 131: 3.63e-4; 443: 6.66e-4; >= 1,000: 1e-3)."""
    if not neff > 0:
        raise ValueError(f"Neff must be > 0, not {neff}")
    return FAST_LEARNING_RATE * min(max(math.sqrt(neff / FAST_LR_NEFF), FAST_LR_MIN_FACTOR), 1.0)


def fast_encoder_products(neff: float) -> bool:
    """Whether the ``fast`` recipe runs the encoder's hidden products in the run's product precision for a family
    of ``neff`` effective sequences: from :data:`FAST_ENCODER_PRODUCTS_NEFF` on (Neff 13: no; 131: yes)."""
    if not neff > 0:
        raise ValueError(f"Neff must be > 0, not {neff}")
    return neff >= FAST_ENCODER_PRODUCTS_NEFF


def fast_encoder_hidden(seq_len: int) -> tuple[int, int]:
    """Hidden widths of the ``fast`` recipe's encoder for L = ``seq_len``: (h, h) with
    h = min(1500, 10·L) (L = 60: 600; L = 120: 1,200; L >= 150: the paper's 1500-1500)."""
    L = max(int(seq_len), 1)
    h = min(FAST_ENCODER_WIDTH_MAX, FAST_ENCODER_WIDTH_PER_COLUMN * L)
    return (h, h)


def recipe_configs(name: str, seq_len: int, *, neff: float | None = None, model_overrides: dict | None = None,
                   train_overrides: dict | None = None):
    """(VAEConfig, TrainConfig) of recipe ``name`` for L = ``seq_len`` and ``neff`` effective
    sequences (the whole alignment's, before any hold-out), with explicit overrides.

    Overrides whose value is ``None`` are ignored, so CLI options left unset keep the recipe's. Overrides that
    build no model or run (a last decoder layer the sparsity tiles do not divide) raise
    :class:`~deepseqvae.errors.ConfigError`, as does an unknown recipe name.
    ``neff`` is needed by a recipe that derives a setting from it (``fast``: the base step size,
    :func:`fast_learning_rate`, the variance group's step size, :func:`fast_variance_lr`, and the encoder's
    product precision, :func:`fast_encoder_products`) unless that setting is overridden. ``fast`` also sizes
    its encoder from L (:func:`fast_encoder_hidden`).
    """
    from .model import VAEConfig
    from .train import TrainConfig

    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r} (choose from {', '.join(RECIPES)})")
    model_kw, train_kw = (dict(d) for d in RECIPES[name])
    model_kw.update({k: v for k, v in (model_overrides or {}).items() if v is not None})
    train_kw.update({k: v for k, v in (train_overrides or {}).items() if v is not None})
    if model_kw.get("encoder_hidden") == FROM_LENGTH:
        model_kw["encoder_hidden"] = fast_encoder_hidden(seq_len)
    if train_kw.get("steps") is None:
        train_kw["steps"] = fast_steps(seq_len)
    if train_kw.get("early_stopping", 0) is None:  # a share of the steps, in evaluations
        every = train_kw.get("eval_every", TrainConfig.eval_every)
        train_kw["early_stopping"] = fast_patience(train_kw["steps"], every)
    # the settings a recipe leaves to the family's Neff: (field, what it is, its rule). The variance step size
    # scales a learning rate the user gave, else the recipe's base 1e-3 (not the Neff-scaled base step)
    given_lr = train_kw.get("learning_rate", TrainConfig.learning_rate)
    variance_base = FAST_LEARNING_RATE if given_lr == FROM_NEFF else given_lr
    derived = (("learning_rate", "the base step size", fast_learning_rate),
               ("variance_lr", "the variance step size", lambda n: fast_variance_lr(n, variance_base)),
               ("encoder_products", "the encoder's product precision", fast_encoder_products))
    for key, what, rule in derived:
        if train_kw.get(key) == FROM_NEFF:
            if neff is None:
                raise ValueError(f"recipe {name!r} derives {what} from Neff: pass neff")
            train_kw[key] = rule(neff)
    train_kw["recipe"] = name
    try:
        return VAEConfig(seq_len=seq_len, **model_kw), TrainConfig(**train_kw)
    except ValueError as exc:  # options given that no model or run can have: one line, not a traceback
        raise ConfigError(f"recipe {name}: {exc}") from None


#: ``deepseqvae train`` options that are fields of the model's configuration (VAEConfig)
MODEL_OPTIONS = ("decoder", "latent_dim", "encoder_hidden", "decoder_hidden", "dictionary_size", "sparsity_tiles",
                 "dropout")


def check_model_options(name: str, model_overrides: dict | None) -> None:
    """Raise :class:`~deepseqvae.errors.ConfigError` if recipe ``name`` with ``model_overrides`` builds no model, for
    any family: before an alignment is read or weighted (``train``) or a workflow starts (``batch``)."""
    recipe_configs(name, 1, neff=1.0, model_overrides={k: v for k, v in (model_overrides or {}).items()
                                                         if k in MODEL_OPTIONS})
