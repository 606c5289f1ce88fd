r"""The amortized guide :math:`q_\phi(\theta \mid x)`: a neural posterior that is a Pyro guide."""

from __future__ import annotations

import operator
import os
from collections.abc import Callable, Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule
from torch import nn
from torch.distributions import Distribution

from ..errors import NotFittedError
from ..model.checks import check_simulated, check_site_roles
from ..model.sites import ModelSites, ObservationError, SiteError, read_observation
from ..nn import ConditionalDensityEstimator, Flow, MissingFeatures, MixtureDensityNetwork, SkipMLP, Standardize
from ..simulation.simulations import Simulations, Status
from .persistence import check_same_sites, read_correction, read_saved, saved_state

__all__ = ["NeuralPosterior", "NotFittedError"]


_ESTIMATORS = ("nsf", "maf", "mdn")
_MISSING = ("drop", "impute")


def _default_estimator(kind: str, features: int, context: int, **kwargs) -> ConditionalDensityEstimator:
    if kind == "mdn":
        return MixtureDensityNetwork(features, context, **kwargs)
    return Flow(features, context, kind=kind, **kwargs)


class NeuralPosterior(PyroModule):
    r"""An amortized posterior :math:`q_\phi(\theta \mid x)` over every latent site of ``model``.

    The latent sites are mapped to one flat unconstrained vector :math:`z` (see
    :mod:`pyro_lfi.model.sites`), standardized with training-set statistics, and modelled by a
    conditional density estimator whose context is an embedding of the standardized
    observation. Samples map back through each site's bijection, so they always lie in the
    support.

    As a Pyro guide, ``guide(*args, **kwargs)`` takes the model's arguments, reads the observed
    value the way the model receives it (an argument, or :func:`pyro.condition` on the model
    given here), draws :math:`z` at an auxiliary site and emits every latent site as a
    :class:`~pyro.distributions.Delta` carrying its log-Jacobian, like Pyro's autoguides.

    The networks are built lazily from the first simulations (:meth:`build`), which fix the
    sites' shapes and the standardization.

    :param model: the Pyro model (its data sites are :class:`~pyro_lfi.Simulator` sites).
    :param observed: name(s) of the observed data site(s) the posterior is conditioned on.
    :param estimator: ``"nsf"``, ``"maf"``, ``"mdn"``, or a callable
        ``(features, context) -> ConditionalDensityEstimator``.
    :param embedding_net: any module mapping the standardized observation ``[*batch, *x_shape]``
        to features ``[*batch, k]``. By default a :class:`~pyro_lfi.nn.SkipMLP` with ELU
        activations: what depends linearly on the observation passes through its linear
        shortcut, and the smooth activation keeps the learned rest from bending around single
        simulations.
    :param embedding_features: output width of the default embedding.
    :param standardize: z-score observations and parameters with training-set statistics.
    :param missing: what to do with simulations whose observed data are partly NaN or inf:
        ``"drop"`` them, or ``"impute"``: train on them with learned values in place of the
        missing entries and a missingness indicator (:class:`~pyro_lfi.nn.MissingFeatures`;
        the embedding net then receives ``[*batch, 2, *x_shape]``), so that observations with
        missing entries can be conditioned on as well.
    :param estimator_kwargs: passed to the estimator (e.g. ``transforms``, ``hidden_features``,
        ``components``).
    """

    def __init__(
        self,
        model: Callable,
        observed: str | Sequence[str] = "x",
        estimator: str | Callable[[int, int], ConditionalDensityEstimator] = "nsf",
        embedding_net: nn.Module | None = None,
        embedding_features: int = 32,
        standardize: bool = True,
        missing: str = "drop",
        **estimator_kwargs,
    ):
        super().__init__()
        if missing not in _MISSING:
            raise ValueError(f"missing must be one of {_MISSING}, got {missing!r}")
        if isinstance(estimator, str) and estimator not in _ESTIMATORS:
            raise ValueError(f"unknown estimator '{estimator}'; choose one of {_ESTIMATORS} or pass a callable")
        if not isinstance(estimator, str) and not callable(estimator):
            raise TypeError(f"estimator must be one of {_ESTIMATORS} or a callable")
        self.model = model
        self.observed = (observed,) if isinstance(observed, str) else tuple(observed)
        self.estimator_spec = estimator
        self.estimator_kwargs = estimator_kwargs
        self.embedding_features = embedding_features
        self.standardize = standardize
        self.missing = missing
        self.missing_features: MissingFeatures | None = None
        self.embedding_net = embedding_net
        self._custom_embedding = embedding_net is not None
        self.sites: ModelSites | None = None
        self.x_standardize: Standardize | None = None
        self.estimator: ConditionalDensityEstimator | None = None
        #: Maps the estimator's density to the posterior where a sequential method's loss fits
        #: another density (SNPE-A's proposal posterior); saved with the guide. None: no correction.
        self.correction: Callable[[Distribution], Distribution] | None = None
        check_site_roles(model, self.observed)  # a model without latents, a latent as observed=: now

    # -- construction ---------------------------------------------------------------------------

    @property
    def is_built(self) -> bool:
        return self.estimator is not None

    def build(self, simulations: Simulations, *args, **kwargs) -> NeuralPosterior:
        """Read the model's sites and create the networks; set the standardization from the
        valid rows of ``simulations``. ``args``/``kwargs`` are the model's arguments.

        :raises SiteError: if the simulations do not fit the model's sites (names, shapes, latent
            values outside their supports: simulations of another model).
        """
        latent = [n for n in self.observed if n in simulations.latent_names]
        if latent:
            raise SiteError(
                f"observed={latent} names latent site(s) of the simulations (parameters drawn from the "
                f"prior), not data sites; the data sites are {list(simulations.observed_names)}: pass "
                f"NeuralPosterior(model, observed=...) one of those"
            )
        missing = [n for n in self.observed if n not in simulations.values]
        if missing:
            raise ObservationError(
                f"observed site(s) {missing} are not in the simulations, which hold the data "
                f"sites {list(simulations.observed_names)} and latent sites "
                f"{list(simulations.latent_names)}: set NeuralPosterior(observed=...) to one of "
                "the data sites"
            )
        valid = simulations[self.usable(simulations)]
        if len(valid) == 0:
            raise ValueError(_all_invalid_message(simulations))
        first = {n: valid.values[n][0] for n in self.observed}
        sites = ModelSites.from_model(self.model, self.observed, first, *args, **kwargs)
        check_simulated(sites, simulations.values, simulations.latent_names, self.usable(simulations))
        x = sites.flat_data({n: valid.values[n] for n in self.observed})
        self._create_networks(sites, x.shape[1:])
        if self.standardize:
            self.x_standardize.fit(x)
            self.estimator.fit_standardization(sites.to_unconstrained(valid.latents))
        return self

    def usable(self, simulations: Simulations) -> torch.Tensor:
        """Mask of the rows to train on: the valid ones and, with ``missing="impute"``, those
        whose observed data are only partly non-finite."""
        usable = simulations.valid.clone()
        if self.missing == "impute":
            data = torch.cat([simulations.values[n].reshape(len(simulations), -1) for n in self.observed], -1)
            usable |= (simulations.status == Status.NONFINITE) & torch.isfinite(data).any(-1)
        return usable

    def _create_networks(self, sites: ModelSites, x_shape: torch.Size) -> None:
        self.sites = sites
        self.x_standardize = Standardize(x_shape)
        embedded_shape = x_shape
        if self.missing == "impute":
            self.missing_features = MissingFeatures(x_shape)
            embedded_shape = torch.Size([2, *x_shape])
        if self.embedding_net is None:
            self.embedding_net = SkipMLP(embedded_shape, self.embedding_features, activation=nn.ELU)
        with torch.no_grad():
            context = self.embedding_net(torch.zeros((2, *embedded_shape))).shape[-1]
        spec = self.estimator_spec
        if isinstance(spec, str):
            self.estimator = _default_estimator(spec, sites.num_unconstrained, context, **self.estimator_kwargs)
        else:
            self.estimator = spec(sites.num_unconstrained, context, **self.estimator_kwargs)
        if not isinstance(self.estimator, ConditionalDensityEstimator):
            raise TypeError("the estimator callable must return a ConditionalDensityEstimator")

    def _require_built(self) -> ModelSites:
        if self.sites is None:
            raise NotFittedError(
                "this NeuralPosterior has not been trained: run pyro_lfi.NPE(model, guide)"
                ".train(simulations) first"
            )
        return self.sites

    # -- the conditional distribution -----------------------------------------------------------

    def observation(self, *args, **kwargs) -> torch.Tensor:
        """The observation the model receives with these arguments, as one tensor."""
        sites = self._require_built()
        x = sites.flat_data(read_observation(self.model, self.observed, *args, **kwargs))
        if self.missing_features is None and not torch.isfinite(x).all():
            raise ObservationError(
                f"the observation of {list(self.observed)} has NaN or inf entries; a guide built with "
                "NeuralPosterior(..., missing='impute') can condition on missing features"
            )
        return x

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The estimator's context: the embedding of the standardized observation ``x``."""
        self._require_built()
        param = next(self.estimator.parameters(), None)
        if param is not None:
            x = x.to(device=param.device, dtype=param.dtype)
        x = self.x_standardize(x)
        if self.missing_features is not None:
            x = self.missing_features(x)
        return self.embedding_net(x)

    def estimate(self, x: torch.Tensor) -> Distribution:
        r"""The estimator's own density :math:`q_\phi(z \mid x)`, before any proposal
        correction (what the losses train)."""
        return self.estimator(self.embed(x))

    def condition(self, x: torch.Tensor) -> Distribution:
        r""":math:`q(z \mid x)` over the flat unconstrained latent vector, batched over ``x``'s
        leading dims: the estimator's density, mapped by :attr:`correction` if a sequential
        method set one."""
        q = self.estimate(x)
        return q if self.correction is None else self.correction(q)

    def posterior_z(self, *args, **kwargs) -> Distribution:
        r""":math:`q(z \mid x)` at the observation the model receives with these arguments."""
        return self.condition(self.observation(*args, **kwargs))

    # -- the Pyro guide -------------------------------------------------------------------------

    def forward(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        sites = self._require_built()
        q = _PyroDistribution(self.posterior_z(*args, **kwargs))
        z = pyro.sample("_lfi_latent", q, infer={"is_auxiliary": True})
        values, log_dets = sites.to_constrained(z)
        for site in sites.latents:
            pyro.sample(
                site.name,
                # Delta's log density is log|dz/dtheta|, so that the trace's total is log q(theta)
                dist.Delta(values[site.name], log_density=-log_dets[site.name], event_dim=len(site.shape)),
            )
        return values

    # -- direct use -----------------------------------------------------------------------------

    @torch.no_grad()
    def sample(self, num_samples: int, *args, **kwargs) -> dict[str, torch.Tensor]:
        """``num_samples`` posterior draws per site: ``[num_samples, *batch, *site_shape]``
        (empty for ``num_samples=0``)."""
        try:
            num_samples = operator.index(num_samples)
        except TypeError:
            raise TypeError(f"num_samples must be an int, got {num_samples!r}") from None
        if num_samples < 0:
            raise ValueError(f"num_samples must be 0 or more, got {num_samples}")
        sites = self._require_built()
        if num_samples == 0:
            x = self.observation(*args, **kwargs)
            batch = x.shape[: x.dim() - len(self._x_shape)]
            device = next(self.estimator.parameters(), x).device
            return {s.name: torch.empty((0, *batch, *s.shape), device=device) for s in sites.latents}
        z = self.posterior_z(*args, **kwargs).sample((num_samples,))
        return sites.to_constrained(z)[0]

    def log_prob(self, samples: dict[str, torch.Tensor], *args, **kwargs) -> torch.Tensor:
        r""":math:`\log q(\theta \mid x)` in the constrained space (Jacobians included)."""
        sites = self._require_built()
        z = sites.to_unconstrained(samples)
        return self.posterior_z(*args, **kwargs).log_prob(z) - sites.log_abs_det_jacobian(z)

    def map(self, *args, num_init: int = 1000, num_steps: int = 200, lr: float = 0.05, **kwargs):
        r"""Maximum of :math:`q(\theta \mid x)` (in the constrained space): the best of
        ``num_init`` draws, refined by gradient ascent in the unconstrained space."""
        sites = self._require_built()
        x = self.observation(*args, **kwargs)
        if x.dim() > len(self._x_shape):
            raise ObservationError("map takes a single observation, not a batch")
        with torch.no_grad():  # the context is a constant of the optimization
            q = self.condition(x)

        def log_density(z):
            return q.log_prob(z) - sites.log_abs_det_jacobian(z)

        with torch.no_grad():
            z0 = q.sample((num_init,))
            best = z0[log_density(z0).argmax()]
        z = best.clone().requires_grad_(True)
        optim = torch.optim.Adam([z], lr=lr)
        for _ in range(num_steps):
            optim.zero_grad()
            (-log_density(z)).backward()
            optim.step()
        with torch.no_grad():
            if log_density(z) < log_density(best):
                z = best
            return sites.to_constrained(z.detach())[0]

    @property
    def _x_shape(self) -> torch.Size:
        return self.x_standardize.mean.shape

    # -- persistence ----------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Save the trained guide: its options, site layout and network weights (not the model,
        nor the code of a custom embedding net or estimator, which :meth:`load` takes again)."""
        self._require_built()
        torch.save(saved_state(self), path)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        model: Callable,
        embedding_net: nn.Module | None = None,
        estimator: Callable | None = None,
        map_location=None,
        model_args: tuple = (),
        model_kwargs: dict | None = None,
    ) -> NeuralPosterior:
        """Load a guide written by :meth:`save` and attach ``model`` to it. A guide trained with
        a custom ``embedding_net`` or ``estimator`` needs a fresh instance / the callable again.
        The file is unpickled: load only files you trust.

        ``model`` is run once (its observed sites fixed to zeros of the saved shapes, with
        ``model_args``/``model_kwargs``) to check that its latent and observed sites are those
        the guide was trained on.

        :raises SiteError: with the differences (names, shapes, supports) if they are not.
        """
        saved = read_saved(path, map_location)
        if saved["custom_embedding"] and embedding_net is None:
            raise ValueError("this guide was trained with a custom embedding net: pass embedding_net=")
        if saved["estimator"] is None and estimator is None:
            raise ValueError("this guide was trained with a custom estimator: pass estimator=")
        guide = cls(
            model,
            saved["observed"],
            estimator or saved["estimator"],
            embedding_net,
            saved["embedding_features"],
            saved["standardize"],
            saved.get("missing", "drop"),
            **saved["estimator_kwargs"],
        )
        check_same_sites(path, saved["sites"], model, model_args, model_kwargs or {})
        guide._create_networks(saved["sites"], torch.Size(saved["x_shape"]))
        guide.load_state_dict(saved["state_dict"])
        guide.correction = read_correction(saved)
        guide.eval()
        return guide


def _all_invalid_message(simulations: Simulations) -> str:
    first = next((m for m in simulations.message if m), "")
    return (
        f"no valid simulations to train on: all {len(simulations)} rows are invalid "
        f"({simulations.summary()}); first error: {first or 'none recorded'}"
    )


class _PyroDistribution(dist.TorchDistribution):
    """Lets any :class:`torch.distributions.Distribution` be used at a Pyro sample site."""

    arg_constraints: dict = {}

    def __init__(self, base: Distribution):
        self.base = base
        self.has_rsample = base.has_rsample
        super().__init__(base.batch_shape, base.event_shape, validate_args=False)

    @property
    def support(self):
        return self.base.support

    def sample(self, sample_shape=torch.Size()):
        return self.base.sample(sample_shape)

    def rsample(self, sample_shape=torch.Size()):
        return self.base.rsample(sample_shape)

    def log_prob(self, value):
        return self.base.log_prob(value)
