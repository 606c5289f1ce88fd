r"""Where a learned likelihood or ratio was trained, and the check that a model does not take it
elsewhere.

An estimator of a Simulator site is fitted where its training simulations put the site's
parameters :math:`\psi`; beyond them a likelihood :math:`q(x \mid \psi)` extrapolates, and a
ratio :math:`r(x, \psi) \approx p(x \mid \psi) / p(x)` is not even defined, because its
classifier never saw a pair there. Another prior is fine as long as its :math:`\psi` stay where
the training proposal went (a narrower prior, a hierarchy whose units stay in range). The
surrogate checks this at its first call: :data:`NUM_DRAWS` draws of :math:`\psi` from the
model's prior (nothing is simulated) must lie, but for a share of :data:`TOLERANCE`, within each
coordinate's training range widened by :data:`MARGIN` of its width on either side.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from ..errors import SiteError
from ..seeding import seeded
from .inputs import flatten_params, prior_inputs

__all__ = ["MARGIN", "NUM_DRAWS", "TOLERANCE", "check_reach", "covered_range"]

#: prior draws of the check
NUM_DRAWS = 1000
#: share of the prior draws that may fall outside the widened training range
TOLERANCE = 0.02
#: how far beyond its training range (a share of the range's width) a coordinate may go
MARGIN = 0.1
#: seed of the check's prior draws (the caller's random streams are left alone)
CHECK_SEED = 0


def covered_range(psi: torch.Tensor, previous: torch.Tensor | None = None) -> torch.Tensor:
    """``[2, P]``: the least and greatest finite value of each column of ``psi`` ``[m, P]``,
    widened to cover ``previous`` (such a range) if given."""
    finite = psi[torch.isfinite(psi).all(-1)]
    span = torch.stack([finite.amin(0), finite.amax(0)]) if len(finite) else torch.full((2, psi.shape[-1]), torch.nan)
    if previous is None:
        return span
    return torch.stack([torch.fmin(span[0], previous[0]), torch.fmax(span[1], previous[1])])


def check_reach(model: Callable, estimator, args: tuple = (), kwargs: Mapping | None = None) -> None:
    """Refuse a model whose prior takes ``estimator``'s site parameters outside the range it was
    trained on (see the module docs); estimators saved without a range pass.

    :raises SiteError: naming the site, the coordinate, both ranges and the fixes."""
    trained = estimator.psi_range
    if trained is None:
        return
    with seeded(CHECK_SEED):
        params, _ = prior_inputs(model, estimator.observed, NUM_DRAWS, args, kwargs)
    psi = flatten_params(params).to(trained)
    low, high = trained
    margin = MARGIN * (high - low)
    outside = (psi < low - margin) | (psi > high + margin)
    share = outside.any(-1).float().mean().item()
    if share <= TOLERANCE:
        return
    j = int(outside.float().mean(0).argmax())
    raise SiteError(
        f"the model's prior puts {share:.0%} of the parameters of Simulator site '{estimator.observed}' outside "
        f"where its {type(estimator).__name__} was trained: parameter {j} (of the flattened {psi.shape[-1]}) was "
        f"trained on [{low[j]:.4g}, {high[j]:.4g}] and this prior reaches [{psi[:, j].min():.4g}, "
        f"{psi[:, j].max():.4g}]. A learned likelihood extrapolates there and a ratio is not defined beyond its "
        "training proposal: train it on simulations that cover this prior, or narrow the prior "
        "(surrogate(..., check_reach=False) skips this check)"
    )
