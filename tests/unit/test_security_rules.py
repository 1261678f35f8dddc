"""The small rules behind the security review's fixes (issue J): workbook limits, the login limiter, password
hashes, nonces, the open limiter."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import openpyxl
import pytest

from cardsms import crypto
from cardsms.console.auth import LoginLimiter
from cardsms.links.parsers import OpenLimiter, parser_key, parser_signature, verified
from cardsms.openapi.auth import NonceCache
from cardsms.services import workbook


def _book(cells: dict[str, str], path: Path) -> Path:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    for ref, value in cells.items():
        sheet[ref] = value
    book.save(path)
    return path


def test_a_sheet_beyond_the_import_limits_is_refused_before_it_is_read(tmp_path: Path) -> None:
    with pytest.raises(workbook.WorkbookError, match="column 16,384"):
        workbook.check_bounds(_book({"A1": "1", "XFD1048576": "x"}, tmp_path / "wide.xlsx"))
    with pytest.raises(workbook.WorkbookError, match="rows x 64 columns"):
        workbook.check_bounds(_book({"A1": "1", "BL200000": "x"}, tmp_path / "big.xlsx"))
    workbook.check_bounds(_book({"A1": "phone", "B1": "name", "A500001": "13800138000"}, tmp_path / "ok.xlsx"))


def _without_dimension(source: Path, target: Path, replace: tuple[bytes, bytes] = (b"", b"")) -> Path:
    """`source` with its sheets' <dimension> removed (and `replace` applied), as a hand-made workbook may be."""
    with zipfile.ZipFile(source) as inp, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as out:
        for member in inp.infolist():
            data = inp.read(member)
            if member.filename.startswith("xl/worksheets/"):
                data = re.sub(rb"<dimension[^>]*>", b"", data)
                if replace[0]:
                    assert replace[0] in data
                    data = data.replace(*replace)
                assert b"<dimension" not in data
            out.writestr(member, data)
    return target


def test_a_sheet_without_a_dimension_is_bounded_by_its_cells(tmp_path: Path) -> None:
    wide = _book({"A1": "1", "XFD1048576": "x"}, tmp_path / "wide.xlsx")
    stripped = _without_dimension(wide, tmp_path / "nodim.xlsx")
    with pytest.raises(workbook.WorkbookError, match="a cell of the sheet reaches column 16,384"):
        workbook.check_bounds(stripped)


@pytest.mark.parametrize(("ref", "rule"), [("A1234567890", "row 1,234,567,890"), ("ABCDE1", "column 494,265")])
def test_a_reference_longer_than_any_real_one_is_still_counted(tmp_path: Path, ref: str, rule: str) -> None:
    """A cell reference with more digits or letters than Excel allows (written by hand into the sheet's XML, no
    dimension) is refused by its number, not skipped as unreadable."""
    forged = _without_dimension(_book({"A1": "1", "B2": "x"}, tmp_path / "small.xlsx"), tmp_path / "forged.xlsx",
                                (b'r="B2"', f'r="{ref}"'.encode()))
    with pytest.raises(workbook.WorkbookError, match=rule):
        workbook.check_bounds(forged)


def test_the_reader_runs_in_a_child_that_a_hostile_file_cannot_take_down(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    hostile = _book({"A1": "1", "XFD1048576": "x"}, tmp_path / "wide.xlsx")
    monkeypatch.setattr(workbook, "check_bounds", lambda path: None)  # as if the bounds check had missed it
    with pytest.raises(workbook.WorkbookError, match="more memory or time than an import may use"):
        workbook.to_csv(hostile, tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()
    good = _book({"A1": "phone", "B1": "name", "A2": "13800138000", "B2": "李雷"}, tmp_path / "good.xlsx")
    workbook.to_csv(good, tmp_path / "good.csv")
    assert (tmp_path / "good.csv").read_text(encoding="utf-8").splitlines() == ["phone,name", "13800138000,李雷"]
    broken = tmp_path / "broken.xlsx"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("xl/workbook.xml", "<workbook/>")
        archive.writestr("xl/worksheets/sheet1.xml", "<worksheet><sheetData><row r='1'>")
    broken.write_bytes(buffer.getvalue())
    with pytest.raises(workbook.WorkbookError, match="cannot be read"):
        workbook.to_csv(broken, tmp_path / "broken.csv")


def test_failed_logins_lock_an_address_and_a_name_from_that_address_but_not_the_name_elsewhere() -> None:
    limiter = LoginLimiter(limit=3, max_keys=50)
    for _ in range(3):
        limiter.failed(*limiter.keys("admin", "203.0.113.9"))
    assert limiter.blocked(*limiter.keys("admin", "203.0.113.9"))
    assert limiter.blocked(*limiter.keys("someone", "203.0.113.9"))  # that address guesses no more
    assert not limiter.blocked(*limiter.keys("admin", "198.51.100.7"))  # the real admin elsewhere gets in
    for i in range(500):
        limiter.failed(*limiter.keys(f"made-up-{i}", f"10.0.{i // 250}.{i % 250}"))
    assert len(limiter) <= 50


def test_password_hashes_follow_current_guidance_and_weaker_ones_are_due_for_a_rehash() -> None:
    stored = crypto.hash_password("correct horse")
    assert stored.startswith("scrypt$131072$8$1$") and not crypto.needs_rehash(stored)
    assert crypto.verify_password("correct horse", stored) and not crypto.verify_password("wrong", stored)
    old = "scrypt$16384$8$1$" + "00" * 16 + "$" + "00" * 32
    assert crypto.needs_rehash(old) and crypto.needs_rehash("garbage")
    assert not crypto.verify_password("x", "scrypt$1073741824$8$1$00$00")  # a stored N is bounded too
    assert crypto.dummy_hash() == crypto.dummy_hash() and not crypto.needs_rehash(crypto.dummy_hash())


def test_a_nonce_is_kept_until_its_stamp_plus_the_skew() -> None:
    nonces = NonceCache()
    stamp_ahead = 1_000_000 + 900  # a request stamped 15 minutes ahead of the clock
    assert nonces.check_and_add("key", "n1", stamp_ahead + 900, now=1_000_000)
    assert not nonces.check_and_add("key", "n1", stamp_ahead + 900, now=1_000_901)  # 901 s later: refused
    assert not nonces.check_and_add("key", "n1", stamp_ahead + 900, now=1_001_799)
    assert nonces.check_and_add("other-key", "n1", stamp_ahead + 900, now=1_001_799)
    assert nonces.check_and_add("key", "n1", stamp_ahead + 900 + 60, now=1_001_801)  # its stamp is refused by then
    small = NonceCache(max_entries=10)
    for i in range(100):
        small.check_and_add("k", str(i), 2_000_000, now=1_000_000)
    assert len(small._expires) <= 10


def test_parser_signatures_name_the_vendor_the_link_and_the_recipient() -> None:
    key = parser_key("secret", "HuaWei")
    good = parser_signature(key, "Ab12Cd", "13800138000")
    assert verified("secret", "HuaWei", "Ab12Cd", "13800138000", good)
    assert not verified("secret", "XiaoMi", "Ab12Cd", "13800138000", good)
    assert not verified("secret", "HuaWei", "Ab12Cd", "13900139000", good)
    assert not verified("secret", "HuaWei", "Zz99Zz", "13800138000", good)
    assert not verified("other", "HuaWei", "Ab12Cd", "13800138000", good)
    assert not verified("secret", "HuaWei", "Ab12Cd", "13800138000", "")


def test_one_address_adds_a_bounded_number_of_opens_to_a_link() -> None:
    limiter = OpenLimiter(per_minute=3, max_keys=20)
    assert [limiter.admit(1, "203.0.113.9") for _ in range(5)] == [True, True, True, False, False]
    assert limiter.admit(2, "203.0.113.9") and limiter.admit(1, "198.51.100.7")
    for i in range(100):
        limiter.admit(i, "x")
    assert len(limiter._opens) <= 20
    assert all(OpenLimiter(0).admit(1, "a") for _ in range(100))
