"""The embedded default's network in one object: the simulated SMSC (or ISMG), the simulated MMSC (spoken to
over MM7 on loopback, its reports coming back to this server's /mm7/sim-mm7 like a carrier's) and the
simulated handsets, started inside the server when no SMSC is configured (cardsms.compose hands it to
delivery as its `LocalNetwork`)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
from collections.abc import Callable, Iterator
from typing import Any

from cardsms.delivery.connector import Inbound
from cardsms.domain.connectors import ConnectorConfig, DigitalConfig
from cardsms.settings import Settings
from cardsms.simulator.center import SimulatedCenter, SmscOptions
from cardsms.simulator.ismg import SimulatedIsmg
from cardsms.simulator.mmsc import MmscOptions, SimulatedMmsc
from cardsms.simulator.phones import SimulatedPhones
from cardsms.simulator.smsc import SimulatedSmsc
from cardsms.vendors.gateway import HandsetDirectory

CENTRES: dict[str, type[SimulatedCenter]] = {"smpp": SimulatedSmsc, "cmpp": SimulatedIsmg}
SIM_MM7 = "sim-mm7"  # the embedded MMSC's link: its reports come to /mm7/sim-mm7


def with_phones(options: SmscOptions, settings: Settings, handsets: HandsetDirectory, link_base: str,
                protocol: str = "smpp") -> tuple[SimulatedCenter, SimulatedPhones]:
    """A simulated SMSC (or ISMG) whose delivered messages reach simulated phones, which fetch their cards
    from links under `link_base` and reply through it."""
    phones = SimulatedPhones(handsets, link_base.rstrip("/"), settings.sim_open_share, settings.sim_reply_share,
                             parser_secret=settings.resolved_parser_secret())
    centre = CENTRES[protocol](options, on_delivered=phones.on_delivered)
    phones.reply = centre.send_mo
    return centre, phones


class EmbeddedNetwork:
    def __init__(self, settings: Settings, handsets: HandsetDirectory) -> None:
        s = self.settings = settings
        self.protocol = "cmpp" if s.sim_protocol.startswith("cmpp") else "smpp"
        # the embedded ISMG checks the authenticator both ways, with a secret made for this run
        self.secret = secrets.token_hex(8) if self.protocol == "cmpp" else ""
        self.smsc, self.phones = with_phones(SmscOptions(
            port=s.sim_smsc_port, latency_ms=s.sim_smsc_latency_ms, fail_share=s.sim_smsc_fail_share,
            throttle_share=s.sim_smsc_throttle_share, disconnect_every=s.sim_smsc_disconnect_every,
            sp_id="901234" if self.protocol == "cmpp" else "", secret=self.secret,
        ), settings, handsets, s.link_base, self.protocol)

    async def start(self, on_inbound: Callable[[Inbound], None]) -> tuple[ConnectorConfig, DigitalConfig]:
        await self.smsc.start()
        s = self.settings
        if self.protocol == "cmpp":
            config = ConnectorConfig(name="sim", host="127.0.0.1", port=self.smsc.port, system_id="901234",
                                     password=self.secret, window=s.smsc_window, tps=s.smsc_tps, protocol="cmpp",
                                     version=0x20 if s.sim_protocol == "cmpp2" else 0x30, service_id="CARDSMS")
        else:
            config = ConnectorConfig(name="sim", host="127.0.0.1", port=self.smsc.port, system_id="cardsms",
                                     password="sim", window=s.smsc_window, tps=s.smsc_tps)
        return config, await self._start_mmsc()

    async def _start_mmsc(self) -> DigitalConfig:
        """The simulated MMSC on a loopback port of its own, reporting to this server's MM7 inbound path with
        credentials made for this run."""
        import uvicorn

        class QuietServer(uvicorn.Server):  # the process's own server handles the signals
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                yield

        s = self.settings
        secret = secrets.token_hex(12)
        host = "127.0.0.1" if s.host in ("", "0.0.0.0", "::") else s.host
        host = f"[{host}]" if ":" in host else host
        self.mmsc = SimulatedMmsc(MmscOptions(
            vasp_id="cardsms", secret=secret, report_url=f"http://{host}:{s.port}/mm7/{SIM_MM7}",
            report_user="cardsms", report_secret=secret, latency_ms=s.sim_smsc_latency_ms))
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
        self._mmsc_server = QuietServer(uvicorn.Config(self.mmsc.app(), log_config=None, access_log=False,
                                                       lifespan="off"))
        self._mmsc_task = asyncio.create_task(self._mmsc_server.serve(sockets=[sock]), name="sim-mmsc")
        while not self._mmsc_server.started:
            if self._mmsc_task.done():
                self._mmsc_task.result()  # raises what stopped it
                raise RuntimeError("the embedded MMSC stopped before it listened")
            await asyncio.sleep(0.01)
        return DigitalConfig(name=SIM_MM7, endpoint=f"http://127.0.0.1:{port}/mm7", vasp_id="cardsms",
                             secret=secret, service_code=s.smsc_source_addr if s.smsc_source_addr.isdigit() else "",
                             allow=("127.0.0.0/8", "::1/128"))

    async def close_handsets(self) -> None:
        await self.phones.close()

    async def stop(self) -> None:
        await self.smsc.stop()
        if getattr(self, "_mmsc_server", None) is not None:
            self._mmsc_server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._mmsc_task, 5)
            await self.mmsc.close()

    def stats(self) -> dict[str, Any]:
        return self.smsc.stats()
