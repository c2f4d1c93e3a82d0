"""A bounded, durable, ordered spool for batches the database could not take.

When TimescaleDB is unreachable the service still decides and alerts (safety
does not wait for storage) and writes each batch here instead: one file per
batch, written to a temporary name, fsynced, then renamed, so a crash leaves a
whole batch or none. Messages are acknowledged to the broker only after this.
When the spool is full the service stops acknowledging: the broker keeps the
messages (back-pressure) and the alarm says so. Replay is oldest first.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

from store import Batch


class SpoolFullError(RuntimeError):
    pass


class Spool:
    def __init__(self, folder: str | Path, max_bytes: int = 512 * 2**20) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        for stale in self.folder.glob("*.tmp"):  # a crash mid-write: never acknowledged
            stale.unlink()
        self._next = max((int(p.stem) for p in self._files()), default=0) + 1

    def _files(self) -> list[Path]:
        return sorted(self.folder.glob("*.batch"))

    @property
    def depth(self) -> int:
        """Batches waiting."""
        return len(self._files())

    @property
    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self._files())

    def put(self, batch: Batch) -> None:
        data = pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)
        if self.size_bytes + len(data) > self.max_bytes:
            raise SpoolFullError(
                f"spool {self.folder} is full ({self.max_bytes} bytes): not acknowledging, "
                "the broker holds new messages until the database returns"
            )
        final = self.folder / f"{self._next:012d}.batch"
        tmp = final.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        tmp.rename(final)
        dir_fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self._next += 1

    def oldest(self) -> tuple[Path, Batch] | None:
        files = self._files()
        if not files:
            return None
        with open(files[0], "rb") as f:
            return files[0], pickle.load(f)  # our own files, written above

    @staticmethod
    def done(path: Path) -> None:
        path.unlink()
