"""Figures for exploring a family: saturation-scan heatmaps, latent-space maps, pathogenicity
classes and training curves (matplotlib, headless).

Every function takes arrays and labels, not results of other stages, so this module imports
nothing of the package but :mod:`alphabet`, :mod:`errors` and :mod:`fileio`.

Figures are built as :class:`matplotlib.figure.Figure` objects without pyplot, so no window or
global figure state is involved and the backend is left as the caller has it (a Figure saves itself
through the canvas of its file format: no display is needed, and a notebook's inline backend stays). Every
figure has a title, axis labels and a colour bar and is saved at :data:`DPI` with a size that depends only on
the data's shape, so the pixel size of a PNG is predictable (:func:`heatmap_figsize`, :data:`LATENT_FIGSIZE`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

from .alphabet import ALPHABET, N_AA
from .errors import DeepSeqVAEError
from .fileio import atomic_path, check_output

#: resolution of every saved figure (pixels per inch)
DPI = 100
#: heatmap width in inches (whatever L), height of one panel of positions, and room for title and labels
HEATMAP_WIDTH = 12.0
HEATMAP_PANEL_HEIGHT = 2.4
HEATMAP_MARGIN_HEIGHT = 0.8
#: latent-map size in inches
LATENT_FIGSIZE = (7.0, 6.0)
#: ``gid`` of the heatmap panels' meshes (the colour bar's mesh has none), to find them in a Figure
HEATMAP_GID = "heatmap"
#: largest ratio between the two halves of the diverging colour scale (see :func:`diverging_norm`)
MAX_ASYMMETRY = 10.0


def heatmap_layout(L: int, max_per_row: int = 100) -> tuple[int, int]:
    """``(panels, positions per panel)``: as few panels of at most ``max_per_row`` positions, balanced."""
    if L < 1 or max_per_row < 1:
        raise ValueError("L and max_per_row must be positive")
    n_panels = math.ceil(L / max_per_row)
    return n_panels, math.ceil(L / n_panels)


def heatmap_figsize(L: int, max_per_row: int = 100) -> tuple[float, float]:
    """Size in inches of :func:`plot_heatmap`'s figure (times :data:`DPI` gives the PNG's pixels)."""
    n_panels, _ = heatmap_layout(L, max_per_row)
    return HEATMAP_WIDTH, HEATMAP_MARGIN_HEIGHT + n_panels * HEATMAP_PANEL_HEIGHT


def diverging_norm(values: np.ndarray) -> TwoSlopeNorm:
    """A colour scale centred at 0 from the data's minimum to its maximum.

    When one side is much shorter than the other (e.g. tiny positive ΔELBOs next to large
    negative ones), it is stretched to at least 1/:data:`MAX_ASYMMETRY` of the other so that small
    values do not get the deepest colour.
    """
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    lo = float(finite.min()) if finite.size else -1.0
    hi = float(finite.max()) if finite.size else 1.0
    span = max(-lo, hi, 1e-9)
    lo = min(lo, -span / MAX_ASYMMETRY)
    hi = max(hi, span / MAX_ASYMMETRY)
    return TwoSlopeNorm(vcenter=0.0, vmin=lo, vmax=hi)


def plot_heatmap(
    matrix: np.ndarray,
    positions: np.ndarray | list[int],
    focus_seq: str,
    *,
    title: str = "Saturation scan",
    colorbar_label: str = "score",
    max_per_row: int = 100,
    cmap: str = "RdBu",
) -> Figure:
    """Heatmap of an ``(L, 20)`` score matrix (columns in ALPHABET order), wrapped into panels.

    Positions run along x in residue numbering (ticks every 10th residue), the 20 amino acids
    along y; each panel holds at most ``max_per_row`` positions, so a 1,000-residue protein stays
    readable. The wild-type cell of each position is marked with a black dot. The colour scale is
    diverging and centred at 0 (red: lower = more deleterious, blue: higher); NaN cells are grey.
    The panels' meshes (gid :data:`HEATMAP_GID`) hold exactly ``L × 20`` cells in total.
    """
    matrix = np.asarray(matrix, dtype=float)  # (L, 20)
    L = matrix.shape[0]
    if matrix.shape != (L, N_AA) or len(positions) != L or len(focus_seq) != L:
        raise ValueError(f"expected an (L, {N_AA}) matrix with L positions and L wild-type residues")
    positions = np.asarray(positions, dtype=np.int64)
    n_panels, per_row = heatmap_layout(L, max_per_row)
    fig = Figure(figsize=heatmap_figsize(L, max_per_row), dpi=DPI, layout="constrained")
    axes = fig.subplots(n_panels, 1, squeeze=False)[:, 0]
    norm = diverging_norm(matrix)
    colormap = matplotlib.colormaps[cmap].with_extremes(bad="0.8")
    wt_codes = np.array([ALPHABET.index(a) for a in focus_seq])  # (L,)
    mesh = None
    for i, ax in enumerate(axes):
        cols = slice(i * per_row, min((i + 1) * per_row, L))
        block = matrix[cols].T  # (20, n_i): amino acids down, positions across
        n_i = block.shape[1]
        mesh = ax.pcolormesh(np.arange(n_i + 1), np.arange(N_AA + 1), np.ma.masked_invalid(block),
                             cmap=colormap, norm=norm, shading="flat")
        mesh.set_gid(HEATMAP_GID)
        ax.scatter(np.arange(n_i) + 0.5, wt_codes[cols] + 0.5, s=4, c="black", marker="o", linewidths=0)
        ax.set_xlim(0, per_row)  # equal cell widths in every panel
        ax.set_ylim(N_AA, 0)     # A at the top
        ax.set_yticks(np.arange(N_AA) + 0.5, list(ALPHABET), fontsize=5.5)
        pos_i = positions[cols]
        step = 10 if per_row > 30 else (5 if per_row > 10 else 1)
        ticks = np.flatnonzero(pos_i % step == 0)
        ax.set_xticks(ticks + 0.5, [str(p) for p in pos_i[ticks]], fontsize=7)
        ax.tick_params(length=2, pad=1)
        ax.set_ylabel("substitution", fontsize=8)
    axes[-1].set_xlabel("residue number  (● = wild-type residue)", fontsize=9)
    fig.suptitle(title, fontsize=11)
    cbar = fig.colorbar(mesh, ax=list(axes), label=colorbar_label, fraction=0.02, pad=0.01,
                        aspect=max(10, 10 * n_panels))
    cbar.ax.set_yscale("linear")  # bar linear in the values, so ticks are evenly spaced on both sides of 0
    return fig


def plot_latent(
    coords: np.ndarray,
    values: np.ndarray | None = None,
    *,
    focus_index: int | None = None,
    focus_label: str = "focus",
    xlabel: str = "z1",
    ylabel: str = "z2",
    color_label: str = "",
    title: str = "Latent space",
    cmap: str = "viridis",
) -> Figure:
    """Scatter of 2-D latent coordinates ``(N, 2)`` coloured by ``values`` (N,), focus as a labelled star.

    Sequences without a value (NaN) are drawn in light grey underneath the others.
    """
    coords = np.asarray(coords, dtype=float)  # (N, 2)
    N = coords.shape[0]
    fig = Figure(figsize=LATENT_FIGSIZE, dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    size = float(np.clip(20000.0 / max(N, 1), 1.0, 30.0))
    if values is None:
        ax.scatter(coords[:, 0], coords[:, 1], s=size, c="tab:blue", alpha=0.6, linewidths=0, rasterized=True)
    else:
        values = np.asarray(values, dtype=float)  # (N,)
        ok = np.isfinite(values)
        if (~ok).any():
            ax.scatter(coords[~ok, 0], coords[~ok, 1], s=size, c="0.8", linewidths=0, rasterized=True,
                       label="no value")
            ax.legend(loc="lower right", fontsize=8, frameon=False)
        order = np.flatnonzero(ok)[np.argsort(values[ok], kind="stable")]  # high values drawn on top
        pts = ax.scatter(coords[order, 0], coords[order, 1], s=size, c=values[order], cmap=cmap, alpha=0.8,
                         linewidths=0, rasterized=True)
        fig.colorbar(pts, ax=ax, label=color_label, shrink=0.9)
    if focus_index is not None:
        x, y = coords[focus_index]
        ax.scatter([x], [y], marker="*", s=260, c="red", edgecolors="black", linewidths=0.8, zorder=5)
        ax.annotate(focus_label, (x, y), xytext=(8, 8), textcoords="offset points", fontsize=9, zorder=6,
                    bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "0.5", "alpha": 0.85})
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    return fig


#: size in inches of the classification figures (histogram, scores along the sequence)
CLASSIFY_FIGSIZE = (8.0, 4.5)
#: colours of the two classes (as EVE's plots: red pathogenic, sky blue benign)
PATHOGENIC_COLOR, BENIGN_COLOR = "xkcd:red", "xkcd:sky blue"


def plot_score_histogram(
    scores: np.ndarray,
    grid: np.ndarray,
    densities: np.ndarray,
    *,
    labelled_scores: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    boundary: float | None = None,
    title: str = "Evolutionary index and the fitted mixture",
    xlabel: str = "evolutionary index (−ΔELBO; higher = less like the family)",
) -> Figure:
    """Histogram of ``scores`` (M,) with a two-component mixture's weighted densities and labelled variants.

    ``densities`` is ``(G, 2)`` on ``grid`` (G,): the benign and pathogenic components (their sum
    is drawn too). Labelled variants (``labelled_scores`` with ``labels`` 1 = pathogenic, 0 =
    benign) are ticks under the histogram; ``boundary`` (where P(pathogenic) = 0.5) is a dashed line.
    """
    scores, grid, densities = (np.asarray(a, dtype=float) for a in (scores, grid, densities))
    fig = Figure(figsize=CLASSIFY_FIGSIZE, dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    ax.hist(scores, bins=80, density=True, color="0.6", alpha=0.5, label=f"{scores.size:,} single mutants")
    ax.plot(grid, densities.sum(axis=1), color="black", linestyle="--", linewidth=1, label="mixture")
    ax.plot(grid, densities[:, 1], color=PATHOGENIC_COLOR, linewidth=2.5, label="pathogenic component")
    ax.plot(grid, densities[:, 0], color=BENIGN_COLOR, linewidth=2.5, label="benign component")
    if boundary is not None and np.isfinite(boundary):
        ax.axvline(boundary, color="0.3", linestyle=":", linewidth=1, label="P(pathogenic) = 0.5")
    if labelled_scores is not None and labels is not None:
        ls, lab = np.asarray(labelled_scores, dtype=float), np.asarray(labels)
        top = ax.get_ylim()[1]
        for value, color, name, y in ((1, PATHOGENIC_COLOR, "pathogenic", -0.04), (0, BENIGN_COLOR, "benign", -0.09)):
            sel = lab == value
            ax.scatter(ls[sel], np.full(int(sel.sum()), y * top), marker="|", s=80, color=color,
                       label=f"{name} label ({int(sel.sum())})")
        ax.set_ylim(-0.12 * top, top)
    ax.axhline(0, color="0.5", linewidth=0.5)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.set_title(title, fontsize=11)
    # outside the axes, at the right: up to seven entries inside would cover the curves or the labelled variants
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    return fig


def plot_scores_vs_positions(
    positions: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    *,
    title: str = "Scores of the labelled variants",
    ylabel: str = "P(pathogenic) (EVE_scores)",
    threshold: float | None = 0.5,
) -> Figure:
    """Scatter of labelled variants: residue number (M,) against score (M,), red = pathogenic (label 1),
    blue = benign (label 0), as EVE's ``plot_scores_vs_labels``; ``threshold`` is a dashed line."""
    positions, scores, labels = np.asarray(positions, dtype=float), np.asarray(scores, dtype=float), np.asarray(labels)
    fig = Figure(figsize=CLASSIFY_FIGSIZE, dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    for value, color, name in ((1, PATHOGENIC_COLOR, "pathogenic"), (0, BENIGN_COLOR, "benign")):
        sel = labels == value
        ax.scatter(positions[sel], scores[sel], s=18, color=color, edgecolors="black", linewidths=0.3,
                   label=f"{name} ({int(sel.sum())})")
    if threshold is not None:
        ax.axhline(threshold, color="0.3", linestyle="--", linewidth=1)
    ax.set_xlabel("residue number")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    # outside the axes, at the right: the scores fill 0-1 along the whole sequence, so no corner inside is free
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    return fig


def plot_spearman_bars(names: list[str], ensemble: np.ndarray, per_seed: np.ndarray | None = None, *,
                       title: str = "deepseqvae batch (dots: single seeds)") -> Figure:
    """Bars of the ensemble Spearman ρ (A,) of ``names`` (A,), dots for the single seeds ``per_seed`` (S, A).

    NaN bars are drawn at 0; NaN dots are left out.
    """
    ensemble = np.nan_to_num(np.asarray(ensemble, dtype=float), nan=0.0)
    fig = Figure(figsize=(max(4.0, 0.9 * len(names) + 1.5), 3.5), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(names))
    ax.bar(x, ensemble, color="tab:blue", label="ensemble")
    for row in np.atleast_2d(per_seed) if per_seed is not None else ():
        ax.plot(x, np.asarray(row, dtype=float), "k.", ms=5)
    ax.set_xticks(x, [str(n) for n in names], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("Spearman ρ")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_title(title, fontsize=9)
    return fig


#: training-curve figure size in inches (two panels)
HISTORY_FIGSIZE = (8.0, 6.0)
#: training curves of at most this many logged points are drawn with a marker at each point
HISTORY_MARKED_POINTS = 30


def plot_training_history(
    steps: np.ndarray,
    elbo: np.ndarray,
    kl_theta: np.ndarray,
    *,
    eval_steps: np.ndarray | None = None,
    heldout_elbo: np.ndarray | None = None,
    heldout_iwll: np.ndarray | None = None,
    kept_step: int | None = None,
    run_label: str = "training batches",
    heldout_label: str = "held-out sequences",
    kl_label: str = "KL(θ) / Neff",
    title: str = "Training history",
) -> Figure:
    """A run's curves against the optimisation step: two panels sharing the x axis.

    Top: the training ELBO per sequence (mean of each logging interval's batches) at ``steps`` (S,), and where
    given the held-out ELBO and importance-weighted log-likelihood at ``eval_steps`` (E,); ``kept_step`` (the
    step whose weights the model keeps) is a dashed line. Bottom: the regulariser at ``steps`` (``kl_label``;
    KL(q(θ)||p(θ))/Neff of a Bayesian decoder), the decoder weights' share of the objective.
    """
    steps, elbo, kl_theta = (np.asarray(a, dtype=float) for a in (steps, elbo, kl_theta))
    fig = Figure(figsize=HISTORY_FIGSIZE, dpi=DPI, layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(2, 1))
    # a run of a few logging intervals has a few points: mark them, or a single one would draw nothing
    marker = "o" if len(steps) <= HISTORY_MARKED_POINTS else None
    top.plot(steps, elbo, color="0.3", linewidth=1.5, marker=marker, markersize=3, label=f"ELBO, {run_label}")
    if eval_steps is not None and len(eval_steps):
        ev = np.asarray(eval_steps, dtype=float)
        if heldout_elbo is not None:
            top.plot(ev, np.asarray(heldout_elbo, dtype=float), "o-", color="tab:blue", markersize=3,
                     linewidth=1.2, label=f"ELBO, {heldout_label}")
        if heldout_iwll is not None:
            top.plot(ev, np.asarray(heldout_iwll, dtype=float), "s-", color="tab:orange", markersize=3,
                     linewidth=1.2, label=f"importance-weighted log-likelihood, {heldout_label}")
    if np.isfinite(kl_theta).any():
        bottom.plot(steps, kl_theta, color="tab:green", linewidth=1.5, marker=marker, markersize=3)
    for ax in (top, bottom):
        if kept_step is not None:
            ax.axvline(kept_step, color="tab:red", linestyle="--", linewidth=1,
                       label=f"kept: step {kept_step:,}" if ax is top else None)
    top.set_ylabel("nats per sequence")
    top.set_title(title, fontsize=11)
    top.legend(fontsize=8, frameon=False)
    bottom.set_ylabel(kl_label)
    bottom.set_xlabel("optimisation step")
    return fig


#: formats matplotlib lists that need a program outside Python (pgf: a LaTeX installation): not offered
NEEDS_PROGRAM = frozenset({"pgf"})


def _figure_format(path: Path, fig: Figure | None = None) -> str:
    """The format a figure at ``path`` is saved in (its suffix; PNG without one), or a one-line error naming the
    ones that can be."""
    fmt = path.suffix[1:].lower() or "png"
    supported = sorted(set((fig or Figure()).canvas.get_supported_filetypes()) - NEEDS_PROGRAM)
    if fmt not in supported:
        raise DeepSeqVAEError(f"{path}: cannot save a figure as '.{fmt}' (use one of "
                              f"{', '.join('.' + k for k in supported)})")
    return fmt


def check_figure_path(path: str | os.PathLike, *inputs: str | os.PathLike | None,
                      outputs: tuple[str | os.PathLike, ...] = ()) -> Path:
    """Fail before any work if a figure cannot be saved at ``path``: an unknown format (suffix), an
    unwritable folder, one of ``inputs`` or of the command's other ``outputs`` (see
    :func:`deepseqvae.fileio.check_output`)."""
    path = check_output(path, *inputs, outputs=outputs)
    _figure_format(path)
    return path


def save_figure(fig: Figure, path: str | os.PathLike, *, dpi: int = DPI) -> Path:
    """Save ``fig`` atomically at ``dpi``; the format follows the suffix (PNG without one)."""
    path = Path(path)
    fmt = _figure_format(path, fig)
    with atomic_path(path) as tmp:
        try:
            fig.savefig(tmp, dpi=dpi, format=fmt)
        except (RuntimeError, OSError) as exc:  # a backend's own failure (a missing program, a full disk)
            raise DeepSeqVAEError(f"{path}: cannot save the figure: {' '.join(str(exc).split())}") from None
    return path


__all__ = ["DPI", "HEATMAP_GID", "LATENT_FIGSIZE", "heatmap_layout", "heatmap_figsize", "diverging_norm",
           "plot_heatmap", "plot_latent", "CLASSIFY_FIGSIZE", "plot_score_histogram", "plot_scores_vs_positions",
           "plot_spearman_bars", "HISTORY_FIGSIZE", "HISTORY_MARKED_POINTS", "plot_training_history",
           "check_figure_path", "save_figure"]
