"""The side-by-side benchmark: pyro_lfi's NPE and sbi's NPE on the same simulations budget."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

import pyro_lfi as lfi

from ..diagnostics import c2st
from .tasks import Task

__all__ = ["Result", "format_table", "run_pyro_lfi", "run_task"]

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


def run_pyro_lfi(task: Task, num_simulations: int, seed: int, estimator: str = "nsf") -> dict:
    """Simulate, train and sample with pyro_lfi at one budget."""
    start = time.perf_counter()
    sims = lfi.simulate(task.model, num_simulations, seed=seed, progress=False)
    simulate_seconds = time.perf_counter() - start
    guide = lfi.NeuralPosterior(task.model, estimator=estimator)
    history = lfi.NPE(task.model, guide, progress=False, seed=seed).train(sims)
    x_o = task.observation(1)
    draws, sample_seconds = time_sampling(lambda: guide.sample(NUM_DRAWS, x=x_o)["theta"])
    return {
        "samples": draws,
        "train_seconds": history.seconds,
        "sample_seconds": sample_seconds,
        "simulate_seconds": simulate_seconds,
        "epochs": history.epochs,
    }


def run_task(
    task: Task, num_simulations: int, seed: int = 0, with_sbi: bool = True, estimator: str = "nsf"
) -> list[Result]:
    """pyro_lfi (and sbi when installed) on ``task``, scored by C2ST against the reference."""
    x_o = task.observation(1)
    reference = task.reference_posterior(x_o, NUM_DRAWS, seed=seed)
    runs = {"pyro_lfi": run_pyro_lfi(task, num_simulations, seed, estimator)}
    if with_sbi:
        from .peer import run_sbi_npe

        runs["sbi"] = run_sbi_npe(task, num_simulations, seed, estimator=estimator)
    return [
        Result(
            task.name,
            method,
            num_simulations,
            c2st(reference, run["samples"], seed=seed),  # z-scored by the reference, as in sbibm
            run["train_seconds"],
            run["sample_seconds"],
            run.get("simulate_seconds"),
            run.get("epochs"),
        )
        for method, run in runs.items()
    ]


def format_table(results: list[Result]) -> str:
    """A Markdown table, with pyro_lfi's times as a ratio to sbi's where both ran."""
    peer = {r.task: r for r in results if r.method == "sbi"}
    lines = [
        "| task | method | simulations | C2ST | train s | sample 10k s | train / sbi |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        ratio = f"{r.train_seconds / peer[r.task].train_seconds:.2f}" if r.task in peer else ""
        lines.append(
            f"| {r.task} | {r.method} | {r.num_simulations} | {r.c2st:.3f} | {r.train_seconds:.1f} "
            f"| {r.sample_seconds:.3f} | {ratio} |"
        )
    return "\n".join(lines)
