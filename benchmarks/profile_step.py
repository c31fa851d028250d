"""Where a training step's time goes: the default recipe's step on one alignment, by operator.

    python -m benchmarks.profile_step [--alignment alignments/demo.a2m] [--threads 1] [--steps 200]

Builds the model and optimiser of ``deepseqvae train``'s default recipe for the alignment (its Neff-derived
settings included), then times ``--steps`` training steps as :func:`deepseqvae.train.train` runs them (batch
draw, sampled loss with the run's product precisions and compiled kernels, backward, Adam, moving average),
with ``--threads`` torch threads (1: what each of the two runs of the default recipe uses on 2 cores).
A second pass under ``torch.profiler`` gives each operator's share of the CPU time. The profiler's own
overhead makes its total larger than the timed pass: read its column as shares, the timed pass as the
step time. Writes benchmarks/results/profile-step-<date>.md.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks._common import REPO, header, write_result
from deepseqvae.alignment import read_alignment
from deepseqvae.hardware import resolve_matmul_dtype
from deepseqvae.model import VAE, loss_terms
from deepseqvae.recipes import recipe_configs
from deepseqvae.runtime import keep_heap
from deepseqvae.train import _make_optimizer, _set_step_sizes
from deepseqvae.weights import compute_weights


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--alignment", default=str(REPO / "alignments" / "demo.a2m"))
    ap.add_argument("--threads", type=int, default=1, help="torch threads [1: one run of the default recipe]")
    ap.add_argument("--steps", type=int, default=200, help="timed steps (after 30 warm-up steps)")
    ap.add_argument("--rows", type=int, default=30, help="operators listed")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    keep_heap()  # as deepseqvae train: freed memory is reused, not page-faulted in again every step
    aln = read_alignment(args.alignment)
    weights = np.asarray(compute_weights(aln.codes))
    neff = float(weights.sum())
    mcfg, tcfg = recipe_configs("fast", aln.codes.shape[1], neff=neff)
    torch.manual_seed(tcfg.seed)
    model = VAE(mcfg).train()
    optimizer = _make_optimizer(model, tcfg)
    data = torch.tensor(aln.codes, dtype=torch.int8)
    probs = torch.as_tensor(weights, dtype=torch.float64) / neff
    gen = torch.Generator().manual_seed(tcfg.seed)
    mm = torch.bfloat16 if resolve_matmul_dtype(tcfg.matmul_dtype, torch.device("cpu")) == "bfloat16" else None
    enc = mm if tcfg.encoder_products else None
    params = [p.detach() for p in model.parameters()]
    ema = [p.clone() for p in params]
    n = 0

    def step() -> None:
        nonlocal n
        n += 1
        _set_step_sizes(optimizer, tcfg, min(n, tcfg.steps))
        idx = torch.multinomial(probs, tcfg.batch_size, replacement=True, generator=gen)  # (B,)
        loss, _ = loss_terms(model, data[idx], neff, generator=gen, matmul_dtype=mm, compiled=tcfg.compile_kernels,
                             encoder_dtype=enc)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        torch._foreach_lerp_(ema, params, 1.0 - tcfg.ema_decay)

    for _ in range(30):
        step()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    ms = (time.perf_counter() - t0) / args.steps * 1e3
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            step()
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows, max_name_column_width=40)
    n_params = sum(p.numel() for p in params)
    text = header("Where a training step's time goes (default recipe)")
    text += (f"- alignment: `{args.alignment}` (N = {aln.codes.shape[0]:,}, L = {aln.codes.shape[1]}, "
             f"Neff = {neff:.1f}); {n_params:,} parameters\n"
             f"- model: decoder {mcfg.decoder_hidden}, encoder {mcfg.encoder_hidden}; batch {tcfg.batch_size}; "
             f"decoder products {mm}, encoder products {enc}; compiled kernels {tcfg.compile_kernels}\n"
             f"- torch threads: {args.threads}\n\n"
             f"**{ms:.2f} ms per step** (mean of {args.steps} timed steps after 30 warm-up steps).\n\n"
             f"Operators under torch.profiler ({args.steps} more steps; shares of its total):\n\n"
             f"```text\n{table}\n```\n")
    print(text)
    write_result(text, args.out, "profile-step")


if __name__ == "__main__":
    main()
