"""How much of the demo family's epistasis the default model's ΔELBO captures, on its 500 double mutants.

    python -m benchmarks.epistasis [--seeds 1,2,3] [--samples 400]

The demo family (alignments/demo.a2m) is sampled from a known Potts model, and demo_mutants.csv holds the exact
fitness of every single and of 500 double mutants. For a double ab, the epistasis is ε = f(ab) − f(a) − f(b): what
the double does beyond its two singles. The script trains the default recipe (``deepseqvae train`` with no
options, one model per seed) and the site-independent model (exactly additive: its ε is 0), scores every mutant with
K = ``--samples`` posterior samples, and reports for each model: the mean |ε| of the truth and of the model's ΔELBO,
the correlation of the model's ε with the true one, and the Spearman ρ of the doubles' ranking by the model, by the
sum of the model's own singles (its additive part alone) and by the sum of the true singles. Writes
benchmarks/results/epistasis-<date>.md.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
from scipy.stats import pearsonr, spearmanr

from benchmarks._common import REPO, header, package_env, write_result


def run(cmd: list[str], cwd: Path) -> None:
    """Run a ``deepseqvae`` command with the repository's package first on the path."""
    env = package_env()
    subprocess.run(cmd, cwd=cwd, check=True, env=env, stdout=subprocess.DEVNULL)


def epistasis(mutants: pd.Series, values: pd.Series) -> pd.DataFrame:
    """For each double ``a:b`` of ``mutants``: its value, and the sum of its two singles' values (``values``)."""
    by_mutant = dict(zip(mutants, values, strict=True))
    doubles = [m for m in mutants if ":" in m]
    pairs = [m.split(":") for m in doubles]
    return pd.DataFrame({"mutant": doubles, "double": [by_mutant[m] for m in doubles],
                         "additive": [by_mutant[a] + by_mutant[b] for a, b in pairs]})


def compare(truth: pd.DataFrame, model: pd.DataFrame) -> dict[str, float]:
    """The measures of one model's doubles against the true ones (both from :func:`epistasis`)."""
    eps_true = truth["double"] - truth["additive"]
    eps_model = model["double"] - model["additive"]
    # the site-independent model: ε = 0 up to the rounding of the scores as written (6 significant digits)
    flat = bool(eps_model.abs().max() < 1e-3)
    return {
        "mean_abs_eps_true": float(eps_true.abs().mean()),
        "mean_abs_eps_model": float(eps_model.abs().mean()),
        "pearson_eps": float("nan") if flat else float(pearsonr(eps_model, eps_true)[0]),
        "rho_doubles": float(spearmanr(model["double"], truth["double"])[0]),
        "rho_doubles_model_additive": float(spearmanr(model["additive"], truth["double"])[0]),
        "rho_doubles_true_additive": float(spearmanr(truth["additive"], truth["double"])[0]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="1,2,3", help="seeds of the default-recipe models")
    ap.add_argument("--samples", type=int, default=400, help="posterior samples K per mutant (score --samples)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    exe = [sys.executable, "-m", "deepseqvae"]
    table = pd.read_csv(REPO / "alignments" / "demo_mutants.csv")
    truth = epistasis(table["mutant"], table["fitness"])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shutil.copy(REPO / "alignments" / "demo_mutants.csv", tmp)
        models = [(f"VAE, default recipe, seed {s}", f"vae{s}.pt", ["--seed", str(s)]) for s in seeds]
        models.append(("site-independent", "independent.pt", ["--model", "independent"]))
        for name, path, options in models:
            print(f"training {name}", file=sys.stderr, flush=True)
            run([*exe, "train", str(REPO / "alignments" / "demo.a2m"), "-o", path, *options, "--no-progress"], tmp)
            run([*exe, "score", "demo_mutants.csv", "--model", path, "-o", f"{path}.csv", "--samples",
                 str(args.samples), "--no-progress"], tmp)
            scored = pd.read_csv(tmp / f"{path}.csv")
            rows.append({"model": name, **compare(truth, epistasis(scored["mutant"], scored["score"]))})
    frame = pd.DataFrame(rows)
    text = header("Epistasis of the demo family's double mutants: truth and models")
    text += (f"{len(truth)} double mutants of alignments/demo_mutants.csv (exact Potts fitness); ε = f(ab) − f(a) − "
             f"f(b), of the truth and of each model's ΔELBO (K = {args.samples} samples per mutant, seed 0 of "
             "`score`).\n\n"
             "| model | mean abs ε, truth | mean abs ε, model | Pearson r of the model's ε with the truth's | "
             "ρ of the doubles: model | ρ: sum of the model's singles | ρ: sum of the true singles |\n"
             "|---|---|---|---|---|---|---|\n")
    for r in rows:
        text += (f"| {r['model']} | {r['mean_abs_eps_true']:.3f} | {r['mean_abs_eps_model']:.3f} | "
                 f"{r['pearson_eps']:.3f} | {r['rho_doubles']:.4f} | {r['rho_doubles_model_additive']:.4f} | "
                 f"{r['rho_doubles_true_additive']:.4f} |\n")
    text += "\n```text\n" + frame.to_csv(index=False) + "```\n"
    print(text)
    write_result(text, args.out, "epistasis")


if __name__ == "__main__":
    main()
