"""Wire the services from settings (the embedded default uses the simulator's gateways)."""

from __future__ import annotations

from cardsms.crypto import Crypto
from cardsms.db.engine import make_engine, make_point_reader, make_writer
from cardsms.media.store import MediaStore
from cardsms.services.core import Services
from cardsms.settings import Settings
from cardsms.simulator.handsets import SimulatedHandsets, load_overrides
from cardsms.simulator.review import SimulatedReview


def build_services(settings: Settings) -> Services:
    overrides = load_overrides(settings.sim_handsets_csv) if settings.sim_handsets_csv else {}
    return Services(
        settings=settings,
        engine=make_engine(settings),
        crypto=Crypto(settings.resolved_secret_key()),
        reviewer=SimulatedReview(settings.sim_review_seconds, settings.sim_deny_list),
        handsets=SimulatedHandsets(settings.sim_card_share, overrides),
        media_store=MediaStore(settings.data_dir / "media"),
        point_reader=make_point_reader(settings),
        writer=make_writer(settings),
    )
