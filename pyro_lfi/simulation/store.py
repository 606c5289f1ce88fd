"""A simulation campaign on disk: one NetCDF file per finished batch, written atomically.

Layout of a store directory::

    campaign.json          what the campaign is: checked on resume
    campaign.lock          held by the one process running the campaign
    chunk-000000000.nc     rows of batch 0 (xarray Dataset, see Simulations.to_xarray)
    chunk-000000001.nc     ...
    quarantine/            batch files that could not be read back, kept for inspection

(Batch files are named ``chunk-*`` since the first stores; the name stays so they resume.)

The guarantees:

* **Atomic batches.** A batch file is written under a temporary name, flushed to disk and
  renamed: a file with the final name is complete, so a campaign killed at any moment loses at
  most the batches that were running.
* **The same campaign, or none.** ``campaign.json`` records the seed, the batching and the sites
  and shapes (which must match to resume at all) and a fingerprint of what makes the rows: the
  model's and each simulator's code, the prior's parameters, the model's arguments and any fixed
  parameters. Resuming with a different fingerprint is refused with the differences listed
  (floats compared with a tolerance, so a store moves between machines), unless
  ``force=True`` says the change does not alter the rows.
* **One process at a time.** The lock names the process that holds it; a lock left by a
  process that died is taken over.
* **Damage is repaired.** A batch file that cannot be read back (truncated, corrupted) is moved to
  ``quarantine/`` and its batch simulated again: every batch's seed is derived from the
  campaign seed, so the campaign ends with the same rows.

The store opens without pyro_lfi::

    xr.open_mfdataset("store/chunk-*.nc", combine="nested", concat_dim="simulation")
"""

from __future__ import annotations

import json
import os
import re
import socket
import tempfile
import time
from pathlib import Path

from ..errors import CampaignMismatchError, StoreInUseError
from .fingerprint import differences
from .simulations import Simulations

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ["CampaignMismatchError", "SimulationStore", "StoreInUseError"]

_BATCH_FILE = re.compile(r"^chunk-(\d{9})\.nc$")


class SimulationStore:
    """The batch files of one campaign in the directory ``path``; a context manager that holds
    the store's lock while it is open.

    :param path: the store directory (created if missing).
    :param manifest: ``{"campaign": ..., "fingerprint": ...}``, JSON-serializable; an existing
        store must have the same ``campaign`` and (unless ``force``) the same ``fingerprint``.
    :param force: resume even though the fingerprint differs.
    """

    MANIFEST = "campaign.json"
    LOCK = "campaign.lock"
    QUARANTINE = "quarantine"

    def __init__(self, path: str | os.PathLike, manifest: dict, force: bool = False):
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"store={str(path)!r} is a file; give a directory path for the campaign store")
        self.manifest = json.loads(json.dumps(manifest))  # normalize tuples to lists
        self.force = force
        self._lock_fd: int | None = None

    def __enter__(self) -> SimulationStore:
        self.path.mkdir(parents=True, exist_ok=True)
        self._acquire()
        try:
            self._check_manifest()
            for stale in self.path.glob(".chunk-*.tmp"):  # left by a campaign killed while writing
                stale.unlink(missing_ok=True)
        except BaseException:
            self._release()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._release()

    @classmethod
    def read_manifest(cls, path: str | os.PathLike) -> dict | None:
        """The campaign description stored at ``path``, or ``None`` if there is none yet."""
        file = Path(path) / cls.MANIFEST
        return json.loads(file.read_text()) if file.exists() else None

    def completed(self) -> list[int]:
        """Indices of the batches already on disk."""
        return sorted(int(m.group(1)) for f in os.listdir(self.path) if (m := _BATCH_FILE.match(f)))

    def batch_path(self, batch: int) -> Path:
        return self.path / f"chunk-{batch:09d}.nc"

    def write(self, batch: int, sims: Simulations) -> None:
        """Write the rows of a batch atomically."""
        self._write_atomic(self.batch_path(batch), lambda p: sims.to_xarray().to_netcdf(p))

    def read(self, batch: int) -> Simulations:
        return Simulations.load(self.batch_path(batch))

    def quarantine(self, batch: int) -> Path:
        """Move a batch's file out of the store (to be simulated again); its new path."""
        folder = self.path / self.QUARANTINE
        folder.mkdir(exist_ok=True)
        target = folder / f"{self.batch_path(batch).name}.{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        os.replace(self.batch_path(batch), target)
        return target

    # -- the manifest ---------------------------------------------------------------------------

    def _check_manifest(self) -> None:
        stored = self.read_manifest(self.path)
        if stored is None:
            self._write_atomic(self.path / self.MANIFEST, lambda p: p.write_text(json.dumps(self.manifest, indent=1)))
            return
        if "campaign" not in stored:
            raise CampaignMismatchError(
                f"the store {str(self.path)!r} was written by an older version of pyro_lfi without a campaign "
                "fingerprint: load its batch files with xarray, or give a new store path"
            )
        hard = differences(stored["campaign"], self.manifest["campaign"])
        if hard:
            raise CampaignMismatchError(
                f"the store {str(self.path)!r} holds a different campaign: " + "; ".join(hard)
                + ". Re-run with the stored settings to resume, or give a new store path"
            )
        soft = differences(stored["fingerprint"], self.manifest["fingerprint"])
        if soft and not self.force:
            raise CampaignMismatchError(
                f"the store {str(self.path)!r} was made by a different model, simulator, prior or arguments, "
                "and resuming it would mix rows of both: " + "; ".join(soft[:10])
                + (f"; and {len(soft) - 10} more" if len(soft) > 10 else "")
                + ". Give a new store path, or pass force=True if the change does not alter the rows"
            )

    # -- the lock -------------------------------------------------------------------------------

    def _acquire(self) -> None:
        """Take the store's lock: an advisory ``flock``, released by the kernel when its process
        dies, so a stale lock needs no clean-up (where ``flock`` is missing, as on Windows, the
        file only records the last user)."""
        path = self.path / self.LOCK
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.read(fd, 4096).decode(errors="replace").strip() or "another process"
                os.close(fd)
                raise StoreInUseError(
                    f"the store {str(self.path)!r} is in use by {holder}: one campaign per store at a time. "
                    "Wait for it to finish, or give another store path"
                ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"process {os.getpid()} on {socket.gethostname()} since {time.ctime()}".encode())
        self._lock_fd = fd

    def _release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

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
