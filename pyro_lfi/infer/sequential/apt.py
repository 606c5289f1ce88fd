r"""APT / SNPE-C (Greenberg et al. 2019): losses that are correct for any proposal.

Both are averages over rows :math:`(z_i, x_i)` with :math:`z_i` from a proposal
:math:`\tilde p(z)`, minimized by :math:`q_\phi(z \mid x) = p(z \mid x)`; ``z`` is the
unconstrained latent vector (see :mod:`pyro_lfi.infer.losses`).
"""

from __future__ import annotations

import torch
from pyro.distributions import MixtureSameFamily

from ..losses import npe_loss
from .mixtures import log_mixture_overlap

__all__ = ["atomic_apt_loss", "mixture_apt_loss"]


def atomic_apt_loss(
    guide, x: torch.Tensor, z: torch.Tensor, log_prior: torch.Tensor, num_atoms: int = 10
) -> torch.Tensor:
    r"""Atomic APT / SNPE-C loss (Greenberg et al. 2019), valid for any mix of proposals.

    Each row's own :math:`z_i` competes with ``num_atoms - 1`` parameters :math:`z_j` of other
    rows of the batch:

    .. math:: \ell_i = -\log \frac{q_\phi(z_i \mid x_i)/p(z_i)}
        {\sum_{j \in A_i} q_\phi(z_j \mid x_i)/p(z_j)},

    minimized where :math:`q_\phi(z \mid x) \propto p(x \mid z)\,p(z)`. ``log_prior`` is
    :math:`\log p(z_i)` per row (with any validity correction already added).
    """
    n = len(z)
    atoms = min(num_atoms, n)
    if atoms < 2:
        raise ValueError(f"the atomic loss needs at least 2 atoms, got num_atoms={num_atoms} and {n} rows")
    others = torch.multinomial(1.0 - torch.eye(n, device=z.device), atoms - 1)  # [n, atoms-1], never i
    index = torch.cat([torch.arange(n, device=z.device)[:, None], others], dim=1).T  # [atoms, n]; row 0: own
    context = guide.embed(x)
    q = guide.estimator(context.expand((atoms,) + context.shape))
    logits = q.log_prob(z[index]) - log_prior[index]
    return -(logits[0] - logits.logsumexp(0)).mean()


def mixture_apt_loss(guide, x: torch.Tensor, z: torch.Tensor, factor: MixtureSameFamily | None) -> torch.Tensor:
    r"""Exact (non-atomic) APT loss for a Gaussian-mixture guide when the proposal is the prior
    times a Gaussian mixture, :math:`\tilde p(z) \propto p(z)\, r(z)`:

    .. math:: \tilde q_\phi(z \mid x) = \frac{q_\phi(z \mid x)\, r(z)}{\int q_\phi(z' \mid x)\,
        r(z')\, dz'}, \qquad \int \mathcal{N}(z; m_k, S_k)\, \mathcal{N}(z; \mu_l, \Sigma_l)\,dz
        = \mathcal{N}(m_k; \mu_l, S_k + \Sigma_l),

    and :math:`-\log \tilde q_\phi(z_i \mid x_i)` is minimized where :math:`q_\phi` is the
    posterior (Greenberg et al. 2019). ``factor`` is :math:`r` (``None`` for the prior itself,
    where this is :func:`npe_loss`).
    """
    if factor is None:
        return npe_loss(guide, x, z)
    q = guide.estimate(x)
    return -(q.log_prob(z) + factor.log_prob(z) - log_mixture_overlap(q, factor)).mean()
