"""Security review: API nonces shared across processes (PostgreSQL).

Revision ID: 0010_security
Revises: 0009_quiet_hours
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0010_security'
down_revision = '0009_quiet_hours'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('api_nonces',
    sa.Column('token', sa.String(length=200), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('token', name=op.f('pk_api_nonces'))
    )
    op.create_index('ix_api_nonces_expires', 'api_nonces', ['expires_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_api_nonces_expires', table_name='api_nonces')
    op.drop_table('api_nonces')
