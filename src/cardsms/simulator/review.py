"""The simulated vendor (and carrier) review: decides after a configurable delay, rejecting
content that hits the deny-list and cards that do not identify their sender."""

from __future__ import annotations

from collections.abc import Iterable

from cardsms.vendors.gateway import ReviewRequest, ReviewState, Verdict


class SimulatedReview:
    def __init__(self, delay_seconds: float, deny_list: Iterable[str]) -> None:
        self._delay = delay_seconds
        self.deny_list = tuple(w.lower() for w in deny_list if w.strip())

    def delay_seconds(self) -> float:
        return self._delay

    async def decide(self, request: ReviewRequest) -> Verdict:
        for text in request.texts:
            low = text.lower()
            for word in self.deny_list:
                if word in low:
                    who = request.vendor or "carrier"
                    return Verdict(ReviewState.REJECTED, f"{who}: content hits prohibited term {word!r}")
        return Verdict(ReviewState.APPROVED)
