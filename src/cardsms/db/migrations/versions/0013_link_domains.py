"""Link domains per account (GetCardSmsLink's Domain, card and short links on an account's own host), and
the handset vendor of each card message (QueryCardSmsTemplateReport's per-vendor breakdown).

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


def downgrade() -> None:
    with op.batch_alter_table('messages') as batch:
        batch.drop_column('vendor')
    op.drop_index('ix_link_domains_account', table_name='link_domains')
    op.drop_table('link_domains')
