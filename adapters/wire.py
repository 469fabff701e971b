"""Reading documents from servers and platforms we do not control, safely.

Every adapter parses bodies written by others: JSON with ids near 2^53, XML from civic servers,
error pages in any shape. The rules here are shared so that they hold everywhere:

- nesting deeper than ``MAX_DEPTH`` is refused before it can exhaust the stack (of the parser or
  of any recursive code that walks the document later);
- JSON numbers can be kept exact (integers are exact in Python; fractions become ``Decimal``),
  and ``NaN``/``Infinity`` are refused;
- XML is parsed with ``defusedxml`` (no DTDs, no entity expansion, no external fetches);
- an error body of any kind (JSON, XML, HTML, plain text) becomes a short, single-line reason.

Malformed input raises ``Malformed`` (a ``ValueError``); callers map it onto the adapter error
that fits where the document came from (a push is refused, a response is retried).
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from decimal import Decimal
from typing import Any

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

MAX_DEPTH = 64
# A page of items from a platform: one absurdly nested item must not make the whole page
# unreadable (it would block the stream), so pages may nest deeper; items are then checked
# one by one by code that never recurses into fields it does not know.
PAGE_MAX_DEPTH = 512
REASON_LIMIT = 300

_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_SPACE = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_HTML_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_HTML_DROP = re.compile(r"<(script|style)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]*>")

# Where error bodies keep their message, most telling first.
_REASON_KEYS = (
    "error_description",
    "error",
    "message",
    "detail",
    "details",
    "description",
    "errors",
    "non_field_errors",
    "title",
)


class Malformed(ValueError):
    """The document cannot be read (syntax, encoding, nesting); the message is safe to log."""


def json_depth(body: bytes) -> int:
    """How deeply arrays and objects nest in a JSON text (strings are not counted)."""
    depth = deepest = 0
    for byte in _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKET):
        if byte in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _reject_constant(name: str) -> Any:
    raise Malformed(f"non-standard JSON constant {name}")


def parse_json(body: bytes | str, *, exact: bool = False, max_depth: int = MAX_DEPTH) -> Any:
    """JSON from bytes (UTF-8) or text; ``exact`` keeps fractions as ``Decimal`` so no number
    ever passes through a float."""
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    if json_depth(raw) > max_depth:
        raise Malformed(f"JSON nested deeper than {max_depth} levels")
    try:
        text = raw.decode("utf-8-sig")
        if exact:
            return json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
        return json.loads(text, parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise Malformed("not UTF-8") from None
    except RecursionError:
        raise Malformed("JSON nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise Malformed(f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None


def parse_xml(body: bytes, *, max_depth: int = MAX_DEPTH) -> ET.Element:
    """An XML document without DTDs or entities, nested at most ``max_depth`` elements deep."""
    try:
        root: ET.Element = SafeET.fromstring(body, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise Malformed(f"XML refused ({type(exc).__name__})") from None
    except ET.ParseError as exc:
        raise Malformed(f"not XML ({exc})") from None
    except (ValueError, RecursionError) as exc:
        raise Malformed(f"not XML ({type(exc).__name__})") from None
    stack = [(root, 1)]
    while stack:
        elem, depth = stack.pop()
        if depth > max_depth:
            raise Malformed(f"XML nested deeper than {max_depth} elements")
        stack.extend((child, depth + 1) for child in elem)
    return root


def one_line(text: str, limit: int = REASON_LIMIT) -> str:
    """Whitespace folded, control characters dropped, cut to ``limit`` characters."""
    text = _SPACE.sub(" ", _CONTROL.sub(" ", text)).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _messages(doc: Any, budget: int = 20) -> list[str]:
    """Strings an error document carries under its usual keys (bounded walk)."""
    found: list[str] = []
    todo: list[Any] = [doc]
    while todo and len(found) < budget:
        item = todo.pop(0)
        if isinstance(item, str):
            if item.strip():
                found.append(item.strip())
        elif isinstance(item, list):
            todo.extend(item[:budget])
        elif isinstance(item, dict):
            keys = [k for k in _REASON_KEYS if k in item]
            if keys:
                todo.extend(item[k] for k in keys)
            else:  # e.g. {"detail": {"service_code": ["…"]}}: the field names say what is wrong
                for key, value in list(item.items())[:budget]:
                    if key in ("code", "status", "status_code"):
                        continue
                    inner = _messages(value, 3) if isinstance(value, list | dict | str) else []
                    found.extend(f"{key}: {m}" for m in inner)
    return found


def _xml_messages(root: ET.Element) -> list[str]:
    texts = [
        (e.text or "").strip() for e in root.iter() if e.tag in ("description", "message", "error")
    ]
    return [t for t in texts if t]


def error_detail(body: bytes, content_type: str = "") -> str:
    """What an error body says, as one short line: JSON (``{"error": …}``, ``{"code", "detail"}``,
    the GeoReport ``[{"code", "description"}]`` list …), GeoReport XML, an HTML page's title, or
    plain text. Empty when the body says nothing."""
    if not body.strip():
        return ""
    text = body[:65536].decode("utf-8", "replace")
    stripped = text.lstrip()
    if stripped[:1] in ("{", "["):
        try:
            messages = _messages(parse_json(body[:65536]))
        except Malformed:
            messages = []
        if messages:
            return one_line("; ".join(dict.fromkeys(messages)))
    lowered = stripped[:512].lower()
    if "html" in content_type.lower() or lowered.startswith(("<!doctype html", "<html")):
        title = _HTML_TITLE.search(text)
        if title and title.group(1).strip():
            return one_line(_TAG.sub(" ", title.group(1)))
        return one_line(_TAG.sub(" ", _HTML_DROP.sub(" ", text)))
    if stripped.startswith("<"):
        try:
            messages = _xml_messages(parse_xml(body[:65536]))
        except Malformed:
            messages = []
        if messages:
            return one_line("; ".join(messages))
        return one_line(_TAG.sub(" ", text))
    return one_line(text)


def xml_to_python(elem: ET.Element, item_tags: frozenset[str]) -> Any:
    """An XML element as the shape of its JSON twin: repeated ``item_tags`` children become a
    list, other children a dict, a leaf its stripped text (``None`` when empty). The element
    must come from ``parse_xml`` (depth already bounded)."""
    children = list(elem)
    if not children:
        text = (elem.text or "").strip()
        return text or None
    tags = {c.tag for c in children}
    if len(tags) == 1 and next(iter(tags)) in item_tags:
        return [xml_to_python(c, item_tags) for c in children]
    return {c.tag: xml_to_python(c, item_tags) for c in children}
