"""Peer baselines: the ``sbi`` package's NPE (single round) and SNPE-C (sequential).

Both use ``sbi``'s default training settings and the task's own prior and simulator, so
they spend the same simulation budget as ``pyro_lfi``. ``sbi`` is imported lazily
(``pip install sbi``). Neither function changes torch's thread count or global RNG state:
they run inside a forked RNG seeded with ``seed``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from pyro_lfi.benchmark.tasks import Task
from pyro_lfi.seeding import seeded

__all__ = ["run_sbi_npe", "run_sbi_sequential", "train_sbi_nle", "train_sbi_npe"]

NUM_POSTERIOR_SAMPLES = 10_000


def _sbi_npe_class() -> Any:
    try:
        from sbi.inference import NPE_C
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the sbi baselines need the 'sbi' package: pip install sbi (or pip install 'pyro-lfi[benchmark]')"
        ) from err
    return NPE_C


def _log_writer() -> Any:
    """A TensorBoard writer in a temporary folder, so sbi leaves no ``sbi-logs/`` behind."""
    import tempfile

    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=tempfile.mkdtemp(prefix="sbi-logs-"))


def _x_o(task: Task, x_o: Tensor | None) -> Tensor:
    return task.observation(1) if x_o is None else torch.as_tensor(x_o, dtype=torch.get_default_dtype())


def _sbi_fmpe(prior) -> Any:
    from sbi.inference import FMPE

    return FMPE(prior=prior, show_progress_bars=False, summary_writer=_log_writer())


def _sbi_npse(prior) -> Any:
    from sbi.inference import NPSE

    return NPSE(prior=prior, sde_type="vp", show_progress_bars=False, summary_writer=_log_writer())


#: sbi's counterparts of pyro_lfi's ODE estimators: flow matching (sbi's FMPE) and score-based NPE
#: with a variance-preserving SDE (sbi's NPSE), each with sbi's default network
ODE_PEERS = {"fmpe": _sbi_fmpe, "npse": _sbi_npse}


def train_sbi_npe(task: Task, num_simulations: int, seed: int, estimator: str = "nsf") -> tuple[Any, float]:
    """Single-round NPE with ``sbi``: simulate ``num_simulations`` from the prior and train.

    :param estimator: ``sbi`` density estimator name (``"nsf"``, ``"maf"``, ``"mdn"``), or
        ``"fmpe"``/``"npse"`` for sbi's ``FMPE``/``NPSE`` (:data:`ODE_PEERS`).
    :returns: sbi's posterior and the seconds of ``append_simulations`` and ``train``.
    """
    if estimator in ODE_PEERS:  # sbi's flow matching / score-based NPE: their own trainer classes
        return _train_sbi(task, num_simulations, seed, lambda: ODE_PEERS[estimator](task.prior))
    npe_class = _sbi_npe_class()
    return _train_sbi(task, num_simulations, seed, lambda: npe_class(
        prior=task.prior, density_estimator=estimator, show_progress_bars=False, summary_writer=_log_writer()
    ))


def train_sbi_nle(task: Task, num_simulations: int, seed: int, method: str = "nle") -> tuple[Any, float]:
    """Single-round NLE with ``sbi`` (its NSF likelihood), as :func:`train_sbi_npe`; the
    posterior is sbi's default MCMC on it. ``method`` is only ``"nle"``."""
    from .likelihoods import sbi_trainer_class

    trainer = sbi_trainer_class(method)
    return _train_sbi(task, num_simulations, seed, lambda: trainer(prior=task.prior, show_progress_bars=False))


def _train_sbi(task: Task, num_simulations: int, seed: int, make_inference: Callable[[], Any]) -> tuple[Any, float]:
    """Simulate ``num_simulations`` from the prior under ``seed``, train ``make_inference()`` on
    them; its posterior and the seconds of ``append_simulations`` and ``train``."""
    with seeded(seed):
        theta = task.prior.sample((num_simulations,))
        x = task.simulator(theta)
        inference = make_inference()
        start = time.perf_counter()
        estimator = inference.append_simulations(theta, x).train()
        train_seconds = time.perf_counter() - start
        return inference.build_posterior(estimator), train_seconds


def run_sbi_npe(
    task: Task,
    num_simulations: int,
    seed: int,
    estimator: str = "nsf",
    *,
    x_o: Tensor | None = None,
    num_samples: int = NUM_POSTERIOR_SAMPLES,
) -> dict[str, Any]:
    """Single-round NPE with ``sbi`` (:func:`train_sbi_npe`), sampled at ``x_o`` (default
    ``task.observation(1)``).

    :returns: ``samples[num_samples, dim_theta]``, ``train_seconds`` (``append_simulations``
        and ``train``) and ``sample_seconds`` (``posterior.sample``).
    """
    posterior, train_seconds = train_sbi_npe(task, num_simulations, seed, estimator)
    with seeded(seed):
        start = time.perf_counter()
        samples = posterior.sample((num_samples,), x=_x_o(task, x_o), show_progress_bars=False)
        sample_seconds = time.perf_counter() - start
    return {"samples": samples.detach(), "train_seconds": train_seconds, "sample_seconds": sample_seconds}


def run_sbi_sequential(
    task: Task,
    num_rounds: int,
    simulations_per_round: int,
    seed: int,
    estimator: str = "nsf",
    *,
    x_o: Tensor | None = None,
    num_samples: int = NUM_POSTERIOR_SAMPLES,
) -> dict[str, Any]:
    """Sequential NPE (SNPE-C / APT) with ``sbi``'s standard round loop.

    Round 1 simulates from the prior; each later round simulates from the current
    posterior conditioned on ``x_o`` (``proposal = posterior.set_default_x(x_o)``) and
    trains with the atomic APT loss.

    :returns: as :func:`run_sbi_npe`, with ``train_seconds`` summed over rounds, plus
        ``propose_seconds`` (sampling the proposals), ``simulate_seconds`` and ``wall_seconds``:
        the whole loop including simulation and proposal sampling.
    """
    if num_rounds < 1:
        raise ValueError(f"num_rounds must be at least 1, got {num_rounds}")
    npe_class = _sbi_npe_class()
    x_o = _x_o(task, x_o)
    with seeded(seed):
        wall_start = time.perf_counter()
        inference = npe_class(
            prior=task.prior, density_estimator=estimator, show_progress_bars=False, summary_writer=_log_writer()
        )
        proposal: Any = task.prior
        posterior: Any = None
        seconds = {"propose": 0.0, "simulate": 0.0, "train": 0.0}
        for round_index in range(num_rounds):
            start = time.perf_counter()
            if round_index == 0:
                theta = proposal.sample((simulations_per_round,))
            else:
                theta = proposal.sample((simulations_per_round,), show_progress_bars=False)
                seconds["propose"] += time.perf_counter() - start
            start = time.perf_counter()
            x = task.simulator(theta)
            seconds["simulate"] += time.perf_counter() - start
            start = time.perf_counter()
            density_estimator = inference.append_simulations(theta, x, proposal=proposal).train()
            seconds["train"] += time.perf_counter() - start
            posterior = inference.build_posterior(density_estimator)
            proposal = posterior.set_default_x(x_o)
        start = time.perf_counter()
        samples = posterior.sample((num_samples,), x=x_o, show_progress_bars=False)
        sample_seconds = time.perf_counter() - start
        wall_seconds = time.perf_counter() - wall_start
    return {
        "samples": samples.detach(),
        "train_seconds": seconds["train"],
        "sample_seconds": sample_seconds,
        "propose_seconds": seconds["propose"],
        "simulate_seconds": seconds["simulate"],
        "wall_seconds": wall_seconds,
    }
