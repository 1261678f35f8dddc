"""API signature nonces on PostgreSQL, shared by every `cardsms api` process (a request replayed to another
process is refused too). Each is kept until its request's timestamp plus the allowed skew."""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from cardsms.db.schema import api_nonces
from cardsms.services.core import Services


async def remember(svc: Services, key_id: str, nonce: str, expires_at: datetime) -> bool:
    """True when the nonce is fresh (and now stored until `expires_at`); False when it was used already."""
    token = hashlib.sha256(f"{key_id}\x00{nonce}".encode()).hexdigest()
    now = svc.now()
    purge = svc.nonce_purge.due()  # now and then this process removes the expired ones

    async def store(conn: AsyncConnection) -> bool:
        if purge:
            await conn.execute(delete(api_nonces).where(api_nonces.c.expires_at <= now))
        result = await conn.execute(insert(api_nonces).values(token=token, expires_at=expires_at)
                                    .on_conflict_do_nothing())
        return bool(result.rowcount)

    return await svc.execute_write(store, urgent=True)
