"""The hub of `cardsms serve --http-processes N`: what the HTTP processes must share with the main process.

The main process owns the dispatcher, the task runner and the API's replay and flow-control state (signature
nonces, each account's request bucket). The other HTTP processes reach it over a Unix socket in the data
directory with one line per request: `A id account qps expires token` asks whether a signature nonce is fresh
(and records it) and admits the call under the account's QPS (answered `id fresh wait_ms`); `W` says work was
queued (the dispatcher wakes at once, not at its next poll). Lines, not pickles: the main process trusts no
code from the socket. A process that loses the hub answers 503 until it is restarted by the main process.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
from collections.abc import Callable
from pathlib import Path

import structlog

log = structlog.get_logger("cardsms.hub")

Admit = Callable[[str, float, int, int], tuple[bool, int]]  # (token, expires, account, qps) -> (fresh, wait ms)
MAX_LINE = 512
NO_NONCE = "-"  # in place of a nonce's token: flow control only


class HubUnavailable(Exception):
    """The main process cannot be reached (it is stopping, or gone)."""


def nonce_token(key_id: str, nonce: str) -> str:
    """A fixed-size name for an AccessKey's nonce (no spaces, whatever the caller sent)."""
    return hashlib.sha256(f"{key_id}\x00{nonce}".encode()).hexdigest()


def hub_path(data_dir: Path) -> Path:
    return data_dir / "run" / "hub.sock"


async def serve_hub(path: Path, admit: Admit, wake: Callable[[], None]) -> asyncio.Server:
    """The main process's side: answers every HTTP process's lines (see the module's text)."""

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                answer = _answer(line, admit, wake)
                if answer:
                    writer.write(answer)
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            writer.close()

    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    return await asyncio.start_unix_server(client, path=str(path), limit=MAX_LINE)


def _answer(line: bytes, admit: Admit, wake: Callable[[], None]) -> bytes:
    parts = line.split()
    if parts == [b"W"]:
        wake()
        return b""
    if len(parts) != 6 or parts[0] != b"A":
        raise ValueError("hub: a line that is neither A nor W")
    _, ident, account, qps, expires, token = parts
    fresh, wait_ms = admit(token.decode("ascii"), float(expires), int(account), int(qps))
    return b"%s %d %d\n" % (ident, fresh, wait_ms)


class HubClient:
    """An HTTP process's side: one connection, many requests in flight, answered by id."""

    def __init__(self, path: Path, timeout: float = 5.0) -> None:
        self.path = path
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[tuple[bool, int]]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._reading: asyncio.Task[None] | None = None
        self._connecting = asyncio.Lock()
        self._wake_due = False

    async def _connection(self) -> asyncio.StreamWriter:
        async with self._connecting:
            if self._writer is None or self._writer.is_closing():
                reader, self._writer = await self._connect()
                self._reading = asyncio.create_task(self._read(reader), name="hub-client")
            return self._writer

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """The hub's connection; while the main process starts (or restarts it), tried for `timeout` seconds."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.timeout
        while True:
            try:
                return await asyncio.open_unix_connection(str(self.path), limit=MAX_LINE)
            except OSError as exc:
                if loop.time() > give_up:
                    raise HubUnavailable(f"the main process's hub at {self.path}: {exc}") from None
                await asyncio.sleep(0.05)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while line := await reader.readline():
                ident, fresh, wait_ms = line.split()
                future = self._pending.pop(int(ident), None)
                if future is not None and not future.done():
                    future.set_result((fresh == b"1", int(wait_ms)))
        except (ConnectionError, ValueError):
            pass
        finally:
            self._fail_pending()

    def _fail_pending(self) -> None:
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(HubUnavailable("the main process's hub closed the connection"))

    async def admit(self, key_id: str, nonce: str | None, expires: float, account_id: int, qps: int
                    ) -> tuple[bool, int]:
        """(the nonce was fresh, milliseconds to wait when over the account's QPS, else 0); nonce None: flow
        control only (PostgreSQL keeps the nonces in the database)."""
        writer = await self._connection()
        token = NO_NONCE if nonce is None else nonce_token(key_id, nonce)
        ident = next(self._ids)
        future = self._pending[ident] = asyncio.get_running_loop().create_future()
        writer.write(f"A {ident} {account_id} {qps} {expires:.3f} {token}\n".encode())
        try:
            async with asyncio.timeout(self.timeout):
                return await future
        except TimeoutError:
            self._pending.pop(ident, None)
            raise HubUnavailable(f"the main process's hub did not answer within {self.timeout} s") from None

    def wake(self) -> None:
        """Tell the main process's dispatcher that work was queued (best effort: it also polls); the wakes of
        one turn of the loop are one line."""
        if not self._wake_due:
            self._wake_due = True
            asyncio.get_running_loop().call_soon(self._send_wake)

    def _send_wake(self) -> None:
        self._wake_due = False
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(b"W\n")

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._reading is not None:
            self._reading.cancel()
            with contextlib.suppress(BaseException):
                await self._reading
