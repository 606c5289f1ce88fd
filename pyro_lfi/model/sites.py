r"""Reading a model: its latent and observed sites, their shapes and supports.

Every latent site :math:`\theta_i` with support :math:`S_i` is mapped to an unconstrained vector
by :math:`z_i = T_i^{-1}(\theta_i)` with :math:`T_i = \mathrm{biject\_to}(S_i)`; the flat vector
:math:`z = (z_1, \dots, z_k)` is what neural guides model. Densities move between the two spaces
by the change of variables

.. math:: \log q(\theta) = \log q(z) - \sum_i \log \lvert \det \partial T_i(z_i) / \partial z_i \rvert.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pyro
import torch
from pyro import poutine
from pyro.distributions.util import sum_rightmost
from pyro.poutine.util import prune_subsample_sites
from torch.distributions import constraints

from ..errors import SiteError
from ..seeding import preserved_rng
from .bijections import bijection
from .observations import ObservationError, as_observation, read_observation, short_repr
from .simulator import Simulator

__all__ = ["LatentSite", "ModelSites", "ObservationError", "SiteError", "check_site_roles", "read_observation",
           "unwrap_distribution"]


def unwrap_distribution(fn):
    """The innermost distribution under Pyro's Independent/Expanded/Masked wrappers."""
    while hasattr(fn, "base_dist"):
        fn = fn.base_dist
    return fn


def plate_depth(site: dict) -> int:
    """How many rightmost batch dims the site's vectorized plates span."""
    return max((-f.dim for f in site["cond_indep_stack"] if f.vectorized), default=0)


def is_simulator_site(msg: dict) -> bool:
    return msg["type"] == "sample" and isinstance(unwrap_distribution(msg["fn"]), Simulator)


def simulator_of(msg: dict) -> Simulator:
    """The :class:`Simulator` of a simulator site (under any ``expand`` / ``to_event``)."""
    return unwrap_distribution(msg["fn"])


@dataclass(frozen=True)
class LatentSite:
    """One latent sample site: its name, per-simulation shape and support."""

    name: str
    shape: torch.Size
    support: constraints.Constraint
    event_dim: int

    @property
    def transform(self):
        """Bijection from the unconstrained space onto the site's support
        (:func:`pyro_lfi.model.bijections.bijection`: ``biject_to``, and positive definite matrices)."""
        return bijection(self.support)

    @property
    def unconstrained_shape(self) -> torch.Size:
        return torch.Size(self.transform.inv.forward_shape(self.shape))

    @property
    def size(self) -> int:
        return self.unconstrained_shape.numel()


@dataclass(frozen=True)
class ModelSites:
    """The latent sites of a model (in execution order) and its observed sites with shapes."""

    latents: tuple[LatentSite, ...]
    observed: dict[str, torch.Size]

    @property
    def num_unconstrained(self) -> int:
        """Dimension D of the flat unconstrained latent vector."""
        return sum(s.size for s in self.latents)

    @property
    def latent_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.latents)

    @classmethod
    def from_model(
        cls, model, observed: Sequence[str], data: dict[str, torch.Tensor], *args, **kwargs
    ) -> ModelSites:
        """Trace ``model`` once with the observed sites fixed to ``data`` (one simulation's
        values, so the simulator does not run) and read off the latent sites."""
        missing = [name for name in observed if name not in data]
        if missing:
            raise SiteError(f"no simulated values for observed site(s) {missing}")
        with poutine.block():
            trace = poutine.trace(poutine.condition(model, data=data)).get_trace(*args, **kwargs)
        trace = prune_subsample_sites(trace)
        sample_sites = {n: s for n, s in trace.nodes.items() if s["type"] == "sample"}
        unknown = [name for name in observed if name not in sample_sites]
        if unknown:
            raise SiteError(
                f"observed site(s) {unknown} are not sample sites of the model; "
                f"its sample sites are {sorted(sample_sites)}"
            )
        latents = []
        for name, site in sample_sites.items():
            if name in observed or site["is_observed"] or is_simulator_site(site):
                continue
            if site["infer"].get("is_auxiliary"):
                continue
            support = site["fn"].support
            if support.is_discrete:
                raise SiteError(
                    f"latent site '{name}' has discrete support {support}: neural posterior "
                    "guides model continuous latents only (enumerate or condition it out)"
                )
            latent = LatentSite(name, site["value"].shape, support, site["fn"].event_dim)
            try:
                _ = latent.unconstrained_shape
            except NotImplementedError as error:
                raise SiteError(
                    f"latent site '{name}' has support {support}, which has no bijection from an "
                    f"unconstrained space ({error}); give it a prior with another support"
                ) from None
            latents.append(latent)
        if not latents:
            raise SiteError(no_latents_message(observed, sorted(sample_sites)))
        _check_fixed_supports(model, data, latents, args, kwargs)
        shapes = {name: sample_sites[name]["value"].shape for name in observed}
        return cls(tuple(latents), shapes)

    # -- latent space ---------------------------------------------------------------------------

    def to_unconstrained(self, values: dict[str, torch.Tensor]) -> torch.Tensor:
        """Flatten constrained site values ``[*batch, *shape]`` into ``z`` of shape ``[*batch, D]``."""
        parts = []
        for site in self.latents:
            value = _require(values, site.name)
            batch = _batch_shape(value, site.shape, site.name)
            z = site.transform.inv(value)
            parts.append(z.reshape(batch + (site.size,)))
        return torch.cat(parts, dim=-1)

    def to_constrained(self, z: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Split ``z`` ``[*batch, D]`` into constrained site values and, per site,
        :math:`\\log\\lvert\\det \\partial\\theta_i/\\partial z_i\\rvert` of shape ``batch``."""
        batch = z.shape[:-1]
        values, log_dets = {}, {}
        for site, part in zip(self.latents, z.split([s.size for s in self.latents], dim=-1)):
            u = part.reshape(batch + site.unconstrained_shape)
            transform = site.transform
            value = transform(u)
            ladj = transform.log_abs_det_jacobian(u, value)
            log_dets[site.name] = sum_rightmost(ladj, ladj.dim() - len(batch))
            values[site.name] = value
        return values, log_dets

    def log_abs_det_jacobian(self, z: torch.Tensor) -> torch.Tensor:
        r""":math:`\sum_i \log\lvert\det \partial\theta_i/\partial z_i\rvert`, shape ``z.shape[:-1]``."""
        return sum(self.to_constrained(z)[1].values())

    # -- checks ---------------------------------------------------------------------------------

    def check_simulated(self, values: Mapping[str, torch.Tensor], latent_names: Sequence[str], rows: torch.Tensor):
        """Check simulated ``values`` (``[n, *shape]`` per site) against these sites: every
        latent and observed site present with the site's shape per row, and the latent values
        of the ``rows`` to train on inside each site's support.

        :raises SiteError: naming the site, the shapes or the number of rows outside the support.
        """
        names = set(values)
        for site in self.latents:
            if site.name not in names:
                raise SiteError(
                    f"latent site '{site.name}' of the model has no simulated values: the simulations "
                    f"hold the latent sites {list(latent_names)}, so they come from another model. "
                    "Simulate this model (pyro_lfi.simulate(model, ...)) or train a guide of the model "
                    "that made them"
                )
        extra = [n for n in latent_names if n not in self.latent_names and n not in self.observed]
        if extra:
            warnings.warn(
                f"the simulations have latent site(s) {extra} that the model does not sample (conditioned "
                "or renamed?): the guide learns a posterior marginalized over them",
                stacklevel=4,
            )
        shapes = {s.name: s.shape for s in self.latents} | dict(self.observed)
        for name, shape in shapes.items():
            row_shape = tuple(values[name].shape[1:])
            if row_shape != tuple(shape):
                raise SiteError(
                    f"site '{name}' has shape {row_shape} per simulation in the simulations, but "
                    f"{tuple(shape)} in the model: the simulations come from another version of the "
                    "model. Simulate this model again (pyro_lfi.simulate(model, ...))"
                )
        for site in self.latents:
            value = values[site.name][rows]
            outside = _outside_support(site, value)
            if outside.any():
                first = value[outside][0]
                raise SiteError(
                    f"latent site '{site.name}': {int(outside.sum())} of {len(value)} simulated rows to "
                    f"train on lie outside its support {site.support} (e.g. {short_repr(first)}), so they "
                    "were not drawn from this model's prior (a campaign of another model?). Simulate "
                    "this model (pyro_lfi.simulate(model, ...)), or train a guide of the model that "
                    "made them"
                )

    def differences(self, other: ModelSites) -> list[str]:
        """How ``other``'s sites differ from these (names, shapes, supports), one line each."""
        lines = []
        mine, theirs = {s.name: s for s in self.latents}, {s.name: s for s in other.latents}
        for name in mine.keys() - theirs.keys():
            lines.append(f"latent site '{name}' {tuple(mine[name].shape)} is missing")
        for name in theirs.keys() - mine.keys():
            lines.append(f"latent site '{name}' {tuple(theirs[name].shape)} is new")
        for name in mine.keys() & theirs.keys():
            a, b = mine[name], theirs[name]
            if a.shape != b.shape:
                lines.append(f"latent site '{name}': shape {tuple(a.shape)} -> {tuple(b.shape)}")
            if repr(a.support) != repr(b.support):
                lines.append(f"latent site '{name}': support {a.support} -> {b.support}")
        if not lines and self.latent_names != other.latent_names:
            lines.append(f"latent sites in another order: {list(self.latent_names)} -> {list(other.latent_names)}")
        for name, shape in self.observed.items():
            if name not in other.observed:
                lines.append(f"observed site '{name}' is missing")
            elif tuple(other.observed[name]) != tuple(shape):
                lines.append(f"observed site '{name}': shape {tuple(shape)} -> {tuple(other.observed[name])}")
        return sorted(lines)

    # -- observations ---------------------------------------------------------------------------

    def data_batch_shape(self, data: dict[str, torch.Tensor]) -> torch.Size:
        """Leading batch shape of observations, checked against the simulated shapes."""
        batch = None
        for name, shape in self.observed.items():
            value = as_observation(name, _require(data, name, "observation"), shape)
            b = _batch_shape(value, shape, name, kind="observation")
            if batch is not None and b != batch:
                raise ObservationError(
                    f"observed sites have different batch shapes: {tuple(batch)} and {tuple(b)} ('{name}')"
                )
            batch = b
        return batch

    def flat_data(self, data: dict[str, torch.Tensor]) -> torch.Tensor:
        """Observed values as one tensor: the site's own shape when there is one observed site
        (``(1,)`` for a scalar site), else every site flattened and concatenated along the last
        dim. Arrays and lists become tensors."""
        data = {n: as_observation(n, _require(data, n, "observation"), shape) for n, shape in self.observed.items()}
        batch = self.data_batch_shape(data)
        if len(self.observed) == 1:
            (name, shape), = self.observed.items()
            return data[name].unsqueeze(-1) if len(shape) == 0 else data[name]
        return torch.cat([data[n].reshape(batch + (-1,)) for n in self.observed], dim=-1)


def _check_fixed_supports(model, data: dict, latents: Sequence[LatentSite], args, kwargs) -> None:
    """Refuse a latent site whose support changes with the other latents (``Uniform(0, sigma)``):
    a guide maps each site through one bijection, read from one run of the model."""
    with preserved_rng(), poutine.block():  # a second prior draw, invisible to the caller's random streams
        trace = poutine.trace(poutine.condition(model, data=data)).get_trace(*args, **kwargs)
    for site in latents:
        node = trace.nodes.get(site.name)
        other = node["fn"].support if node is not None else site.support
        if repr(other) != repr(site.support):
            raise SiteError(
                f"latent site '{site.name}' has a support that changes with the other latent sites "
                f"({site.support} in one run of the model, {other} in another): a guide maps each site "
                "through one fixed bijection. Sample it on a fixed support and transform it, e.g. "
                "theta = sigma * pyro.sample('u', dist.Uniform(0., 1.)) instead of Uniform(0., sigma)"
            )


def no_latents_message(observed: Sequence[str], sample_sites: Sequence[str]) -> str:
    return (
        f"the model has no latent sample sites to infer (its sample sites: {list(sample_sites)}, of which "
        f"{list(observed)} observed): a neural posterior is over the parameters the model draws with "
        "pyro.sample(name, prior) and passes to the Simulator. Sample the parameters at sites of their "
        "own, e.g. theta = pyro.sample('theta', dist.Normal(0., 1.)); lfi.Simulator(fn, theta)"
    )


def _require(values: dict, name: str, kind: str = "value") -> torch.Tensor:
    if name not in values:
        error = ObservationError if kind == "observation" else SiteError
        raise error(f"no {kind} for site '{name}'; got sites {sorted(values)}")
    if kind == "observation":
        return values[name]
    return torch.as_tensor(values[name], dtype=torch.get_default_dtype())


def _outside_support(site: LatentSite, value: torch.Tensor) -> torch.Tensor:
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


def _batch_shape(value: torch.Tensor, shape: torch.Size, name: str, kind: str = "value") -> torch.Size:
    k = len(shape)
    if value.dim() < k or tuple(value.shape[value.dim() - k :]) != tuple(shape):
        error = ObservationError if kind == "observation" else SiteError
        raise error(
            f"{kind} for site '{name}' has shape {tuple(value.shape)}, but the model's site has "
            f"shape {tuple(shape)} per simulation; pass a tensor of shape {tuple(shape)} "
            f"(or [batch, {', '.join(map(str, shape))}] for several)"
        )
    return value.shape[: value.dim() - k]


class _SimulatorPlaceholder(pyro.poutine.messenger.Messenger):
    """Gives unobserved simulator sites zeros instead of running the simulator."""

    def _pyro_sample(self, msg):
        if not msg["is_observed"] and is_simulator_site(msg):
            fn = msg["fn"]
            msg["value"] = torch.zeros(fn.batch_shape + fn.event_shape)
            msg["done"] = True


def check_site_roles(model, observed: Sequence[str], *args, **kwargs) -> None:
    """Before any simulation, where it can: refuse a model without latent sites and an
    ``observed`` name that is a latent site. Runs ``model(*args, **kwargs)`` once with zeros in
    place of its simulators' outputs; a model that cannot run so (it needs arguments, or uses
    the simulated values) is checked when the guide is built instead.

    :raises SiteError: naming the site and the fix.
    """
    try:  # drawing from the prior here leaves the user's random streams alone
        with preserved_rng(), poutine.block(), _SimulatorPlaceholder():
            trace = prune_subsample_sites(poutine.trace(model).get_trace(*args, **kwargs))
    except Exception:  # best effort: build() checks again on the simulations
        return
    sites = {n: s for n, s in trace.nodes.items() if s["type"] == "sample"}
    data = [n for n, s in sites.items() if s["is_observed"] or is_simulator_site(s)]
    latent = [n for n, s in sites.items() if n not in data and not s["infer"].get("is_auxiliary")]
    for name in observed:
        if name in latent:
            raise SiteError(
                f"observed='{name}' names a latent site of the model (a parameter it samples from a "
                f"prior), not a data site; the model's data sites are {data}: pass "
                f"NeuralPosterior(model, observed={data[0] if len(data) == 1 else data!r})"
            )
    if not latent:
        raise SiteError(no_latents_message(observed, list(sites)))
