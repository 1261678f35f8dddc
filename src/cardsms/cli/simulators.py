"""The simulator's parts standalone: `cardsms simulator smsc|ismg|mmsc`."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from pathlib import Path
from typing import Annotated, Any

import typer

from cardsms.cli.common import app, fail, load_settings, out, run_server
from cardsms.compose import standalone_centre

sim_app = typer.Typer(help="The simulator's parts, standalone.", no_args_is_help=True)
app.add_typer(sim_app, name="simulator")


Port = Annotated[int, typer.Option(help="listen port", min=1, max=65535)]
Host = Annotated[str, typer.Option(help="listen address")]
LatencyMs = Annotated[int, typer.Option(help="delivery receipt latency", min=0)]
FailShare = Annotated[int, typer.Option(help="percent of numbers that fail (UNDELIV)", min=0, max=100)]
DisconnectEvery = Annotated[int, typer.Option(help="drop connections after every N submits (0 = never)", min=0)]
SimLog = Annotated[Path | None, typer.Option("--log", help="append every accepted submit as JSON")]
Phones = Annotated[str, typer.Option(
    help="simulate the handsets too: card phones fetch their cards from links under this base URL (the "
         "server's short-link base, e.g. http://127.0.0.1:8080/s), some open them or reply R "
         "(CARDSMS_SIM_CARD_SHARE, CARDSMS_SIM_OPEN_SHARE, CARDSMS_SIM_REPLY_SHARE)")]
TlsCert = Annotated[Path | None, typer.Option(help="serve TLS with this certificate chain (PEM)")]
TlsKey = Annotated[Path | None, typer.Option(help="the private key of --tls-cert (PEM)")]
TlsClientCa = Annotated[Path | None, typer.Option(help="require client certificates signed by this CA (PEM)")]


def _check_tls_flags(tls_cert: Path | None, tls_key: Path | None, tls_client_ca: Path | None) -> None:
    """A simulator's TLS options: the certificate and key together, readable files."""
    if (tls_cert is None) != (tls_key is None):
        raise fail("--tls-cert and --tls-key: give both or neither")
    if tls_client_ca is not None and tls_cert is None:
        raise fail("--tls-client-ca: needs --tls-cert and --tls-key")
    for flag, path in (("--tls-cert", tls_cert), ("--tls-key", tls_key), ("--tls-client-ca", tls_client_ca)):
        if path is not None and not path.is_file():
            raise fail(f"{flag}: {path} is not a readable file")


def _run_centre(protocol: str, what: str, phones: str, tls_cert: Path | None, tls_key: Path | None,
                tls_client_ca: Path | None, **options: Any) -> None:
    from cardsms.logs import configure_logging

    settings = load_settings()
    configure_logging(settings)
    if phones and not phones.startswith(("http://", "https://")):
        raise fail(f"--phones: must be the http(s) base URL of the server's short links, got {phones!r}")
    _check_tls_flags(tls_cert, tls_key, tls_client_ca)
    if options.get("receipt_parts", "all") not in ("all", "first", "last"):
        raise fail(f"--receipts: all, first or last, got {options['receipt_parts']!r}")

    async def _main() -> None:
        try:
            centre, handset_phones = standalone_centre(settings, protocol, phones, tls_cert=tls_cert, tls_key=tls_key,
                                                       tls_client_ca=tls_client_ca, **options)
            await centre.start()
        except (OSError, ValueError) as exc:  # a bad certificate or key, a port in use
            raise fail(f"cannot start the simulated {what}: {exc}") from None
        tls = " (TLS)" if tls_cert is not None else ""
        out.print(f"simulated {what} listening on {options['host']}:{centre.port}{tls}", highlight=False)
        try:
            await asyncio.Event().wait()
        finally:
            await centre.stop()
            if handset_phones is not None:
                await handset_phones.close()

    with contextlib.suppress(KeyboardInterrupt):
        run_server(_main, settings)


ReceiptParts = Annotated[str, typer.Option("--receipts", help="long messages: a receipt for every part (all), or "
                                                             "for the first or the last part only, as many SMSCs do")]


@sim_app.command("smsc")
def simulator_smsc(
    port: Port = 2775,
    host: Host = "127.0.0.1",
    latency_ms: LatencyMs = 50,
    fail_share: FailShare = 0,
    throttle_share: Annotated[int, typer.Option(help="percent of submit_sm answered ESME_RTHROTTLED",
                                                min=0, max=100)] = 0,
    disconnect_every: DisconnectEvery = 0,
    log_file: SimLog = None,
    bind_tps: Annotated[int, typer.Option(help="submit_sm per second each bind may send; more are answered "
                                               "ESME_RTHROTTLED (0 = no limit)", min=0)] = 0,
    phones: Phones = "",
    tls_cert: TlsCert = None,
    tls_key: TlsKey = None,
    tls_client_ca: TlsClientCa = None,
    receipts: ReceiptParts = "all",
) -> None:
    """Run the simulated SMSC (SMPP 3.4) alone: any ESME may bind; receipts follow every accepted message."""
    _run_centre("smpp", "SMSC", phones, tls_cert, tls_key, tls_client_ca, host=host, port=port,
                latency_ms=latency_ms, fail_share=fail_share, throttle_share=throttle_share,
                disconnect_every=disconnect_every, log_path=log_file, bind_tps=bind_tps, receipt_parts=receipts)


@sim_app.command("ismg")
def simulator_ismg(
    port: Port = 7890,
    host: Host = "127.0.0.1",
    sp_id: Annotated[str, typer.Option(help="accept only this SP id (any when not given)")] = "",
    secret: Annotated[str, typer.Option(help="check CMPP_CONNECT's authenticator with this shared secret and "
                                             "prove it back (any secret accepted when not given)")] = "",
    latency_ms: LatencyMs = 50,
    fail_share: FailShare = 0,
    throttle_share: Annotated[int, typer.Option(help="percent of CMPP_SUBMIT answered with result 8 (too fast)",
                                                min=0, max=100)] = 0,
    disconnect_every: DisconnectEvery = 0,
    log_file: SimLog = None,
    bind_tps: Annotated[int, typer.Option(help="CMPP_SUBMIT per second each connection may send; more are "
                                               "answered with result 8 (0 = no limit)", min=0)] = 0,
    phones: Phones = "",
    tls_cert: TlsCert = None,
    tls_key: TlsKey = None,
    tls_client_ca: TlsClientCa = None,
    receipts: ReceiptParts = "all",
) -> None:
    """Run the simulated ISMG (CMPP 2.0 and 3.0) alone: status reports follow every accepted message."""
    if sp_id and not (len(sp_id) <= 6 and sp_id.isascii()):
        raise fail("--sp-id: the CMPP SP id (Source_Addr) is 1-6 ASCII characters")
    _run_centre("cmpp", "ISMG", phones, tls_cert, tls_key, tls_client_ca, host=host, port=port, sp_id=sp_id,
                secret=secret, latency_ms=latency_ms, fail_share=fail_share, throttle_share=throttle_share,
                disconnect_every=disconnect_every, log_path=log_file, bind_tps=bind_tps, receipt_parts=receipts)


ReportUrl = Annotated[str, typer.Option(help="where delivery reports and replies go: the VASP's MM7 inbound URL, "
                                             "e.g. http://127.0.0.1:8080/mm7/mm7-1")]
ReportUser = Annotated[str, typer.Option(help="Basic user (the VASPID) for --report-url")]
ReportSecret = Annotated[str, typer.Option(help="Basic password for --report-url")]
VaspId = Annotated[str, typer.Option(help="accept only this VASPID (any when not given)")]
VaspSecret = Annotated[str, typer.Option(help="the secret --vasp-id must authenticate with")]
ExpireShare = Annotated[int, typer.Option(help="percent of numbers whose message expires", min=0, max=100)]
NoMmsShare = Annotated[int, typer.Option(help="percent of numbers whose handsets take no MMS (Rejected)",
                                         min=0, max=100)]
Mm7ThrottleShare = Annotated[int, typer.Option(help="percent of SubmitReq answered 4006 (service unavailable)",
                                               min=0, max=100)]
ReplyText = Annotated[str, typer.Option(help="recipients reply this text (a DeliverReq) after retrieving")]
ReplyShare = Annotated[int, typer.Option(help="percent of recipients who reply", min=0, max=100)]
ReportLog = Annotated[Path | None, typer.Option(help="append every report the VASP acknowledged as JSON")]
ReportFirst = Annotated[bool, typer.Option(help="post each report (and wait for its first answer) before the "
                                                "SubmitRsp goes out: a report that overtakes its answer")]


@sim_app.command("mmsc")
def simulator_mmsc(
    port: Port = 8099, host: Host = "127.0.0.1", report_url: ReportUrl = "", report_user: ReportUser = "",
    report_secret: ReportSecret = "", vasp_id: VaspId = "", secret: VaspSecret = "", latency_ms: LatencyMs = 50,
    fail_share: FailShare = 0, expire_share: ExpireShare = 0, no_mms_share: NoMmsShare = 0,
    throttle_share: Mm7ThrottleShare = 0, reply_text: ReplyText = "", reply_share: ReplyShare = 100,
    log_file: SimLog = None, report_log: ReportLog = None, report_first: ReportFirst = False,
    tls_cert: TlsCert = None, tls_key: TlsKey = None, tls_client_ca: TlsClientCa = None,
) -> None:
    """Run the simulated MMSC (MM7, REL-5 and REL-6 schemas) alone: delivery reports follow every submit."""
    from cardsms.logs import configure_logging
    from cardsms.simulator.mmsc import MmscOptions, SimulatedMmsc

    if report_url and not report_url.startswith(("http://", "https://")):
        raise fail(f"--report-url: must be an http(s) URL, got {report_url!r}")
    if bool(vasp_id) != bool(secret):
        raise fail("--vasp-id and --secret: give both or neither")
    _check_tls_flags(tls_cert, tls_key, tls_client_ca)
    settings = load_settings()
    configure_logging(settings)
    mmsc = SimulatedMmsc(MmscOptions(
        host=host, port=port, vasp_id=vasp_id, secret=secret, report_url=report_url, report_user=report_user,
        report_secret=report_secret, latency_ms=latency_ms, fail_share=fail_share, expire_share=expire_share,
        no_mms_share=no_mms_share, throttle_share=throttle_share, reply_text=reply_text, reply_share=reply_share,
        log_path=log_file, report_log_path=report_log, report_first=report_first))
    tls: dict[str, Any] = {}
    if tls_cert is not None:
        tls = {"ssl_certfile": str(tls_cert), "ssl_keyfile": str(tls_key)}
        if tls_client_ca is not None:
            tls.update(ssl_ca_certs=str(tls_client_ca), ssl_cert_reqs=ssl.CERT_REQUIRED)
    with contextlib.suppress(KeyboardInterrupt):
        run_server(lambda: _serve_mmsc(mmsc, host, port, tls), settings)


async def _serve_mmsc(mmsc: Any, host: str, port: int, tls: dict[str, Any]) -> None:
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(mmsc.app(), host=host, port=port, log_config=None, access_log=False,
                                           **tls))
    serving = asyncio.create_task(server.serve())
    while not server.started and not serving.done():
        await asyncio.sleep(0.05)
    if serving.done():
        raise fail(f"cannot start the simulated MMSC on {host}:{port} (is the port in use?)")
    out.print(f"simulated MMSC listening on {host}:{port}{' (TLS)' if tls else ''}", highlight=False)
    try:
        await serving
    finally:
        await mmsc.close()
