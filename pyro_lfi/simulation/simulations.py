"""A set of simulations: every sample site by name, one row per simulation, with its status."""

from __future__ import annotations

import enum
import os
from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["Simulations", "Status"]


class Status(enum.IntEnum):
    """Why a simulation row is (in)valid."""

    OK = 0
    NONFINITE = 1  #: an output contained NaN or inf
    EXCEPTION = 2  #: the simulator raised (or its process died)
    TIMEOUT = 3  #: the simulation ran longer than ``simulate(..., timeout=)``


class Simulations:
    """Simulated rows: ``values[name]`` has shape ``[num_simulations, *site_shape]``.

    :ivar values: every recorded site by name: latents, simulator outputs and
        ``pyro.deterministic`` sites (NaN where a failed simulation never reached them).
    :ivar latent_names: names of the latent sites (the parameters).
    :ivar observed_names: names of the simulated data sites.
    :ivar status: per-row :class:`Status` code (``int8``); rows with ``status != OK`` are kept,
        marked invalid.
    :ivar message: per-row error text ("" when OK), an object array built on first access (a
        campaign without failures never pays for a million empty strings).
    :ivar round: per-row round index (``int32``; sequential methods tag each round's proposals).
    :ivar seed: the campaign seed.
    """

    def __init__(
        self,
        values: dict[str, torch.Tensor],
        latent_names: Sequence[str],
        observed_names: Sequence[str],
        status: torch.Tensor,
        message: np.ndarray | None = None,
        round: torch.Tensor | None = None,
        seed: int | None = None,
    ):
        n = len(status)
        for name, value in values.items():
            if len(value) != n:
                raise ValueError(f"site '{name}' has {len(value)} rows, status has {n}")
        self.values = values
        self.latent_names = tuple(latent_names)
        self.observed_names = tuple(observed_names)
        self.status = torch.as_tensor(status, dtype=torch.int8)
        self._message = message
        self.round = torch.zeros(n, dtype=torch.int32) if round is None else torch.as_tensor(round, dtype=torch.int32)
        self.seed = seed

    @property
    def message(self) -> np.ndarray:
        if self._message is None:
            self._message = np.full(len(self), "", dtype=object)
        return self._message

    @message.setter
    def message(self, value: np.ndarray) -> None:
        self._message = value

    # -- access ---------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.status)

    @property
    def valid(self) -> torch.Tensor:
        """Boolean mask of rows whose simulation succeeded with finite outputs."""
        return self.status == Status.OK

    @property
    def num_valid(self) -> int:
        return int(self.valid.sum())

    @property
    def latents(self) -> dict[str, torch.Tensor]:
        return {n: self.values[n] for n in self.latent_names}

    @property
    def data(self) -> dict[str, torch.Tensor]:
        return {n: self.values[n] for n in self.observed_names}

    def __getitem__(self, index) -> torch.Tensor | Simulations:
        """``sims["theta"]`` is a site's values; ``sims[rows]`` (slice, mask, indices) a subset."""
        if isinstance(index, str):
            return self.values[index]
        rows = torch.arange(len(self))[index]
        if rows.dim() == 0:
            rows = rows.unsqueeze(0)
        return Simulations(
            {n: v[rows] for n, v in self.values.items()},
            self.latent_names,
            self.observed_names,
            self.status[rows],
            None if self._message is None else self._message[rows.numpy()],
            self.round[rows],
            self.seed,
        )

    def summary(self) -> dict[str, int]:
        """Counts of rows per status: ``ok`` always, and each failure reason that occurred."""
        counts = {s.name.lower(): int((self.status == s).sum()) for s in Status}
        return {name: count for name, count in counts.items() if count or name == "ok"}

    def nothing_to_train_on(self) -> str:
        """The message for simulations none of whose rows can be trained on: the counts per
        status and the first error recorded."""
        first = next((m for m in self.message if m), "")
        return (
            f"no valid simulations to train on: all {len(self)} rows are invalid "
            f"({self.summary()}); first error: {first or 'none recorded'}"
        )

    def __repr__(self) -> str:
        shapes = ", ".join(f"{n}: {tuple(v.shape[1:])}" for n, v in self.values.items())
        return f"Simulations({len(self)} rows, {self.num_valid} valid; {shapes})"

    # -- combining ------------------------------------------------------------------------------

    @classmethod
    def concat(cls, parts: Sequence[Simulations]) -> Simulations:
        """Rows of all ``parts`` in order; sites and names must match."""
        parts = list(parts)
        if not parts:
            raise ValueError("nothing to concatenate")
        if len(parts) == 1:
            return parts[0]
        first = parts[0]
        for p in parts[1:]:
            if set(p.values) != set(first.values) or p.latent_names != first.latent_names:
                raise ValueError(
                    f"cannot concatenate simulations of different sites: {sorted(first.values)} "
                    f"and {sorted(p.values)}"
                )
            for name in first.values:
                if p.values[name].shape[1:] != first.values[name].shape[1:]:
                    raise ValueError(
                        f"site '{name}' has shape {tuple(p.values[name].shape[1:])} in one part and "
                        f"{tuple(first.values[name].shape[1:])} in another"
                    )
        return cls(
            {n: torch.cat([p.values[n] for p in parts]) for n in first.values},
            first.latent_names,
            first.observed_names,
            torch.cat([p.status for p in parts]),
            None if all(p._message is None for p in parts) else np.concatenate([p.message for p in parts]),
            torch.cat([p.round for p in parts]),
            first.seed,
        )

    def __add__(self, other: Simulations) -> Simulations:
        return Simulations.concat([self, other])

    # -- storage --------------------------------------------------------------------------------

    def to_xarray(self):
        """An :class:`xarray.Dataset` with a ``simulation`` dim and one variable per site."""
        import xarray as xr

        data_vars = {}
        for name, value in self.values.items():
            dims = ("simulation",) + tuple(f"{name}_dim_{i}" for i in range(value.dim() - 1))
            kind = "latent" if name in self.latent_names else "observed" if name in self.observed_names else "other"
            data_vars[name] = xr.Variable(dims, value.detach().cpu().numpy(), {"role": kind})
        data_vars["status"] = xr.Variable(("simulation",), self.status.numpy().astype(np.int8))
        data_vars["message"] = xr.Variable(("simulation",), self.message.astype(str))
        data_vars["round"] = xr.Variable(("simulation",), self.round.numpy())
        attrs = {"status_codes": ", ".join(f"{s.value}={s.name}" for s in Status)}
        if self.seed is not None:
            attrs["seed"] = int(self.seed)
        return xr.Dataset(data_vars, attrs=attrs)

    @classmethod
    def from_xarray(cls, ds) -> Simulations:
        sites = [n for n in ds.data_vars if n not in ("status", "message", "round")]
        values = {n: torch.as_tensor(ds[n].values) for n in sites}
        latents = tuple(n for n in sites if ds[n].attrs.get("role") == "latent")
        observed = tuple(n for n in sites if ds[n].attrs.get("role") == "observed")
        seed = ds.attrs.get("seed")
        return cls(
            values,
            latents,
            observed,
            torch.as_tensor(ds["status"].values.astype(np.int8)),
            ds["message"].values.astype(object),
            torch.as_tensor(ds["round"].values.astype(np.int32)),
            None if seed is None else int(seed),
        )

    def save(self, path: str | os.PathLike) -> None:
        """Write to a NetCDF file (readable with ``xarray.open_dataset``, no pyro_lfi needed)."""
        self.to_xarray().to_netcdf(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Simulations:
        import xarray as xr

        with xr.open_dataset(path) as ds:
            return cls.from_xarray(ds.load())

