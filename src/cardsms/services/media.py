"""Media for card templates: the object-store POST policy, the upload it allows, and
GetMediaResourceId, which turns an uploaded object into a resource id usable in templates."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from cardsms.db.schema import media, media_objects
from cardsms.domain import upload_policy
from cardsms.domain.errors import CardsmsError
from cardsms.media.sniff import RATIOS, image_size, ratio_matches, sniff
from cardsms.services.core import Services, random_digits

BUCKET = "cardsms-media"
OSS_ACCESS_KEY_ID = "cardsms-upload"
RESOURCE_TYPES = {2: "image", 4: "video"}
IMAGE_TYPES = ("image/jpeg", "image/png")
VIDEO_TYPES = ("video/mp4",)
PDF_TYPE = "application/pdf"
FILE_MAX_BYTES = 10 * 1024 * 1024
# what an upload policy is for: card media (GetOSSInfoForCardTemplate), or the files that signatures,
# templates and qualification records reference (GetOSSInfoForUploadFile, GetQualificationOssInfo)
PURPOSES = {"card": "card", "file": "file"}


class UploadError(ValueError):
    """A rejected upload: an object-store style error code and a message naming the field."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def file_prefix(account_id: int) -> str:
    """Where an account's uploaded files (not card media) live: MoreData and licence pictures name keys here."""
    return f"file/{account_id}/"


def oss_policy(svc: Services, account_id: int, purpose: str = "card") -> dict[str, Any]:
    expires = svc.now() + timedelta(seconds=svc.settings.upload_policy_seconds)
    if purpose == "card":
        start_path = f"card/{account_id}/{svc.now():%Y%m%d}/"
        max_bytes = max(svc.settings.media_image_max_bytes, svc.settings.media_video_max_bytes)
    else:
        start_path = f"{file_prefix(account_id)}{svc.now():%Y%m%d}/"
        max_bytes = FILE_MAX_BYTES
    policy = {
        "expiration": expires.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "conditions": [
            {"bucket": BUCKET},
            ["starts-with", "$key", start_path],
            ["content-length-range", 1, max_bytes],
            {"x-cardsms-account": str(account_id)},
            {"x-cardsms-purpose": PURPOSES[purpose]},
        ],
    }
    encoded = upload_policy.encode(policy)
    return {
        "AccessKeyId": OSS_ACCESS_KEY_ID, "AliUid": str(account_id), "Bucket": BUCKET,
        "ExpireTime": str(int(expires.timestamp())), "Host": f"{svc.settings.base_url}/oss/{BUCKET}",
        "Policy": encoded, "Signature": svc.crypto.sign(encoded.encode()), "StartPath": start_path,
    }


@dataclass(frozen=True, slots=True)
class Upload:
    key: str
    size: int
    content_type: str


def _policy_conditions(svc: Services, policy_b64: str, signature: str) -> tuple[int, str, int, str]:
    """Verify a policy; returns (account id, start path, max bytes, purpose)."""
    if not svc.crypto.verify(policy_b64.encode(), signature):
        raise UploadError("SignatureDoesNotMatch", "field signature: the policy signature does not match", 403)
    try:
        policy = upload_policy.decode(policy_b64)
        expires = datetime.strptime(policy["expiration"], "%Y-%m-%dT%H:%M:%S.000Z")
        conditions = policy["conditions"]
        account_id = int(next(c["x-cardsms-account"] for c in conditions if isinstance(c, dict)
                              and "x-cardsms-account" in c))
        start_path = next(c[2] for c in conditions if isinstance(c, list) and c[0] == "starts-with")
        max_bytes = int(next(c[2] for c in conditions if isinstance(c, list) and c[0] == "content-length-range"))
        purpose = next((c["x-cardsms-purpose"] for c in conditions if isinstance(c, dict)
                        and "x-cardsms-purpose" in c), "card")  # policies issued before purposes existed
    except (ValueError, KeyError, StopIteration, TypeError, IndexError):
        raise UploadError("InvalidPolicyDocument", "field policy: not a policy issued by this server") from None
    if svc.now().replace(tzinfo=None) > expires:
        raise UploadError("AccessDenied", "field policy: the upload policy has expired; call "
                          "GetOSSInfoForCardTemplate again", 403)
    return account_id, start_path, max_bytes, purpose


@dataclass(frozen=True, slots=True)
class UploadTarget:
    """What a checked policy allows: where the file goes and how large it may be."""
    account_id: int
    key: str
    max_bytes: int
    purpose: str


def upload_target(svc: Services, fields: dict[str, str]) -> UploadTarget:
    """Check an upload's fields (policy, signature, key) before any byte of its file is read."""
    for name in ("key", "policy", "signature"):
        if not fields.get(name):
            raise UploadError("InvalidArgument", f"field {name} is required (before the file field)")
    if fields.get("OSSAccessKeyId", OSS_ACCESS_KEY_ID) != OSS_ACCESS_KEY_ID:
        raise UploadError("InvalidAccessKeyId", "field OSSAccessKeyId: use the AccessKeyId that "
                          "GetOSSInfoForCardTemplate returned", 403)
    account_id, start_path, max_bytes, purpose = _policy_conditions(svc, fields["policy"], fields["signature"])
    key = fields["key"]
    try:
        svc.media_store.check_key(key)
    except ValueError as exc:
        raise UploadError("InvalidObjectName", f"field key: {exc}") from None
    if not key.startswith(start_path):
        raise UploadError("AccessDenied", f"field key must start with the policy's StartPath {start_path!r}", 403)
    return UploadTarget(account_id, key, max_bytes, purpose)


async def accept_upload(svc: Services, fields: dict[str, str], data: bytes | None,
                        target: UploadTarget | None = None) -> Upload:
    """Check and store one POST-policy upload; nothing is stored unless every check passes."""
    target = target or upload_target(svc, fields)
    if data is None:
        raise UploadError("InvalidArgument", "field file is required (the file must be the last form field)")
    account_id, key, max_bytes, purpose = target.account_id, target.key, target.max_bytes, target.purpose
    if not data:
        raise UploadError("InvalidArgument", "field file: the file is empty")
    if len(data) > max_bytes:
        raise UploadError("EntityTooLarge", f"field file: {len(data)} bytes, at most {max_bytes}")
    content_type = sniff(data)
    if purpose == "file":
        if content_type not in (*IMAGE_TYPES, PDF_TYPE):
            raise UploadError("InvalidArgument", "field file: only JPG/PNG images and PDF documents can be "
                              f"uploaded here (this file looks like {content_type or 'unknown data'})")
        return await _store_upload(svc, account_id, key, data, content_type, None)
    if content_type not in IMAGE_TYPES + VIDEO_TYPES:
        raise UploadError("InvalidArgument", "field file: only JPG/PNG images and MP4 videos can be uploaded "
                          f"(this file looks like {content_type or 'unknown data'})")
    limit = svc.settings.media_video_max_bytes if content_type in VIDEO_TYPES else svc.settings.media_image_max_bytes
    if len(data) > limit:
        raise UploadError("EntityTooLarge", f"field file: a {content_type} file may be at most {limit} bytes, "
                          f"got {len(data)}")
    size = image_size(data, content_type) if content_type in IMAGE_TYPES else None
    if content_type in IMAGE_TYPES and size is None:
        raise UploadError("InvalidArgument", "field file: the image header is unreadable (corrupt file?)")
    return await _store_upload(svc, account_id, key, data, content_type, size)


async def _store_upload(svc: Services, account_id: int, key: str, data: bytes, content_type: str,
                        size: tuple[int, int] | None) -> Upload:
    # an upload key may be written again (as on OSS); what a media resource shows is bound to the bytes it was
    # registered with (register_media copies them to a content-addressed key), so a re-upload never swaps them
    svc.media_store.put(key, data)
    async with svc.hold_writer() as conn:
        exists = await conn.scalar(
            select(media_objects.c.id).where(media_objects.c.account_id == account_id, media_objects.c.oss_key == key)
        )
        values = {"size": len(data), "content_type": content_type, "width": size[0] if size else None,
                  "height": size[1] if size else None, "created_at": svc.now()}
        if exists is None:
            await conn.execute(insert(media_objects).values(account_id=account_id, oss_key=key, **values))
        else:
            await conn.execute(media_objects.update().where(media_objects.c.id == exists).values(**values))
    return Upload(key, len(data), content_type)


def check_image_rate(img_rate: str | None, resource_type: int) -> str | None:
    """The aspect ratio an image is registered with (ExtendInfo's img_rate): required for images, one of RATIOS."""
    if resource_type != 2:
        return None
    if img_rate is None:
        raise CardsmsError("MissingParameter",
                           "param ExtendInfo is required for images: {\"img_rate\": \"...\"}")
    if img_rate not in RATIOS:
        raise CardsmsError("InvalidParameter", f"param ExtendInfo.img_rate must be one of {', '.join(RATIOS)}, "
                           f"got {img_rate!r}")
    return img_rate


async def register_media(
    svc: Services, account_id: int, resource_type: int, oss_key: str, file_size: int, img_rate: str | None,
    memo: str,
) -> tuple[str, str]:
    if resource_type not in RESOURCE_TYPES:
        raise CardsmsError("InvalidParameter",
                           f"param ResourceType must be 2 (image) or 4 (video), got {resource_type}")
    ratio = check_image_rate(img_rate, resource_type)
    async with svc.read() as conn:
        obj = (await conn.execute(
            select(media_objects).where(media_objects.c.account_id == account_id, media_objects.c.oss_key == oss_key)
        )).mappings().first()
    if obj is None:
        raise CardsmsError("InvalidParameter", f"param resUrl not exist: OssKey {oss_key!r} was not uploaded "
                           "by this account (upload it with the GetOSSInfoForCardTemplate policy first)")
    if file_size != obj["size"]:
        raise CardsmsError("InvalidParameter", f"param FileSize {file_size} does not match the uploaded file "
                           f"({obj['size']} bytes)")
    wanted = IMAGE_TYPES if resource_type == 2 else VIDEO_TYPES
    if obj["content_type"] not in wanted:
        raise CardsmsError("InvalidParameter", f"param ResourceType {resource_type} "
                           f"({RESOURCE_TYPES[resource_type]}) does not match the file ({obj['content_type']})")
    if ratio and not ratio_matches((obj["width"], obj["height"]), ratio):
        raise CardsmsError("InvalidParameter", f"param ExtendInfo.img_rate {ratio}: the image is "
                           f"{obj['width']}x{obj['height']}, which is not {ratio} (±5%)")
    oss_key = _freeze(svc, account_id, oss_key, obj)
    async with svc.hold_writer() as conn:
        for _ in range(10):
            resource_id = random_digits(12)
            try:
                async with conn.begin_nested():
                    await conn.execute(insert(media).values(
                        account_id=account_id, resource_id=resource_id, oss_key=oss_key,
                        resource_type=resource_type, ratio=ratio, size=obj["size"],
                        content_type=obj["content_type"], memo=memo[:200], created_at=svc.now(),
                    ))
                break
            except IntegrityError:  # pragma: no cover - resource id collision
                continue
    return resource_id, download_url(svc, oss_key)


def _freeze(svc: Services, account_id: int, key: str, obj: Any) -> str:
    """The content-addressed copy of an uploaded object (write-once): the key a media resource points at, so
    the file behind an approved resource can never be replaced by a later upload to the upload key. The copy is
    checked against what the upload recorded, in case the key was written again meanwhile."""
    data = svc.media_store.get(key)
    kind = obj["content_type"]
    if data is None or len(data) != obj["size"] or sniff(data) != kind or (
            kind in IMAGE_TYPES and image_size(data, kind) != (obj["width"], obj["height"])):
        raise CardsmsError("InvalidParameter", f"param OssKey {key!r}: the object changed while it was being "
                           "registered; call GetMediaResourceId again")
    suffix = {"image/png": ".png", "image/jpeg": ".jpg", "video/mp4": ".mp4"}.get(obj["content_type"], "")
    frozen = f"res/{account_id}/{hashlib.sha256(data).hexdigest()}{suffix}"
    svc.media_store.put_new(frozen, data)  # False: the same bytes are there already
    return frozen


PRIVATE_URL_SECONDS = 3600  # ID-card and licence scans, signature and template files: an hour
CARD_URL_DAYS = 30  # card media, which handsets and vendor parsers fetch while the card's links live


def _download_token(svc: Services, key: str, expires: int) -> str:
    signed = svc.crypto.sign(f"download:{key}:{expires}".encode())
    return signed.replace("+", "-").replace("/", "_").rstrip("=")


def verify_download(svc: Services, key: str, token: str, expires: str) -> bool:
    """A download URL is good until its `expires` (epoch seconds), which its token signs."""
    if not expires.isdigit() or int(expires) < svc.now().timestamp():
        return False
    return secrets.compare_digest(_download_token(svc, key, int(expires)), token)


def download_url(svc: Services, oss_key: str) -> str:
    """A signed URL for one stored file, valid for an hour for the account's private files (under
    `file/`) and CARD_URL_DAYS for card media."""
    ttl = PRIVATE_URL_SECONDS if oss_key.startswith("file/") else CARD_URL_DAYS * 86400
    expires = int(svc.now().timestamp()) + ttl
    return f"{svc.settings.base_url}/media/{oss_key}?expires={expires}&token={_download_token(svc, oss_key, expires)}"


async def resource_urls(svc: Services, account_id: int, resource_ids: list[str]) -> dict[str, str]:
    """Signed download URLs of the account's media, by resource id."""
    if not resource_ids:
        return {}
    async with svc.read() as conn:
        rows = (await conn.execute(select(media.c.resource_id, media.c.oss_key).where(
            media.c.account_id == account_id, media.c.resource_id.in_(resource_ids)))).all()
    return {rid: download_url(svc, key) for rid, key in rows}


async def store_console_image(svc: Services, account_id: int, data: bytes, field_name: str) -> str:
    """An image uploaded in the console's card designer: stored and registered in one step.

    The ratio is read off the image (the nearest of the four card ratios within ±5%); returns the
    resource id to use as the element's `src`.
    """
    if not data:
        raise CardsmsError("InvalidField", f"{field_name}: the file is empty", field=field_name)
    content_type = sniff(data)
    if content_type not in IMAGE_TYPES:
        raise CardsmsError("InvalidField", f"{field_name}: only JPG and PNG images can be used "
                           f"(this file looks like {content_type or 'unknown data'})", field=field_name)
    if len(data) > svc.settings.media_image_max_bytes:
        raise CardsmsError("InvalidField", f"{field_name}: an image may be at most "
                           f"{svc.settings.media_image_max_bytes} bytes, got {len(data)}", field=field_name)
    size = image_size(data, content_type)
    ratio = next((r for r in RATIOS if size and ratio_matches(size, r)), None)
    if size is None or ratio is None:
        raise CardsmsError("InvalidField", f"{field_name}: the image must be 1:1, 16:9, 3:1 or 48:65 (±5%), "
                           f"got {size[0]}x{size[1]}" if size else f"{field_name}: the image header is unreadable",
                           field=field_name)
    key = f"console/{account_id}/{secrets.token_hex(12)}{'.png' if content_type == 'image/png' else '.jpg'}"
    svc.media_store.put(key, data)
    async with svc.hold_writer() as conn:
        await conn.execute(insert(media_objects).values(
            account_id=account_id, oss_key=key, size=len(data), content_type=content_type, width=size[0],
            height=size[1], created_at=svc.now()))
    resource_id, _ = await register_media(svc, account_id, 2, key, len(data), ratio,
                                          "console upload")
    return resource_id


def check_console_file(data: bytes, field_name: str) -> str:
    """The content type of a console upload for a qualification record, or an error naming the field."""
    if not data:
        raise CardsmsError("InvalidField", f"{field_name}: choose a file", field=field_name)
    content_type = sniff(data)
    if content_type not in (*IMAGE_TYPES, PDF_TYPE):
        raise CardsmsError("InvalidField", f"{field_name}: only JPG/PNG images and PDF documents "
                           f"(this file looks like {content_type or 'unknown data'})", field=field_name)
    if len(data) > FILE_MAX_BYTES:
        raise CardsmsError("InvalidField", f"{field_name}: at most {FILE_MAX_BYTES} bytes, got {len(data)}",
                           field=field_name)
    return content_type


async def store_console_file(svc: Services, account_id: int, data: bytes, field_name: str) -> str:
    """A file uploaded in the console for a qualification record (licence, ID card pictures): stored under the
    account's file prefix, as GetOSSInfoForUploadFile's policy would; returns its key."""
    content_type = check_console_file(data, field_name)
    suffix = {"image/png": ".png", "image/jpeg": ".jpg"}.get(content_type, ".pdf")
    key = f"{file_prefix(account_id)}console/{secrets.token_hex(12)}{suffix}"
    await _store_upload(svc, account_id, key, data, content_type, None)
    return key
