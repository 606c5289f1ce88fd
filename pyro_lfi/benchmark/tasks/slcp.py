r"""SLCP and SLCP with distractors (sbibm ``slcp``, ``slcp_distractors``; Papamakarios et al. 2019,
Lueckmann et al. 2021, appendix T.4 and T.5).

* ``slcp``: :math:`\theta \sim U(-3, 3)^5`; four iid draws of :math:`N(m, S)` flattened to 8
  numbers, :math:`m = (\theta_1, \theta_2)`, :math:`s_1 = \theta_3^2`, :math:`s_2 = \theta_4^2`,
  :math:`\rho = \tanh\theta_5`,
  :math:`S = \begin{pmatrix} s_1^2 & \rho s_1 s_2 \\ \rho s_1 s_2 & s_2^2\end{pmatrix}`.
* ``slcp_distractors``: those 8 numbers and 92 distractors, all 100 permuted by a fixed
  permutation. The distractors, independent of :math:`\theta`, are drawn from a fixed uniform
  mixture of 20 multivariate Student-t's (2 degrees of freedom) in 92 dimensions with locations
  :math:`15\,\epsilon` and scale factors :math:`3\,(\operatorname{tril}(E) + \operatorname{diag}
  (e^{\epsilon'}))`, :math:`\epsilon, \epsilon', E` standard normal (sbibm's construction), drawn
  from this project's seed ``crc32("slcp_distractors/mixture")``; a column whose diagonal entry is
  negative has its sign flipped (the same covariance). Its observations are ``slcp``'s (the same
  true parameters and seeds), so its reference posterior is ``slcp``'s at the informative part.
"""

from __future__ import annotations

import functools
import zlib

import torch
from torch import Tensor

from .base import Task, generator, params, uniform_box

__all__ = [
    "NUM_DISTRACTORS",
    "SLCP",
    "SLCP_DISTRACTORS",
    "distractor_mixture",
    "distractor_permutation",
    "informative_positions",
    "slcp_distractors_simulator",
    "slcp_scale_tril",
    "slcp_simulator",
]

NUM_DISTRACTORS = 92
NUM_COMPONENTS = 20


def slcp_scale_tril(theta: Tensor) -> tuple[Tensor, Tensor]:
    r"""Mean ``[..., 2]`` and Cholesky factor ``[..., 2, 2]`` of SLCP's Gaussian:
    :math:`L = \begin{pmatrix} s_1 & 0 \\ \rho s_2 & s_2\sqrt{1-\rho^2}\end{pmatrix}`,
    so :math:`L L^\top = S`."""
    s1, s2 = theta[..., 2] ** 2, theta[..., 3] ** 2
    rho = torch.tanh(theta[..., 4])
    zero = torch.zeros_like(s1)
    row1 = torch.stack([s1, zero], dim=-1)
    row2 = torch.stack([rho * s2, s2 * torch.sqrt(1 - rho**2)], dim=-1)
    return theta[..., :2], torch.stack([row1, row2], dim=-2)


def slcp_simulator(theta: Tensor) -> Tensor:
    """SLCP simulator, ``theta[..., 5] -> x[..., 8]`` (four 2-D points, flattened)."""
    loc, tril = slcp_scale_tril(theta)
    eps = torch.randn(theta.shape[:-1] + (4, 2), dtype=theta.dtype)
    points = loc.unsqueeze(-2) + (tril.unsqueeze(-3) @ eps.unsqueeze(-1)).squeeze(-1)
    return points.flatten(-2)


def _slcp_reference(task: Task, x_o: Tensor, num_samples: int, seed: int, index: int | None) -> Tensor:
    from pyro_lfi.benchmark.references import slcp_reference, slcp_reference_at

    if index is None:
        return slcp_reference(x_o, num_samples, seed)
    return slcp_reference_at(index, num_samples, seed)


@functools.cache
def distractor_mixture() -> tuple[Tensor, Tensor]:
    """Locations ``[20, 92]`` and scale factors ``[20, 92, 92]`` (float64) of the distractors' mixture."""
    gen = generator(zlib.crc32(b"slcp_distractors/mixture"))
    loc = 15 * torch.randn(NUM_COMPONENTS, NUM_DISTRACTORS, generator=gen, dtype=torch.float64)
    tril = torch.randn(NUM_COMPONENTS, NUM_DISTRACTORS, NUM_DISTRACTORS, generator=gen, dtype=torch.float64).tril()
    diag = torch.randn(NUM_COMPONENTS, NUM_DISTRACTORS, generator=gen, dtype=torch.float64).exp()
    tril = tril + torch.diag_embed(diag)
    signs = torch.where(torch.diagonal(tril, dim1=-2, dim2=-1) < 0, -1.0, 1.0).to(tril.dtype)
    return loc, 3 * tril * signs.unsqueeze(-2)


@functools.cache
def distractor_permutation() -> Tensor:
    """The fixed permutation of ``slcp_distractors``: ``x = cat(slcp, distractors)[..., permutation]``."""
    return torch.randperm(8 + NUM_DISTRACTORS, generator=generator(zlib.crc32(b"slcp_distractors/permutation")))


def informative_positions() -> Tensor:
    """Where SLCP's 8 outputs lie in ``slcp_distractors``' ``x``, in their order."""
    return torch.argsort(distractor_permutation())[:8]


def slcp_distractors_simulator(theta: Tensor) -> Tensor:
    r"""``theta[..., 5] -> x[..., 100]``: :func:`slcp_simulator` (drawn first, so that a seed gives
    SLCP's numbers) and 92 distractors :math:`\mu_k + L_k z / \sqrt{w}`, :math:`k` uniform,
    :math:`z \sim N(0, I)`, :math:`w \sim \mathrm{Exp}(1)` (:math:`2w \sim \chi^2_2`), permuted."""
    informative = slcp_simulator(theta)
    loc, tril = (t.to(theta.dtype) for t in distractor_mixture())
    batch = theta.shape[:-1]
    component = torch.randint(NUM_COMPONENTS, batch).reshape(-1)
    z = torch.randn(component.shape[0], NUM_DISTRACTORS, dtype=theta.dtype)
    w = torch.empty(component.shape[0], 1, dtype=theta.dtype).exponential_()
    noise = torch.empty_like(z)
    for k in range(NUM_COMPONENTS):
        rows = component == k
        noise[rows] = loc[k] + (z[rows] @ tril[k].T) / w[rows].sqrt()
    x = torch.cat([informative, noise.reshape(batch + (NUM_DISTRACTORS,))], dim=-1)
    return x[..., distractor_permutation()]


def _slcp_distractors_reference(task: Task, x_o: Tensor, num_samples: int, seed: int, index: int | None) -> Tensor:
    r"""SLCP's reference at the informative part: the distractors do not depend on :math:`\theta`,
    so :math:`p(\theta \mid x_o) = p_{\mathrm{SLCP}}(\theta \mid x_{o, \mathrm{informative}})`."""
    from pyro_lfi.benchmark import reference_cache
    from pyro_lfi.benchmark.references import slcp_reference, slcp_reference_at

    informative = x_o[informative_positions()]
    if index is None:
        return slcp_reference(informative, num_samples, seed)
    slcp_x_o = SLCP.observation(index).numpy()
    error = reference_cache.mismatch(informative.numpy(), slcp_x_o)
    if not error <= reference_cache.RTOL:
        raise reference_cache.ObservationMismatchError(
            f"slcp_distractors #{index}: its informative part differs from slcp's observation by {error:.3g}"
        )
    return slcp_reference_at(index, num_samples, seed)


SLCP = Task(
    name="slcp",
    dim_theta=5,
    dim_x=8,
    prior=uniform_box(-3.0, 3.0, 5),
    simulator=slcp_simulator,
    true_parameters=params(
        (0.7, -2.0, -1.0, -0.9, 0.6),
        (-1.5, 1.0, 0.8, 1.2, -0.5),
        (2.0, 0.5, -1.3, 0.7, 1.0),
        (0.0, -0.8, 1.1, -1.1, -1.2),
        (-2.2, 2.1, 0.6, 0.9, 0.2),
    ),
    reference_sampler=_slcp_reference,
)

SLCP_DISTRACTORS = Task(
    name="slcp_distractors",
    dim_theta=5,
    dim_x=8 + NUM_DISTRACTORS,
    prior=uniform_box(-3.0, 3.0, 5),
    simulator=slcp_distractors_simulator,
    true_parameters=SLCP.true_parameters,
    reference_sampler=_slcp_distractors_reference,
    seed_name="slcp",
)
