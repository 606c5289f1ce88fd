"""The batch conventions the ready-made simulators share: parameters ``[..., P]`` and optional
noise ``[..., *noise_shape]`` checked and flattened to one batch dim."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["flatten_batch"]


def flatten_batch(params, noise, dtype: torch.dtype | None, num_params: int, noise_shape: tuple[int, ...]
                  ) -> tuple[Tensor, Tensor | None, torch.Size]:
    """Checked ``params [..., num_params]`` and ``noise [..., *noise_shape]`` (or ``None``) as
    ``[n, num_params]`` and ``[n, *noise_shape]`` in ``dtype`` (default: that of ``params`` if
    floating), and the batch shape."""
    params = torch.as_tensor(params)
    if params.shape[-1:] != (num_params,):
        raise ValueError(f"params must have shape [..., {num_params}], got {tuple(params.shape)}")
    if dtype is None:
        dtype = params.dtype if params.is_floating_point() else torch.get_default_dtype()
    batch = params.shape[:-1]
    params = params.detach().reshape(-1, num_params).to(dtype)
    if noise is not None:
        noise = torch.as_tensor(noise)
        if noise.shape != batch + noise_shape:
            raise ValueError(f"noise must have shape {tuple(batch + noise_shape)} (batch + {noise_shape}), "
                             f"got {tuple(noise.shape)}")
        noise = noise.detach().reshape(-1, *noise_shape).to(dtype)
    return params, noise, batch


def check_run_options(output: str, outputs: tuple[str, ...], backend: str, subsample: int, steps_per_call: int) -> None:
    """The options shared by the fused simulators: ``output`` one of ``outputs``, ``backend``
    ``"auto"``, ``"inductor"`` or ``"eager"``, positive ``subsample`` and ``steps_per_call``."""
    if output not in outputs:
        raise ValueError(f"output must be {' or '.join(repr(o) for o in outputs)}, got {output!r}")
    if backend not in ("auto", "inductor", "eager"):
        raise ValueError(f"backend must be 'auto', 'inductor' or 'eager', got {backend!r}")
    if subsample < 1 or steps_per_call < 1:
        raise ValueError("subsample and steps_per_call must be positive")
