"""A permutation-invariant embedding net over iid trials that masks out missing trials."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .embedding_inputs import Shape, checked_shape, split_batch
from .mlp import MLP

__all__ = ["DeepSet"]


class DeepSet(nn.Module):
    r"""A permutation-invariant embedding of iid trials (Zaheer et al. 2017),

    .. math:: f(x_{1:N}) = \rho\Big(\tfrac{1}{n} \sum_{i} m_i\, \phi(x_i),\ \log(1 + n)\Big),
        \qquad n = \sum_i m_i,

    where :math:`m_i = 0` masks out a missing trial (one with a NaN or inf entry, or flagged by
    the missingness indicator) and :math:`m_i = 1` otherwise; ``pooling="sum"`` drops the
    :math:`1/n`. The count :math:`\log(1 + n)` (``count_feature=True``) lets :math:`\rho`
    know how many trials were seen, which sets the posterior's width and is lost by mean
    pooling. A variable number of trials is thus passed as a fixed-size array padded with NaN.
    The output is exactly invariant to permuting the trials (up to float rounding of the sum).

    Inside :class:`~pyro_lfi.NeuralPosterior`, data with NaN trials need
    ``NeuralPosterior(..., missing="impute")`` (otherwise such simulations are dropped) and
    ``DeepSet(..., missing_indicator=True)``. Note that the guide z-scores each entry of the
    observation with its own statistics, so the guide as a whole is only approximately
    invariant (the statistics of iid trials differ by sampling noise only).

    :param input_shape: shape of one observation: ``N``, ``(N,)`` (one number per trial) or
        ``(N, *trial_shape)``. ``N`` may be ``None``: any number of trials is then accepted.
    :param out_features: output width.
    :param trial_features: width of :math:`\phi`'s output.
    :param phi_hidden: hidden widths of the default :math:`\phi` (an :class:`MLP`).
    :param rho_hidden: hidden widths of :math:`\rho` (an :class:`MLP`).
    :param pooling: ``"mean"`` or ``"sum"``.
    :param count_feature: give :math:`\rho` the number of (unmasked) trials, as
        :math:`\log(1 + n)`.
    :param trial_net: a module to use as :math:`\phi` instead of the MLP, mapping
        ``[n, *trial_shape]`` to ``[n, k]`` (e.g. an :class:`RNNEmbedding` for trials that are
        time series); ``k`` is read from its ``out_features`` or from a forward pass.
    :param activation: activation class of the default MLPs.
    :param missing_indicator: accept ``[*batch, 2, N, *trial_shape]`` from
        :class:`~pyro_lfi.nn.MissingFeatures`; trials with any flagged entry are masked out.
    """

    def __init__(
        self,
        input_shape: Shape,
        out_features: int,
        trial_features: int = 32,
        phi_hidden: Sequence[int] = (64, 64),
        rho_hidden: Sequence[int] = (64,),
        pooling: str = "mean",
        count_feature: bool = True,
        trial_net: nn.Module | None = None,
        activation: type[nn.Module] = nn.ReLU,
        missing_indicator: bool = False,
    ) -> None:
        super().__init__()
        if pooling not in ("mean", "sum"):
            raise ValueError(f"DeepSet: pooling must be 'mean' or 'sum', got {pooling!r}")
        shape = checked_shape(input_shape, "DeepSet", tuple(range(1, 8)))
        trial_shape = shape[1:]
        if any(s is None for s in trial_shape):
            raise ValueError(f"DeepSet: only the number of trials may be None, got input_shape={shape}")
        self.input_shape = shape
        self.trial_shape = torch.Size(trial_shape)
        self.out_features = out_features
        self.pooling = pooling
        self.count_feature = count_feature
        self.missing_indicator = missing_indicator
        names = ("N", "F") if len(shape) == 2 else ("N", *(f"D{i}" for i in range(1, len(shape))))
        self._accepted = (2, *shape) if missing_indicator else shape
        self._names = ("2", *names) if missing_indicator else names
        if trial_net is None:
            trial_net = MLP(self.trial_shape if trial_shape else 1, trial_features, phi_hidden, activation)
            self._scalar_trials = not trial_shape
        else:
            self._scalar_trials = False
            trial_features = getattr(trial_net, "out_features", None)
            if not isinstance(trial_features, int):
                with torch.no_grad():
                    trial_features = trial_net(torch.zeros((2, *self.trial_shape))).shape[-1]
        self.phi = trial_net
        self.rho = MLP(trial_features + int(count_feature), out_features, rho_hidden, activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, flat = split_batch(x, self._accepted, self._names, "DeepSet")
        values, flags = (flat[:, 0], flat[:, 1] != 0) if self.missing_indicator else (flat, ~torch.isfinite(flat))
        trial_dims = tuple(range(2, values.dim()))  # [n, N, *trial_shape]
        keep = ~(flags.any(dim=trial_dims) if trial_dims else flags)
        n, trials = keep.shape
        values = torch.where(keep.reshape(keep.shape + (1,) * len(self.trial_shape)), values, 0.0)
        trials_flat = values.reshape((n * trials, *self.trial_shape))
        if self._scalar_trials:
            trials_flat = trials_flat.unsqueeze(-1)
        phi = self.phi(trials_flat).reshape(n, trials, -1)
        weights = keep.to(phi.dtype)
        pooled = (weights.unsqueeze(-1) * phi).sum(1)
        count = weights.sum(1, keepdim=True)
        if self.pooling == "mean":
            pooled = pooled / count.clamp_min(1.0)
        if self.count_feature:
            pooled = torch.cat([pooled, torch.log1p(count)], dim=-1)
        return self.rho(pooled).reshape(batch + (self.out_features,))
