"""adapters.text: cleaning and grapheme-safe cutting (every adapter and the reply outbox)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters import text

FLAG = "\U0001f1e8\U0001f1f3"  # 🇨🇳: two regional indicators
FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # 👨‍👩‍👧: a ZWJ sequence
THUMB = "\U0001f44d\U0001f3fd"  # 👍🏽: emoji + skin tone
E_ACUTE = "e\u0301"  # e + combining acute


def test_clean_replaces_lone_surrogates_and_drops_control_characters() -> None:
    truncated = json.loads('"路灯坏了\\ud83d"')  # an emoji cut in half by the sender
    assert truncated.encode("utf-8", "surrogatepass")  # only "surrogatepass" can encode it
    with pytest.raises(UnicodeEncodeError):
        truncated.encode("utf-8")
    cleaned = text.clean(truncated)
    assert cleaned == "路灯坏了\ufffd"
    cleaned.encode("utf-8")
    assert text.clean("a\x00b\tc\nd\x1b") == "ab\tc\nd"
    # A pair of surrogates left as two code points is joined back into its character.
    assert text.clean("\ud83d\ude00") == "\U0001f600"
    assert text.clean("普通文本") == "普通文本"


@pytest.mark.parametrize("unit", [FLAG, FAMILY, THUMB, E_ACUTE])
def test_fit_never_cuts_inside_a_grapheme(unit: str) -> None:
    for limit in range(1, 12):
        cut = text.fit(unit * 5, limit)
        assert len(cut) <= limit
        body = cut.removesuffix("…")
        assert body == unit * (len(body) // len(unit)), (limit, cut)


@pytest.mark.parametrize("unit", [FLAG, FAMILY, THUMB, E_ACUTE, "字"])
def test_split_keeps_graphemes_whole_and_loses_nothing(unit: str) -> None:
    source = (unit * 7 + "，") * 9
    parts = text.split(source, 20)
    assert all(len(p) <= 20 for p in parts)
    assert "".join(parts) == source
    for p in parts:
        assert text.graphemes(p) == [g for g in text.graphemes(p) if g in (unit, "，")]


def test_split_prefers_sentence_ends() -> None:
    parts = text.split("第一句话说完了。第二句话也说完了。第三句", 12)
    assert parts[0].endswith("。")


def test_numbered_parts_fit_with_their_markers() -> None:
    parts = text.numbered("路" * 1000, 140, lambda i, n: f"({i}/{n})")
    assert all(len(p) <= 140 for p in parts)
    assert parts[-1].endswith(f"({len(parts)}/{len(parts)})")


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=0, max_size=300), st.integers(min_value=1, max_value=60))
def test_split_and_fit_hold_for_any_text(source: str, width: int) -> None:
    for p in text.split(source, width):
        assert 0 < len(p) <= width or len(text.graphemes(p)) == 1
    assert len(text.fit(source, width)) <= max(width, 1)
