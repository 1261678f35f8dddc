"""tags on templates and signatures

Revision ID: 0006_tags
Revises: 0005_catalog
Create Date: 2026-11-29 02:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006_tags'
down_revision = '0005_catalog'
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('resource_tags',
    sa.Column('id', _ID, autoincrement=True, nullable=False),
    sa.Column('account_id', _ID, nullable=False),
    sa.Column('resource_type', sa.String(length=16), nullable=False),
    sa.Column('resource_id', sa.String(length=64), nullable=False),
    sa.Column('tag_key', sa.String(length=128), nullable=False),
    sa.Column('tag_value', sa.String(length=128), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_resource_tags')),
    sa.UniqueConstraint('account_id', 'resource_type', 'resource_id', 'tag_key',
                        name=op.f('uq_resource_tags_account_id_resource_type_resource_id_tag_key'))
    )


def downgrade() -> None:
    op.drop_table('resource_tags')
