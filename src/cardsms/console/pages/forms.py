"""Small helpers the pages share: numbers shown as rates, form values read as numbers, an error's field."""

from __future__ import annotations

from starlette.requests import Request

from cardsms.domain.errors import CardsmsError
from cardsms.domain.schedule import parse_local_start
from cardsms.services import (
    tasks,
)


def as_rate(part: int, whole: int) -> str:
    return f"{part * 100 / whole:.1f}%" if whole else "—"


def as_pct(part: int, whole: int) -> int:
    return min(100, int(part * 100 / whole)) if whole else 0


def form_int(value: str | None, default: int) -> int:
    return int(value) if value and value.strip().lstrip("-").isdigit() else default


def error_field(exc: CardsmsError, default: str) -> str:
    return exc.field or default


API_FIELDS = {"TemplateName": "name", "Remark": "remark", "TemplateContents": "media", "TemplateContent": "content",
               "SignName": "name", "SignSource": "source", "SignType": "type"}


def api_error_field(exc: CardsmsError, default: str) -> str:
    """The form field an API-style message is about: the parameter it names first."""
    found = [(exc.message.find(api), -len(api), form) for api, form in API_FIELDS.items() if api in exc.message]
    return min(found)[2] if found else error_field(exc, default)


def qualification_error_field(exc: CardsmsError) -> str:
    """The form field of a qualification error (the console's names for SubmitSmsQualification's parameters)."""
    names = {"QualificationName": "name", "CompanyName": "company_name", "OrganizationCode": "organization_code",
             "LegalPersonIDCardNo": "legal_id", "LegalPersonName": "legal_person_name", "AdminIDCardNo": "admin_id",
             "AdminName": "admin_name", "AdminPhoneNo": "admin_phone"}
    found = [(exc.message.find(api), form) for api, form in names.items() if api in exc.message]
    return min(found)[1] if found else error_field(exc, "name")


async def text_form(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


def form_limit(form: dict[str, str], name: str) -> int | None:
    """An optional positive whole number from a form (empty: no limit); a field error names the field."""
    raw = form.get(name, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or len(raw) > 9:
        label = {"rate": "the send rate", "hourly_cap": "the hourly cap"}[name]
        raise CardsmsError("InvalidField", f"{name}: {label} is a whole number (empty: no limit)", field=name)
    return int(raw) or None


def task_form(form: dict[str, str]) -> tasks.TaskForm:
    scheduled = None
    if form.get("schedule") == "later":
        try:
            scheduled = parse_local_start(form.get("scheduled_at", ""))
        except ValueError:
            raise CardsmsError("InvalidField", "scheduled_at: enter a start date and time",
                               field="scheduled_at") from None
    audience = form.get("audience_id", "")
    return tasks.TaskForm(
        name=form.get("name", ""), sign_name=form.get("sign_name", ""),
        card_template_code=form.get("card_template_code", ""), fallback_type=form.get("fallback_type", "NONE"),
        sms_template_code=form.get("sms_template_code", "") if form.get("fallback_type") == "SMS" else "",
        digital_template_code=form.get("digital_template_code", "") if form.get("fallback_type") == "DIGITALSMS"
        else "",
        template_code=form.get("template_code", "") if form.get("custom") == "1" else "",
        audience_id=int(audience) if audience.isdigit() else None, scheduled_at=scheduled,
        rate=form_limit(form, "rate"), hourly_cap=form_limit(form, "hourly_cap"))
