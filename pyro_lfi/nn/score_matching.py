r"""Neural posterior score estimation, NPSE (Geffner et al. 2023, "Compositional Score Modeling
for Simulation-Based Inference", ICML; Sharrock et al. 2024, "Sequential Neural Score Estimation",
ICML; the diffusions of Song et al. 2021, "Score-Based Generative Modeling through Stochastic
Differential Equations").

The standardized parameters :math:`u = (z - \mu)/\sigma` are diffused as
:math:`u_t = m_t u + \sigma_t \epsilon`, :math:`\epsilon \sim \mathcal{N}(0, I)`, by

* the variance-preserving SDE (``sde="vp"``): :math:`\beta(t) = \beta_\min + t(\beta_\max -
  \beta_\min)`, :math:`m_t = \exp(-\tfrac12 \int_0^t \beta)`, :math:`\sigma_t^2 = 1 - m_t^2`;
* the variance-exploding SDE (``sde="ve"``): :math:`m_t = 1`, :math:`\sigma_t = \sigma_\min
  (\sigma_\max/\sigma_\min)^t`.

A network predicts the noise, :math:`\hat\epsilon_\phi(t, u_t, c) = \sigma_t u_t / (m_t^2 +
\sigma_t^2) + g_\phi(t, u_t, c)`: the first term is the exact noise of standard normal data (what
the standardization makes :math:`u` marginally), so an untrained network is close to
:math:`\mathcal{N}(0, I)` rather than to the Gaussian at :math:`t = 1` contracted by :math:`m_1`.
The score is :math:`s_\phi = -\hat\epsilon_\phi / \sigma_t`; denoising score matching with the weight
:math:`\lambda(t) = \sigma_t^2` is the noise regression

.. math:: \ell(u, c) = \mathbb{E}_{t \sim \mathcal{U}(\varepsilon, 1),\, \epsilon}
    \lVert \hat\epsilon_\phi(t, m_t u + \sigma_t \epsilon, c) - \epsilon \rVert^2 / D .

Draws and densities solve the probability-flow ODE of the SDE
:math:`\mathrm{d}u = f(t) u\,\mathrm{d}t + g(t)\,\mathrm{d}W`,

.. math:: \frac{\mathrm{d}u}{\mathrm{d}t} = f(t)\, u - \tfrac12 g(t)^2 s_\phi(t, u, c)
    = f(t)\, u + \frac{g(t)^2}{2 \sigma_t} \hat\epsilon_\phi(t, u, c),

between :math:`t = \varepsilon` (the data) and :math:`t = 1`, where :math:`u_1` is taken as
:math:`\mathcal{N}(0, (m_1^2 + \sigma_1^2) I)` (:mod:`~pyro_lfi.nn.continuous`).
"""

from __future__ import annotations

import math

import torch

from .continuous import ContinuousFlowEstimator

__all__ = ["ScoreMatching"]

SDES = ("vp", "ve")


class ScoreMatching(ContinuousFlowEstimator):
    r"""NPSE: a noise-prediction (score) network of a diffusion (see the module docs).

    :param features: dimension D of ``z``.
    :param context: dimension of the context.
    :param sde: ``"vp"`` (variance preserving) or ``"ve"`` (variance exploding).
    :param beta_min: VP: :math:`\beta_\min`.
    :param beta_max: VP: :math:`\beta_\max`.
    :param sigma_min: VE: :math:`\sigma_\min` (standardized units).
    :param sigma_max: VE: :math:`\sigma_\max`.
    :param t_min: :math:`\varepsilon`, the data end of the diffusion's time.
    :param options: of :class:`~pyro_lfi.nn.continuous.ContinuousFlowEstimator`
        (``hidden_features``, ``blocks``, ``freqs``, ``atol``, ``rtol``, ``exact``).
    """

    t_noise = 1.0

    def __init__(
        self,
        features: int,
        context: int,
        sde: str = "vp",
        beta_min: float = 0.1,
        beta_max: float = 20.0,
        sigma_min: float = 0.01,
        sigma_max: float = 10.0,
        t_min: float = 1e-3,
        **options,
    ):
        if sde not in SDES:
            raise ValueError(f"unknown sde '{sde}'; choose one of {SDES}")
        if not 0 < t_min < 1 or not 0 < beta_min < beta_max or not 0 < sigma_min < sigma_max:
            raise ValueError("need 0 < t_min < 1, 0 < beta_min < beta_max and 0 < sigma_min < sigma_max")
        super().__init__(features, context, **options)
        self.sde, self.t_data = sde, t_min
        self.beta_min, self.beta_max = beta_min, beta_max
        self.sigma_min, self.sigma_max = sigma_min, sigma_max
        mean, std = self.kernel(torch.tensor(1.0))
        self.noise_scale = math.sqrt(float(mean**2 + std**2))

    def kernel(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r""":math:`(m_t, \sigma_t)` of the perturbation kernel :math:`u_t = m_t u + \sigma_t \epsilon`."""
        if self.sde == "ve":
            return torch.ones_like(t), self.sigma_min * (self.sigma_max / self.sigma_min) ** t
        integral = self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2
        return torch.exp(-0.5 * integral), (-torch.expm1(-integral)).sqrt()

    def drift_and_diffusion(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r""":math:`(f(t), g(t)^2)` of the SDE :math:`\mathrm{d}u = f(t) u\,\mathrm{d}t + g(t)\,\mathrm{d}W`."""
        if self.sde == "ve":
            _, std = self.kernel(t)
            return torch.zeros_like(t), 2 * std**2 * math.log(self.sigma_max / self.sigma_min)
        beta = self.beta_min + t * (self.beta_max - self.beta_min)
        return -0.5 * beta, beta

    def noise(self, t: torch.Tensor, u: torch.Tensor, conditioning: torch.Tensor) -> torch.Tensor:
        r"""The predicted noise :math:`\hat\epsilon_\phi(t, u, c)`."""
        mean, std = self.kernel(t)
        return std / (mean**2 + std**2) * u + self.field(t, u, conditioning)

    def velocity(self, t: torch.Tensor, u: torch.Tensor, conditioning: torch.Tensor) -> torch.Tensor:
        r"""The probability-flow drift :math:`f(t) u + g(t)^2 \hat\epsilon_\phi / (2\sigma_t)`."""
        drift, diffusion = self.drift_and_diffusion(t)
        _, std = self.kernel(t)
        return drift * u + diffusion / (2 * std) * self.noise(t, u, conditioning)

    def loss(self, z: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        r"""The denoising score-matching loss of each row with :math:`\lambda(t) = \sigma_t^2` (one
        draw of :math:`t` and :math:`\epsilon` per row), on :math:`u = (z - \mu)/\sigma`."""
        u = self.standardize(z)
        t = self.t_data + (1 - self.t_data) * torch.rand(u.shape[:-1] + (1,), dtype=u.dtype, device=u.device)
        mean, std = self.kernel(t)
        noise = torch.randn_like(u)
        predicted = self.noise(t, mean * u + std * noise, self.field.condition(context))
        return (predicted - noise).pow(2).mean(-1)
