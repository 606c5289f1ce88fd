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


def _numpy(values: dict[str, torch.Tensor], chain: bool = True) -> dict[str, np.ndarray]:
    """Tensors ``[draw, ...]`` as arrays ``[chain=1, draw, ...]`` (or as they are)."""
    return {n: (v[None] if chain else v).detach().cpu().numpy() for n, v in values.items()}


class _GuideConverter:
    """Draws from a trained guide at one observation, and the groups built from them."""

    def __init__(self, guide: NeuralPosterior, num_samples: int, seed: int | None, args, kwargs):
        sites = guide.require_built()
        self.guide, self.args, self.kwargs, self.seed = guide, args, kwargs, seed
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
        return _numpy(self.draws)

    def sample_stats(self) -> dict[str, np.ndarray]:
        return {"log_q": self.log_q[None].cpu().numpy()}

    def observed_data(self) -> dict[str, np.ndarray]:
        return _numpy(self.observed, chain=False)

    def posterior_predictive(self) -> dict[str, np.ndarray]:
        """Fresh simulations at every posterior draw (failed simulations are NaN rows)."""
        sims = simulate(
            self.guide.model, len(self.log_q), *self.args, seed=self.seed, observed=self.guide.observed,
            parameters=self.draws, progress=False, model_kwargs=self.kwargs,
        )
        return _numpy(sims.data)


def _prior_groups(prior: Simulations) -> dict[str, dict[str, np.ndarray]]:
    valid = prior[prior.valid]
    return {"prior": _numpy(valid.latents), "prior_predictive": _numpy(valid.data)}


def to_inference_data(
    guide: NeuralPosterior,
    *args,
    num_samples: int = 1000,
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

    Groups: ``posterior`` (one chain of ``num_samples`` independent draws, one variable per
    latent site), ``sample_stats`` (``log_q``: the guide's log density of each draw),
    ``observed_data``; with ``posterior_predictive=True`` a fresh simulation at every draw; with
    ``prior=simulations`` the ``prior`` and ``prior_predictive`` groups from its valid rows.

    :param coords: coordinates, as in :func:`arviz.from_dict`.
    :param dims: dims of each variable, as in :func:`arviz.from_dict`.
    :param seed: seed of the draws (and of the predictive simulations).
    :param model_kwargs: the model's keyword arguments (also given as keywords of their own),
        for one named like a parameter of this function (e.g. ``prior`` or ``seed``).
    """
    converter = _GuideConverter(guide, num_samples, seed, args, {**kwargs, **(model_kwargs or {})})
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
