"""Text helpers every adapter (and the reply stage) shares: clean, and cut only between
user-perceived characters.

Platforms hand us text that cannot be published as it is: a lone UTF-16 surrogate from an emoji
truncated by the sender (``"\\ud83d"`` in JSON decodes to a ``str`` that UTF-8 refuses), NUL
bytes that PostgreSQL refuses. ``clean`` fixes both at normalisation.

Replies are cut to platform limits. A cut between two code points of one grapheme cluster (an
emoji ZWJ sequence, a flag, a letter and its combining marks) publishes a broken character, so
every cut here falls on an extended grapheme cluster boundary (Unicode UAX #29, computed by the
``regex`` module's ``\\X``), preferring the end of a sentence, then of a clause, then a space.
"""

from __future__ import annotations

from collections.abc import Callable

import regex

_GRAPHEME = regex.compile(r"\X", regex.DOTALL)
_NEEDS_CLEANING = regex.compile(r"[\ud800-\udfff\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CONTROL = regex.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_ANY_CONTROL = regex.compile(r"[\x00-\x1f\x7f-\x9f]")

SENTENCE_ENDS = frozenset("。！？!?；;…\n")
CLAUSE_ENDS = frozenset("，,、：:")
CLOSERS = frozenset("”’」』）)】》\"'")
ELLIPSIS = "…"

Measure = Callable[[str], int]


def clean(text: str) -> str:
    """Lone surrogates become U+FFFD and control characters (but tab, CR, LF) are dropped; a
    surrogate pair split into two code points is joined back into its character."""
    if not _NEEDS_CLEANING.search(text):
        return text
    text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return _CONTROL.sub("", text)


def has_control(text: str) -> bool:
    """Any C0/C1 control character (tab and newline too): never part of an id. Text is
    cleaned; an id is refused instead, since removing a character could name another one."""
    return _ANY_CONTROL.search(text) is not None


def graphemes(text: str) -> list[str]:
    """The user-perceived characters of ``text``."""
    return [str(g) for g in _GRAPHEME.findall(text)]


def boundaries(text: str) -> list[int]:
    """Offsets where ``text`` may be cut: 0, every grapheme end (the last is ``len(text)``)."""
    cuts = [0]
    for match in _GRAPHEME.finditer(text):
        cuts.append(match.end())
    return cuts


def fit(text: str, limit: int, *, measure: Measure = len, ellipsis: str = ELLIPSIS) -> str:
    """``text`` if it fits, else its longest whole-grapheme head that fits with ``ellipsis``."""
    if measure(text) <= limit:
        return text
    head = text[: _longest_fitting(text, boundaries(text), limit - measure(ellipsis), measure)]
    return head.rstrip() + ellipsis if limit >= measure(ellipsis) else ""


def _longest_fitting(text: str, cuts: list[int], width: int, measure: Measure) -> int:
    """The largest cut whose head measures at most ``width`` (0 if none; measure is monotone)."""
    lo, hi = 0, len(cuts) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if measure(text[: cuts[mid]]) <= width:
            lo = mid
        else:
            hi = mid - 1
    return cuts[lo]


def _in_word(text: str, pos: int) -> bool:
    """Inside a run of ASCII letters/digits (a ticket number, a URL): better not cut there."""
    a, b = text[pos - 1], text[pos]
    return a.isascii() and b.isascii() and (a.isalnum() or a in "/.:-_") and b.isalnum()


def _best_cut(text: str, width: int, measure: Measure) -> int:
    """Where the next part ends: a grapheme boundary within ``width``, preferring a sentence
    end, a clause end, a space, then anything not inside an ASCII word (in the last half)."""
    cuts = boundaries(text)
    furthest = _longest_fitting(text, cuts, width, measure)
    if furthest == 0:
        # One grapheme wider than a whole part (pathological): cut it by code points.
        return max(1, _longest_fitting(text, list(range(len(text) + 1)), width, measure))
    candidates = [c for c in cuts if furthest // 2 <= c <= furthest and c > 0]
    candidates.reverse()
    rules: tuple[Callable[[int], bool], ...] = (
        lambda p: (
            text[p - 1] in SENTENCE_ENDS
            or (text[p - 1] in CLOSERS and p >= 2 and text[p - 2] in SENTENCE_ENDS)
        ),
        lambda p: text[p - 1] in CLAUSE_ENDS,
        lambda p: text[p - 1].isspace() or text[p].isspace(),
        lambda p: not _in_word(text, p),
    )
    for accept in rules:
        for p in candidates:
            if p == len(text) or accept(p):
                return p
    return furthest


def split(text: str, width: int, *, measure: Measure = len) -> list[str]:
    """``text`` in parts that each measure at most ``width``, cut between graphemes only.

    Deterministic (a replay produces the same parts, which is how platforms without an
    idempotency key recognise a repeated post). Leading/trailing spaces of parts are dropped.
    """
    if width < 1:
        raise ValueError("width must be at least 1")
    parts: list[str] = []
    rest = text.strip()
    while measure(rest) > width:
        cut = _best_cut(rest, width, measure)
        part = rest[:cut].rstrip()
        if part:
            parts.append(part)
        rest = rest[cut:].lstrip()
    if rest:
        parts.append(rest)
    return parts


def numbered(
    text: str, limit: int, marker: Callable[[int, int], str], measure: Measure = len
) -> list[str]:
    """``text`` split to fit ``limit`` with ``marker(i, n)`` appended to each part when there
    are several; the marker's room is found for the final ``n`` (so ``(9/9)`` → ``(10/10)``
    re-splits)."""
    text = text.strip()
    if measure(text) <= limit:
        return [text]
    n = 2
    while True:
        room = limit - measure(marker(n, n))
        if room < 1:
            raise ValueError(f"limit {limit} leaves no room for text")
        parts = split(text, room, measure=measure)
        if len(str(len(parts))) <= len(str(n)):
            total = len(parts)
            return [f"{p}{marker(i, total)}" for i, p in enumerate(parts, 1)]
        n = len(parts)
