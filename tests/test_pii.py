"""Personal-data detection and redaction: mobiles, resident ID numbers, e-mail addresses, and the
structlog processor that keeps them out of logs."""

from __future__ import annotations

import io
import json
import re
from datetime import date, timedelta

import pytest
import structlog
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from bridge.privacy.pii import (
    find_personal_data,
    id_check_char,
    is_valid_id_number,
    redact,
    redact_processor,
)

# The worked example of GB 11643-1999 itself, not a real person's number.
STANDARD_ID = "11010519491231002X"


def make_id(region: str, born: date, seq: str) -> str:
    first17 = f"{region}{born:%Y%m%d}{seq}"
    return first17 + id_check_char(first17)


def wrong_check(number: str) -> str:
    """The same ID with a check character that does not verify."""
    for c in "0123456789X":
        if c != number[17]:
            return number[:17] + c
    raise AssertionError


# -- ID numbers ------------------------------------------------------------------------------


def test_check_character_of_the_standard_example() -> None:
    assert id_check_char(STANDARD_ID[:17]) == "X"
    assert is_valid_id_number(STANDARD_ID)
    assert is_valid_id_number(STANDARD_ID.lower())
    assert not is_valid_id_number(wrong_check(STANDARD_ID))


@pytest.mark.parametrize(
    "text",
    [
        f"我的身份证号{STANDARD_ID}，查不到社保记录",
        f"身份证：{STANDARD_ID.lower()}",
        "身份证 110105 19491231 002X 麻烦核实",
        f"{STANDARD_ID}",
    ],
)
def test_valid_id_is_found_and_masked(text: str) -> None:
    masked, findings = redact(text)
    assert [f.kind for f in findings] == ["id_number"]
    assert findings[0].checksum_ok
    assert "[身份证号]" in masked
    assert "19491231" not in masked


def test_wrong_check_digit_with_id_structure_is_masked_but_flagged() -> None:
    typo = wrong_check(STANDARD_ID)
    masked, findings = redact(f"身份证号{typo}")
    assert masked == "身份证号[身份证号]"
    assert findings[0].kind == "id_number" and findings[0].checksum_ok is False
    # the strict reading only accepts a verified check digit
    assert find_personal_data(f"身份证号{typo}", require_checksum=True) == []


@pytest.mark.parametrize(
    "number",
    [
        "202310251234567890",  # order number: "20" is no province code
        "110105199913011234",  # month 13
        "110105190002301234",  # 30 February
        "110105189912311234",  # born before 1900
        "1101051949123100211",  # 19 digits
        "11010519491231002",  # 17 digits
    ],
)
def test_ordinary_long_numbers_are_not_ids(number: str) -> None:
    assert find_personal_data(f"订单号{number}请查收") == []


def test_birth_date_in_the_future_is_not_an_id() -> None:
    future = make_id("110105", date.today() + timedelta(days=400), "002")
    assert find_personal_data(future) == []


# -- mobile numbers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "written",
    [
        "13812345678",
        "138-1234-5678",
        "138 1234 5678",
        "+86 138 1234 5678",
        "+8613812345678",
        "008613812345678",
        "(+86)13812345678",
        "１３８１２３４５６７８",  # full-width digits
        "19912345678",
        "16612345678",
    ],
)
def test_mobile_forms_are_masked(written: str) -> None:
    masked, findings = redact(f"有事打我电话{written}谢谢")
    assert masked == "有事打我电话[手机号]谢谢"
    assert [f.kind for f in findings] == ["mobile"]


@pytest.mark.parametrize(
    "text",
    [
        "12812345678",  # 12x is not a mobile prefix
        "1381234567",  # 10 digits
        "138123456789",  # 12 digits
        "工单号2023102512345678",
        "2023-10-25 下午3点",
        "罚款10000元，车牌尾号8888",
        "订单号：138123456789012",
        "@北京12345 你好",
    ],
)
def test_ordinary_numbers_are_not_masked(text: str) -> None:
    assert redact(text) == (text, [])


# -- e-mail ----------------------------------------------------------------------------------


def test_email_is_masked_whole_even_when_local_part_is_a_mobile() -> None:
    masked, findings = redact("材料发到13812345678@139.com或者zhang.san@example.org.cn")
    assert masked == "材料发到[邮箱]或者[邮箱]"
    assert [f.kind for f in findings] == ["email", "email"]


def test_weibo_mentions_are_not_emails() -> None:
    text = "回复@abc_123:谢谢 @北京交通 @bjjtw"
    assert redact(text) == (text, [])


def test_spans_refer_to_the_original_text_and_value_is_not_in_repr() -> None:
    text = "电话１３８１２３４５６７８，邮箱ａ＠ｂ.com"
    findings = find_personal_data(text)
    assert [text[f.start : f.end] for f in findings] == [f.value for f in findings]
    assert [f.kind for f in findings] == ["mobile", "email"]
    assert "１３８" not in repr(findings[0])
    assert findings[0].span == (2, 13)


def test_several_kinds_in_one_text_keep_the_rest_intact() -> None:
    text = f"我叫张三，身份证{STANDARD_ID}，电话138-0013-8000，邮箱zs@example.com，订单20231025001"
    masked, findings = redact(text)
    assert masked == "我叫张三，身份证[身份证号]，电话[手机号]，邮箱[邮箱]，订单20231025001"
    assert [f.kind for f in findings] == ["id_number", "mobile", "email"]
    assert redact(masked) == (masked, [])  # idempotent


# -- properties ------------------------------------------------------------------------------

PROVINCES = ["11", "12", "31", "32", "33", "37", "44", "50", "51", "65", "81", "83"]
chinese = st.text(
    alphabet=st.one_of(
        st.characters(min_codepoint=0x4E00, max_codepoint=0x9FA5),
        st.sampled_from("，。！？、 ：（）【】😀🙏"),
    ),
    max_size=40,
)
valid_ids = st.builds(
    make_id,
    st.builds(
        lambda p, rest: p + rest,
        st.sampled_from(PROVINCES),
        st.from_regex(r"[0-9]{4}", fullmatch=True),
    ),
    st.dates(min_value=date(1920, 1, 1), max_value=date(2020, 12, 31)),
    st.from_regex(r"[0-9]{3}", fullmatch=True),
)
mobiles = st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True)


def format_mobile(number: str, style: int) -> str:
    a, b, c = number[:3], number[3:7], number[7:]
    return [number, f"{a}-{b}-{c}", f"{a} {b} {c}", f"+86{number}", f"+86 {a} {b} {c}"][style]


@settings(max_examples=150, deadline=None)
@given(before=chinese, after=chinese, number=valid_ids, lower=st.booleans())
def test_property_any_valid_id_in_chinese_text_is_redacted(
    before: str, after: str, number: str, lower: bool
) -> None:
    written = number.lower() if lower else number
    masked, findings = redact(before + written + after)
    assert masked == before + "[身份证号]" + after
    assert [(f.kind, f.checksum_ok) for f in findings] == [("id_number", True)]


@settings(max_examples=150, deadline=None)
@given(before=chinese, after=chinese, number=mobiles, style=st.integers(0, 4))
def test_property_any_mobile_in_chinese_text_is_redacted(
    before: str, after: str, number: str, style: int
) -> None:
    masked, findings = redact(before + format_mobile(number, style) + after)
    assert masked == before + "[手机号]" + after
    assert [f.kind for f in findings] == ["mobile"]


CHINESE_NUMERALS = set("〇零○◯一壹弌幺二贰貳弍三叁參弎四肆五伍六陆陸七柒八捌九玖两兩")


@settings(max_examples=100, deadline=None)
@given(before=chinese, after=chinese, digits=st.from_regex(r"[2-9][0-9]{0,24}", fullmatch=True))
def test_property_plain_digit_runs_of_other_lengths_are_kept(
    before: str, after: str, digits: str
) -> None:
    # Not starting with 1 rules out a bare mobile; lengths 13/15 (86-prefixed mobiles) and 18
    # (IDs) are excluded because they legitimately may match.
    if len(digits) in (13, 15, 18):
        digits = digits[:-1]
    # A Chinese numeral beside the run is read as a digit of it, as citizens write them
    # (hypothesis found 零310200000二: 0310-2000002, a Handan landline, rightly masked).
    assume(before[-1:] not in CHINESE_NUMERALS and after[:1] not in CHINESE_NUMERALS)
    text = before + digits + after
    assert redact(text) == (text, [])


def test_digits_of_other_scripts_are_numbers() -> None:
    """Arabic-Indic and Devanagari digits are digits: a phone number written in them is
    still a phone number (issue 20)."""
    text = "电话١٣٨١٢٣٤٥٦٧٨，身份证११०१०५१९४९१२३१००२X"
    assert redact(text) == ("电话[手机号]，身份证[身份证号]", redact(text)[1])
    assert [f.kind for f in redact(text)[1]] == ["mobile", "id_number"]


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        # a circled ten expands to two digits: the mask still covers exactly the original
        ("电话⑬⑧①②③④⑤⑥⑦⑧，谢谢", "电话[手机号]，谢谢"),
        # a right-to-left override shows its digits reversed: read as displayed
        ("电话\u202e1234 5678 931\u202c，谢谢", "电话[手机号]，谢谢"),
        # invisible characters around the number go with it (nothing of it is left behind)
        ("电话\u2066139 8765 4321\u2069。", "电话[手机号]。"),
        ("电话1\ufe0f\u20e33\ufe0f\u20e38\ufe0f\u20e312345678。", "电话[手机号]。"),
        # a Chinese numeral glued to the end is a word, not a digit of the number
        ("身份证11010519491231002X七天前丢了", "身份证[身份证号]七天前丢了"),
        ("电话13812345678三楼", "电话[手机号]三楼"),
        # 两 is a digit only beside another digit
        ("两个人，电话幺三八两三四五六七八九", "两个人，电话[手机号]"),
        ("(0571)8765 4321 或 +86 10 8462 7731", "[电话] 或 [电话]"),
    ],
)
def test_folded_forms_mask_exactly_the_original_characters(text: str, masked: str) -> None:
    assert redact(text)[0] == masked


@pytest.mark.parametrize(
    "text",
    [
        "京东快递 JDVA13812345678",  # letters glued to digits: a code
        "顺丰SF13812345678901",
        "乘坐1/3/5/7/9/13/15/17路",  # a list mixing single digits and numbers
        "13、15、17、19、101路都绕行",  # a rising list
        "合同金额138,001,234.56元",  # thousands separators
        "服务热线400-810-1234，或拨0571-12345",  # service numbers, not landlines
        "一二三四五六七八九十",
        "卡号 6222 0571 8765 4321 和 6217 0013 8123 4567 890",  # no phone out of a card number
    ],
)
def test_codes_lists_and_amounts_are_not_phone_numbers(text: str) -> None:
    assert redact(text) == (text, [])


def test_contact_words_glued_to_a_number_do_not_hide_it() -> None:
    assert redact("tel13812345678 vx13987654321")[0] == "tel[手机号] vx[手机号]"


@settings(max_examples=100, deadline=None)
@given(text=chinese)
def test_property_text_without_digits_is_unchanged(text: str) -> None:
    assert redact(text) == (text, [])


# -- structlog --------------------------------------------------------------------------------


def test_processor_masks_every_string_nested_values_and_ints() -> None:
    event = {
        "event": f"inquiry from 13812345678 about {STANDARD_ID}",
        "contact": {"phone": "138 1234 5678", "emails": ["a.b@example.com", "ok"]},
        "as_int": 13812345678,
        "count": 3,
        "ok": True,
        "tuple": ("18612345678",),
    }
    out = redact_processor(None, "info", event)
    assert out["event"] == "inquiry from [手机号] about [身份证号]"
    assert out["contact"] == {"phone": "[手机号]", "emails": ["[邮箱]", "ok"]}
    assert out["as_int"] == "[手机号]"
    assert out["count"] == 3 and out["ok"] is True
    assert out["tuple"] == ("[手机号]",)


def test_no_log_line_carries_personal_data() -> None:
    """End to end through a structlog chain, including an exception whose message quotes one."""
    buf = io.StringIO()
    log = structlog.wrap_logger(
        structlog.PrintLogger(file=buf),
        processors=[redact_processor, structlog.processors.JSONRenderer(ensure_ascii=False)],
    )

    class Inquiry:
        def __str__(self) -> str:
            return "Inquiry(text='call 13812345678')"

    log.info("received", text="我的电话13812345678", obj=Inquiry())
    try:
        raise ValueError(f"bad id {STANDARD_ID}")
    except ValueError:
        log.exception("failed")
    out = buf.getvalue()
    assert not re.search(r"1[3-9]\d{9}|19491231", out)
    first, second = (json.loads(line) for line in out.splitlines())
    assert first["text"] == "我的电话[手机号]"
    assert first["obj"] == "Inquiry(text='call [手机号]')"
    assert "bad id [身份证号]" in second["exception"]
