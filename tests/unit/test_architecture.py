"""The layering rules of docs/architecture.md, held against the code by reading every module's imports
(the syntax tree, not the text: a comment or a string naming a module is not an import).

- domain/ imports only domain/ (pure rules);
- settings.py imports only domain/, logs.py and bounds.py nothing of ours;
- db/ imports only settings and domain/;
- services/ never import the adapters above them (openapi, console, web, links, cli) nor delivery/;
- delivery/ never imports the adapters (openapi, console, web);
- openapi/, console/ and links/ never import web/ (web/ composes them), and the console reaches the
  database only through services/;
- only the composition root (compose.py) and the CLI import the simulator.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "cardsms"
ALL = frozenset(p.name.removesuffix(".py") for p in SRC.iterdir()
                if (p.suffix == ".py" or any(p.glob("*.py"))) and not p.name.startswith("_"))

# part -> the parts of cardsms it may import (besides itself)
MAY_IMPORT: dict[str, frozenset[str]] = {
    "domain": frozenset(),
    "bounds": frozenset(),
    "logs": frozenset(),
    "crypto": frozenset(),
    "settings": frozenset({"domain"}),
    "db": frozenset({"settings", "domain"}),
    "media": frozenset({"settings", "domain"}),
    "vendors": frozenset({"domain"}),
    "services": ALL - {"openapi", "console", "web", "links", "cli", "cli_protect", "delivery", "simulator",
                       "compose", "stopping", "backup", "bootstrap"},
    "delivery": ALL - {"openapi", "console", "web", "links", "cli", "cli_protect", "simulator", "compose"},
    "openapi": ALL - {"web", "console", "cli", "cli_protect", "simulator", "compose", "db", "delivery"},
    "console": ALL - {"web", "openapi", "cli", "cli_protect", "simulator", "compose", "db", "delivery"},
    "links": ALL - {"web", "openapi", "console", "cli", "cli_protect", "simulator", "compose", "db", "delivery"},
    "simulator": ALL - {"web", "openapi", "console", "cli", "cli_protect", "compose", "services"},
    "web": ALL - {"cli", "cli_protect", "simulator", "compose"},
}


def imports_of(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) for every `cardsms.*` import in the file, relative imports resolved."""
    package = ["cardsms", *path.relative_to(SRC).parent.parts]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, a.name) for a in node.names if a.name.startswith("cardsms."))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                yield node.lineno, ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.startswith("cardsms."):
                yield node.lineno, node.module


def part_of(path: Path) -> str:
    return path.relative_to(SRC).parts[0].removesuffix(".py")


def violations(part: str) -> list[str]:
    allowed = MAY_IMPORT[part] | {part}
    found = []
    for path in sorted(SRC.rglob("*.py")) if (SRC / part).is_dir() else [SRC / f"{part}.py"]:
        if part_of(path) != part:
            continue
        for line, module in imports_of(path):
            target = module.split(".")[1] if "." in module else module
            if target not in allowed:
                found.append(f"{path.relative_to(SRC)}:{line}: imports {module}")
    return found


@pytest.mark.parametrize("part", sorted(MAY_IMPORT))
def test_every_part_imports_only_what_its_layer_may(part: str) -> None:
    assert (SRC / part).is_dir() or (SRC / f"{part}.py").is_file(), part
    assert violations(part) == []


def test_the_simulator_is_reached_only_through_the_composition_root_and_the_cli() -> None:
    users = {part_of(path) for path in SRC.rglob("*.py")
             for _, module in imports_of(path) if module.startswith("cardsms.simulator")}
    assert users - {"simulator"} <= {"compose", "cli"}


def test_the_check_itself_finds_what_it_looks_for(monkeypatch: pytest.MonkeyPatch) -> None:
    assert any(m.startswith("cardsms.delivery") for p in (SRC / "simulator").rglob("*.py") for _, m in imports_of(p)), \
        "the simulator uses delivery's codecs: the scan must see it"
    monkeypatch.setitem(MAY_IMPORT, "services", frozenset())
    assert any("imports cardsms.db" in v for v in violations("services")), "services/ use db/: a rule against it fails"
