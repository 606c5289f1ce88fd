"""A simulation campaign on disk: one NetCDF file per finished chunk, written atomically.

Layout of a store directory::

    campaign.json          what the campaign is (seed, size, chunking, sites): checked on resume
    chunk-000000000.nc     rows of chunk 0 (xarray Dataset, see Simulations.to_xarray)
    chunk-000000001.nc     ...

A chunk file is written under a temporary name, flushed to disk and renamed: a file with the
final name is always complete, so a campaign killed at any moment loses at most the chunks that
were running. The store opens without pyro_lfi::

    xr.open_mfdataset("store/chunk-*.nc", combine="nested", concat_dim="simulation")
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

from .simulations import Simulations

__all__ = ["CampaignMismatchError", "SimulationStore"]

_CHUNK = re.compile(r"^chunk-(\d{9})\.nc$")


class CampaignMismatchError(ValueError):
    """Raised when a store on disk holds a different campaign than the one asked for."""


class SimulationStore:
    """The chunk files of one campaign in the directory ``path``.

    :param path: the store directory (created if missing).
    :param manifest: JSON-serializable description of the campaign; an existing store must
        have been made by a campaign with the same description.
    """

    MANIFEST = "campaign.json"

    def __init__(self, path: str | os.PathLike, manifest: dict):
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"store={str(path)!r} is a file; give a directory path for the campaign store")
        self.path.mkdir(parents=True, exist_ok=True)
        manifest = json.loads(json.dumps(manifest))  # normalize tuples to lists
        stored = self.read_manifest(self.path)
        if stored is None:
            self._write_atomic(self.path / self.MANIFEST, lambda p: p.write_text(json.dumps(manifest, indent=1)))
        elif stored != manifest:
            diff = {k: (stored.get(k), manifest.get(k)) for k in manifest.keys() | stored.keys()
                    if stored.get(k) != manifest.get(k)}
            raise CampaignMismatchError(
                f"the store {str(self.path)!r} holds a different campaign; differences (stored, asked): "
                f"{diff}. Re-run with the stored settings to resume, or give a new store path"
            )
        self.manifest = manifest
        for stale in self.path.glob(".chunk-*.tmp"):  # left by a campaign killed while writing
            stale.unlink(missing_ok=True)

    @classmethod
    def read_manifest(cls, path: str | os.PathLike) -> dict | None:
        """The campaign description stored at ``path``, or ``None`` if there is none yet."""
        file = Path(path) / cls.MANIFEST
        return json.loads(file.read_text()) if file.exists() else None

    def completed(self) -> list[int]:
        """Indices of the chunks already on disk."""
        return sorted(int(m.group(1)) for f in os.listdir(self.path) if (m := _CHUNK.match(f)))

    def chunk_path(self, chunk: int) -> Path:
        return self.path / f"chunk-{chunk:09d}.nc"

    def write(self, chunk: int, sims: Simulations) -> None:
        """Write the rows of ``chunk`` atomically."""
        self._write_atomic(self.chunk_path(chunk), lambda p: sims.to_xarray().to_netcdf(p))

    def read(self, chunk: int) -> Simulations:
        return Simulations.load(self.chunk_path(chunk))

    def _write_atomic(self, target: Path, write) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=f".{target.name}.", suffix=".tmp")
        os.close(fd)
        try:
            write(Path(tmp))
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
