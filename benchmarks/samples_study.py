"""How many posterior samples K scoring needs with today's models: the ΔELBO estimate's reliability against K.

    python -m benchmarks.samples_study --run-dir DIR [--datasets DEMO,PTEN_HUMAN,GFP_AEQVI,BLAT_ECOLX]
        [--seed 1] [--max-samples 400]

For each dataset's checkpoint ``DIR/<dataset>_seed<seed>.pt`` (as ``benchmarks.reproduce`` leaves them), the DMS
variants are scored once with ``--max-samples`` samples (scoring seed 0; ``delta_elbo``'s running mean is kept at
every k, which is exactly what ``--samples k`` with the same seed returns). At each K of :data:`KS`:

* **reliability** R(K) = 1 − (Monte-Carlo variance of the K-sample scores) / (their variance across variants), both
  from the first K samples alone, after each sample's mean over the variants is removed (the wild type's draw is
  shared by every variant of a sample: it shifts them alike and changes no ranking). R is the expected squared
  correlation of the K-sample scores with their K → ∞ limit: a label-free measure of how many samples are enough;
* the Spearman correlation of the K-sample scores with the ``--max-samples`` ones;
* ρ against the DMS (reported only, never used to choose K);
* the scoring time of K samples (the run's time × K / max).

The candidate rule, an automatic K: sample in rounds of :data:`ROUND` and stop at the first round where R reaches
:data:`MIN_RELIABILITY` (at most ``--max-samples``); the table gives the K it would stop at per model. Rule written
before the runs (2026-12-02): the default K becomes that automatic one if on every dataset's model its scores have a
Spearman correlation of at least :data:`MIN_SPEARMAN_TO_MAX` with the 400-sample ones; otherwise the default stays
K = 400. Writes ``benchmarks/results/samples-<date>.{md,csv}``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from benchmarks._common import add_data_dir, header, write_result
from deepseqvae.score import AUTO_RELIABILITY, AUTO_ROUND

#: the K at which the estimate is read
KS = (10, 25, 50, 100, 200, 400, 800, 2000)
#: the rule's threshold on the Spearman correlation with the largest K (module docstring); the automatic K's
#: reliability target and round are the library's
MIN_SPEARMAN_TO_MAX = 0.998
MIN_RELIABILITY = AUTO_RELIABILITY
ROUND = AUTO_ROUND


def reliability(per_sample: np.ndarray) -> float:
    """R of the mean of ``per_sample`` (K, M), each sample's mean over the variants removed first: what
    ``deepseqvae.score.delta_elbo`` measures for the automatic K (:meth:`deepseqvae.score.Welford.reliability`)."""
    import torch

    from deepseqvae.score import Welford

    acc = Welford(per_sample.shape[1], "cpu")
    for row in per_sample:
        acc.add(torch.from_numpy(row - row.mean()))
    return acc.reliability()


def study(dataset: str, ckpt_path: Path, data_dir: Path, max_samples: int, device: str) -> list[dict]:
    """Rows of the table for one dataset's model (see the module docstring)."""
    from scipy.stats import spearmanr

    from benchmarks.reproduce import dms_variants, read_datasets
    from deepseqvae.checkpoint import build_model, load_checkpoint
    from deepseqvae.score import auto_samples, delta_elbo

    ckpt = load_checkpoint(ckpt_path)
    variants, fitness = dms_variants(read_datasets().loc[dataset], data_dir, ckpt.info)
    t0 = time.perf_counter()
    library_k = auto_samples(build_model(ckpt), ckpt.info.focus_codes, seed=0, device=device, most=max_samples)
    probe_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = delta_elbo(build_model(ckpt), ckpt.info.focus_codes, variants, n_samples=max_samples, seed=0,
                     device=device, trace_at=tuple(range(1, max_samples + 1)))
    seconds = time.perf_counter() - t0
    means = np.stack([res.trace[k] for k in range(1, max_samples + 1)])  # (K, M) running means
    counts = np.arange(1, max_samples + 1, dtype=np.float64)[:, None]
    per_sample = means * counts - np.vstack([np.zeros((1, means.shape[1])), means[:-1] * counts[:-1]])  # (K, M)
    auto = next((k for k in range(ROUND, max_samples + 1, ROUND) if reliability(per_sample[:k]) >= MIN_RELIABILITY),
                max_samples)
    rows = []
    for k in sorted({k for k in KS if k <= max_samples} | {auto, library_k}):
        rows.append({"dataset": dataset, "K": k, "reliability": reliability(per_sample[:k]),
                     "spearman_to_max": float(spearmanr(means[k - 1], means[-1]).statistic),
                     "rho_dms": float(spearmanr(means[k - 1], fitness).statistic),
                     "median_sem": float(np.median(per_sample[:k].std(axis=0, ddof=1) / np.sqrt(k))),
                     "seconds": seconds * k / max_samples, "variants": int(variants.shape[0]),
                     "model_step": int(ckpt.step), "auto": k == auto, "library_auto": k == library_k,
                     "probe_seconds": probe_seconds})
        print(f"{dataset} K={k}: R {rows[-1]['reliability']:.5f}, Spearman to K={max_samples} "
              f"{rows[-1]['spearman_to_max']:.5f}, rho {rows[-1]['rho_dms']:.4f}", flush=True)
    return rows


def decide(frame) -> bool:
    """The rule of the module docstring: adopt the automatic K (True) or keep K = 400 (False)."""
    at = frame[frame["auto"] | frame["library_auto"]]
    return bool((at["spearman_to_max"] >= MIN_SPEARMAN_TO_MAX).all())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_dir(ap)
    ap.add_argument("--run-dir", required=True, help="folder of <dataset>_seed<seed>.pt checkpoints")
    ap.add_argument("--datasets", default="DEMO,PTEN_HUMAN,GFP_AEQVI,BLAT_ECOLX")
    ap.add_argument("--seed", type=int, default=1, help="training seed of the checkpoints")
    ap.add_argument("--max-samples", type=int, default=400)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=None,
                    help="Markdown path (default benchmarks/results/samples-<date>.md; the CSV beside it)")
    args = ap.parse_args()
    import pandas as pd

    rows = []
    for ds in args.datasets.split(","):
        rows += study(ds, Path(args.run_dir) / f"{ds}_seed{args.seed}.pt", Path(args.data_dir), args.max_samples,
                      args.device)
    frame = pd.DataFrame(rows)
    chosen = decide(frame)
    text = header("Posterior samples K needed by today's models")
    text += (f"Checkpoints: `{args.run_dir}` (training seed {args.seed}); the DMS variants of each dataset scored once "
             f"with K = {args.max_samples} (scoring seed 0, device {args.device}); the K-sample values are that run's "
             "running means, i.e. what `--samples K` returns. Reliability: the expected squared correlation of the "
             "K-sample scores with their K → ∞ limit, from the first K samples alone (module docstring); ρ against "
             "the DMS is reported, never used.\n\n")
    text += ("| dataset | variants | model step | K | reliability | Spearman to K = max | ρ vs DMS | median SEM | "
             "scoring time |\n|---|---|---|---|---|---|---|---|---|\n")
    for r in rows:
        marks = [m for m, on in (("auto", r["auto"]), ("library", r["library_auto"])) if on]
        k = f"**{r['K']} ({', '.join(marks)})**" if marks else str(r["K"])
        text += (f"| {r['dataset']} | {r['variants']:,} | {r['model_step']:,} | {k} | {r['reliability']:.5f} | "
                 f"{r['spearman_to_max']:.5f} | {r['rho_dms']:.4f} | {r['median_sem']:.3f} | {r['seconds']:.0f} s |\n")
    probes = frame.groupby("dataset", sort=False)["probe_seconds"].first()
    text += (f"\nAutomatic K (auto): the first multiple of {ROUND} samples with reliability >= {MIN_RELIABILITY} on "
             f"the DMS variants (at most {args.max_samples}). The library's automatic K (library: "
             "`deepseqvae.score.auto_samples`, what `score`, `scan` and `classify` use without `--samples`) measures "
             "the same on 200 fixed single substitutions of the focus instead, so that it does not depend on the "
             "variants scored; its cost per model: "
             + ", ".join(f"{d} {t:.1f} s" for d, t in probes.items())
             + ". Rule (written before the runs): adopt it as the default if its scores (both K) have a "
             f"Spearman correlation >= {MIN_SPEARMAN_TO_MAX} with the {args.max_samples}-sample ones on every model; "
             f"else keep K = 400. **Result: {'adopt' if chosen else 'keep K = 400'}.**\n")
    path = write_result(text, args.out, "samples")
    with open(path.with_suffix(".csv"), "w", newline="") as fh:
        frame.to_csv(fh, index=False, float_format="%.6f")
    print(path)


if __name__ == "__main__":
    main()
