"""Tables (SQLAlchemy Core). Every tenant table carries account_id and every unique key includes it,
so that the schema can be distributed by account_id (Citus) later without a rewrite."""

from __future__ import annotations

from typing import Any

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
    false,
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


def _ts(name: str, nullable: bool = False) -> Column[Any]:
    return Column(name, DateTime(timezone=True), nullable=nullable)


accounts = Table(
    "accounts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("qps_limit", Integer, nullable=True),
    _ts("created_at"),
    # quiet hours (migration 0009): the account's send window ("HH:MM-HH:MM", Asia/Shanghai; NULL: the
    # server's CARDSMS_SEND_WINDOW), and whether its API sends wait for the window too
    Column("send_window", String(11), nullable=True),
    Column("hold_api_sends", Boolean, nullable=False, default=False, server_default=false()),
    # frequency control (migration 0012): the same text to one number at most once per N seconds (NULL: off)
    Column("duplicate_seconds", Integer, nullable=True),
    # volume alert (migration 0013): raise an alert when the day's messages pass this many (NULL: off)
    Column("daily_alert", Integer, nullable=True),
)

# Volume alerts raised (migration 0013, services/alerts.py): once per account, day and kind
account_alerts = Table(
    "account_alerts",
    metadata,
    Column("account_id", Id, primary_key=True),
    Column("day", String(8), primary_key=True),  # yyyyMMdd, mainland time
    Column("kind", String(16), primary_key=True),  # volume
    Column("threshold", Integer, nullable=False),
    Column("count", BigInteger, nullable=False),
    _ts("at"),
)

# Frequency control (migration 0012, services/frequency.py): an account's own limits per message kind and
# period (absent: Alibaba's defaults; 0: no limit), its exempt numbers, and on PostgreSQL one row per number
# that concurrent sends to it lock in turn
frequency_rules = Table(
    "frequency_rules",
    metadata,
    Column("account_id", Id, primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("period", String(8), primary_key=True),
    Column("max_count", Integer, nullable=False),
)

frequency_exempt = Table(
    "frequency_exempt",
    metadata,
    Column("account_id", Id, primary_key=True),
    Column("phone", String(32), primary_key=True),
    _ts("created_at"),
)

# Link domains per account (migration 0013, services/domains.py): a domain belongs to one account
link_domains = Table(
    "link_domains",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("account_id", Id, nullable=False),
    Column("domain", String(253), nullable=False, unique=True),
    Column("is_default", Boolean, nullable=False, default=False),
    _ts("created_at"),
    Index("ix_link_domains_account", "account_id"),
)

frequency_guard = Table(
    "frequency_guard",
    metadata,
    Column("account_id", Id, primary_key=True),
    Column("phone", String(32), primary_key=True),
    _ts("at"),
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
    # raised by a password change, reset or disable: the sessions signed with an older value end at once
    Column("session_version", Integer, nullable=False, default=0, server_default="0"),
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
    # the current operations (CreateSmsSign ...): the approved qualification the signature rests on, and
    # the rest of what they take (third_party, authorization_letter_id, trademark_id, app_icp_record_id,
    # apply_scene, more_data); NULL for signatures made with AddSmsSign
    Column("qualification_id", Id, nullable=True),
    Column("details", JSON, nullable=True),
    UniqueConstraint("account_id", "name_key"),
)

# Digital message signatures (CreateDigitalSignOrder): reviewed per carrier (review rows "mobile", "unicom",
# "telecom"); once an account has any, its digital sends need an approved one.
digital_signs = Table(
    "digital_signs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("account_id", Id, nullable=False),
    Column("name", String(64), nullable=False),
    Column("name_key", String(64), nullable=False),
    Column("code", String(64), nullable=False),
    Column("sign_source", Integer, nullable=False),
    Column("sign_industry", Integer, nullable=False),
    Column("qualification_id", Id, nullable=True),
    Column("context", JSON, nullable=False),  # the OrderContext: company, credit code, admin, legal person
    Column("extend_message", Text, nullable=False, default=""),
    Column("submitter", String(64), nullable=False, default=""),
    Column("version", Integer, nullable=False),
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
    # the current operations (CreateSmsTemplate ...): template_rule (variable -> attribute), more_data,
    # apply_scene, intl_type, traffic_driving; the related signature is sign_name
    Column("details", JSON, nullable=True),
    UniqueConstraint("account_id", "code"),
    Index("ix_templates_account_kind", "account_id", "kind"),
)

# Qualification records (SubmitSmsQualification ...): the company behind signatures, reviewed like them
# (reviews.subject_kind "qual"). The id is both the QualificationGroupId and the work order id.
qualifications = Table(
    "qualifications",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("account_id", Id, nullable=False),
    Column("name", String(64), nullable=False),
    Column("company_name", String(128), nullable=False),
    Column("company_type", String(32), nullable=False, default=""),
    Column("organization_code", String(32), nullable=False),  # unified social credit code
    Column("legal_person_name", String(64), nullable=False, default=""),
    Column("use_by_self", Boolean, nullable=False),
    Column("whether_share", Boolean, nullable=False, default=False),
    Column("details", JSON, nullable=False),  # administrator, ID cards, licence pictures, other files, remark
    Column("status", Integer, nullable=False),
    Column("reason", Text, nullable=False, default=""),
    _ts("created_at"),
    _ts("updated_at"),
    Index("ix_qualifications_account", "account_id"),
)

# Records a signature may reference besides its qualification: authorization letters (kind "letter",
# reviewed: reviews.subject_kind "letter"), trademarks ("trademark") and app ICP filings ("app_icp").
sign_documents = Table(
    "sign_documents",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("account_id", Id, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("name", String(128), nullable=False),
    Column("organization_code", String(32), nullable=False, default=""),
    Column("details", JSON, nullable=False),
    Column("status", Integer, nullable=False),
    Column("reason", Text, nullable=False, default=""),
    _ts("created_at"),
    _ts("updated_at"),
    Index("ix_sign_documents_account", "account_id", "kind"),
)

# Who did what and when (services/audit.py): console users, the CLI and API keys changing keys, users,
# webhooks, suppression, signatures, templates and tasks. Written in the transaction of the change.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("account_id", Id, nullable=False),
    Column("actor", String(96), nullable=False),  # user:NAME | api:KEYID | cli
    Column("action", String(48), nullable=False),
    Column("subject", String(128), nullable=False),
    Column("detail", Text, nullable=False, default=""),
    _ts("at"),
    Index("ix_audit_log_account", "account_id", "id"),
)

# Daily counts of messages whose records were purged after CARDSMS_RETENTION_DAYS (services/retention.py):
# statistics read these and the live rows together, so a chart or a task report outlives its records. A message
# is counted in exactly one of the two: its aggregate is written in the transaction that deletes it.
daily_stats = Table(
    "daily_stats",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("account_id", Id, nullable=False),
    Column("day", String(8), nullable=False),  # yyyyMMdd, China time (messages.send_day)
    Column("task_id", Id, nullable=False),  # 0: not a task's
    Column("channel", String(8), nullable=False),
    Column("state", String(12), nullable=False),
    Column("sign_name", String(64), nullable=False),
    Column("template_code", String(32), nullable=False),
    Column("card_template_code", String(32), nullable=False),
    Column("template_type", Integer, nullable=False),
    Column("international", Boolean, nullable=False),
    Column("messages", BigInteger, nullable=False),
    Column("segments", BigInteger, nullable=False),
    Column("rendered", BigInteger, nullable=False),
    Column("opened", BigInteger, nullable=False),
    Column("replies", BigInteger, nullable=False),
    UniqueConstraint("account_id", "day", "task_id", "channel", "state", "sign_name", "template_code",
                     "card_template_code", "template_type", "international", name="uq_daily_stats_key"),
    Index("ix_daily_stats_task", "task_id"),
)

# Tags (TagResources): key/value labels on templates (resource type TEMPLATE, resource id the code) and
# signatures (SIGN, the name).
resource_tags = Table(
    "resource_tags",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("account_id", Id, nullable=False),
    Column("resource_type", String(16), nullable=False),
    Column("resource_id", String(64), nullable=False),
    Column("tag_key", String(128), nullable=False),
    Column("tag_value", String(128), nullable=False, default=""),
    _ts("created_at"),
    UniqueConstraint("account_id", "resource_type", "resource_id", "tag_key"),
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

# --- delivery (migration 0002) -------------------------------------------------------------

# One row per recipient and channel. `biz_id` groups the rows of one send call and channel (the
# BizId / BizCardId / BizSmsId / BizDigitalId of the answer). The dispatcher claims rows by
# (state, due_at, priority); see docs/sending.md for the state machine.
messages = Table(
    "messages",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("account_id", Id, nullable=False),
    Column("biz_id", String(32), nullable=False),
    Column("channel", String(8), nullable=False),  # sms | card | digital
    Column("phone", String(20), nullable=False),  # national form for mainland mobiles, E.164 otherwise
    Column("e164", String(20), nullable=False),
    Column("out_id", String(256), nullable=False, default=""),
    Column("sign_name", String(64), nullable=False, default=""),
    Column("template_code", String(32), nullable=False, default=""),
    Column("card_template_code", String(32), nullable=False, default=""),
    Column("template_type", Integer, nullable=False, default=1),
    Column("content", Text, nullable=False, default=""),
    Column("segments", Integer, nullable=False, default=1),
    Column("priority", Integer, nullable=False, default=1),  # 0 verification, 1 notification, 2 promotional
    Column("state", String(12), nullable=False),
    Column("error_code", String(32), nullable=False, default=""),
    Column("error_text", Text, nullable=False, default=""),
    Column("attempts", Integer, nullable=False, default=0),
    Column("possible_duplicate", Boolean, nullable=False, default=False),
    Column("connector", String(32), nullable=False, default=""),
    Column("parts_done", Integer, nullable=False, default=0),
    Column("link_code", String(16), nullable=False, default=""),
    Column("custom_url", Text, nullable=False, default=""),
    Column("up_extend_code", String(16), nullable=False, default=""),
    Column("render_status", Integer, nullable=False, default=0),
    # the handset vendor a card message was sent for (migration 0013; per-vendor reports); "" before that
    Column("vendor", String(16), nullable=False, default="", server_default=""),
    Column("opens", Integer, nullable=False, default=0),
    Column("task_id", Id, nullable=True),
    Column("claimed_by", String(40), nullable=False, default="", server_default=""),  # worker holding it `submitting`
    Column("send_day", String(8), nullable=False),  # yyyyMMdd, China time
    _ts("created_at"),
    _ts("due_at"),
    _ts("expires_at"),
    _ts("submitted_at", nullable=True),
    _ts("done_at", nullable=True),
    _ts("rendered_at", nullable=True),
    Index("ix_messages_claim", "state", "priority", "due_at"),
    Index("ix_messages_biz", "account_id", "biz_id"),
    Index("ix_messages_phone", "account_id", "phone", "send_day"),
    Index("ix_messages_day", "account_id", "send_day"),
    Index("ix_messages_e164", "e164", "id"),  # replies (MO) find the latest message to a number
    Index("ix_messages_task", "task_id", "state"),
)

# The timeline of a message: queued, submitted, retry, delivered, failed, expired, rendered,
# link_opened, replied, recovered (in flight at a crash).
message_events = Table(
    "message_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("account_id", Id, nullable=False),
    Column("message_id", Id, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("detail", Text, nullable=False, default=""),
    _ts("at"),
    Index("ix_message_events_message", "account_id", "message_id"),
)

# SMSC message ids of submitted parts, for matching delivery receipts.
smsc_ids = Table(
    "smsc_ids",
    metadata,
    Column("connector", String(32), primary_key=True),
    Column("smsc_id", String(65), primary_key=True),
    Column("account_id", Id, nullable=False),
    Column("message_id", Id, nullable=False),
)

# Receipts whose SMSC id was not known yet (they overtook the stored submit response).
early_receipts = Table(
    "early_receipts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("connector", String(32), nullable=False),
    Column("smsc_id", String(65), nullable=False),
    Column("stat", String(16), nullable=False),
    Column("err", String(16), nullable=False, default=""),
    _ts("received_at"),
    Index("ix_early_receipts_id", "connector", "smsc_id"),
)

short_links = Table(
    "short_links",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("account_id", Id, nullable=False),
    Column("code", String(16), nullable=False),
    Column("kind", String(8), nullable=False),  # group | personal | custom | url
    Column("card_template_code", String(32), nullable=False, default=""),
    Column("message_id", Id, nullable=True),
    Column("phone", String(20), nullable=False, default=""),
    Column("params", JSON, nullable=True),
    Column("source_url", Text, nullable=False, default=""),  # AddShortUrl target or the card's customUrl
    Column("name", String(64), nullable=False, default=""),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("page_views", BigInteger, nullable=False, default=0),
    Column("unique_visitors", BigInteger, nullable=False, default=0),
    _ts("created_at"),
    _ts("expires_at"),
    UniqueConstraint("code"),  # the resolver looks codes up without an account; see docs/architecture.md
    Index("ix_short_links_account", "account_id", "kind"),
)

link_opens = Table(
    "link_opens",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("account_id", Id, nullable=False),
    Column("link_id", Id, nullable=False),
    Column("message_id", Id, nullable=True),
    Column("client", String(8), nullable=False),  # parser | browser | redirect
    Column("visitor", String(40), nullable=False),
    _ts("at"),
    Index("ix_link_opens_link", "account_id", "link_id", "visitor"),
)

suppressions = Table(
    "suppressions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("account_id", Id, nullable=False),
    Column("phone", String(20), nullable=False),
    Column("source", String(16), nullable=False),  # reply | manual
    Column("detail", Text, nullable=False, default=""),
    _ts("created_at"),
    UniqueConstraint("account_id", "phone"),
)

replies = Table(
    "replies",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("account_id", Id, nullable=False),
    Column("message_id", Id, nullable=True),
    Column("phone", String(20), nullable=False),
    Column("content", Text, nullable=False),
    Column("dest_code", String(21), nullable=False, default=""),
    Column("sign_name", String(64), nullable=False, default=""),
    Column("opt_out", Boolean, nullable=False, default=False),
    _ts("received_at"),
    Index("ix_replies_account", "account_id", "received_at"),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("account_id", Id, nullable=False),
    Column("key", String(128), nullable=False),
    Column("action", String(64), nullable=False),
    Column("response", JSON, nullable=False),
    _ts("created_at"),
    UniqueConstraint("account_id", "key"),
)

webhooks = Table(
    "webhooks",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("account_id", Id, nullable=False),
    Column("kind", String(24), nullable=False),  # SmsReport | SmsUp | MnsCardVender | ...
    Column("url", Text, nullable=False),
    Column("secret_enc", Text, nullable=False),
    _ts("created_at"),
    UniqueConstraint("account_id", "kind"),
)

# Durable outbox of webhook reports: one row per report, POSTed in batches per (account, kind).
webhook_outbox = Table(
    "webhook_outbox",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("account_id", Id, nullable=False),
    Column("kind", String(24), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("state", String(10), nullable=False),  # pending | delivered | failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text, nullable=False, default=""),
    _ts("created_at"),
    _ts("due_at"),
    _ts("delivered_at", nullable=True),
    Index("ix_webhook_outbox_due", "state", "due_at"),
    Index("ix_webhook_outbox_account", "account_id", "kind", "state"),
)

# --- console and mass tasks (migration 0003) ------------------------------------------------

# A validated, de-duplicated list of numbers: a saved audience (Audience Data Management) or the
# recipients imported for one mass task (`saved` false). Imports stream into `audience_numbers`
# in chunks; `lines_done` is the resume point after a restart.
audiences = Table(
    "audiences",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("account_id", Id, nullable=False),
    Column("name", String(64), nullable=False),
    Column("saved", Boolean, nullable=False),
    Column("state", String(12), nullable=False),  # importing | ready | failed
    Column("file_name", String(200), nullable=False, default=""),
    Column("file_path", Text, nullable=False, default=""),
    Column("columns", JSON, nullable=False),  # parameter column names from the header
    Column("lines_done", Integer, nullable=False, default=0),
    Column("total", Integer, nullable=False, default=0),  # number lines read
    Column("valid", Integer, nullable=False, default=0),
    Column("duplicates", Integer, nullable=False, default=0),
    Column("invalid", Integer, nullable=False, default=0),
    Column("suppressed", Integer, nullable=False, default=0),
    Column("error", Text, nullable=False, default=""),
    _ts("created_at"),
    Index("ix_audiences_account", "account_id", "saved"),
)

audience_numbers = Table(
    "audience_numbers",
    metadata,
    Column("account_id", Id, nullable=False),
    Column("audience_id", Id, nullable=False),
    Column("seq", Integer, nullable=False),  # 1.. in file order; the task cursor walks it
    Column("phone", String(20), nullable=False),
    Column("params", Text, nullable=True),  # JSON object of the parameter columns, when present
    UniqueConstraint("account_id", "audience_id", "phone"),
    Index("ix_audience_numbers_seq", "account_id", "audience_id", "seq"),
)

import_problems = Table(
    "import_problems",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("account_id", Id, nullable=False),
    Column("audience_id", Id, nullable=False),
    Column("line", Integer, nullable=False),
    Column("raw", String(200), nullable=False),
    Column("reason", String(200), nullable=False),
    Index("ix_import_problems_audience", "account_id", "audience_id", "line"),
)

# A mass task. The runner feeds recipients into `messages` in chunks from `cursor` (the last
# audience seq queued), advancing it in the same transaction: pause/resume/restart never resend.
tasks = Table(
    "tasks",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("account_id", Id, nullable=False),
    Column("name", String(30), nullable=False),
    Column("sign_name", String(64), nullable=False),
    Column("card_template_code", String(32), nullable=False),
    Column("fallback_type", String(12), nullable=False),  # NONE | SMS | DIGITALSMS
    Column("sms_template_code", String(32), nullable=False, default=""),
    Column("digital_template_code", String(32), nullable=False, default=""),
    Column("template_code", String(32), nullable=False, default=""),  # custom send content
    Column("audience_id", Id, nullable=False),
    # importing | scheduled | waiting (outside the send window) | sending | paused | completed | revoked |
    # cancelled | failed
    Column("state", String(12), nullable=False),
    Column("cursor", Integer, nullable=False, default=0),
    Column("total", Integer, nullable=False, default=0),
    Column("error", Text, nullable=False, default=""),
    Column("created_by", String(64), nullable=False, default=""),
    _ts("created_at"),
    _ts("scheduled_at", nullable=True),
    _ts("started_at", nullable=True),
    _ts("finished_at", nullable=True),
    # migration 0009: the send rate (messages per second) and sliding cap (per hour), NULL = none; how far
    # the rate's schedule has been fed; when a waiting task starts next
    Column("rate", Integer, nullable=True),
    Column("hourly_cap", Integer, nullable=True),
    _ts("paced_until", nullable=True),
    _ts("next_start_at", nullable=True),
    Index("ix_tasks_account", "account_id", "id"),
    Index("ix_tasks_state", "state", "scheduled_at"),
)

# What happened to a task, in order (migration 0009): created, waiting, started, quiet (paused at the end
# of the send window), resumed, rate, paused, cancelled, completed, failed.
task_events = Table(
    "task_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("account_id", Id, nullable=False),
    Column("task_id", Id, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("detail", Text, nullable=False, default=""),
    _ts("at"),
    Index("ix_task_events_task", "task_id", "id"),
)


# API signature nonces shared by every `cardsms api` process on PostgreSQL (migration 0010): a nonce is kept
# until its request's timestamp plus the allowed skew, so a request stamped ahead cannot be replayed later.
# SQLite (one serving process) keeps them in memory (openapi/auth.NonceCache).
api_nonces = Table(
    "api_nonces",
    metadata,
    Column("token", String(200), primary_key=True),  # key id NUL nonce
    _ts("expires_at"),
    Index("ix_api_nonces_expires", "expires_at"),
)


# --- scale-out (migration 0004) -------------------------------------------------------------

# Live processes that dispatch. A worker renews `expires_at` every few seconds; the `submitting`
# messages of a worker whose lease ran out are queued again (flagged) by any other worker.
workers = Table(
    "workers",
    metadata,
    Column("worker_id", String(40), primary_key=True),
    Column("host", String(255), nullable=False, default=""),
    Column("pid", Integer, nullable=False, default=0),
    _ts("started_at"),
    _ts("expires_at"),
)

# One row per SMPP bind slot ("connector#n"): a slot has one owner at a time, so a bind to an
# SMSC is held by exactly one worker; a slot whose lease ran out may be taken by another worker.
bind_leases = Table(
    "bind_leases",
    metadata,
    Column("slot", String(80), primary_key=True),
    Column("owner", String(40), nullable=False),
    _ts("expires_at"),
)
