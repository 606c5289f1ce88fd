r"""Embedding nets that learn summary features of structured observations.

Each maps an observation ``[*batch, *input_shape]`` (any number of leading batch dims, or none)
to features ``[*batch, out_features]``, and can be passed as ``embedding_net=`` of
:class:`~pyro_lfi.NeuralPosterior`, which trains it jointly with the density estimator
(Lueckmann et al. 2017; Greenberg et al. 2019):

- :class:`RNNEmbedding`: a GRU (or LSTM) over a time series; the features are a linear map of
  the final hidden state.
- :class:`CNNEmbedding`: 1-D convolution and pooling blocks over a time series, then an MLP.
- :class:`DeepSet`: a permutation-invariant net over iid trials (Zaheer et al. 2017),
  :math:`\rho\big(\operatorname{pool}_i \phi(x_i)\big)`, that masks out missing (NaN) trials.

Conventions. Time series are **time first, channels last**: one observation has shape ``(T,)``
(one channel) or ``(T, C)``, as a simulator usually returns them, for both the recurrent and
the convolutional net, so that one can be swapped for the other. Iid trials have shape
``(N,)`` (one number per trial) or ``(N, *trial_shape)``.

Missing entries. With ``NeuralPosterior(..., missing="impute")`` the embedding net receives
``[*batch, 2, *x_shape]`` from :class:`~pyro_lfi.nn.MissingFeatures` (the observation with
learned values in place of missing entries, and the missingness indicator): construct the net
with ``missing_indicator=True`` to accept that layout. The recurrent and convolutional nets
then read the indicator as extra channels; the DeepSet drops every trial with a missing entry
from its pooling, which is how it handles a variable number of trials padded with NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .mlp import MLP

__all__ = ["CNNEmbedding", "DeepSet", "RNNEmbedding"]

Shape = int | Sequence[int | None]


def _as_shape(input_shape: Shape, name: str, allowed: tuple[int, ...]) -> tuple[int | None, ...]:
    shape = (input_shape,) if isinstance(input_shape, int) or input_shape is None else tuple(input_shape)
    if len(shape) not in allowed:
        raise ValueError(f"{name}: input_shape must have {' or '.join(map(str, allowed))} dims, got {shape}")
    for size in shape:
        if size is not None and (not isinstance(size, int) or size < 1):
            raise ValueError(f"{name}: input_shape must hold positive ints, got {shape}")
    return shape


def _describe(shape: Sequence[int | None], names: Sequence[str]) -> str:
    dims = (n if s is None or n == str(s) else f"{n}={s}" for n, s in zip(names, shape))
    return "[*batch, " + ", ".join(dims) + "]"


def _split_batch(
    x: torch.Tensor, shape: Sequence[int | None], names: Sequence[str], owner: str
) -> tuple[torch.Size, torch.Tensor]:
    """``(batch_shape, x reshaped to [prod(batch), *event])``; raises a ``ValueError`` naming the
    expected shape unless ``x`` ends in ``shape`` (``None``: any size)."""
    k = len(shape)
    event = tuple(x.shape[x.dim() - k :]) if x.dim() >= k else None
    if event is None or any(s is not None and s != e for s, e in zip(shape, event)):
        raise ValueError(f"{owner} expects input of shape {_describe(shape, names)}, got {tuple(x.shape)}")
    if any(e == 0 for e in event):
        raise ValueError(f"{owner} got an empty input of shape {tuple(x.shape)}")
    batch = x.shape[: x.dim() - k]
    return batch, x.reshape((-1, *event))


def _series_layout(
    input_shape: Shape, missing_indicator: bool, owner: str
) -> tuple[tuple[int | None, ...], tuple[int | None, ...], tuple[str, ...], int]:
    """The accepted input shape of a time-series net, the names of its dims, and the number of
    channels the net itself sees."""
    shape = _as_shape(input_shape, owner, (1, 2))
    names = ("T",) if len(shape) == 1 else ("T", "C")
    channels = 1 if len(shape) == 1 else shape[1]
    if channels is None:
        raise ValueError(f"{owner}: the number of channels must be given, got input_shape={shape}")
    if missing_indicator:
        return shape, (2, *shape), ("2", *names), 2 * channels
    return shape, shape, names, channels


def _to_time_channels(x: torch.Tensor, series_dims: int, missing_indicator: bool) -> torch.Tensor:
    """``[n, (2,) T, (C,)] -> [n, T, C']``: the indicator (if any) becomes extra channels."""
    if missing_indicator:
        x = x if series_dims == 2 else x.unsqueeze(-1)  # [n, 2, T, C]
        return torch.cat([x[:, 0], x[:, 1]], dim=-1)
    return x if series_dims == 2 else x.unsqueeze(-1)


class RNNEmbedding(nn.Module):
    r"""A recurrent net over a time series; the features are a linear map of its final hidden
    state,

    .. math:: h_t = \mathrm{GRU}(h_{t-1}, x_t),\quad t = 1..T, \qquad f(x) = W h_T + b,

    (of the last layer's state, when ``num_layers > 1``), so that the net can learn summaries
    of voltage traces and other raw series (Lueckmann et al. 2017).

    :param input_shape: shape of one series: ``T``, ``(T,)`` or ``(T, C)`` (time first,
        ``C`` channels). ``T`` may be ``None``: series of any length are then accepted.
    :param out_features: output width.
    :param hidden_size: width of the hidden state.
    :param num_layers: number of stacked recurrent layers.
    :param cell: ``"gru"`` or ``"lstm"``.
    :param dropout: dropout between stacked layers.
    :param missing_indicator: accept ``[*batch, 2, *input_shape]`` from
        :class:`~pyro_lfi.nn.MissingFeatures` (``NeuralPosterior(missing="impute")``); the
        indicator enters as extra channels.
    """

    def __init__(
        self,
        input_shape: Shape,
        out_features: int,
        hidden_size: int = 64,
        num_layers: int = 1,
        cell: str = "gru",
        dropout: float = 0.0,
        missing_indicator: bool = False,
    ):
        super().__init__()
        cells = {"gru": nn.GRU, "lstm": nn.LSTM}
        if cell not in cells:
            raise ValueError(f"RNNEmbedding: cell must be one of {sorted(cells)}, got {cell!r}")
        shape, accepted, names, channels = _series_layout(input_shape, missing_indicator, "RNNEmbedding")
        self.input_shape = shape
        self.out_features = out_features
        self.missing_indicator = missing_indicator
        self.cell = cell
        self._accepted, self._names = accepted, names
        self.rnn = cells[cell](channels, hidden_size, num_layers=num_layers, batch_first=True, dropout=dropout)
        self.head = nn.Linear(hidden_size, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, flat = _split_batch(x, self._accepted, self._names, "RNNEmbedding")
        series = _to_time_channels(flat, len(self.input_shape), self.missing_indicator)  # [n, T, C]
        _, state = self.rnn(series)
        h = state[0] if self.cell == "lstm" else state  # [num_layers, n, hidden]
        return self.head(h[-1]).reshape(batch + (self.out_features,))


class CNNEmbedding(nn.Module):
    r"""A 1-D convolutional net over a time series: blocks of ``Conv1d`` (stride 1, "same"
    padding) -> activation -> ``MaxPool1d`` (or ``AvgPool1d``), then the flattened feature maps go through an
    :class:`~pyro_lfi.nn.MLP`. Each block divides the length by ``pool_size`` (rounding down),
    so the features keep coarse timing information; the length must be fixed.

    :param input_shape: shape of one series: ``T``, ``(T,)`` or ``(T, C)`` (time first,
        ``C`` channels, like :class:`RNNEmbedding`; the net transposes to ``Conv1d``'s
        channels-first layout itself).
    :param out_features: output width.
    :param channels: output channels of each convolution block.
    :param kernel_size: width of every convolution kernel.
    :param pool_size: width (and stride) of every pooling window.
    :param pooling: ``"max"`` (keeps sharp events such as spikes) or ``"avg"`` (keeps sums,
        e.g. of a signal's level) pooling.
    :param hidden_features: widths of the hidden layers of the final MLP.
    :param activation: activation class used after each convolution and in the MLP.
    :param missing_indicator: accept ``[*batch, 2, *input_shape]`` from
        :class:`~pyro_lfi.nn.MissingFeatures`; the indicator enters as extra channels.
    """

    def __init__(
        self,
        input_shape: int | Sequence[int],
        out_features: int,
        channels: Sequence[int] = (16, 32),
        kernel_size: int = 5,
        pool_size: int = 2,
        pooling: str = "max",
        hidden_features: Sequence[int] = (64,),
        activation: type[nn.Module] = nn.ReLU,
        missing_indicator: bool = False,
    ):
        super().__init__()
        pools = {"max": nn.MaxPool1d, "avg": nn.AvgPool1d}
        if pooling not in pools:
            raise ValueError(f"CNNEmbedding: pooling must be one of {sorted(pools)}, got {pooling!r}")
        shape, accepted, names, in_channels = _series_layout(input_shape, missing_indicator, "CNNEmbedding")
        if shape[0] is None:
            raise ValueError("CNNEmbedding: the series length T must be given (the final MLP depends on it)")
        length = shape[0]
        if length // pool_size ** len(channels) < 1:
            raise ValueError(
                f"CNNEmbedding: a series of length {length} is too short for {len(channels)} pooling "
                f"blocks of size {pool_size}; use fewer channels entries or a smaller pool_size"
            )
        self.input_shape = shape
        self.out_features = out_features
        self.missing_indicator = missing_indicator
        self._accepted, self._names = accepted, names
        blocks: list[nn.Module] = []
        for c in channels:
            blocks += [nn.Conv1d(in_channels, c, kernel_size, padding="same"), activation(), pools[pooling](pool_size)]
            in_channels, length = c, length // pool_size
        self.conv = nn.Sequential(*blocks)
        self.head = MLP(in_channels * length, out_features, hidden_features, activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, flat = _split_batch(x, self._accepted, self._names, "CNNEmbedding")
        series = _to_time_channels(flat, len(self.input_shape), self.missing_indicator)  # [n, T, C]
        maps = self.conv(series.transpose(-1, -2))  # [n, channels, T']
        return self.head(maps.flatten(1)).reshape(batch + (self.out_features,))


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
    ):
        super().__init__()
        if pooling not in ("mean", "sum"):
            raise ValueError(f"DeepSet: pooling must be 'mean' or 'sum', got {pooling!r}")
        shape = _as_shape(input_shape, "DeepSet", tuple(range(1, 8)))
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
        batch, flat = _split_batch(x, self._accepted, self._names, "DeepSet")
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
