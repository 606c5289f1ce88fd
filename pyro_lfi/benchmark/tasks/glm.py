r"""Bernoulli GLM (sbibm ``bernoulli_glm``, ``bernoulli_glm_raw``; Lueckmann et al. 2021, appendix T.7).

A neuron's spikes :math:`y_t \sim \mathrm{Bernoulli}(\sigma(\psi_t))`, :math:`t = 1..100`, with
:math:`\psi = X\beta`: :math:`X_{t,0} = 1` (offset) and :math:`X_{t,1+j} = I_{t-j}` (0 before the
stimulus starts), :math:`j = 0..8`, a temporal filter on a white-noise stimulus
:math:`I \sim N(0, 1)^{100}` (drawn once from this project's seed ``crc32("bernoulli_glm/stimulus")``
and rounded to 4 decimals). Prior :math:`\beta \sim N(0, B^{-1})` with sbibm's smoothness
precision :math:`B = \operatorname{diag}(0.5, F^\top F)`, :math:`F = D^2 + \operatorname{diag}
(\sqrt{k/9})_{k=0..8}`, :math:`D` the first-difference matrix (:math:`I - ` subdiagonal).

* ``bernoulli_glm_raw``: :math:`x = y` (100 binary numbers).
* ``bernoulli_glm``: :math:`x = X^\top y` = (spike count, spike-triggered sums of the 9 stimulus
  lags): sbibm's summary (its ``conv1d`` of :math:`y` with :math:`I`, last 9 outputs, is exactly
  :math:`X_{:,1:}^\top y`). Because :math:`\log p(y \mid \beta) = \beta^\top X^\top y - \sum_t
  \log(1 + e^{\psi_t})` depends on :math:`y` only through :math:`X^\top y`, the summary is
  sufficient and both tasks have the same posterior, which sbibm also computes from the raw data.
  Their observations are the same spike trains (shared seeds and true parameters).
"""

from __future__ import annotations

import functools
import zlib

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Task, generator, params

__all__ = [
    "BERNOULLI_GLM",
    "BERNOULLI_GLM_RAW",
    "NUM_BINS",
    "bernoulli_glm_raw_simulator",
    "bernoulli_glm_simulator",
    "design_matrix",
    "glm_log_likelihood",
    "glm_prior_precision",
]

NUM_BINS = 100
NUM_LAGS = 9


@functools.cache
def design_matrix() -> Tensor:
    """:math:`X` ``[100, 10]`` (float64): a column of ones and the stimulus at lags 0..8."""
    stimulus = torch.randn(NUM_BINS, generator=generator(zlib.crc32(b"bernoulli_glm/stimulus")), dtype=torch.float64)
    stimulus = stimulus.round(decimals=4)
    lags = [F.pad(stimulus[: NUM_BINS - j], (j, 0)) for j in range(NUM_LAGS)]
    return torch.stack([torch.ones(NUM_BINS, dtype=torch.float64), *lags], dim=-1)


def glm_prior_precision() -> Tensor:
    """sbibm's prior precision :math:`B` ``[10, 10]`` (float64)."""
    m = NUM_LAGS
    d = torch.eye(m, dtype=torch.float64) - torch.diag(torch.ones(m - 1, dtype=torch.float64), -1)
    f = d @ d + torch.diag((torch.arange(m, dtype=torch.float64) / m).sqrt())
    b = torch.zeros(m + 1, m + 1, dtype=torch.float64)
    b[0, 0] = 0.5
    b[1:, 1:] = f.T @ f
    return b


def _glm_prior() -> dist.Distribution:
    tril = torch.linalg.cholesky(torch.linalg.inv(glm_prior_precision()))
    return dist.MultivariateNormal(torch.zeros(NUM_LAGS + 1), scale_tril=tril.float())


def bernoulli_glm_raw_simulator(theta: Tensor) -> Tensor:
    r"""``beta[..., 10] -> y[..., 100]``: :math:`y_t = 1[u_t < \sigma((X\beta)_t)]`, :math:`u \sim U(0, 1)^{100}`."""
    psi = theta @ design_matrix().to(theta.dtype).T
    return (torch.rand(psi.shape, dtype=theta.dtype) < torch.sigmoid(psi)).to(theta.dtype)


def bernoulli_glm_simulator(theta: Tensor) -> Tensor:
    r"""``beta[..., 10] -> X^T y [..., 10]``: spike count and spike-triggered sums (same draws as raw)."""
    return bernoulli_glm_raw_simulator(theta) @ design_matrix().to(theta.dtype)


def glm_log_likelihood(beta: Tensor, statistic: Tensor) -> Tensor:
    r""":math:`\log p(y \mid \beta) = \beta^\top T - \sum_t \operatorname{softplus}((X\beta)_t)` for
    ``beta[..., 10]`` and :math:`T = X^\top y` ``[10]`` (also the summary task's likelihood)."""
    psi = beta @ design_matrix().to(beta.dtype).T
    return beta @ statistic.to(beta.dtype) - F.softplus(psi).sum(-1)


def _glm_reference(task: Task, x_o: Tensor, num_samples: int, seed: int, index: int | None) -> Tensor:
    from pyro_lfi.benchmark.reference_store import reference_samples
    from pyro_lfi.benchmark.tractable import POSTERIORS

    statistic = x_o.double() @ design_matrix() if task.dim_x == NUM_BINS else x_o.double()
    return reference_samples(POSTERIORS["bernoulli_glm"], task, statistic, num_samples, seed, index)


#: ``draw_true_parameters("bernoulli_glm", prior)``
_TRUE_PARAMETERS = params(
    (-2.50566, -1.37043, -2.55756, -2.68257, -2.07675, -0.8207, -0.35512, 0.0847241, 0.293744, -0.423483),
    (2.48794, 0.512373, 1.06855, 0.894056, 2.08867, 1.66039, 0.735717, -0.110248, -0.451391, -0.662324),
    (2.15386, 0.288428, 0.772086, 1.11616, 2.07402, 2.77236, 2.92225, 1.3823, -0.578137, -1.05245),
    (1.61186, -1.42888, -1.61564, -1.67018, -0.73741, -0.574077, -0.230779, -0.908504, -1.42154, -0.650746),
    (-1.08275, 0.0822745, 0.631296, 1.14302, 0.503326, 0.341157, 0.352062, -0.93806, -1.35701, -1.00096),
    (0.156057, -0.64577, -0.00240695, 1.17967, 1.26493, 0.643495, -0.380806, -0.274371, -0.211465, -0.232633),
    (-0.44747, -0.468158, 0.422819, -0.692574, -1.38587, -1.28222, -0.358668, -0.289124, -0.100144, 0.312772),
    (-1.24137, -0.0509687, -1.10605, -1.28553, -0.968047, -1.89828, -0.954369, -0.338045, 0.0549725, 0.771307),
    (-0.669886, 1.52762, 2.40197, 1.97868, -0.0865413, -2.11068, -2.69486, -1.43417, 0.224539, 1.24938),
    (-0.219297, -1.19957, -1.52958, -1.61886, -1.73804, -1.19247, -0.696609, 0.370415, 0.570096, 0.231574),
)

BERNOULLI_GLM = Task(
    name="bernoulli_glm",
    dim_theta=NUM_LAGS + 1,
    dim_x=NUM_LAGS + 1,
    prior=_glm_prior(),
    simulator=bernoulli_glm_simulator,
    true_parameters=_TRUE_PARAMETERS,
    reference_sampler=_glm_reference,
    seed_name="bernoulli_glm",
)

BERNOULLI_GLM_RAW = Task(
    name="bernoulli_glm_raw",
    dim_theta=NUM_LAGS + 1,
    dim_x=NUM_BINS,
    prior=_glm_prior(),
    simulator=bernoulli_glm_raw_simulator,
    true_parameters=_TRUE_PARAMETERS,
    reference_sampler=_glm_reference,
    seed_name="bernoulli_glm",
)
