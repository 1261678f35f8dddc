"""Media for card templates through the official SDK: the upload policy, registering an image, downloads,
and what an upload outside its policy or of the wrong size or type is answered."""

from __future__ import annotations

import httpx
import pytest
from alibabacloud_dysmsapi20170525 import models as m
from alibabacloud_tea_openapi.exceptions import ClientException

from tests.conftest import Tenant
from tests.integration.helpers import (
    jpeg,
    png,
    upload,
)


def test_upload_register_and_download_an_image(tenant: Tenant) -> None:
    c = tenant.client()
    info = c.get_ossinfo_for_card_template().body
    assert info.success and info.code == "OK"
    assert {"AccessKeyId", "AliUid", "Bucket", "ExpireTime", "Host", "Policy", "Signature", "StartPath"} <= set(
        info.data.to_map())
    data = png()
    response, key = upload(c, data)
    assert response.status_code == 200 and response.json()["size"] == len(data)
    body = c.get_media_resource_id(m.GetMediaResourceIdRequest(
        resource_type=2, oss_key=key, file_size=len(data), extend_info='{"img_rate":"sixteenToNine"}')).body
    assert body.success and body.data.resource_id.isdigit()
    assert httpx.get(body.data.res_url_download).content == data
    assert httpx.get(body.data.res_url_download.split("?")[0]).status_code == 403


@pytest.mark.parametrize(
    ("mutate", "status", "needle"),
    [
        (lambda f: f.update(signature="AAAA"), 403, "signature"),
        (lambda f: f.update(key="card/999999/elsewhere.png"), 403, "StartPath"),
        (lambda f: f.update(key=f["key"].rsplit("/", 1)[0] + "/../../etc/passwd"), 400, "key"),
        (lambda f: f.pop("policy"), 400, "policy"),
    ],
)
def test_uploads_outside_the_policy_are_refused(tenant: Tenant, mutate, status: int, needle: str) -> None:
    info = tenant.client().get_ossinfo_for_card_template().body.data
    fields = {"key": info.start_path + "a.png", "policy": info.policy, "OSSAccessKeyId": info.access_key_id,
              "signature": info.signature}
    mutate(fields)
    r = httpx.post(info.host, data=fields, files={"file": ("a.png", png(32, 18))})
    assert r.status_code == status and needle in r.text


def test_oversize_and_wrong_type_media_are_refused_with_a_reason(tenant: Tenant) -> None:
    c = tenant.client()
    r, _ = upload(c, b"%PDF-1.4 not media at all", "doc.png")
    assert r.status_code == 400 and "JPG/PNG images and MP4" in r.text
    r, _ = upload(c, b"\x89PNG\r\n\x1a\n" + b"\0" * (2 * 1024 * 1024 + 10), "big.png")
    assert r.status_code == 400 and "EntityTooLarge" in r.text
    # a square image registered as 16:9 is refused, and so is a size that does not match
    square = jpeg(400, 400)
    r, key = upload(c, square, "sq.jpg")
    assert r.status_code == 200
    with pytest.raises(ClientException) as exc:
        c.get_media_resource_id(m.GetMediaResourceIdRequest(
            resource_type=2, oss_key=key, file_size=len(square), extend_info='{"img_rate":"sixteenToNine"}'))
    assert "400x400" in exc.value.message and "not sixteenToNine" in exc.value.message
    with pytest.raises(ClientException) as exc:
        c.get_media_resource_id(m.GetMediaResourceIdRequest(
            resource_type=2, oss_key=key, file_size=1, extend_info='{"img_rate":"oneToOne"}'))
    assert "FileSize" in exc.value.message
    with pytest.raises(ClientException) as exc:
        c.get_media_resource_id(m.GetMediaResourceIdRequest(
            resource_type=4, oss_key=key, file_size=len(square)))
    assert "does not match the file" in exc.value.message
    with pytest.raises(ClientException) as exc:
        c.get_media_resource_id(m.GetMediaResourceIdRequest(resource_type=2, oss_key="card/nope.png", file_size=1,
                                                            extend_info='{"img_rate":"oneToOne"}'))
    assert "resUrl not exist" in exc.value.message
