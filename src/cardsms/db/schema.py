"""Tables (SQLAlchemy Core). Every tenant table carries account_id and every unique key includes it,
so that the schema can be distributed by account_id (Citus) later without a rewrite."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite wants INTEGER PRIMARY KEY for auto-increment; PostgreSQL gets BIGINT.
Id = BigInteger().with_variant(Integer(), "sqlite")


def _ts(name: str, nullable: bool = False) -> Column:
    return Column(name, DateTime(timezone=True), nullable=nullable)


accounts = Table(
    "accounts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("qps_limit", Integer, nullable=True),
    _ts("created_at"),
)

users = Table(
    "users",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("account_id", Id, nullable=False),
    Column("username", String(64), nullable=False),
    Column("password_hash", String(255), nullable=False),
    Column("role", String(16), nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    _ts("created_at"),
    UniqueConstraint("account_id", "username"),
    Index("ix_users_username", "username"),
)

access_keys = Table(
    "access_keys",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("account_id", Id, nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("secret_enc", Text, nullable=False),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("description", String(200), nullable=False, default=""),
    _ts("created_at"),
    UniqueConstraint("account_id", "key_id"),
    Index("ix_access_keys_key_id", "key_id"),
)

signs = Table(
    "signs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("account_id", Id, nullable=False),
    Column("name", String(64), nullable=False),
    Column("name_key", String(64), nullable=False),  # lower-cased: names are case-insensitive
    Column("sign_type", Integer, nullable=False),
    Column("sign_source", Integer, nullable=False),
    Column("remark", Text, nullable=False, default=""),
    Column("files", JSON, nullable=False),
    Column("status", Integer, nullable=False),
    Column("reason", Text, nullable=False, default=""),
    _ts("created_at"),
    _ts("updated_at"),
    UniqueConstraint("account_id", "name_key"),
)

templates = Table(
    "templates",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("account_id", Id, nullable=False),
    Column("code", String(32), nullable=False),
    Column("kind", String(8), nullable=False),  # text | digital | card
    Column("name", String(64), nullable=False),
    Column("template_type", Integer, nullable=False),  # 0-3 text, 7 digital, card type for cards
    Column("content", Text, nullable=False, default=""),
    Column("body", JSON, nullable=True),  # card template model / digital template parts
    Column("sign_name", String(64), nullable=False, default=""),
    Column("remark", Text, nullable=False, default=""),
    Column("factorys", String(128), nullable=False, default=""),
    Column("status", Integer, nullable=False),
    Column("reason", Text, nullable=False, default=""),
    _ts("created_at"),
    _ts("updated_at"),
    UniqueConstraint("account_id", "code"),
    Index("ix_templates_account_kind", "account_id", "kind"),
)

# One row per (subject, vendor). vendor '' is the platform/carrier review of signatures and
# text/digital templates; card templates get one row per handset vendor.
reviews = Table(
    "reviews",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("account_id", Id, nullable=False),
    Column("subject_kind", String(8), nullable=False),  # sign | template
    Column("subject_id", Id, nullable=False),
    Column("vendor", String(16), nullable=False),
    Column("state", Integer, nullable=False),  # 0 reviewing, 1 approved, 2 rejected, 3 not submitted
    Column("reason", Text, nullable=False, default=""),
    _ts("submitted_at"),
    _ts("due_at"),
    _ts("decided_at", nullable=True),
    UniqueConstraint("account_id", "subject_kind", "subject_id", "vendor"),
    Index("ix_reviews_due", "state", "due_at"),
)

# Files that arrived through the object-store POST policy upload.
media_objects = Table(
    "media_objects",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("account_id", Id, nullable=False),
    Column("oss_key", String(300), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("content_type", String(64), nullable=False),
    Column("width", Integer, nullable=True),
    Column("height", Integer, nullable=True),
    _ts("created_at"),
    UniqueConstraint("account_id", "oss_key"),
)

# Media registered with GetMediaResourceId, usable in card templates.
media = Table(
    "media",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("account_id", Id, nullable=False),
    Column("resource_id", String(32), nullable=False),
    Column("oss_key", String(300), nullable=False),
    Column("resource_type", Integer, nullable=False),
    Column("ratio", String(32), nullable=True),
    Column("size", BigInteger, nullable=False),
    Column("content_type", String(64), nullable=False),
    Column("memo", Text, nullable=False, default=""),
    _ts("created_at"),
    UniqueConstraint("account_id", "resource_id"),
)

# Per-day counters for QueryCardSmsTemplateReport (filled by delivery; empty until then).
card_template_stats = Table(
    "card_template_stats",
    metadata,
    Column("account_id", Id, primary_key=True),
    Column("template_code", String(32), primary_key=True),
    Column("day", String(10), primary_key=True),
    Column("expose_uv", BigInteger, nullable=False, default=0),
    Column("expose_pv", BigInteger, nullable=False, default=0),
    Column("click_uv", BigInteger, nullable=False, default=0),
    Column("click_pv", BigInteger, nullable=False, default=0),
    Column("sent", BigInteger, nullable=False, default=0),
    Column("rendered", BigInteger, nullable=False, default=0),
    Column("ctr", Float, nullable=False, default=0.0),
)
