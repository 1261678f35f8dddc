"""Untrusted XLSX workbooks, read safely: checked, then converted to CSV in a child process.

A workbook is a zip of XML parts, and its reader allocates the sheet's whole bounding box: a 1.5 KB file
with cells A1 and XFD1048576 asks for hundreds of GB, and the native reader aborts the process that
reads it. So a workbook never reaches the reader in the server's process:

1. `check_bounds` streams the first sheet's XML through a capped decompressor and refuses a declared
   dimension or a cell reference beyond the import limits (rows, columns, cells) before anything reads it;
2. `to_csv` runs the reader in a child process (`python -m cardsms.services.workbook IN OUT`) under an
   address-space and CPU limit and a wall-clock timeout, writing the first sheet as a UTF-8 CSV file;
   whatever the file does to that child, the import fails alone with a named error.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

MAX_ROWS = 1_048_576  # Excel's own limit; the import's 500,000 numbers are counted later
MAX_COLUMNS = 64  # the number and up to 63 parameter columns
MAX_CELLS = 8_000_000  # bounding box (rows x columns) the reader may allocate: 500,000 rows x 16 columns
MAX_PART_BYTES = 128 * 1024 * 1024  # a workbook part may expand to this much (a zip bomb stops here)
CHILD_MEMORY_BYTES = 1024 * 1024 * 1024
CHILD_CPU_SECONDS = 60
CHILD_WALL_SECONDS = 120
_DIMENSION = re.compile(rb"<(?:\w+:)?dimension\s+ref=\"([A-Z]{1,4})?(\d{1,8})?(?::([A-Z]{1,4})(\d{1,8}))?\"")
# the row number of every cell and row reference, and the column letters of every cell reference (any length: a
# reference past the limits is refused, however long its digits or letters); two scans whose results are reduced
# in C (max over a map, a set of letters) rather than a Python step per cell
_ROW_REF = re.compile(rb"<(?:\w+:)?(?:c|row)\s[^>]*?\br=\"[A-Z]*(\d+)\"")
_COLUMN_REF = re.compile(rb"<(?:\w+:)?c\s[^>]*?\br=\"([A-Z]+)\d")
_SHEET = re.compile(rb"<(?:\w+:)?sheet\s[^>]*?\br:id=\"([^\"]+)\"")
_REL = re.compile(rb"<Relationship\s[^>]*?>")


class WorkbookError(ValueError):
    """A workbook that may not be read; the message names the rule it broke."""


def column_number(letters: bytes) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + ch - 64
    return n


def _read_capped(archive: zipfile.ZipFile, name: str, limit: int) -> bytes:
    with archive.open(name) as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise WorkbookError(f"the workbook part {name} expands to more than {limit // 1024} KB")
    return data


def first_sheet(archive: zipfile.ZipFile) -> str:
    """The part name of the workbook's first sheet (the one an import reads)."""
    names = set(archive.namelist())
    try:
        workbook = _read_capped(archive, "xl/workbook.xml", 4 * 1024 * 1024)
        rels = _read_capped(archive, "xl/_rels/workbook.xml.rels", 4 * 1024 * 1024)
    except KeyError:
        workbook = rels = b""
    found = _SHEET.search(workbook)
    if found:
        for rel in _REL.findall(rels):
            if f'Id="{found.group(1).decode(errors="replace")}"'.encode() in rel:
                target = re.search(rb'Target="([^"]+)"', rel)
                if target:
                    path = target.group(1).decode(errors="replace").lstrip("/")
                    path = path if path.startswith("xl/") else "xl/" + path
                    if path in names:
                        return path
    if "xl/worksheets/sheet1.xml" in names:
        return "xl/worksheets/sheet1.xml"
    raise WorkbookError("the workbook has no worksheet")


def _check(rows: int, columns: int, where: str) -> None:
    if columns > MAX_COLUMNS:
        raise WorkbookError(f"{where} reaches column {columns:,}; an import may have at most {MAX_COLUMNS} columns")
    if rows > MAX_ROWS:
        raise WorkbookError(f"{where} reaches row {rows:,}; a sheet may have at most {MAX_ROWS:,} rows")
    if rows * columns > MAX_CELLS:
        raise WorkbookError(f"{where} spans {rows:,} rows x {columns} columns; an import may span at most "
                            f"{MAX_CELLS:,} cells (delete the empty rows and columns)")


def _chunks(fh: IO[bytes], limit: int) -> Iterator[bytes]:
    seen, tail = 0, b""
    while chunk := fh.read(1 << 20):
        seen += len(chunk)
        if seen > limit:
            raise WorkbookError(f"the sheet expands to more than {limit // 2**20} MB")
        # a tag cut at a chunk's end is matched whole in the next (tags here are far shorter than 256 bytes)
        yield tail + chunk
        cut = max(0, len(chunk) - 256)
        tail = chunk[cut:]


def check_bounds(path: Path) -> None:
    """Refuse a workbook whose first sheet declares or uses more rows, columns or cells than an import may."""
    try:
        with zipfile.ZipFile(path) as archive:
            sheet = first_sheet(archive)
            if any(m.file_size > MAX_PART_BYTES for m in archive.infolist()):
                raise WorkbookError(f"a workbook part declares more than {MAX_PART_BYTES // 2**20} MB")
            max_row = max_col = 0
            with archive.open(sheet) as fh:
                for i, chunk in enumerate(_chunks(fh, MAX_PART_BYTES)):
                    if i == 0 and (dim := _DIMENSION.search(chunk)):
                        end_col, end_row = dim.group(3) or dim.group(1), dim.group(4) or dim.group(2)
                        if end_col and end_row:
                            declared = dim.group(0).decode(errors="replace")[-40:]
                            _check(int(end_row), column_number(end_col), f"the sheet's dimension {declared}")
                    max_row = max(max_row, max(map(int, _ROW_REF.findall(chunk)), default=0))
                    max_col = max(max_col, max(map(column_number, set(_COLUMN_REF.findall(chunk))), default=0))
                    _check(max_row, max(max_col, 1), "a cell of the sheet")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, NotImplementedError) as exc:
        raise WorkbookError(f"the XLSX workbook cannot be read ({exc})") from None


def _limit_self() -> None:
    """The child's first step, before it opens the file: its limits (set here, not in a preexec_fn, which is
    unsafe in the server's threaded process)."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY_BYTES, CHILD_MEMORY_BYTES))
    resource.setrlimit(resource.RLIMIT_CPU, (CHILD_CPU_SECONDS, CHILD_CPU_SECONDS))


def to_csv(source: Path, target: Path) -> None:
    """Check `source` and write its first sheet to `target` as CSV, reading it in a limited child process."""
    check_bounds(source)
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "PYTHONPATH")}
    try:
        done = subprocess.run([sys.executable, "-m", "cardsms.services.workbook", str(source), str(target)],
                              capture_output=True, timeout=CHILD_WALL_SECONDS, env=env, check=False)
    except subprocess.TimeoutExpired:
        target.unlink(missing_ok=True)
        raise WorkbookError(f"reading the XLSX workbook took more than {CHILD_WALL_SECONDS} s; save it as CSV "
                            "and import that") from None
    if done.returncode == 0:
        return
    target.unlink(missing_ok=True)
    message = done.stderr.decode("utf-8", "replace").strip().splitlines()
    if done.returncode == 2 and message:
        raise WorkbookError(message[-1][:300])
    raise WorkbookError(f"reading the XLSX workbook needs more memory or time than an import may use (the reader "
                        f"stopped with status {done.returncode}); save it as CSV and import that")


def _cell(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # numbers typed into a spreadsheet arrive as floats
    return "" if value is None else str(value)


def _convert(source: Path, target: Path) -> None:
    from python_calamine import CalamineWorkbook

    try:
        sheet = CalamineWorkbook.from_path(str(source)).get_sheet_by_index(0)
        with target.open("w", encoding="utf-8", newline="") as out:
            writer = csv.writer(out)
            for row in sheet.iter_rows():
                writer.writerow([_cell(v) for v in row])
    except MemoryError:
        raise
    except Exception as exc:  # calamine raises its own types for every kind of broken workbook
        raise WorkbookError(f"the XLSX workbook cannot be read ({str(exc)[:200]})") from None


def main(argv: list[str]) -> int:
    _limit_self()
    try:
        _convert(Path(argv[0]), Path(argv[1]))
    except WorkbookError as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
