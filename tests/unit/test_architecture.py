"""The layering rules of docs/architecture.md, held against the code: nothing in services/ or delivery/
knows the simulator (compose.py chooses real or simulated parts), and the console reaches the database
only through services/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "cardsms"


def mentions(folders: tuple[str, ...], module: str) -> list[str]:
    pattern = re.compile(re.escape(module) + r"\b")
    return [f"{path.relative_to(SRC)}:{n}: {line.strip()}"
            for folder in folders for path in sorted((SRC / folder).rglob("*.py"))
            for n, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]


@pytest.mark.parametrize(("folders", "module"), [(("services", "delivery"), "cardsms.simulator"),
                                                 (("console",), "cardsms.db")])
def test_layers_import_only_what_they_may(folders: tuple[str, ...], module: str) -> None:
    assert (SRC / folders[0]).is_dir()
    assert mentions(folders, module) == []


def test_the_check_itself_finds_what_it_looks_for() -> None:
    assert mentions(("simulator",), "cardsms.delivery"), "the simulator uses delivery's codecs: the scan must see it"
