"""the current catalog operations: qualification records, sign documents, details of signs and templates

Revision ID: 0005_catalog
Revises: 0004_scale_out
Create Date: 2026-11-29 02:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005_catalog'
down_revision = '0004_scale_out'
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('qualifications',
    sa.Column('id', _ID, autoincrement=True, nullable=False),
    sa.Column('account_id', _ID, nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('company_name', sa.String(length=128), nullable=False),
    sa.Column('company_type', sa.String(length=32), nullable=False),
    sa.Column('organization_code', sa.String(length=32), nullable=False),
    sa.Column('legal_person_name', sa.String(length=64), nullable=False),
    sa.Column('use_by_self', sa.Boolean(), nullable=False),
    sa.Column('whether_share', sa.Boolean(), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('status', sa.Integer(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_qualifications'))
    )
    op.create_index('ix_qualifications_account', 'qualifications', ['account_id'], unique=False)
    op.create_table('sign_documents',
    sa.Column('id', _ID, autoincrement=True, nullable=False),
    sa.Column('account_id', _ID, nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('organization_code', sa.String(length=32), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('status', sa.Integer(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sign_documents'))
    )
    op.create_index('ix_sign_documents_account', 'sign_documents', ['account_id', 'kind'], unique=False)
    with op.batch_alter_table('signs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('qualification_id', _ID, nullable=True))
        batch_op.add_column(sa.Column('details', sa.JSON(), nullable=True))
    with op.batch_alter_table('templates', schema=None) as batch_op:
        batch_op.add_column(sa.Column('details', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('templates', schema=None) as batch_op:
        batch_op.drop_column('details')
    with op.batch_alter_table('signs', schema=None) as batch_op:
        batch_op.drop_column('details')
        batch_op.drop_column('qualification_id')
    op.drop_index('ix_sign_documents_account', table_name='sign_documents')
    op.drop_table('sign_documents')
    op.drop_index('ix_qualifications_account', table_name='qualifications')
    op.drop_table('qualifications')
