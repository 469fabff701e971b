"""Authoring aid for positives.txt (not a test): an ID number typed with ``?`` in place of its
check character gets the GB 11643 check character, written in the same kind of digit as the
character before it (full-width after full-width, circled after circled, a Chinese numeral
after Chinese numerals). Digits are read here without bridge.privacy.pii, so the corpus does not
depend on the code it measures.

    python tests/data/pii/fill_check_digits.py tests/data/pii/positives.txt
"""

from __future__ import annotations

import re
import sys
import unicodedata
from pathlib import Path

WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHINESE = "〇一二三四五六七八九"
FINANCIAL = "零壹贰叁肆伍陆柒捌玖"
SUPERSCRIPT = "⁰¹²³⁴⁵⁶⁷⁸⁹"
CIRCLED = "⓪①②③④⑤⑥⑦⑧⑨"
MARK = re.compile(r"⟦id:([^⟧]*)⟧")
ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")


def digit_of(ch: str) -> int | None:
    for alphabet in (CHINESE, FINANCIAL, SUPERSCRIPT, CIRCLED, "零"):
        if ch in alphabet:
            return alphabet.index(ch) if alphabet != "零" else 0
    value = unicodedata.digit(ch, None)
    return value


def written_like(value: int, before: str) -> str:
    if value == 10:
        return "Ｘ" if "\uff10" <= before <= "\uff19" else "X"
    for alphabet in (CHINESE, FINANCIAL, SUPERSCRIPT, CIRCLED):
        if before in alphabet:
            return alphabet[value]
    if before.isascii():
        return str(value)
    base = ord(before) - (unicodedata.digit(before, 0) or 0)
    return chr(base + value)


def fill(mark: re.Match[str]) -> str:
    raw = mark.group(1)
    if "?" not in raw:
        return mark.group(0)
    visible = ESCAPE.sub("", raw)  # escapes stand for invisible characters
    # written reversed inside a right-to-left override
    digits_text = visible[::-1] if "\\u202e" in raw else visible
    digits = [d for d in (digit_of(c) for c in digits_text if c != "?") if d is not None]
    if len(digits) != 17:
        raise SystemExit(f"need 17 digits before '?': {raw!r}")
    check = "10X98765432"[sum(d * w for d, w in zip(digits, WEIGHTS, strict=True)) % 11]
    value = 10 if check == "X" else int(check)
    if "\\u202e" in raw:  # the check character comes first in a reversed number
        before = next(c for c in visible.split("?")[1] if digit_of(c) is not None)
    else:
        before = next(c for c in reversed(visible.split("?")[0]) if digit_of(c) is not None)
    return mark.group(0).replace("?", written_like(value, before), 1)


def main(path: str) -> None:
    file = Path(path)
    file.write_text(MARK.sub(fill, file.read_text(encoding="utf-8")), encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1])
