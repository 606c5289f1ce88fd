"""Checks of a model's sites against what the user passes: the roles of the sites named as
observed, and simulations against the sites a guide was built for."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import torch

from ..errors import ObservationError, SiteError
from ..seeding import preserved_rng
from .observations import short_repr
from .schema import SimulatorPlaceholders, read_schema
from .sites import LatentSite, ModelSites, no_latents_message

if TYPE_CHECKING:  # the model layer does not import the simulation layer
    from ..simulation.simulations import Simulations

__all__ = ["check_observed_sites", "check_simulated", "check_site_roles", "outside_support"]


def check_site_roles(model, observed: Sequence[str], *args, **kwargs) -> None:
    """Before any simulation, where it can: refuse a model without latent sites and an
    ``observed`` name that is a latent site. Runs ``model(*args, **kwargs)`` once with zeros in
    place of its simulators' outputs; a model that cannot run so (it needs arguments, or uses
    the simulated values) is checked when the guide is built instead.

    :raises SiteError: naming the site and the fix.
    """
    try:  # drawing from the prior here leaves the user's random streams alone
        with preserved_rng():
            schema = read_schema(SimulatorPlaceholders(0.0)(model), args, kwargs)
    except Exception:  # best effort: build() checks again on the simulations
        return
    data, latent = list(schema.data), list(schema.latents)
    for name in observed:
        if name in latent:
            raise SiteError(
                f"observed='{name}' names a latent site of the model (a parameter it samples from a "
                f"prior), not a data site; the model's data sites are {data}: pass "
                f"NeuralPosterior(model, observed={data[0] if len(data) == 1 else data!r})"
            )
    if not latent:
        raise SiteError(no_latents_message(observed, list(schema.sites)))


def check_observed_sites(observed: Sequence[str], simulations: Simulations) -> None:
    """Refuse ``observed`` names that are latent sites of ``simulations`` or not in them.

    :raises SiteError: for a latent site named as observed.
    :raises ObservationError: for a name the simulations do not hold.
    """
    latent = [n for n in observed if n in simulations.latent_names]
    if latent:
        raise SiteError(
            f"observed={latent} names latent site(s) of the simulations (parameters drawn from the "
            f"prior), not data sites; the data sites are {list(simulations.observed_names)}: pass "
            f"NeuralPosterior(model, observed=...) one of those"
        )
    missing = [n for n in observed if n not in simulations.values]
    if missing:
        raise ObservationError(
            f"observed site(s) {missing} are not in the simulations, which hold the data "
            f"sites {list(simulations.observed_names)} and latent sites "
            f"{list(simulations.latent_names)}: set NeuralPosterior(observed=...) to one of "
            "the data sites"
        )


def check_simulated(
    sites: ModelSites, values: Mapping[str, torch.Tensor], latent_names: Sequence[str], rows: torch.Tensor
) -> None:
    """Check simulated ``values`` (``[n, *shape]`` per site) against ``sites``: every
    latent and observed site present with the site's shape per row, and the latent values
    of the ``rows`` to train on inside each site's support.

    :raises SiteError: naming the site, the shapes or the number of rows outside the support.
    """
    names = set(values)
    for site in sites.latents:
        if site.name not in names:
            raise SiteError(
                f"latent site '{site.name}' of the model has no simulated values: the simulations "
                f"hold the latent sites {list(latent_names)}, so they come from another model. "
                "Simulate this model (pyro_lfi.simulate(model, ...)) or train a guide of the model "
                "that made them"
            )
    extra = [n for n in latent_names if n not in sites.latent_names and n not in sites.observed]
    if extra:
        warnings.warn(
            f"the simulations have latent site(s) {extra} that the model does not sample (conditioned "
            "or renamed?): the guide learns a posterior marginalized over them",
            stacklevel=4,
        )
    shapes = {s.name: s.shape for s in sites.latents} | dict(sites.observed)
    for name, shape in shapes.items():
        row_shape = tuple(values[name].shape[1:])
        if row_shape != tuple(shape):
            raise SiteError(
                f"site '{name}' has shape {row_shape} per simulation in the simulations, but "
                f"{tuple(shape)} in the model: the simulations come from another version of the "
                "model. Simulate this model again (pyro_lfi.simulate(model, ...))"
            )
    for site in sites.latents:
        value = values[site.name][rows]
        outside = outside_support(site, value)
        if outside.any():
            first = value[outside][0]
            raise SiteError(
                f"latent site '{site.name}': {int(outside.sum())} of {len(value)} simulated rows to "
                f"train on lie outside its support {site.support} (e.g. {short_repr(first)}), so they "
                "were not drawn from this model's prior (a campaign of another model?). Simulate "
                "this model (pyro_lfi.simulate(model, ...)), or train a guide of the model that "
                "made them"
            )


def outside_support(site: LatentSite, value: torch.Tensor) -> torch.Tensor:
    """Rows of ``value`` (``[n, *site.shape]``) outside the site's support; a row exactly on an
    open boundary (e.g. 0 for a positive site, after underflow) is not counted, as its
    unconstrained value is infinite and the row is dropped later."""
    n = len(value)
    if n == 0:
        return torch.zeros(0, dtype=torch.bool)
    ok = site.support.check(value).reshape(n, -1).all(-1)
    if ok.all():
        return ~ok
    bad = value[~ok]
    with torch.no_grad():
        try:
            z = site.transform.inv(bad).reshape(len(bad), -1)
            boundary = torch.isinf(z).any(-1) & ~torch.isnan(z).any(-1)
        except (RuntimeError, ValueError):  # e.g. a Cholesky factorization that fails
            boundary = torch.zeros(len(bad), dtype=torch.bool)
    outside = ~ok
    outside[~ok] = ~boundary
    return outside
