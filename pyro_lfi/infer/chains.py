r"""NUTS chains run in this process, and their draws kept by chain.

:func:`run_chains` is the chain runner of :func:`~pyro_lfi.sample_posterior` and of
:func:`pyro_lfi.baselines.mcmc`: one Pyro :class:`~pyro.infer.MCMC` run of one adapted
:class:`~pyro.infer.NUTS` chain per start, on the global RNG (the caller seeds it).
:func:`run_vectorized_chains` runs them all as one NUTS chain on independent copies of the
model under a plate, one batched model evaluation per leapfrog step for all of them.

Why not Pyro's ``MCMC(num_chains=k)``: it runs the chains in worker processes when ``k`` is under
the machine's CPU count minus one and one after another otherwise (so on 2 cores always one after
another, with a warning), and its workers need a model that survives the trip (closures,
lambdas in a likelihood factory, trained networks). One process, chain after chain, behaves the
same on every machine, keeps a fixed seed's draws the same everywhere, and gives each chain its
own start (``init_to_value``) and its own step size and mass matrix adaptation.

While chains run, the parameters of a surrogate's learned estimators are out of autograd (MCMC
differentiates with respect to the latent values only), so that ``kernel_kwargs={"jit_compile":
True}`` can trace the potential energy (a trace cannot hold tensors that require grad).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import arviz as az
import torch
import xarray as xr
from pyro.infer import MCMC, NUTS
from pyro.infer.autoguide import init_to_value

from ..model.schema import ModelSchema

__all__ = ["PosteriorSamples", "run_chains", "run_vectorized_chains"]

_CHAINS = "_lfi_chains"


@dataclass
class PosteriorSamples:
    r"""Draws of a posterior by chain: ``chains[name]`` is ``[num_chains, draws, *site_shape]``.

    Export it with :func:`pyro_lfi.from_mcmc` (real chains, ``diverging``, ``lp``,
    ``log_likelihood``, and the ``sampling_time`` attribute). It answers
    :meth:`get_samples` and :meth:`diagnostics` as a Pyro :class:`~pyro.infer.MCMC` does.

    :ivar sampling_time: wall time in seconds of the whole run (drawing the starts, warmup and
        sampling of every chain).
    :ivar starts: each chain's initial value of each latent site, ``[num_chains, *site_shape]``.
    :ivar divergences: per chain, the indices of the draws whose trajectory diverged.
    :ivar model, args, kwargs: the model that was sampled and its arguments.
    """

    chains: dict[str, torch.Tensor]
    sampling_time: float
    starts: dict[str, torch.Tensor] = field(default_factory=dict)
    divergences: list[list[int]] = field(default_factory=list)
    model: Callable | None = None
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)

    @property
    def num_chains(self) -> int:
        return len(next(iter(self.chains.values())))

    def get_samples(self, group_by_chain: bool = False) -> dict[str, torch.Tensor]:
        """Every draw: ``[num_chains * draws, *shape]``, chain after chain, or by chain."""
        if group_by_chain:
            return dict(self.chains)
        return {name: value.reshape(-1, *value.shape[2:]) for name, value in self.chains.items()}

    def diagnostics(self) -> dict[str, dict[str, list[int]]]:
        """``{"divergences": {"chain 0": [...], ...}}``, as :meth:`pyro.infer.MCMC.diagnostics` names them."""
        return {"divergences": {f"chain {c}": list(d) for c, d in enumerate(self.divergences)}}

    def ess(self) -> dict[str, torch.Tensor]:
        r"""Effective sample size of each element of each site, ``[*site_shape]``: the sum over
        chains of each chain's own ESS (ArviZ's bulk ESS of that chain alone).

        Chains started in different modes stay there by design, so the between-chain ESS of
        ArviZ or Pyro (which treats their disagreement as non-convergence) would count the
        modes' separation against the sampler; within-chain ESS measures the mixing inside each.
        (Not :func:`pyro.ops.stats.effective_sample_size` per chain: on a short chain its
        autocorrelation sum can come out negative, and so can the ESS.)
        """
        return {name: _within_chain_ess(value).to(value.dtype) for name, value in self.chains.items()}

    def ess_per_second(self) -> float:
        """The smallest :meth:`ess` of any element of any site, per second of :attr:`sampling_time`."""
        smallest = min(float(value.min()) for value in self.ess().values())
        return smallest / self.sampling_time


def _within_chain_ess(chains: torch.Tensor) -> torch.Tensor:
    """ArviZ's bulk ESS of each chain of ``[num_chains, draws, *shape]`` alone, summed over the
    chains: ``[*shape]``. One ArviZ call: each chain is a run of one chain, ``"run"`` a batch dim."""
    runs = chains.detach().double().reshape(*chains.shape[:2], -1).transpose(1, 2)[:, :, None, :]
    data = xr.Dataset({"value": (("run", "element", "chain", "draw"), runs.numpy())})
    return torch.as_tensor(az.ess(data)["value"].values).sum(0).reshape(chains.shape[2:])


def run_chains(
    model: Callable,
    args: tuple,
    kwargs: dict,
    *,
    num_samples: int,
    warmup_steps: int,
    inits: Sequence[Callable] | int,
    progress: bool = False,
    kernel_kwargs: dict | None = None,
) -> PosteriorSamples:
    """NUTS chains of ``model(*args, **kwargs)``, one after another on the global RNG.

    :param num_samples: draws per chain (after ``warmup_steps`` adaptation steps).
    :param inits: one ``init_strategy`` per chain (e.g. :func:`pyro.infer.autoguide.init_to_value`),
        or a number of chains that start as ``kernel_kwargs`` says (Pyro's default: uniform in
        ``(-2, 2)`` in the unconstrained space).
    :param kernel_kwargs: passed to :class:`pyro.infer.NUTS` (e.g. ``target_accept_prob``).
    """
    strategies = [None] * inits if isinstance(inits, int) else list(inits)
    if not strategies:
        raise ValueError("no chain to run: give at least one start")
    start = time.perf_counter()
    draws, divergences = [], []
    for strategy in strategies:
        options = dict(kernel_kwargs or {})
        if strategy is not None:
            options["init_strategy"] = strategy
        sampler = _nuts(model, model, args, kwargs, options, num_samples, warmup_steps, progress)
        draws.append({name: value.detach() for name, value in sampler.get_samples().items()})
        divergences.append(_divergences(sampler, num_samples))
    chains = {name: torch.stack([chain[name] for chain in draws]) for name in draws[0]}
    return PosteriorSamples(
        chains, time.perf_counter() - start, divergences=divergences, model=model, args=tuple(args), kwargs=dict(kwargs)
    )


def run_vectorized_chains(
    model: Callable,
    schema: ModelSchema,
    args: tuple,
    kwargs: dict,
    *,
    num_samples: int,
    warmup_steps: int,
    starts: dict[str, torch.Tensor],
    progress: bool = False,
    kernel_kwargs: dict | None = None,
) -> PosteriorSamples:
    r"""The chains as one NUTS chain on :math:`k` independent copies of the model, one per start
    (``starts``: latent site → ``[k, *site_shape]``): the model runs under a plate of :math:`k`
    rows (:meth:`~pyro_lfi.model.schema.ModelSchema.vectorize`), so its density is
    :math:`\prod_c p(\theta_c, x_o)` and each copy's draws are draws of the posterior.

    Every leapfrog step evaluates the :math:`k` copies in one batched call, which costs about
    what one copy costs where a step is dominated by per-call overhead (a small network, a
    Python model). The copies share the step size, the trajectory and its length, and each
    keeps its own diagonal of the adapted mass matrix; divergences are the copies' together.
    ``schema`` is the model's (:func:`~pyro_lfi.infer.candidates.read_sites`).
    """
    k = len(next(iter(starts.values())))
    stacked = schema.vectorize(model, k, _CHAINS)
    values = {name: value.reshape(schema.rows_shape(name, k)) for name, value in starts.items()}
    start = time.perf_counter()
    options = {**(kernel_kwargs or {}), "init_strategy": init_to_value(values=values)}
    sampler = _nuts(stacked, model, args, kwargs, options, num_samples, warmup_steps, progress)
    draws = sampler.get_samples()
    chains = {
        name: draws[name].detach().reshape((num_samples, k) + tuple(schema.shapes[name])).transpose(0, 1)
        for name in schema.latents
    }
    divergences = _divergences(sampler, num_samples)
    return PosteriorSamples(
        chains, time.perf_counter() - start, divergences=[list(divergences) for _ in range(k)], model=model,
        args=tuple(args), kwargs=dict(kwargs),
    )


def _nuts(
    sampled: Callable, model: Callable, args: tuple, kwargs: dict, options: dict, num_samples: int,
    warmup_steps: int, progress: bool,
) -> MCMC:
    """One finished NUTS run of ``sampled`` (``model`` itself or its vectorized copy), with
    ``model``'s estimators frozen and, under ``jit_compile``, Pyro's tracer warnings silenced
    (the model's control flow is fixed for a run) unless ``options`` says otherwise."""
    if options.get("jit_compile"):
        options = {"ignore_jit_warnings": True, **options}
    sampler = MCMC(NUTS(sampled, **options), num_samples=num_samples, warmup_steps=warmup_steps,
                   disable_progbar=not progress)
    with _frozen_estimators(model):
        sampler.run(*args, **kwargs)
    return sampler


@contextmanager
def _frozen_estimators(model: Callable) -> Iterator[None]:
    """The parameters of a surrogate's learned estimators (the modules among its ``likelihood``)
    out of autograd for the block, then as they were."""
    modules = [m for m in getattr(model, "likelihood", {}).values() if isinstance(m, torch.nn.Module)]
    flags = [(p, p.requires_grad) for module in modules for p in module.parameters()]
    for parameter, _ in flags:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter, flag in flags:
            parameter.requires_grad_(flag)


def _divergences(sampler: MCMC, num_samples: int) -> list[int]:
    """The sampling steps of a one-chain run whose trajectory diverged (Pyro's diagnostics
    need 4 draws: a shorter chain reports none)."""
    if num_samples < 4:
        return []
    return list(sampler.diagnostics().get("divergences", {}).get("chain 0", []))
