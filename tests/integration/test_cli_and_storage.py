"""The CLI and the storage rules: migrations, existing names, PostgreSQL refusing a stale schema."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

from tests.harness import PostgresServer, cardsms_env, cli, free_port, running_server


def test_account_create_of_an_existing_name_fails_and_changes_nothing(tmp_path: Path) -> None:
    env = cardsms_env(tmp_path)
    cli(env, "account", "create", "acme")
    again = cli(env, "account", "create", "acme", check=False)
    assert again.returncode != 0 and "already exists" in again.stderr
    listed = cli(env, "account", "list").stdout
    assert listed.count("acme") == 1


def test_cli_rejects_bad_arguments_with_exit_code_2(tmp_path: Path) -> None:
    env = cardsms_env(tmp_path)
    bad_role = cli(env, "user", "create", "bob", "--account", "x", "--role", "god", "--password", "x" * 10, check=False)
    assert bad_role.returncode == 2 and "--role" in bad_role.stderr
    bad_port = cli(env, "serve", "--port", "99999", check=False)
    assert bad_port.returncode == 2
    bad_env = cli({**env, "CARDSMS_API_QPS": "lots"}, "account", "list", check=False)
    assert bad_env.returncode == 2 and "CARDSMS_API_QPS" in bad_env.stderr
    bad_smsc = cli(env, "serve", "--smsc", "smpp://127.0.0.1:2775", check=False)
    assert bad_smsc.returncode == 2 and "CARDSMS_SMSC" in bad_smsc.stderr and "SYSTEM_ID" in bad_smsc.stderr
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text('[[smsc]]\nurl = "smpp://a:b@127.0.0.1:2775"\nwindow = 0\n')
    bad_window = cli({**env, "CARDSMS_CONFIG": str(bad_toml)}, "account", "list", check=False)
    assert bad_window.returncode == 2 and "window" in bad_window.stderr
    cli(env, "account", "create", "hooked")
    bad_hook = cli(env, "webhook", "set", "--account", "hooked", "--type", "Nope", "--url", "http://x", check=False)
    assert bad_hook.returncode == 2 and "type" in bad_hook.stderr and "SmsReport" in bad_hook.stderr
    bad_url = cli(env, "webhook", "set", "--account", "hooked", "--type", "SmsUp", "--url", "ftp://x", check=False)
    assert bad_url.returncode == 2 and "url" in bad_url.stderr
    bad_sim = cli(env, "simulator", "smsc", "--fail-share", "101", check=False)
    assert bad_sim.returncode == 2 and "--fail-share" in bad_sim.stderr


def test_serve_bootstraps_a_demo_account_and_accesskey_create_runs_beside_it(tmp_path: Path) -> None:
    env = cardsms_env(tmp_path)
    with running_server(env, "sqlite") as server:
        out = (tmp_path / f"serve-{server.port}.log").read_text()
        assert "AccessKey: LTAI" in out and "admin:     admin / " in out and f"{server.url}/" in out
        key = json.loads(cli(env, "accesskey", "create", "--account", "demo", "--json").stdout)
        assert set(key) == {"AccessKeyId", "AccessKeySecret"}
        keys = cli(env, "accesskey", "list", "--account", "demo").stdout
        assert key["AccessKeyId"] in keys
        writer = httpx.get(f"{server.url}/healthz").json()["writer"]  # every write went through the writer thread
        assert writer["transactions"] > 0 and writer["jobs"] + writer["holds"] > 0 and writer["failed_jobs"] == 0
    assert (tmp_path / "initial-admin-password").stat().st_mode & 0o077 == 0


def test_postgresql_with_pending_migrations_refuses_to_start_and_says_what_to_run(pg: PostgresServer) -> None:
    url = pg.create_database("cardsms_pending")
    env = cardsms_env(Path(tempfile.mkdtemp()), url)
    port = free_port()
    refused = subprocess.run([sys.executable, "-m", "cardsms", "serve", "--port", str(port)], env=env,
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "cardsms migrate" in refused.stderr
    migrated = cli(env, "migrate").stdout
    assert "migrated database from empty to" in migrated
    assert "up to date" in cli(env, "migrate").stdout
    with running_server(env, "postgresql") as server:
        assert httpx.get(server.url + "/healthz").status_code == 200


def test_help_is_part_of_the_docs(tmp_path: Path) -> None:
    out = cli(cardsms_env(tmp_path), "--help").stdout
    for command in ("serve", "migrate", "account", "accesskey", "user"):
        assert command in out


def test_the_migrations_build_exactly_the_schema_the_code_declares(tmp_path: Path, pg: PostgresServer) -> None:
    """`cardsms migrate` on an empty database, then alembic's comparison with db/schema.py: no difference, on
    both databases (a column added to the schema without its migration fails here)."""
    import asyncio

    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy.ext.asyncio import create_async_engine

    from cardsms.db.schema import metadata

    urls = {"sqlite": f"sqlite+aiosqlite:///{tmp_path / 'sqlite' / 'cardsms.db'}",
            "postgresql": pg.create_database("cardsms_drift")}
    cli(cardsms_env(tmp_path / "sqlite"), "migrate")
    cli(cardsms_env(tmp_path / "pg", urls["postgresql"]), "migrate")

    async def differences(url: str) -> list[object]:
        engine = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://", 1))
        async with engine.connect() as conn:
            diff = await conn.run_sync(lambda c: compare_metadata(
                MigrationContext.configure(c, opts={"compare_type": True}), metadata))
        await engine.dispose()
        return list(diff)

    for name, url in urls.items():
        diff = asyncio.run(differences(url))
        assert diff == [], f"{name}: db/schema.py and the migrations differ: {diff}"
