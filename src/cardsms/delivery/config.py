"""Connector configuration: `smpp://SYSTEM_ID:PASSWORD@HOST:PORT` URLs or TOML tables.

A TOML table may carry `url`, `name`, `window`, `tps`, `system_type`, `binds` and `prefixes` (E.164
prefixes such as "+86" this connector serves; empty = every number). Connectors are tried in
order: the first bound connector whose prefixes match takes the message, the next is the
failover.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass(frozen=True, slots=True)
class ConnectorConfig:
    name: str
    host: str
    port: int
    system_id: str
    password: str
    window: int = 50
    tps: int = 0
    system_type: str = ""
    prefixes: tuple[str, ...] = field(default_factory=tuple)
    binds: int = 1  # scale-out: bind slots, one per worker (see delivery/leases.py)

    def serves(self, e164: str) -> bool:
        return not self.prefixes or any(e164.startswith(p) for p in self.prefixes)


def parse_url(url: str) -> tuple[str, int, str, str]:
    parts = urlsplit(url.strip())
    if parts.scheme != "smpp":
        raise ValueError(f"{url!r}: the scheme must be smpp:// (smpp://SYSTEM_ID:PASSWORD@HOST:PORT)")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{url!r}: the port must be a number 1-65535") from None
    if not parts.hostname or not port:
        raise ValueError(f"{url!r}: host and port are required (smpp://SYSTEM_ID:PASSWORD@HOST:PORT)")
    system_id = unquote(parts.username or "")
    if not 1 <= len(system_id) <= 15:
        raise ValueError(f"{url!r}: SYSTEM_ID must be 1-15 characters")
    password = unquote(parts.password or "")
    if len(password) > 8:
        raise ValueError(f"{url!r}: an SMPP 3.4 password is at most 8 characters")
    return parts.hostname, port, system_id, password


def _url_binds(url: str, where: str) -> int:
    """`?binds=N` on a connector URL: how many workers may bind it at once."""
    query = parse_qs(urlsplit(url).query)
    unknown = set(query) - {"binds"}
    if unknown:
        raise ValueError(f"{where}: unknown URL parameters {sorted(unknown)} (only binds=N)")
    raw = query.get("binds", ["1"])[0]
    if not raw.isdigit() or not 1 <= int(raw) <= 64:
        raise ValueError(f"{where}: binds must be an integer 1-64")
    return int(raw)


def _int(entry: dict[str, Any], key: str, default: int, low: int, high: int, where: str) -> int:
    value = entry.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{where}: {key} must be an integer {low}-{high}")
    return value


def parse_connectors(entries: list[str | dict[str, Any]], window: int, tps: int, system_type: str
                     ) -> list[ConnectorConfig]:
    out: list[ConnectorConfig] = []
    for i, entry in enumerate(entries, 1):
        where = f"smsc[{i}]"
        item: dict[str, Any] = {"url": entry} if isinstance(entry, str) else dict(entry)
        unknown = set(item) - {"url", "name", "window", "tps", "system_type", "prefixes", "binds"}
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
        if not isinstance(item.get("url"), str):
            raise ValueError(f"{where}: url is required (smpp://SYSTEM_ID:PASSWORD@HOST:PORT)")
        host, port, system_id, password = parse_url(item["url"])
        prefixes = item.get("prefixes", [])
        if not isinstance(prefixes, list) or not all(isinstance(p, str) and p.startswith("+") for p in prefixes):
            raise ValueError(f"{where}: prefixes must be a list of E.164 prefixes like \"+86\"")
        st = item.get("system_type", system_type)
        if not isinstance(st, str) or len(st) > 12:
            raise ValueError(f"{where}: system_type must be a string of at most 12 characters")
        name = str(item.get("name") or f"smsc{i}")
        if name in {c.name for c in out}:
            raise ValueError(f"{where}: connector name {name!r} is used twice")
        out.append(ConnectorConfig(
            name=name, host=host, port=port, system_id=system_id, password=password,
            window=_int(item, "window", window, 1, 1000, where), tps=_int(item, "tps", tps, 0, 100_000, where),
            system_type=st, prefixes=tuple(prefixes), binds=_int(item, "binds", _url_binds(item["url"], where), 1, 64,
                                                                 where),
        ))
    return out
