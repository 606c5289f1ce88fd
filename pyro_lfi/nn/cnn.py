"""A 1-D convolutional embedding net over a time series (time first, channels last)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .embedding_inputs import choose, series_layout, split_batch, to_time_channels
from .mlp import MLP

__all__ = ["CNNEmbedding"]


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
    ) -> None:
        super().__init__()
        pool_layer = choose("CNNEmbedding", "pooling", pooling, {"max": nn.MaxPool1d, "avg": nn.AvgPool1d})
        shape, accepted, names, in_channels = series_layout(input_shape, missing_indicator, "CNNEmbedding")
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
            blocks += [nn.Conv1d(in_channels, c, kernel_size, padding="same"), activation(), pool_layer(pool_size)]
            in_channels, length = c, length // pool_size
        self.conv = nn.Sequential(*blocks)
        self.head = MLP(in_channels * length, out_features, hidden_features, activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, flat = split_batch(x, self._accepted, self._names, "CNNEmbedding")
        series = to_time_channels(flat, len(self.input_shape), self.missing_indicator)  # [n, T, C]
        maps = self.conv(series.transpose(-1, -2))  # [n, channels, T']
        return self.head(maps.flatten(1)).reshape(batch + (self.out_features,))
