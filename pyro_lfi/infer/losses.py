r"""Losses of neural posterior estimation, each a function of the guide and a batch."""

from __future__ import annotations

import torch

__all__ = ["npe_loss"]


def npe_loss(guide, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    r"""Mean negative log density of the parameters under the guide,
    :math:`-\frac1n \sum_i \log q_\phi(z_i \mid x_i)`, with :math:`(z_i, x_i)` drawn from the
    prior predictive. Minimizing it minimizes :math:`\mathbb{E}_{p(x)}\,\mathrm{KL}(p(z\mid x)
    \,\Vert\, q_\phi(z \mid x))`, so :math:`q_\phi` approaches the posterior for every :math:`x`
    (Papamakarios & Murray 2016). ``z`` is the unconstrained latent vector: the Jacobian of the
    map to the constrained space does not depend on :math:`\phi`."""
    return -guide.condition(x).log_prob(z).mean()
