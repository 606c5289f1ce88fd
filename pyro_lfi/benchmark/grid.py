"""``python -m pyro_lfi.benchmark.grid``: amortized posterior estimation over tasks x budgets x
estimators, pyro_lfi beside sbi, scored against the published best.

Every *cell* is one library's estimator on one task at one simulation budget: it simulates the
budget from the prior, trains once, then draws ``--num-draws`` posterior samples at each of
``--observations`` and scores them by C2ST against as many reference draws (sbibm's definition;
0.5 is perfect). The cell keeps every observation's C2ST, the training seconds, the seconds of
10,000 draws at observation 1, and the date, machine and thread count it ran on.

The whole grid is hours on two cores, so any subset runs on its own and ``--results FILE``
merges it into the cells saved there earlier (a cell run again replaces its old record);
``--table-only`` prints the table (and ``--plot``) from that file without running anything.

pyro_lfi's estimators: ``nsf``, ``maf``, ``mdn``, ``fmpe`` (flow matching), ``npse`` (score
matching) and ``ensemble`` (five NSFs trained together, a uniform mixture) of the posterior; and
``nle``/``nre``: a likelihood (NSF) or ratio trained once on the same prior simulations, its
posterior at each observation drawn from the surrogate model by adaptive importance sampling
(:func:`~pyro_lfi.importance_posterior`; those seconds are sampling). sbi's: ``nsf``, ``maf``,
``mdn``, ``fmpe`` and ``npse`` (its ``NPE_C``, ``FMPE`` and ``NPSE`` with defaults) and ``nle``
(its ``NLE``, drawn by its default MCMC).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import importlib.util
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

import pyro_lfi as lfi

from ..diagnostics import c2st
from .runner import NUM_DRAWS, time_sampling, train_pyro_lfi
from .tasks import TASKS, Task, get_task

__all__ = ["BUDGETS", "PUBLISHED_BEST", "PYRO_LFI_METHODS", "SBI_METHODS", "Cell", "default_estimator", "format_grid",
           "format_summary", "main", "merge", "plot_grid", "run_cell"]

BUDGETS = (1_000, 10_000, 100_000)
PYRO_LFI_METHODS = ("nsf", "maf", "mdn", "fmpe", "npse", "ensemble", "nle", "nre")
SBI_METHODS = ("nsf", "maf", "mdn", "fmpe", "npse", "nle")
ENSEMBLE_SIZE = 5

#: Best published C2ST per (task, budget), over every method, as issue 19 lists them (two moons at
#: 10,000: NPSE, Geffner et al. 2023 / Sharrock et al. 2024; SLCP at 10,000: Simformer, Gloeckler
#: et al. 2024; the others from the same papers and sbibm, Lueckmann et al. 2021). Cells without
#: a figure show none.
PUBLISHED_BEST = {
    ("two_moons", 1_000): 0.570, ("two_moons", 10_000): 0.513,
    ("gaussian_linear", 1_000): 0.539, ("gaussian_linear", 10_000): 0.507,
    ("slcp", 1_000): 0.831, ("slcp", 10_000): 0.646,
    ("gaussian_mixture", 10_000): 0.515, ("sir", 10_000): 0.537,
}


@dataclasses.dataclass
class Cell:
    """One library's estimator on one task at one budget."""

    task: str
    budget: int
    library: str  #: "pyro_lfi" or "sbi"
    method: str
    seed: int
    observations: list[int]
    c2st: list[float]  #: one per observation
    train_seconds: float
    sample_seconds: float  #: 10,000 draws (``num_draws``) at observation 1
    epochs: int | None
    date: str
    machine: str
    threads: int

    @property
    def key(self) -> tuple:
        return self.task, self.budget, self.library, self.method, self.seed

    @property
    def mean_c2st(self) -> float:
        return statistics.fmean(self.c2st)


def _pyro_lfi_sampler(task: Task, budget: int, method: str, seed: int):
    if method in ("nle", "nre"):
        return _pyro_lfi_likelihood_sampler(task, budget, method, seed)
    options = {"ensemble": ENSEMBLE_SIZE} if method == "ensemble" else {}
    guide, run = train_pyro_lfi(task, budget, seed, "nsf" if method == "ensemble" else method, **options)
    return (lambda n, x: guide.sample(n, x=x)["theta"]), run["train_seconds"], run["epochs"]


def _pyro_lfi_likelihood_sampler(task: Task, budget: int, method: str, seed: int):
    estimator, trainer = (lfi.NeuralLikelihood, lfi.NLE) if method == "nle" else (lfi.NeuralRatio, lfi.NRE)
    site = estimator(task.model, "x")
    sims = lfi.simulate(task.model, budget, seed=seed, progress=False)
    history = trainer(task.model, site, progress=False, seed=seed).train(sims)
    model = lfi.surrogate(task.model, site)

    def sample(n: int, x: torch.Tensor) -> torch.Tensor:
        return lfi.importance_posterior(model, n, x, seed=seed).get_samples()["theta"]

    return sample, history.seconds, history.epochs


def _sbi_sampler(task: Task, budget: int, method: str, seed: int):
    from .peer import train_sbi_nle, train_sbi_npe

    posterior, train_seconds = (train_sbi_nle if method == "nle" else train_sbi_npe)(task, budget, seed, method)
    return (lambda n, x: posterior.sample((n,), x=x, show_progress_bars=False).detach()), train_seconds, None


def run_cell(task: Task, budget: int, library: str, method: str, observations: list[int], seed: int = 0,
             num_draws: int = NUM_DRAWS) -> Cell:
    """Train ``library``'s ``method`` on ``budget`` prior simulations of ``task`` and score it at
    each of ``observations``."""
    methods = {"pyro_lfi": (PYRO_LFI_METHODS, _pyro_lfi_sampler), "sbi": (SBI_METHODS, _sbi_sampler)}
    if library not in methods or method not in methods[library][0]:
        raise ValueError(f"unknown cell {library} {method!r}: pyro_lfi takes {PYRO_LFI_METHODS}, sbi {SBI_METHODS}")
    sample, train_seconds, epochs = methods[library][1](task, budget, method, seed)
    torch.manual_seed(seed)
    _, sample_seconds = time_sampling(lambda: sample(num_draws, task.observation(1)), repeats=1)
    scores = []
    for k in observations:
        reference = task.reference_posterior_at(k, num_draws, seed=seed)
        scores.append(c2st(reference, sample(num_draws, task.observation(k)), seed=seed))
    return Cell(task.name, budget, library, method, seed, list(observations), scores, train_seconds, sample_seconds,
                epochs, time.strftime("%Y-%m-%d"), platform.processor() or platform.machine(),
                torch.get_num_threads())


def merge(saved: list[Cell], new: list[Cell]) -> list[Cell]:
    """``saved`` with every cell of ``new`` in place of a saved one with the same key (task,
    budget, library, method, seed), in the order task, budget, library, method."""
    cells = {c.key: c for c in saved}
    cells.update({c.key: c for c in new})
    return sorted(cells.values(), key=lambda c: (c.task, c.budget, c.library != "pyro_lfi", c.method, c.seed))


def load_cells(path: str | Path) -> list[Cell]:
    """The cells saved in ``path`` (none if it does not exist)."""
    path = Path(path)
    return [Cell(**record) for record in json.loads(path.read_text())] if path.exists() else []


def save_cells(cells: list[Cell], path: str | Path) -> None:
    Path(path).write_text(json.dumps([dataclasses.asdict(c) for c in cells], indent=1))


def format_grid(cells: list[Cell]) -> str:
    """Markdown: one row per cell, with the published best of its task and budget and its
    training time relative to sbi's same estimator in the same grid."""
    sbi = {(c.task, c.budget, c.method, c.seed): c for c in cells if c.library == "sbi"}
    lines = ["| task | budget | published best | library | method | C2ST (mean) | observations | train s "
             "| train / sbi | sample 10k s | run on |", "|---|---:|---:|---|---|---:|---:|---:|---:|---:|---|"]
    for c in cells:
        best = PUBLISHED_BEST.get((c.task, c.budget))
        peer = sbi.get((c.task, c.budget, "nsf" if c.method == "ensemble" else c.method, c.seed))  # nre: none
        ratio = f"{c.train_seconds / peer.train_seconds:.2f}" if peer is not None and c.library != "sbi" else ""
        lines.append(f"| {c.task} | {c.budget:,} | {f'{best:.3f}' if best else ''} | {c.library} | "
                     f"{c.method} | {c.mean_c2st:.3f} | {len(c.c2st)} | {c.train_seconds:.1f} | {ratio} | "
                     f"{c.sample_seconds:.3f} | {c.date}, {c.threads} threads |")
    return "\n".join(lines)


def format_summary(cells: list[Cell]) -> str:
    """Markdown: one row per task and budget with the published best, one column per library and
    method, each cell its mean C2ST with the training seconds in brackets; pyro_lfi's best in
    bold; after the task, the numbers of observations its cells were scored at."""
    order = {"pyro_lfi": PYRO_LFI_METHODS, "sbi": SBI_METHODS}
    columns = sorted({(c.library, c.method) for c in cells},
                     key=lambda key: (key[0] != "pyro_lfi", order[key[0]].index(key[1])))
    rows: dict[tuple, dict[tuple, Cell]] = collections.defaultdict(dict)
    for c in cells:
        rows[c.task, c.budget][c.library, c.method] = c
    lines = ["| task, budget (published best) | " + " | ".join(" ".join(k) for k in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for (task, budget), row in rows.items():
        best = min((c.mean_c2st for (lib, _), c in row.items() if lib == "pyro_lfi"), default=None)
        counts = sorted({len(c.c2st) for c in row.values()})
        published = PUBLISHED_BEST.get((task, budget))
        head = f"{task}, {budget:,}" + (f" ({published:.3f})" if published else "") + \
            f", {'/'.join(map(str, counts))} obs."
        texts = [_summary_text(row.get(k), best) for k in columns]
        lines.append(f"| {head} | " + " | ".join(texts) + " |")
    return "\n".join(lines)


def _summary_text(cell: Cell | None, best: float | None) -> str:
    if cell is None:
        return ""
    text = f"{cell.mean_c2st:.3f} ({cell.train_seconds:.1f})"
    return f"**{text}**" if cell.library == "pyro_lfi" and cell.mean_c2st == best else text


def default_estimator(cells: list[Cell]) -> dict[str, int]:
    """How many (task, budget) cells each pyro_lfi estimator wins (lowest mean C2ST among
    pyro_lfi's estimators run there), most wins first."""
    best: dict[tuple, Cell] = {}
    for c in (c for c in cells if c.library == "pyro_lfi"):
        if (c.task, c.budget) not in best or c.mean_c2st < best[c.task, c.budget].mean_c2st:
            best[c.task, c.budget] = c
    wins = collections.Counter(c.method for c in best.values())
    return dict(wins.most_common())


def plot_grid(cells: list[Cell], path: str | Path) -> None:
    """C2ST against budget, one panel per task, one line per library and method; the published
    best as black stars. Written to ``path`` (never shown)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(c.task for c in cells))
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks), 3), squeeze=False, layout="constrained")
    for ax, task in zip(axes[0], tasks):
        own = [c for c in cells if c.task == task]
        for label in dict.fromkeys((c.library, c.method) for c in own):
            line = sorted((c.budget, c.mean_c2st) for c in own if (c.library, c.method) == label)
            ax.plot(*zip(*line), "o-" if label[0] == "pyro_lfi" else "s--", label=" ".join(label))
        published = sorted((b, v) for (t, b), v in PUBLISHED_BEST.items() if t == task)
        if published:
            ax.plot(*zip(*published), "k*", markersize=10, label="published best")
        ax.set(xscale="log", xlabel="simulations", ylabel="C2ST", title=task, ylim=(0.48, 1.0))
    axes[0][-1].legend(fontsize=6)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pyro_lfi.benchmark.grid", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=sorted(TASKS), choices=sorted(TASKS))
    parser.add_argument("--budgets", nargs="+", type=int, default=list(BUDGETS))
    parser.add_argument("--methods", nargs="*", default=["nsf", "fmpe", "npse", "ensemble"], choices=PYRO_LFI_METHODS,
                        help="pyro_lfi's estimators (none: sbi alone)")
    parser.add_argument("--sbi-methods", nargs="*", default=["nsf", "fmpe", "npse"], choices=SBI_METHODS,
                        help="sbi's (none: pyro_lfi alone; skipped where sbi is not installed)")
    parser.add_argument("--observations", nargs="+", type=int, default=list(range(1, 11)),
                        help="observation indices each cell is scored at (their C2ST is averaged)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-draws", type=int, default=NUM_DRAWS)
    parser.add_argument("--results", default="benchmark-grid.json", help="JSON file the cells are merged into")
    parser.add_argument("--plot", help="also draw the grid to this image file")
    parser.add_argument("--table-only", action="store_true", help="print the saved grid without running")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    cells = load_cells(args.results)
    if not args.table_only:
        sbi_methods = args.sbi_methods if importlib.util.find_spec("sbi") is not None else []
        if args.sbi_methods and not sbi_methods:
            print("sbi is not installed (pip install sbi): running pyro_lfi alone", file=sys.stderr)
        runs = [("pyro_lfi", m) for m in args.methods] + [("sbi", m) for m in sbi_methods]
        for name in args.tasks:
            for budget in args.budgets:
                for library, method in runs:
                    cell = run_cell(get_task(name), budget, library, method, args.observations, args.seed,
                                    args.num_draws)
                    cells = merge(cells, [cell])
                    save_cells(cells, args.results)  # after every cell, in case of interruption
                    print(f"{name} {budget} {library} {method}: C2ST {cell.mean_c2st:.3f}, "
                          f"train {cell.train_seconds:.1f} s", file=sys.stderr, flush=True)
    print(format_grid(cells))
    print("\n" + format_summary(cells))
    wins = ", ".join(f"{method} {count}" for method, count in default_estimator(cells).items())
    print(f"\nCells won by each pyro_lfi estimator (lowest mean C2ST): {wins or 'none yet'}")
    if args.plot and cells:
        plot_grid(cells, args.plot)


if __name__ == "__main__":
    main()
