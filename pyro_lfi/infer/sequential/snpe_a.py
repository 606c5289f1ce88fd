r"""SNPE-A (Papamakarios & Murray 2016): the posterior from a Gaussian proposal in closed form."""

from __future__ import annotations

from dataclasses import dataclass

from pyro.distributions import MixtureSameFamily, MultivariateNormal

from .mixtures import divide_by_gaussian

__all__ = ["GaussianDivision"]


@dataclass
class GaussianDivision:
    r"""The posterior from a mixture density guide trained on proposals :math:`\propto p(z)\,
    g(z)`: the guide fits :math:`p(z \mid x)\, g(z)` up to a constant, so the posterior is the
    normalized :math:`q(z \mid x) / g(z)` (:func:`~.mixtures.divide_by_gaussian`)."""

    gaussian: MultivariateNormal

    def __call__(self, q: MixtureSameFamily) -> MixtureSameFamily:
        return divide_by_gaussian(q, self.gaussian)
