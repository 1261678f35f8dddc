"""The embedded default's network in one object: the simulated SMSC (or ISMG), the simulated digital
channel and the simulated handsets, started inside the server when no SMSC is configured
(cardsms.compose hands it to delivery as its `LocalNetwork`)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from cardsms.delivery.config import ConnectorConfig
from cardsms.delivery.connector import Inbound
from cardsms.settings import Settings
from cardsms.simulator.center import SimulatedCenter, SmscOptions
from cardsms.simulator.digital import SimulatedDigitalChannel
from cardsms.simulator.ismg import SimulatedIsmg
from cardsms.simulator.phones import SimulatedPhones
from cardsms.simulator.smsc import SimulatedSmsc
from cardsms.vendors.gateway import HandsetDirectory

CENTRES: dict[str, type[SimulatedCenter]] = {"smpp": SimulatedSmsc, "cmpp": SimulatedIsmg}


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

    async def start(self, on_inbound: Callable[[Inbound], None]) -> tuple[ConnectorConfig, SimulatedDigitalChannel]:
        await self.smsc.start()
        s = self.settings
        if self.protocol == "cmpp":
            config = ConnectorConfig(name="sim", host="127.0.0.1", port=self.smsc.port, system_id="901234",
                                     password=self.secret, window=s.smsc_window, tps=s.smsc_tps, protocol="cmpp",
                                     version=0x20 if s.sim_protocol == "cmpp2" else 0x30, service_id="CARDSMS")
        else:
            config = ConnectorConfig(name="sim", host="127.0.0.1", port=self.smsc.port, system_id="cardsms",
                                     password="sim", window=s.smsc_window, tps=s.smsc_tps)
        return config, SimulatedDigitalChannel(s.sim_smsc_latency_ms, on_inbound)

    async def close_handsets(self) -> None:
        await self.phones.close()

    async def stop(self) -> None:
        await self.smsc.stop()

    def stats(self) -> dict[str, Any]:
        return self.smsc.stats()
