"""Detect and mask personal data in Chinese microblog text: mobile and landline numbers,
resident ID numbers and e-mail addresses.

Why here: inquiries are published back into public threads and written to logs; neither may
carry a citizen's phone or ID number (the ticket system may, when a department allows it).

How the text is read (``fold``), because citizens hide numbers from filters and officials type
them however their keyboard lets them:

* **Folded first**, on a copy that remembers, for each of its characters, the original
  character it came from (so a mask replaces exactly the characters the citizen typed):
  NFKC (full-width forms, mathematical, circled ``①``, parenthesised ``⑴``, superscript ``¹``
  digits, Kangxi radicals), every other decimal digit (Arabic-Indic, Devanagari, Thai, …)
  and the remaining digit symbols (``❶``, ``➀``) to ASCII, Chinese numerals (``〇零一二…九``,
  the financial ``壹贰叁…``, ``幺`` for 1, ``两`` for 2 beside another digit) to digits, and
  invisible characters removed: bidi embeddings, overrides and isolates (U+202A–202E,
  U+2066–2069), zero-width characters, U+FEFF, soft hyphens, every other format character,
  and combining marks (keycaps ``1️⃣``, variation selectors).
* **Numbers are read as groups**: digits joined by short runs (at most five characters) of
  anything that is not a letter, a digit or ``@``: spaces of every width, ``/ 、 ， , . - * ( )
  ~ _ :``, dashes of every width, emoji. A number is a run of *whole* groups (a phone
  number is never cut out of the middle of a longer digit string), so ``139/8765/4321``,
  ``139、8765、4321``, ``(139)8765-4321`` and ``1 3 9 8 7 6 5 4 3 2 1`` are all one mobile number,
  while ``13800138000123`` (an order number) is not.
* **Shapes that are not personal data** are refused on their grouping: amounts with thousands
  separators (``13,800,123,456``), lists mixing single digits and longer numbers (bus lines
  ``1/3/5/7/9/13/15/17路``), more than four multi-digit groups for a phone number.

What is recognised:

* **Mobile numbers**: ``1[3-9]x xxxx xxxx``, with ``+86`` / ``0086`` / ``86`` / ``(+86)``, or a
  ``0`` (dialled from another city).
* **Landlines with an area code**: ``0`` + ``10``/``2x``/a three-digit code + a 7- or 8-digit
  local number starting 2–9 (``010-6512 3456``, ``(0571)8765 4321``), or the same after
  ``+86``/``0086`` without the ``0``. The area code is its own group or the number is written
  in one piece. Short service numbers (``12345``, ``96110``, ``400-…``) are not landlines.
* **Resident ID numbers (GB 11643-1999)** are recognised by structure first: a known province
  code, a real birth date (not in the future, not before 1900) and 18 characters (the last may be
  ``X``). Numbers whose check digit verifies are reported with ``checksum_ok=True``. A number with
  that structure but a *wrong* check digit is still masked by default (``checksum_ok=False``): a
  citizen who mistypes one digit of an ID has still published 17 correct digits that give away the
  region, the birth date and most of the sequence, and an ordinary 18-digit number (order,
  tracking or invoice number) almost never also carries a province code *and* a valid birth date
  in the right places (roughly 1 in 6,000 random numbers). 18-digit numbers without that
  structure are never masked. Pass ``require_checksum=True`` for the strict reading.
* **Old 15-digit ID numbers** (issued until 1999: region, ``YYMMDD``, sequence, no check digit)
  are masked when the region is a real province/city/county code and the date is real, written
  in one piece, 6-6-3 or digit by digit.
* **E-mail addresses**, also written ``(at)``/``[at]``/`` at `` for ``@`` and
  ``。``/``(dot)``/`` dot `` for ``.``.
* **The bridge's own references** (``GB-`` and 16 hex digits, the ticket id the bridge writes
  into ticket systems and replies) and the strings passed as ``keep`` (the ticket id a reply
  names) are never masked and never glued to a neighbouring number.

Cost: one pass of ``str.translate`` (C speed) folds text without characters that expand or
vanish; otherwise one linear Python pass. Matching is one linear regex scan for digit runs and
a bounded look at each run's groups. The fold table is built once, on first use (~0.1 s).
"""

from __future__ import annotations

import functools
import itertools
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Final, Literal, NamedTuple

Kind = Literal["mobile", "landline", "id_number", "email"]

MASKS: Final[Mapping[str, str]] = {
    "mobile": "[手机号]",
    "landline": "[电话]",
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


# -- folding ---------------------------------------------------------------------------------

# Chinese numerals as digits (``两`` only beside another digit: it is an ordinary word too).
_CHINESE_DIGITS: Final = {
    **dict.fromkeys("〇零○◯", "0"),
    **dict.fromkeys("一壹弌幺", "1"),
    **dict.fromkeys("二贰貳弍", "2"),
    **dict.fromkeys("三叁參弎", "3"),
    **dict.fromkeys("四肆", "4"),
    **dict.fromkeys("五伍", "5"),
    **dict.fromkeys("六陆陸", "6"),
    **dict.fromkeys("七柒", "7"),
    **dict.fromkeys("八捌", "8"),
    **dict.fromkeys("九玖", "9"),
    "ー": "-",  # the katakana long-vowel mark, typed as a dash by Chinese input methods
}
_LIANG: Final = re.compile(r"(?<=[0-9])[两兩]|[两兩](?=[0-9])")
_REMOVED_CATEGORIES: Final = frozenset({"Cf", "Mn", "Me"})
# Blocks where no character folds (CJK ideographs, Hangul syllables, surrogates, private use):
# skipped when the table is built; the Chinese numerals are added by hand.
_UNFOLDED_BLOCKS: Final = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0xD800, 0xF8FF))
_LAST_FOLDED: Final = 0x2FA1F  # CJK compatibility ideographs supplement
_TAGS_AND_SELECTORS: Final = range(0xE0000, 0xE01F0)


def _as_digit(ch: str) -> str:
    if ch.isascii():
        return ch
    if ch in _CHINESE_DIGITS:
        return _CHINESE_DIGITS[ch]
    value = unicodedata.decimal(ch, None)
    if value is None:
        value = unicodedata.digit(ch, None)
    return str(value) if value is not None else ch


class _FoldTable(NamedTuple):
    table: dict[int, str]  # code point -> its folded form (only those that change)
    irregular: re.Pattern[str]  # characters whose folded form is not exactly one character
    digitish: re.Pattern[str]  # anything that folds to a digit, and e-mail hints


@functools.cache
def _fold_table() -> _FoldTable:
    """Built once: every code point whose folded form differs from itself."""
    table: dict[int, str] = {}
    ranges: list[Iterable[int]] = []
    start = 0x80
    for lo, hi in _UNFOLDED_BLOCKS:
        ranges.append(range(start, lo))
        start = hi + 1
    ranges += [range(start, _LAST_FOLDED + 1), _TAGS_AND_SELECTORS]
    category, decomposition = unicodedata.category, unicodedata.decomposition
    for block in ranges:
        for cp in block:
            c = chr(cp)
            kind = category(c)
            if kind in _REMOVED_CATEGORIES:
                table[cp] = ""
                continue
            if not decomposition(c) and not c.isdigit():  # NFKC leaves it as it is
                continue
            folded = "".join(_as_digit(ch) for ch in unicodedata.normalize("NFKC", c))
            if folded == c:
                continue
            # A pictograph whose compatibility form is a word (🈚 無, ℡ TEL) stays a symbol:
            # between digits it is a separator, as it looks.
            worded = any(ch.isalpha() for ch in folded) and not any(ch.isdigit() for ch in folded)
            if not (worded and kind.startswith("S")):
                table[cp] = folded
    for ch, digit in _CHINESE_DIGITS.items():
        table[ord(ch)] = digit
    irregular = [cp for cp, f in table.items() if len(f) != 1]
    digits = [cp for cp, f in table.items() if any("0" <= ch <= "9" for ch in f)]
    digits += [ord(c) for c in "0123456789两兩@＠﹫"]
    # Only characters of the basic plane go into the classes (a class with others is matched
    # slowly, character by character); any other character takes the careful path.
    return _FoldTable(
        table,
        re.compile(f"{_char_class(irregular)}|{_BEYOND_BMP}"),
        re.compile(f"{_char_class(digits)}|[aAａＡ][tTｔＴ]|{_BEYOND_BMP}"),
    )


_BEYOND_BMP: Final = "[\U00010000-\U0010ffff]"


def _char_class(code_points: Iterable[int]) -> str:
    """A regex class of the basic-plane code points, as ranges."""
    cps = sorted(cp for cp in set(code_points) if cp <= 0xFFFF)
    parts, i = [], 0
    while i < len(cps):
        j = i
        while j + 1 < len(cps) and cps[j + 1] == cps[j] + 1:
            j += 1
        parts.append(re.escape(chr(cps[i])) + (f"-{re.escape(chr(cps[j]))}" if j > i else ""))
        i = j + 1
    return f"[{''.join(parts)}]"


@dataclass(frozen=True, slots=True)
class Folded:
    """The text as matched, and for each of its characters the index of the original
    character it came from (``None``: the same index, nothing expanded or vanished)."""

    text: str
    origin: list[int] | None = None
    reordered: bool = False

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The original span of ``text[start:end]``."""
        if self.origin is None:
            return start, end
        if self.reordered:  # a right-to-left override was read in display order
            part = self.origin[start:end]
            return min(part), max(part) + 1
        return self.origin[start], self.origin[end - 1] + 1


def fold(text: str) -> Folded:
    """``text`` as the matchers read it (see the module doc): linear in its length."""
    if text.isascii():
        return Folded(text)
    table, irregular, _ = _fold_table()
    origin: list[int] | None = None
    reordered = False
    if irregular.search(text) is None:
        folded = text.translate(table)
    elif _RLO not in text:
        parts = [table.get(ord(c), c) for c in text]
        origin = [i for i, f in enumerate(parts) for _ in f]
        folded = "".join(parts)
    else:
        folded, origin, reordered = _fold_slowly(text, table.get)
    if "两" in folded or "兩" in folded:
        folded = _LIANG.sub("2", folded)
    return Folded(folded, origin, reordered)


# Bidi embeddings and overrides open a level, PDF closes the innermost one; a paragraph ends
# them all.
_EMBEDDINGS: Final = frozenset("\u202a\u202b\u202d\u202e")
_RLO, _PDF = "\u202e", "\u202c"


def _fold_slowly(text: str, get: Callable[[int, str], str]) -> tuple[str, list[int], bool]:
    """The fold of a text with a right-to-left override, character by character, keeping
    where each folded character came from. What an override (U+202E … U+202C) encloses is
    displayed reversed, so it is read reversed: RLO ``1234 5678 931`` PDF shows, and is read
    as, ``139 8765 4321``."""
    out: list[str] = []
    origin: list[int] = []
    levels: list[tuple[str, int]] = []  # open embeddings: (opener, where its text starts)
    reordered = False

    def close(opener: str, start: int) -> None:
        nonlocal reordered
        if opener == _RLO and len(out) - start > 1:
            out[start:] = out[start:][::-1]
            origin[start:] = origin[start:][::-1]
            reordered = True

    for i, c in enumerate(text):
        if c in _EMBEDDINGS:
            levels.append((c, len(out)))
        elif c == _PDF and levels:
            close(*levels.pop())
        elif c in "\n\u2029":
            while levels:
                close(*levels.pop())
        f = get(ord(c), c)
        for ch in f:
            out.append(ch)
            origin.append(i)
    while levels:
        close(*levels.pop())
    return "".join(out), origin, reordered


def _invisible(c: str) -> bool:
    return _fold_table().table.get(ord(c)) == ""


# -- numbers ---------------------------------------------------------------------------------

# A group: digits, and an ID's check character X at its end. Groups are joined by up to five
# characters that are neither letters nor digits (``@`` excepted: addresses).
_GROUP: Final = re.compile(r"[0-9]+(?:[Xx](?![A-Za-z]))?")
_SEPARATOR: Final = r"(?:_|[^\w@])"
_RUN: Final = re.compile(rf"{_GROUP.pattern}(?:{_SEPARATOR}{{1,5}}{_GROUP.pattern})*")
_OPENERS: Final = {"(": ")", "[": "]", "【": "】", "〔": "〕", "<": ">", "{": "}"}
_CLOSERS: Final = {close: open_ for open_, close in _OPENERS.items()}
_MOBILE: Final = re.compile(r"1[3-9][0-9]{9}")
# (area code without its 0, local number)
_LANDLINE: Final = re.compile(r"(10|2[0-9]|[3-9][1-9][0-9])([2-9][0-9]{6,7})")
_BLANK: Final = "Ж"  # a letter: a blanked reference or kept id ends a digit run

# The bridge's reference (bridge/triage/role.py ``reference_for``): never personal data.
BRIDGE_REFERENCE: Final = re.compile(r"(?<![A-Za-z0-9])GB-[0-9A-Fa-f]{16}(?![0-9A-Za-z])")

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
    if len(n) != 18 or not n[:17].isascii() or not n[:17].isdigit():
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


@dataclass(frozen=True, slots=True)
class _Groups:
    """Consecutive whole groups of one digit run: their digits, sizes and the separators
    between them (``seps[k]`` lies between group ``k`` and ``k + 1``)."""

    digits: str
    sizes: tuple[int, ...]
    seps: tuple[str, ...]

    def after(self, n: int) -> _Groups | None:
        """The groups without the first ``n`` digits (a prefix), or None when the prefix
        ends inside a later group (``86 1 3812345678`` is not ``86`` + a number)."""
        k = consumed = 0
        while k < len(self.sizes) and consumed + self.sizes[k] <= n:
            consumed += self.sizes[k]
            k += 1
        if consumed == n:
            return _Groups(self.digits[n:], self.sizes[k:], self.seps[k:])
        if k == 0:  # the prefix is the start of the first group (``8613812345678``)
            return _Groups(self.digits[n:], (self.sizes[0] - n, *self.sizes[1:]), self.seps)
        return None


def _phone_grouping(g: _Groups) -> bool:
    """A phone number's grouping: digit by digit, or groups of two or more (one single digit
    allowed; more than four only if they are not a rising list), never an amount written with
    thousands separators. Lists mixing single digits and numbers (bus lines
    ``1/3/5/7/9/13/15/17路``) are not phone numbers."""
    singles = sum(1 for s in g.sizes if s == 1)
    longer = len(g.sizes) - singles
    if longer > 4 and _rising(g):
        return False
    # digits one by one, one pair among them at most (``⑴⑶⑸…〇〇…``: no ⑴-style zero)
    if longer and singles > 1 and not (longer == 1 and max(g.sizes) == 2):
        return False
    return not _amount_like(g)


def _rising(g: _Groups) -> bool:
    """Groups whose values only grow are a list (``13、15、17、19、101路``), not a phone
    number written in pairs (``18 20 03 67 748``)."""
    values, pos = [], 0
    for size in g.sizes:
        values.append(int(g.digits[pos : pos + size]))
        pos += size
    return all(a < b for a, b in itertools.pairwise(values))


def _amount_like(g: _Groups) -> bool:
    """``13,800,123,456`` / ``138,001,234.56``: thousands separators, not a phone number."""
    if len(g.sizes) < 3 or g.sizes[0] > 3:
        return False
    seps = [s.strip() for s in g.seps]
    sizes = list(g.sizes)
    if seps[-1] == "." and sizes[-1] <= 2:  # decimals
        seps, sizes = seps[:-1], sizes[:-1]
    return all(s in (",", ".", "'") for s in seps) and all(s == 3 for s in sizes[1:])


def _mobile(g: _Groups) -> bool:
    if len(g.digits) == 11:
        return _MOBILE.fullmatch(g.digits) is not None and _phone_grouping(g)
    for prefix in ("0", "86", "0086"):  # 0: dialled from another city
        if len(g.digits) == 11 + len(prefix) and g.digits.startswith(prefix):
            rest = g.after(len(prefix))
            return rest is not None and _mobile(rest)
    return False


def _landline(g: _Groups, plus: bool) -> bool:
    """``0`` + area code + local number; after ``+86``/``0086`` without the ``0``. The area
    code is a group of its own, or the whole number is one group (or digit by digit)."""
    if g.digits.startswith("0086") or (plus and g.digits.startswith("86")):
        rest = g.after(4 if g.digits.startswith("0086") else 2)
        return rest is not None and _landline_core(rest, "")
    return g.digits.startswith("0") and _landline_core(g, "0")


def _landline_core(g: _Groups, trunk: str) -> bool:
    m = _LANDLINE.fullmatch(g.digits[len(trunk) :])
    if m is None or not _phone_grouping(g):
        return False
    area = len(trunk) + len(m.group(1))
    return len(g.sizes) == 1 or g.sizes[0] == area or all(s == 1 for s in g.sizes)


def _id18(g: _Groups) -> bool | None:
    """None: not an ID number; otherwise whether its check character verifies."""
    d = g.digits
    if len(d) != 18 or not d[:17].isdigit() or not _id_structure_ok(d[:6], d[6:14], None):
        return None
    return id_check_char(d[:17]) == d[17].upper()


def _id15(g: _Groups) -> bool:
    d = g.digits
    if len(d) != 15 or not d.isdigit():
        return False
    grouped = len(g.sizes) == 1 or g.sizes[0] == 6 or all(s == 1 for s in g.sizes)
    return grouped and _old_id_structure_ok(d[:6], d[6:12])


_LONGEST: Final = 18  # an ID number; ``0086`` + a landline is at most 16 digits


def _never(_: str) -> bool:
    return False


# What a number of each length can start with (a first look, before the grouping is built):
# 11 a mobile or a landline, 12 either after 0 or a landline after 86, 13 either after 86,
# 14 a landline after 0086, 15 a mobile after 0086 or an old ID, 18 an ID (a province code
# starts 1-8).
_MAY_BE: Final[dict[int, Callable[[str], bool]]] = {
    11: lambda d: d[0] in "01",
    12: lambda d: d[0] == "0" or d.startswith("86"),
    13: lambda d: d.startswith("86"),
    14: lambda d: d.startswith("0086"),
    15: lambda d: d.startswith("0086") or "1" <= d[0] <= "8",
    18: lambda d: "1" <= d[0] <= "8",
}


def _number_at(
    s: str, groups: list[_Part], i: int, require_checksum: bool
) -> tuple[Kind, int, bool] | None:
    """The longest number made of whole groups ``i..j``: (kind, j, checksum_ok)."""
    plus = s[groups[i].start - 1 : groups[i].start] == "+"
    digits = ""
    sizes: list[int] = []
    seps: list[str] = []
    best: tuple[Kind, int, bool] | None = None
    for j in range(i, len(groups)):
        a, b, joined = groups[j]
        if j > i and joined:
            sizes[-1] += b - a
        else:
            if j > i:
                seps.append(s[groups[j - 1].end : a])
            sizes.append(b - a)
        digits += s[a:b]
        n = len(digits)
        if n > _LONGEST:
            break
        if n < 11 or not _MAY_BE.get(n, _never)(digits):  # cheap look before the real one
            if digits[-1] in "Xx":
                break
            continue
        g = _Groups(digits, tuple(sizes), tuple(seps))
        if digits[-1] in "Xx":  # only an ID ends so
            ok = _id18(g)
            if ok is not None and (ok or not require_checksum):
                best = ("id_number", j, ok)
            break
        if n == 18:
            ok = _id18(g)
            if ok is not None and (ok or not require_checksum):
                best = ("id_number", j, ok)
        elif n == 15 and not require_checksum and _id15(g):
            best = ("id_number", j, False)  # an old ID has no check digit to verify
        if n in (11, 12, 13, 15) and _mobile(g):
            best = ("mobile", j, True)
        elif 11 <= n <= 16 and _landline(g, plus):
            best = ("landline", j, True)
    return best


class _Part(NamedTuple):
    """Digits of one group (or of one script within it); ``joined``: no separator before it
    (it continues the previous part's group)."""

    start: int
    end: int
    joined: bool


_NUMERALS: Final = frozenset(c for c, d in _CHINESE_DIGITS.items() if d.isdigit()) | {"两", "兩"}
_NUMERAL: Final = re.compile(f"[{''.join(sorted(_NUMERALS))}]")


def _by_script(text: str, folded: Folded, start: int, end: int) -> list[_Part]:
    """A group cut where Chinese numerals meet other digits: a number may begin or end
    there (``…0000七天``: the ``七`` is a word), while its grouping is still that of the
    separators (``139八七六五4321`` is written in one piece)."""
    origin = folded.origin
    if _NUMERAL.search(text, *folded.span(start, end)) is None:
        return [_Part(start, end, False)]

    def numeral(k: int) -> bool:
        return text[origin[k] if origin is not None else k] in _NUMERALS

    parts: list[_Part] = []
    first, han = start, numeral(start)
    for k in range(start + 1, end):
        if folded.text[k] not in "Xx" and numeral(k) != han:
            parts.append(_Part(first, k, bool(parts)))
            first, han = k, not han
    parts.append(_Part(first, end, bool(parts)))
    return parts


# Words glued to a number that still make it a contact number (``tel13812345678``,
# ``vx13812345678``); any other letters glued to digits make a code (``JDVA13812345678``,
# ``SF1381234567890``), which is not personal data.
_CONTACT_WORDS: Final = frozenset(
    {"tel", "phone", "mobile", "mob", "cell", "call", "vx", "wx", "v", "wechat", "weixin"}
    | {"dh", "sj", "lxdh", "no", "id", "sfz", "qq", "hm"}
)
_LETTERS_BEFORE: Final = re.compile(r"[A-Za-z]+$")


def _may_start(s: str, part: _Part) -> bool:
    """A number does not start inside a code made of letters and digits."""
    start = part.start
    if part.joined or not start or not ("A" <= s[start - 1] <= "Z" or "a" <= s[start - 1] <= "z"):
        return True
    m = _LETTERS_BEFORE.search(s, max(0, start - 12), start)
    return m is not None and m.group().lower() in _CONTACT_WORDS


def _extend(s: str, start: int, end: int) -> tuple[int, int]:
    """Take in a ``+``, an opening bracket closed inside the number (``(+86)``,
    ``(139)8765-4321``) and a closing bracket opened inside it (``(158)(6620)(4417)``)."""
    if start and s[start - 1] == "+":
        start -= 1
    if start and s[start - 1] in _OPENERS and _OPENERS[s[start - 1]] in s[start:end]:
        start -= 1
    if end < len(s) and s[end] in _CLOSERS:
        opener = _CLOSERS[s[end]]
        if s.count(opener, start, end) > s.count(s[end], start, end):
            end += 1
    return start, end


def _numbers(text: str, folded: Folded, require_checksum: bool) -> list[Finding]:
    s = folded.text
    found: list[Finding] = []
    numerals = _NUMERAL.search(text) is not None
    for run in _RUN.finditer(s):
        if run.end() - run.start() < 11:  # every number has at least 11 digits
            continue
        spans = [m.span() for m in _GROUP.finditer(s, run.start(), run.end())]
        groups = [
            part
            for a, b in spans
            for part in (_by_script(text, folded, a, b) if numerals else [_Part(a, b, False)])
        ]
        whole_only = _card_like([b - a for a, b in spans])
        i = 0
        while i < len(groups):
            hit = _number_at(s, groups, i, require_checksum) if _may_start(s, groups[i]) else None
            if hit is None or (whole_only and (i, hit[1]) != (0, len(groups) - 1)):
                i += 1
                continue
            kind, j, ok = hit
            a, b = _extend(s, groups[i][0], groups[j][1])
            start, end = _with_invisibles(text, *folded.span(a, b))
            found.append(Finding(kind, start, end, text[start:end], ok))
            i = j + 1
    return found


def _card_like(sizes: list[int]) -> bool:
    """16 to 19 digits in groups of four (a card or account number, ``6222 0213 0571 8765
    432``): no phone number is read out of its middle; only an ID written 4-4-4-4-2, which is
    the whole of it, is."""
    return (
        len(sizes) >= 4
        and all(size == 4 for size in sizes[:-1])
        and 16 <= sum(sizes) <= 19
        and sizes[-1] <= 4
    )


def _with_invisibles(text: str, start: int, end: int) -> tuple[int, int]:
    """The span with the invisible characters around it (a bidi isolate around a number, a
    keycap after its last digit), so nothing of it is left behind."""
    while start and _invisible(text[start - 1]):
        start -= 1
    while end < len(text) and _invisible(text[end]):
        end += 1
    return start, end


# -- e-mail addresses ------------------------------------------------------------------------

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
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+\-])"
    r"[A-Za-z0-9][A-Za-z0-9._%+\-]{0,63}@[A-Za-z0-9](?:[A-Za-z0-9\-]{0,62}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]{0,62}[A-Za-z0-9])?)*\.[A-Za-z]{2,24}"
    r"(?![A-Za-z0-9\-])",
    re.ASCII,
)


_ASCII_LETTER: Final = re.compile(r"[A-Za-z]")


class _Reading:
    """A rewritten copy of the text and, per character, the span of the original it stands
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


def _emails(text: str, folded: Folded) -> list[Finding]:
    s = folded.text
    found: list[Finding] = []
    if _ASCII_LETTER.search(s) is None:  # an address needs letters (its domain's at least)
        return found
    for m in _EMAIL.finditer(s):
        a, b = folded.span(m.start(), m.end())
        found.append(Finding("email", a, b, text[a:b]))
    if _EMAIL_HINT.search(s):
        reading = _email_reading(s)
        for m in _EMAIL.finditer(reading.text):
            a, b = folded.span(*reading.span(m))
            found.append(Finding("email", a, b, text[a:b]))
    return found


# -- finding and masking ---------------------------------------------------------------------


def find_personal_data(
    text: str, *, require_checksum: bool = False, keep: Iterable[str | None] = ()
) -> list[Finding]:
    """All phone numbers, ID numbers and e-mail addresses in ``text``, in order, without
    overlaps (the longer match wins, e.g. an e-mail whose local part is a phone number).

    ``keep``: strings that are not personal data wherever they appear (the ticket id a reply
    names: a ticket system may number its tickets like an ID or a phone number)."""
    if not text or _fold_table().digitish.search(text) is None:
        return []
    # The bridge's references and the kept strings are blanked (same length, with a letter)
    # so nothing matches in or across them.
    guarded = BRIDGE_REFERENCE.sub(lambda m: _BLANK * len(m.group()), text)
    for kept in keep:
        if kept and len(kept) >= 4 and kept in text:
            guarded = _blank(guarded, text, kept)
    folded = fold(guarded)
    found = _numbers(text, folded, require_checksum) + _emails(text, folded)
    return _without_overlaps(found)


def _blank(guarded: str, text: str, kept: str) -> str:
    """``guarded`` with each whole-token occurrence of ``kept`` blanked: never one inside a
    longer number or word (ticket "1111" must not hide the phone number 13911112222)."""

    def joined(i: int) -> bool:
        if not 0 <= i < len(text):
            return False
        f = _fold_table().table.get(ord(text[i]), text[i])[:1]
        return f.isascii() and f.isalnum()

    start = text.find(kept)
    while start >= 0:
        end = start + len(kept)
        if not joined(start - 1) and not joined(end):
            guarded = guarded[:start] + _BLANK * len(kept) + guarded[end:]
        start = text.find(kept, start + 1)
    return guarded


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
    """``text`` with every finding replaced by its mask (``[手机号]``, ``[电话]``,
    ``[身份证号]``, ``[邮箱]``), and the findings (spans refer to the original text); ``keep``
    as in ``find_personal_data``."""
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
        return _scrub_text(value)
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


# Log fields repeat from line to line (an inquiry's id, its stage, its department): each
# short text is searched once, while this many are remembered (then forgotten all at once).
_SCRUBBED_MAX = 4096
_SCRUBBED_LEN = 200
_scrubbed: dict[str, str] = {}


def _scrub_text(text: str) -> str:
    """``redact_text(text)``, remembered for short texts."""
    if len(text) > _SCRUBBED_LEN:
        return redact_text(text)
    done = _scrubbed.get(text)
    if done is None:
        if len(_scrubbed) >= _SCRUBBED_MAX:
            _scrubbed.clear()
        done = _scrubbed[text] = redact_text(text)
    return done


def redact_processor(logger: Any, method_name: str, event_dict: Any) -> Any:
    """structlog processor: mask personal data in every value of the event dict.

    An exception attached with ``exc_info`` is rendered to its ``exception`` text first (its
    message may quote a phone number), so this may sit before or after ``format_exc_info``.
    """
    if event_dict.get("exc_info"):
        from structlog.processors import format_exc_info

        event_dict = format_exc_info(logger, method_name, event_dict)
    return {key: _scrub(value) for key, value in event_dict.items()}
