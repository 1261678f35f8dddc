"""The card designer's form <-> the card template model (CARD_TEMPLATES.md wire form).

The designer is a plain HTML form: `pages` pages, page i has `p{i}_n` elements, element j of page
i has fields `p{i}_e{j}_{type,content,title,src,action,target,package,floor}`. Structural edits
(add/remove/move an element or page) are an `op` posted with the whole form; the server applies
it and renders the form again, so the designer needs no client-side state.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from cardsms.domain.card import ACTION_TYPES
from cardsms.domain.card_types import CARD_TYPE_NAMES, SUPPORTED_CARD_TYPES

MAX_PAGES = 10  # a template holds at most 10 pages (horizontal-slide cards use them all)
MAX_ELEMENTS = 12
_VAR = re.compile(r"\$\{([A-Za-z][A-Za-z0-9]{0,9})\}")
DESIGNER_TYPES = sorted(SUPPORTED_CARD_TYPES)
DESIGNER_ACTIONS = ("OPEN_URL", "OPEN_BROWSER", "OPEN_APP", "DIAL_PHONE", "OPEN_SMS", "OPEN_EMAIL")
assert set(DESIGNER_ACTIONS) <= set(ACTION_TYPES)


@dataclass
class Element:
    type: str = "TEXT"
    content: str = ""
    title: bool = False
    src: str = ""
    action: str = ""
    target: str = ""
    package: str = ""
    floor: str = ""


@dataclass
class Design:
    name: str = ""
    card_type: int = 5
    sign: str = ""
    scene: str = ""
    purpose: str = "1"
    factorys: str = ""
    pages: list[list[Element]] = field(default_factory=lambda: [[]])

    @classmethod
    def starter(cls) -> Design:
        return cls(pages=[[Element("IMAGE"), Element("TEXT", "", True), Element("TEXT"),
                           Element("BUTTON", action="OPEN_BROWSER")]])

    @classmethod
    def from_form(cls, form: dict[str, str]) -> Design:
        def num(key: str, default: int, hi: int) -> int:
            value = form.get(key, "")
            return max(0, min(int(value), hi)) if value.isdigit() else default

        card_type = num("card_type", 5, 99)
        d = cls(form.get("name", ""), card_type, form.get("sign", ""), form.get("scene", ""),
                form.get("purpose", "1"), form.get("factorys", ""), [])
        for i in range(max(1, num("pages", 1, MAX_PAGES))):
            page = []
            for j in range(num(f"p{i}_n", 0, MAX_ELEMENTS)):
                k = f"p{i}_e{j}_"
                page.append(Element(form.get(k + "type", "TEXT"), form.get(k + "content", ""),
                                    form.get(k + "title") == "1", form.get(k + "src", ""), form.get(k + "action", ""),
                                    form.get(k + "target", ""), form.get(k + "package", ""), form.get(k + "floor", "")))
            d.pages.append(page)
        return d

    def apply(self, op: str) -> None:
        """add:P:TYPE, del:P:E, up:P:E, addpage, delpage:P — anything else is ignored."""
        parts = op.split(":")
        try:
            if parts[0] == "add" and parts[2] in ("TEXT", "IMAGE", "VIDEO", "BUTTON"):
                page = self.pages[int(parts[1])]
                if len(page) < MAX_ELEMENTS:
                    page.append(Element(parts[2], action="OPEN_BROWSER" if parts[2] == "BUTTON" else ""))
            elif parts[0] == "del":
                del self.pages[int(parts[1])][int(parts[2])]
            elif parts[0] == "up" and int(parts[2]) > 0:
                page, j = self.pages[int(parts[1])], int(parts[2])
                page[j - 1], page[j] = page[j], page[j - 1]
            elif parts[0] == "addpage" and len(self.pages) < MAX_PAGES:
                self.pages.append([Element("IMAGE"), Element("TEXT", "", True)])
            elif parts[0] == "delpage" and len(self.pages) > 1:
                del self.pages[int(parts[1])]
        except (IndexError, ValueError):
            return

    def params(self) -> list[str]:
        names: dict[str, None] = {}
        for page in self.pages:
            for el in page:
                for text in (el.content, el.target):
                    names.update(dict.fromkeys(_VAR.findall(text)))
        return list(names)

    def to_template(self) -> dict[str, Any]:
        """The CreateCardSmsTemplate `Template` object; validation is parse_card_template's job."""
        pages = []
        for page in self.pages:
            cards = []
            for pos, el in enumerate(page, 1):
                item: dict[str, Any] = {"type": el.type, "positionNumber": pos}
                if el.type in ("IMAGE", "VIDEO"):
                    item.update(srcType=1 if el.src.isdigit() else 2, src=el.src.strip())
                else:
                    item["content"] = el.content
                if el.type == "TEXT":
                    item["isTextTitle"] = el.title
                if el.action and el.type != "TEXT":
                    action: dict[str, Any] = {"target": el.target.strip(), "merchantName": self.sign.strip()}
                    if el.action == "OPEN_APP":
                        action["packageName"] = [p.strip() for p in el.package.split(",") if p.strip()]
                        action["floorUrl"] = el.floor.strip()
                    item.update(actionType=el.action, action=action)
                cards.append(item)
            pages.append({"tmpCards": cards})
        return {
            "extendInfo": {"scene": self.scene.strip(), "purpose": self.purpose,
                           "params": [{"name": "${" + p + "}", "type": 1, "example": p} for p in self.params()]},
            "templateContent": {"pages": pages}, "cardSignName": self.sign.strip(), "cardType": self.card_type,
        }


def type_choices() -> list[tuple[int, str]]:
    return [(t, CARD_TYPE_NAMES[t]) for t in DESIGNER_TYPES]
