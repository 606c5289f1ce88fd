"""The side-by-side benchmark: pyro_lfi and sbi on the same simulation budget, amortized (NPE)
and sequential (APT / SNPE-C focused on one observation)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

import pyro_lfi as lfi

from ..diagnostics import c2st
from .likelihoods import LIKELIHOOD_LABELS, SBI_LABELS, run_likelihood_task
from .tasks import Task

__all__ = ["Result", "format_table", "run_pyro_lfi", "run_pyro_lfi_sequential", "run_sequential_task", "run_task",
           "time_sampling", "train_pyro_lfi"]

NUM_DRAWS = 10_000


@dataclass
class Result:
    """One method on one task."""

    task: str
    method: str
    num_simulations: int
    c2st: float
    train_seconds: float
    sample_seconds: float
    simulate_seconds: float | None = None
    epochs: int | None = None
    wall_seconds: float | None = None
    rounds: int = 1
    ess_per_second: float | None = None  #: of MCMC on a learned likelihood or ratio
    propose_seconds: float | None = None  #: sequential runs: drawing the proposals' parameters

    def as_dict(self) -> dict:
        return asdict(self)


def time_sampling(sample, repeats: int = 3) -> tuple[torch.Tensor, float]:
    """Best wall time of ``sample()`` over ``repeats`` runs after one warm-up run."""
    draws = sample()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        draws = sample()
        best = min(best, time.perf_counter() - start)
    return draws, best


def train_pyro_lfi(task: Task, num_simulations: int, seed: int, estimator: str = "nsf",
                   **guide_options) -> tuple[lfi.NeuralPosterior, dict]:
    """Simulate ``num_simulations`` from the prior and train a guide with pyro_lfi's NPE
    (``guide_options`` such as ``ensemble=5`` go to the guide); the guide and the times."""
    start = time.perf_counter()
    sims = lfi.simulate(task.model, num_simulations, seed=seed, progress=False)
    simulate_seconds = time.perf_counter() - start
    guide = lfi.NeuralPosterior(task.model, estimator=estimator, **guide_options)
    history = lfi.NPE(task.model, guide, progress=False, seed=seed).train(sims)
    return guide, {"train_seconds": history.seconds, "simulate_seconds": simulate_seconds, "epochs": history.epochs}


def run_pyro_lfi(
    task: Task, num_simulations: int, seed: int, estimator: str = "nsf", num_draws: int = NUM_DRAWS
) -> dict:
    """Simulate, train and sample with pyro_lfi at one budget."""
    guide, run = train_pyro_lfi(task, num_simulations, seed, estimator)
    x_o = task.observation(1)
    draws, sample_seconds = time_sampling(lambda: guide.sample(num_draws, x=x_o)["theta"])
    return {"samples": draws, "sample_seconds": sample_seconds, **run}


def run_pyro_lfi_sequential(
    task: Task, num_rounds: int, simulations_per_round: int, seed: int, estimator: str = "nsf",
    num_draws: int = NUM_DRAWS, method: str = "apt", bounded: str = "transform",
) -> dict:
    """Sequential NPE (``method``: ``"apt"``, ``"tsnpe"`` or ``"snpe-a"``, which always uses a
    mixture density guide on the transformed sites) with pyro_lfi at ``task.observation(1)``,
    interval sites modelled as ``bounded`` says: the whole loop (proposals, simulation, training)
    is timed as ``wall_seconds``."""
    x_o = task.observation(1)
    if method == "snpe-a":
        estimator, bounded = "mdn", "transform"
    guide = lfi.NeuralPosterior(task.model, estimator=estimator, bounded=bounded)
    snpe = lfi.SNPE(task.model, guide, method=method, progress=False, seed=seed)
    start = time.perf_counter()
    snpe.run(x_o, num_rounds=num_rounds, simulations_per_round=simulations_per_round, seed=seed)
    wall_seconds = time.perf_counter() - start
    draws, sample_seconds = time_sampling(lambda: guide.sample(num_draws, x=x_o)["theta"])
    return {
        "samples": draws,
        "train_seconds": sum(r.train_seconds for r in snpe.rounds),
        "sample_seconds": sample_seconds,
        "simulate_seconds": sum(r.simulate_seconds for r in snpe.rounds),
        "propose_seconds": sum(r.propose_seconds for r in snpe.rounds),
        "wall_seconds": wall_seconds,
        "epochs": sum(r.epochs for r in snpe.rounds),
    }


def _score(task: Task, runs: dict, reference: torch.Tensor, budget: int, seed: int, rounds: int) -> list[Result]:
    return [
        Result(
            task.name,
            method,
            budget,
            c2st(reference, run["samples"], seed=seed),  # z-scored by the reference, as in sbibm
            run["train_seconds"],
            run["sample_seconds"],
            run.get("simulate_seconds"),
            run.get("epochs"),
            run.get("wall_seconds"),
            run.get("rounds", rounds),
            run.get("ess_per_second"),
            run.get("propose_seconds"),
        )
        for method, run in runs.items()
    ]


SEQUENTIAL_LABELS = {"apt": "pyro_lfi APT", "tsnpe": "pyro_lfi TSNPE", "snpe-a": "pyro_lfi SNPE-A"}

#: the sbi method each pyro_lfi method's time is compared with
PEERS = {
    "pyro_lfi": "sbi",
    **{label: "sbi SNPE-C" for label in SEQUENTIAL_LABELS.values()},
    **{LIKELIHOOD_LABELS[m]: SBI_LABELS[m] for m in LIKELIHOOD_LABELS},
}


def run_sequential_task(
    task: Task, num_rounds: int, simulations_per_round: int, seed: int = 0, with_sbi: bool = True,
    estimator: str = "nsf", num_draws: int = NUM_DRAWS, methods: tuple[str, ...] = ("apt",),
    bounded: str = "transform",
) -> list[Result]:
    """Sequential NPE with pyro_lfi (each of ``methods``, guides built with ``bounded``) and sbi's
    SNPE-C (when installed) on ``task``; ``num_draws`` posterior draws of each are compared with
    as many reference draws."""
    reference = task.reference_posterior_at(1, num_draws, seed=seed)
    runs = {
        SEQUENTIAL_LABELS[method]: run_pyro_lfi_sequential(
            task, num_rounds, simulations_per_round, seed, estimator, num_draws, method, bounded
        )
        for method in methods
    }
    if with_sbi:
        from .peer import run_sbi_sequential

        runs["sbi SNPE-C"] = run_sbi_sequential(
            task, num_rounds, simulations_per_round, seed, estimator=estimator, num_samples=num_draws
        )
    return _score(task, runs, reference, num_rounds * simulations_per_round, seed, num_rounds)


def run_task(
    task: Task, num_simulations: int, seed: int = 0, with_sbi: bool = True, estimator: str = "nsf",
    num_draws: int = NUM_DRAWS,
) -> list[Result]:
    """pyro_lfi (and sbi when installed) on ``task``, scored by C2ST of ``num_draws`` posterior
    draws against as many reference draws."""
    reference = task.reference_posterior_at(1, num_draws, seed=seed)
    runs = {"pyro_lfi": run_pyro_lfi(task, num_simulations, seed, estimator, num_draws)}
    if with_sbi:
        from .peer import run_sbi_npe

        runs["sbi"] = run_sbi_npe(task, num_simulations, seed, estimator=estimator, num_samples=num_draws)
    return _score(task, runs, reference, num_simulations, seed, 1)


def run_likelihood_benchmark(
    task: Task, num_rounds: int, simulations_per_round: int, seed: int = 0, with_sbi: bool = True,
    num_draws: int = NUM_DRAWS, methods: tuple[str, ...] = ("nle", "snle"), sampler: str = "importance",
) -> list[Result]:
    """Learned likelihoods and ratios (``methods``: keys of ``LIKELIHOOD_LABELS``) with pyro_lfi
    (its posterior drawn by ``sampler``) and sbi on ``task`` at ``task.observation(1)``, scored
    like the other runs."""
    reference = task.reference_posterior_at(1, num_draws, seed=seed)
    runs = run_likelihood_task(task, num_rounds, simulations_per_round, seed, with_sbi, num_draws, methods, sampler)
    return _score(task, runs, reference, num_rounds * simulations_per_round, seed, 1)


def format_table(results: list[Result]) -> str:
    """A Markdown table; times of pyro_lfi as a ratio to sbi's where both ran (training time
    for amortized posteriors; the whole wall time, training and MCMC, for sequential runs and
    learned likelihoods). Sequential runs also give the time spent proposing and simulating."""
    peer = {(r.task, r.rounds, r.method): r for r in results if r.method.startswith("sbi")}
    lines = [
        "| task | method | rounds x simulations | C2ST | propose s | simulate s | train s | wall s | sample s "
        "| ESS/s | time / sbi |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        ratio, other = "", peer.get((r.task, r.rounds, PEERS.get(r.method)))
        whole_loop = r.rounds > 1 or r.ess_per_second is not None  # timed by its wall time
        if other is not None and not r.method.startswith("sbi"):
            field = "wall_seconds" if whole_loop else "train_seconds"
            ratio = f"{getattr(r, field) / getattr(other, field):.2f}"
        propose, simulate = (
            f"{s:.1f}" if s is not None and r.rounds > 1 else "" for s in (r.propose_seconds, r.simulate_seconds)
        )
        wall = f"{r.wall_seconds:.1f}" if r.wall_seconds is not None and whole_loop else ""
        ess = f"{r.ess_per_second:.3g}" if r.ess_per_second is not None else ""
        lines.append(
            f"| {r.task} | {r.method} | {r.rounds} x {r.num_simulations // r.rounds} | {r.c2st:.3f} "
            f"| {propose} | {simulate} | {r.train_seconds:.1f} | {wall} | {r.sample_seconds:.3f} | {ess} | {ratio} |"
        )
    return "\n".join(lines)
