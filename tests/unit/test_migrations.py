"""The migration chain: linear and in the files' name order, so the head is the newest file's revision (what
`db.migrate.head_revision` reads without importing Alembic) and Alembic agrees."""

from __future__ import annotations

import ast
from pathlib import Path

from cardsms.db.migrate import alembic_head_revision, head_revision

VERSIONS = Path(__file__).resolve().parents[2] / "src" / "cardsms" / "db" / "migrations" / "versions"


def _assigned(path: Path, name: str) -> object:
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{path.name}: no {name}")


def test_each_migration_follows_the_file_before_it() -> None:
    files = sorted(VERSIONS.glob("[0-9][0-9][0-9][0-9]_*.py"))
    assert len(files) >= 13
    assert [p.name for p in VERSIONS.glob("*.py")] and all(p in files for p in VERSIONS.glob("*.py")), \
        "every migration file is named NNNN_name.py"
    before = None
    for path in files:
        revision = _assigned(path, "revision")
        assert isinstance(revision, str) and path.stem.startswith(revision[:4]), path.name
        assert _assigned(path, "down_revision") == before, path.name
        before = revision


def test_the_head_read_from_the_file_names_is_alembics_head() -> None:
    newest = sorted(VERSIONS.glob("[0-9][0-9][0-9][0-9]_*.py"))[-1]
    assert head_revision() == alembic_head_revision() == _assigned(newest, "revision")
