"""The dispatcher claims verification codes before notifications before promotional messages, and a
claim commits `submitting` before anything is sent (so recovery flags exactly those rows)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from cardsms.db.schema import messages
from cardsms.delivery.digital import NoDigitalChannel
from cardsms.delivery.dispatcher import Dispatcher
from cardsms.domain.numbers import normalise_number
from cardsms.services.core import Services
from cardsms.services.outbox import Outbox
from tests.conftest import BACKENDS, with_services


@pytest.mark.parametrize("backend", BACKENDS)
def test_claims_follow_priority_and_recovery_flags_in_flight_rows(tmp_path: Path, backend: str,
                                                                  request: pytest.FixtureRequest) -> None:
    with_services(backend, request, tmp_path, _claims_and_recovery)


async def _claims_and_recovery(svc: Services) -> None:
    box = Outbox(svc, account_id=1)
    for priority, phone in ((2, "13800000002"), (1, "13800000001"), (0, "13800000000"), (2, "13800000003")):
        box.add(biz_id="b", channel="digital", number=normalise_number(phone), content="x", priority=priority)
    async with svc.hold_writer() as conn:
        await box.write(conn)
    dispatcher = Dispatcher(svc, [], NoDigitalChannel())
    first = await dispatcher.claim(2)
    assert [r["priority"] for r in first] == [0, 1]
    second = await dispatcher.claim(10)
    assert [r["e164"] for r in second] == ["+8613800000002", "+8613800000003"]  # then oldest first
    assert await dispatcher.claim(10) == []
    # the process "dies" with all four claimed: recovery queues them again, flagged
    assert await dispatcher.recover() == 4
    async with svc.engine.connect() as conn:
        rows = (await conn.execute(select(messages.c.state, messages.c.possible_duplicate))).all()
    assert {tuple(r) for r in rows} == {("queued", True)}
