"""Pure rules: numbers, card templates, vendors, handsets, settings, the error table."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from cardsms.domain.card import parse_card_template
from cardsms.domain.errors import CardsmsError, render_markdown
from cardsms.domain.numbers import InvalidNumber, normalise_mainland_mobile, normalise_number
from cardsms.domain.vendors import Vendor, parse_factorys, unsupported_reason
from cardsms.settings import Settings
from cardsms.simulator.handsets import SimulatedHandsets, load_overrides, simulated_handset
from tests.integration.helpers import SAMPLE_CARD

ROOT = Path(__file__).resolve().parents[2]


@given(st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True), st.sampled_from(["", "+86", "86", "0086", "+86 "]),
       st.sampled_from(["", " ", "-"]))
def test_mainland_mobiles_normalise_whatever_the_prefix_and_separators(number: str, prefix: str, sep: str) -> None:
    raw = prefix + number[:3] + sep + number[3:7] + sep + number[7:]
    parsed = normalise_number(raw)
    assert parsed.e164 == "+86" + number and parsed.mainland_mobile and parsed.national == number
    assert parsed.sha1 == hashlib.sha1(number.encode()).hexdigest()


@pytest.mark.parametrize("raw", ["", "abc", "12345", "1380013800", "23800138000", "+86 123", "1" * 25, "+999123"])
def test_invalid_numbers_are_reported(raw: str) -> None:
    with pytest.raises(InvalidNumber):
        normalise_number(raw)


def test_international_numbers_are_e164_but_not_card_capable() -> None:
    assert normalise_number("+1 650 253 0000").e164 == "+16502530000"
    with pytest.raises(InvalidNumber, match="mainland"):
        normalise_mainland_mobile("+16502530000")


def _card(**changes: object) -> dict:
    t = copy.deepcopy(SAMPLE_CARD)
    t["templateContent"]["pages"][0]["tmpCards"][0]["src"] = "R1"
    t.update(changes)
    return t


def test_the_documented_sample_template_is_valid_and_round_trips() -> None:
    card = parse_card_template("Order shipped", _card(), {"R1": "sixteenToNine"})
    assert card.to_wire() == _card() and card.actions == {"OPEN_BROWSER", "OPEN_APP"}
    assert card.resource_ids == {"R1"} and card.params == ["name"]


def test_carousels_allow_eleven_lines_and_no_more() -> None:
    page = {"tmpCards": [
        {"type": "IMAGE", "srcType": 1, "src": "R1", "positionNumber": 1},
        {"type": "TEXT", "isTextTitle": True, "content": "Title", "positionNumber": 2},
        {"type": "TEXT", "isTextTitle": False, "content": "\n".join(["line"] * 11), "positionNumber": 3}]}
    t = {"cardType": 11, "cardSignName": "Example", "templateContent": {"pages": [page, page]}}
    assert parse_card_template("carousel", t, {"R1": "sixteenToNine"}).card_type == 11
    page["tmpCards"][2]["content"] += "\nline"
    with pytest.raises(CardsmsError, match="at most 11 lines"):
        parse_card_template("carousel", t, {"R1": "sixteenToNine"})
    with pytest.raises(CardsmsError, match="needs a sixteenToNine image"):
        parse_card_template("carousel", t, {"R1": "oneToOne"})


def test_open_url_cannot_download_an_app() -> None:
    t = _card()
    t["templateContent"]["pages"][0]["tmpCards"][0]["actionType"] = "OPEN_URL"
    t["templateContent"]["pages"][0]["tmpCards"][0]["action"]["target"] = "https://x.example/app.apk"
    with pytest.raises(CardsmsError, match="OPEN_BROWSER"):
        parse_card_template("n", t, {"R1": "sixteenToNine"})


def test_vendor_matrix_and_factorys() -> None:
    assert parse_factorys("") == tuple(Vendor)
    assert parse_factorys("huawei, OPPO") == (Vendor.HUAWEI, Vendor.OPPO)
    with pytest.raises(ValueError, match="unknown vendor"):
        parse_factorys("Apple")
    assert unsupported_reason(Vendor.XIAOMI, 4, set()) is not None  # XiaoMi does not render video
    assert unsupported_reason(Vendor.OPPO, 5, {"OPEN_URL"}) is not None  # OPPO lacks OPEN_URL
    assert unsupported_reason(Vendor.HONOR, 6, set()) is None  # HONOR follows HuaWei


def test_handset_population_is_a_pure_function_with_the_configured_share(tmp_path: Path) -> None:
    hashes = [hashlib.sha1(f"1390000{i:04d}".encode()).hexdigest() for i in range(5000)]
    assert [simulated_handset(h, 80) for h in hashes[:50]] == [simulated_handset(h, 80) for h in hashes[:50]]
    capable = sum(simulated_handset(h, 80).card_capable for h in hashes) / len(hashes)
    assert 0.6 < capable < 0.75  # 85% card vendors x 80% share
    assert not any(simulated_handset(h, 0).card_capable for h in hashes)
    csv = tmp_path / "h.csv"
    csv.write_text("mobile,vendor,support\n13900000001,XiaoMi,1\n+86 139 0000 0002,other,1\n")
    handsets = SimulatedHandsets(0, load_overrides(csv))
    first = handsets.lookup(hashlib.sha1(b"13900000001").hexdigest())
    assert first.vendor == Vendor.XIAOMI and first.card_capable
    assert not handsets.lookup(hashlib.sha1(b"13900000002").hexdigest()).card_capable
    csv.write_text("13900000001,Nokia,1\n")
    with pytest.raises(ValueError, match=r"h\.csv:1: unknown vendor"):
        load_overrides(csv)


def test_production_refuses_a_default_or_short_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    for bad in ("", "change-me", "short-secret"):
        with pytest.raises(ValidationError, match="CARDSMS_SECRET_KEY"):
            Settings(env="production", secret_key=bad)
    assert Settings(env="production", secret_key="x" * 40).env == "production"


def test_settings_from_toml_file_with_environment_winning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "cardsms.toml"
    config.write_text('port = 9001\napi_qps = 7\nsim_deny_list = ["foo"]\n')
    monkeypatch.setenv("CARDSMS_CONFIG", str(config))
    monkeypatch.setenv("CARDSMS_API_QPS", "9")
    s = Settings()
    assert (s.port, s.api_qps, s.sim_deny_list) == (9001, 9, ["foo"])
    monkeypatch.setenv("CARDSMS_PORT", "70000")
    with pytest.raises(ValidationError, match="port"):
        Settings()


def test_development_generates_and_keeps_a_secret_key(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path)
    first = s.resolved_secret_key()
    assert len(first) > 40 and Settings(data_dir=tmp_path).resolved_secret_key() == first


def test_docs_errors_md_is_generated_from_the_error_table() -> None:
    assert (ROOT / "docs" / "errors.md").read_text() == render_markdown()


def test_docs_configuration_md_lists_every_setting() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    for item in Settings.describe():
        assert f"`{item['env']}`" in text, f"{item['env']} is not documented in docs/configuration.md"


def test_docs_api_md_accounts_for_every_operation_of_the_sdk() -> None:
    """Every operation of the official SDK 4.6.0 client is implemented or listed in docs/api.md with the reason."""
    import inspect
    import re

    import alibabacloud_dysmsapi20170525.client as sdk

    from cardsms.openapi.dispatch import OPERATIONS

    actions = set(re.findall(r"action = '([A-Za-z]+)'", inspect.getsource(sdk)))
    assert len(actions) == 80
    doc = (ROOT / "docs" / "api.md").read_text()
    table = doc.split("## Every operation of the SDK 4.6.0 client", 1)[1].split("\n## ", 1)[0]
    listed = {name for row in table.splitlines() if row.startswith("| ") and not row.startswith("| operation")
              for name in re.findall(r"[A-Z][A-Za-z]+", row.split("|")[1])}
    assert actions - set(OPERATIONS) == listed, "docs/api.md's list of operations not implemented is out of date"
    assert not listed & set(OPERATIONS)
    implemented = len(actions & set(OPERATIONS))
    assert f"cardsms implements {implemented} of them" in " ".join(table.split())
