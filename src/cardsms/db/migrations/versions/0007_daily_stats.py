"""daily statistics that outlive record retention

Revision ID: 0007_daily_stats
Revises: 0006_tags
Create Date: 2026-11-29 02:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007_daily_stats'
down_revision = '0006_tags'
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('daily_stats',
    sa.Column('id', _ID, autoincrement=True, nullable=False),
    sa.Column('account_id', _ID, nullable=False),
    sa.Column('day', sa.String(length=8), nullable=False),
    sa.Column('task_id', _ID, nullable=False),
    sa.Column('channel', sa.String(length=8), nullable=False),
    sa.Column('state', sa.String(length=12), nullable=False),
    sa.Column('sign_name', sa.String(length=64), nullable=False),
    sa.Column('template_code', sa.String(length=32), nullable=False),
    sa.Column('card_template_code', sa.String(length=32), nullable=False),
    sa.Column('template_type', sa.Integer(), nullable=False),
    sa.Column('international', sa.Boolean(), nullable=False),
    sa.Column('messages', sa.BigInteger(), nullable=False),
    sa.Column('segments', sa.BigInteger(), nullable=False),
    sa.Column('rendered', sa.BigInteger(), nullable=False),
    sa.Column('opened', sa.BigInteger(), nullable=False),
    sa.Column('replies', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_daily_stats')),
    sa.UniqueConstraint('account_id', 'day', 'task_id', 'channel', 'state', 'sign_name', 'template_code',
                        'card_template_code', 'template_type', 'international', name='uq_daily_stats_key')
    )
    op.create_index('ix_daily_stats_task', 'daily_stats', ['task_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_daily_stats_task', table_name='daily_stats')
    op.drop_table('daily_stats')
