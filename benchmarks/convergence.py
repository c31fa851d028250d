"""Convergence on BLAT_ECOLX: Spearman against training steps and against the number of samples K.

    python -m benchmarks.reproduce --profile quick --datasets BLAT_ECOLX --save-steps 250,500,1000,2000,4000,5000
    python -m benchmarks.convergence --run-dir benchmarks/runs/quick [--steps-samples 50] [--max-samples 800]

Reads the checkpoints that ``reproduce.py --save-steps`` left in ``--run-dir``
(``BLAT_ECOLX_seed1_step<k>.pt`` and the final ``BLAT_ECOLX_seed1.pt``), scores the 4,807
BLAT_ECOLX mutants (ampicillin 2500; or another --dataset of datasets.csv) with each
(K = ``--steps-samples``), then scores them once more with the final model and ``--max-samples``
samples, reading the running estimate after 1, 2, 5, ... samples (``delta_elbo(trace_at=...)``:
exactly what a run with that K and the same seed gives). Writes ``benchmarks/results/convergence-<date>.{png,csv,md}``.
"""

from __future__ import annotations

import argparse
import datetime
import re
import time
from pathlib import Path

import numpy as np

from benchmarks._common import REPO, add_data_dir, header
from benchmarks.reproduce import read_datasets, resolve_path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_dir(ap)
    ap.add_argument("--run-dir", default=str(REPO / "benchmarks" / "runs" / "quick"))
    ap.add_argument("--dataset", default="BLAT_ECOLX")
    ap.add_argument("--seed", type=int, default=1, help="training seed of the checkpoints to read")
    ap.add_argument("--steps-samples", type=int, default=50, help="K used for the Spearman-vs-steps curve")
    ap.add_argument("--max-samples", type=int, default=800, help="largest K of the Spearman-vs-K curve")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default=None, help="stem (default benchmarks/results/convergence-<date>)")
    args = ap.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    from scipy.stats import spearmanr

    from deepseqvae.checkpoint import build_model, load_checkpoint
    from deepseqvae.fileio import atomic_write
    from deepseqvae.mutants import resolve_mutants
    from deepseqvae.score import apply_changes, delta_elbo
    from deepseqvae.tables import numeric_column, read_mutant_table
    from deepseqvae.weights import resolve_device

    row = read_datasets().loc[args.dataset]
    dev = resolve_device(args.device)
    run_dir = Path(args.run_dir)
    final_path = run_dir / f"{args.dataset}_seed{args.seed}.pt"
    staged = {int(m.group(1)): p for p in run_dir.glob(f"{args.dataset}_seed{args.seed}_step*.pt")
              if (m := re.search(r"_step(\d+)\.pt$", p.name))}
    final = load_checkpoint(final_path)
    staged[final.step] = final_path
    table = read_mutant_table(resolve_path(row["dms"], args.data_dir), mutant_col=row["mutant_col"] or None,
                              wt_col=row["wt_col"] or None, pos_col=row["pos_col"] or None,
                              mut_col=row["mut_col"] or None)
    resolved = resolve_mutants(table.mutants, final.info.focus_seq, final.info.positions, separators=table.separators)
    ok = [i for i, r in enumerate(resolved) if r.ok and r.changes]
    fitness = numeric_column(table, row["fitness_col"])[ok]
    wt = final.info.focus_codes
    variants = apply_changes(wt, [resolved[i].changes for i in ok])  # (M, L)

    def rho(score: np.ndarray) -> float:
        return float(spearmanr(score, fitness).statistic)

    steps_rows = []
    for step in sorted(staged):
        ckpt = final if step == final.step else load_checkpoint(staged[step])
        t = time.perf_counter()
        res = delta_elbo(build_model(ckpt), wt, variants, n_samples=args.steps_samples, seed=0, device=dev)
        elbo = (ckpt.history.get("elbo") or [float("nan")])[-1]
        steps_rows.append({"steps": step, "rho": rho(res.mean), "samples": args.steps_samples, "elbo": elbo,
                           "score_s": time.perf_counter() - t})
        print(f"steps {step}: rho {steps_rows[-1]['rho']:.4f} (K={args.steps_samples})", flush=True)

    ks = [k for k in (1, 2, 5, 10, 20, 50, 100, 200, 400, 800, 1000, 2000) if k <= args.max_samples]
    t = time.perf_counter()
    res = delta_elbo(build_model(final), wt, variants, n_samples=ks[-1], seed=0, device=dev, trace_at=tuple(ks))
    t_k = time.perf_counter() - t
    k_rows = [{"samples": k, "rho": rho(res.trace[k]),
               "median_sem": float(np.median(res.sem)) if k == ks[-1] else float("nan")} for k in ks]
    for r in k_rows:
        print(f"K {r['samples']}: rho {r['rho']:.4f}", flush=True)

    stem = Path(args.out) if args.out else REPO / "benchmarks" / "results" / f"convergence-{datetime.date.today()}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    frame = pd.concat([pd.DataFrame(steps_rows).assign(curve="steps"), pd.DataFrame(k_rows).assign(curve="samples")])
    with atomic_write(stem.with_suffix(".csv"), "w", newline="") as fh:
        frame.to_csv(fh, index=False, float_format="%.5f")

    cfg = final.model_config
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4), dpi=120)
    a1.plot([r["steps"] for r in steps_rows], [r["rho"] for r in steps_rows], "o-", color="C0")
    a1.set_xscale("log")
    a1.set_xticks([r["steps"] for r in steps_rows], [f"{r['steps']:,}" for r in steps_rows], rotation=45)
    a1.minorticks_off()
    a1.set_xlabel("training steps (batch 100)")
    a1.set_ylabel(f"Spearman ρ vs DMS column {row['fitness_col']!r}")
    a1.set_title(f"{args.dataset}: ρ vs training steps (K = {args.steps_samples})")
    a2.plot(ks, [r["rho"] for r in k_rows], "o-", color="C1")
    a2.set_xscale("log")
    a2.set_xticks(ks, [str(k) for k in ks])
    a2.minorticks_off()
    a2.set_xlabel("posterior samples K")
    a2.set_title(f"ρ vs K (model after {final.step:,} steps)")
    for ax in (a1, a2):
        if row["pub_deepsequence_single"]:
            ax.axhline(float(row["pub_deepsequence_single"]), ls="--", color="grey", lw=1,
                       label=f"DeepSequence published single ({row['pub_deepsequence_single']})")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="lower right", fontsize=8)
    fig.suptitle(f"deepseqvae, decoder {cfg['decoder']} {tuple(cfg['decoder_hidden'])}, "
                 f"latent {cfg['latent_dim']}, {len(ok):,} mutants", fontsize=10)
    fig.tight_layout()
    with atomic_write(stem.with_suffix(".png"), "wb") as fh:
        fig.savefig(fh, format="png")

    text = header(f"Convergence on {args.dataset}")
    text += (f"Checkpoints: `{run_dir}` (training seed {args.seed}; model options {cfg['decoder']} decoder "
             f"{tuple(cfg['decoder_hidden'])}). Scoring seed 0, device {dev}. Picture: `{stem.name}.png`.\n\n")
    text += ("## Spearman ρ against training steps\n\n"
             "| steps | ρ | K | final ELBO (last log interval) | scoring time |\n|---|---|---|---|---|\n")
    for r in steps_rows:
        text += f"| {r['steps']:,} | {r['rho']:.4f} | {r['samples']} | {r['elbo']:.2f} | {r['score_s']:.0f} s |\n"
    text += (f"\n## Spearman ρ against posterior samples K (final model)\n\nOne run of {ks[-1]} samples "
             f"({t_k:.0f} s, {len(ok) * ks[-1] / t_k:,.0f} mutant-samples/s); the estimate after k samples is what "
             f"`--samples k` with the same seed returns. Median standard error of a score at K = {ks[-1]}: "
             f"{k_rows[-1]['median_sem']:.3f}.\n\n| K | ρ |\n|---|---|\n")
    for r in k_rows:
        text += f"| {r['samples']} | {r['rho']:.4f} |\n"
    with atomic_write(stem.with_suffix(".md"), "w") as fh:
        fh.write(text)
    print(f"wrote {stem}.md, .csv and .png")


if __name__ == "__main__":
    main()
