"""MCMC baseline: Pyro's NUTS on a tractable version of a simulator model, exported to ArviZ."""

from __future__ import annotations

from collections.abc import Callable

from ..arviz import from_mcmc
from ..arviz_compat import Result
from ..infer.chains import run_chains
from ..seeding import preserved_rng, seeded
from .tractable import Likelihood, tractable

__all__ = ["mcmc"]


def mcmc(
    model: Callable,
    *args,
    likelihood: Likelihood | None = None,
    num_samples: int = 1000,
    num_chains: int = 1,
    warmup_steps: int | None = None,
    seed: int | None = 0,
    progress: bool = False,
    kernel_kwargs: dict | None = None,
    **kwargs,
) -> Result:
    """Sample the posterior of ``model(*args, **kwargs)`` with NUTS, the observation given the way
    the model receives it (e.g. ``x=x_o``).

    Each :class:`~pyro_lfi.Simulator` site is replaced by ``likelihood[name](*simulator_params)``
    (see :mod:`pyro_lfi.baselines.tractable`); with ``likelihood=None`` the model must already be
    tractable (a separate likelihood-based version of it). The result is
    :func:`pyro_lfi.from_mcmc` of the run (an :class:`xarray.DataTree` under ArviZ 1.x,
    :class:`arviz.InferenceData` under 0.x): variables named as the model's latent sites, as
    :func:`pyro_lfi.to_inference_data` names them, ``num_chains`` chains of ``num_samples``
    draws each, run one after another in this process (:mod:`pyro_lfi.infer.chains`), each from
    Pyro's default start (or ``kernel_kwargs["init_strategy"]``); the posterior's
    ``sampling_time`` attribute holds the wall time in seconds. The global RNG state is left
    untouched. For posteriors with several modes, :func:`pyro_lfi.posterior_chains` starts the
    chains across them.

    :param warmup_steps: NUTS adaptation steps per chain (default ``num_samples``).
    :param kernel_kwargs: passed to :class:`pyro.infer.NUTS` (e.g. ``target_accept_prob``).
    """
    runnable = model if likelihood is None else tractable(model, likelihood)
    with seeded(seed) if seed is not None else preserved_rng():
        samples = run_chains(
            runnable, args, kwargs, num_samples=num_samples,
            warmup_steps=num_samples if warmup_steps is None else warmup_steps, inits=num_chains,
            progress=progress, kernel_kwargs=kernel_kwargs,
        )
        return from_mcmc(samples)
