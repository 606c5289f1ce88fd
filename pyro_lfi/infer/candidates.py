r"""Candidate chain starts of a tractable Pyro model: latent values with their importance weights
for its posterior.

Prior draws :math:`\theta_i \sim p(\theta)` are weighted by their likelihood,
:math:`\log w_i = \log p(x_o \mid \theta_i)`. Draws of an earlier approximation of the same
posterior, :math:`\theta_i \sim p(\theta)\, L'(\theta)` (the previous round's surrogate in
sequential likelihood estimation), are weighted by the ratio of the likelihoods,
:math:`\log w_i = \log p(x_o \mid \theta_i) - \log L'(\theta_i)` (a :class:`WarmStart`): both
approximate :math:`p(\theta \mid x_o)` after resampling. Every model run is vectorized under a
plate of candidates where the model allows it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from pyro import poutine
from pyro.distributions.util import sum_rightmost
from pyro.poutine.util import prune_subsample_sites

from ..errors import ObservationError, SiteError
from ..model.schema import ModelSchema, is_simulator_site
from ..seeding import preserved_rng

__all__ = ["WarmStart", "candidates", "log_densities", "log_likelihood", "observed_sites", "prior_draws", "read_sites"]

PLATE = "_lfi_candidates"


@dataclass
class WarmStart:
    r"""Draws of :math:`p(\theta)\, L'(\theta)`, an earlier approximation of the posterior of the
    same prior, to start chains from: ``values`` site name :math:`\to` ``[n, *shape]``, and
    ``log_likelihood`` :math:`\log L'(\theta_i)` ``[n]`` (up to a constant)."""

    values: dict[str, torch.Tensor]
    log_likelihood: torch.Tensor

    def __post_init__(self):
        sizes = {name: len(value) for name, value in self.values.items()}
        if not sizes or set(sizes.values()) != {len(self.log_likelihood)}:
            raise ValueError(
                f"a warm start needs as many values at every site as log likelihoods ({len(self.log_likelihood)}); "
                f"got {sizes}"
            )

    def weighted(self, model: Callable, args: tuple, kwargs: dict) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        r"""The values and their log weights for ``model``'s posterior,
        :math:`\log p(x_o \mid \theta_i) - \log L'(\theta_i)`."""
        return self.values, log_likelihood(model, self.values, args, kwargs) - self.log_likelihood


def read_sites(model: Callable, args: tuple, kwargs: dict) -> tuple[ModelSchema, list[str]]:
    """The sites of one run of a tractable model and its observed sites, checked: some latent,
    some observed, no :class:`~pyro_lfi.Simulator` (raises :class:`~pyro_lfi.SiteError` or
    :class:`~pyro_lfi.ObservationError` naming the problem)."""
    with preserved_rng(), poutine.block(), torch.no_grad():
        trace = poutine.trace(model).get_trace(*args, **kwargs)
    simulators = [name for name, site in trace.nodes.items() if is_simulator_site(site)]
    if simulators:
        raise SiteError(
            f"site(s) {simulators} are Simulator sites, whose likelihood is unknown: sample "
            "lfi.surrogate(model, likelihood) (a trained NeuralLikelihood or NeuralRatio) or "
            "lfi.baselines.tractable(model, {name: distribution factory}) instead"
        )
    schema = ModelSchema.of(trace)
    observed = observed_sites(trace)
    if not observed:
        raise ObservationError(
            f"the model observes no site (its sample sites: {list(schema.sites)}), so there is nothing to "
            "condition on: give the observation the way the model receives it (e.g. x=x_o) or "
            "pyro.condition the model on it"
        )
    if not schema.latents:
        raise SiteError(
            f"the model has no latent sample sites to sample (its sample sites: {list(schema.sites)}, all "
            "observed or deterministic)"
        )
    return schema, observed


def observed_sites(trace: poutine.Trace) -> list[str]:
    """The sites whose densities make up the likelihood: observed sample sites, ``pyro.factor``
    sites included, ``pyro.deterministic`` ones not."""
    return [
        name
        for name, site in prune_subsample_sites(trace).nodes.items()
        if site["type"] == "sample" and site["is_observed"] and not site["infer"].get("_deterministic")
    ]


def candidates(model: Callable, num: int, args: tuple, kwargs: dict) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    r"""``num`` prior draws of the latent sites (``[num, *shape]`` each) and their log
    likelihood :math:`\sum_{\text{observed } s} \log p(x_s \mid \theta)` (``[num]``), from one
    run of the model under a plate of ``num`` rows; one run per draw (with a warning) where
    the model does not vectorize. Draws from the global RNG."""
    latents, _, log_likelihood = prior_draws(model, num, args, kwargs)
    return latents, log_likelihood


def prior_draws(
    model: Callable, num: int, args: tuple, kwargs: dict
) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """:func:`candidates` with their log prior: ``(latents, log prior, log likelihood)``."""
    return _rows(model, *read_sites(model, args, kwargs), num, args, kwargs, None)


def log_likelihood(model: Callable, values: dict[str, torch.Tensor], args: tuple, kwargs: dict) -> torch.Tensor:
    r""":math:`\log p(x_o \mid \theta_i)` ``[n]`` at given latent values (site name :math:`\to`
    ``[n, *shape]``, every latent site of the model), vectorized like :func:`candidates`."""
    return log_densities(model, values, args, kwargs)[1]


def log_densities(
    model: Callable, values: dict[str, torch.Tensor], args: tuple, kwargs: dict
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The log prior :math:`\log p(\theta_i)` (the latent sites' densities) and the log
    likelihood :math:`\log p(x_o \mid \theta_i)`, ``[n]`` each, at given latent values (as
    :func:`log_likelihood`)."""
    schema, observed = read_sites(model, args, kwargs)
    missing = sorted(set(schema.latents) - set(values))
    if missing:
        raise SiteError(f"no values for the latent site(s) {missing} of the model (given: {sorted(values)})")
    values = {name: values[name] for name in schema.latents}
    num = len(next(iter(values.values())))
    return _rows(model, schema, observed, num, args, kwargs, values)[1:]


def _rows(
    model: Callable, schema: ModelSchema, observed: list[str], num: int, args: tuple, kwargs: dict,
    values: dict[str, torch.Tensor] | None,
) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Latent values, log priors and log likelihoods of ``num`` rows (drawn, or fixed to
    ``values``): one vectorized run, or one run per row where the model does not vectorize."""
    try:
        with torch.no_grad():
            return _run(model, schema, observed, num, args, kwargs, values)
    except Exception as error:  # any model code may fail under vectorization
        warnings.warn(
            f"could not run the model vectorized over {num} candidates ({type(error).__name__}: {error}); "
            "evaluating them one run at a time (slower)",
            stacklevel=4,
        )
    rows = [None if values is None else {name: value[i] for name, value in values.items()} for i in range(num)]
    with torch.no_grad():
        runs = [_run(model, schema, observed, None, args, kwargs, row) for row in rows]
    latents = {name: torch.cat([run[0][name] for run in runs]) for name in schema.latents}
    return latents, torch.cat([run[1] for run in runs]), torch.cat([run[2] for run in runs])


def _run(
    model: Callable, schema: ModelSchema, observed: list[str], num: int | None, args: tuple, kwargs: dict,
    values: dict[str, torch.Tensor] | None,
) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Latent values, log priors and log likelihoods of ``num`` rows (``None``: one plain run, one row)."""
    size = 1 if num is None else num
    if num is None:
        runnable = model if values is None else poutine.condition(model, data=values)
    else:
        runnable = schema.vectorize(model, num, PLATE, values)
    with poutine.block():
        trace = poutine.trace(runnable).get_trace(*args, **kwargs)
    rows = schema.max_plate_nesting + 1  # the dims of the plates, the rows' included
    latents = {}
    for name in schema.latents:
        value = trace.nodes[name]["value"]
        expected = (size,) + tuple(schema.shapes[name])
        if value.numel() != size * schema.shapes[name].numel():
            raise SiteError(f"site '{name}' has shape {tuple(value.shape)} in a run of {size} rows, not {expected}")
        latents[name] = value.reshape(expected)
    totals = [_site_totals(trace, names, size, None if num is None else rows) for names in (schema.latents, observed)]
    return latents, *totals


def _site_totals(trace: poutine.Trace, names: Sequence[str], size: int, rows: int | None) -> torch.Tensor:
    """Each row's total log density over the sites ``names``: ``[size]`` (``rows`` as in
    :func:`_row_totals`; ``None``: a plain run of one row)."""
    total = torch.zeros(size)
    for name in names:
        node = trace.nodes[name]
        log_p = node["fn"].log_prob(node["value"])
        if rows is None:
            total = total + log_p.sum()
        else:  # [num, 1, ..., plates] (or broadcastable to it): the rows' totals
            total = total + torch.broadcast_to(_row_totals(log_p, rows), (size,))
    return total


def _row_totals(log_p: torch.Tensor, rows: int) -> torch.Tensor:
    """Each row's total of ``log_p`` (its rows' dim ``rows`` dims from the right, the plates'
    dims right of it): ``[num]``, or ``[1]`` where it is the same for every row."""
    if log_p.dim() < rows:  # the rows' dim broadcast away: the same for every row
        return log_p.sum().reshape(1)
    return sum_rightmost(log_p, rows - 1).reshape(-1)
