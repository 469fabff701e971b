"""Classification, noise detection and content routing, and their accuracy on the labelled set
(run with ``-s`` to see the confusion table)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from bridge.classify import (
    Classifier,
    ClassifierConfig,
    NoiseReason,
    classify,
    default_rules,
    detect_noise,
    is_question,
    route_by_keywords,
)
from schemas.config import RouteConfig
from schemas.vocab import Category

ROOT = Path(__file__).resolve().parents[1]


# -- classification --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "category", "word"),
    [
        ("我要举报，河边那家厂子晚上偷排污水", Category.REPORT, "举报"),
        ("@某区城管 投诉一下，楼下餐馆油烟太大", Category.COMPLAINT, "投诉"),
        ("请问新生儿医保在哪里办理", Category.CONSULTATION, "请问"),
        ("求助！老人走失了，穿蓝色外套", Category.HELP, "求助"),
        ("建议地铁末班车延长半小时", Category.SUGGESTION, "建议"),
        ("必须表扬一下社区的王大姐，天天帮独居老人买菜", Category.PRAISE, "表扬"),
    ],
)
def test_default_rules_recognise_the_category_words(
    text: str, category: Category, word: str
) -> None:
    result = classify(text)
    assert result.category is category
    assert word in result.matched
    assert 0 < result.confidence <= 1
    assert result.score == pytest.approx(result.scores[category])


def test_text_without_evidence_is_other() -> None:
    nothing = classify("北京的秋天")
    assert nothing.category is Category.OTHER
    assert nothing.confidence == 0 and nothing.matched == ()


def test_score_is_the_sum_of_distinct_matched_weights() -> None:
    clf = Classifier({Category.COMPLAINT: {"噪音": 2, "扰民": 3}}, question_weight=0)
    result = clf.classify("夜里噪音扰民，噪音太大")
    assert result.category is Category.COMPLAINT
    assert result.score == 5  # "噪音" twice still counts once
    assert set(result.matched) == {"噪音", "扰民"}
    assert result.confidence == 1


def test_confidence_is_the_winners_share() -> None:
    clf = Classifier(
        {Category.COMPLAINT: {"噪音": 3}, Category.HELP: {"帮忙": 1}}, question_weight=0
    )
    result = clf.classify("噪音太大，请帮忙")
    assert result.category is Category.COMPLAINT
    assert result.confidence == pytest.approx(0.75)


def test_ties_go_to_the_weightier_category() -> None:
    clf = Classifier(
        {Category.COMPLAINT: {"垃圾": 2}, Category.REPORT: {"偷倒": 2}}, question_weight=0
    )
    assert clf.classify("有人偷倒垃圾").category is Category.REPORT


def test_two_character_words_do_not_match_across_word_boundaries() -> None:
    clf = Classifier({Category.CONSULTATION: {"公交": 2}}, question_weight=0)
    assert clf.classify("明天开办公交流会").category is Category.OTHER
    assert clf.classify("公交车什么时候来").matched == ("公交",)


def test_single_characters_must_be_whole_tokens() -> None:
    clf = Classifier({Category.PRAISE: {"赞": 2}}, question_weight=0)
    assert clf.classify("这个活动有赞助商").category is Category.OTHER
    assert clf.classify("必须赞！").category is Category.PRAISE


def test_word_inside_a_longer_match_is_ignored() -> None:
    result = classify("对处理结果很不满意")
    assert result.category is Category.COMPLAINT
    assert result.scores.get(Category.PRAISE, 0) == 0


def test_mentions_links_and_quoted_reposts_are_not_evidence() -> None:
    clf = Classifier({Category.REPORT: {"举报": 5}, Category.PRAISE: {"谢谢": 2}})
    assert clf.classify("@北京举报中心 谢谢你们").category is Category.PRAISE
    assert clf.classify("谢谢 http://example.com/举报").category is Category.PRAISE
    reposted = "谢谢大家转发//@某网友:我要举报"
    assert clf.classify(reposted).category is Category.PRAISE
    # a bare repost has no words of its own: the quoted text is all there is
    assert clf.classify("//@某网友:我要举报").category is Category.REPORT


def test_questions_count_towards_consultation() -> None:
    assert is_question("地铁几点停运？")
    assert is_question("异地能直接结算不")
    assert is_question("外地车能不能进五环")
    assert is_question("老年卡免费吗")
    assert not is_question("地铁晚点了。")
    assert not is_question("不能不管")
    assert classify("6号线几点停运？").category is Category.CONSULTATION
    quiet = Classifier({}, question_weight=0)
    assert quiet.classify("6号线几点停运？").category is Category.OTHER


def test_min_score_sends_weak_evidence_to_other() -> None:
    rules = {Category.HELP: {"麻烦": 0.5}}
    assert Classifier(rules, question_weight=0).classify("麻烦看看").category is Category.OTHER
    lenient = Classifier(rules, min_score=0.1, question_weight=0)
    assert lenient.classify("麻烦看看").category is Category.HELP


# -- configuration ---------------------------------------------------------------------------


def test_config_adds_words_and_changes_weights() -> None:
    text = "小区门口的井盖松了"
    assert classify(text).category is not Category.HELP
    clf = Classifier.from_config({"categories": {"help": {"井盖": 5}}})
    result = clf.classify(text)
    assert result.category is Category.HELP and "井盖" in result.matched
    # the defaults are still there
    assert clf.classify("我要举报有人偷倒建筑垃圾").category is Category.REPORT


def test_config_weight_zero_removes_a_default_word() -> None:
    assert "举报" in default_rules()[Category.REPORT]
    clf = Classifier.from_config({"categories": {"report": {"举报": 0}}})
    assert "举报" not in clf.rules[Category.REPORT]
    assert "举报" not in clf.classify("我要举报").matched


def test_config_can_replace_the_defaults_with_a_plain_list() -> None:
    cfg = ClassifierConfig.model_validate(
        {"replace_defaults": True, "question_weight": 0, "categories": {"complaint": ["太慢"]}}
    )
    clf = Classifier.from_config(cfg)
    assert clf.rules == {Category.COMPLAINT: {"太慢": 1.0}}
    assert clf.classify("我要举报").category is Category.OTHER
    assert clf.classify("审批太慢").category is Category.COMPLAINT


def test_config_rejects_unknown_categories_and_keys() -> None:
    with pytest.raises(ValidationError):
        ClassifierConfig.model_validate({"categories": {"complain": {"x": 1}}})
    with pytest.raises(ValidationError):
        ClassifierConfig.model_validate({"min_scor": 2})


def test_default_rules_cover_every_category_but_other() -> None:
    rules = default_rules()
    for cat in Category:
        if cat is not Category.OTHER:
            assert len(rules[cat]) >= 20, cat


def test_default_phrases_never_weigh_less_than_a_word_they_contain() -> None:
    """A longer match hides the words inside it, so within one category the phrase must not
    lose weight ("非常感谢" ≥ "感谢")."""
    for cat, words in default_rules().items():
        for phrase, weight in words.items():
            for word, inner in words.items():
                if word != phrase and word in phrase:
                    assert weight >= inner, (cat, phrase, word)


# -- noise -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", NoiseReason.EMPTY),
        ("  \n ", NoiseReason.EMPTY),
        ("谢谢", NoiseReason.THANKS_ONLY),
        ("谢谢！", NoiseReason.THANKS_ONLY),
        ("感谢🙏", NoiseReason.THANKS_ONLY),
        ("好的，非常感谢您们", NoiseReason.THANKS_ONLY),
        ("回复@北京12345:收到，谢谢", NoiseReason.THANKS_ONLY),
        ("😀😀", NoiseReason.NO_CONTENT),
        ("[赞][心]", NoiseReason.NO_CONTENT),
        ("！！！。。。", NoiseReason.NO_CONTENT),
        ("转发微博", NoiseReason.NO_CONTENT),
        ("@北京12345 @平安北京", NoiseReason.MENTIONS_ONLY),
        ("@平安北京 👍", NoiseReason.MENTIONS_ONLY),
        ("哈哈哈哈哈", NoiseReason.REPEATED),
        ("6666666", NoiseReason.REPEATED),
        ("加微信abc123，兼职日结", NoiseReason.SPAM),
        ("专业代开发票 各类普票专票", NoiseReason.SPAM),
        ("刷单 一单一结 私聊", NoiseReason.SPAM),
        ("免费领取会员 http://t.cn/abc 限时", NoiseReason.SPAM),
    ],
)
def test_noise_reasons(text: str, reason: str) -> None:
    assert detect_noise(text) == reason


@pytest.mark.parametrize(
    "text",
    [
        "谢谢你们帮我找回了钱包",  # praise with content
        "感谢交警同志",
        "我被刷单骗了五千怎么办，对方一开始让我加微信",  # a victim, not a spammer
        "举报：小区楼道贴满了代开发票的小广告",  # reporting spam
        "http://t.cn/abc 地铁站的扶梯坏了一周了",  # a link is not spam by itself
        "押金交不上，能不能先救人",  # weak sales words in a real plea
        "在吗",
        "救命",
        "急急急！孩子高烧",
    ],
)
def test_real_inquiries_are_not_noise(text: str) -> None:
    assert detect_noise(text) is None


# -- routing ---------------------------------------------------------------------------------

ROUTES = [
    RouteConfig(keywords=["地铁", "公交", "出租车"], department="transport"),
    RouteConfig(keywords=["噪音", "污染", "排污"], department="environment"),
    RouteConfig(keywords=["学校", "幼儿园"], department="education"),
]


def test_route_by_keywords_picks_the_route_with_most_hits() -> None:
    assert route_by_keywords("地铁站里好挤", ROUTES) == "transport"
    assert route_by_keywords("地铁施工噪音大，还有粉尘污染", ROUTES) == "environment"


def test_route_ties_go_to_the_first_route_and_no_match_is_none() -> None:
    assert route_by_keywords("学校门口公交站", ROUTES) == "transport"
    assert route_by_keywords("社保卡怎么补办", ROUTES) is None
    assert route_by_keywords("", ROUTES) is None
    assert route_by_keywords("地铁", []) is None


def test_route_ignores_mentions_and_word_fragments() -> None:
    assert route_by_keywords("@北京地铁 小区夜里噪音", ROUTES) == "environment"
    assert route_by_keywords("下午开办公交流会", ROUTES) is None


# -- jieba start-up --------------------------------------------------------------------------


def test_jieba_starts_quietly_with_its_cache_in_the_configured_dir(tmp_path: Path) -> None:
    env = {**os.environ, "GOVBRIDGE_CACHE_DIR": str(tmp_path)}
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from bridge.classify import classify; print(classify('我要举报').category)",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert proc.stdout.strip() == "report"
    assert proc.stderr == ""
    assert (tmp_path / "jieba.cache").is_file()
