r"""A model V1 simple cell: a Gabor receptive field seen through white noise, as a Bernoulli GLM.

The linear-nonlinear-Bernoulli neuron of Lueckmann et al. (2017, *NeurIPS* 30, "Flexible
statistical inference for mechanistic models of neural dynamics") and of the V1 example of
Gonçalves et al. (2020, *eLife* 9:e56261, "Training deep neural density estimators to identify
mechanistic models of neural dynamics"): a sequence of :math:`T` white-noise images
:math:`s_t \in \mathbb R^{D \times D}` (pixels iid :math:`N(0, 1)`) drives a neuron that fires
in frame :math:`t` with probability

.. math::

    P(y_t = 1) = \sigma(\langle w, s_t \rangle + b), \qquad
    w(u, v) = g\, e^{-(u'^2 + v'^2) / (2 r^2)} \cos(2 \pi f u' + \varphi),

    u' = (u - x_0) \cos\vartheta + (v - y_0) \sin\vartheta, \qquad
    v' = -(u - x_0) \sin\vartheta + (v - y_0) \cos\vartheta,

on pixel coordinates :math:`u, v \in \{-(D-1)/2, \dots, (D-1)/2\}`, with :math:`\sigma` the
logistic function. The 8 parameters (:data:`PARAMETER_NAMES`) are the receptive field's centre
:math:`x_0, y_0` (pixels), orientation :math:`\vartheta \in [0, \pi)`, spatial frequency
:math:`f` (cycles per pixel), phase :math:`\varphi \in [0, 2\pi)`, envelope size :math:`r`
(pixels), gain :math:`g` and the bias :math:`b` (log-odds of a spike at a blank image).

**Observation.** The spike-triggered average :math:`\mathrm{STA} = \sum_t y_t s_t / n` and the spike
count :math:`n = \sum_t y_t` (``output="summary"``, :math:`D^2 + 1` numbers; the STA of a recording
without a spike is undefined, NaN), or the raw spike train :math:`y_{1:T}` (``output="spikes"``).
The images are fixed and known (:func:`white_noise`), so :math:`(n \cdot \mathrm{STA}, n)` is a
*sufficient* statistic: the GLM log likelihood

.. math:: \log p(y \mid \theta) = \langle w, \textstyle\sum_t y_t s_t\rangle + b\, n
    - \sum_t \log(1 + e^{\langle w, s_t \rangle + b})

depends on the spikes only through it. The posterior given the summary therefore *equals* the
posterior given the raw spikes, which NUTS samples exactly on :func:`receptive_field_likelihood`
(``baselines.mcmc(model, x=spikes, output="spikes", likelihood=...)``).

**Embedding.** For white noise, Stein's lemma gives :math:`E[y_t s_t] = E[\sigma'(\eta_t)]\, w`: the
STA is the receptive field, scaled, plus pixel noise of variance about :math:`1/n`. It is an
image, and :class:`STAEmbedding` reads it as one: two 3 x 3 convolutions (so a Gabor's local
structure is recognized wherever the centre is) and an MLP over their maps and the count, plus a
linear map of the whole observation. In a :class:`~pyro_lfi.NeuralPosterior` it replaces the
default MLP embedding, which sees 82 unrelated numbers.
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch
from torch import Tensor, nn

from ..errors import ObservationError
from ..model.simulator import Simulator

__all__ = [
    "PARAMETER_NAMES",
    "STAEmbedding",
    "gabor",
    "receptive_field_likelihood",
    "receptive_field_model",
    "receptive_field_prior",
    "receptive_field_simulator",
    "spike_triggered_average",
    "white_noise",
]

#: The latent sites of :func:`receptive_field_model`, in the simulator's argument order.
PARAMETER_NAMES = ("x0", "y0", "orientation", "frequency", "phase", "size", "gain", "bias")
_CHUNK = 2048  # parameter sets per matrix product: bounds the [chunk, T] memory


def white_noise(num_frames: int, size: int = 9, seed: int = 0) -> Tensor:
    """``[num_frames, size, size]`` white-noise images, pixels iid :math:`N(0, 1)`, from their own
    generator (the same images for the same seed on every machine's torch CPU RNG)."""
    if num_frames < 1 or size < 1:
        raise ValueError(f"white_noise needs num_frames >= 1 and size >= 1, got {num_frames} and {size}")
    return torch.randn(num_frames, size, size, generator=torch.Generator().manual_seed(seed))


def _checked_images(images: Tensor) -> Tensor:
    if not isinstance(images, Tensor) or images.dim() != 3 or images.shape[1] != images.shape[2]:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(
            f"images must be a tensor [T, D, D] of T square frames, got {shape}: "
            "make them with receptive_field.white_noise(T, D)"
        )
    return images


def gabor(x0: Tensor, y0: Tensor, orientation: Tensor, frequency: Tensor, phase: Tensor, size: Tensor,
          gain: Tensor, image_size: int) -> Tensor:
    """The receptive field :math:`w` of the module docs, ``batch + (image_size, image_size)``
    (indexed ``[v, u]``: rows are :math:`v`, columns :math:`u`), broadcast over the parameters'
    batch shape."""
    coords = torch.arange(image_size, dtype=torch.as_tensor(x0).dtype) - (image_size - 1) / 2
    params = torch.broadcast_tensors(*(torch.as_tensor(p) for p in (x0, y0, orientation, frequency, phase, size, gain)))
    x0, y0, orientation, frequency, phase, size, gain = (p[..., None, None] for p in params)
    du, dv = coords - x0, coords[:, None] - y0
    cos, sin = torch.cos(orientation), torch.sin(orientation)
    along, across = du * cos + dv * sin, -du * sin + dv * cos
    envelope = torch.exp(-(along**2 + across**2) / (2 * size**2))
    return gain * envelope * torch.cos(2 * math.pi * frequency * along + phase)


def _logits(params: tuple[Tensor, ...], images: Tensor) -> Tensor:
    """:math:`\\langle w, s_t\\rangle + b` for every frame: ``batch + (T,)``."""
    *shape_params, bias = params
    w = gabor(*shape_params, image_size=images.shape[-1])
    return (w.flatten(-2) @ images.flatten(1).T.to(w.dtype)) + torch.as_tensor(bias)[..., None]


def spike_triggered_average(spikes: Tensor, images: Tensor) -> Tensor:
    """``[..., D * D + 1]``: the STA (flattened, NaN without a spike) and the spike count, of spike
    trains ``[..., T]`` (0/1) in response to ``images [T, D, D]``."""
    images = _checked_images(images)
    if spikes.shape[-1] != images.shape[0]:
        raise ValueError(
            f"spike trains of shape {tuple(spikes.shape)} have {spikes.shape[-1]} frames, the images "
            f"{tuple(images.shape)} have {images.shape[0]} frames: pass the images the spikes responded to"
        )
    count = spikes.sum(-1, keepdim=True)
    weighted = spikes @ images.flatten(1).to(spikes.dtype)
    return torch.cat([weighted / count, count], -1)


def receptive_field_simulator(x0: Tensor, y0: Tensor, orientation: Tensor, frequency: Tensor, phase: Tensor,
                              size: Tensor, gain: Tensor, bias: Tensor, *, images: Tensor,
                              output: str = "summary") -> Tensor:
    """The simulator: parameters ``[N]`` each to the STA and count ``[N, D * D + 1]``
    (``output="summary"``) or the spike trains ``[N, T]`` (``"spikes"``), spikes drawn from torch's
    global RNG; computed in chunks of parameter sets, so long recordings fit in memory."""
    images = _checked_images(images)
    if output not in ("summary", "spikes"):
        raise ValueError(f"output must be 'summary' or 'spikes', got {output!r}")
    params = torch.broadcast_tensors(x0, y0, orientation, frequency, phase, size, gain, bias)
    results = []
    for start in range(0, max(params[0].shape[0], 1), _CHUNK):
        chunk = tuple(p[start : start + _CHUNK] for p in params)
        spikes = torch.bernoulli(torch.sigmoid(_logits(chunk, images)))
        results.append(spikes if output == "spikes" else spike_triggered_average(spikes, images))
    return torch.cat(results)


def receptive_field_prior() -> dict[str, dist.Distribution]:
    """The prior of each parameter (:data:`PARAMETER_NAMES`), for 9 x 9 images: the centre within
    2 pixels of the middle, any orientation, 0.08-0.25 cycles per pixel, any phase, an envelope of
    1-2.5 pixels, gain LogNormal(log 0.7, 0.4) and bias N(-2, 0.5) (about one spike in eight
    frames)."""
    return {
        "x0": dist.Uniform(-2.0, 2.0),
        "y0": dist.Uniform(-2.0, 2.0),
        "orientation": dist.Uniform(0.0, math.pi),
        "frequency": dist.Uniform(0.08, 0.25),
        "phase": dist.Uniform(0.0, 2 * math.pi),
        "size": dist.Uniform(1.0, 2.5),
        "gain": dist.LogNormal(math.log(0.7), 0.4),
        "bias": dist.Normal(-2.0, 0.5),
    }


def receptive_field_model(x: Tensor | None = None, *, images: Tensor, output: str = "summary") -> Tensor:
    """Pyro model: each parameter from :func:`receptive_field_prior`, then
    ``x ~ Simulator(receptive_field_simulator, *params)``: the STA and spike count
    ``[D * D + 1]`` (``output="summary"``) or the spike train ``[T]`` (``"spikes"``) in response
    to ``images [T, D, D]`` (pass them with ``functools.partial`` or as a keyword).

    >>> images = white_noise(1000)                                                   # doctest: +SKIP
    >>> model = functools.partial(receptive_field_model, images=images)               # doctest: +SKIP
    >>> sims = pyro_lfi.simulate(model, 10_000, seed=0)                              # doctest: +SKIP
    """
    images = _checked_images(images)
    if output not in ("summary", "spikes"):
        raise ValueError(f"receptive_field_model: output must be 'summary' or 'spikes', got {output!r}")
    width = images.shape[0] if output == "spikes" else images.shape[1] * images.shape[2] + 1
    if x is not None and tuple(x.shape[-1:]) != (width,):
        raise ObservationError(
            f"receptive_field_model: the observation at site 'x' has shape {tuple(x.shape)}, expected "
            f"[..., {width}] for output={output!r} and images of shape {tuple(images.shape)} "
            "(the STA's D * D pixels and the spike count, or the T frames' spikes)"
        )
    params = [pyro.sample(name, prior) for name, prior in receptive_field_prior().items()]
    simulator = Simulator(_Simulate(images, output), *params, event_shape=(width,))
    return pyro.sample("x", simulator, obs=x)


class _Simulate:
    """``receptive_field_simulator`` with its images and output bound (picklable)."""

    def __init__(self, images: Tensor, output: str):
        self.images, self.output = images, output

    def __call__(self, *params: Tensor) -> Tensor:
        return receptive_field_simulator(*params, images=self.images, output=self.output)


def receptive_field_likelihood(images: Tensor) -> dict:
    """The exact likelihood of ``receptive_field_model(..., output="spikes")``'s site ``"x"``, for
    :func:`pyro_lfi.baselines.mcmc` / :func:`~pyro_lfi.baselines.tractable`:
    ``{"x": params -> Bernoulli(logits=<w, s_t> + b).to_event(1)}`` over the T frames."""
    images = _checked_images(images)
    return {"x": _Bernoulli(images)}


class _Bernoulli:
    """The GLM's spike-train distribution at given parameters (picklable)."""

    def __init__(self, images: Tensor):
        self.images = images

    def __call__(self, *params: Tensor) -> dist.Distribution:
        return dist.Bernoulli(logits=_logits(params, self.images)).to_event(1)


class STAEmbedding(nn.Module):
    """An embedding net of the (standardized) observation ``[*batch, D * D + 1]``, the STA's pixels
    then the spike count: ``Conv2d(3 x 3, "same")`` -> ELU blocks over the STA as a ``D x D``
    image, then an MLP (one hidden layer of ``hidden_features``, ELU) of the flattened maps and
    the count, plus a linear map of the whole observation (as :class:`~pyro_lfi.nn.SkipMLP`).

    :param image_size: :math:`D`.
    :param out_features: output width.
    :param channels: output channels of each convolution.
    :param hidden_features: width of the MLP's hidden layer.
    """

    def __init__(self, image_size: int = 9, out_features: int = 32, channels: tuple[int, ...] = (16, 32),
                 hidden_features: int = 64):
        super().__init__()
        layers, width = [], 1
        for c in channels:
            layers += [nn.Conv2d(width, c, 3, padding=1), nn.ELU()]
            width = c
        self.conv = nn.Sequential(*layers)
        self.image_size, self.out_features = image_size, out_features
        pixels = image_size * image_size
        self.head = nn.Sequential(nn.Linear(width * pixels + 1, hidden_features), nn.ELU(),
                                  nn.Linear(hidden_features, out_features))
        self.linear = nn.Linear(pixels + 1, out_features)

    def forward(self, x: Tensor) -> Tensor:
        d = self.image_size
        if x.shape[-1] != d * d + 1:
            raise ValueError(
                f"STAEmbedding(image_size={d}) reads [*batch, {d * d + 1}] (the STA's pixels and the count), "
                f"got {tuple(x.shape)}"
            )
        flat = x.reshape(-1, d * d + 1)
        maps = self.conv(flat[:, :-1].reshape(-1, 1, d, d)).flatten(1)
        out = self.head(torch.cat([maps, flat[:, -1:]], -1)) + self.linear(flat)
        return out.reshape(*x.shape[:-1], self.out_features)
