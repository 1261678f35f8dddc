"""structlog set-up: JSON lines in production, readable lines in development."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any, Protocol

import structlog


class LogSettings(Protocol):
    """What logging reads of the settings (logs.py sits below settings.py and does not import it)."""

    @property
    def log_level(self) -> str: ...
    @property
    def log_format(self) -> str: ...
    @property
    def env(self) -> str: ...


def configure_logging(settings: LogSettings) -> None:
    level = getattr(logging, settings.log_level.upper())
    json_logs = settings.log_format == "json" or (settings.log_format == "auto" and settings.env == "production")
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json_logs else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)


def pass_failed(logger: Any, event: str, **details: Any) -> None:
    """For a long-running loop's `except Exception:`: log the failure and let the loop go on, unless the
    task is being cancelled (a stop). Then the error came from the cleanup of the cancelled await (a
    database connection cut mid-statement), and swallowing it would swallow the cancellation: the loop
    would run on and the stop would wait for it forever."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
    logger.exception(event, **details)
