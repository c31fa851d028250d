#!/usr/bin/env bash
# Reproduce the example figures docs/img/demo_heatmap.png and docs/img/demo_latent.png.
#
# Trains a small VAE with a 2-D latent space on the simulated demo family (alignments/demo.a2m,
# N = 3,000, L = 60), then draws its saturation scan and its latent map. About 2-3 minutes on one
# CPU core; CPU runs are bitwise reproducible. Usage (from anywhere):
#
#   bash docs/make_figures.sh            # or DEEPSEQVAE="python -m deepseqvae.cli" bash docs/make_figures.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DEEPSEQVAE=${DEEPSEQVAE:-deepseqvae}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

$DEEPSEQVAE train alignments/demo.a2m -o "$work/demo.pt" --steps 4000 --seed 42 --device cpu \
    --latent-dim 2 --encoder-hidden 256,256 --decoder-hidden 64,256 --dictionary-size 20 \
    --checkpoint-every 0 --no-progress
$DEEPSEQVAE scan --model "$work/demo.pt" -o "$work/demo_singles.csv" --samples 400 --seed 0 --device cpu \
    --no-progress --plot docs/img/demo_heatmap.png
$DEEPSEQVAE embed alignments/demo.a2m --model "$work/demo.pt" -o "$work/demo_latent.csv" --device cpu \
    --color-by identity --plot docs/img/demo_latent.png
ls -l docs/img/demo_heatmap.png docs/img/demo_latent.png
