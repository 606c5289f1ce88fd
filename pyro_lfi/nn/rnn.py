"""A recurrent embedding net over a time series (time first, channels last)."""

from __future__ import annotations

import torch
from torch import nn

from .embedding_inputs import Shape, choose, series_layout, split_batch, to_time_channels

__all__ = ["RNNEmbedding"]


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
    ) -> None:
        super().__init__()
        recurrent_layer = choose("RNNEmbedding", "cell", cell, {"gru": nn.GRU, "lstm": nn.LSTM})
        shape, accepted, names, channels = series_layout(input_shape, missing_indicator, "RNNEmbedding")
        self.input_shape = shape
        self.out_features = out_features
        self.missing_indicator = missing_indicator
        self.cell = cell
        self._accepted, self._names = accepted, names
        self.rnn = recurrent_layer(channels, hidden_size, num_layers=num_layers, batch_first=True, dropout=dropout)
        self.head = nn.Linear(hidden_size, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, flat = split_batch(x, self._accepted, self._names, "RNNEmbedding")
        series = to_time_channels(flat, len(self.input_shape), self.missing_indicator)  # [n, T, C]
        _, state = self.rnn(series)
        h = state[0] if self.cell == "lstm" else state  # [num_layers, n, hidden]
        return self.head(h[-1]).reshape(batch + (self.out_features,))
