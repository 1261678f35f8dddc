"""The one error-code table. The API, the console and the CLI all read it.

`docs/errors.md` is generated from this table (`python -m cardsms.domain.errors`), and a test
checks that the file is up to date.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ErrorCode:
    code: str
    http_status: int
    meaning: str


_TABLE: tuple[ErrorCode, ...] = (
    # protocol errors (HTTP 4xx; the SDK raises ClientException)
    ErrorCode("MissingParameter", 400, "A required parameter is missing; the message names it."),
    ErrorCode("InvalidParameter", 400,
              "A parameter has the wrong type, is out of range or breaks a rule; the message names it."),
    ErrorCode("MissingAction", 400, "Neither the x-acs-action header nor the Action parameter was given."),
    ErrorCode("InvalidVersion", 400, "The API version is not 2017-05-25."),
    ErrorCode("InvalidAction.NotFound", 404, "The operation is not implemented by cardsms."),
    ErrorCode("MissingAccessKeyId", 400, "The request is not signed (no Authorization header, no AccessKeyId)."),
    ErrorCode("InvalidAccessKeyId.NotFound", 404, "The AccessKeyId does not exist (or was deleted)."),
    ErrorCode("InvalidAccessKeyId.Inactive", 403, "The AccessKey is disabled."),
    ErrorCode("SignatureDoesNotMatch", 400, "The signature is wrong; the message holds the server's string to sign."),
    ErrorCode("IncompleteSignature", 400, "The Authorization header or signature parameters are malformed."),
    ErrorCode("InvalidTimeStamp.Expired", 400, "The request time is too far from the server's clock."),
    ErrorCode("SignatureNonceUsed", 400, "The signature nonce was already used within the replay window."),
    ErrorCode("Throttling.User", 400, "The account is over its API QPS limit; retry after x-acs-retry-after ms."),
    ErrorCode("Throttling.Queue", 400, "The send queue is over CARDSMS_QUEUE_LIMIT messages (the links are behind); "
              "nothing was sent; retry later."),
    ErrorCode("ServiceUnavailable", 503, "The database cannot store the request now (disk full, database down); "
              "nothing was stored; retry later."),
    ErrorCode("Forbidden", 403, "The caller may not perform this operation."),
    ErrorCode("InternalError", 500, "A server fault; the RequestId is in the log."),
    # business errors of text SMS operations (HTTP 200, Code other than OK)
    ErrorCode("isv.INVALID_PARAMETERS", 200, "A parameter value breaks a rule; the message names it and the rule."),
    ErrorCode("isv.INVALID_JSON_PARAM", 200, "A JSON parameter is not valid JSON or not the expected shape."),
    ErrorCode("isv.SMS_SIGNATURE_ILLEGAL", 200, "The signature does not exist in this account or is not usable."),
    ErrorCode("isv.SMS_SIGN_NAME_EXIST", 200, "A signature with this name already exists in this account."),
    ErrorCode("isv.SMS_TEMPLATE_ILLEGAL", 200, "The template does not exist in this account or is not usable."),
    ErrorCode("isv.SMS_TEMPLATE_TYPE_MISMATCH", 200, "The operation does not apply to this kind of template."),
    ErrorCode("isv.REVIEW_IN_PROGRESS", 200, "The object is being reviewed and cannot be changed now."),
    ErrorCode("isv.MOBILE_NUMBER_ILLEGAL", 200, "A phone number is invalid; the message names it."),
    ErrorCode("isv.BUSINESS_LIMIT_CONTROL", 200,
              "Frequency control: the number got its most messages of this kind under this signature in the last "
              "minute or hour (verification codes 1 per minute and 5 per hour by default), or the same text within "
              "the account's duplicate-content seconds; the message names the number, the rule and when it may be "
              "sent again. In calls with several numbers those numbers are left out and named instead."),
    ErrorCode("isv.DAY_LIMIT_CONTROL", 200,
              "Frequency control: the number got its most messages of this kind under this signature today in "
              "mainland time (verification codes 10, other messages 50 by default); the message names the number, "
              "the rule and when it may be sent again (the next mainland day)."),
    ErrorCode("isv.FILE_ILLEGAL", 200, "An attached file is too large, empty or of an unsupported type."),
    ErrorCode("isv.QUALIFICATION_ILLEGAL", 200,
              "A qualification record, authorization letter, trademark or app ICP filing that a signature needs is "
              "missing, not approved, not this account's or does not match; the message names it and the rule."),
    # business errors of card operations (HTTP 200, Success false)
    ErrorCode("FORBIDDEN_ACTION", 200, "The action is not allowed for this account or object."),
    ErrorCode("SYSTEM_ERROR", 200, "The card service failed; retry later."),
    ErrorCode("TEMPLATE_NOT_EXIST", 200, "The card template does not exist in this account."),
    ErrorCode("TEMPLATE_NOT_APPROVED", 200, "The card template is not approved by any vendor yet."),
    ErrorCode("customurl.NotFound", 200, "A recipient needs a customUrl and the request has none for it."),
    # console, mass tasks and imports (the console shows the message next to the field it names)
    ErrorCode("InvalidField", 400, "A form field or CLI option breaks a rule; the message names it and the rule."),
    ErrorCode("InvalidFile", 400, "An imported file is too large, has too many numbers or an unreadable format."),
    ErrorCode("TaskStateConflict", 409, "The task is not in a state that allows this (e.g. revoking a started task)."),
    ErrorCode("NotFound", 404, "The object does not exist in this account."),
)

ERRORS: dict[str, ErrorCode] = {e.code: e for e in _TABLE}


class CardsmsError(Exception):
    """A failure with a code from the table and a message that says what was wrong and what to do."""

    def __init__(self, code: str, message: str, field: str = "") -> None:
        if code not in ERRORS:
            raise KeyError(f"error code {code!r} is not in the error table")
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field  # the form field the error belongs to (console), when there is one

    @property
    def http_status(self) -> int:
        return ERRORS[self.code].http_status


def missing(name: str) -> CardsmsError:
    return CardsmsError("MissingParameter", f"{name} is mandatory for this action.")


def field_error(name: str, message: str) -> CardsmsError:
    """A console/CLI field error: `name` is the form field, the message says the rule."""
    return CardsmsError("InvalidField", message, field=name)


def invalid(name: str, rule: str) -> CardsmsError:
    return CardsmsError("InvalidParameter", f"{name}: {rule}")


MAX_JSON_DEPTH = 32  # our parameters nest at most ~6 levels; deeper is an attack on the parser


def json_too_deep(raw: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether a JSON text nests arrays/objects deeper than `limit` (checked before parsing: Python's parser
    recurses once per level and would fail with a RecursionError past ~1,000)."""
    depth = 0
    in_string = escaped = False
    for ch in raw:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return True
        elif ch in "]}":
            depth -= 1
    return False


def render_markdown() -> str:
    lines = [
        "# Error codes",
        "",
        "Generated from `src/cardsms/domain/errors.py` by `python -m cardsms.domain.errors`; do not edit.",
        "",
        "HTTP 200 codes are business errors (the SDK returns them in the body); 4xx and 5xx",
        "codes are protocol errors (the SDK raises `ClientException`, `ServerException` or,",
        "with `x-acs-retry-after`, `ThrottlingException`).",
        "",
        "| Code | HTTP | meaning |",
        "|---|---|---|",
    ]
    lines += [f"| `{e.code}` | {e.http_status} | {e.meaning} |" for e in _TABLE]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render_markdown())
