"""Media file storage. Local directory by default; an S3-compatible store implements the same calls."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path

_SAFE_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-/]{0,299}")


class MediaStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    @staticmethod
    def check_key(key: str) -> str:
        if not _SAFE_KEY.fullmatch(key) or ".." in key or "//" in key or key.endswith("/"):
            raise ValueError(f"object key {key!r} must be 1-300 of A-Z a-z 0-9 . _ - / without '..'")
        return key

    def _path(self, key: str) -> Path:
        return self.root / self.check_key(key)

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # write to a temp file and rename, so a reader never sees half a file
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)

    def put_new(self, key: str, data: bytes) -> bool:
        """Store `data` under `key` unless the key holds a file already (False then, nothing changed): the
        content-addressed copies media resources point at are written once (services/media._freeze)."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.link(tmp, path)  # atomic and exclusive: fails when the key exists
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
        return True

    def get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, ValueError):
            return None

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError, ValueError):
            self._path(key).unlink()
