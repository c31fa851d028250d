"""How the held-out criterion's estimate depends on its number of draws K, per trained model.

    python -m benchmarks.heldout_estimator --msa ../shared/data/PTEN_HUMAN/msa.a2m \\
        --model early.pt --model wide.pt --samples 16,128,1024 --out /tmp/heldout-k.md

The fast recipe stops on the importance-weighted log-likelihood (IWLL) of held-out sequences,
estimated with K = 16 joint draws of the decoder weights θ and the latent z
(``train.heldout_estimates``). The estimate is a lower bound on the posterior predictive
log-likelihood that tightens as K grows; how loose it is at K = 16 depends on how wide q(θ) is, so a
model with wide decoder posteriors may be ranked below a narrow one by the small-K estimate and
above it by a large-K one. This script recomputes, for each checkpoint, the held-out ELBO and IWLL
at several K on the checkpoint's own held-out split (its seed, fraction and kind), with the
weights the checkpoint scores with, and the IWLL with the decoder weights held at their posterior
means (K draws of z only; ``sample_theta=False``): the fit of the mean decoder, free of θ's sampling
noise. Nothing is trained.
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks._common import header, result_path, write_result
from deepseqvae.alignment import AlignmentOptions
from deepseqvae.checkpoint import build_model, load_checkpoint
from deepseqvae.train import TrainConfig, heldout_estimates, run_holdout_split
from deepseqvae.weights import compute_weights


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--msa", required=True, help="the alignment the models were trained on")
    ap.add_argument("--model", action="append", required=True, help="a checkpoint (repeatable)")
    ap.add_argument("--samples", default="16,128,1024", help="comma-separated K values")
    ap.add_argument("--seed", type=int, default=0, help="seed of the draws")
    ap.add_argument("--out", default=None, help="Markdown path [default: benchmarks/results/heldout-k-<date>.md]")
    args = ap.parse_args()
    ks = [int(k) for k in args.samples.split(",")]

    text = header("Held-out ELBO and IWLL against the number of draws K")
    text += ("Nats per sequence, weighted mean over the checkpoint's held-out sequences; the same seed for every K "
             "(so a larger K extends the smaller one's draws only in distribution, not draw by draw).\n\n")
    text += "| model | steps (kept) | W_out log σ median | held out | " + " | ".join(
        f"ELBO K={k} | IWLL K={k}" for k in ks) + f" | IWLL at the means, K={ks[0]} | seconds |\n"
    text += "|---|---|---|---|" + "---|---|" * len(ks) + "---|---|\n"
    cache: dict = {}
    for path in args.model:
        ck = load_checkpoint(path)
        cfg = TrainConfig(**ck.train_config)
        if cfg.refit or not cfg.holdout_fraction > 0:
            raise SystemExit(f"error: {path}: trained on every sequence (refit or no hold-out): nothing is held out")
        opts: AlignmentOptions = ck.info.alignment_options  # read as the model was trained
        key = (repr(opts), ck.info.theta)
        if key not in cache:
            aln = opts.read(args.msa)
            cache[key] = (aln, compute_weights(aln.codes, ck.info.theta))
        aln, weights = cache[key]
        rows = run_holdout_split(aln.codes, cfg, aln.focus_index, ck.info.theta, weights=weights)[1]  # as training
        codes = torch.as_tensor(aln.codes[rows], dtype=torch.int8)
        w = torch.as_tensor(weights[rows], dtype=torch.float64)
        model = build_model(ck)
        t0 = time.perf_counter()
        cells = []
        for k in ks:
            gen = torch.Generator().manual_seed(args.seed)
            est = heldout_estimates(model, codes, w, k, gen)
            cells += [f"{est['elbo']:.2f}", f"{est['iwll']:.2f}"]
        est = heldout_estimates(model, codes, w, ks[0], torch.Generator().manual_seed(args.seed), sample_theta=False)
        cells.append(f"{est['iwll']:.2f}")
        kept = ck.history.get("best_step", [ck.step])[-1] if ck.history else ck.step
        sigma = float(ck.state["decoder.log_sigma.W_out"].float().median())
        text += (f"| `{path}` | {ck.step} ({kept}) | {sigma:.2f} | {len(rows)} | " + " | ".join(cells)
                 + f" | {time.perf_counter() - t0:.0f} |\n")
        print(path, cells, flush=True)
    write_result(text, str(result_path(args.out, "heldout-k")), "heldout-k")


if __name__ == "__main__":
    main()
