"""Multi-layer perceptrons, the default embedding net and one with a linear shortcut."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["MLP", "SkipMLP"]


class MLP(nn.Sequential):
    """``Linear -> activation`` blocks ending in a ``Linear``; inputs are flattened from
    ``input_shape`` so that a site of any event shape can be embedded.

    :param input_shape: shape of one input (without batch dims), or its number of features.
    :param out_features: output width.
    :param hidden_features: widths of the hidden layers.
    """

    def __init__(
        self,
        input_shape: int | Sequence[int],
        out_features: int,
        hidden_features: Sequence[int] = (64, 64),
        activation: type[nn.Module] = nn.ReLU,
    ):
        shape = torch.Size([input_shape] if isinstance(input_shape, int) else input_shape)
        widths = [shape.numel(), *hidden_features]
        layers: list[nn.Module] = [nn.Flatten(-len(shape), -1)] if len(shape) != 1 else []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(a, b), activation()]
        layers.append(nn.Linear(widths[-1], out_features))
        super().__init__(*layers)
        self.input_shape = shape
        self.out_features = out_features


class SkipMLP(nn.Module):
    r"""An :class:`MLP` plus a linear map of its (flattened) input,
    :math:`e(x) = W x + b + \mathrm{MLP}(x)`: what depends linearly on the observation reaches
    the estimator without going through the hidden units, which then only learn the rest.

    :param input_shape: shape of one input (without batch dims), or its number of features.
    :param out_features: output width.
    :param mlp_options: ``hidden_features`` and ``activation`` of the :class:`MLP`.
    """

    def __init__(self, input_shape: int | Sequence[int], out_features: int, **mlp_options):
        super().__init__()
        self.mlp = MLP(input_shape, out_features, **mlp_options)
        self.linear = nn.Linear(self.mlp.input_shape.numel(), out_features)
        self.input_shape = self.mlp.input_shape
        self.out_features = out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x) + self.linear(x.flatten(-len(self.input_shape)))
