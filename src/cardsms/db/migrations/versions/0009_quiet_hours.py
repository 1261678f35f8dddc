"""quiet hours and send rates: account send windows, task rates and caps, task events

Revision ID: 0009_quiet_hours
Revises: 0008_audit
Create Date: 2026-11-29 05:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009_quiet_hours'
down_revision = '0008_audit'
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('send_window', sa.String(length=11), nullable=True))
        batch_op.add_column(sa.Column('hold_api_sends', sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('rate', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('hourly_cap', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('paced_until', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('next_start_at', sa.DateTime(timezone=True), nullable=True))
    op.create_table('task_events',
    sa.Column('id', _ID, autoincrement=True, nullable=False),
    sa.Column('account_id', _ID, nullable=False),
    sa.Column('task_id', _ID, nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_task_events'))
    )
    op.create_index('ix_task_events_task', 'task_events', ['task_id', 'id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_task_events_task', table_name='task_events')
    op.drop_table('task_events')
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_column('next_start_at')
        batch_op.drop_column('paced_until')
        batch_op.drop_column('hourly_cap')
        batch_op.drop_column('rate')
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_column('hold_api_sends')
        batch_op.drop_column('send_window')
