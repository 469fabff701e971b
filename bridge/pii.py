"""Detect and mask personal data in Chinese microblog text: mobile numbers, resident ID numbers
and e-mail addresses.

Why here: inquiries are published back into public threads and written to logs; neither may
carry a citizen's phone or ID number (the ticket system may, when a department allows it).

Decisions worth knowing:

* **Resident ID numbers (GB 11643-1999)** are recognised by structure first: a known province
  code, a real birth date (not in the future, not before 1900) and 18 characters (the last may be
  ``X``). Numbers whose check digit verifies are reported with ``checksum_ok=True``. A number with
  that structure but a *wrong* check digit is still masked by default (``checksum_ok=False``): a
  citizen who mistypes one digit of an ID has still published 17 correct digits that give away the
  region, the birth date and most of the sequence, and an ordinary 18-digit number (order,
  tracking or invoice number) almost never also carries a province code *and* a valid birth date
  in the right places (roughly 1 in 6,000 random numbers). 18-digit numbers without that
  structure are never masked. Pass ``require_checksum=True`` for the strict reading.
* **Mobile numbers**: mainland numbers ``1[3-9]x xxxx xxxx``, written continuously or grouped
  3-4-4 with spaces or dashes, optionally with ``+86`` / ``0086`` / ``86`` / ``(+86)``. A run
  of digits longer than 11 is not a phone number (it is an order number, or an ID handled above).
* Full-width digits and letters (``１３８…``, ``＠``) are matched like ASCII ones: the matching
  runs over a same-length folded copy of the text, so spans refer to the original text.
* **Normalised before matching**, because citizens hide numbers from filters or type them on a
  phone keyboard: up to three separators between two digits (spaces of every width, tabs, line
  breaks, NBSP, dots, dashes of every width) become one space, and zero-width characters
  anywhere are removed, in a second, normalised reading of the text (where the patterns allow
  one space between any two digits), which also reads ``(at)``/``[at]``/`` at `` as
  ``@`` and ``。``/``(dot)``/`` dot `` as ``.`` around e-mail addresses. Both readings are
  matched, and every span maps back to the original text.
* **Old 15-digit ID numbers** (issued until 1999: region, ``YYMMDD``, sequence, no check digit)
  are masked when the region is a real province/city/county code and the date is real; ID
  numbers written in groups (``110105 19491231 002X``, ``1101 0519 4912 3100 2X``) are found
  through the normalised reading.
* **The bridge's own references** (``GB-`` and 16 hex digits, the ticket id the bridge writes
  into ticket systems and replies) are never masked and never glued to a neighbouring number.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Final, Literal

Kind = Literal["mobile", "id_number", "email"]

MASKS: Final[Mapping[str, str]] = {
    "mobile": "[手机号]",
    "id_number": "[身份证号]",
    "email": "[邮箱]",
}


@dataclass(frozen=True, slots=True)
class Finding:
    """One piece of personal data: its kind and where it is (``text[start:end]``).

    ``value`` is kept out of ``repr`` so that logging a finding does not leak what it hides.
    """

    kind: Kind
    start: int
    end: int
    value: str = field(repr=False, compare=False)
    checksum_ok: bool = True
    """False only for an ID-shaped number whose GB 11643 check digit does not verify."""

    @property
    def span(self) -> tuple[int, int]:
        return (self.start, self.end)


# Full-width forms (U+FF01..U+FF5E) fold to ASCII one-to-one, the ideographic space to a space,
# so offsets in the folded text equal offsets in the original.
_FOLD: Final = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}

# Characters a citizen puts between digit groups: every kind of space and line break, NBSP,
# dots, dashes of every width (hyphen, non-breaking hyphen, figure, en and em dash, minus,
# small and full-width hyphen-minus; full-width forms are folded first).
_DIGIT_SEPARATORS: Final = (
    " \t\n\r\f\v\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
    ".\u00b7\u2024\u30fb\uff61"
    "\\-\u2010-\u2015\u2212\u2e3a\u2e3b\ufe58\ufe63"
)
# Invisible characters, dropped wherever they are.
_INVISIBLE: Final = "\u00ad\u180e\u200b-\u200f\u2060-\u2064\ufeff"
_NORMALISE_DIGITS = re.compile(
    rf"(?P<gap>(?<=[\d)])[{_DIGIT_SEPARATORS}{_INVISIBLE}]{{1,3}}(?=[\dXx]))|[{_INVISIBLE}]+"
)
_AT_WORDS = re.compile(
    r"\s*(?:[(\[{<【〔]\s*(?:at|AT|At)\s*[)\]}>】〕]|(?<=[A-Za-z0-9])\s+(?:at|AT)\s+(?=[A-Za-z0-9])|@)\s*"
)
_DOT_WORDS = re.compile(
    r"\s*(?:[(\[{<【〔]\s*(?:dot|DOT|Dot)\s*[)\]}>】〕]|(?<=[A-Za-z0-9])\s+(?:dot|DOT)\s+(?=[A-Za-z0-9]))\s*"
    r"|(?<=[A-Za-z0-9])\s*[。｡](?=\s*[A-Za-z])\s*"
)
# Something _AT_WORDS or _DOT_WORDS would change (cheap test before building that reading).
_EMAIL_HINT = re.compile(
    r"(?i)[(\[{<【〔]\s*(?:at|dot)\s*[)\]}>】〕]|[A-Za-z0-9]\s+(?:at|dot)\s+[A-Za-z0-9]"
    r"|\s@|@\s|[A-Za-z0-9]\s*[。｡]\s*[A-Za-z]"
)
# The bridge's reference (bridge/stages/triage.py ``reference_for``): never personal data.
BRIDGE_REFERENCE: Final = re.compile(r"(?<![A-Za-z0-9])GB-[0-9A-Fa-f]{16}(?![0-9A-Za-z])")

_SEP = r"[ \-]"
_MOBILE = re.compile(
    r"(?<![\d+])"
    r"(?:(?:\+|00)?86[ \-]?|\(\+?86\)[ ]?)?"
    rf"1[3-9]\d(?:{_SEP}?\d{{4}}){{2}}"
    r"(?!\d)",
    re.ASCII,
)
_ID = re.compile(
    r"(?<![\d])"
    rf"(?P<region>[1-9]\d{{5}}){_SEP}?"
    rf"(?P<birth>(?:18|19|20)\d{{2}}[01]\d[0-3]\d){_SEP}?"
    r"(?P<seq>\d{3})(?P<check>[\dXx])"
    r"(?![\dXx])",
    re.ASCII,
)
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+\-])"
    r"[A-Za-z0-9][A-Za-z0-9._%+\-]{0,63}@[A-Za-z0-9](?:[A-Za-z0-9\-]{0,62}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]{0,62}[A-Za-z0-9])?)*\.[A-Za-z]{2,24}"
    r"(?![A-Za-z0-9\-])",
    re.ASCII,
)

# The same shapes in the normalised reading, where any two digits may have one space between
# them (what is left of the separators a citizen typed).
_S = " ?"
_MOBILE_SPACED = re.compile(
    r"(?<![\d+])"
    rf"(?:(?:\+|00)?8{_S}6{_S}|\(\+?86\){_S})?"
    rf"1{_S}[3-9](?:{_S}\d){{9}}"
    r"(?!\d)",
    re.ASCII,
)
_ID_SPACED = re.compile(
    r"(?<!\d)"
    rf"(?P<region>[1-9](?:{_S}\d){{5}}){_S}"
    rf"(?P<birth>(?:1{_S}[89]|2{_S}0)(?:{_S}\d){{2}}{_S}[01]{_S}\d{_S}[0-3]{_S}\d){_S}"
    rf"(?P<seq>\d(?:{_S}\d){{2}}){_S}(?P<check>[\dXx])"
    r"(?![\dXx])",
    re.ASCII,
)
_OLD_ID_SPACED = re.compile(
    r"(?<!\d)"
    rf"(?P<region>[1-9](?:{_S}\d){{5}}){_S}"
    rf"(?P<birth>\d{_S}\d{_S}[01]{_S}\d{_S}[0-3]{_S}\d){_S}"
    rf"(?P<seq>\d(?:{_S}\d){{2}})"
    r"(?![\dXx])",
    re.ASCII,
)
_OLD_ID = re.compile(
    r"(?<![\d])(?P<region>[1-9]\d{5})(?P<birth>\d{2}[01]\d[0-3]\d)(?P<seq>\d{3})(?![\dXx])",
    re.ASCII,
)

# First two digits of a GB 11643 address code: provinces, plus 81/82/83 (residence permits of
# Hong Kong, Macao and Taiwan residents, which use the same format and check digit).
_PROVINCES: Final = frozenset(
    {11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46}
    | {50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82, 83}
)
_WEIGHTS: Final = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK_CHARS: Final = "10X98765432"


def id_check_char(first17: str) -> str:
    """The GB 11643 check character (``0``-``9`` or ``X``) for the first 17 digits."""
    if len(first17) != 17 or not first17.isascii() or not first17.isdigit():
        raise ValueError("need exactly 17 ASCII digits")
    total = sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True))
    return _CHECK_CHARS[total % 11]


def is_valid_id_number(number: str, *, today: date | None = None) -> bool:
    """True for an 18-character resident ID with a known region, a real past birth date and a
    correct check digit."""
    n = number.strip()
    if len(n) != 18:
        return False
    return _id_structure_ok(n[:6], n[6:14], today) and id_check_char(n[:17]) == n[17].upper()


def _id_structure_ok(region: str, birth: str, today: date | None) -> bool:
    if not (region.isdigit() and birth.isdigit()) or int(region[:2]) not in _PROVINCES:
        return False
    try:
        born = date(int(birth[:4]), int(birth[4:6]), int(birth[6:8]))
    except ValueError:
        return False
    return date(1900, 1, 1) <= born <= (today or date.today())


def _old_id_structure_ok(region: str, birth: str) -> bool:
    """A 15-digit ID (born 1900-1999): a province, a city code 01-70 or 90 and a county code
    that is not 00 (the stricter region test keeps ordinary 15-digit numbers out)."""
    city, county = int(region[2:4]), int(region[4:6])
    if not (1 <= city <= 70 or city == 90) or county == 0:
        return False
    return _id_structure_ok(region, "19" + birth, None)


class _Reading:
    """A normalised copy of the text and, per character, the span of the original it stands
    for, so a match in the copy masks exactly the original characters."""

    def __init__(
        self, text: str, pattern: re.Pattern[str], replace: Callable[[re.Match[str]], str]
    ) -> None:
        out: list[str] = []
        self.starts: list[int] = []
        self.ends: list[int] = []
        pos = 0
        for m in pattern.finditer(text):
            self._keep(text, pos, m.start(), out)
            new = replace(m)
            out.append(new)
            self.starts.extend([m.start()] * len(new))
            self.ends.extend([m.end()] * len(new))
            pos = m.end()
        self._keep(text, pos, len(text), out)
        self.text = "".join(out)

    def _keep(self, text: str, start: int, end: int, out: list[str]) -> None:
        out.append(text[start:end])
        self.starts.extend(range(start, end))
        self.ends.extend(range(start + 1, end + 1))

    def span(self, m: re.Match[str]) -> tuple[int, int]:
        return self.starts[m.start()], self.ends[m.end() - 1]


def _email_reading(folded: str) -> _Reading:
    at = _Reading(folded, _AT_WORDS, lambda m: "@")
    dot = _Reading(at.text, _DOT_WORDS, lambda m: ".")
    # compose the two maps: a character of the final text → the original span
    dot.starts = [at.starts[i] for i in dot.starts]
    dot.ends = [at.ends[i - 1] for i in dot.ends]
    return dot


def _gap(m: re.Match[str]) -> str:
    return " " if m["gap"] else ""


def _find(
    text: str, folded: str, reading: _Reading | None, require_checksum: bool
) -> list[Finding]:
    """Matches in ``folded`` (or in the normalised reading of it), as findings in ``text``."""
    if reading is None:
        source, ids, old_ids, mobiles = folded, _ID, _OLD_ID, _MOBILE
    else:
        source, ids, old_ids, mobiles = reading.text, _ID_SPACED, _OLD_ID_SPACED, _MOBILE_SPACED

    def span(m: re.Match[str]) -> tuple[int, int]:
        return reading.span(m) if reading is not None else (m.start(), m.end())

    def part(m: re.Match[str], name: str) -> str:
        return m[name].replace(" ", "")

    found: list[Finding] = []
    for m in ids.finditer(source):
        region, birth, seq = part(m, "region"), part(m, "birth"), part(m, "seq")
        if not _id_structure_ok(region, birth, None):
            continue
        ok = id_check_char(region + birth + seq) == m["check"].upper()
        if ok or not require_checksum:
            a, b = span(m)
            found.append(Finding("id_number", a, b, text[a:b], ok))
    if not require_checksum:  # an old ID has no check digit to verify
        for m in old_ids.finditer(source):
            if _old_id_structure_ok(part(m, "region"), part(m, "birth")):
                a, b = span(m)
                found.append(Finding("id_number", a, b, text[a:b], False))
    for m in mobiles.finditer(source):
        a, b = span(m)
        found.append(Finding("mobile", a, b, text[a:b]))
    return found


def find_personal_data(
    text: str, *, require_checksum: bool = False, keep: Iterable[str | None] = ()
) -> list[Finding]:
    """All mobile numbers, ID numbers and e-mail addresses in ``text``, in order, without
    overlaps (the longer match wins, e.g. an e-mail whose local part is a phone number).

    ``keep``: strings that are not personal data wherever they appear (the ticket id a reply
    names: a ticket system may number its tickets like an ID or a phone number)."""
    if not text or not _may_contain(text):
        return []
    folded = text.translate(_FOLD)
    # The bridge's references and the kept strings are blanked (same length) so nothing
    # matches in or across them.
    folded = BRIDGE_REFERENCE.sub(lambda m: "#" * len(m.group()), folded)
    for kept in keep:
        if kept and len(kept) >= 4 and kept in text:
            folded = _blank(folded, text, kept)
    found = _find(text, folded, None, require_checksum)
    if _NORMALISE_DIGITS.search(folded):  # the normalised reading differs: match it too
        found += _find(text, folded, _Reading(folded, _NORMALISE_DIGITS, _gap), require_checksum)
    for m in _EMAIL.finditer(folded):
        found.append(Finding("email", m.start(), m.end(), text[m.start() : m.end()]))
    if _EMAIL_HINT.search(folded):
        reading = _email_reading(folded)
        for m in _EMAIL.finditer(reading.text):
            a, b = reading.span(m)
            found.append(Finding("email", a, b, text[a:b]))
    return _without_overlaps(found)


def _blank(folded: str, text: str, kept: str) -> str:
    """``folded`` with each whole-token occurrence of ``kept`` blanked: never one inside a
    longer number or word (ticket "1111" must not hide the phone number 13911112222)."""

    def joined(i: int) -> bool:
        return 0 <= i < len(folded) and folded[i].isascii() and folded[i].isalnum()

    start = text.find(kept)
    while start >= 0:
        end = start + len(kept)
        if not joined(start - 1) and not joined(end):
            folded = folded[:start] + "#" * len(kept) + folded[end:]
        start = text.find(kept, start + 1)
    return folded


def _may_contain(text: str) -> bool:
    """Cheap pre-check: every kind needs a digit, an at-sign (ASCII or full-width) or 'at'."""
    return any(c.isdigit() or c in "@＠" for c in text) or "at" in text.lower()


def _without_overlaps(found: list[Finding]) -> list[Finding]:
    found.sort(key=lambda f: (f.start, -(f.end - f.start)))
    kept: list[Finding] = []
    for f in found:
        if kept and f.start < kept[-1].end:
            if f.end - f.start > kept[-1].end - kept[-1].start:
                kept[-1] = f
            continue
        kept.append(f)
    return kept


def redact(
    text: str,
    *,
    masks: Mapping[str, str] = MASKS,
    require_checksum: bool = False,
    keep: Iterable[str | None] = (),
) -> tuple[str, list[Finding]]:
    """``text`` with every finding replaced by its mask (``[手机号]``, ``[身份证号]``, ``[邮箱]``),
    and the findings (spans refer to the original text); ``keep`` as in
    ``find_personal_data``."""
    findings = find_personal_data(text, require_checksum=require_checksum, keep=keep)
    if not findings:
        return text, findings
    parts: list[str] = []
    pos = 0
    for f in findings:
        parts.append(text[pos : f.start])
        parts.append(masks[f.kind])
        pos = f.end
    parts.append(text[pos:])
    return "".join(parts), findings


def redact_text(text: str, *, keep: Iterable[str | None] = ()) -> str:
    """Just the masked text (for templates and log fields)."""
    return redact(text, keep=keep)[0]


def contains_personal_data(text: str) -> bool:
    return bool(find_personal_data(text))


# -- structlog --------------------------------------------------------------------------------

_MAX_DEPTH = 6


def _scrub(value: Any, depth: int = 0) -> Any:
    """A copy of ``value`` with personal data masked in every string inside it.

    Integers are checked too (a phone number logged as an int); other objects are checked via
    ``str()`` and replaced by their masked text only when they would leak.
    """
    if isinstance(value, str):
        return redact_text(value)
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, int):
        s = str(value)
        return redact_text(s) if len(s) >= 11 and contains_personal_data(s) else value
    if depth >= _MAX_DEPTH:
        return redact_text(str(value))
    if isinstance(value, Mapping):
        return {_scrub(k, depth + 1): _scrub(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_scrub(v, depth + 1) for v in value]
        if isinstance(value, list):
            return items
        return tuple(items) if isinstance(value, tuple) else set(items)
    if isinstance(value, bytes | bytearray):
        s = bytes(value).decode("utf-8", "replace")
        return redact_text(s) if contains_personal_data(s) else value
    try:
        s = str(value)
    except Exception:
        return value
    return redact_text(s) if contains_personal_data(s) else value


def redact_processor(logger: Any, method_name: str, event_dict: Any) -> Any:
    """structlog processor: mask personal data in every value of the event dict.

    An exception attached with ``exc_info`` is rendered to its ``exception`` text first (its
    message may quote a phone number), so this may sit before or after ``format_exc_info``.
    """
    if event_dict.get("exc_info"):
        from structlog.processors import format_exc_info

        event_dict = format_exc_info(logger, method_name, event_dict)
    return {key: _scrub(value) for key, value in event_dict.items()}
