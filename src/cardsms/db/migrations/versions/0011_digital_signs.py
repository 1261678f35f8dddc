"""Digital message signatures (CreateDigitalSignOrder, QueryDigitalSignByName).

Revision ID: 0011_digital_signs
Revises: 0010_security
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0011_digital_signs'
down_revision = '0010_security'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('digital_signs',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('name_key', sa.String(length=64), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('sign_source', sa.Integer(), nullable=False),
    sa.Column('sign_industry', sa.Integer(), nullable=False),
    sa.Column('qualification_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('context', sa.JSON(), nullable=False),
    sa.Column('extend_message', sa.Text(), nullable=False),
    sa.Column('submitter', sa.String(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('status', sa.Integer(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_digital_signs')),
    sa.UniqueConstraint('account_id', 'name_key', name=op.f('uq_digital_signs_account_id_name_key'))
    )


def downgrade() -> None:
    op.drop_table('digital_signs')
