r"""Posterior analysis of a trained guide: how the parameters of a mechanistic model compensate
for each other (Gonçalves et al. 2020; Deistler, Macke & Gonçalves 2022).

Every function takes the guide first and the observation as the guide's
:meth:`~pyro_lfi.NeuralPosterior.sample` does (``x=x_o``, or the model's arguments), and works with
any object offering ``posterior_z(...)`` and ``require_built()``. Densities are evaluated through
the guide's unconstrained space :math:`z = T^{-1}(\theta)` with the Jacobian,
:math:`\log q(\theta \mid x_o) = \log q(z \mid x_o) - \log\lvert\det\partial T/\partial z\rvert`,
and results are reported in the constrained parameters, named by their flat elements
(``theta[0]``, ``scale``, ...).

- :func:`conditional_density`, :func:`conditional_pairplot`: with all other parameters fixed at a
  condition, :math:`p(\theta_i, \theta_j \mid \theta_{\setminus ij}, x_o) \propto q(\theta \mid x_o)`
  on a grid, normalized there.
- :func:`conditional_correlation`: the Pearson correlation of each such density on its grid,
  averaged over conditions drawn from the posterior (for a Gaussian: the partial correlation
  :math:`-\Lambda_{ij}/\sqrt{\Lambda_{ii}\Lambda_{jj}}`, :math:`\Lambda` the precision).
- :func:`high_probability_path`: the path :math:`\gamma` between two parameter sets minimizing
  :math:`\int -\log q(\gamma(t) \mid x_o)\,\lVert\gamma'(t)\rVert\,dt` (shifted to be positive), in
  the standardized unconstrained space, with the straight line and an orthogonal path to compare.
- :func:`active_subspace`: :math:`C = \mathbb{E}[\nabla f \nabla f^\top] = W \Lambda W^\top` over
  posterior draws, :math:`f = \log q` or a property of the parameters (Constantine 2015).

References: P. J. Gonçalves et al., *Training deep neural density estimators to identify
mechanistic models of neural dynamics*, eLife 9:e56261 (2020); M. Deistler, J. H. Macke and
P. J. Gonçalves, *Energy-efficient network activity from disparate circuit parameters*, PNAS
119(44):e2207632119 (2022); P. G. Constantine, *Active Subspaces: Emerging Ideas for Dimension
Reduction in Parameter Studies*, SIAM (2015).
"""

from .conditional import conditional_correlation, conditional_density
from .density import GuideLike, ParameterError, PosteriorDensity, parameter_names
from .paths import HighProbabilityPath, PathPoints, high_probability_path
from .plots import conditional_pairplot
from .sensitivity import ActiveSubspace, active_subspace

__all__ = [
    "ActiveSubspace",
    "GuideLike",
    "HighProbabilityPath",
    "ParameterError",
    "PathPoints",
    "PosteriorDensity",
    "active_subspace",
    "conditional_correlation",
    "conditional_density",
    "conditional_pairplot",
    "high_probability_path",
    "parameter_names",
]
