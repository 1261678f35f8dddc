"""Qualification records and the documents signatures rest on: SubmitSmsQualification,
QuerySmsQualificationRecord, QuerySingleSmsQualification, UpdateSmsQualification, DeleteSmsQualification,
CreateSmsAuthorizationLetter, QuerySmsAuthorizationLetter, CreateSmsTrademark, QuerySmsTrademark,
CreateSmsAppIcpRecord, QuerySmsAppIcpRecord, and the file upload policies GetQualificationOssInfo and
GetOSSInfoForUploadFile. Answers carry `Success` and `Data`, as the SDK models them.

CertifyCode (the code RequiredPhoneCode would send to the administrator's phone) is required but not
checked: the verification-code operations are not implemented (docs/api.md)."""

from __future__ import annotations

from typing import Any

from cardsms.domain.errors import invalid
from cardsms.domain.identity import uscc_problem
from cardsms.openapi.context import Ctx, Operation
from cardsms.openapi.params import Params
from cardsms.services import media, qualifications
from cardsms.services.core import china_time
from cardsms.services.qualifications import QualificationInput, parse_day
from cardsms.vendors.gateway import ReviewState

COMPANY_TYPES = ("COMPANY", "NON_PROFIT_ORGANIZATION")
LICENSE_TYPES = ("socialCreditLicense", "businessLicense", "signLegalLicense", "otherLicense")
_STATE_NAMES = {int(ReviewState.REVIEWING): "INIT", int(ReviewState.APPROVED): "PASS",
                int(ReviewState.REJECTED): "NOT_PASS"}
_STATES = {v: k for k, v in _STATE_NAMES.items()}


def _phone(raw: str) -> str:
    raw = raw.strip()
    for prefix in ("+86", "0086", "86", "+"):
        if raw.startswith(prefix) and len(raw) - len(prefix) == 11:
            return raw[len(prefix):]
    return raw


def _license_pics(p: Params) -> list[dict[str, str]]:
    out = []
    for i, pic in enumerate(p.objects("BusinessLicensePics"), 1):
        kind = str(pic.get("Type") or "")
        if kind not in LICENSE_TYPES:
            raise invalid(f"BusinessLicensePics[{i}].Type", f"must be one of {', '.join(LICENSE_TYPES)}, got {kind!r}")
        out.append({"LicensePic": str(pic.get("LicensePic") or ""), "Type": kind})
    return out


_DETAIL_TEXTS = (  # (parameter, max length, required on submit, a date)
    ("AdminName", 50, True, False), ("AdminPhoneNo", 20, True, False), ("AdminIDCardNo", 40, True, False),
    ("AdminIDCardType", 32, True, False), ("AdminIDCardExpDate", 40, True, True),
    ("AdminIDCardFrontFace", 300, True, False), ("AdminIDCardPic", 300, True, False),
    ("LegalPersonIDCardNo", 40, True, False), ("LegalPersonIDCardType", 32, True, False),
    ("LegalPersonIdCardEffTime", 40, True, True), ("LegalPersonIdCardFrontSide", 300, False, False),
    ("LegalPersonIdCardBackSide", 300, False, False), ("BussinessLicenseExpDate", 40, True, True),
    ("CertifyCode", 12, True, False), ("Remark", 1000, False, False),
)
_FILE_FIELDS = ("AdminIDCardFrontFace", "AdminIDCardPic", "LegalPersonIdCardFrontSide", "LegalPersonIdCardBackSide")


def _qualification(p: Params, current: Any = None) -> QualificationInput:
    """The record a SubmitSmsQualification describes, or (with `current`) what an UpdateSmsQualification
    changes of the current one: parameters not given keep their stored values."""
    base: dict[str, Any] = dict(current["details"]) if current is not None else {}
    details: dict[str, Any] = {}
    for name, limit, required, is_date in _DETAIL_TEXTS:
        value = p.str(name, required=required and current is None, max_len=limit).strip() or base.get(name, "")
        details[name] = parse_day(name, value) if is_date else value
    details["AdminPhoneNo"] = _phone(details["AdminPhoneNo"])
    details["AdminIDCardNo"] = details["AdminIDCardNo"].upper()
    details["LegalPersonIDCardNo"] = details["LegalPersonIDCardNo"].upper()
    given_pics = "BusinessLicensePics" in p.values or any(k.startswith("BusinessLicensePics.") for k in p.values)
    details["BusinessLicensePics"] = _license_pics(p) if given_pics else base.get("BusinessLicensePics", [])
    given_others = "OtherFiles" in p.values or any(k.startswith("OtherFiles.") for k in p.values)
    details["OtherFiles"] = ([str(o.get("LicensePic") or "") for o in p.objects("OtherFiles")] if given_others
                             else base.get("OtherFiles", []))
    if current is None:
        use_by_self = p.bool("UseBySelf", required=True)
        company_type = p.str("CompanyType", required=True, max_len=32)
        if company_type not in COMPANY_TYPES:
            raise invalid("CompanyType", f"must be one of {', '.join(COMPANY_TYPES)}, got {company_type[:40]!r}")
    else:
        use_by_self, company_type = bool(current["use_by_self"]), current["company_type"]
    if not use_by_self and not details["BusinessLicensePics"]:
        raise invalid("BusinessLicensePics", "required for a qualification for third-party use (UseBySelf false)")
    files = [(f, [details[f]]) for f in _FILE_FIELDS if details[f]]
    files += [("BusinessLicensePics", [x["LicensePic"] for x in details["BusinessLicensePics"]]),
              ("OtherFiles", details["OtherFiles"])]
    return QualificationInput(
        name=p.str("QualificationName", required=True, max_len=64).strip() if current is None else current["name"],
        company_name=p.str("CompanyName", required=current is None, max_len=128).strip()
        or (current["company_name"] if current is not None else ""),
        company_type=company_type,
        organization_code=p.str("OrganizationCode", required=current is None, max_len=150).strip()
        or (current["organization_code"] if current is not None else ""),
        legal_person_name=p.str("LegalPersonName", required=current is None, max_len=50).strip()
        or (current["legal_person_name"] if current is not None else ""),
        use_by_self=use_by_self,
        whether_share=p.bool("WhetherShare") if current is None else bool(current["whether_share"]),
        details=details, files=files)


async def submit_sms_qualification(ctx: Ctx, p: Params) -> dict[str, Any]:
    return {"Data": str(await qualifications.submit_qualification(ctx.svc, ctx.account_id, _qualification(p)))}


async def update_sms_qualification(ctx: Ctx, p: Params) -> dict[str, Any]:
    qual_id = p.int("QualificationGroupId", required=True, low=1, high=1 << 62)
    order_id = p.optional_int("OrderId")
    current = await qualifications.read_qualification(ctx.svc, ctx.account_id, qual_id, order_id)
    await qualifications.update_qualification(ctx.svc, ctx.account_id, qual_id, order_id, _qualification(p, current))
    return {"Data": str(qual_id)}


async def delete_sms_qualification(ctx: Ctx, p: Params) -> dict[str, Any]:
    qual_id = p.int("QualificationGroupId", required=True, low=1, high=1 << 62)
    await qualifications.delete_qualification(ctx.svc, ctx.account_id, qual_id, p.optional_int("OrderId"))
    return {"Data": True}


async def query_sms_qualification_record(ctx: Ctx, p: Params) -> dict[str, Any]:
    page = p.int("PageNo", default=1, low=1, high=1_000_000)
    size = p.int("PageSize", default=10, low=1, high=50)
    state = p.str("State", max_len=20)
    if state and state not in _STATES:
        raise invalid("State", f"must be one of {', '.join(_STATES)}, got {state[:20]!r}")
    use = p.str("UseBySelf", max_len=5)
    filters = {"company_name": p.str("CompanyName", max_len=128), "legal_person_name": p.str("LegalPersonName",
               max_len=50), "name": p.str("QualificationGroupName", max_len=64),
               "state": _STATES.get(state), "use_by_self": p.bool("UseBySelf") if use else None,
               "order_id": p.optional_int("WorkOrderId")}
    total, rows = await qualifications.list_qualifications(ctx.svc, ctx.account_id, filters, page, size)
    items = [{"GroupId": r["id"], "WorkOrderId": r["id"], "QualificationGroupName": r["name"],
              "CompanyName": r["company_name"], "LegalPersonName": r["legal_person_name"],
              "UseBySelf": str(bool(r["use_by_self"])).lower(), "StateName": _STATE_NAMES.get(r["status"], "INIT"),
              "AuditRemark": r["reason"], "CreateDate": china_time(r["created_at"]),
              "AuditTime": china_time(r["updated_at"]) if r["status"] != ReviewState.REVIEWING else ""}
             for r in rows]
    return {"Data": {"List": items, "PageNo": page, "PageSize": size, "Total": total}}


def _pic(ctx: Ctx, key: str) -> str:
    return media.download_url(ctx.svc, key) if key else ""


async def query_single_sms_qualification(ctx: Ctx, p: Params) -> dict[str, Any]:
    qual_id = p.int("QualificationGroupId", required=True, low=1, high=1 << 62)
    row = await qualifications.read_qualification(ctx.svc, ctx.account_id, qual_id, p.optional_int("OrderId"))
    d = row["details"]
    return {"Data": {
        "QualificationGroupId": row["id"], "WorkOrderId": row["id"], "QualificationName": row["name"],
        "CompanyName": row["company_name"], "CompanyType": row["company_type"],
        "OrganizationCode": row["organization_code"], "LegalPersonName": row["legal_person_name"],
        "LegalPersonIDCardNo": d.get("LegalPersonIDCardNo", ""), "LegalPersonIDCardType":
        d.get("LegalPersonIDCardType", ""), "LegalPersonIdCardEffTime": d.get("LegalPersonIdCardEffTime", ""),
        "AdminName": d.get("AdminName", ""), "AdminPhoneNo": d.get("AdminPhoneNo", ""),
        "AdminIDCardNo": d.get("AdminIDCardNo", ""), "AdminIDCardType": d.get("AdminIDCardType", ""),
        "AdminIDCardExpDate": d.get("AdminIDCardExpDate", ""),
        "AdminIDCardFrontFace": _pic(ctx, d.get("AdminIDCardFrontFace", "")),
        "AdminIDCardPic": _pic(ctx, d.get("AdminIDCardPic", "")),
        "BusinessLicensePics": [{"LicensePic": x["LicensePic"], "PicUrl": _pic(ctx, x["LicensePic"]),
                                 "Type": x["Type"]} for x in d.get("BusinessLicensePics", [])],
        "OtherFiles": [{"LicensePic": k, "PicUrl": _pic(ctx, k)} for k in d.get("OtherFiles", [])],
        "EffTimeStr": d.get("BussinessLicenseExpDate", ""), "BusinessType": "",
        "UseBySelf": bool(row["use_by_self"]), "WhetherShare": bool(row["whether_share"]),
        "State": _STATE_NAMES.get(row["status"], "INIT"), "Remark": d.get("Remark", ""),
    }}


# --- authorization letters, trademarks, app ICP filings ------------------------------------------

def _code(p: Params, name: str) -> str:
    code = p.str(name, required=True, max_len=150).strip()
    if problem := uscc_problem(code):
        raise invalid(name, problem)
    return code


async def create_sms_authorization_letter(ctx: Ctx, p: Params) -> dict[str, Any]:
    pic = p.str("AuthorizationLetterPic", required=True, max_len=300)
    sign_list = p.strings("SignList", max_items=100, max_len=12)
    if not sign_list:
        raise invalid("SignList", "the letter authorizes at least one signature")
    details = {"Authorization": p.str("Authorization", required=True, max_len=128),
               "ProxyAuthorization": p.str("ProxyAuthorization", required=True, max_len=128),
               "AuthorizationLetterExpDate": parse_day("AuthorizationLetterExpDate",
                                                       p.str("AuthorizationLetterExpDate", max_len=40), True),
               "AuthorizationLetterPic": pic, "SignList": sign_list}
    doc_id = await qualifications.create_document(
        ctx.svc, ctx.account_id, "letter", p.str("AuthorizationLetterName", required=True, max_len=128),
        _code(p, "OrganizationCode"), details, [("AuthorizationLetterPic", [pic])])
    return {"Data": str(doc_id)}


async def query_sms_authorization_letter(ctx: Ctx, p: Params) -> dict[str, Any]:
    ids = p.ids("AuthorizationLetterIdList")
    rows = await qualifications.list_documents(ctx.svc, ctx.account_id, "letter", ids)
    sign, code = p.str("SignName", max_len=64), p.str("OrganizationCode", max_len=150)
    out = []
    for r in rows:
        d = r["details"]
        if (sign and sign not in d["SignList"]) or (code and code != r["organization_code"]):
            continue
        out.append({"AuthorizationLetterId": r["id"], "AuthorizationLetterName": r["name"],
                    "OrganizationCode": r["organization_code"], "Authorization": d["Authorization"],
                    "ProxyAuthorization": d["ProxyAuthorization"],
                    "AuthorizationLetterExpDate": d["AuthorizationLetterExpDate"],
                    "AuthorizationLetterPic": _pic(ctx, d["AuthorizationLetterPic"]),
                    "SignScope": "、".join(d["SignList"]),
                    "State": "PASSED" if r["status"] == ReviewState.APPROVED else
                    ("NOT_PASS" if r["status"] == ReviewState.REJECTED else "INT"),
                    "Status": "VALID"})
    return {"Data": out}


async def create_sms_trademark(ctx: Ctx, p: Params) -> dict[str, Any]:
    pic = p.str("TrademarkPic", required=True, max_len=300)
    details = {"TrademarkApplicantName": p.str("TrademarkApplicantName", required=True, max_len=128),
               "TrademarkRegistrationNumber": p.str("TrademarkRegistrationNumber", required=True, max_len=32),
               "TrademarkEffExpDate": parse_day("TrademarkEffExpDate", p.str("TrademarkEffExpDate", max_len=40),
                                                True), "TrademarkPic": pic}
    doc_id = await qualifications.create_document(
        ctx.svc, ctx.account_id, "trademark", p.str("TrademarkName", required=True, max_len=128), "", details,
        [("TrademarkPic", [pic])])
    return {"Data": str(doc_id)}


async def query_sms_trademark(ctx: Ctx, p: Params) -> dict[str, Any]:
    ids = p.ids("TrademarkIdList")
    rows = await qualifications.list_documents(ctx.svc, ctx.account_id, "trademark", ids)
    return {"Data": [{"TrademarkId": r["id"], "TrademarkName": r["name"], **{k: v for k, v in r["details"].items()},
                      "TrademarkPicUrl": _pic(ctx, r["details"]["TrademarkPic"])} for r in rows]}


_ICP_PICS = ("AppIcpRecordPic", "AppRuntimePic", "AppStoreDownloadPic")


async def create_sms_app_icp_record(ctx: Ctx, p: Params) -> dict[str, Any]:
    details: dict[str, Any] = {
        "AppPrincipalUnitName": p.str("AppPrincipalUnitName", required=True, max_len=128),
        "AppIcpLicenseNumber": p.str("AppIcpLicenseNumber", required=True, max_len=64),
        "AppApprovalDate": parse_day("AppApprovalDate", p.str("AppApprovalDate", max_len=40), True),
        "Domain": p.str("Domain", max_len=255),
    }
    for name in _ICP_PICS:
        details[name] = p.str(name, required=name == "AppIcpRecordPic", max_len=300)
    doc_id = await qualifications.create_document(
        ctx.svc, ctx.account_id, "app_icp", p.str("AppServiceName", required=True, max_len=128), "", details,
        [(name, [details[name]]) for name in _ICP_PICS if details[name]])
    return {"Data": str(doc_id)}


async def query_sms_app_icp_record(ctx: Ctx, p: Params) -> dict[str, Any]:
    ids = p.ids("AppIcpRecordIdList")
    rows = await qualifications.list_documents(ctx.svc, ctx.account_id, "app_icp", ids)
    return {"Data": [{"AppIcpRecordId": r["id"], "AppServiceName": r["name"], **r["details"],
                      **{f"{n}Url": _pic(ctx, r["details"][n]) for n in _ICP_PICS}} for r in rows]}


# --- upload policies for these files --------------------------------------------------------------

async def get_qualification_oss_info(ctx: Ctx, p: Params) -> dict[str, Any]:
    policy = media.oss_policy(ctx.svc, ctx.account_id, "file")
    return {"Data": {"AccessKeyId": policy["AccessKeyId"], "Expire": int(policy["ExpireTime"]),
                     "Host": policy["Host"], "Policy": policy["Policy"], "Signature": policy["Signature"],
                     "StartPath": policy["StartPath"]}}


async def get_oss_info_for_upload_file(ctx: Ctx, p: Params) -> dict[str, Any]:
    policy = media.oss_policy(ctx.svc, ctx.account_id, "file")
    return {"Model": {k: policy[k] for k in ("AccessKeyId", "ExpireTime", "Host", "Policy", "Signature",
                                             "StartPath")}}


OPERATIONS = {
    "SubmitSmsQualification": Operation(submit_sms_qualification, card=True),
    "UpdateSmsQualification": Operation(update_sms_qualification, card=True),
    "DeleteSmsQualification": Operation(delete_sms_qualification, card=True),
    "QuerySmsQualificationRecord": Operation(query_sms_qualification_record, card=True),
    "QuerySingleSmsQualification": Operation(query_single_sms_qualification, card=True),
    "CreateSmsAuthorizationLetter": Operation(create_sms_authorization_letter, card=True),
    "QuerySmsAuthorizationLetter": Operation(query_sms_authorization_letter, card=True),
    "CreateSmsTrademark": Operation(create_sms_trademark, card=True),
    "QuerySmsTrademark": Operation(query_sms_trademark, card=True),
    "CreateSmsAppIcpRecord": Operation(create_sms_app_icp_record, card=True),
    "QuerySmsAppIcpRecord": Operation(query_sms_app_icp_record, card=True),
    "GetQualificationOssInfo": Operation(get_qualification_oss_info, card=True),
    "GetOSSInfoForUploadFile": Operation(get_oss_info_for_upload_file, card=True),
}
