r"""Flow matching posterior estimation, FMPE (Dax et al. 2023, "Flow Matching for Scalable
Simulation-Based Inference", NeurIPS; Lipman et al. 2023, "Flow Matching for Generative Modeling").

A vector field :math:`v_\phi(t, u, c)` carries noise :math:`\epsilon \sim \mathcal{N}(0, I)` at
:math:`t = 0` to the standardized parameters :math:`u = (z - \mu)/\sigma` at :math:`t = 1`. It is
trained by conditional flow matching along the optimal-transport path

.. math:: u_t = \big(1 - (1 - \sigma_\min) t\big)\, \epsilon + t\, u, \qquad
    \ell(u, c) = \mathbb{E}_{t \sim p_\alpha,\, \epsilon}
    \big\lVert v_\phi(t, u_t, c) - \big(u - (1 - \sigma_\min) \epsilon\big) \big\rVert^2 / D,

whose minimizer's flow maps :math:`\mathcal{N}(0, I)` to :math:`q(u \mid c) \approx p(u \mid x)`
(convolved with :math:`\mathcal{N}(0, \sigma_\min^2 I)`). Times are drawn as
:math:`t = U^{1/(1+\alpha)}`, :math:`U \sim \mathcal{U}(0, 1)`: density
:math:`p_\alpha(t) \propto t^\alpha`, uniform for :math:`\alpha = 0` and weighted towards the data
end for :math:`\alpha > 0` (the paper writes the exponent of the map, :math:`1/(1+\alpha)`; its
code, dingo, draws this way). Draws and densities solve the ODE
:math:`\mathrm{d}u/\mathrm{d}t = v_\phi` (:mod:`~pyro_lfi.nn.continuous`).
"""

from __future__ import annotations

import torch

from .continuous import ContinuousFlowEstimator

__all__ = ["FlowMatching"]


class FlowMatching(ContinuousFlowEstimator):
    r"""FMPE: a conditional flow-matching vector field (see the module docs).

    :param features: dimension D of ``z``.
    :param context: dimension of the context.
    :param sigma_min: width :math:`\sigma_\min` of the path's end at the data (standardized units).
    :param time_prior_exponent: :math:`\alpha` of the time prior :math:`p_\alpha(t) \propto t^\alpha`
        (Dax et al. use 1).
    :param options: of :class:`~pyro_lfi.nn.continuous.ContinuousFlowEstimator`
        (``hidden_features``, ``blocks``, ``freqs``, ``atol``, ``rtol``, ``exact``).
    """

    t_data, t_noise, noise_scale = 1.0, 0.0, 1.0

    def __init__(
        self, features: int, context: int, sigma_min: float = 1e-3, time_prior_exponent: float = 1.0, **options
    ):
        if not 0 <= sigma_min < 1 or time_prior_exponent < 0:
            raise ValueError(f"need 0 <= sigma_min < 1 and time_prior_exponent >= 0, got {sigma_min}, "
                             f"{time_prior_exponent}")
        super().__init__(features, context, **options)
        self.sigma_min = sigma_min
        self.time_prior_exponent = time_prior_exponent

    def velocity(self, t: torch.Tensor, u: torch.Tensor, conditioning: torch.Tensor) -> torch.Tensor:
        r""":math:`v_\phi(t, u, c)`."""
        return self.field(t, u, conditioning)

    def loss(self, z: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        r"""The conditional flow-matching loss of each row (one draw of :math:`t` and
        :math:`\epsilon` per row), on :math:`u = (z - \mu)/\sigma`."""
        u = self.standardize(z)
        t = torch.rand(u.shape[:-1] + (1,), dtype=u.dtype, device=u.device) ** (1 / (1 + self.time_prior_exponent))
        noise = torch.randn_like(u)
        u_t = (1 - (1 - self.sigma_min) * t) * noise + t * u
        target = u - (1 - self.sigma_min) * noise
        return (self.velocity(t, u_t, self.field.condition(context)) - target).pow(2).mean(-1)
