"""Learned likelihoods and ratios in the benchmark: pyro_lfi's NLE and NRE (one round from the
prior) and SNLE and SNRE (rounds at the observation), beside sbi's NLE, NRE-C, SNLE and SNRE at
the same budget. pyro_lfi draws the surrogate posterior by adaptive importance sampling
(:func:`~pyro_lfi.importance_posterior`, the default ``sampler="importance"``) or by NUTS
(:func:`~pyro_lfi.posterior_chains`, chains started across the modes, :data:`SAMPLER`; the rounds'
proposals :data:`PROPOSALS`), sbi by its default ``MCMCPosterior`` (vectorized slice sampling);
both report effective samples per second."""

from __future__ import annotations

import functools
import math
import sys
import time
from typing import Any

import pyro_lfi as lfi

from ..seeding import seeded
from .tasks import Task

__all__ = [
    "LIKELIHOOD_LABELS", "SBI_LABELS", "run_likelihood_task", "run_pyro_lfi_likelihood",
    "run_sbi_likelihood", "sbi_trainer_class",
]

#: the methods ``--likelihood-methods`` takes, with their labels in the table
LIKELIHOOD_LABELS = {"nle": "pyro_lfi NLE", "nre": "pyro_lfi NRE", "snle": "pyro_lfi SNLE", "snre": "pyro_lfi SNRE"}
SBI_LABELS = {"nle": "sbi NLE", "nre": "sbi NRE-C", "snle": "sbi SNLE", "snre": "sbi SNRE-C"}

#: pyro_lfi's NUTS settings, for each round's proposal and the final draws: 20 vectorized chains
#: with trees of at most 31 leapfrog steps. On SLCP's NLE (1,000 draws, 2026-12-02) they gave
#: 2.3 effective samples per second against 0.55 with the defaults (8 chains, depth up to 10):
#: vectorized chains share one trajectory, whose joint U-turn comes ~4x later than each chain's own.
#: The potential is traced by the JIT: 68 s for those 1,000 draws against 80-86 s untraced.
SAMPLER = {"num_chains": 20, "warmup_steps": 200, "kernel_kwargs": {"max_tree_depth": 5, "jit_compile": True}}
#: the sequential rounds' proposals: many short chains (1,000 SLCP draws: 100 chains of 10 after 100
#: warmup steps took 59 s, ESS 667, C2ST 0.645, against 80 s, ESS 187, C2ST 0.670 with 20 chains)
PROPOSALS = {**SAMPLER, "num_chains": 100, "warmup_steps": 100}


def _budget(method: str, num_rounds: int, simulations_per_round: int) -> tuple[int, int]:
    """``(rounds, simulations per round)``: the amortized methods spend the budget in one round."""
    if method.startswith("s"):
        return num_rounds, simulations_per_round
    return 1, num_rounds * simulations_per_round


def run_pyro_lfi_likelihood(
    task: Task, method: str, num_rounds: int, simulations_per_round: int, seed: int, num_draws: int,
    sampler: str = "importance",
) -> dict[str, Any]:
    """``method`` (a key of :data:`LIKELIHOOD_LABELS`) with pyro_lfi at ``task.observation(1)``:
    training (every round's proposing, simulating and training) is timed as ``wall_seconds``,
    then ``num_draws`` posterior draws by ``sampler`` (``"importance"`` or ``"nuts"``, as for
    :class:`~pyro_lfi.SNLE`)."""
    x_o = task.observation(1)
    rounds, per_round = _budget(method, num_rounds, simulations_per_round)
    likelihood = method in ("nle", "snle")
    estimator = lfi.NeuralLikelihood(task.model, "x") if likelihood else lfi.NeuralRatio(task.model, "x")
    if sampler == "nuts":
        options = {"sampler_kwargs": {key: value for key, value in PROPOSALS.items() if key != "num_chains"},
                   "num_chains": math.gcd(per_round, PROPOSALS["num_chains"])}  # chains of equal length
    else:
        options = {"sampler": "importance"}
    runner = (lfi.SNLE if likelihood else lfi.SNRE)(task.model, estimator, progress=False, seed=seed, **options)
    start = time.perf_counter()
    runner.run(x_o, num_rounds=rounds, simulations_per_round=per_round, seed=seed)
    wall_seconds = time.perf_counter() - start
    start = time.perf_counter()
    if sampler == "nuts":
        draws = lfi.posterior_chains(runner.surrogate(), num_draws, x_o, seed=seed, **SAMPLER)
    else:
        draws = lfi.importance_posterior(runner.surrogate(), num_draws, x_o, seed=seed)
    sample_seconds = time.perf_counter() - start
    return {
        "samples": draws.get_samples()["theta"],
        "train_seconds": sum(r.train_seconds for r in runner.rounds),
        "simulate_seconds": sum(r.simulate_seconds for r in runner.rounds),
        "propose_seconds": sum(r.propose_seconds for r in runner.rounds),
        "sample_seconds": sample_seconds,
        "wall_seconds": wall_seconds + sample_seconds,
        "epochs": sum(r.epochs for r in runner.rounds),
        "ess_per_second": draws.ess_per_second(),
        "rounds": rounds,
    }


def sbi_trainer_class(method: str) -> Any:
    try:
        from sbi.inference import NLE, NRE_C
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("the sbi baselines need the 'sbi' package: pip install sbi") from error
    return NLE if method in ("nle", "snle") else NRE_C


def run_sbi_likelihood(
    task: Task, method: str, num_rounds: int, simulations_per_round: int, seed: int, num_draws: int
) -> dict[str, Any]:
    """The same with sbi's defaults (NSF likelihood / residual-net classifier, slice sampling):
    each sequential round proposes from ``posterior.set_default_x(x_o)``. The ESS is summed over
    sbi's chains, each chain's own, as for pyro_lfi (:meth:`~pyro_lfi.PosteriorSamples.ess`)."""
    x_o = task.observation(1)
    rounds, per_round = _budget(method, num_rounds, simulations_per_round)
    with seeded(seed):
        start = time.perf_counter()
        inference = sbi_trainer_class(method)(prior=task.prior, show_progress_bars=False)
        proposal: Any = task.prior
        train_seconds = 0.0
        for _ in range(rounds):
            theta = proposal.sample((per_round,)) if proposal is task.prior else proposal.sample(
                (per_round,), show_progress_bars=False
            )
            x = task.simulator(theta)
            train_start = time.perf_counter()
            estimator = inference.append_simulations(theta, x).train()
            train_seconds += time.perf_counter() - train_start
            proposal = inference.build_posterior(estimator).set_default_x(x_o)
        sample_start = time.perf_counter()
        samples = proposal.sample((num_draws,), show_progress_bars=False).detach()
        sample_seconds = time.perf_counter() - sample_start
        wall_seconds = time.perf_counter() - start
    # sbi returns its slice chains' draws chain after chain: the ESS as pyro_lfi's, per chain
    num_chains = getattr(proposal, "num_chains", 1)
    by_chain = samples.reshape(num_chains, -1, samples.shape[-1]) if num_draws % num_chains == 0 else samples[None]
    chains = lfi.PosteriorSamples({"theta": by_chain}, sample_seconds)
    return {
        "samples": samples,
        "train_seconds": train_seconds,
        "sample_seconds": sample_seconds,
        "wall_seconds": wall_seconds,
        "ess_per_second": chains.ess_per_second(),
        "rounds": rounds,
    }


def run_likelihood_task(
    task: Task, num_rounds: int, simulations_per_round: int, seed: int, with_sbi: bool, num_draws: int,
    methods: tuple[str, ...], sampler: str = "importance",
) -> dict[str, dict[str, Any]]:
    """Every method of ``methods`` (and sbi's counterpart where ``with_sbi``) on ``task``, by label;
    pyro_lfi's posterior drawn by ``sampler``."""
    runs = {}
    for method in methods:
        jobs = [(LIKELIHOOD_LABELS[method], functools.partial(run_pyro_lfi_likelihood, sampler=sampler))]
        jobs += [(SBI_LABELS[method], run_sbi_likelihood)] if with_sbi else []
        for label, run in jobs:
            runs[label] = run(task, method, num_rounds, simulations_per_round, seed, num_draws)
            # a run can take the better part of an hour: say when each ends
            print(f"{task.name} {label}: wall {runs[label]['wall_seconds']:.1f} s, "
                  f"sample {runs[label]['sample_seconds']:.1f} s", file=sys.stderr, flush=True)
    return runs
