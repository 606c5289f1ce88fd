r"""A conditional density of mixed discrete and continuous data, in the spirit of MNLE (Boelts et
al. 2022): the discrete columns autoregressively by categorical networks, the continuous ones by
a flow given the context and the discrete values,

.. math:: q(x \mid c) = \prod_{j \in \mathcal{D}} \mathrm{Cat}\bigl(x_j \mid
    \pi_j(c, x_{\mathcal{D}, <j})\bigr)\; q_\text{flow}(x_\mathcal{C} \mid c, x_\mathcal{D}).

Each discrete column takes the integers ``low[j] .. high[j]`` (a probability mass; with no
continuous column the whole density is one). Used by :class:`~pyro_lfi.NeuralLikelihood` with
``estimator="mnle"``, which reads the discrete columns and their ranges from the training set.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.distributions import Categorical, Distribution, constraints

from .estimator import ConditionalDensityEstimator
from .flows import Flow
from .mlp import MLP

__all__ = ["MixedDensityEstimator", "MixedDistribution", "discrete_layout", "has_integer_column"]


def integer_columns(x: torch.Tensor) -> torch.Tensor:
    """Which columns of ``x`` ``[n, D]`` hold only integers (rows with a non-finite entry left out)."""
    finite = x[torch.isfinite(x).all(-1)]
    return (finite == finite.round()).all(0) if len(finite) else torch.zeros(x.shape[-1], dtype=torch.bool)


def has_integer_column(x: torch.Tensor) -> bool:
    """Whether some column of ``x`` ``[n, D]`` holds only integers (counts, choices)."""
    return bool(integer_columns(x).any())


def discrete_layout(x: torch.Tensor, discrete: Sequence[int] | None = None, margin: float = 0.0) -> dict:
    """The discrete columns of training outputs ``x`` ``[n, D]`` and their integer ranges.

    :param discrete: the discrete columns; ``None``: every column whose values are all integers
        (all of them for an integer dtype).
    :param margin: with ``margin > 0``, each range reaches this fraction of its width (at
        least 1) beyond the largest training value, so that an observation a little above every
        simulation is scored (by a network that never saw such a value). By default the range
        is what the simulations gave, and a value outside it is refused with a clear error.
    """
    finite = x[torch.isfinite(x).all(-1)]
    if discrete is None:
        discrete = integer_columns(x).nonzero().flatten().tolist()
    discrete = sorted(int(j) for j in discrete)
    if not discrete:
        raise ValueError("estimator='mnle' found no discrete column (integer values) in the training outputs")
    if not all(0 <= j < x.shape[-1] for j in discrete):
        raise ValueError(f"discrete columns {discrete} are out of range for outputs of {x.shape[-1]} columns")
    column = finite[:, discrete]
    if (column != column.round()).any():
        raise ValueError(f"the discrete columns {discrete} hold non-integer training values")
    low, high = column.min(0).values, column.max(0).values
    if margin > 0:
        high = high + torch.clamp(torch.ceil(margin * (high - low)), min=1.0)
    return {"discrete": discrete, "low": [int(v) for v in low], "high": [int(v) for v in high]}


class MixedDensityEstimator(ConditionalDensityEstimator):
    r""":math:`q(x \mid c)` of ``features`` columns, those in ``discrete`` integers in
    ``[low, high]``, the others real.

    :param hidden_features: widths of each categorical network's hidden layers.
    :param flow: ``"nsf"`` or ``"maf"`` for the continuous columns; ``flow_kwargs`` go to
        :class:`~pyro_lfi.nn.Flow`.
    """

    def __init__(
        self, features: int, context: int, discrete: Sequence[int], low: Sequence[int], high: Sequence[int],
        hidden_features: Sequence[int] = (64, 64), flow: str = "nsf", **flow_kwargs,
    ):
        super().__init__(features, context)
        if not (len(discrete) == len(low) == len(high)) or any(h < lo for lo, h in zip(low, high)):
            raise ValueError(f"discrete columns {list(discrete)} need one range low <= high each, got {low}, {high}")
        self.discrete = list(discrete)
        self.continuous = [j for j in range(features) if j not in set(self.discrete)]
        self.register_buffer("low", torch.tensor(list(low), dtype=torch.get_default_dtype()))
        self.register_buffer("high", torch.tensor(list(high), dtype=torch.get_default_dtype()))
        self.categoricals = nn.ModuleList(
            MLP(context + j, h - lo + 1, hidden_features) for j, (lo, h) in enumerate(zip(low, high))
        )
        self.flow = (
            Flow(len(self.continuous), context + len(self.discrete), kind=flow, hidden_features=hidden_features,
                 **flow_kwargs) if self.continuous else None
        )

    def fit_standardization(self, x: torch.Tensor) -> None:
        super().fit_standardization(x)
        if self.flow is not None:
            self.flow.fit_standardization(x[:, self.continuous])

    def forward(self, context: torch.Tensor) -> MixedDistribution:
        return MixedDistribution(self, context)

    def scaled_discrete(self, values: torch.Tensor) -> torch.Tensor:
        """Discrete values ``[*batch, k]`` (the first ``k`` discrete columns) standardized, as inputs."""
        index = self.discrete[: values.shape[-1]]
        return (values - self.standardize.mean[index]) / self.standardize.std[index]

    def categorical(self, context: torch.Tensor, previous: torch.Tensor) -> Categorical:
        """Column ``previous.shape[-1]`` of the discrete ones given the context and the ones before."""
        inputs = torch.cat([context, self.scaled_discrete(previous)], -1)
        return Categorical(logits=self.categoricals[previous.shape[-1]](inputs))

    def continuous_given(self, context: torch.Tensor, discrete: torch.Tensor) -> Distribution:
        return self.flow(torch.cat([context, self.scaled_discrete(discrete)], -1))


class MixedDistribution(Distribution):
    """:class:`MixedDensityEstimator` at a batch of contexts ``[*batch, C]``."""

    arg_constraints: dict = {}
    support = constraints.real_vector

    def __init__(self, estimator: MixedDensityEstimator, context: torch.Tensor):
        self.estimator, self.context = estimator, context
        super().__init__(context.shape[:-1], torch.Size([estimator.features]), validate_args=False)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        est = self.estimator
        batch = torch.broadcast_shapes(self.batch_shape, value.shape[:-1])
        context = self.context.expand(batch + self.context.shape[-1:])
        value = value.expand(batch + value.shape[-1:])
        discrete = value[..., est.discrete]
        index = self._category_index(discrete)
        total = torch.zeros(batch, dtype=value.dtype, device=value.device)
        for j in range(len(est.discrete)):
            total = total + est.categorical(context, discrete[..., :j]).log_prob(index[..., j])
        if est.flow is not None:
            total = total + est.continuous_given(context, discrete).log_prob(value[..., est.continuous])
        return total

    def _category_index(self, discrete: torch.Tensor) -> torch.Tensor:
        est = self.estimator
        index = discrete - est.low
        bad = (discrete != discrete.round()) | (index < 0) | (discrete > est.high)
        if bad.any():
            j = int(bad.reshape(-1, bad.shape[-1]).any(0).nonzero()[0])
            values = discrete[..., j][bad[..., j]]
            raise ValueError(
                f"column {est.discrete[j]} of the data is discrete, integers {int(est.low[j])}..{int(est.high[j])} in "
                f"training, but got {values[0].item()}: simulate the range the observation lies in"
            )
        return index.long()

    @torch.no_grad()
    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        est = self.estimator
        shape = torch.Size(sample_shape) + self.batch_shape
        context = self.context.expand(shape + self.context.shape[-1:])
        discrete = context.new_zeros(shape + (0,))
        for j in range(len(est.discrete)):
            draw = est.categorical(context, discrete).sample() + est.low[j]
            discrete = torch.cat([discrete, draw[..., None].to(context.dtype)], -1)
        out = context.new_zeros(shape + (est.features,))
        out[..., est.discrete] = discrete
        if est.flow is not None:
            out[..., est.continuous] = est.continuous_given(context, discrete).sample()
        return out
