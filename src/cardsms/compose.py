"""The composition root: the one module that builds a process from settings and decides which parts
are real and which simulated. services/ and delivery/ receive interfaces (a ReviewGateway, a
HandsetDirectory, a LocalNetwork) and import nothing from simulator/.

Today the reviewer and the handset directory are always the simulator's (no real vendor gateway
exists yet), and the SMSC (or ISMG: CARDSMS_SIM_PROTOCOL), digital channel and handsets run inside the
process when no SMSC is configured (the embedded default). The connectors for configured links are
chosen by their URL's scheme in delivery/runtime.py (`open_connector`): they are real parts only."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cardsms.crypto import Crypto
from cardsms.db.engine import make_engine, make_point_reader, make_writer
from cardsms.media.store import MediaStore
from cardsms.services.core import Services
from cardsms.settings import Settings
from cardsms.simulator.handsets import SimulatedHandsets, load_overrides
from cardsms.simulator.review import SimulatedReview

if TYPE_CHECKING:  # the delivery side is imported by the processes that run it, not by every CLI command
    from cardsms.delivery.runtime import Delivery
    from cardsms.simulator.center import SimulatedCenter
    from cardsms.simulator.phones import SimulatedPhones


def _handsets(settings: Settings) -> SimulatedHandsets:
    overrides = load_overrides(settings.sim_handsets_csv) if settings.sim_handsets_csv else {}
    return SimulatedHandsets(settings.sim_card_share, overrides)


def build_services(settings: Settings) -> Services:
    return Services(
        settings=settings,
        engine=make_engine(settings),
        crypto=Crypto(settings.resolved_secret_key()),
        reviewer=SimulatedReview(settings.sim_review_seconds, settings.sim_deny_list),
        handsets=_handsets(settings),
        media_store=MediaStore(settings.data_dir / "media"),
        point_reader=make_point_reader(settings),
        writer=make_writer(settings),
    )


def build_delivery(svc: Services) -> Delivery:
    """The delivery side of a process: the configured SMSCs, or the simulated network inside the process."""
    from cardsms.delivery.runtime import Delivery
    from cardsms.simulator.network import EmbeddedNetwork

    local = None if svc.settings.smsc else EmbeddedNetwork(svc.settings, svc.handsets)
    return Delivery(svc, local)


def standalone_centre(settings: Settings, protocol: str, phones_link_base: str = "", **options: Any
                      ) -> tuple[SimulatedCenter, SimulatedPhones | None]:
    """`cardsms simulator smsc` (protocol "smpp") and `cardsms simulator ismg` ("cmpp"): the simulator on its
    own (SmscOptions as keywords), with simulated phones fetching from `phones_link_base` when given."""
    from cardsms.simulator.center import SmscOptions
    from cardsms.simulator.network import CENTRES, with_phones

    if not phones_link_base:
        return CENTRES[protocol](SmscOptions(**options)), None
    return with_phones(SmscOptions(**options), settings, _handsets(settings), phones_link_base, protocol)
