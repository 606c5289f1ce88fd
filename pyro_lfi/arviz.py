"""Export of a trained guide to :class:`arviz.InferenceData`, one method per group."""

from __future__ import annotations

import arviz as az
import numpy as np
import torch

from .guide.posterior import NeuralPosterior
from .model.sites import ObservationError, read_observation
from .seeding import seeded
from .simulation.campaign import simulate
from .simulation.simulations import Simulations

__all__ = ["to_inference_data"]


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
) -> az.InferenceData:
    """The posterior of ``guide`` at the observation ``model(*args, **kwargs)`` receives, as
    :class:`arviz.InferenceData`.

    Groups: ``posterior`` (``num_samples`` independent draws as ``num_chains`` chains, so that
    ArviZ's ``r_hat`` and ESS are defined; one variable per latent site), ``sample_stats``
    (``log_q``: the guide's log density of each draw), ``observed_data``; with
    ``posterior_predictive=True`` a fresh simulation at every draw; with ``prior=simulations``
    the ``prior`` and ``prior_predictive`` groups from its valid rows (one chain).

    :param num_chains: how many chains the draws are split into (``num_samples`` must be a
        multiple); 1 gives one chain of every draw, as before 0.2.
    :param coords: coordinates, as in :func:`arviz.from_dict`.
    :param dims: dims of each variable, as in :func:`arviz.from_dict`.
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
    idata = az.from_dict(**groups, coords=coords, dims=dims)
    for group in idata.groups():
        idata[group].attrs["inference_library"] = "pyro_lfi"
    return idata
