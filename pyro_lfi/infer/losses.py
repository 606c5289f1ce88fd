r"""The loss of neural posterior estimation, a function of the guide and a batch (the
sequential methods' losses live with their methods in :mod:`pyro_lfi.infer.sequential`).

Every loss is an average over rows :math:`(z_i, x_i)` with :math:`z_i` drawn from some proposal
:math:`\tilde p(z)` and :math:`x_i` from the simulator; each is minimized by
:math:`q_\phi(z \mid x) = p(z \mid x)` for the proposal it is written for. ``z`` is the
unconstrained latent vector throughout (the Jacobian of the map to the constrained space does
not depend on :math:`\phi`, and cancels in every density ratio).
"""

from __future__ import annotations

import torch

__all__ = ["npe_loss", "other_rows"]


def npe_loss(guide, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    r"""The mean over rows of the guide's estimator loss,
    :meth:`~pyro_lfi.nn.ConditionalDensityEstimator.loss` of :math:`z_i` given the embedded
    :math:`x_i`: for flows and mixtures the negative log density,
    :math:`-\frac1n \sum_i \log q_\phi(z_i \mid x_i)`. With :math:`z_i` from the prior,
    minimizing it minimizes :math:`\mathbb{E}_{p(x)}\,\mathrm{KL}(p(z\mid x) \,\Vert\, q_\phi(z
    \mid x))` (Papamakarios & Murray 2016); with :math:`z_i` from a proposal :math:`\tilde p` it
    fits the proposal posterior :math:`\tilde p(z \mid x) \propto p(x \mid z)\,\tilde p(z)`.
    Flow matching (Dax et al. 2023) and denoising score matching (Geffner et al. 2023) have the
    same minimizer with a regression loss in place of the log density."""
    return guide.estimator.loss(z, guide.embed(x)).mean()


def other_rows(n: int, k: int, device: torch.device | None = None) -> torch.Tensor:
    """``[n, k]`` indices of rows of a batch of ``n`` other than each row's own, drawn without
    replacement: the contrasting atoms of the atomic APT and NRE-C losses."""
    if not 1 <= k < n:
        raise ValueError(f"cannot draw {k} other rows from a batch of {n}: lower num_atoms or raise batch_size")
    return torch.multinomial(torch.ones(n, n, device=device).fill_diagonal_(0.0), k)
