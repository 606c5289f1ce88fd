r"""A guide's density cut to the box of its truncated sites (see :mod:`pyro_lfi.model.sites`).

With :math:`A` the region where every truncated site lies in its interval,

.. math:: q_A(z \mid x) = \frac{q(z \mid x)\, \mathbf{1}[z \in A]}{Z(x)}, \qquad
    Z(x) = P_{q(\cdot \mid x)}(z \in A).

Draws are rejection samples of :math:`q` (accepted with probability :math:`Z(x)`). The normalizer
is estimated once per observation from :math:`n` draws of :math:`q` (from a fixed seed, so a
density is the same at every call), :math:`k` of them inside, as :math:`\hat Z = (k + 1)/(n + 1)`,
which is never zero.

Training: APT's atomic loss compares densities at one observation, where :math:`Z(x)` cancels, so
it fits :math:`q_A` exactly. The maximum-likelihood loss (NPE, TSNPE, APT's first round) fits the
untruncated :math:`q` to the rows inside :math:`A`, as sbi does; where the posterior piles up
against a bound, :math:`q` then leaks past it and the truncated density is too thin next to it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
from torch.distributions import Distribution, constraints

from ..seeding import seeded

__all__ = ["LeakageError", "TruncatedDensity"]

#: Draws of :math:`q` per observation that estimate :math:`Z(x)`, spread over a batch of observations
#: (at least :data:`MIN_NORMALIZER_DRAWS` each).
NORMALIZER_DRAWS = 100_000
MIN_NORMALIZER_DRAWS = 1_000
NORMALIZER_SEED = 0


class LeakageError(RuntimeError):
    """Almost no draws of a guide's density fall inside its truncated sites' supports."""


class TruncatedDensity(Distribution):
    r""":math:`q_A(z \mid x)`: ``base`` (batch shape ``[*batch]``, event ``[D]``) restricted to
    where ``inside(z)`` holds.

    :param base: the untruncated density :math:`q(z \mid x)`.
    :param inside: ``z [*, D] -> bool [*]``, membership of :math:`A`.
    :param max_draws_per_sample: candidates per requested draw before :class:`LeakageError`.
    """

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = False

    def __init__(
        self, base: Distribution, inside: Callable[[torch.Tensor], torch.Tensor], max_draws_per_sample: int = 1000
    ):
        self.base, self.inside, self.max_draws_per_sample = base, inside, max_draws_per_sample
        super().__init__(base.batch_shape, base.event_shape, validate_args=False)

    @functools.cached_property
    def log_normalizer(self) -> torch.Tensor:
        r""":math:`\log \hat Z(x)`, shape ``batch_shape``."""
        n = max(MIN_NORMALIZER_DRAWS, NORMALIZER_DRAWS // max(self.batch_shape.numel(), 1))
        with torch.no_grad(), seeded(NORMALIZER_SEED):  # the same density at every call; the caller's RNG untouched
            accepted = sum(self.inside(self.base.sample((m,))).sum(0) for m in _chunks(n, self.batch_shape.numel()))
        return torch.log((accepted + 1.0) / (n + 1.0))

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        log_q = self.base.log_prob(z) - self.log_normalizer
        return torch.where(self.inside(z), log_q, -math.inf)

    @torch.no_grad()
    def sample(self, sample_shape: torch.Size | tuple = ()) -> torch.Tensor:
        """Rejection samples: draws of ``base`` outside :math:`A` are discarded, per observation."""
        sample_shape = torch.Size(sample_shape)
        n, batch = sample_shape.numel(), self.batch_shape.numel()
        d = self.event_shape.numel()
        out, count, drawn, rate = None, None, 0, 1.0
        while count is None or int(count.min()) < n:
            if drawn >= self.max_draws_per_sample * max(n, 1):
                raise LeakageError(_leakage_message(int(count.min()), n, drawn))
            missing = n if count is None else n - int(count.min())
            m = int(min(1_000_000 // max(batch, 1), max(64, 1.2 * missing / rate)))
            z = self.base.sample((m,)).reshape(m, batch, d)
            if out is None:
                out, count = z.new_empty((n, batch, d)), torch.zeros(batch, dtype=torch.long, device=z.device)
            keep = self.inside(z)  # [m, batch]
            rank = keep.long().cumsum(0) - 1 + count  # where each accepted draw goes
            take = keep & (rank < n)
            rows, cols = take.nonzero(as_tuple=True)
            out[rank[rows, cols], cols] = z[rows, cols]
            count = torch.clamp(count + keep.sum(0), max=n)
            drawn += m
            rate = max(float(keep.float().mean(0).min()), 1e-3)  # the slowest observation's
        return out.reshape(sample_shape + self.batch_shape + self.event_shape)

    def expand(self, batch_shape, _instance=None):
        return TruncatedDensity(self.base.expand(batch_shape), self.inside, self.max_draws_per_sample)


def _chunks(n: int, batch: int, limit: int = 1_000_000) -> list[int]:
    """``n`` split into draw counts of at most ``limit // batch`` (bounded memory)."""
    size = max(1, limit // max(batch, 1))
    return [min(size, n - start) for start in range(0, n, size)]


def _leakage_message(accepted: int, wanted: int, drawn: int) -> str:
    return (
        f"only {accepted} of {wanted} draws of the guide fell inside the supports of its truncated sites "
        f"after {drawn} candidates: the density has leaked out of the prior's box (too little training, or "
        "an observation far outside what the prior can produce). Train it longer, or build the guide with "
        "NeuralPosterior(..., bounded='transform')"
    )
