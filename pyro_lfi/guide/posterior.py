r"""The amortized guide :math:`q_\phi(\theta \mid x)`: a neural posterior that is a Pyro guide."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule
from torch import nn
from torch.distributions import Distribution

from ..errors import NotFittedError
from ..model.checks import check_observed_sites, check_simulated, check_site_roles
from ..model.sites import ModelSites, ObservationError, read_observation
from ..nn import ConditionalDensityEstimator, MissingFeatures, SkipMLP, Standardize
from ..simulation.simulations import Simulations, Status
from .arguments import check_options, sample_count
from .estimators import EstimatorSpec, check_estimator_spec, make_estimator
from .map_estimate import maximize
from .persistence import load_guide, saved_state
from .pyro_distribution import PyroDistribution
from .truncation import TruncatedDensity
from .weights import UNBUILT_LOAD, guide_name

__all__ = ["NeuralPosterior", "NotFittedError"]


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

    The networks are built lazily from the first simulations (:meth:`build`), which fix the sites'
    shapes and the standardization; a fresh guide has no weights to :meth:`load_state_dict` into:
    load a saved one with :meth:`load`, or :meth:`build` it first.

    :param model: the Pyro model (its data sites are :class:`~pyro_lfi.Simulator` sites).
    :param observed: name(s) of the observed data site(s) the posterior is conditioned on.
    :param estimator: ``"nsf"``, ``"maf"``, ``"mdn"``, ``"fmpe"`` (flow matching), ``"npse"`` (score
        matching), or a callable ``(features, context) -> ConditionalDensityEstimator``.
    :param embedding_net: any module mapping the standardized observation ``[*batch, *x_shape]``
        to features ``[*batch, k]``. By default a :class:`~pyro_lfi.nn.SkipMLP` with ELU activations:
        what depends linearly on the observation passes through its linear shortcut, and the smooth
        activation keeps the learned rest from bending around single simulations.
    :param embedding_features: output width of the default embedding.
    :param standardize: z-score observations and parameters with training-set statistics.
    :param missing: what to do with simulations whose observed data are partly NaN or inf:
        ``"drop"`` them, or ``"impute"``: train on them with learned values in place of the
        missing entries and a missingness indicator (:class:`~pyro_lfi.nn.MissingFeatures`;
        the embedding net then receives ``[*batch, 2, *x_shape]``), so that observations with
        missing entries can be conditioned on as well.
    :param bounded: how sites on an interval (a ``Uniform`` prior's box) are modelled: by the
        logit (``"transform"``), or as the parameter itself with the density cut to the box
        (``"truncate"``, :mod:`pyro_lfi.guide.truncation`): for sequential APT where the
        posterior piles up against a bound.
    :param estimator_kwargs: passed to the estimator (``transforms``, ``hidden_features``, ...);
        ``ensemble=K``: a uniform mixture of ``K`` trained together (:class:`~pyro_lfi.nn.Ensemble`).
    :param name: prefix of the guide's weights in Pyro's param store (``{name}.estimator$$$...``);
        by default a unique ``lfi_guide_<n>``, so that guides never share weights there.
    """

    def __init__(
        self,
        model: Callable,
        observed: str | Sequence[str] = "x",
        estimator: EstimatorSpec = "nsf",
        embedding_net: nn.Module | None = None,
        embedding_features: int = 32,
        standardize: bool = True,
        missing: str = "drop",
        *,
        bounded: str = "transform",
        name: str | None = None,
        **estimator_kwargs,
    ):
        super().__init__(name=guide_name(name))
        check_options(missing, bounded)
        check_estimator_spec(estimator)
        self.bounded = bounded
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
        check_observed_sites(self.observed, simulations)
        valid = simulations[self.usable(simulations)]
        if len(valid) == 0:
            raise ValueError(simulations.nothing_to_train_on())
        first = {n: valid.values[n][0] for n in self.observed}
        sites = ModelSites.from_model(self.model, self.observed, first, *args, **kwargs)
        check_simulated(sites, simulations.values, simulations.latent_names, self.usable(simulations))
        x = sites.flat_data({n: valid.values[n] for n in self.observed})
        self.create_networks(sites, x.shape[1:])
        if self.standardize:
            self.x_standardize.fit(x)
            self.estimator.fit_standardization(self.sites.to_unconstrained(valid.latents))
        return self

    def usable(self, simulations: Simulations) -> torch.Tensor:
        """Mask of the rows to train on: the valid ones and, with ``missing="impute"``, those
        whose observed data are only partly non-finite."""
        usable = simulations.valid.clone()
        if self.missing == "impute":
            data = torch.cat([simulations.values[n].reshape(len(simulations), -1) for n in self.observed], -1)
            usable |= (simulations.status == Status.NONFINITE) & torch.isfinite(data).any(-1)
        return usable

    def create_networks(self, sites: ModelSites, x_shape: torch.Size) -> None:
        """Create the networks for ``sites`` and flat observations of ``x_shape`` (untrained, and
        with identity standardization until :meth:`build` fits it); interval-supported sites
        are modelled as ``bounded`` says."""
        self.sites = sites.bounded(self.bounded)
        self.x_standardize = Standardize(x_shape)
        embedded_shape = x_shape
        if self.missing == "impute":
            self.missing_features = MissingFeatures(x_shape)
            embedded_shape = torch.Size([2, *x_shape])
        if self.embedding_net is None:
            self.embedding_net = SkipMLP(embedded_shape, self.embedding_features, activation=nn.ELU)
        with torch.no_grad():
            context = self.embedding_net(torch.zeros((2, *embedded_shape))).shape[-1]
        self.estimator = make_estimator(self.estimator_spec, sites.num_unconstrained, context, self.estimator_kwargs)

    def require_built(self) -> ModelSites:
        """The model's sites, once the guide is built.

        :raises NotFittedError: if it is not built yet."""
        if self.sites is None:
            raise NotFittedError(
                "this NeuralPosterior has not been trained: run pyro_lfi.NPE(model, guide)"
                ".train(simulations) first"
            )
        return self.sites

    # -- the conditional distribution -----------------------------------------------------------

    def observation(self, *args, **kwargs) -> torch.Tensor:
        """The observation the model receives with these arguments, as one tensor."""
        sites = self.require_built()
        x = sites.flat_data(read_observation(self.model, self.observed, *args, **kwargs))
        if self.missing_features is None and not torch.isfinite(x).all():
            raise ObservationError(
                f"the observation of {list(self.observed)} has NaN or inf entries; a guide built with "
                "NeuralPosterior(..., missing='impute') can condition on missing features"
            )
        return x

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The estimator's context: the embedding of the standardized observation ``x``."""
        self.require_built()
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

    def conditional(self, x: torch.Tensor) -> Distribution:
        r""":math:`q(z \mid x)` over the flat unconstrained latent vector, batched over ``x``'s
        leading dims: the estimator's density, mapped by :attr:`correction` if a sequential
        method set one, and cut to the box of the truncated sites (see ``bounded``)."""
        q = self.estimate(x) if self.correction is None else self.correction(self.estimate(x))
        return TruncatedDensity(q, self.sites.inside) if self.sites.truncated else q

    def condition(self, x: torch.Tensor) -> Distribution:
        """Deprecated name of :meth:`conditional` (it read like :func:`pyro.condition`)."""
        warnings.warn("NeuralPosterior.condition(x) is now NeuralPosterior.conditional(x)", FutureWarning, stacklevel=2)
        return self.conditional(x)

    def posterior_z(self, *args, **kwargs) -> Distribution:
        r""":math:`q(z \mid x)` at the observation the model receives with these arguments."""
        return self.conditional(self.observation(*args, **kwargs))

    # -- the Pyro guide -------------------------------------------------------------------------

    def forward(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        sites = self.require_built()
        q = PyroDistribution(self.posterior_z(*args, **kwargs))
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
        num_samples = sample_count(num_samples)
        sites = self.require_built()
        if num_samples == 0:
            x = self.observation(*args, **kwargs)
            batch = x.shape[: x.dim() - len(self.x_shape)]
            device = next(self.estimator.parameters(), x).device
            return {s.name: torch.empty((0, *batch, *s.shape), device=device) for s in sites.latents}
        z = self.posterior_z(*args, **kwargs).sample((num_samples,))
        return sites.to_constrained(z)[0]

    def log_prob(self, samples: dict[str, torch.Tensor], *args, **kwargs) -> torch.Tensor:
        r""":math:`\log q(\theta \mid x)` in the constrained space (Jacobians included)."""
        sites = self.require_built()
        z = sites.to_unconstrained(samples)
        return self.posterior_z(*args, **kwargs).log_prob(z) - sites.log_abs_det_jacobian(z)

    def map(self, *args, num_init: int = 1000, num_steps: int = 200, lr: float = 0.05, **kwargs):
        r"""Maximum of :math:`q(\theta \mid x)`: the best of ``num_init`` draws, refined by gradient ascent in z."""
        sites = self.require_built()
        x = self.observation(*args, **kwargs)
        if x.dim() > len(self.x_shape):
            raise ObservationError("map takes a single observation, not a batch")
        with torch.no_grad():  # the context is a constant of the optimization
            q = self.conditional(x)
        return sites.to_constrained(maximize(q, sites.log_abs_det_jacobian, num_init, num_steps, lr))[0]

    @property
    def x_shape(self) -> torch.Size:
        """Shape of one flat observation (see :meth:`~pyro_lfi.model.sites.ModelSites.flat_data`)."""
        return self.x_standardize.mean.shape

    # -- persistence ----------------------------------------------------------------------------

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """:meth:`torch.nn.Module.load_state_dict`; :class:`NotFittedError` if not built yet."""
        if not self.is_built:
            raise NotFittedError(UNBUILT_LOAD)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def save(self, path: str | os.PathLike) -> None:
        """Save the trained guide: its options, site layout and network weights (not the model,
        nor the code of a custom embedding net or estimator, which :meth:`load` takes again)."""
        self.require_built()
        torch.save(saved_state(self), path)

    @classmethod
    def load(
        cls, path: str | os.PathLike, model: Callable, embedding_net: nn.Module | None = None,
        estimator: Callable | None = None, map_location=None, model_args: tuple = (), model_kwargs: dict | None = None,
    ) -> NeuralPosterior:
        """Load a guide written by :meth:`save` and attach ``model`` to it. A guide trained with
        a custom ``embedding_net`` or ``estimator`` needs a fresh instance / the callable again.
        The file is unpickled: load only files you trust.

        ``model`` is run once (its observed sites fixed to zeros of the saved shapes, with
        ``model_args``/``model_kwargs``) to check that its latent and observed sites are those
        the guide was trained on.

        :raises SiteError: with the differences (names, shapes, supports) if they are not.
        """
        return load_guide(cls, path, model, embedding_net, estimator, map_location, model_args, model_kwargs or {})
