"""A simulated protein family with a known answer: a sparse Potts model, a phylogeny sampled from
it, and the exact mutation effects of the wild type.

The real benchmark (DeepSequence / ProteinGym deep mutational scans) needs the internet and hours
of training; this module makes a small stand-in whose ground truth is known exactly:

* :class:`PottsModel` - site fields ``h`` ``(L, 20)`` and symmetric couplings ``J``
  ``(L, L, 20, 20)`` (zero diagonal blocks, non-zero only for a few dozen "contact" pairs) with
  Hamiltonian ``H(x) = sum_i h_i(x_i) + sum_{i<j} J_ij(x_i, x_j)``; higher is fitter and
  ``p(x) ~ exp(H(x))``.
* :func:`random_potts` - a protein-like random landscape: each site prefers a few residues
  (physico-chemically similar ones are tolerated), conservation varies from nearly invariant to
  variable, and pairs of sites that touch in a random 3-D chain ("fold") are coupled strongly
  enough that which residue is tolerated at one site depends on its partner (epistasis).
* :func:`gibbs_sample` / :func:`evolve` - Gibbs sampling vectorised over many chains.
* :func:`simulate_family` - a redundant, gappy family: equilibrated root sequences evolve down a
  doubling tree (long deep branches, short recent ones) so that the leaves form clusters of
  near-identical sequences; some sequences are then cut into fragments or given internal gaps.
* :func:`write_demo` - writes ``demo.a2m`` (wild type ``>DEMO/1-60`` first) and
  ``demo_mutants.csv`` (all single mutants and a few hundred double mutants with
  ``fitness = H(mutant) - H(wild type)``). Its defaults produce the files committed under
  ``alignments/``.

Everything is driven by one ``numpy.random.Generator`` seeded explicitly; the same seed gives
byte-identical files.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from .alphabet import AA_TO_CODE, ALPHABET, GAP_CODE, N_AA
from .errors import DeepSeqVAEError
from .fileio import atomic_writes
from .independent import IndependentModel
from .weights import compute_weights

log = logging.getLogger(__name__)

__all__ = [
    "PottsModel",
    "random_potts",
    "gibbs_sample",
    "evolve",
    "simulate_family",
    "Family",
    "single_mutants",
    "double_mutants",
    "mutant_fitness",
    "write_demo",
    "max_double_mutants",
    "SimulationError",
    "DEMO_SEED",
    "AA_BACKGROUND",
    "AA_GROUPS",
]

#: seed of the committed demo files (``alignments/demo.a2m``, ``alignments/demo_mutants.csv``)
DEMO_SEED = 10

#: amino acids grouped by physico-chemical similarity; a site that prefers one member of a group
#: partly tolerates the others (so substitution effects look like BLOSUM-ish, not arbitrary).
AA_GROUPS: tuple[str, ...] = ("AVILM", "FWY", "ST", "NQ", "DE", "KRH", "G", "P", "C")

#: approximate amino-acid composition of UniProtKB/Swiss-Prot (percent, ``ALPHABET`` order); preferred
#: residues are drawn from it and non-preferred fields lean towards it, so the family's composition
#: looks like a protein's rather than uniform.
AA_BACKGROUND = np.array([8.3, 1.4, 5.5, 6.7, 3.9, 7.1, 2.3, 5.9, 5.8, 9.7,
                          2.4, 4.1, 4.7, 3.9, 5.5, 6.6, 5.3, 6.9, 1.1, 2.9]) / 100.0
AA_BACKGROUND = AA_BACKGROUND / AA_BACKGROUND.sum()


class SimulationError(DeepSeqVAEError, ValueError):
    """A simulation was asked for something it cannot make (e.g. more distinct double mutants than exist)."""


_GROUP_OF = np.empty(N_AA, dtype=np.int64)
for _g, _members in enumerate(AA_GROUPS):
    for _aa in _members:
        _GROUP_OF[AA_TO_CODE[_aa]] = _g


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class PottsModel:
    """A Potts model over ungapped sequences of length ``L`` on the 20 amino acids.

    ``h`` has shape ``(L, 20)``; ``J`` has shape ``(L, L, 20, 20)`` with
    ``J[i, j] == J[j, i].T`` and ``J[i, i] == 0``. ``H(x) = sum_i h[i, x_i] +
    sum_{i<j} J[i, j, x_i, x_j]``; higher is fitter, ``p(x) ~ exp(H(x))``.
    """

    h: np.ndarray
    J: np.ndarray

    def __post_init__(self) -> None:
        h = np.asarray(self.h, dtype=np.float64)
        J = np.asarray(self.J, dtype=np.float64)
        if h.ndim != 2 or h.shape[1] != N_AA:
            raise ValueError(f"h must have shape (L, {N_AA}), got {h.shape}")
        L = h.shape[0]
        if J.shape != (L, L, N_AA, N_AA):
            raise ValueError(f"J must have shape {(L, L, N_AA, N_AA)}, got {J.shape}")
        if not np.allclose(J, J.transpose(1, 0, 3, 2)):
            raise ValueError("J must be symmetric: J[i, j] == J[j, i].T")
        if np.any(J[np.arange(L), np.arange(L)] != 0):
            raise ValueError("J must have zero diagonal blocks J[i, i]")
        object.__setattr__(self, "h", h)
        object.__setattr__(self, "J", J)
        # Coupled pairs (i < j) and, per site, its coupled partners (for fast Gibbs updates).
        nz = np.any(J != 0, axis=(2, 3))
        ii, jj = np.nonzero(np.triu(nz, k=1))
        object.__setattr__(self, "_pairs", np.stack([ii, jj], axis=1).astype(np.int64))
        object.__setattr__(self, "_neighbours",
                           tuple(np.flatnonzero(nz[i]) for i in range(L)))

    @property
    def L(self) -> int:
        """Sequence length."""
        return int(self.h.shape[0])

    @property
    def pairs(self) -> np.ndarray:
        """``(n_pairs, 2)`` int array of the coupled pairs ``i < j`` (0-based), sorted."""
        return self._pairs  # type: ignore[attr-defined]

    def neighbours(self, i: int) -> np.ndarray:
        """Sites coupled to site ``i`` (0-based)."""
        return self._neighbours[i]  # type: ignore[attr-defined]

    def energy(self, codes: np.ndarray) -> np.ndarray:
        """``H(x)`` for int codes of shape ``(N, L)`` (or one ``(L,)`` sequence -> scalar array).

        Codes must be amino acids 0..19 (no gaps). Only the coupled pairs are summed, so the cost
        is ``O(N * (L + n_pairs))``.
        """
        x = np.asarray(codes)
        single = x.ndim == 1
        x = np.atleast_2d(x).astype(np.int64, copy=False)
        if x.shape[1] != self.L:
            raise ValueError(f"sequences have length {x.shape[1]}, model has L={self.L}")
        if x.size and (x.min() < 0 or x.max() >= N_AA):
            raise ValueError("energy() needs amino-acid codes 0..19 (no gaps)")
        e = self.h[np.arange(self.L), x].sum(axis=1)
        if len(self.pairs):
            i, j = self.pairs[:, 0], self.pairs[:, 1]
            e = e + self.J[i, j, x[:, i], x[:, j]].sum(axis=1)
        return e[0] if single else e

    def conditional_logits(self, x: np.ndarray, i: int) -> np.ndarray:
        """``(N, 20)`` log-potentials of site ``i`` given the rest of each sequence in ``x``."""
        logits = np.broadcast_to(self.h[i], (x.shape[0], N_AA)).copy()
        for j in self.neighbours(i):
            logits += self.J[i, j][:, x[:, j]].T
        return logits


def _random_fold(L: int, rng: np.random.Generator) -> np.ndarray:
    """C-alpha-like coordinates ``(L, 3)`` of a random compact chain (3.8 A steps)."""
    pos = np.zeros((L, 3))
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    for k in range(1, L):
        # persistent random walk pulled gently towards the centre, which makes it compact
        step = 0.55 * direction + rng.normal(size=3) * 0.6 - 0.04 * pos[k - 1]
        step /= np.linalg.norm(step)
        direction = step
        pos[k] = pos[k - 1] + 3.8 * step
    return pos


def random_potts(
    L: int = 60,
    n_pairs: int = 70,
    seed: int = DEMO_SEED,
    *,
    n_modes: int = 4,
    specificity_frac: float = 1.0,
    field_strength: tuple[float, float] = (1.5, 6.0),
    background_sd: float = 0.7,
    group_tolerance: float = 0.35,
    coupling_strength: tuple[float, float] = (2.0, 4.0),
    coupling_noise_sd: float = 0.3,
    min_separation: int = 3,
) -> PottsModel:
    """A random protein-like Potts landscape.

    Contacts: the ``n_pairs`` closest pairs (``|i - j| >= min_separation``) of a random compact
    3-D chain (a "fold") are the coupled pairs.

    Fields: every site has a strength ``s`` drawn uniformly from ``field_strength`` (large = nearly
    invariant site, small = variable site) and 1-4 preferred residues, the best getting ``s`` and
    the others a little less; residues in the same physico-chemical group (:data:`AA_GROUPS`) as
    a preferred one get about ``group_tolerance * s``; every entry has ``N(0, background_sd)``
    noise, on top of ``log`` :data:`AA_BACKGROUND` (so rare amino acids are rarer). Preferred
    residues are drawn with the :data:`AA_BACKGROUND` frequencies. A ``specificity_frac`` share of
    the sites in contacts are instead *specificity sites*: they have one preferred residue per
    "mode" (``n_modes`` subfamily-like states, e.g. the alternative packings of a core), all with
    similar fields.

    Couplings: a contact between two specificity sites rewards the residue combinations of the
    same mode by ``+c`` and penalises mixed-mode combinations of preferred residues by ``-c/2``
    (``c`` uniform in ``coupling_strength``), so the family splits into subfamilies and whether a
    substitution is tolerated depends on its partners (epistasis). Any other contact rewards a
    random matching of the two sites' preferred residues in the same way. Every coupling entry
    gets ``N(0, coupling_noise_sd)`` noise.
    """
    if min_separation + 2 > L:
        raise ValueError(f"L={L} is too short for couplings with separation {min_separation}")
    if n_modes < 1:
        raise ValueError("n_modes must be >= 1")
    rng = np.random.default_rng(seed)

    # ---- contacts of a random fold
    pos = _random_fold(L, rng)
    dist = np.linalg.norm(pos[:, None, :] - pos[None, :, :], axis=-1)
    ii, jj = np.triu_indices(L, k=min_separation)
    chosen = np.sort(np.argsort(dist[ii, jj], kind="stable")[:n_pairs])
    contacts = [(int(ii[p]), int(jj[p])) for p in chosen]
    in_contact = np.zeros(L, dtype=bool)
    for i, j in contacts:
        in_contact[[i, j]] = True

    # ---- fields
    log_bg = np.log(AA_BACKGROUND / AA_BACKGROUND.max())
    h = log_bg + rng.normal(0.0, background_sd, size=(L, N_AA))
    preferred: list[np.ndarray] = []
    modes: list[np.ndarray | None] = []
    for i in range(L):
        s = rng.uniform(*field_strength)
        if in_contact[i] and rng.random() < specificity_frac:
            # repeats allowed: a residue shared by several modes
            mode_res = rng.choice(N_AA, size=n_modes, p=AA_BACKGROUND)
            strengths = {int(a): min(s, 3.0) * rng.uniform(0.8, 1.0) for a in mode_res}
            modes.append(mode_res)
        else:
            # strongly conserved sites tend to have a single preferred residue
            k = int(rng.integers(1, 3)) if s > 4.0 else int(rng.integers(1, 5))
            pref = rng.choice(N_AA, size=k, replace=False, p=AA_BACKGROUND)
            strengths = {int(a): s * (1.0 if r == 0 else rng.uniform(0.6, 0.95))
                         for r, a in enumerate(pref)}
            modes.append(None)
        for a, sa in strengths.items():
            same_group = np.flatnonzero(_GROUP_OF[a] == _GROUP_OF)
            h[i, same_group] = np.maximum(h[i, same_group], group_tolerance * sa
                                          + rng.normal(0.0, background_sd, size=same_group.size))
        for a, sa in strengths.items():
            h[i, a] = sa + rng.normal(0.0, 0.2)
        preferred.append(np.array(sorted(strengths), dtype=np.int64))

    # ---- couplings
    J = np.zeros((L, L, N_AA, N_AA))
    degree = np.bincount(np.array(contacts, dtype=np.int64).ravel(), minlength=L)
    for i, j in contacts:
        # hub sites would freeze if every contact were full strength: scale by degree**-1/4
        c = rng.uniform(*coupling_strength) / (degree[i] * degree[j]) ** 0.25
        block = rng.normal(0.0, coupling_noise_sd, size=(N_AA, N_AA))
        block[np.ix_(preferred[i], preferred[j])] -= 0.5 * c
        mi, mj = modes[i], modes[j]
        if mi is not None and mj is not None:
            matched = list(zip(mi, mj, strict=False))  # pairs up to the shorter of the two
        else:
            matched = list(zip(rng.permutation(preferred[i]), rng.permutation(preferred[j]), strict=False))
        for a, b in set((int(a), int(b)) for a, b in matched):
            block[a, b] += 1.5 * c
        J[i, j] = block
        J[j, i] = block.T
    model = PottsModel(h=h, J=J)
    log.debug("random_potts: L=%d, %d coupled pairs, %d specificity sites", L,
              len(model.pairs), sum(m is not None for m in modes))
    return model


# --------------------------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------------------------

def _categorical(logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One draw per row of ``softmax(logits)`` (rows of an ``(N, K)`` array)."""
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    c = np.cumsum(p, axis=1)
    u = rng.random(logits.shape[0]) * c[:, -1]
    return np.minimum((c < u[:, None]).sum(axis=1), logits.shape[1] - 1)


def _sweep(model: PottsModel, x: np.ndarray, rng: np.random.Generator,
           update_prob: float = 1.0) -> None:
    """One systematic-scan Gibbs sweep over all sites of every chain in ``x`` (in place).

    With ``update_prob < 1`` each (chain, site) is resampled only with that probability, which
    slows the walk down (a "short branch") but still leaves ``p(x)`` invariant.
    """
    n = x.shape[0]
    for i in range(model.L):
        new = _categorical(model.conditional_logits(x, i), rng)
        if update_prob < 1.0:
            keep = rng.random(n) >= update_prob
            new = np.where(keep, x[:, i], new)
        x[:, i] = new


def evolve(model: PottsModel, codes: np.ndarray, n_sweeps: int, rng: np.random.Generator,
           update_prob: float = 1.0) -> np.ndarray:
    """Run ``n_sweeps`` Gibbs sweeps from ``codes`` ``(N, L)``; returns a new int8 array."""
    x = np.array(codes, dtype=np.int64)
    for _ in range(n_sweeps):
        _sweep(model, x, rng, update_prob)
    return x.astype(np.int8)


def gibbs_sample(
    model: PottsModel,
    n_samples: int,
    *,
    n_chains: int = 100,
    burn_in: int = 200,
    thin: int = 10,
    seed: int | np.random.Generator = 0,
    init: np.ndarray | None = None,
) -> np.ndarray:
    """Draw ``n_samples`` sequences ``(n_samples, L)`` int8 from ``p(x) ~ exp(H(x))``.

    ``n_chains`` chains run in parallel (vectorised), from uniform random sequences or from
    ``init`` rows (repeated cyclically), for ``burn_in`` sweeps; then every ``thin`` sweeps each
    chain contributes one sample until ``n_samples`` are collected (chain-major order within each
    round).
    """
    if n_samples < 0 or n_chains < 1 or burn_in < 0 or thin < 1:
        raise ValueError("need n_samples >= 0, n_chains >= 1, burn_in >= 0, thin >= 1")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    if init is None:
        x = rng.integers(0, N_AA, size=(n_chains, model.L))
    else:
        init = np.atleast_2d(np.asarray(init, dtype=np.int64))
        x = init[np.arange(n_chains) % init.shape[0]].copy()
    for _ in range(burn_in):
        _sweep(model, x, rng)
    out: list[np.ndarray] = []
    got = 0
    while got < n_samples:
        for _ in range(thin):
            _sweep(model, x, rng)
        take = min(n_chains, n_samples - got)
        out.append(x[:take].copy())
        got += take
    if not out:
        return np.zeros((0, model.L), dtype=np.int8)
    return np.concatenate(out).astype(np.int8)


# --------------------------------------------------------------------------------------------
# A family: phylogeny + gaps
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Family:
    """A simulated alignment: ``codes`` ``(N, L)`` int8 (gap = :data:`GAP_CODE`), wild type first.

    ``full`` holds the same sequences before gaps were introduced (all amino acids).
    """

    codes: np.ndarray
    full: np.ndarray

    @property
    def wild_type(self) -> np.ndarray:
        """The ungapped wild-type codes ``(L,)`` (row 0)."""
        return self.full[0]


def simulate_family(
    model: PottsModel,
    n_seqs: int = 3000,
    seed: int | np.random.Generator = DEMO_SEED,
    *,
    n_roots: int | None = None,
    root_chains: int = 24,
    root_burn_in: int = 200,
    root_thin: int = 20,
    branch_sweeps: Sequence[float] = (3.0, 1.5, 0.7, 0.3, 0.12, 0.06, 0.03),
    fragment_frac: float = 0.15,
    fragment_len: tuple[int, int] = (5, 25),
    internal_gap_frac: float = 0.05,
    internal_gap_len: tuple[int, int] = (1, 5),
) -> Family:
    """Sample a redundant, gappy family of ``n_seqs`` sequences from ``model``.

    1. Roots: ``n_roots`` sequences from ``root_chains`` Gibbs chains (burn-in, thinning), so
       roots from the same chain are correlated. None: 48, or as many as ``n_seqs`` leaves need
       (ceil(n_seqs / 2**len(branch_sweeps))), so a family of any size can be drawn.
    2. Phylogeny: the population doubles once per entry of ``branch_sweeps``; after each doubling
       every lineage evolves independently for that many sweeps' worth of Gibbs updates
       (fractional values = each site resampled with that probability per sweep). Deep branches
       are long and recent ones short, so leaves come in clusters of near-identical sequences.
    3. ``n_seqs`` leaves are drawn without replacement; the fittest (highest ``H``) becomes the
       wild type and is put first; the rest are shuffled.
    4. Gaps (never in the wild type): a ``fragment_frac`` share of the others lose a leading or
       trailing stretch (length uniform in ``fragment_len``, either end or both); an
       ``internal_gap_frac`` share get one internal deletion (length in ``internal_gap_len``).
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    if n_roots is None:  # 48 roots give 6,144 leaves; a larger family gets more roots, not a deeper tree
        n_roots = max(48, -(-n_seqs // 2 ** len(branch_sweeps)))
    n_leaves = n_roots * 2 ** len(branch_sweeps)
    if n_seqs > n_leaves:
        raise ValueError(f"n_seqs={n_seqs} exceeds the {n_leaves} leaves of the tree; "
                         "raise n_roots or add generations to branch_sweeps")
    roots = gibbs_sample(model, n_roots, n_chains=root_chains, burn_in=root_burn_in,
                         thin=root_thin, seed=rng)
    pop = roots.astype(np.int64)
    for t in branch_sweeps:
        pop = np.repeat(pop, 2, axis=0)
        whole, frac = int(t), t - int(t)
        for _ in range(whole):
            _sweep(model, pop, rng)
        if frac > 0:
            _sweep(model, pop, rng, update_prob=frac)
    leaves = pop[rng.permutation(pop.shape[0])[:n_seqs]]
    energies = model.energy(leaves)
    best = int(np.argmax(energies))
    order = np.concatenate([[best], np.delete(np.arange(n_seqs), best)])
    full = leaves[order].astype(np.int8)

    codes = full.copy()
    L = model.L
    n_other = n_seqs - 1
    frag = rng.random(n_other) < fragment_frac
    which_end = rng.integers(0, 3, size=n_other)           # 0: N-term, 1: C-term, 2: both
    cap = max(1, L // 3)  # keep most of each sequence, also for tiny test models
    len_n = np.minimum(rng.integers(fragment_len[0], fragment_len[1] + 1, size=n_other), cap)
    len_c = np.minimum(rng.integers(fragment_len[0], fragment_len[1] + 1, size=n_other), cap)
    internal = rng.random(n_other) < internal_gap_frac
    gap_len = np.minimum(rng.integers(internal_gap_len[0], internal_gap_len[1] + 1,
                                      size=n_other), cap)
    gap_start = rng.integers(1, max(2, L - cap), size=n_other)
    for k in range(n_other):
        row = codes[k + 1]
        if frag[k]:
            if which_end[k] in (0, 2):
                row[:len_n[k]] = GAP_CODE
            if which_end[k] in (1, 2):
                row[L - len_c[k]:] = GAP_CODE
        if internal[k]:
            row[gap_start[k]:gap_start[k] + gap_len[k]] = GAP_CODE
    log.info("simulated family: %d sequences, wild-type H=%.3f (sample mean %.3f)",
             n_seqs, energies[best], energies.mean())
    return Family(codes=codes, full=full)


# --------------------------------------------------------------------------------------------
# Mutants and the exact answer
# --------------------------------------------------------------------------------------------

#: one substitution: (0-based position, wild-type code, mutant code)
Mutation = tuple[int, int, int]
#: a mutant: one or more substitutions at distinct positions
Mutant = tuple[Mutation, ...]


def _label(muts: Mutant) -> str:
    return ":".join(f"{ALPHABET[a]}{i + 1}{ALPHABET[b]}" for i, a, b in muts)


def single_mutants(wt: np.ndarray) -> list[Mutant]:
    """All ``19 * L`` single substitutions of ``wt``, by position then alphabet order."""
    return [((i, int(a), b),) for i, a in enumerate(np.asarray(wt))
            for b in range(N_AA) if b != a]


def max_double_mutants(L: int) -> int:
    """How many distinct double substitutions a sequence of length ``L`` has: C(L, 2) * 19 * 19."""
    return L * (L - 1) // 2 * (N_AA - 1) ** 2


def _doubles_at(wt: np.ndarray, i: int, j: int) -> list[Mutant]:
    """The 19 * 19 double substitutions at positions ``i < j``, in residue order."""
    wi, wj = int(wt[i]), int(wt[j])
    return [((i, wi, a), (j, wj, b)) for a in range(N_AA) if a != wi for b in range(N_AA) if b != wj]


def double_mutants(wt: np.ndarray, model: PottsModel, n: int,
                   rng: np.random.Generator, coupled_frac: float = 0.5) -> list[Mutant]:
    """``n`` distinct double substitutions of ``wt``, sorted by positions then residues.

    About ``coupled_frac`` of them hit a coupled pair (where epistasis lives), at most the
    ``19 * 19`` per coupled pair that exist; the rest hit random pairs of positions. Raises
    :class:`SimulationError` when ``n`` exceeds the :func:`max_double_mutants` of ``wt``'s length.
    Repeats are drawn again; a part that needs more than half of the doubles left to it is drawn
    without replacement from all of those instead, so the time stays short however close ``n``
    is to the maximum.
    """
    wt = np.asarray(wt)
    L = len(wt)
    n_max = max_double_mutants(L)
    if not 0 <= n <= n_max:
        raise SimulationError(f"cannot draw {n} distinct double mutants: a sequence of length {L} has "
                              f"{n_max:,} ({L * (L - 1) // 2:,} pairs of positions × 19 × 19)")
    pairs = model.pairs
    per_pair = (N_AA - 1) ** 2
    n_coupled = min(int(round(n * coupled_frac)), n, len(pairs) * per_pair) if len(pairs) else 0
    seen: set[Mutant] = set()
    for coupled, target, space in ((True, n_coupled, len(pairs) * per_pair), (False, n, n_max)):
        if target - len(seen) > (space - len(seen)) / 2:  # dense: draw from what is left, without repeats
            stage_pairs = pairs.tolist() if coupled else [(i, j) for i in range(L) for j in range(i + 1, L)]
            free = [m for i, j in stage_pairs for m in _doubles_at(wt, i, j) if m not in seen]
            seen.update(free[k] for k in rng.choice(len(free), size=target - len(seen), replace=False))
        while len(seen) < target:
            if coupled:
                i, j = (int(v) for v in pairs[rng.integers(len(pairs))])
            else:
                i, j = (int(v) for v in np.sort(rng.choice(L, size=2, replace=False)))
            a = int(rng.integers(N_AA - 1))
            b = int(rng.integers(N_AA - 1))
            a += a >= wt[i]
            b += b >= wt[j]
            seen.add(((i, int(wt[i]), a), (j, int(wt[j]), b)))
    return sorted(seen)


def mutant_fitness(model: PottsModel, wt: np.ndarray,
                   mutants: Sequence[Mutant]) -> np.ndarray:
    """Exact ``H(mutant) - H(wt)`` for each mutant (a sequence of substitutions)."""
    wt = np.asarray(wt, dtype=np.int64)
    seqs = np.repeat(wt[None, :], len(mutants), axis=0)
    for r, muts in enumerate(mutants):
        for i, a, b in muts:
            if wt[i] != a:
                raise ValueError(f"{_label(muts)}: wild type has {ALPHABET[wt[i]]} at {i + 1}")
            seqs[r, i] = b
    return model.energy(seqs) - model.energy(wt)


# --------------------------------------------------------------------------------------------
# The demo files
# --------------------------------------------------------------------------------------------

def _header(name: str, row: np.ndarray) -> str:
    cols = np.flatnonzero(row != GAP_CODE)
    start, end = (int(cols[0]) + 1, int(cols[-1]) + 1) if cols.size else (1, 0)
    return f">{name}/{start}-{end}"


def demo_pairs(L: int) -> int:
    """Coupled pairs of a simulated family of length ``L`` as dense as the demo's (70 for L = 60):
    round(7·L/6). A fixed count would make a long family almost site-independent (L = 800 with 70
    pairs: under one partner per five columns), and its VAE no better than a profile. At most the pairs at least 3
    apart that a very short chain has."""
    return min(round(7 * L / 6), (L - 2) * (L - 3) // 2)


def write_demo(
    out_dir: str | os.PathLike = "alignments",
    seed: int = DEMO_SEED,
    n_seqs: int = 3000,
    L: int = 60,
    n_pairs: int = 70,
    n_doubles: int = 500,
    line_width: int = 60,
) -> dict[str, float]:
    """Write ``demo.a2m`` and ``demo_mutants.csv`` into ``out_dir``; return summary statistics.

    The defaults (seed :data:`DEMO_SEED` = 10, 3,000 sequences of length 60, 70 coupled pairs,
    500 double mutants, and the defaults of :func:`random_potts` and :func:`simulate_family`)
    produce the files committed under ``alignments/``; the model is
    ``random_potts(L=L, n_pairs=n_pairs, seed=seed)``:

    * ``demo.a2m`` - the wild type ``>DEMO/1-60`` first, then ``>SIM_000001/<start>-<end>`` ...
      (start/end = first/last non-gap column); uppercase, ``-`` gaps, sequences wrapped at
      ``line_width``.
    * ``demo_mutants.csv`` - ``mutant,fitness``: all ``19 * L`` single mutants (``A1C``,
      positions from 1) followed by ``n_doubles`` double mutants (``A1C:G5W``), ``fitness =
      H(mutant) - H(wild type)`` rounded to 6 decimals.

    Both are written atomically; the same arguments give byte-identical files. The returned dict
    has ``n_seqs``, ``neff`` (80 % identity), ``spearman_si_singles`` and
    ``spearman_si_doubles`` (a site-independent profile fitted to the family against the exact
    fitness) and ``mean_abs_epistasis_doubles``.

    Raises :class:`SimulationError` (a ``ValueError``), before simulating anything, when
    ``n_doubles`` exceeds the :func:`max_double_mutants` of length ``L``.
    """
    if n_doubles > max_double_mutants(L):
        raise SimulationError(f"--n-doubles {n_doubles:,}: a sequence of length {L} has only "
                              f"{max_double_mutants(L):,} distinct double mutants ({L * (L - 1) // 2:,} pairs of "
                              f"positions × 19 × 19); ask for at most that many, or a longer --length")
    contacts = (L - 2) * (L - 3) // 2  # pairs at least 3 apart along the chain, random_potts' min_separation
    if n_pairs > contacts:
        raise SimulationError(f"--pairs {n_pairs:,}: a sequence of length {L} has only {contacts:,} pairs of "
                              "positions at least 3 apart; ask for at most that many, or a longer --length")
    model = random_potts(L=L, n_pairs=n_pairs, seed=seed)
    rng = np.random.default_rng([seed, 1])  # the family and the doubles: a stream of their own
    fam = simulate_family(model, n_seqs=n_seqs, seed=rng)
    wt = fam.wild_type
    singles = single_mutants(wt)
    doubles = double_mutants(wt, model, n_doubles, rng)
    fit_s = mutant_fitness(model, wt, singles)
    fit_d = mutant_fitness(model, wt, doubles)

    out = Path(out_dir)
    replaced = [str(out / n) for n in ("demo.a2m", "demo_mutants.csv") if (out / n).exists()]
    if replaced:  # the default folder is the repository's alignments/: its shipped demo is one command away
        log.warning("replacing %s (the family simulated now, seed %d, L = %d)", " and ".join(replaced), seed, L)
    letters = np.frombuffer((ALPHABET + "-").encode("ascii"), dtype=np.uint8)
    # the two files are a pair: both written before either replaces an earlier one (a full disk between them left a
    # new alignment beside the old family's mutants)
    with atomic_writes([out / "demo.a2m", out / "demo_mutants.csv"], newline="\n") as (fh, fm):
        for k, row in enumerate(fam.codes):
            name = "DEMO" if k == 0 else f"SIM_{k:06d}"
            header = f">{name}/1-{L}" if k == 0 else _header(name, row)
            seq = letters[row.astype(np.int64)].tobytes().decode("ascii")
            fh.write(header + "\n")
            for s in range(0, L, line_width):
                fh.write(seq[s:s + line_width] + "\n")
        fm.write("mutant,fitness\n")
        for muts, f in zip(list(singles) + list(doubles), np.concatenate([fit_s, fit_d]), strict=True):
            fm.write(f"{_label(muts)},{_fmt(f)}\n")

    # Statistics with the package's own weights and site-independent model (a learnability check).
    w = compute_weights(fam.codes, 0.2)
    n_eff = float(w.sum())
    profile = IndependentModel.fit(fam.codes, w)
    si_s = profile.delta(wt, [tuple((i, b) for i, _, b in m) for m in singles])
    si_d = profile.delta(wt, [tuple((i, b) for i, _, b in m) for m in doubles])
    by_mut = {m[0]: f for m, f in zip(singles, fit_s, strict=True)}
    epi = fit_d - np.array([by_mut[a] + by_mut[b] for a, b in doubles]).reshape(-1)
    stats = {
        "n_seqs": n_seqs,
        "neff": n_eff,
        "spearman_si_singles": float(spearmanr(si_s, fit_s)[0]),
        "spearman_si_doubles": float(spearmanr(si_d, fit_d)[0]) if len(doubles) > 1 else float("nan"),
        "mean_abs_epistasis_doubles": float(np.abs(epi).mean()) if len(doubles) else 0.0,
    }
    log.info("wrote %s: %s", out, stats)
    return stats


def _fmt(x: float) -> str:
    s = f"{x:.6f}"
    return "0.000000" if s == "-0.000000" else s
