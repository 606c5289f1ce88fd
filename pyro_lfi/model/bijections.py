r"""Bijections onto the supports that :func:`torch.distributions.biject_to` has none for.

A :class:`~pyro.distributions.Wishart` latent lives on the positive definite matrices, which
``biject_to`` cannot map to. Both maps here start from the vector :math:`u \in
\mathbb{R}^{D(D+1)/2}` of a lower-triangular matrix's entries (row by row), whose diagonal is
exponentiated: :math:`L_{ij} = u_{ij}` below the diagonal, :math:`L_{ii} = e^{u_{ii}}`, so
:math:`\log\lvert\det \partial L/\partial u\rvert = \sum_i u_{ii}`. The positive definite map
continues with :math:`\Sigma = L L^\top`, whose Jacobian with respect to the lower triangle is
:math:`2^D \prod_{i=1}^D L_{ii}^{D - i + 1}`, so

.. math:: \log\lvert\det \partial\Sigma/\partial u\rvert = D \log 2 + \sum_{i=1}^D (D - i + 2)\, u_{ii}.
"""

from __future__ import annotations

import math

import torch
from torch.distributions import biject_to, constraints
from torch.distributions.transforms import IndependentTransform, Transform

__all__ = ["LowerCholeskyTransform", "PositiveDefiniteTransform", "bijection"]


def _size(n: int) -> int:
    """D such that a lower triangle of a D x D matrix has ``n`` entries."""
    d = (math.isqrt(8 * n + 1) - 1) // 2
    if d * (d + 1) // 2 != n:
        raise ValueError(f"a vector of {n} entries is not the lower triangle of a square matrix")
    return d


class LowerCholeskyTransform(Transform):
    """:math:`u \\in \\mathbb{R}^{D(D+1)/2}` to the lower-triangular matrix with positive diagonal
    (the ``lower_cholesky`` support), the diagonal through ``exp``."""

    domain = constraints.real_vector
    codomain = constraints.lower_cholesky
    bijective = True

    def __eq__(self, other):
        return type(other) is type(self)

    def _call(self, u: torch.Tensor) -> torch.Tensor:
        d = _size(u.shape[-1])
        rows, cols = torch.tril_indices(d, d, device=u.device)
        diagonal = rows == cols
        entries = torch.where(diagonal, u.exp(), u)
        matrix = u.new_zeros(u.shape[:-1] + (d, d))
        matrix[..., rows, cols] = entries
        return matrix

    def _inverse(self, matrix: torch.Tensor) -> torch.Tensor:
        d = matrix.shape[-1]
        rows, cols = torch.tril_indices(d, d, device=matrix.device)
        entries = matrix[..., rows, cols]
        return torch.where(rows == cols, entries.log(), entries)

    def log_abs_det_jacobian(self, u: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
        d = _size(u.shape[-1])
        rows, cols = torch.tril_indices(d, d, device=u.device)
        return u[..., rows == cols].sum(-1)

    def forward_shape(self, shape):
        return torch.Size(shape[:-1]) + (_size(shape[-1]),) * 2

    def inverse_shape(self, shape):
        if len(shape) < 2 or shape[-1] != shape[-2]:
            raise ValueError(f"expected square matrices, got shape {tuple(shape)}")
        d = shape[-1]
        return torch.Size(shape[:-2]) + (d * (d + 1) // 2,)


class PositiveDefiniteTransform(LowerCholeskyTransform):
    r""":math:`u \in \mathbb{R}^{D(D+1)/2}` to the positive definite matrix :math:`L L^\top`, with
    :math:`L` from :class:`LowerCholeskyTransform` (its inverse: the Cholesky factor)."""

    codomain = constraints.positive_definite

    def _call(self, u: torch.Tensor) -> torch.Tensor:
        lower = super()._call(u)
        return lower @ lower.transpose(-1, -2)

    def _inverse(self, matrix: torch.Tensor) -> torch.Tensor:
        return super()._inverse(torch.linalg.cholesky(matrix))

    def log_abs_det_jacobian(self, u: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
        d = _size(u.shape[-1])
        rows, cols = torch.tril_indices(d, d, device=u.device)
        diagonal = u[..., rows == cols]  # log L_ii, i = 1..D
        powers = torch.arange(d + 1, 1, -1, dtype=u.dtype, device=u.device)  # D - i + 2
        return d * math.log(2.0) + (diagonal * powers).sum(-1)


def bijection(support: constraints.Constraint) -> Transform:
    """``biject_to(support)``, and also for positive definite (e.g. Wishart) and lower Cholesky
    supports, alone or under ``independent``."""
    base, dims = support, 0
    while isinstance(base, constraints.independent):
        dims += base.reinterpreted_batch_ndims
        base = base.base_constraint
    if isinstance(base, constraints._PositiveDefinite | constraints._PositiveSemidefinite):
        transform = PositiveDefiniteTransform()
    elif isinstance(base, constraints._LowerCholesky):
        transform = LowerCholeskyTransform()
    else:
        return biject_to(support)
    return IndependentTransform(transform, dims) if dims else transform
