"""The one settings object: environment variables `CARDSMS_*`, optionally a TOML file named by
`CARDSMS_CONFIG` (environment wins over the file). Validated at start; bad values stop the process
with a message that names the setting."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

# The deny-list reviewers apply by default (CARD_TEMPLATES.md "Content rules").
DEFAULT_DENY_LIST = (
    "贷款", "催收", "赌博", "博彩", "彩票", "股票", "荐股", "投资理财", "医疗", "药品", "成人", "色情",
    "枪支", "武器", "烟草", "香烟", "酒类", "假货", "高仿", "发票", "加微信", "加QQ", "返现",
    "loan", "debt collection", "gambling", "casino", "lottery", "stock tips", "pharmacy",
    "adult", "weapon", "tobacco", "counterfeit", "invoice", "add me on wechat", "cash back",
)

# A value that must never protect production data; refused outside development mode.
INSECURE_SECRET_KEYS = frozenset({"", "change-me", "changeme", "secret", "dev", "development", "cardsms"})


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CARDSMS_", extra="ignore", validate_default=True)

    env: Literal["development", "production"] = Field(
        "development", description="development generates a secret key in the data dir; production refuses that")
    data_dir: Path = Field(Path("var"), description="where SQLite, media files and generated keys live")
    database_url: str = Field("", description="SQLAlchemy URL; empty = SQLite in the data dir")
    secret_key: SecretStr = Field(SecretStr(""), description="encrypts AccessKey secrets at rest, signs policies")
    host: str = Field("127.0.0.1", description="listen address of `cardsms serve`")
    port: int = Field(8000, ge=1, le=65535, description="listen port of `cardsms serve`")
    public_url: str = Field("", description="base URL that clients use to reach this server; default http://host:port")
    api_qps: int = Field(200, ge=1, le=1_000_000, description="default per-account API requests per second")
    api_clock_skew_seconds: int = Field(900, ge=1, le=86_400, description="allowed request clock skew")
    sim_review_seconds: float = Field(5.0, ge=0, le=86_400, description="simulated review delay; 0 approves at once")
    sim_card_share: int = Field(80, ge=0, le=100, description="percent of card-vendor phones that render cards")
    sim_deny_list: list[str] = Field(list(DEFAULT_DENY_LIST), description="words that make review reject")
    sim_handsets_csv: Path | None = Field(None, description="CSV mobile,vendor,support overriding the simulator")
    review_poll_seconds: float = Field(0.5, gt=0, le=60, description="how often due reviews are processed")
    alert_check_seconds: float = Field(10.0, gt=0, le=3600, description="how often the daily volume alerts are checked")
    media_image_max_bytes: int = Field(2 * 1024 * 1024, ge=1024, description="largest image upload")
    media_video_max_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="largest video upload")
    upload_policy_seconds: int = Field(3600, ge=60, le=86_400, description="lifetime of an upload policy")
    smsc: list[str | dict[str, Any]] = Field([], description="SMSC/ISMG connectors as URLs: smpp://SYSTEM_ID:PASSWORD@"
                            "HOST:PORT, smpps://... (TLS), cmpp://SPID:SECRET@HOST:PORT?version=3.0 (or tables with "
                            "url, name, window, tps, system_type, prefixes, binds in the TOML file; see "
                            "docs/sending.md); empty = the built-in simulator")
    digital: list[str | dict[str, Any]] = Field([], description="digital (multimedia) message links to carriers' "
                               "MMSCs as MM7 URLs: mm7://VASPID:SECRET@HOST:PORT/PATH?vasid=...&service_code=..., "
                               "mm7s://... (HTTPS), or [[digital]] tables with url, name, tps, concurrency, prefixes "
                               "(docs/sending.md); empty = the built-in simulator inside serve")
    smsc_window: int = Field(50, ge=1, le=1000, description="default connector window (unanswered submit_sm)")
    smsc_tps: int = Field(0, ge=0, le=100_000, description="default connector submit_sm per second; 0 = unlimited")
    smsc_system_type: str = Field("", max_length=12, description="default bind system_type")
    smsc_source_addr: str = Field("1069000", max_length=20, description="source address (sender) of MT messages")
    message_validity_seconds: int = Field(172_800, ge=1, description="a message not submitted by then expires")
    verification_validity_seconds: int = Field(900, ge=1, description="validity of verification-code messages")
    dispatch_batch: int = Field(500, ge=1, le=20_000, description="messages claimed per dispatcher pass")
    dispatch_in_flight: int = Field(2, ge=1, le=8, description="claimed batches on their way at once; after a "
                                    "crash up to this many batches are sent again, flagged as possible duplicates")
    dispatch_poll_seconds: float = Field(0.05, gt=0, le=10, description="dispatcher poll interval after the first "
                                         "empty pass; it doubles while nothing is due, up to idle_poll_seconds")
    idle_poll_seconds: float = Field(1.0, gt=0, le=60, description="longest rest of an idle polling loop "
                                     "(dispatcher, webhooks, task runner); new sends wake the dispatcher at once, "
                                     "so this delays only work that falls due by itself (services/idle.py)")
    worker_lease_seconds: float = Field(10, ge=1, le=600, description="scale-out: a worker's lease on its "
                                        "bind slots and in-flight messages; a killed worker's work is taken "
                                        "over this long after its last renewal")
    retry_max_attempts: int = Field(8, ge=1, le=100, description="submit attempts before a transient error fails")
    retry_base_seconds: float = Field(1.0, gt=0, le=3600, description="first retry delay; doubles per attempt")
    receipt_timeout_hours: float = Field(72.0, gt=0, le=720, description="a submitted message without a "
                                         "delivery receipt by then is closed as failed (NO_RECEIPT)")
    link_base_url: str = Field("", description="short-link base; default <public URL>/s")
    link_ttl_days: int = Field(30, ge=1, le=3650, description="lifetime of card short links")
    stop_seconds: float = Field(8.0, ge=1, le=300, description="a graceful stop (SIGTERM) ends within this: "
                                "submits already written get their answer, the rest is handed back")
    open_flush_ms: int = Field(100, ge=1, le=10_000, description="link opens and render receipts are answered at "
                               "once and written in batches this often; a killed process loses at most the last "
                               "interval's")
    event_loop: Literal["uvloop", "asyncio"] = Field(
        "uvloop", description="event loop of serve, api, worker and the simulators; asyncio = the standard one "
        "(to compare, or to debug with asyncio's own tools)")
    retention_days: int = Field(30, ge=1, le=3650, description="how long message records are kept")
    queue_count_seconds: float = Field(1.0, ge=0, le=60, description="how long a count of the waiting messages is "
                                       "used before the queue limit counts again")
    queue_limit: int = Field(2_000_000, ge=0, description="API sends answer Throttling.Queue while more messages than "
                             "this wait to be submitted; 0 = no limit")
    frequency_control: bool = Field(True, description="per-number frequency control on every send (Alibaba's "
                                    "limits, each account's own; docs/sending.md); false = none (a gateway whose "
                                    "carriers apply their own, or to measure its cost)")
    sqlite_max_mb: int = Field(0, ge=0, description="SQLite: the database may grow to this many MB (writes beyond "
                               "fail as on a full disk: HTTP 503); 0 = no limit")
    webhook_timeout_seconds: float = Field(3.0, gt=0, le=60, description="webhook POST deadline: the whole request, "
                                           "connect to last byte of the answer")
    parser_secret: SecretStr = Field(SecretStr(""), description="what vendor parsers' keys derive from (`cardsms "
                                     "parser-key`); a fetch signed with one is a render receipt; empty = derived "
                                     "from the secret key")
    link_opens_per_minute: int = Field(60, ge=0, le=1_000_000, description="opens one address adds to one link's "
                                       "counts per minute; more are served but not counted; 0 = no limit")
    metrics_token: SecretStr = Field(SecretStr(""), description="bearer token for /metrics and the details of "
                                     "/healthz (connectors, writer); empty = only clients on loopback without a "
                                     "proxy's forwarding header get them; everyone else gets {\"status\": \"ok\"}")
    http_header_seconds: float = Field(15.0, gt=0, le=600, description="a request's line and headers must arrive "
                                       "within this; slower clients are disconnected")
    http_keepalive_seconds: int = Field(60, ge=1, le=3600, description="an idle keep-alive connection is "
                                          "closed after this; longer than the SDKs' idle gaps between calls, so a "
                                          "pooled connection is rarely closed as a client reuses it")
    http_processes: int = Field(1, ge=1, le=64, description="processes of `cardsms serve` that answer HTTP on its "
                                "port, each with its own event loop (the main process also dispatches); 1 = one "
                                "process for everything (docs/deployment.md)")
    http_max_connections: int = Field(2000, ge=0, le=1_000_000, description="concurrent HTTP connections and "
                                      "requests a process serves; more are answered 503; 0 = no limit")
    outbound_allow_networks: list[str] = Field([], description="networks the server may send webhooks to although "
                                               "they are not public, e.g. [\"10.1.0.0/16\"]; empty = public only")
    webhook_retry_base_seconds: float = Field(10.0, gt=0, le=3600, description="first webhook retry delay")
    webhook_retry_hours: float = Field(24.0, gt=0, le=720, description="webhook reports are retried this long")
    send_window: str = Field("08:00-22:00", description="hours (Asia/Shanghai) in which mass tasks send, HH:MM-HH:MM; "
                             "a task outside them waits, a running one pauses at the end and resumes by itself; "
                             "00:00-24:00 = always; an account may have its own (cardsms account set-window)")
    sim_protocol: Literal["smpp", "cmpp2", "cmpp3"] = Field(
        "smpp", description="what the embedded simulator speaks: an SMPP 3.4 SMSC, or a CMPP 2.0 or 3.0 ISMG")
    sim_smsc_port: int = Field(0, ge=0, le=65535, description="port of the embedded simulated SMSC; 0 = any free")
    sim_smsc_latency_ms: int = Field(50, ge=0, le=600_000, description="simulated SMSC delivery receipt latency")
    sim_smsc_fail_share: int = Field(0, ge=0, le=100, description="percent of numbers the simulated SMSC fails")
    sim_smsc_throttle_share: int = Field(0, ge=0, le=100, description="percent of submit_sm answered ESME_RTHROTTLED")
    sim_smsc_disconnect_every: int = Field(0, ge=0, description="drop connections after every N submit_sm; 0 = never")
    sim_open_share: int = Field(10, ge=0, le=100, description="percent of card recipients who open the link")
    sim_reply_share: int = Field(2, ge=0, le=100, description="percent of card/promotional recipients who reply R")
    log_format: Literal["auto", "json", "console"] = Field("auto", description="auto = json in production")
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("CARDSMS_CONFIG")
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)

    @field_validator("database_url")
    @classmethod
    def _known_driver(cls, value: str) -> str:
        if value and not value.startswith(("sqlite", "postgresql", "postgres")):
            raise ValueError("must be a sqlite:// or postgresql:// URL")
        return value

    @field_validator("outbound_allow_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        from cardsms.domain.outbound import parse_networks

        parse_networks(value)  # raises ValueError naming the entry
        return value

    @field_validator("send_window")
    @classmethod
    def _send_window(cls, value: str) -> str:
        from cardsms.domain.schedule import SendWindow

        return str(SendWindow.parse(value))  # raises ValueError naming the rule

    @field_validator("smsc")
    @classmethod
    def _smsc_urls(cls, value: list[str | dict[str, Any]]) -> list[str | dict[str, Any]]:
        from cardsms.domain.connectors import parse_connectors

        parse_connectors(value, window=50, tps=0, system_type="")  # raises ValueError naming the entry
        return value

    @field_validator("digital")
    @classmethod
    def _digital_urls(cls, value: list[str | dict[str, Any]]) -> list[str | dict[str, Any]]:
        from cardsms.domain.connectors import parse_digital

        parse_digital(value)  # raises ValueError naming the entry
        return value

    @model_validator(mode="after")
    def _production_secret(self) -> Settings:
        raw = self.secret_key.get_secret_value()
        if self.env == "production":
            if raw.lower() in INSECURE_SECRET_KEYS:
                raise ValueError("CARDSMS_SECRET_KEY must be set to a random value in production "
                                 "(generate one with: python -c 'import secrets; print(secrets.token_urlsafe(48))')")
            if len(raw) < 32:
                raise ValueError("CARDSMS_SECRET_KEY must be at least 32 characters in production")
        return self

    @property
    def sqlalchemy_url(self) -> str:
        """The async SQLAlchemy URL (driver filled in)."""
        url = self.database_url
        if not url:
            return f"sqlite+aiosqlite:///{(self.data_dir / 'cardsms.db').resolve()}"
        if url.startswith("sqlite:"):
            return "sqlite+aiosqlite:" + url[len("sqlite:"):]
        for prefix in ("postgresql://", "postgres://", "postgresql+psycopg://", "postgresql+psycopg2://"):
            if url.startswith(prefix):
                return "postgresql+asyncpg://" + url[len(prefix):]
        return url

    @property
    def is_sqlite(self) -> bool:
        return self.sqlalchemy_url.startswith("sqlite")

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def link_base(self) -> str:
        return (self.link_base_url or f"{self.base_url}/s").rstrip("/")

    def resolved_parser_secret(self) -> str:
        """What vendor parsers' keys derive from (links/parsers.py)."""
        return self.parser_secret.get_secret_value() or "parser:" + self.resolved_secret_key()

    def resolved_secret_key(self) -> str:
        """The secret key; in development one is generated once into the data dir when none is set."""
        raw = self.secret_key.get_secret_value()
        if raw:
            return raw
        path = self.data_dir / "secret.key"
        if path.exists():
            return path.read_text().strip()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(key + "\n")
        return key

    @classmethod
    def describe(cls) -> list[dict[str, Any]]:
        """Name, default and help of every setting (docs/configuration.md is checked against it)."""
        out = []
        for name, f in cls.model_fields.items():
            default = f.default.get_secret_value() if isinstance(f.default, SecretStr) else f.default
            out.append({"env": f"CARDSMS_{name.upper()}", "default": default, "help": f.description or ""})
        return out
