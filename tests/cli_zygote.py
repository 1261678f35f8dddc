"""Run `cardsms` commands as forks of one process that has imported the CLI once.

The suite runs a few hundred short commands (`task create`, `webhook set`, `account create`...). Each
`python -m cardsms` spends ~1.3 s of CPU importing SQLAlchemy, pydantic, typer and the composition root
before it parses its arguments; on two cores that was a tenth of the suite. Here a process imports all of it
once and forks a child per command: the child is a process of its own, with the command's environment,
working directory, stdin from /dev/null, stdout and stderr to files, and its exit code (the CLI's `main()`,
the same code `python -m cardsms` runs). Servers and simulators are still started as `python -m cardsms`.

Protocol on stdin/stdout, one JSON object a line: {"args", "env", "cwd", "out", "err", "timeout"} in,
{"rc"} (or {"rc": null} after the timeout killed the child) out."""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import pkgutil
import signal
import sys
import time
import traceback


def _preload() -> None:
    import cardsms.cli

    for module in pkgutil.iter_modules(cardsms.cli.__path__):
        importlib.import_module(f"cardsms.cli.{module.name}")


def _child(req: dict) -> None:  # type: ignore[type-arg]
    from cardsms.cli import main

    code = 1
    try:
        os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"])
        for fd, path, flags in ((0, os.devnull, os.O_RDONLY), (1, req["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                                (2, req["err"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
            opened = os.open(path, flags, 0o600)
            os.dup2(opened, fd)
            os.close(opened)
        sys.argv = ["cardsms", *req["args"]]
        try:
            main()
            code = 0
        except SystemExit as exc:  # as the interpreter ends a process on SystemExit
            if exc.code is None or isinstance(exc.code, int):
                code = exc.code or 0
            else:
                print(exc.code, file=sys.stderr)
        except BaseException:
            traceback.print_exc()
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def _wait(pid: int, timeout: float) -> int | None:
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None
        time.sleep(0.005)


def serve() -> None:
    del sys.path[0]  # this file's directory (tests/): its modules are not the CLI's
    _preload()
    for line in sys.stdin:
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(req)
        rc = _wait(pid, float(req["timeout"]))
        sys.stdout.write(json.dumps({"rc": rc}) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    serve()
