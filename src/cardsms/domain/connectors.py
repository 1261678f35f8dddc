"""Connector configuration: one URL per link, or a TOML table around one.

    smpp://SYSTEM_ID:PASSWORD@HOST:PORT          SMPP 3.4 in clear text
    smpps://SYSTEM_ID:PASSWORD@HOST:PORT         SMPP 3.4 over TLS (?ca=FILE&cert=FILE&key=FILE&verify=false)
    cmpp://SPID:SECRET@HOST:PORT?version=3.0     CMPP 3.0 or 2.0 (&service_id=&src_id=&encoding=ucs2|gbk)

Every scheme also takes `binds`, `window`, `tps` and `secret_file` (the password or shared secret read from
a file instead of the URL). A TOML table may carry `url`, `name`, `window`, `tps`, `system_type`, `binds` and
`prefixes` (E.164 prefixes such as "+86" this connector serves; empty = every number). Connectors are tried
in order, whatever their protocol: the first bound connector whose prefixes match takes the message, the
next is the failover.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

SCHEMES = {"smpp": "smpp", "smpps": "smpp", "cmpp": "cmpp"}
COMMON_OPTIONS = {"binds", "window", "tps", "secret_file", "receipts"}
RECEIPT_POLICIES = ("all", "first", "last", "any")  # which parts' receipts settle a long message
SCHEME_OPTIONS = {"smpp": set(), "smpps": {"ca", "cert", "key", "verify", "server_name"},
                  "cmpp": {"version", "service_id", "src_id", "encoding"}}
FORMS = {"smpp": "smpp://SYSTEM_ID:PASSWORD@HOST:PORT", "smpps": "smpps://SYSTEM_ID:PASSWORD@HOST:PORT",
         "cmpp": "cmpp://SPID:SECRET@HOST:PORT?version=3.0"}
CMPP_VERSIONS = {"2.0": 0x20, "3.0": 0x30}


@dataclass(frozen=True, slots=True)
class TlsOptions:
    ca_file: str = ""  # trust these CAs instead of the system's
    cert_file: str = ""  # a client certificate, for SMSCs that ask for one
    key_file: str = ""
    verify: bool = True  # false: accept any certificate (testing only; said so in the status)
    server_name: str = ""  # the name to check the certificate against; the host by default

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca_file or None)
        if not self.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.cert_file:
            ctx.load_cert_chain(self.cert_file, self.key_file or None)
        return ctx


@dataclass(frozen=True, slots=True)
class ConnectorConfig:
    name: str
    host: str
    port: int
    system_id: str  # SMPP system_id, or CMPP SP id (Source_Addr)
    password: str  # SMPP password, or CMPP shared secret
    window: int = 50
    tps: int = 0
    system_type: str = ""
    prefixes: tuple[str, ...] = field(default_factory=tuple)
    binds: int = 1  # scale-out: bind slots, one per worker (see delivery/leases.py)
    protocol: str = "smpp"  # smpp or cmpp
    tls: TlsOptions | None = None
    version: int = 0x30  # CMPP: 0x20 or 0x30
    service_id: str = ""  # CMPP Service_Id
    src_id: str = ""  # CMPP Src_Id (the SP's access number); the server's source address when empty
    encoding: str = "ucs2"  # CMPP: how non-ASCII text is sent, ucs2 or gbk
    receipts: str = "all"  # a long message is settled by every part's receipt, the first's, the last's, any one

    def serves(self, e164: str) -> bool:
        return not self.prefixes or any(e164.startswith(p) for p in self.prefixes)

    @property
    def scheme(self) -> str:
        if self.protocol == "cmpp":
            return f"cmpp {self.version >> 4}.{self.version & 0xF}"
        return "smpps" if self.tls is not None else "smpp"


def _number(raw: str, key: str, low: int, high: int, where: str) -> int:
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ValueError(f"{where}: {key} must be an integer {low}-{high}")
    return int(raw)


def _flag(raw: str, key: str, where: str) -> bool:
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{where}: {key} must be true or false")


def _readable(path: str, key: str, where: str) -> str:
    if not Path(path).is_file():
        raise ValueError(f"{where}: {key}={path} is not a readable file")
    return path


def _tls_options(query: dict[str, str], where: str) -> TlsOptions:
    """The TLS options of an smpps:// or mm7s:// URL."""
    if ("cert" in query) != ("key" in query):
        raise ValueError(f"{where}: a client certificate needs both cert= and key=")
    return TlsOptions(
        ca_file=_readable(query["ca"], "ca", where) if "ca" in query else "",
        cert_file=_readable(query["cert"], "cert", where) if "cert" in query else "",
        key_file=_readable(query["key"], "key", where) if "key" in query else "",
        verify=_flag(query.get("verify", "true"), "verify", where), server_name=query.get("server_name", ""))


def _secret(query: dict[str, str], in_url: str, where: str) -> str:
    """The secret: the URL's password, or the content of secret_file (not both)."""
    if "secret_file" not in query:
        return in_url
    if in_url:
        raise ValueError(f"{where}: give the password in the URL or secret_file, not both")
    try:
        return Path(query["secret_file"]).read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{where}: secret_file={query['secret_file']} cannot be read ({exc})") from None


def _prefixes(item: dict[str, Any], where: str) -> tuple[str, ...]:
    prefixes = item.get("prefixes", [])
    if not isinstance(prefixes, list) or not all(isinstance(p, str) and p.startswith("+") for p in prefixes):
        raise ValueError(f"{where}: prefixes must be a list of E.164 prefixes like \"+86\"")
    return tuple(prefixes)


def _split(url: str, where: str, schemes: tuple[str, ...] | dict[str, str], wrong_scheme: str, form: str
           ) -> tuple[Any, str, int, dict[str, str]]:
    """(parts, scheme, port, query) of a link URL; a ValueError naming the part that breaks a rule."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        raise ValueError(f"{where}: {wrong_scheme}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{where}: the port must be a number 1-65535") from None
    if not parts.hostname or not port:
        raise ValueError(f"{where}: host and port are required ({form})")
    return parts, scheme, port, {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}


def _check_options(query: dict[str, str], allowed: set[str], scheme: str, where: str) -> None:
    unknown = set(query) - allowed
    if unknown:
        raise ValueError(f"{where}: unknown URL options {sorted(unknown)} for {scheme}:// (allowed: {sorted(allowed)})")


def parse_url(url: str, where: str = "smsc") -> dict[str, Any]:
    """The fields of ConnectorConfig a URL sets (every rule broken is a ValueError naming the part)."""
    wrong = f"the scheme must be smpp://, smpps:// or cmpp:// ({FORMS['smpp']}, {FORMS['cmpp']})"
    form = FORMS.get(urlsplit(url.strip()).scheme.lower(), "")
    parts, scheme, port, query = _split(url, where, SCHEMES, wrong, form)
    _check_options(query, COMMON_OPTIONS | SCHEME_OPTIONS[scheme], scheme, where)
    user = unquote(parts.username or "")
    secret = _secret(query, unquote(parts.password or ""), where)
    out: dict[str, Any] = {"host": parts.hostname, "port": port, "system_id": user, "password": secret,
                           "protocol": SCHEMES[scheme]}
    for key, low, high in (("binds", 1, 64), ("window", 1, 1000), ("tps", 0, 100_000)):
        if key in query:
            out[key] = _number(query[key], key, low, high, where)
    if "receipts" in query:
        if query["receipts"] not in RECEIPT_POLICIES:
            raise ValueError(f"{where}: receipts must be one of {', '.join(RECEIPT_POLICIES)}, got "
                             f"{query['receipts'][:20]!r}")
        out["receipts"] = query["receipts"]
    if scheme == "cmpp":
        return {**out, **_cmpp_options(user, secret, query, where)}
    if not 1 <= len(user) <= 15:
        raise ValueError(f"{where}: SYSTEM_ID must be 1-15 characters")
    if len(secret) > 8:
        raise ValueError(f"{where}: an SMPP 3.4 password is at most 8 characters")
    if scheme == "smpps":
        out["tls"] = _tls_options(query, where)
    return out


def _cmpp_options(user: str, secret: str, query: dict[str, str], where: str) -> dict[str, Any]:
    if not 1 <= len(user) <= 6 or not user.isascii():
        raise ValueError(f"{where}: SPID (the CMPP Source_Addr) must be 1-6 ASCII characters")
    if len(secret.encode()) > 64:
        raise ValueError(f"{where}: the CMPP shared secret is at most 64 octets")
    version = query.get("version", "3.0")
    if version not in CMPP_VERSIONS:
        raise ValueError(f"{where}: version must be 2.0 or 3.0")
    out: dict[str, Any] = {"version": CMPP_VERSIONS[version]}
    for key, size in (("service_id", 10), ("src_id", 21)):
        value = query.get(key, "")
        if len(value) > size or not value.isascii():
            raise ValueError(f"{where}: {key} is at most {size} ASCII characters")
        out[key] = value
    if query.get("src_id") and not query["src_id"].isdigit():
        raise ValueError(f"{where}: src_id must be digits (the SP's access number)")
    encoding = query.get("encoding", "ucs2").lower()
    if encoding not in ("ucs2", "gbk"):
        raise ValueError(f"{where}: encoding must be ucs2 or gbk")
    out["encoding"] = encoding
    return out


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
            raise ValueError(f"{where}: url is required ({FORMS['smpp']} or {FORMS['cmpp']})")
        fields = parse_url(item["url"], where)
        prefixes = _prefixes(item, where)
        st = item.get("system_type", system_type)
        if not isinstance(st, str) or len(st) > 12:
            raise ValueError(f"{where}: system_type must be a string of at most 12 characters")
        name = str(item.get("name") or f"smsc{i}")
        if name in {c.name for c in out}:
            raise ValueError(f"{where}: connector name {name!r} is used twice")
        fields.update(
            window=_int(item, "window", fields.get("window", window), 1, 1000, where),
            tps=_int(item, "tps", fields.get("tps", tps), 0, 100_000, where),
            binds=_int(item, "binds", fields.get("binds", 1), 1, 64, where))
        out.append(ConnectorConfig(name=name, system_type=st, prefixes=prefixes, **fields))
    return out


# --- digital (multimedia) links: MM7 to a carrier's MMSC ---------------------------------------------------
#
#   mm7://VASPID:SECRET@HOST:PORT/PATH?vasid=...&service_code=...&schema=REL-6-MM7-1-4    MM7 over HTTP
#   mm7s://VASPID:SECRET@HOST:PORT/PATH?...&ca=FILE&cert=FILE&key=FILE&verify=false       MM7 over HTTPS
#
# Options: vasid (VASID), service_code (the SenderAddress short code and ServiceCode), schema (REL-5-MM7-1-x
# or REL-6-MM7-1-x, which sets the namespace and MM7Version), version (MM7Version, when a gateway wants
# another), tps (submits per second, 0 = unlimited), concurrency (requests on their way at once), timeout
# (seconds for one whole request), secret_file, allow (comma-separated source networks allowed to post
# reports and replies to this link's inbound path; empty = any). A TOML [[digital]] table may add name and
# prefixes, as for SMS links; links are tried in order (failover).

DIGITAL_SCHEMES = ("mm7", "mm7s")
DIGITAL_OPTIONS = {"vasid", "service_code", "schema", "version", "tps", "concurrency", "timeout", "secret_file",
                   "allow"}
DIGITAL_FORM = "mm7://VASPID:SECRET@HOST:PORT/PATH?vasid=...&service_code=..."


@dataclass(frozen=True, slots=True)
class DigitalConfig:
    name: str
    endpoint: str  # http(s)://HOST:PORT/PATH of the MMSC's MM7 service
    vasp_id: str
    secret: str
    vas_id: str = ""
    service_code: str = ""
    schema: str = "REL-6-MM7-1-4"
    version: str = ""
    tps: int = 0
    concurrency: int = 8
    timeout: float = 30.0
    prefixes: tuple[str, ...] = field(default_factory=tuple)
    allow: tuple[str, ...] = field(default_factory=tuple)  # source networks of inbound reports; empty = any
    tls: TlsOptions | None = None

    def serves(self, e164: str) -> bool:
        return not self.prefixes or any(e164.startswith(p) for p in self.prefixes)

    @property
    def scheme(self) -> str:
        return "mm7s" if self.tls is not None else "mm7"


def parse_digital_url(url: str, where: str = "digital") -> dict[str, Any]:
    """The fields of DigitalConfig an mm7:// or mm7s:// URL sets (a ValueError naming the part otherwise)."""
    parts, scheme, _, query = _split(url, where, DIGITAL_SCHEMES,
                                     f"the scheme must be mm7:// or mm7s:// ({DIGITAL_FORM})", DIGITAL_FORM)
    tls_keys = {"ca", "cert", "key", "verify", "server_name"}
    _check_options(query, DIGITAL_OPTIONS | (tls_keys if scheme == "mm7s" else set()), scheme, where)
    vasp_id = unquote(parts.username or "")
    if not 1 <= len(vasp_id) <= 64:
        raise ValueError(f"{where}: VASPID (the URL's user) must be 1-64 characters")
    secret = _secret(query, unquote(parts.password or ""), where)
    out: dict[str, Any] = {
        "endpoint": f"{'https' if scheme == 'mm7s' else 'http'}://{parts.netloc.rsplit('@', 1)[-1]}{parts.path or '/'}",
        "vasp_id": vasp_id, "secret": secret, "vas_id": query.get("vasid", ""),
        "service_code": query.get("service_code", ""), **_mm7_options(query, where)}
    for key, low, high in (("tps", 0, 100_000), ("concurrency", 1, 1000)):
        if key in query:
            out[key] = _number(query[key], key, low, high, where)
    if scheme == "mm7s":
        out["tls"] = _tls_options(query, where)
    return out


def _mm7_options(query: dict[str, str], where: str) -> dict[str, Any]:
    """schema, version, allow and timeout of an MM7 link, checked (vasid and service_code too)."""
    import ipaddress
    import re

    schema = query.get("schema", "REL-6-MM7-1-4")
    if not re.fullmatch(r"REL-[56]-MM7-1-[0-9]", schema):
        raise ValueError(f"{where}: schema must name an MM7 schema such as REL-6-MM7-1-4 or REL-5-MM7-1-0")
    version = query.get("version", "")
    if version and not re.fullmatch(r"[0-9]\.[0-9]{1,2}\.[0-9]{1,2}", version):
        raise ValueError(f"{where}: version must be an MM7Version such as 6.8.0")
    for key in ("vasid", "service_code"):
        if len(query.get(key, "")) > 64:
            raise ValueError(f"{where}: {key} is at most 64 characters")
    if query.get("service_code") and not query["service_code"].isdigit():
        raise ValueError(f"{where}: service_code must be digits (the SP's access number)")
    allow: list[str] = []
    for net in filter(None, (n.strip() for n in query.get("allow", "").split(","))):
        try:
            allow.append(str(ipaddress.ip_network(net, strict=False)))
        except ValueError:
            raise ValueError(f"{where}: allow: {net!r} is not an address or network") from None
    try:
        seconds = float(query.get("timeout", "30"))
    except ValueError:
        seconds = -1.0
    if not 0.5 <= seconds <= 600:
        raise ValueError(f"{where}: timeout must be a number of seconds 0.5-600")
    return {"schema": schema, "version": version, "allow": tuple(allow), "timeout": seconds}


def parse_digital(entries: list[str | dict[str, Any]]) -> list[DigitalConfig]:
    out: list[DigitalConfig] = []
    for i, entry in enumerate(entries, 1):
        where = f"digital[{i}]"
        item: dict[str, Any] = {"url": entry} if isinstance(entry, str) else dict(entry)
        unknown = set(item) - {"url", "name", "tps", "concurrency", "prefixes"}
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
        if not isinstance(item.get("url"), str):
            raise ValueError(f"{where}: url is required ({DIGITAL_FORM})")
        fields = parse_digital_url(item["url"], where)
        prefixes = _prefixes(item, where)
        name = str(item.get("name") or f"mm7-{i}")
        if name in {c.name for c in out}:
            raise ValueError(f"{where}: link name {name!r} is used twice")
        if not name.replace("-", "").replace("_", "").isalnum() or len(name) > 32:
            raise ValueError(f"{where}: name must be 1-32 letters, digits, - or _ (it is part of the inbound path)")
        fields.update(tps=_int(item, "tps", fields.get("tps", 0), 0, 100_000, where),
                      concurrency=_int(item, "concurrency", fields.get("concurrency", 8), 1, 1000, where))
        out.append(DigitalConfig(name=name, prefixes=prefixes, **fields))
    return out
