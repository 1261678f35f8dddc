"""Number imports for audiences and mass tasks (SPEC.md "Mass Operations Assistant").

A file (TXT/CSV with an optional header of parameter columns, XLSX, or either zipped/gzipped; at
most 3 MB as uploaded and 500,000 numbers) is checked whole before anything is written, then
streamed into `audience_numbers` in chunks. Each chunk commits its numbers, its problem lines and
the resume point (`lines_done`) in one transaction, so an import survives a restart and never
holds the file as Python objects. Duplicates are removed by the table's unique key.
"""

from __future__ import annotations

import asyncio
import codecs
import csv
import gzip
import io
import itertools
import re
import uuid
import zipfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import IO, Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from cardsms.db.bulk import inserted_id
from cardsms.db.params import params_encoder
from cardsms.db.schema import audience_numbers, audiences, import_problems, suppressions
from cardsms.domain.errors import CardsmsError
from cardsms.domain.numbers import InvalidNumber, mainland_national
from cardsms.services import workbook as workbook_module
from cardsms.services.core import Services

MAX_NUMBERS = 500_000
MAX_FILE_BYTES = 3 * 1024 * 1024
MAX_EXPANDED_BYTES = 128 * 1024 * 1024  # a 3 MB zip bomb stops here
CHUNK = 10_000
_PARAM_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,19}")
EXAMPLE_CSV = "phone,name,code\n13800138000,Li Lei,A100\n13900139000,Han Meimei,A200\n"
EXAMPLE_TXT = "13800138000\n13900139000\n"


def _file_error(message: str) -> CardsmsError:
    return CardsmsError("InvalidFile", f"file: {message}", field="file")


class _Capped(io.RawIOBase):
    """A reader that refuses to expand past MAX_EXPANDED_BYTES."""

    def __init__(self, inner: IO[bytes]) -> None:
        self.inner, self.seen = inner, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.inner.read(len(buffer))
        self.seen += len(data)
        if self.seen > MAX_EXPANDED_BYTES:
            raise _file_error(f"expands to more than {MAX_EXPANDED_BYTES // 2**20} MB; split it")
        buffer[: len(data)] = data
        return len(data)


def _zip_member(path: Path) -> tuple[zipfile.ZipFile, zipfile.ZipInfo]:
    archive = zipfile.ZipFile(path)
    if "xl/workbook.xml" in archive.namelist():
        return archive, archive.getinfo("xl/workbook.xml")  # the file itself is an XLSX workbook
    members = [m for m in archive.infolist() if not m.is_dir() and not m.filename.startswith("__MACOSX")]
    if len(members) != 1:
        raise _file_error(f"a zip archive must hold exactly one TXT, CSV or XLSX file, found {len(members)}")
    return archive, members[0]


def _text_rows(raw: Any) -> Iterator[list[str]]:
    buffered = io.BufferedReader(_Capped(raw), 1 << 16)
    head = buffered.peek(1 << 16)[: 1 << 16]
    encoding = "utf-8-sig"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head[:-4] if len(head) >= 1 << 16 else head)
    except UnicodeDecodeError:
        encoding = "gb18030"  # Excel on Chinese Windows saves CSV as GBK
    text = io.TextIOWrapper(buffered, encoding=encoding, errors="replace", newline="")
    dialect = "excel-tab" if "\t" in head.split(b"\n", 1)[0].decode("latin-1") else "excel"
    yield from csv.reader(text, dialect)  # cells are stripped where they are used


def _is_workbook(member: zipfile.ZipInfo) -> bool:
    return member.filename == "xl/workbook.xml" or member.filename.lower().endswith(".xlsx")


def prepare_upload(path: Path) -> Path:
    """The file an import reads: an XLSX workbook (as uploaded or inside a zip) becomes a CSV file beside it,
    read in a child process with limits (services/workbook.py); other files are read as they are. The
    uploaded workbook is removed once converted."""
    with path.open("rb") as fh:
        if not fh.read(4).startswith(b"PK"):
            return path
    try:
        archive, member = _zip_member(path)
    except zipfile.BadZipFile:
        raise _file_error("it looks like a zip archive but cannot be opened") from None
    with archive:
        if not _is_workbook(member):
            return path
        workbook = path
        if member.filename != "xl/workbook.xml":  # a workbook inside a zip: out through the capped reader
            workbook = path.with_suffix(".xlsx")
            with archive.open(member) as raw, workbook.open("wb") as out:
                capped = _Capped(raw)
                while chunk := capped.read(1 << 20):
                    out.write(chunk)
    target = path.with_suffix(".csv")
    try:
        workbook_module.to_csv(workbook, target)
    except workbook_module.WorkbookError as exc:
        raise _file_error(str(exc)) from None
    finally:
        if workbook != path:
            workbook.unlink(missing_ok=True)
    path.unlink(missing_ok=True)
    return target


def iter_rows(path: Path) -> Iterator[list[str]]:
    """Every row of an import file, streamed, whatever its container (after `prepare_upload`)."""
    with path.open("rb") as fh:
        magic = fh.read(4)
    if magic.startswith(b"PK"):
        try:
            archive, member = _zip_member(path)
        except zipfile.BadZipFile:
            raise _file_error("it looks like a zip archive but cannot be opened") from None
        with archive:
            if _is_workbook(member):
                raise _file_error("an XLSX workbook is read through prepare_upload")
            with archive.open(member) as raw:
                yield from _text_rows(raw)
        return
    if magic.startswith(b"\x1f\x8b"):
        with gzip.open(path, "rb") as raw:
            try:
                yield from _text_rows(raw)
            except (OSError, EOFError) as exc:
                raise _file_error(f"the gzip stream is broken ({exc})") from None
        return
    if b"\x00" in magic:
        raise _file_error("this is not a text, CSV, XLSX, zip or gzip file")
    with path.open("rb") as raw:
        yield from _text_rows(raw)


def _header(first: list[str]) -> list[str] | None:
    """The parameter column names when the first row is a header (its first cell has no digit)."""
    if not first or any(ch.isdigit() for ch in first[0]):
        return None
    names = first[1:]
    names = [n.strip() for n in names]
    for i, name in enumerate(names, 2):
        if not _PARAM_NAME.fullmatch(name):
            raise _file_error(f"header column {i} {name[:30]!r}: parameter names are 1-20 letters, digits "
                              "or _ and start with a letter")
    if len(set(names)) != len(names):
        raise _file_error("the header names a parameter column twice")
    return names


def prescan(path: Path) -> tuple[list[str] | None, int]:
    """Check the whole file before anything is written: (parameter columns or None without a header,
    number lines)."""
    rows = iter_rows(path)
    first = next(rows, None)
    if first is None:
        raise _file_error("the file is empty")
    columns = _header(first)
    count = 0 if columns is not None else int(any(first))
    for row in rows:
        if row and any(row):
            count += 1
            if count > MAX_NUMBERS:
                raise _file_error(f"more than {MAX_NUMBERS:,} numbers; split the file")
    if count == 0:
        raise _file_error("no numbers found")
    return columns, count


def _parse_chunk(rows: Iterator[list[str]], start_line: int, columns: list[str], n: int
                 ) -> tuple[list[tuple[int, str, str | None]], list[tuple[int, str, str]], int]:
    """Up to n lines: (valid (line, phone, params)), (problems (line, raw, reason)), lines consumed."""
    good: list[tuple[int, str, str | None]] = []
    bad: list[tuple[int, str, str]] = []
    keep, problem, national = good.append, bad.append, mainland_national  # locals: this runs 500,000 times
    encode = params_encoder(columns) if columns else None
    line = start_line
    for line, row in enumerate(itertools.islice(rows, n), start_line + 1):
        if row and any(row):
            try:
                phone = national(row[0])
            except InvalidNumber as exc:
                problem((line, row[0][:200], str(exc)[:200]))
            else:
                keep((line, phone, encode(row[1:]) if encode is not None else None))
    return good, bad, line - start_line


def _insert_ignore(conn: AsyncConnection) -> Any:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(audience_numbers).on_conflict_do_nothing()


async def start_import(svc: Services, account_id: int, *, name: str, saved: bool, file_name: str,
                       data: bytes) -> int:
    """Check the file and create the audience row; `run_import` (the background runner) fills it."""
    if not data:
        raise _file_error("the file is empty")
    if len(data) > MAX_FILE_BYTES:
        raise _file_error(f"{len(data):,} bytes; an import may be at most 3 MB (compress it with zip or gzip)")
    folder = svc.settings.data_dir / "imports"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{uuid.uuid4().hex}.upload"
    path.write_bytes(data)
    try:
        path = await asyncio.to_thread(prepare_upload, path)
        columns, count = await asyncio.to_thread(prescan, path)
    except (CardsmsError, UnicodeError, csv.Error) as exc:
        path.unlink(missing_ok=True)
        if isinstance(exc, CardsmsError):
            raise
        raise _file_error(f"unreadable ({exc})") from None
    async with svc.hold_writer() as conn:
        result = await conn.execute(audiences.insert().values(
            account_id=account_id, name=name[:64], saved=saved, state="importing", file_name=file_name[:200],
            file_path=path.relative_to(svc.settings.data_dir).as_posix(), columns=columns or [],
            lines_done=0 if columns is None else 1,  # a header line counts as done: imports skip it
            total=count, valid=0, duplicates=0, invalid=0, suppressed=0, error="", created_at=svc.now()))
    svc.wake()
    return inserted_id(result)


def import_file(svc: Services, stored: str) -> Path:
    """The upload an audience row names, resolved under the data directory's imports folder: a path from a
    restored (or tampered) database can name no other file of the server."""
    folder = (svc.settings.data_dir / "imports").resolve()
    path = (svc.settings.data_dir / stored).resolve()  # rows before this release hold absolute paths
    if path.parent != folder:
        folder_then = Path(stored).parent.name == "imports"
        path = folder / Path(stored).name if folder_then else path
    if path.parent != folder or not path.name.endswith((".upload", ".csv")):
        raise _file_error(f"the stored upload {stored[:100]!r} is not a file of this server's imports folder")
    return path


async def run_import(svc: Services, audience_id: int) -> None:
    """Import (or resume importing) one audience to the end."""
    async with svc.read() as conn:
        aud = (await conn.execute(select(audiences).where(audiences.c.id == audience_id))).mappings().first()
    if aud is None or aud["state"] != "importing":
        return
    path, columns, done = import_file(svc, aud["file_path"]), list(aud["columns"]), int(aud["lines_done"])
    rows = iter_rows(path)
    for _ in range(done):  # resume: skip what earlier chunks committed
        next(rows, None)
    while True:
        good, bad, used = await asyncio.to_thread(_parse_chunk, rows, done, columns, CHUNK)
        if used == 0:
            break
        done += used
        await svc.execute_write(partial(_store_chunk, account_id=aud["account_id"], audience_id=audience_id, good=good,
                                bad=bad, done=done))
    await _finish(svc, aud["account_id"], audience_id)
    path.unlink(missing_ok=True)


async def _store_chunk(conn: AsyncConnection, *, account_id: int, audience_id: int,
                       good: list[tuple[int, str, str | None]], bad: list[tuple[int, str, str]], done: int) -> None:
    if good:
        await conn.execute(_insert_ignore(conn), [
            {"account_id": account_id, "audience_id": audience_id, "seq": line, "phone": phone, "params": params}
            for line, phone, params in good])
    if bad:
        await conn.execute(import_problems.insert(), [  # a NUL is shown as U+FFFD: PostgreSQL cannot store it
            {"account_id": account_id, "audience_id": audience_id, "line": line, "raw": raw.replace("\x00", "\ufffd"),
             "reason": reason.replace("\x00", "\ufffd")} for line, raw, reason in bad])
    await conn.execute(update(audiences).where(audiences.c.id == audience_id).values(
        lines_done=done, valid=audiences.c.valid + len(good), invalid=audiences.c.invalid + len(bad)))


async def _finish(svc: Services, account_id: int, audience_id: int) -> None:
    async def finish(conn: AsyncConnection) -> None:
        kept = await conn.scalar(select(func.count()).select_from(audience_numbers).where(
            audience_numbers.c.account_id == account_id, audience_numbers.c.audience_id == audience_id))
        blocked = await conn.scalar(select(func.count()).select_from(audience_numbers).join(
            suppressions, (suppressions.c.account_id == audience_numbers.c.account_id)
            & (suppressions.c.phone == audience_numbers.c.phone)).where(
            audience_numbers.c.account_id == account_id, audience_numbers.c.audience_id == audience_id))
        await conn.execute(update(audiences).where(audiences.c.id == audience_id).values(
            state="ready", duplicates=audiences.c.valid - int(kept or 0), suppressed=int(blocked or 0),
            file_path=""))

    await svc.execute_write(finish)


async def pending_imports(svc: Services) -> list[int]:
    async with svc.read() as conn:
        return [r[0] for r in await conn.execute(select(audiences.c.id).where(audiences.c.state == "importing"))]


async def fail_import(svc: Services, audience_id: int, message: str) -> None:
    async with svc.hold_writer() as conn:
        await conn.execute(delete(audience_numbers).where(audience_numbers.c.audience_id == audience_id))
        await conn.execute(update(audiences).where(audiences.c.id == audience_id).values(
            state="failed", error=message[:500].replace("\x00", "\ufffd")))


async def get_audience(svc: Services, account_id: int, audience_id: int) -> Any:
    async with svc.read() as conn:
        row = (await conn.execute(select(audiences).where(
            audiences.c.account_id == account_id, audiences.c.id == audience_id))).mappings().first()
    if row is None:
        raise CardsmsError("NotFound", f"audience {audience_id} does not exist in this account", field="audience")
    return row


async def list_audiences(svc: Services, account_id: int) -> list[Any]:
    async with svc.read() as conn:
        return list((await conn.execute(select(audiences).where(
            audiences.c.account_id == account_id, audiences.c.saved.is_(True)).order_by(audiences.c.id.desc())
        )).mappings().all())


async def sample_numbers(svc: Services, account_id: int, audience_id: int, limit: int = 20) -> list[Any]:
    async with svc.read() as conn:
        return list((await conn.execute(select(audience_numbers.c.seq, audience_numbers.c.phone,
                                               audience_numbers.c.params).where(
            audience_numbers.c.account_id == account_id, audience_numbers.c.audience_id == audience_id
        ).order_by(audience_numbers.c.seq).limit(limit))).all())


async def problems(svc: Services, account_id: int, audience_id: int) -> list[Any]:
    async with svc.read() as conn:
        return list((await conn.execute(select(import_problems.c.line, import_problems.c.raw,
                                               import_problems.c.reason).where(
            import_problems.c.account_id == account_id, import_problems.c.audience_id == audience_id
        ).order_by(import_problems.c.line))).all())


async def delete_audience(svc: Services, account_id: int, audience_id: int) -> None:
    from cardsms.db.schema import tasks

    await get_audience(svc, account_id, audience_id)
    async with svc.hold_writer() as conn:
        busy = await conn.scalar(select(func.count()).select_from(tasks).where(
            tasks.c.account_id == account_id, tasks.c.audience_id == audience_id,
            tasks.c.state.in_(("importing", "scheduled", "sending", "paused"))))
        if busy:
            raise CardsmsError("TaskStateConflict", f"audience {audience_id} is used by {busy} unfinished task(s); "
                               "finish or revoke them first", field="audience")
        for table in (audience_numbers, import_problems):
            await conn.execute(delete(table).where(table.c.account_id == account_id,
                                                   table.c.audience_id == audience_id))
        await conn.execute(delete(audiences).where(audiences.c.account_id == account_id,
                                                   audiences.c.id == audience_id))
