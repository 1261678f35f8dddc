"""The inbound journal: every receipt and MO message is appended to a local file the moment it
arrives, before it waits in memory for its database batch.

A connector acknowledges a deliver_sm (or CMPP_DELIVER) only after its line is written here
(delivery/connector.py), so an SMSC sends again whatever this process had not written when it died,
and the journal holds what was acknowledged but not yet in the database: a `kill -9` loses
neither. The line is written with `os.write` (the kernel's page cache), which survives the process,
not a power cut. Each process writes its own file (`<data dir>/journal/inbound-<start>-<pid>.jsonl`)
and, after each committed batch, the byte offset up to which everything is in the database. At start, the journals of
earlier processes are replayed from their offsets, then deleted. Applying a receipt twice changes
nothing, so a replay that overlaps a committed batch is harmless.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import fields
from datetime import datetime
from pathlib import Path

from cardsms.delivery.connector import Inbound

_FIELDS = [f.name for f in fields(Inbound)]


def _encode(item: Inbound) -> bytes:
    data = {name: getattr(item, name) for name in _FIELDS}
    data["at"] = item.at.isoformat()
    return (json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def _decode(line: bytes) -> Inbound | None:
    try:
        data = json.loads(line)
        data["at"] = datetime.fromisoformat(data["at"])
        return Inbound(**data)
    except (ValueError, TypeError, KeyError):
        return None  # a torn last line


class Journal:
    ROTATE_BYTES = 16 * 1024 * 1024

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._open()

    def _open(self) -> None:
        self.path = self.directory / f"inbound-{time.time_ns()}-{os.getpid()}.jsonl"
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.offset = 0

    def append(self, item: Inbound) -> int:
        """Write one item; returns the offset just past it."""
        data = _encode(item)
        os.write(self.fd, data)
        self.offset += len(data)
        return self.offset

    def committed(self, offset: int) -> None:
        """Everything up to offset is in the database; a caught-up large file is replaced by a new one."""
        if offset >= self.offset and self.offset >= self.ROTATE_BYTES:
            self.close()
            self._open()
            return
        tmp = self.path.with_suffix(".offset.tmp")
        tmp.write_text(str(offset))
        os.replace(tmp, self.path.with_suffix(".offset"))

    def close(self) -> None:
        """Close (and delete the file when everything in it is in the database)."""
        os.close(self.fd)
        marker = self.path.with_suffix(".offset")
        done = int(marker.read_text() or 0) if marker.exists() else 0
        if done >= self.offset:
            self.discard(self.path)

    def leftovers(self) -> Iterator[tuple[Path, list[Inbound]]]:
        """Unapplied items of earlier processes, file by file (oldest first)."""
        for path in sorted(self.directory.glob("inbound-*.jsonl")):
            if path == self.path:
                continue
            marker = path.with_suffix(".offset")
            start = int(marker.read_text() or 0) if marker.exists() else 0
            with path.open("rb") as fh:
                fh.seek(start)
                items = [i for i in (_decode(line) for line in fh) if i is not None]
            yield path, items

    @staticmethod
    def discard(path: Path) -> None:
        path.unlink(missing_ok=True)
        path.with_suffix(".offset").unlink(missing_ok=True)
