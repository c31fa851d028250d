"""Fused Adam over moments that are normal, subnormal, or subnormal but flushed to zero.

    python -m benchmarks.bench_subnormals [--numel 7590000] [--threads 1] [--repeats 7]

The encoder's first layer of a ~250-column family (BLAT_ECOLX: 5,060 × 1,500 = 7.59M weights) is a table of
(position, residue) rows; a batch of 100 sequences gives a zero gradient to the rows of residues it does not hold.
Adam's first moment of such a row decays by 0.9 a step and passes ~150 steps among the subnormal floats
(|x| < 1.2e-38) before it underflows to zero. This times one fused Adam step (torch.optim.Adam(fused=True),
what training uses) over ``--numel`` weights whose first moments are all (a) normal, (b) subnormal, (c)
subnormal with the thread flushing subnormals to zero (deepseqvae.runtime.flush_subnormals, what training now
does), (d) zero; and checks that the flushed step leaves the weights bit-identical to the unflushed one.
Best of ``--repeats`` steps, one process, in turn. Writes benchmarks/results/subnormals-<date>.md.
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks._common import header, write_result
from deepseqvae.runtime import flush_subnormals


def adam_step(numel: int, first_moment: float, *, flushed: bool, repeats: int) -> tuple[float, torch.Tensor]:
    """Best time (ms) of one fused Adam step with every first moment at ``first_moment``, and the weights after."""
    start = torch.randn(numel, generator=torch.Generator().manual_seed(0)) * 0.02  # every repeat's weights
    p = torch.nn.Parameter(start.clone())
    opt = torch.optim.Adam([p], lr=1e-3, fused=True)
    p.grad = torch.zeros(numel)
    opt.step()  # creates the state
    best, after = float("inf"), None
    restore = flush_subnormals() if flushed else (lambda: None)
    try:
        for _ in range(repeats):
            with torch.no_grad():
                p.copy_(start)
            opt.state[p]["exp_avg"].fill_(first_moment)
            opt.state[p]["exp_avg_sq"].fill_(1e-10)  # a weight whose gradients were ~3e-4 a few hundred steps ago
            t = time.perf_counter()
            opt.step()
            best = min(best, time.perf_counter() - t)
            after = p.detach().clone()
    finally:
        restore()
    return best * 1e3, after


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--numel", type=int, default=5060 * 1500, help="weights [BLAT_ECOLX's encoder first layer]")
    ap.add_argument("--threads", type=int, default=1, help="torch threads [1: one run of the default recipe]")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cases = [("normal (1e-6)", 1e-6, False), ("subnormal (1e-39)", 1e-39, False),
             ("subnormal (1e-39), flushed to zero", 1e-39, True), ("zero", 0.0, False)]
    rows, weights = [], {}
    for name, value, flushed in cases:
        ms, after = adam_step(args.numel, value, flushed=flushed, repeats=args.repeats)
        rows.append((name, ms))
        weights[name] = after
    same = torch.equal(weights["subnormal (1e-39)"], weights["subnormal (1e-39), flushed to zero"])
    text = header("Fused Adam over subnormal first moments")
    text += (f"{args.numel:,} float32 weights, torch {torch.__version__} with {args.threads} thread(s); one "
             f"`torch.optim.Adam(fused=True)` step, best of {args.repeats}; second moments 1e-10.\n\n"
             "| first moments | one step (ms) | relative to normal |\n|---|---|---|\n")
    base = rows[0][1]
    text += "".join(f"| {name} | {ms:.1f} | {ms / base:.2f}x |\n" for name, ms in rows)
    text += (f"\nWeights after the step, subnormal moments flushed or not: "
             f"{'bit-identical' if same else 'DIFFERENT'} (an update of ~1e-36 is below a 0.02 weight's rounding).\n")
    write_result(text, args.out, "subnormals")


if __name__ == "__main__":
    main()
