"""Link domains per account (GetCardSmsLink's Domain, card and short links on an account's own host), and
the handset vendor of each card message (QueryCardSmsTemplateReport's per-vendor breakdown), and the daily
volume alert (a threshold per account, the alerts raised).

Revision ID: 0013_link_domains
Revises: 0012_frequency
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0013_link_domains'
down_revision = '0012_frequency'
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('link_domains',
    sa.Column('id', Id, autoincrement=True, nullable=False),
    sa.Column('account_id', Id, nullable=False),
    sa.Column('domain', sa.String(length=253), nullable=False),
    sa.Column('is_default', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_link_domains')),
    sa.UniqueConstraint('domain', name=op.f('uq_link_domains_domain'))
    )
    op.create_index('ix_link_domains_account', 'link_domains', ['account_id'], unique=False)
    with op.batch_alter_table('messages') as batch:
        batch.add_column(sa.Column('vendor', sa.String(length=16), nullable=False, server_default=''))
    with op.batch_alter_table('accounts') as batch:
        batch.add_column(sa.Column('daily_alert', sa.Integer(), nullable=True))
    op.create_table('account_alerts',
    sa.Column('account_id', Id, nullable=False),
    sa.Column('day', sa.String(length=8), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('threshold', sa.Integer(), nullable=False),
    sa.Column('count', sa.BigInteger(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('account_id', 'day', 'kind', name=op.f('pk_account_alerts'))
    )


def downgrade() -> None:
    op.drop_table('account_alerts')
    with op.batch_alter_table('accounts') as batch:
        batch.drop_column('daily_alert')
    with op.batch_alter_table('messages') as batch:
        batch.drop_column('vendor')
    op.drop_index('ix_link_domains_account', table_name='link_domains')
    op.drop_table('link_domains')
