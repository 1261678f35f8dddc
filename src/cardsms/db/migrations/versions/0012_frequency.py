"""Frequency control: an account's own limits, exempt numbers, the duplicate-content guard, and the
rows concurrent sends to one number lock in turn (PostgreSQL).

Revision ID: 0012_frequency
Revises: 0011_digital_signs
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0012_frequency'
down_revision = '0011_digital_signs'
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    with op.batch_alter_table('accounts') as batch:
        batch.add_column(sa.Column('duplicate_seconds', sa.Integer(), nullable=True))
    op.create_table('frequency_rules',
    sa.Column('account_id', Id, nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('period', sa.String(length=8), nullable=False),
    sa.Column('max_count', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('account_id', 'kind', 'period', name=op.f('pk_frequency_rules'))
    )
    op.create_table('frequency_exempt',
    sa.Column('account_id', Id, nullable=False),
    sa.Column('phone', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('account_id', 'phone', name=op.f('pk_frequency_exempt'))
    )
    op.create_table('frequency_guard',
    sa.Column('account_id', Id, nullable=False),
    sa.Column('phone', sa.String(length=32), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('account_id', 'phone', name=op.f('pk_frequency_guard'))
    )


def downgrade() -> None:
    op.drop_table('frequency_guard')
    op.drop_table('frequency_exempt')
    op.drop_table('frequency_rules')
    with op.batch_alter_table('accounts') as batch:
        batch.drop_column('duplicate_seconds')
