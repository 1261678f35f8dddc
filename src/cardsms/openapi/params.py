"""Parameter decoding: query and form merged, flattened structures (`Name.1.field`) and their
JSON-string form both accepted. Errors name the parameter and the rule."""

from __future__ import annotations

import re
from typing import Any

from cardsms.domain.errors import CardsmsError, invalid, missing

_INDEXED = re.compile(r"^(?P<name>[A-Za-z]+)\.(?P<index>\d+)(?:\.(?P<field>[A-Za-z0-9_]+))?$")
MAX_PARAM_CHARS = 4 * 1024 * 1024


_Str = str
_Int = int
_List = list
_Dict = dict
_Bool = bool


class Params:
    def __init__(self, pairs: list[tuple[str, _Str]]) -> None:
        self.values: dict[str, _Str] = {}
        for k, v in pairs:
            if len(v) > MAX_PARAM_CHARS:
                raise invalid(k, f"is longer than {MAX_PARAM_CHARS} characters")
            if "\x00" in v or "\x00" in k:
                raise invalid(k, "must not contain NUL characters")
            self.values[k] = v

    def str(self, name: _Str, required: _Bool = False, max_len: _Int | None = None, default: _Str = "") -> _Str:
        value = self.values.get(name)
        if value is None or (required and not value.strip()):
            if required:
                raise missing(name)
            return default
        if max_len is not None and len(value) > max_len:
            raise invalid(name, f"must be at most {max_len} characters, got {len(value)}")
        return value

    def int(self, name: _Str, required: _Bool = False, default: _Int | None = None,
            low: _Int | None = None, high: _Int | None = None) -> _Int:
        raw = self.values.get(name, "").strip()
        if not raw:
            if required or default is None:
                raise missing(name)
            return default
        try:
            value = int(raw)
        except ValueError:
            raise invalid(name, f"must be an integer, got {raw[:40]!r}") from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise invalid(name, f"must be between {low} and {high}, got {value}")
        return value

    def bool(self, name: _Str, required: _Bool = False, default: _Bool = False) -> _Bool:
        raw = self.values.get(name, "").strip().lower()
        if not raw:
            if required:
                raise missing(name)
            return default
        if raw not in ("true", "false"):
            raise invalid(name, f"must be true or false, got {raw[:40]!r}")
        return raw == "true"

    def optional_int(self, name: _Str, low: _Int = 1, high: _Int = 1 << 62) -> _Int | None:
        return self.int(name, low=low, high=high) if self.values.get(name, "").strip() else None

    def strings(self, name: _Str, max_items: _Int = 100, max_len: _Int = 300) -> _List[_Str]:
        """A list of strings: `Name.1 ...` or a JSON array."""
        items = self.list(name)
        if len(items) > max_items:
            raise invalid(name, f"at most {max_items} items, got {len(items)}")
        for i, item in enumerate(items, 1):
            if not isinstance(item, str) or not item or len(item) > max_len:
                raise invalid(f"{name}[{i}]", f"must be a string of 1-{max_len} characters")
        return items

    def ids(self, name: _Str, max_items: _Int = 100) -> _List[_Int]:
        """A list of row ids (`Name.1 ...` or a JSON array): each a whole number 1..2^62."""
        items = self.list(name)
        if len(items) > max_items:
            raise invalid(name, f"at most {max_items} items, got {len(items)}")
        ids = []
        for i, item in enumerate(items, 1):
            text = str(item).strip()
            if isinstance(item, bool) or not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 1 << 62:
                raise invalid(f"{name}.{i}", f"must be a whole number between 1 and {1 << 62}, got {text[:40]!r}")
            ids.append(int(text))
        return ids

    def json(self, name: _Str, required: _Bool = False) -> Any:
        from cardsms.openapi.wire import parse_json_param

        raw = self.values.get(name)
        if raw is None or not raw.strip():
            if required:
                raise missing(name)
            return None
        return parse_json_param(raw, name)

    def _indexed(self, name: _Str) -> _Dict[_Int, Any]:
        items: _Dict[_Int, Any] = {}
        for key, value in self.values.items():
            m = _INDEXED.match(key)
            if not m or m["name"] != name:
                continue
            index = int(m["index"])
            if index < 1 or index > 100_000:
                raise invalid(key, "list indexes start at 1")
            if m["field"]:
                slot = items.setdefault(index, {})
                if not isinstance(slot, dict):
                    raise invalid(key, "mixes scalar and object items")
                slot[m["field"]] = value
            else:
                items[index] = value
        return items

    def list(self, name: _Str, required: _Bool = False) -> _List[Any]:
        """A list parameter: `Name.1`, `Name.1.field`, or `Name` as a JSON array."""
        items = self._indexed(name)
        if items:
            return [items[i] for i in sorted(items)]
        raw = self.values.get(name)
        if raw is None or not raw.strip():
            if required:
                raise missing(name)
            return []
        value = self.json(name)
        if isinstance(value, dict):
            value = [value]
        if not isinstance(value, list):
            raise CardsmsError("isv.INVALID_JSON_PARAM", f"{name} must be a JSON array")
        return value

    def objects(self, name: _Str, required: _Bool = False) -> _List[_Dict[_Str, Any]]:
        items = self.list(name, required)
        for i, item in enumerate(items, 1):
            if not isinstance(item, dict):
                raise CardsmsError("isv.INVALID_JSON_PARAM", f"{name}.{i} must be an object")
        return items
