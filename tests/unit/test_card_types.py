"""Every one of the 20 card types: a valid example passes (and round-trips through the wire form), and
examples that break the type's rules fail with a message naming the page, the element kind and the rule."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from cardsms.domain.card import parse_card_template
from cardsms.domain.card_types import CARD_TYPE_NAMES, TYPE_RULES
from cardsms.domain.errors import CardsmsError
from cardsms.domain.vendors import CARD_TYPE_SUPPORT

MEDIA = {"sq": "oneToOne", "wide": "sixteenToNine", "band": "threeToOne", "tall": "fortyEightToSixtyFive",
         "vid": None}
RATIO_MEDIA = {"oneToOne": "sq", "sixteenToNine": "wide", "threeToOne": "band", "fortyEightToSixtyFive": "tall",
               None: "wide"}


def image(ratio: str | None) -> dict[str, Any]:
    return {"type": "IMAGE", "srcType": 1, "src": RATIO_MEDIA[ratio]}


def text(content: str, title: bool = False) -> dict[str, Any]:
    return {"type": "TEXT", "content": content, "isTextTitle": title}


def button(label: str = "查看") -> dict[str, Any]:
    return {"type": "BUTTON", "content": label, "actionType": "OPEN_BROWSER",
            "action": {"target": "https://shop.example.com/x", "merchantName": "Shop"}}


def valid_page(card_type: int) -> list[dict[str, Any]]:
    """The smallest page the type's rule allows, with the personal parameter where it needs one."""
    rule = TYPE_RULES[card_type]
    els: list[dict[str, Any]] = []
    els += [image(rule.ratio) for _ in range(rule.images[0])]
    els += [{"type": "VIDEO", "srcType": 1, "src": "vid", "cover": "wide"} for _ in range(rule.videos[0])]
    els += [text("您的红包 ${amount} 元" if rule.personal else f"标题{i}", True) for i in range(rule.titles[0])]
    els += [text(f"【商店】正文{i}") for i in range(rule.bodies[0])]
    els += [button() for _ in range(rule.buttons[0])]
    return [{**e, "positionNumber": i} for i, e in enumerate(els, 1)]


def template(card_type: int, pages: int | None = None) -> dict[str, Any]:
    n = pages or TYPE_RULES[card_type].pages[0]
    return {"cardType": card_type, "cardSignName": "商店",
            "extendInfo": {"scene": "test", "purpose": "1",
                           "params": [{"name": "${amount}", "type": 1, "example": "8.88"}]},
            "templateContent": {"pages": [{"tmpCards": valid_page(card_type)} for _ in range(n)]}}


@pytest.mark.parametrize("card_type", sorted(CARD_TYPE_NAMES))
def test_every_card_type_has_a_rule_vendors_and_a_valid_example(card_type: int) -> None:
    assert card_type in TYPE_RULES and CARD_TYPE_SUPPORT[card_type]
    t = template(card_type)
    card = parse_card_template("示例", t, MEDIA)
    again = parse_card_template("示例", card.to_wire(), MEDIA)
    assert again.to_wire() == card.to_wire() and card.card_type == card_type
    high = TYPE_RULES[card_type].pages[1]
    assert len(parse_card_template("示例", template(card_type, high), MEDIA).pages) == high


def _fails(t: dict[str, Any], *words: str) -> None:
    with pytest.raises(CardsmsError) as err:
        parse_card_template("示例", t, MEDIA)
    assert all(w in err.value.message for w in words), err.value.message


@pytest.mark.parametrize("card_type", sorted(CARD_TYPE_NAMES))
def test_every_card_type_refuses_what_breaks_its_rule(card_type: int) -> None:
    rule = TYPE_RULES[card_type]
    name = CARD_TYPE_NAMES[card_type]
    # one page too many (or too few)
    _fails(template(card_type, rule.pages[1] + 1), f"card type {card_type} ({name}) takes", "pages")
    # a button too many
    t = template(card_type)
    t["templateContent"]["pages"][0]["tmpCards"] += [{**button(), "positionNumber": 90 + i}
                                                     for i in range(rule.buttons[1] - rule.buttons[0] + 1)]
    _fails(t, "pages[1]", f"card type {card_type} ({name})", "BUTTON")
    # a required element missing: the first kind the type needs at least one of
    for kind, etype in (("images", "IMAGE"), ("videos", "VIDEO"), ("titles", "TEXT")):
        if getattr(rule, kind)[0]:
            t = template(card_type)
            cards = t["templateContent"]["pages"][0]["tmpCards"]
            victim = next(i for i, e in enumerate(cards) if e["type"] == etype
                          and (kind != "titles" or e.get("isTextTitle")))
            del cards[victim]
            _fails(t, "pages[1]", f"card type {card_type}", "element(s) per page")
            break
    # an image of the wrong ratio
    if rule.ratio and rule.images[0]:
        t = template(card_type)
        wrong = "sq" if rule.ratio != "oneToOne" else "wide"
        next(e for e in t["templateContent"]["pages"][0]["tmpCards"] if e["type"] == "IMAGE")["src"] = wrong
        _fails(t, "pages[1].tmpCards", f"needs a {rule.ratio} image")


def test_items_come_in_sets_and_personal_red_packets_need_a_parameter() -> None:
    t = template(17)
    t["templateContent"]["pages"][0]["tmpCards"].append({**text("第三个商品", True), "positionNumber": 50})
    _fails(t, "e-commerce multi-product", "items of one IMAGE and one title TEXT and one body TEXT each")
    t = template(20)
    t["templateContent"]["pages"][0]["tmpCards"].append({**text("【商店】满100减20"), "positionNumber": 50})
    _fails(t, "multi coupon", "one title TEXT and one body TEXT each")
    t = template(16)
    next(e for e in t["templateContent"]["pages"][0]["tmpCards"] if e.get("isTextTitle"))["content"] = "新年红包"
    _fails(t, "personalised red packet", "must hold a parameter")
    plain = copy.deepcopy(t)
    plain["cardType"] = 8  # the same card as an ordinary red packet is fine
    assert parse_card_template("示例", plain, MEDIA).card_type == 8
    long_label = template(19)
    next(e for e in long_label["templateContent"]["pages"][0]["tmpCards"] if e["type"] == "BUTTON")["content"] = (
        "立即领取这张优惠券吧")
    _fails(long_label, "BUTTON", "length must be <= 8")


def test_docs_cards_md_shows_the_rules_the_code_applies() -> None:
    from pathlib import Path

    from cardsms.domain.card_types import types_table

    doc = (Path(__file__).resolve().parents[2] / "docs" / "cards.md").read_text()
    assert types_table() in doc, "docs/cards.md's table is out of date: paste cardsms.domain.card_types.types_table()"


@pytest.mark.parametrize("card_type", sorted(CARD_TYPE_NAMES))
def test_the_one_renderer_draws_every_type(card_type: int) -> None:
    from cardsms.links.render import card_json, card_view, render_card_page

    wire = parse_card_template("示例", template(card_type), MEDIA).to_wire()
    params, urls = {"amount": "8.88"}, {k: f"https://media.example/{k}.png" for k in MEDIA}
    html = render_card_page(card_view(wire, params, urls), "示例")
    titles = [e["content"].replace("${amount}", "8.88") for page in wire["templateContent"]["pages"]
              for e in page["tmpCards"] if e.get("isTextTitle")]
    assert all(t in html for t in titles) and f'data-card-type="{card_type}"' in html
    assert html.count('class="item"') == (len(titles) if TYPE_RULES[card_type].same_count else 0)
    parsed = card_json(wire, params, urls)
    assert parsed["cardType"] == card_type and len(parsed["pages"]) == len(wire["templateContent"]["pages"])
