"""Export to ArviZ: a trained guide's posterior at one observation (:func:`to_inference_data`),
one method per group, and a Pyro MCMC run (:func:`from_mcmc`), both built as an
:class:`xarray.DataTree` and returned as the installed ArviZ's result (:mod:`pyro_lfi.arviz_compat`)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from pyro import poutine
from pyro.infer import MCMC, Predictive
from pyro.poutine.util import prune_subsample_sites

from .arviz_compat import Result, dataset, from_datasets, set_attrs
from .guide.posterior import NeuralPosterior
from .infer.chains import PosteriorSamples
from .model.sites import ObservationError, read_observation
from .seeding import preserved_rng, seeded
from .simulation.campaign import simulate
from .simulation.simulations import Simulations

__all__ = ["from_mcmc", "to_inference_data"]


def _numpy(values: dict[str, torch.Tensor], chains: int | None = None) -> dict[str, np.ndarray]:
    """Tensors ``[draws, ...]`` as arrays ``[chains, draws / chains, ...]`` (or as they are)."""
    if chains is None:
        return {n: v.detach().cpu().numpy() for n, v in values.items()}
    return {n: v.reshape(chains, -1, *v.shape[1:]).detach().cpu().numpy() for n, v in values.items()}


class _GuideConverter:
    """Draws from a trained guide at one observation, and the groups built from them."""

    def __init__(self, guide: NeuralPosterior, num_samples: int, num_chains: int, seed: int | None, args, kwargs):
        if num_chains < 1 or num_samples % num_chains:
            raise ValueError(
                f"num_samples={num_samples} draws do not split into num_chains={num_chains} chains of equal "
                "length: give a multiple of num_chains"
            )
        sites = guide.require_built()
        self.guide, self.args, self.kwargs, self.seed, self.chains = guide, args, kwargs, seed, num_chains
        self.observed = read_observation(guide.model, guide.observed, *args, **kwargs)
        if sites.data_batch_shape(self.observed):
            raise ObservationError(
                "to_inference_data exports the posterior of one observation; got a batch of shape "
                f"{tuple(sites.data_batch_shape(self.observed))}: call it once per observation"
            )
        with seeded(seed), torch.no_grad():
            q = guide.posterior_z(*args, **kwargs)
            z = q.sample((num_samples,))
            self.draws = sites.to_constrained(z)[0]
            self.log_q = q.log_prob(z) - sites.log_abs_det_jacobian(z)

    def posterior(self) -> dict[str, np.ndarray]:
        return _numpy(self.draws, self.chains)

    def sample_stats(self) -> dict[str, np.ndarray]:
        return _numpy({"log_q": self.log_q}, self.chains)

    def observed_data(self) -> dict[str, np.ndarray]:
        return _numpy(self.observed)

    def posterior_predictive(self) -> dict[str, np.ndarray]:
        """Fresh simulations at every posterior draw (failed simulations are NaN rows)."""
        sims = simulate(
            self.guide.model, len(self.log_q), *self.args, seed=self.seed, observed=self.guide.observed,
            parameters=self.draws, progress=False, model_kwargs=self.kwargs,
        )
        return _numpy(sims.data, self.chains)


def _prior_groups(prior: Simulations) -> dict[str, dict[str, np.ndarray]]:
    valid = prior[prior.valid]
    return {"prior": _numpy(valid.latents, 1), "prior_predictive": _numpy(valid.data, 1)}


def _groups(arrays: Mapping[str, Mapping[str, np.ndarray]], coords: dict | None, dims: dict | None) -> Result:
    """The result whose groups are ``arrays`` (``observed_data`` without chain and draw dims)."""
    sample_dims = {name: () if name == "observed_data" else ("chain", "draw") for name in arrays}
    return from_datasets(
        {name: dataset(arrays[name], sample_dims=sample_dims[name], coords=coords, dims=dims) for name in arrays}
    )


def to_inference_data(
    guide: NeuralPosterior,
    *args,
    num_samples: int = 1000,
    num_chains: int = 4,
    posterior_predictive: bool = False,
    prior: Simulations | None = None,
    coords: dict | None = None,
    dims: dict | None = None,
    seed: int | None = None,
    model_kwargs: dict | None = None,
    **kwargs,
) -> Result:
    """The posterior of ``guide`` at the observation ``model(*args, **kwargs)`` receives, as
    ArviZ's result: an :class:`xarray.DataTree` under ArviZ 1.x, :class:`arviz.InferenceData`
    under 0.x.

    Groups: ``posterior`` (``num_samples`` independent draws as ``num_chains`` chains, so that
    ArviZ's ``r_hat`` and ESS are defined; one variable per latent site), ``sample_stats``
    (``log_q``: the guide's log density of each draw), ``observed_data``; with
    ``posterior_predictive=True`` a fresh simulation at every draw; with ``prior=simulations``
    the ``prior`` and ``prior_predictive`` groups from its valid rows (one chain).

    :param num_chains: how many chains the draws are split into (``num_samples`` must be a
        multiple); 1 gives one chain of every draw, as before 0.2.
    :param coords: coordinates of dims (default ``0, 1, ...``), as in :func:`arviz.from_dict`.
    :param dims: dims of each variable after ``chain`` and ``draw`` (default ``{name}_dim_{i}``).
    :param seed: seed of the draws (and of the predictive simulations).
    :param model_kwargs: the model's keyword arguments (also given as keywords of their own),
        for one named like a parameter of this function (e.g. ``prior`` or ``seed``).
    """
    converter = _GuideConverter(guide, num_samples, num_chains, seed, args, {**kwargs, **(model_kwargs or {})})
    groups = {
        "posterior": converter.posterior(),
        "sample_stats": converter.sample_stats(),
        "observed_data": converter.observed_data(),
    }
    if posterior_predictive:
        groups["posterior_predictive"] = converter.posterior_predictive()
    if prior is not None:
        groups.update(_prior_groups(prior))
    return _groups(groups, coords, dims)


def from_mcmc(
    mcmc: MCMC | PosteriorSamples,
    *args,
    coords: dict | None = None,
    dims: dict | None = None,
    log_likelihood: bool = True,
    **kwargs,
) -> Result:
    """A Pyro :class:`~pyro.infer.MCMC` run (NUTS or HMC, on a tractable model or on one scored
    by a learned likelihood, :func:`~pyro_lfi.surrogate`) as ArviZ's result, its chains kept;
    or the chains of :func:`~pyro_lfi.posterior_chains` (a
    :class:`~pyro_lfi.infer.PosteriorSamples`, whose ``sampling_time`` becomes the posterior's
    attribute of that name).

    Groups: ``posterior`` (every latent site, ``[chain, draw, ...]``), ``sample_stats``
    (``diverging``; ``lp``, the model's log joint density of each draw in its constrained
    parameters), ``observed_data`` and, with ``log_likelihood=True``, ``log_likelihood`` (each
    observed site's log density at each draw). ``lp`` and ``log_likelihood`` come from one
    vectorized trace of the model; a model that cannot be vectorized (un-annotated batch dims)
    goes without them, with a warning.

    :param args: the model's arguments as given to ``mcmc.run`` (default: those of the last run).
    :param coords: coordinates of dims, as in :func:`to_inference_data`.
    :param dims: dims of each variable after ``chain`` and ``draw``.
    :param kwargs: the model's keyword arguments as given to ``mcmc.run``.
    """
    if not args and not kwargs:  # what the last run received (Pyro keeps it on the MCMC object)
        args, kwargs = _run_arguments(mcmc)
    samples = mcmc.get_samples(group_by_chain=True)
    posterior = {name: value.detach().cpu().numpy() for name, value in samples.items()}
    chains, draws = next(iter(posterior.values())).shape[:2]
    groups = {"posterior": posterior, "sample_stats": {"diverging": _diverging(mcmc, chains, draws)}}
    model = mcmc.model if isinstance(mcmc, PosteriorSamples) else getattr(mcmc.kernel, "model", None)
    if model is not None:
        with preserved_rng(), torch.no_grad():
            sites = _sample_sites(poutine.trace(model).get_trace(*args, **kwargs))
            densities = _log_densities(model, mcmc.get_samples(), args, kwargs, sites)
        observed = {name: site["value"].cpu().numpy() for name, site in sites.items() if site["is_observed"]}
        if observed:
            groups["observed_data"] = observed
        if densities is not None:
            lp, site_log_likelihood = densities
            groups["sample_stats"]["lp"] = lp.reshape(chains, draws)
            if log_likelihood and site_log_likelihood:
                groups["log_likelihood"] = {
                    name: value.reshape(chains, draws, *value.shape[1:]) for name, value in site_log_likelihood.items()
                }
    result = _groups(groups, coords, dims)
    if isinstance(mcmc, PosteriorSamples):
        set_attrs(result, "posterior", {"sampling_time": mcmc.sampling_time})
    return result


def _run_arguments(mcmc: MCMC | PosteriorSamples) -> tuple[tuple, dict]:
    """The model's arguments of the run (Pyro keeps them on the MCMC object)."""
    if isinstance(mcmc, PosteriorSamples):
        return mcmc.args, mcmc.kwargs
    return getattr(mcmc, "_args", ()), getattr(mcmc, "_kwargs", {})


def _diverging(mcmc: MCMC, chains: int, draws: int) -> np.ndarray:
    """``[chain, draw]``: whether each draw's trajectory diverged (as the kernel reported it)."""
    diverging = np.zeros((chains, draws), dtype=bool)
    divergences = mcmc.diagnostics().get("divergences", {})
    for chain in range(chains):
        diverging[chain, divergences.get(f"chain {chain}", [])] = True
    return diverging


def _sample_sites(trace: poutine.Trace) -> dict[str, dict]:
    """The sample sites of ``trace``, plates' subsample sites and deterministic sites left out."""
    return {
        name: site
        for name, site in prune_subsample_sites(trace).nodes.items()
        if site["type"] == "sample" and not site["infer"].get("_deterministic")
    }


def _vectorizable(samples: dict[str, torch.Tensor], sites: dict[str, dict]) -> dict[str, torch.Tensor]:
    """Draws ``[n, *value_shape]`` as ``[n, 1, ..., *value_shape]``, aligned with the plate that
    vectorizes the model over them (Pyro's ``Predictive`` pads only sites without event dims)."""
    dims = [f.dim for site in sites.values() for f in site["cond_indep_stack"] if f.vectorized]
    nesting = -min(dims) if dims else 0
    padded = {}
    for name, value in samples.items():
        pad = nesting - len(sites[name]["fn"].batch_shape) if name in sites else 0
        padded[name] = value.reshape(len(value), *(1,) * pad, *value.shape[1:])
    return padded


def _log_densities(
    model: Callable, samples: dict[str, torch.Tensor], args: Sequence, kwargs: Mapping, sites: dict[str, dict]
) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
    """``(lp [n], observed site -> log density [n, ...])`` at the ``n`` draws ``samples``, from one
    vectorized trace of the model (``sites``: those of one plain run); ``None`` (with a warning)
    where the model cannot be vectorized."""
    n = len(next(iter(samples.values())))
    try:
        predictive = Predictive(model, posterior_samples=_vectorizable(samples, sites))
        vectorized = _sample_sites(predictive.get_vectorized_trace(*args, **kwargs))
        log_probs = {name: site["fn"].log_prob(site["value"]) for name, site in vectorized.items()}
        lp = sum(v.reshape(len(v), -1).sum(-1) if v.dim() else v for v in log_probs.values()).expand(n)
        log_likelihood = {  # each observed site's log density per draw, in the shape of one plain run's
            name: log_probs[name].reshape(n, *site["fn"].log_prob(site["value"]).shape).cpu().numpy()
            for name, site in sites.items()
            if site["is_observed"]
        }
    except Exception as error:  # any model code may fail under vectorization
        warnings.warn(
            f"could not trace the model vectorized over the draws ({error}): no lp and no log_likelihood group",
            stacklevel=3,
        )
        return None
    return lp.cpu().numpy(), log_likelihood
