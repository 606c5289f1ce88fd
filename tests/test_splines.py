"""The fast rational-quadratic spline is zuko's spline: same values, log-derivatives, gradients
(closed form, checked numerically) and inverse, and the identity outside its bound."""

import pytest
import torch
from zuko.transforms import MonotonicRQSTransform

from pyro_lfi.nn.splines import RationalQuadraticSpline

BINS = 8


def _parameters(*batch, scale=2.0, seed=0):
    generator = torch.Generator().manual_seed(seed)
    phi = torch.randn(*batch, 3 * BINS - 1, generator=generator, dtype=torch.float64) * scale
    return phi.requires_grad_()


def _spline(cls, phi):
    if cls is MonotonicRQSTransform:
        return cls(phi[..., :BINS], phi[..., BINS : 2 * BINS], phi[..., 2 * BINS :])
    return cls(phi)  # the same layout, packed


@pytest.mark.parametrize("shape", [(300, 2), (2,)], ids=["batched parameters", "shared parameters"])
def test_values_log_derivatives_and_gradients_equal_zukos(shape):
    phi = _parameters(*shape)
    generator = torch.Generator().manual_seed(1)
    x = (torch.randn(300, 2, generator=generator, dtype=torch.float64) * 4).requires_grad_()  # some beyond ±5
    assert (x.abs() > 5).any()
    ours = _spline(RationalQuadraticSpline, phi).call_and_ladj(x)
    theirs = _spline(MonotonicRQSTransform, phi).call_and_ladj(x)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    weights = torch.randn(2, 300, 2, generator=generator, dtype=torch.float64)

    def grads(y_ladj):
        return torch.autograd.grad(sum((w * t).sum() for w, t in zip(weights, y_ladj)), (phi, x))

    for a, b in zip(grads(ours), grads(theirs)):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-9)


def test_gradient_is_the_numerical_gradient():
    phi = _parameters(6, 2, scale=1.0)
    x = [[-6.0, -4.9], [-1.0, 0.0], [0.3, 2.0], [4.0, 4.99], [5.5, -0.2], [1e-3, -3.0]]  # some beyond ±5
    x = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, phi: _spline(RationalQuadraticSpline, phi).call_and_ladj(x), (x, phi))


def test_identity_outside_the_bound_and_inverse_round_trips():
    phi = _parameters(5, 1)
    spline = _spline(RationalQuadraticSpline, phi)
    x = torch.tensor([[-7.0], [-2.0], [0.5], [3.0], [9.0]], dtype=torch.float64)
    y, ladj = spline.call_and_ladj(x)
    assert y[[0, 4]].tolist() == [[-7.0], [9.0]]
    assert ladj[[0, 4]].tolist() == [[0.0], [0.0]]
    torch.testing.assert_close(spline.inv(y), x)
    torch.testing.assert_close(spline.inv(y), _spline(MonotonicRQSTransform, phi).inv(y))
    # log-derivative by finite differences
    h = 1e-6
    slope = (spline.call_and_ladj(x + h)[0] - spline.call_and_ladj(x - h)[0]) / (2 * h)
    torch.testing.assert_close(ladj, slope.log(), rtol=1e-6, atol=1e-6)
