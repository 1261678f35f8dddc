"""The embedded default's network in one object: the simulated SMSC, the simulated digital channel and
the simulated handsets, started inside the server when no SMSC is configured (cardsms.compose hands it
to delivery as its `LocalNetwork`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cardsms.delivery.config import ConnectorConfig
from cardsms.delivery.smpp import Inbound
from cardsms.settings import Settings
from cardsms.simulator.digital import SimulatedDigitalChannel
from cardsms.simulator.phones import SimulatedPhones
from cardsms.simulator.smsc import SimulatedSmsc, SmscOptions
from cardsms.vendors.gateway import HandsetDirectory


def with_phones(options: SmscOptions, settings: Settings, handsets: HandsetDirectory, link_base: str
                ) -> tuple[SimulatedSmsc, SimulatedPhones]:
    """A simulated SMSC whose delivered messages reach simulated phones, which fetch their cards from links
    under `link_base` and reply through the SMSC."""
    phones = SimulatedPhones(handsets, link_base.rstrip("/"), settings.sim_open_share, settings.sim_reply_share)
    smsc = SimulatedSmsc(options, on_delivered=phones.on_delivered)
    phones.reply = smsc.send_mo
    return smsc, phones


class EmbeddedNetwork:
    def __init__(self, settings: Settings, handsets: HandsetDirectory) -> None:
        s = self.settings = settings
        self.smsc, self.phones = with_phones(SmscOptions(
            port=s.sim_smsc_port, latency_ms=s.sim_smsc_latency_ms, fail_share=s.sim_smsc_fail_share,
            throttle_share=s.sim_smsc_throttle_share, disconnect_every=s.sim_smsc_disconnect_every,
        ), settings, handsets, s.link_base)

    async def start(self, on_inbound: Callable[[Inbound], None]) -> tuple[ConnectorConfig, SimulatedDigitalChannel]:
        await self.smsc.start()
        s = self.settings
        config = ConnectorConfig(name="sim", host="127.0.0.1", port=self.smsc.port, system_id="cardsms",
                                 password="sim", window=s.smsc_window, tps=s.smsc_tps)
        return config, SimulatedDigitalChannel(s.sim_smsc_latency_ms, on_inbound)

    async def close_handsets(self) -> None:
        await self.phones.close()

    async def stop(self) -> None:
        await self.smsc.stop()

    def stats(self) -> dict[str, Any]:
        return self.smsc.stats()
