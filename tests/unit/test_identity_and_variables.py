"""The check characters of qualification identifiers and the variable attributes of text templates."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cardsms.domain.errors import CardsmsError
from cardsms.domain.identity import (
    id_card_check_char,
    id_card_problem,
    mobile_problem,
    uscc_check_char,
    uscc_problem,
)
from cardsms.domain.variables import RULES, check_template_rule, check_values


@pytest.mark.parametrize("code", ["91350100M000100Y43", "91330100799655058B", "91110000802100433B"])
def test_published_unified_social_credit_codes_pass(code: str) -> None:
    assert uscc_problem(code) == ""


@given(st.text(alphabet="0123456789ABCDEFGHJKLMNPQRTUWXY", min_size=17, max_size=17))
def test_every_single_character_typo_of_a_credit_code_is_caught(first17: str) -> None:
    code = first17 + uscc_check_char(first17)
    assert uscc_problem(code) == ""
    wrong = next(c for c in "0123456789ABCDEFGHJKLMNPQRTUWXY" if c != code[17])
    assert "check character" in uscc_problem(code[:17] + wrong)


def test_credit_code_shape_and_identity_numbers() -> None:
    assert "18 characters" in uscc_problem("9133010079965505")
    assert "18 characters" in uscc_problem("91330100799655058I")  # I is not in the alphabet
    assert id_card_problem("11010519491231002X") == "" and id_card_problem("11010519491231002x") == ""
    assert "check digit" in id_card_problem("110105194912310021")
    assert "date of birth" in id_card_problem("110105194913310021")
    first17 = "33010619900101123"
    assert id_card_problem(first17 + id_card_check_char(first17)) == ""
    assert mobile_problem("13800138000") == "" and "11 digits" in mobile_problem("1380013800")


@pytest.mark.parametrize(("attribute", "good", "bad"), [
    ("numberCaptcha", "4821", "48a1"), ("characterWithNumber2", "a8Kz", "a8K"), ("money", "99.50", "9.999"),
    ("time", "2026-11-29 10:30", "soon"), ("phone_number2", "0571-82123456", "12"),
    ("license_plate_number", "浙A12345", "A12345"), ("other_number2", "A-1001", "A 1001"),
    ("email_address", "li@example.com", "li@"), ("name", "王五", "x" * 21),
])
def test_variable_attributes(attribute: str, good: str, bad: str) -> None:
    assert RULES[attribute].check(good) and not RULES[attribute].check(bad)


def test_template_rules_declare_every_variable_once() -> None:
    assert check_template_rule({"order": "other_number2"}, ["order"], 1) == {"order": "other_number2"}
    for rule, words in (({}, "does not declare"), ({"order": "x"}, "not a variable attribute"),
                        ({"order": "other_number2", "y": "money"}, "${y}"), ("[]", "JSON object")):
        with pytest.raises(CardsmsError) as err:
            check_template_rule(rule, ["order"], 1)
        assert words in err.value.message
    with pytest.raises(CardsmsError, match="TemplateType 0"):
        check_template_rule({"code": "money"}, ["code"], 0)
    with pytest.raises(CardsmsError, match="verification code templates"):
        check_template_rule({"code": "numberCaptcha"}, ["code"], 1)
    check_values({"code": "numberCaptcha"}, {"code": 4821}, "TemplateParam")
    with pytest.raises(CardsmsError, match=r"TemplateParam \$\{code\}"):
        check_values({"code": "numberCaptcha"}, {"code": "abc"}, "TemplateParam")
