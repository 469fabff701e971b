"""Triage logic without I/O: classify an inquiry into a 12345 category, recognise noise that
should not become a ticket, and route by content.

Why keyword rules and not a model: officials must be able to read and change why an inquiry
landed where it did (the matched words are returned and logged), rules run in microseconds with
no model files, and a department tunes them in config. The measured accuracy on
``tests/data/labelled_inquiries.jsonl`` is recomputed with ``python -m bridge.classify``.

jieba is loaded lazily (first classification, or :func:`warm_up`) into a private tokenizer whose
cache lives under ``$GOVBRIDGE_CACHE_DIR`` / ``$XDG_CACHE_HOME/govbridge`` and whose start-up
chatter on stderr is silenced.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import tempfile
import threading
import tomllib
import unicodedata
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from schemas.config import ClassifierConfig, RouteConfig
from schemas.vocab import Category

if TYPE_CHECKING:
    import jieba

__all__ = [
    "Classification",
    "Classifier",
    "ClassifierConfig",
    "KeywordMatch",
    "NoiseReason",
    "Report",
    "classify",
    "default_rules",
    "detect_noise",
    "evaluate",
    "route_by_keywords",
    "warm_up",
]

# -- text preparation -------------------------------------------------------------------------

_REPLY_PREFIX = re.compile(r"^\s*回复\s*@[^:：\s]{1,30}\s*[:：]")
_MENTION = re.compile(r"@[\w\-·]{1,30}")
_URL = re.compile(r"(?:https?://|www\.)[\w\-./?%&=#:~+@!]+", re.IGNORECASE)
_LINK_WORDS = re.compile(r"[O0]?网页链接|L[^\s]{1,20}的微博视频")
_EMOTICON = re.compile(r"\[[\w\u4e00-\u9fff ]{1,8}\]")


def normalise(text: str) -> str:
    """NFKC (full-width to ASCII, compatibility forms) and lower case: the form rules match on."""
    return unicodedata.normalize("NFKC", text).lower()


def _content_text(text: str) -> str:
    """The citizen's own words: no reply prefix, quoted repost chain (``…//@someone: …``),
    @mentions or links; hashtags keep their words."""
    t = normalise(text)
    t = _REPLY_PREFIX.sub(" ", t)
    own, sep, _quoted = t.partition("//@")
    if sep and _letters(_MENTION.sub(" ", own)):
        t = own
    t = _URL.sub(" ", t)
    t = _LINK_WORDS.sub(" ", t)
    t = _MENTION.sub(" ", t)
    return t.replace("#", " ")


# -- jieba, lazily and quietly -----------------------------------------------------------------

_tokenizer: jieba.Tokenizer | None = None
_tokenizer_lock = threading.Lock()


def _cache_dir() -> str:
    """Where jieba keeps its prefix-dictionary cache (a writable per-user dir, else temp)."""
    base = os.environ.get("GOVBRIDGE_CACHE_DIR")
    if not base:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        base = os.path.join(xdg, "govbridge")
    try:
        os.makedirs(base, exist_ok=True)
        if os.access(base, os.W_OK):
            return base
    except OSError:
        pass
    return tempfile.gettempdir()


def _get_tokenizer() -> jieba.Tokenizer:
    global _tokenizer
    if _tokenizer is None:
        with _tokenizer_lock:
            if _tokenizer is None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    import jieba

                    jieba.setLogLevel(logging.WARNING)
                    logging.getLogger("jieba").setLevel(logging.WARNING)
                    tok = jieba.Tokenizer()
                    tok.tmp_dir = _cache_dir()
                    tok.initialize()
                _tokenizer = tok
    return _tokenizer


def warm_up() -> None:
    """Load the segmentation dictionary now (about a second) instead of on the first inquiry;
    call it from a thread at stage start-up."""
    _get_tokenizer()


def _token_ids(text: str) -> list[int]:
    """For each character of ``text``, the index of the jieba token it belongs to."""
    ids = [0] * len(text)
    for i, (_word, start, end) in enumerate(_get_tokenizer().tokenize(text)):
        for pos in range(start, end):
            ids[pos] = i
    return ids


# -- keyword matching --------------------------------------------------------------------------


def _is_wordlike(s: str) -> bool:
    return all(unicodedata.category(c)[0] in "LN" for c in s)


@dataclass(frozen=True, slots=True)
class KeywordMatch:
    keyword: str
    start: int
    end: int


class _KeywordSet:
    """Finds keywords in prepared text. Short words are checked against jieba's segmentation so
    they do not match across word boundaries: one character must be a whole token, two characters
    must not cut a token in half (but may sit inside one, "举报" in "举报信"). Longer words, or
    ones with emoji/punctuation, match anywhere. Matches nested in a longer match are dropped
    ("满意" in "不满意")."""

    def __init__(self, keywords: Iterable[str]) -> None:
        self.keywords: frozenset[str] = frozenset(k for k in (normalise(k) for k in keywords) if k)
        self._token_bound = frozenset(k for k in self.keywords if len(k) <= 2 and _is_wordlike(k))

    def find(self, text: str, token_ids: Sequence[int] | None = None) -> list[KeywordMatch]:
        if not text.strip() or not self.keywords:
            return []
        found: list[KeywordMatch] = []
        for kw in self.keywords:
            pos = text.find(kw)
            while pos >= 0:
                end = pos + len(kw)
                if kw in self._token_bound:
                    if token_ids is None:
                        token_ids = _token_ids(text)
                    if self._token_ok(kw, pos, end, text, token_ids):
                        found.append(KeywordMatch(kw, pos, end))
                else:
                    found.append(KeywordMatch(kw, pos, end))
                pos = text.find(kw, pos + 1)
        return _drop_nested(found)

    @staticmethod
    def _token_ok(kw: str, start: int, end: int, text: str, ids: Sequence[int]) -> bool:
        starts_token = start == 0 or ids[start - 1] != ids[start]
        ends_token = end == len(text) or ids[end] != ids[end - 1]
        if starts_token and ends_token:
            return True  # whole tokens
        return len(kw) > 1 and ids[start] == ids[end - 1]  # inside a single token


def _drop_nested(found: list[KeywordMatch]) -> list[KeywordMatch]:
    spans = {(m.start, m.end) for m in found}
    return [
        m
        for m in found
        if not any(s <= m.start and m.end <= e and (s, e) != (m.start, m.end) for s, e in spans)
    ]


# -- classification ----------------------------------------------------------------------------

Rules = Mapping[Category, Mapping[str, float]]

# Tie-break: the category with the heavier consequences for the citizen wins.
PRIORITY: Final[tuple[Category, ...]] = (
    Category.REPORT,
    Category.COMPLAINT,
    Category.HELP,
    Category.SUGGESTION,
    Category.CONSULTATION,
    Category.PRAISE,
    Category.OTHER,
)


def default_rules() -> dict[Category, dict[str, float]]:
    """The rules shipped in ``bridge/data/classify_rules.toml``."""
    raw = tomllib.loads(
        resources.files("bridge.data").joinpath("classify_rules.toml").read_text("utf-8")
    )
    return {
        Category(cat): {str(k): float(w) for k, w in words.items()} for cat, words in raw.items()
    }


@dataclass(frozen=True)
class Classification:
    """The outcome, with its evidence so an official can see why."""

    category: Category
    score: float
    confidence: float
    """The winner's share of all positive evidence (0..1); 0 when nothing decided it."""
    matched: tuple[str, ...]
    """Words of the winning category found in the text."""
    scores: Mapping[Category, float] = field(default_factory=dict)


class Classifier:
    """Weighted keyword rules per category over jieba-segmented text."""

    def __init__(
        self, rules: Rules, *, min_score: float = 1.0, question_weight: float = 1.0
    ) -> None:
        self.min_score = min_score
        self.question_weight = question_weight
        self.rules: dict[Category, dict[str, float]] = {}
        for cat, words in rules.items():
            merged: dict[str, float] = {}
            for word, weight in words.items():
                key = normalise(word)
                if key and weight:
                    merged[key] = float(weight)
            self.rules[Category(cat)] = merged
        self._by_word: dict[str, list[tuple[Category, float]]] = defaultdict(list)
        for cat, words in self.rules.items():
            for word, weight in words.items():
                self._by_word[word].append((cat, weight))
        self._keywords = _KeywordSet(self._by_word)

    @classmethod
    def from_config(cls, config: ClassifierConfig | Mapping[str, Any] | None = None) -> Classifier:
        """The default rules with the operator's changes applied."""
        cfg = (
            config
            if isinstance(config, ClassifierConfig)
            else ClassifierConfig.model_validate(config or {})
        )
        rules: dict[Category, dict[str, float]] = {} if cfg.replace_defaults else default_rules()
        for cat, words in cfg.categories.items():
            target = rules.setdefault(cat, {})
            pairs = words.items() if isinstance(words, dict) else ((w, 1.0) for w in words)
            for word, weight in pairs:
                if weight == 0:
                    target.pop(word, None)
                    target.pop(normalise(word), None)
                else:
                    target[word] = weight
        return cls(rules, min_score=cfg.min_score, question_weight=cfg.question_weight)

    def matches(self, text: str) -> list[tuple[KeywordMatch, Category, float]]:
        prepared = _content_text(text)
        return [
            (m, cat, weight)
            for m in self._keywords.find(prepared)
            for cat, weight in self._by_word[m.keyword]
        ]

    def classify(self, text: str) -> Classification:
        seen: set[tuple[Category, str]] = set()
        scores: dict[Category, float] = defaultdict(float)
        words: dict[Category, list[str]] = defaultdict(list)
        if self.question_weight and is_question(text):
            scores[Category.CONSULTATION] += self.question_weight
            words[Category.CONSULTATION].append("?")
        for m, cat, weight in self.matches(text):
            if (cat, m.keyword) in seen:
                continue  # a word counts once however often it is repeated
            seen.add((cat, m.keyword))
            scores[cat] += weight
            words[cat].append(m.keyword)
        positive = {c: s for c, s in scores.items() if s > 0}
        if not positive:
            return Classification(Category.OTHER, 0.0, 0.0, (), dict(scores))
        best = max(positive, key=lambda c: (positive[c], -PRIORITY.index(c)))
        if positive[best] < self.min_score:
            return Classification(Category.OTHER, 0.0, 0.0, (), dict(scores))
        confidence = positive[best] / sum(positive.values())
        return Classification(
            best, round(positive[best], 3), round(confidence, 3), tuple(words[best]), dict(scores)
        )


_CLAUSE = re.compile(r"[^。！!？?，,；;…~\s]+[？?]?")
_QUESTION_END = re.compile(r"(?:[？?]|[吗么嘛呢]|[^不]不|没有?)$")
_A_NOT_A = re.compile(r"(.)[不没]\1|可不可以|能不能|有没有|是不是|要不要|会不会")


def is_question(text: str) -> bool:
    """Whether the inquiry asks something: a clause ending in "?" or a question particle
    (吗/么/呢, or a final 不/没 as in "能结算不"), or an A-not-A form ("能不能", "有没有")."""
    prepared = _content_text(text)
    if _A_NOT_A.search(prepared):
        return True
    return any(_QUESTION_END.search(c) for c in _CLAUSE.findall(_EMOTICON.sub(" ", prepared)))


_default: Classifier | None = None


def classify(text: str) -> Classification:
    """Classify with the default rules (see :class:`Classifier` for configured ones)."""
    global _default
    if _default is None:
        _default = Classifier(default_rules())
    return _default.classify(text)


# -- noise -------------------------------------------------------------------------------------


class NoiseReason:
    """Why an item is not an inquiry (plain strings: they go into logs and metrics labels)."""

    EMPTY: Final = "empty"
    NO_CONTENT: Final = "no_content"  # emoji, punctuation, emoticons or "转发微博" only
    MENTIONS_ONLY: Final = "mentions_only"
    THANKS_ONLY: Final = "thanks_only"
    REPEATED: Final = "repeated"
    SPAM: Final = "spam"

    ALL: Final = frozenset(
        {"empty", "no_content", "mentions_only", "thanks_only", "repeated", "spam"}
    )


_REPOST_DEFAULTS: Final = frozenset({"转发微博", "轉發微博", "repost", "转发", "轉發"})
_THANKS = re.compile(r"谢谢|谢了|多谢|感谢|感恩|辛苦了|辛苦啦|thankyou|thanks|thank|thx|3q|xx+")
_THANKS_FILLER = re.compile(
    r"你们|您们|大家|各位|小编|官方|官博|同志们|亲|你|您|好的|好滴|收到|了解|明白|知道了|"
    r"非常|十分|万分|真的|真心|很|太|多|啦|了|哈|呀|啊|哦|噢|喔|嗯|的|哒|么么|ok"
)
_SPAM_STRONG = re.compile(
    r"代开(?:各类|正规)?(?:发票|增值税|普票|专票)|开发票|刷单|兼职日结|日结\d*|日赚|躺赚|"
    r"返佣|佣金|返利|返现|博彩|百家乐|娱乐城|网赌|无抵押|秒批|秒到|不看征信|黑户可|办证|"
    r"互粉|互赞|回关|涨粉|招代理|免费领|领取免费|看我主页|点我头像|主页有|代刷|"
    r"(?:加|\+|添加|联系)\s*(?:微信|薇信|威信|徽信|v信|vx|wx|v|q|qq|扣扣)"
)
_SPAM_WEAK = re.compile(
    r"兼职|贷款|网贷|低价|优惠|免费|领取|点击|限时|名额有限|私聊|私信我|看我主页|主页|头像|"
    r"推广|代理|赚钱|收益|月入|抢|详谈|到账|押金|专业|正规|各类|普票|专票|增值税|价格|欢迎"
)
_CONTACT_ID = re.compile(
    r"(?:微信|vx|wx|v|qq)\s*[:：号]?\s*[a-z][\w-]{4,}|(?:qq)\s*[:：]?\s*\d{5,}"
)
# A citizen describing spam or a scam is not spamming: these words veto the spam verdict.
_SPAM_VETO = re.compile(
    r"举报|投诉|被骗|骗了|骗走|诈骗|骗子|报警|警察|派出所|小广告|骚扰|怎么办|上当|受害|维权|对方|冒充"
)


def _letters(text: str) -> str:
    return "".join(c for c in text if unicodedata.category(c)[0] in "LN")


def detect_noise(text: str | None) -> str | None:
    """Why ``text`` is not worth a ticket (a :class:`NoiseReason` value), or None.

    Deliberately conservative: a real inquiry wrongly dropped is worse than one spam ticket, so
    anything with content beyond thanks, and any spam-like text written as a complaint or a
    fraud victim's plea, is kept.
    """
    if text is None or not text.strip():
        return NoiseReason.EMPTY
    norm = normalise(text)
    without_reply = _REPLY_PREFIX.sub(" ", norm)
    had_mentions = bool(_MENTION.search(without_reply)) or without_reply != norm
    content = _MENTION.sub(" ", without_reply)
    has_url = bool(_URL.search(content))
    content = _LINK_WORDS.sub(" ", _URL.sub(" ", content))
    letters = _letters(_EMOTICON.sub(" ", content))
    if not letters:
        return NoiseReason.MENTIONS_ONLY if had_mentions else NoiseReason.NO_CONTENT
    if letters in _REPOST_DEFAULTS:
        return NoiseReason.NO_CONTENT
    if _THANKS.search(letters) and not _THANKS_FILLER.sub("", _THANKS.sub("", letters)):
        return NoiseReason.THANKS_ONLY
    distinct = len(set(letters))
    if (len(letters) >= 3 and distinct == 1) or (len(letters) >= 6 and distinct <= 2):
        return NoiseReason.REPEATED
    if _is_spam(content, has_url):
        return NoiseReason.SPAM
    return None


def _is_spam(content: str, has_url: bool) -> bool:
    """Spam needs one unmistakable sign (刷单, 代开发票, 加微信 …) plus any other; weak words
    alone (免费, 押金, 贷款) are everyday vocabulary of real inquiries."""
    if _SPAM_VETO.search(content):
        return False
    strong = set(_SPAM_STRONG.findall(content))
    if not strong:
        return False
    score = 2 * len(strong) + len(set(_SPAM_WEAK.findall(content)))
    if _CONTACT_ID.search(content):
        score += 1
    if has_url:
        score += 1  # a link on its own is fine; a link with sales talk is not
    return score >= 3


# -- routing -----------------------------------------------------------------------------------


def route_by_keywords(text: str, routes: Sequence[RouteConfig]) -> str | None:
    """The department of the route with the most distinct keywords in the inquiry's own words
    (mentions and links ignored); on a tie the route listed first; None when none matches."""
    prepared = _content_text(text)
    if not prepared.strip() or not routes:
        return None
    token_ids: list[int] | None = None
    best: tuple[int, str] | None = None
    for route in routes:
        keywords = _KeywordSet(route.keywords)
        if any(len(k) <= 2 and _is_wordlike(k) for k in keywords.keywords) and token_ids is None:
            token_ids = _token_ids(prepared)
        hits = len({m.keyword for m in keywords.find(prepared, token_ids)})
        if hits and (best is None or hits > best[0]):
            best = (hits, route.department)
    return best[1] if best else None


# -- evaluation --------------------------------------------------------------------------------

NOISE = "noise"


@dataclass
class Report:
    """Accuracy of classification and noise detection on a labelled JSONL set.

    Category accuracy is over the items labelled as real inquiries; a real inquiry that the noise
    detector drops counts as misclassified (predicted "noise").
    """

    items: int = 0
    inquiries: int = 0
    correct: int = 0
    confusion: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    noise_tp: int = 0
    noise_fp: int = 0
    noise_fn: int = 0
    noise_reason_agree: int = 0
    errors: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return self.correct / self.inquiries if self.inquiries else 0.0

    @property
    def noise_precision(self) -> float:
        flagged = self.noise_tp + self.noise_fp
        return self.noise_tp / flagged if flagged else 1.0

    @property
    def noise_recall(self) -> float:
        actual = self.noise_tp + self.noise_fn
        return self.noise_tp / actual if actual else 1.0

    def per_category(self) -> dict[str, tuple[float, float, int]]:
        """category → (precision, recall, support)."""
        out: dict[str, tuple[float, float, int]] = {}
        for cat in [c.value for c in PRIORITY]:
            support = sum(self.confusion[cat].values())
            tp = self.confusion[cat][cat]
            predicted = sum(row[cat] for row in self.confusion.values())
            out[cat] = (
                tp / predicted if predicted else 0.0,
                tp / support if support else 0.0,
                support,
            )
        return out

    def format(self, *, show_errors: bool = True) -> str:
        cats = [c.value for c in PRIORITY] + [NOISE]
        short = {c: c[:6] for c in cats}
        lines = [
            f"items {self.items}, inquiries {self.inquiries}, "
            f"category accuracy {self.accuracy:.3f} ({self.correct}/{self.inquiries})",
            f"noise precision {self.noise_precision:.3f}, recall {self.noise_recall:.3f} "
            f"(tp {self.noise_tp}, fp {self.noise_fp}, fn {self.noise_fn}; "
            f"same reason {self.noise_reason_agree}/{self.noise_tp})",
            "",
            "expected \\ predicted " + " ".join(f"{short[c]:>6}" for c in cats) + "   prec recall",
        ]
        stats = self.per_category()
        for cat in cats[:-1]:
            row = self.confusion[cat]
            p, r, n = stats[cat]
            lines.append(
                f"{cat:<20} "
                + " ".join(f"{row[c] or '.':>6}" for c in cats)
                + f"   {p:.2f} {r:.2f}  (n={n})"
            )
        if show_errors and self.errors:
            lines += ["", "misclassified:"]
            lines += [f"  {exp:>12} → {got:<12} {text}" for text, exp, got in self.errors]
        return "\n".join(lines)


def evaluate(path: str | Path, classifier: Classifier | None = None) -> Report:
    """Run noise detection and classification over a JSONL file of
    ``{"text", "category", "noise": null | reason}`` items."""
    clf = classifier or Classifier(default_rules())
    report = Report()
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            item = json.loads(line)
            report.items += 1
            text, expected_noise = item["text"], item.get("noise")
            noise = detect_noise(text)
            if expected_noise:
                if noise:
                    report.noise_tp += 1
                    report.noise_reason_agree += noise == expected_noise
                else:
                    report.noise_fn += 1
                continue
            report.inquiries += 1
            expected = Category(item["category"]).value
            if noise:
                report.noise_fp += 1
                got = NOISE
            else:
                got = clf.classify(text).category.value
            report.confusion[expected][got] += 1
            if got == expected:
                report.correct += 1
            else:
                report.errors.append((text, expected, got))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bridge.classify [FILE]``: print the evaluation report."""
    args = list(sys.argv[1:] if argv is None else argv)
    path = args[0] if args else "tests/data/labelled_inquiries.jsonl"
    print(evaluate(path).format())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
