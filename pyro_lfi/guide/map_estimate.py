r"""The maximum of a guide's density in the constrained space."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.distributions import Distribution

__all__ = ["maximize"]


def maximize(
    q: Distribution, log_abs_det_jacobian: Callable, num_init: int = 1000, num_steps: int = 200, lr: float = 0.05
) -> torch.Tensor:
    r"""The :math:`z` maximizing :math:`\log q(z) - \log\lvert\det \partial\theta/\partial z\rvert`,
    the density of :math:`\theta(z)` (an unbatched ``q``): the best of ``num_init`` draws,
    refined by ``num_steps`` of Adam in the unconstrained space (kept only if it improves)."""

    def log_density(z):
        return q.log_prob(z) - log_abs_det_jacobian(z)

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
        return best if log_density(z) < log_density(best) else z.detach()
