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

from .cnn import CNNEmbedding
from .deepset import DeepSet
from .embedding_inputs import Shape as Shape  # the input-shape type, importable from here as before
from .rnn import RNNEmbedding

__all__ = ["CNNEmbedding", "DeepSet", "RNNEmbedding"]
