r"""Reading a model: its latent and observed sites, their shapes and supports.

Every latent site :math:`\theta_i` with support :math:`S_i` is mapped to an unconstrained vector
by :math:`z_i = T_i^{-1}(\theta_i)` with :math:`T_i = \mathrm{biject\_to}(S_i)`; the flat vector
:math:`z = (z_1, \dots, z_k)` is what neural guides model. Densities move between the two spaces
by the change of variables

.. math:: \log q(\theta) = \log q(z) - \sum_i \log \lvert \det \partial T_i(z_i) / \partial z_i \rvert.

A site on an interval :math:`(a, b)` can instead be *truncated*: :math:`z_i = \theta_i` (the
identity, so :math:`z` lives in the box and a guide's density is cut to it, see
:mod:`pyro_lfi.guide.truncation`). Where the posterior piles up against a bound, the logit's
:math:`z` turns that mass into a long exponential tail, which a flow fits poorly; the identity
keeps it a sharp edge.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch
from pyro.distributions.util import sum_rightmost
from torch.distributions import constraints
from torch.distributions.transforms import identity_transform

from ..errors import SiteError
from ..seeding import preserved_rng
from .bijections import bijection
from .observations import ObservationError, as_observation, read_observation
from .schema import ModelSchema, SiteSchema, read_schema

__all__ = [
    "BOUNDED", "LatentSite", "ModelSites", "ObservationError", "SiteError", "check_bounded", "is_interval",
    "read_observation",
]

#: How a guide models latent sites on an interval: through the bijection (``"transform"``, the
#: logit), or as the parameter itself with the density truncated to the interval (``"truncate"``).
BOUNDED = ("transform", "truncate")


def check_bounded(how: str) -> None:
    """A :class:`ValueError` unless ``how`` is one of :data:`BOUNDED`."""
    if how not in BOUNDED:
        raise ValueError(f"bounded must be one of {BOUNDED}, got {how!r}")


def is_interval(support: constraints.Constraint) -> bool:
    """Whether ``support`` is an interval bounded on both sides (alone or under ``independent``)."""
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    return isinstance(support, constraints._Interval | constraints._HalfOpenInterval)


@dataclass(frozen=True)
class LatentSite:
    """One latent sample site: its name, per-simulation shape and support."""

    name: str
    shape: torch.Size
    support: constraints.Constraint
    event_dim: int
    #: modelled as the parameter itself on its interval (``z = theta``), not through its bijection
    truncated: bool = False

    @classmethod
    def of(cls, site: SiteSchema) -> LatentSite:
        """A latent site of a continuous support with a bijection from an unconstrained space.

        :raises SiteError: naming the site, for a discrete support or one without a bijection.
        """
        if site.support.is_discrete:
            raise SiteError(
                f"latent site '{site.name}' has discrete support {site.support}: neural posterior "
                "guides model continuous latents only (enumerate or condition it out)"
            )
        latent = cls(site.name, site.shape, site.support, site.event_dim)
        try:
            _ = latent.unconstrained_shape
        except NotImplementedError as error:
            raise SiteError(
                f"latent site '{site.name}' has support {site.support}, which has no bijection from an "
                f"unconstrained space ({error}); give it a prior with another support"
            ) from None
        return latent

    @property
    def transform(self):
        """Bijection from the unconstrained space onto the site's support
        (:func:`pyro_lfi.model.bijections.bijection`: ``biject_to``, and positive definite
        matrices); the identity for a :attr:`truncated` site."""
        return identity_transform if self.truncated else bijection(self.support)

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
    #: the run of the model they were read from (``None`` in guides saved before 0.2)
    schema: ModelSchema | None = field(default=None, compare=False, repr=False)

    @property
    def num_unconstrained(self) -> int:
        """Dimension D of the flat unconstrained latent vector."""
        return sum(s.size for s in self.latents)

    @property
    def latent_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.latents)

    @property
    def truncated(self) -> bool:
        r"""Whether some site is :attr:`LatentSite.truncated` (``z`` then lives in a box, not
        :math:`\mathbb{R}^D`)."""
        return any(s.truncated for s in self.latents)

    def bounded(self, how: str) -> ModelSites:
        """These sites with interval-supported ones modelled ``how`` (see :data:`BOUNDED`)."""
        check_bounded(how)
        latents = tuple(replace(s, truncated=how == "truncate" and is_interval(s.support)) for s in self.latents)
        return replace(self, latents=latents)

    def inside(self, z: torch.Tensor) -> torch.Tensor:
        """Whether each ``z`` ``[*batch, D]`` lies in the supports of the truncated sites
        (all true where none is), shape ``batch``."""
        batch = z.shape[:-1]
        inside = torch.ones(batch, dtype=torch.bool, device=z.device)
        for site, part in zip(self.latents, z.split([s.size for s in self.latents], dim=-1)):
            if site.truncated:
                inside &= site.support.check(part.reshape(batch + site.shape)).reshape(batch + (-1,)).all(-1)
        return inside

    @classmethod
    def from_model(
        cls, model, observed: Sequence[str], data: dict[str, torch.Tensor], *args, **kwargs
    ) -> ModelSites:
        """Read the sites of ``model`` from one run with the observed sites fixed to ``data``
        (one simulation's values, so the simulator does not run)."""
        missing = [name for name in observed if name not in data]
        if missing:
            raise SiteError(f"no simulated values for observed site(s) {missing}")
        schema = read_schema(model, args, kwargs, data)
        unknown = [name for name in observed if name not in schema.sites]
        if unknown:
            raise SiteError(
                f"observed site(s) {unknown} are not sample sites of the model; "
                f"its sample sites are {sorted(schema.sites)}"
            )
        latents = tuple(LatentSite.of(schema.sites[name]) for name in schema.latents if name not in observed)
        if not latents:
            raise SiteError(no_latents_message(observed, sorted(schema.sites)))
        with preserved_rng():  # a second prior draw, invisible to the caller's random streams
            _check_fixed_supports(latents, read_schema(model, args, kwargs, data))
        return cls(latents, {name: schema.sites[name].shape for name in observed}, schema)

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

    # -- comparison ------------------------------------------------------------------------------

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


def _check_fixed_supports(latents: Sequence[LatentSite], other_run: ModelSchema) -> None:
    """Refuse a latent site whose support changes with the other latents (``Uniform(0, sigma)``):
    a guide maps each site through one bijection, read from one run of the model."""
    for site in latents:
        other = other_run.sites[site.name].support if site.name in other_run.sites else site.support
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


