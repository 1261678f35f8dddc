"""The `cardsms` command line. Bad arguments exit with code 2 and say which one and why.

One module per command group, each registering its commands on the one app (cli/common.py):
processes (serve, api, worker) with http_processes (serve's HTTP children), storage (migrate, backup,
restore), accounts (accounts, keys, users, webhooks), tasks, protect (frequency control, link domains),
simulators."""

from __future__ import annotations


def main() -> None:
    from cardsms.cli import accounts, http_processes, processes, protect, simulators, storage, tasks  # noqa: F401
    from cardsms.cli.common import app

    app()
