r"""A monotonic rational-quadratic spline (Durkan et al. 2019) whose density pass takes about
half the tensor operations of :class:`zuko.transforms.MonotonicRQSTransform`, for zuko's
coupling layers (which call :meth:`~RationalQuadraticSpline.call_and_ladj`).

It is the same function with the same parameterization: the unconstrained widths, heights and
knot derivatives are softly bounded as in zuko, the knots span :math:`[-B, B]` and the map is
the identity outside. On the small tensors of likelihood-free inference a training step costs
what its tensor operations cost to dispatch rather than their arithmetic, so the density pass
(:meth:`~RationalQuadraticSpline.call_and_ladj`) evaluates the spline in its bin with a handful
of fused operations and its gradient in closed form (:class:`_SplineBin`); the inverse
(sampling) looks up its bin the same way.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch.distributions import Transform, constraints

__all__ = ["RationalQuadraticSpline"]


class RationalQuadraticSpline(Transform):
    r"""Monotonic rational-quadratic spline on :math:`[-B, B]`, the identity outside.

    In the bin :math:`[x_k, x_{k+1}]` (values :math:`y_k < y_{k+1}`, derivatives
    :math:`\delta_k, \delta_{k+1}`), with :math:`w = x_{k+1} - x_k`, :math:`h = y_{k+1} - y_k`,
    :math:`s = h / w`, :math:`\xi = (x - x_k)/w` and :math:`m = \xi(1-\xi)`:

    .. math:: y = y_k + h\,\frac{s \xi^2 + \delta_k m}{D}, \qquad
        \frac{dy}{dx} = \frac{s^2 \left(2 s m + \delta_k (1-\xi)^2 + \delta_{k+1} \xi^2\right)}{D^2},
        \qquad D = s + (\delta_k + \delta_{k+1} - 2s)\, m.

    :param parameters: the unconstrained parameters, shape ``(*, 3K - 1)``: ``K`` bin widths,
        ``K`` bin heights, then the derivatives at the ``K - 1`` inner knots (zuko's layout).
    :param bound: the half-width :math:`B` of the spline's domain (and codomain).
    :param slope: the smallest derivative the spline can take.
    """

    domain = constraints.real
    codomain = constraints.real
    bijective = True
    sign = +1

    def __init__(self, parameters: Tensor, bound: float = 5.0, slope: float = 1e-3, **kwargs):
        super().__init__(**kwargs)
        self.bound = bound
        bins = (parameters.shape[-1] + 1) // 3
        log_slope = math.log(slope)
        sizes = parameters[..., : 2 * bins].unflatten(-1, (2, bins))  # widths, heights
        sizes = sizes / (1 + (sizes * (2 / log_slope)).abs())
        # [*, 2, K + 1]: the knots' x and y, from -B to B
        self.knots = F.pad(sizes.softmax(dim=-1).cumsum(dim=-1), (1, 0)).mul(2 * bound).sub(bound)
        derivatives = parameters[..., 2 * bins :]
        # [*, K + 1]: log derivatives at the knots, 0 at the ends (slope 1, as the identity)
        self.log_derivatives = F.pad(derivatives / (1 + (derivatives / log_slope).abs()), (1, 1))

    @property
    def bins(self) -> int:
        return self.knots.shape[-1] - 1

    def __repr__(self) -> str:
        return f"{type(self).__name__}(bins={self.bins})"

    def _bin(self, values: Tensor, row: int) -> tuple[Tensor, Tensor]:
        """The knots (``[*, 2, 2]``: x and y, lower and upper) and log derivatives (``[*, 2]``)
        of the bin that holds each of ``values`` along the knots' ``row`` (0: x, 1: y); the
        first and last bins extend beyond the bound."""
        knots, log_derivatives = self.knots, self.log_derivatives
        if knots.shape[:-2] != values.shape:
            knots = knots.expand(values.shape + knots.shape[-2:])
            log_derivatives = log_derivatives.expand(values.shape + log_derivatives.shape[-1:])
        k = torch.searchsorted(knots[..., row, 1:-1].contiguous(), values.unsqueeze(-1).contiguous())  # 0 <= k < K
        at = torch.cat((k, k + 1), dim=-1)
        return knots.gather(-1, at.unsqueeze(-2).expand(values.shape + (2, 2))), log_derivatives.gather(-1, at)

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return _SplineBin.apply(x, *self._bin(x, 0), self.bound)

    def _call(self, x: Tensor) -> Tensor:
        return self.call_and_ladj(x)[0]

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        return self.call_and_ladj(x)[1]

    def _inverse(self, y: Tensor) -> Tensor:
        r"""The root in :math:`[0, 1]` of the quadratic :math:`a\xi^2 + b\xi + c = 0` that
        :math:`y = y_k + h R(\xi)` becomes (Durkan et al. 2019, eq. 6-8)."""
        knots, log_derivatives = self._bin(y, 1)
        x0, y0 = knots[..., 0].unbind(-1)
        w, h = (knots[..., 1] - knots[..., 0]).unbind(-1)
        d0, d1 = log_derivatives.exp().unbind(-1)
        clamped = y.clamp(-self.bound, self.bound)
        s = h / w
        t = d0 + d1 - 2 * s
        dy = clamped - y0
        a = torch.addcmul(h * (s - d0), dy, t)
        b = torch.addcmul(h * d0, dy, t, value=-1)
        c = -s * dy
        xi = 2 * c / (-b - (b * b - 4 * a * c).sqrt())
        return torch.where(clamped == y, torch.addcmul(x0, xi, w), y)


class _SplineBin(torch.autograd.Function):
    r"""``(y, log dy/dx)`` of the spline at ``x`` given its bin's ``knots`` (``[*, 2, 2]``: x and
    y, lower and upper) and ``log_derivatives`` (``[*, 2]``); the identity outside
    :math:`[-B, B]`.

    The backward pass is the closed-form gradient. With :math:`R = (s\xi^2 + \delta_k m)/D`,
    :math:`M = 2sm + \delta_k(1-\xi)^2 + \delta_{k+1}\xi^2` (so
    :math:`\ell = \log dy/dx = \log M + 2\log(s/D)`), :math:`A = \bar y h / D`,
    :math:`B = \bar\ell / M`, :math:`C = 2\bar\ell/D` and :math:`E = AR + C`:

    .. math::
        \bar s &= A\xi^2 - (1 - 2m)E + 2(\bar\ell/s + Bm), \quad
        \bar\delta_k = m(A - E) + B(1-\xi)^2, \quad
        \bar\delta_{k+1} = B\xi^2 - mE, \\
        \bar\xi &= A(2s\xi + \delta_k(1-2\xi)) + 2B(s(1-2\xi) - \delta_k(1-\xi) + \delta_{k+1}\xi)
        - (\delta_k + \delta_{k+1} - 2s)(1-2\xi)E,

    then :math:`\bar h = \bar y R + \bar s/w`, :math:`\bar w = -(\bar s s + \bar\xi\xi)/w` and
    :math:`\bar x = \bar\xi / w`.
    """

    @staticmethod
    def forward(ctx, x: Tensor, knots: Tensor, log_derivatives: Tensor, bound: float) -> tuple[Tensor, Tensor]:
        x0, y0 = knots[..., 0].unbind(-1)
        w, h = (knots[..., 1] - knots[..., 0]).unbind(-1)
        derivatives = log_derivatives.exp()
        d0, d1 = derivatives.unbind(-1)
        clamped = x.clamp(-bound, bound)
        inside = (clamped == x).to(x.dtype)  # outside [-B, B] the spline is the identity
        s = h / w
        # in [0, 1] but for rounding: the last knot is B only up to float error, and xi > 1 by
        # that error would make the derivative's numerator negative and its log NaN
        xi = ((clamped - x0) / w).clamp_(0.0, 1.0)
        xi_1 = 1 - xi
        m = xi * xi_1
        t = torch.add(d0 + d1, s, alpha=-2)
        denominator = torch.addcmul(s, t, m)
        ratio = torch.addcmul(s * xi, d0, xi_1).mul_(xi).div_(denominator)
        y = torch.where(inside.bool(), torch.addcmul(y0, h, ratio), x)
        xi2, xi_12 = xi * xi, xi_1 * xi_1
        numerator = torch.addcmul(torch.addcmul(d0 * xi_12, d1, xi2), s, m, value=2)
        ladj = (s / denominator).square_().mul_(numerator).log_().mul_(inside)
        ctx.save_for_backward(inside, w, h, derivatives, s, xi, xi_1, m, t, denominator, ratio, xi2, xi_12, numerator)
        return y, ladj

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y: Tensor, grad_ladj: Tensor):
        inside, w, h, derivatives, s, xi, xi_1, m, t, denominator, ratio, xi2, xi_12, numerator = ctx.saved_tensors
        d0, d1 = derivatives.unbind(-1)
        gy, gl = grad_y * inside, grad_ladj * inside
        a = gy * h / denominator
        b = gl / numerator
        e = torch.addcmul(gl / denominator * 2, a, ratio)
        u = xi_1 - xi  # 1 - 2 xi
        g_s = torch.addcmul(gl / s, b, m).mul_(2).add_(a * xi2).sub_(e * (1 - 2 * m))
        g_d0 = torch.addcmul(b * xi_12, m, a - e)
        g_d1 = torch.addcmul(b * xi2, m, e, value=-1)
        d_numerator = torch.addcmul(torch.addcmul(s * u, d0, xi_1, value=-1), d1, xi)  # dM/dxi / 2
        g_xi = torch.addcmul(a * torch.addcmul(2 * s * xi, d0, u), b, d_numerator, value=2).sub_(t * u * e)
        g_s_w, g_xi_w = g_s / w, g_xi / w
        g_h = torch.addcmul(g_s_w, gy, ratio)
        g_w = torch.addcmul(g_s_w * s, g_xi_w, xi).neg_()
        g_x = torch.where(inside.bool(), g_xi_w, grad_y)
        # knots: x0 = x_k, x1 = x0 + w, y0, y1 = y0 + h
        g_knots = torch.stack((-g_xi_w - g_w, g_w, gy - g_h, g_h), dim=-1).unflatten(-1, (2, 2))
        return g_x, g_knots, torch.stack((g_d0, g_d1), dim=-1).mul_(derivatives), None
