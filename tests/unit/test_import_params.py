"""The import's fast parameter encoding gives exactly the JSON encoder's text, whatever the cells."""

from __future__ import annotations

import json

import pytest

from cardsms.services.imports import _parse_chunk, params_encoder

COLUMNS = ["name", "amount"]


@pytest.mark.parametrize("cells", [
    ["Li", "12.50"],  # the fast path
    ["  王小明 ", " 3 "],  # stripped, non-ASCII kept as is
    ['say "hi"', "1"],  # a quote: escaped
    ["back\\slash", "tab\there"],  # backslash and a control character
    ["only one"],  # fewer cells than columns
    ["a", "b", "extra"],  # more cells than columns
    ["100%", "%s"],  # percent signs are data, not format codes
    ["", ""],
])
def test_params_encoder_matches_json(cells: list[str]) -> None:
    expected = json.dumps(dict(zip(COLUMNS, (c.strip() for c in cells), strict=False)), ensure_ascii=False,
                          separators=(",", ":"))
    assert params_encoder(COLUMNS)(cells) == expected
    assert json.loads(params_encoder(COLUMNS)(cells)) == json.loads(expected)


def test_parse_chunk_lines_numbers_and_problems() -> None:
    rows = iter([["13800000001", "Li", "1"], [], ["12", "bad", "2"], [" 13800000002 ", "Wang", "3"],
                 ["+86 138 0000 0003", "Zhao", "4"], ["13800000004", "Qian", "5"]])
    good, bad, used = _parse_chunk(rows, 1, COLUMNS, 4)
    assert used == 4  # stops after n lines, blank ones included
    assert [(line, phone) for line, phone, _ in good] == [(2, "13800000001"), (5, "13800000002")]
    assert good[0][2] == '{"name":"Li","amount":"1"}'
    assert [(line, raw) for line, raw, _ in bad] == [(4, "12")]
    good, bad, used = _parse_chunk(rows, 5, COLUMNS, 10)
    assert [(line, phone) for line, phone, _ in good] == [(6, "13800000003"), (7, "13800000004")] and used == 2
