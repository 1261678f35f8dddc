"""Qualification records: the list and the form that submits one (with its scans)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from cardsms.console.auth import (
    Session,
)
from cardsms.console.pages.forms import qualification_error_field
from cardsms.domain.errors import CardsmsError
from cardsms.services import (
    media,
    qualifications,
)
from cardsms.services.qualifications import QualificationInput

if TYPE_CHECKING:
    from cardsms.console.app import Console


async def qualification_list(console: Console, request: Request, session: Session) -> Response:
    """Qualification records: the list with their review state, and a form that submits one with its files
    (the same checks as SubmitSmsQualification)."""
    errors: dict[str, str] = {}
    form: dict[str, str] = {}
    if request.method == "POST":
        raw = await request.form()  # parsed once by Console.view, with this route's limits
        form = {k: v for k, v in raw.items() if isinstance(v, str)}
        try:
            await _submit_qualification(console, session, form, {k: f for k, f in raw.items()
                                                              if isinstance(f, UploadFile)})
            return RedirectResponse("/console/qualifications", 303)
        except CardsmsError as exc:
            errors[qualification_error_field(exc)] = exc.message
    _, rows = await qualifications.list_qualifications(console.svc, session.account_id, {}, 1, 200)
    return console.render(request, "qualifications.html", session, 400 if errors else 200, rows=rows,
                       errors=errors, form=form)


async def _submit_qualification(console: Console, session: Session, form: dict[str, str], files: dict[str, UploadFile]
                                ) -> None:
    company_type = form.get("company_type", "COMPANY")
    if company_type not in ("COMPANY", "NON_PROFIT_ORGANIZATION"):
        raise CardsmsError("InvalidField", "company_type: COMPANY or NON_PROFIT_ORGANIZATION", field="company_type")
    details: dict[str, Any] = {
        "AdminName": form.get("admin_name", "").strip(), "AdminPhoneNo": form.get("admin_phone", "").strip(),
        "AdminIDCardNo": form.get("admin_id", "").strip().upper(), "AdminIDCardType": "identityCard",
        "LegalPersonIDCardNo": form.get("legal_id", "").strip().upper(), "LegalPersonIDCardType": "identityCard",
        "Remark": form.get("remark", "").strip(), "OtherFiles": [],
        "BusinessLicensePics": [{"LicensePic": "", "Type": "businessLicense"}],
    }
    q = QualificationInput(
        name=form.get("name", "").strip(), company_name=form.get("company_name", "").strip(),
        company_type=company_type, organization_code=form.get("organization_code", "").strip().upper(),
        legal_person_name=form.get("legal_person_name", "").strip(),
        use_by_self=form.get("use_by_self", "true") != "false", whether_share=False, details=details, files=[])
    qualifications.check_qualification(q)  # every field before any file is stored
    datas = {name: await f.read() for name, f in files.items() if name in ("license", "id_front", "id_back")}
    if not datas.get("license"):
        raise CardsmsError("InvalidField", "license: choose the business licence (JPG, PNG or PDF)",
                           field="license")
    for name, data in datas.items():  # the types and sizes of all (the ID pictures are optional) first
        if data:
            media.check_console_file(data, name)
    keys = {name: await media.store_console_file(console.svc, session.account_id, data, name)
            for name, data in datas.items() if data}
    details.update(BusinessLicensePics=[{"LicensePic": keys["license"], "Type": "businessLicense"}],
                   AdminIDCardFrontFace=keys.get("id_front", ""), AdminIDCardPic=keys.get("id_back", ""))
    await qualifications.submit_qualification(console.svc, session.account_id, dataclasses.replace(
        q, details=details, files=[(k, [v]) for k, v in keys.items()]))
