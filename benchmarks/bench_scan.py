"""Saturation scan (all 19·L singles) vs scoring the DMS table with `score`, at the same K.

    python -m benchmarks.bench_scan --model blat.pt [--data-dir ../shared/data] [--samples 100] [--device cpu]
    python -m benchmarks.bench_scan --demo --model demo.pt --samples 20      # smoke test on the demo family

On BLAT_ECOLX (L = 253) the scan scores 253 × 19 = 4,807 singles, as many as the DMS table
(BLAT_ECOLX/dms.csv, fitness column ``2500``), so the two timings should agree; the script also
checks that the scan's scores of the DMS mutants equal `score`'s (same estimator, seed and K) and
reports both Spearman correlations and the time to draw and save the heatmap.
Writes benchmarks/results/scan-<date>.md (``--out`` to change).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from benchmarks._common import REPO, add_data_dir, header, peak_rss_mb, write_result
from deepseqvae.checkpoint import load_checkpoint
from deepseqvae.pipeline import write_scan
from deepseqvae.plots import plot_heatmap, save_figure
from deepseqvae.score import saturation_mutants, saturation_scan, score_table
from deepseqvae.tables import numeric_column, read_mutant_table


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="trained checkpoint (BLAT_ECOLX, or the demo with --demo)")
    add_data_dir(ap)
    ap.add_argument("--demo", action="store_true",
                    help="use alignments/demo_mutants.csv (fitness column 'fitness') instead of BLAT_ECOLX")
    ap.add_argument("--mutants", default=None, help="mutant table to score [default: BLAT_ECOLX/dms.csv]")
    ap.add_argument("--fitness-col", default=None, help="fitness column [default: 2500, or fitness with --demo]")
    ap.add_argument("--samples", type=int, default=100, help="posterior samples K for both")
    ap.add_argument("--repeats", type=int, default=2, help="timed runs of each, alternating; the best is kept")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=2048)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    device = torch.device(args.device)
    if args.demo:
        mutants = Path(args.mutants or REPO / "alignments" / "demo_mutants.csv")
        fitness_col = args.fitness_col or "fitness"
    else:
        mutants = Path(args.mutants or args.data_dir / "BLAT_ECOLX" / "dms.csv")
        fitness_col = args.fitness_col or "2500"
    K = args.samples
    ckpt = load_checkpoint(args.model)
    L = len(ckpt.info.focus_seq)

    # Warm-up (allocator, kernels) on a few singles, untimed.
    _, changes = saturation_mutants(ckpt.info.focus_seq, ckpt.info.positions)
    ckpt.scorer().score_changes(ckpt.info.focus_codes, changes[:256], n_samples=1, seed=0, device=device,
                                batch_size=args.batch_size, progress=False)

    table = read_mutant_table(mutants)

    def run_scan():
        return saturation_scan(ckpt, n_samples=K, seed=args.seed, device=device, batch_size=args.batch_size)

    def run_score():
        return score_table([ckpt], table, n_samples=K, seed=args.seed, device=device, batch_size=args.batch_size,
                           fitness_col=fitness_col)

    # Alternate the two (scan, score, score, scan, ...) and keep each one's best time, so that
    # neither gains from running second on a warmer allocator and cache.
    t_scan = t_score = float("inf")
    for rep in range(args.repeats):
        for name in (("scan", "score") if rep % 2 == 0 else ("score", "scan")):
            _sync(device)
            t0 = time.perf_counter()
            if name == "scan":
                scan = run_scan()
            else:
                scored = run_score()
            _sync(device)
            dt = time.perf_counter() - t0
            print(f"{name}: {dt:.1f} s", flush=True)
            if name == "scan":
                t_scan = min(t_scan, dt)
            else:
                t_score = min(t_score, dt)
    n_ok = scored.summary.get("ok", 0)
    print(f"score: {n_ok} of {len(scored.frame)} rows x K = {K} in {t_score:.1f} s", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        write_scan(scan, Path(tmp) / "singles.csv")
        t_write = time.perf_counter() - t0
        t0 = time.perf_counter()
        fig = plot_heatmap(scan.matrix(), scan.positions, scan.focus_seq, title=scan.title(),
                           colorbar_label=scan.score_label)
        png = save_figure(fig, Path(tmp) / "heatmap.png")
        t_plot = time.perf_counter() - t0
        png_kb = png.stat().st_size / 1024

    # The scan's scores of the table's single mutants against score's (same estimator, seed and K).
    score_col = "score_deepseqvae" if "score_deepseqvae" in scored.frame.columns else "score"
    by_mutant = dict(zip(scan.mutants, scan.score, strict=True))
    table_scores = scored.frame[score_col].to_numpy(float)
    fitness = numeric_column(table, fitness_col)
    pairs = [(by_mutant[m], s, f) for m, s, f in zip(table.mutants, table_scores, fitness, strict=True)
             if m in by_mutant and np.isfinite(s)]
    scan_s, score_s, fit = ((np.array(x, dtype=float) for x in zip(*pairs, strict=True)) if pairs
                            else (np.zeros(0),) * 3)
    max_diff = float(np.max(np.abs(scan_s - score_s))) if pairs else float("nan")
    use = np.isfinite(fit)
    rho_scan = float(spearmanr(scan_s[use], fit[use]).statistic) if use.sum() > 2 else float("nan")
    rho_score = scored.spearman["rho"] if scored.spearman else float("nan")
    n_rho = scored.spearman["n"] if scored.spearman else 0
    print(f"{len(pairs)} table mutants in the scan; max |scan - score| = {max_diff:.3g}; "
          f"Spearman scan {rho_scan:.4f}, score {rho_score:.4f}", flush=True)

    title = "Saturation scan vs scoring the DMS table" + (" (demo family)" if args.demo else " on BLAT_ECOLX")
    text = header(title)
    text += (f"Model: checkpoint {args.model} ({ckpt.kind}, L = {L}, focus {ckpt.info.focus_id}). "
             f"Device: {device}. K = {K} samples, seed {args.seed}, batch size {args.batch_size}. "
             f"Times: best of {args.repeats} runs of each, alternating which goes first.\n\n"
             f"| measurement | value |\n|---|---|\n"
             f"| `scan`: all {len(scan.mutants):,} singles (19 × {L}) | {t_scan:.1f} s "
             f"({len(scan.mutants) * K / t_scan:,.0f} mutant-samples/s) |\n"
             f"| `score`: {n_ok:,} scoreable rows of {mutants.name} ({len(scored.frame):,} rows) | {t_score:.1f} s "
             f"({n_ok * K / t_score:,.0f} mutant-samples/s) |\n"
             f"| writing the scan and position CSVs | {t_write:.2f} s |\n"
             f"| drawing and saving the heatmap | {t_plot:.2f} s ({png_kb:.0f} KB PNG) |\n"
             f"| table mutants found in the scan | {len(pairs):,} |\n"
             f"| max abs difference scan vs score on them | {max_diff:.3g} |\n"
             f"| Spearman vs `{fitness_col}`: scan (its {int(use.sum()):,} table singles) | {rho_scan:.4f} |\n"
             f"| Spearman vs `{fitness_col}`: score (all {n_rho:,} scored rows) | {rho_score:.4f} |\n"
             f"| peak RSS of this process | {peak_rss_mb():.0f} MB |\n\n"
             "The difference is 0 when the two runs see the same mutants in the same batches; otherwise "
             "only float32 batch-composition effects (~1e-6) remain.\n")
    write_result(text, args.out, "scan")


if __name__ == "__main__":
    main()
