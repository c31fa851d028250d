"""What a trained VAE's decoder predicts at chosen columns, beside the alignment's own frequencies.

    python -m benchmarks.decoder_columns --model M.pt --msa ../shared/data/P53_HUMAN/msa.a2m \\
        --mutants R175H,R248Q,R273H,R158H --out /tmp/decoder-columns.md

For each mutant: the decoder's probability of the wild-type and of the mutant residue at that column,
averaged over K posterior draws (decoder weights and z ~ q(z | wild type)), next to the weighted
column frequencies of the training alignment (theta 0.2, gaps not counted), and the mutant's −ΔELBO
(the evolutionary index) against one with the latent held at the wild type's posterior (the part
that the mutant's own encoding contributes). Also the mean over all columns of p(wild type). An
aid for reading a scan (e.g. why ClinVar hotspots score low), not a benchmark of speed or accuracy.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from benchmarks._common import header, result_path, write_result
from deepseqvae.alphabet import AA_TO_CODE, ALPHABET
from deepseqvae.checkpoint import build_model, load_checkpoint
from deepseqvae.independent import weighted_counts
from deepseqvae.mutants import parse_mutant
from deepseqvae.score import delta_elbo, encode_batched
from deepseqvae.weights import compute_weights


def column_frequencies(aln) -> np.ndarray:
    """``(L, 20)`` weighted residue frequencies per column (theta 0.2, gaps not counted)."""
    weights = np.asarray(compute_weights(aln.codes, 0.2))  # (N,)
    counts = weighted_counts(np.asarray(aln.codes), weights)  # (L, 20)
    return counts / np.maximum(counts.sum(1, keepdims=True), 1e-12)


def model_table(path: str, args, read: dict) -> str:
    """The Markdown table of one checkpoint; ``read`` keeps (alignment, frequencies) per reading options, so
    several models of one alignment read and weight it once."""
    ck = load_checkpoint(path)
    model = build_model(ck).eval()
    key = repr(ck.info.alignment_options)
    if key not in read:
        aln = ck.info.alignment_options.read(args.msa)  # read as for training: the same columns and numbering
        read[key] = (aln, column_frequencies(aln))
    aln, freq = read[key]
    if aln.focus_seq != ck.info.focus_seq:
        raise SystemExit(f"{args.msa}: not the alignment {path} was trained on (another focus or other columns)")
    wt = np.asarray(aln.focus_codes).astype(np.int64)  # (L,)
    L = wt.size
    subs = [parse_mutant(m)[0] for m in args.mutants.split(",") if m.strip()]
    cols = np.array([aln.position_to_column[s.pos] for s in subs])
    muts = np.array([AA_TO_CODE[s.mut] for s in subs])
    variants = np.repeat(wt[None], len(subs), 0)
    variants[np.arange(len(subs)), cols] = muts
    dec = model.decoder
    with torch.no_grad():
        mu, log_sigma = encode_batched(model, torch.as_tensor(wt[None], dtype=torch.int8), 1)  # (1, D)
        gen = torch.Generator().manual_seed(0)
        probs = torch.zeros(L, len(ALPHABET), dtype=torch.float64)
        fixed = torch.zeros(len(subs), dtype=torch.float64)
        for _ in range(args.samples):
            w = dict(dec.draw(generator=gen))
            z = mu + torch.exp(log_sigma) * torch.randn(mu.shape[1], generator=gen)  # (1, D)
            logp = torch.log_softmax(dec(z, w, dec.output_weight(w)).double(), -1)[0]  # (L, 20)
            probs += logp.exp() / args.samples
            fixed += (logp[cols, muts] - logp[cols, wt[cols]]) / args.samples
    full = delta_elbo(model, wt, variants, n_samples=args.samples, seed=0)
    text = (f"## `{path}`\n\nTrained {ck.step} steps; alignment `{args.msa}`; K = {args.samples}. "
            "p(·) = the decoder's probability at z ~ q(z | wild type), averaged over draws; freq = weighted column "
            "frequency (theta 0.2). EI = −ΔELBO (the scan's score); EI at fixed z = −(log p(mut) − log p(wt)) at "
            "the wild type's latent draws.\n\n"
            "| mutant | p(wt) | freq(wt) | p(mut) | freq(mut) | EI | EI at fixed z |\n|---|---|---|---|---|---|---|\n")
    for i, s in enumerate(subs):
        c = cols[i]
        text += (f"| {s} | {probs[c, wt[c]]:.3f} | {freq[c, wt[c]]:.3f} | {probs[c, muts[i]]:.4f} | "
                 f"{freq[c, muts[i]]:.4f} | {-full.mean[i]:.2f} | {-fixed[i]:.2f} |\n")
    pw = probs[np.arange(L), wt].numpy()
    fw = freq[np.arange(L), wt]
    cons = fw > 0.85
    text += (f"\nAll {L} columns: mean p(wt) {pw.mean():.3f}, mean freq(wt) {fw.mean():.3f}; the {int(cons.sum())} "
             f"columns with freq(wt) > 0.85: mean p(wt) {pw[cons].mean():.3f}, mean freq(wt) {fw[cons].mean():.3f}.\n")
    return text + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, action="append",
                    help="a VAE checkpoint (repeat for several: one table each)")
    ap.add_argument("--msa", required=True, help="the alignment it was trained on (for column frequencies)")
    ap.add_argument("--mutants", required=True, help="comma-separated single mutants, e.g. R175H,R248Q")
    ap.add_argument("--samples", type=int, default=50, help="K posterior draws [default: %(default)s]")
    ap.add_argument("--out", default=None,
                    help="the .md to write [default: benchmarks/results/decoder-columns-<date>.md]")
    args = ap.parse_args()
    text = header("Decoder predictions at chosen columns")
    read: dict = {}
    for path in args.model:
        text += model_table(path, args, read)
    md = result_path(args.out, "decoder-columns")
    write_result(text, str(md), "decoder-columns")


if __name__ == "__main__":
    main()
