"""回访 answers without I/O: what a citizen's free-text reply to "was it solved? are you
satisfied?" says, as ``solved`` (True, False, None) and ``satisfaction`` (满意, 基本满意, 不满意,
None), and whether it is unclear, so the bridge asks once more instead of guessing.

Why rules and not a model: the answers are short, the signals are a closed vocabulary (已解决,
还没修, 基本满意, 差评, 👍, the menu digits the question offers) and what matters is scope
(不是很满意, 没有不满意, 解决了一半, 修好了又坏了), which rules over jieba's words state
exactly and a model trained on a few hundred answers would learn loosely. Sarcasm
(呵呵，真满意; 太满意了，修了三个月) is recognised by its markers and by praise next to a
long wait or a problem still there, and is marked unclear rather than read either way.

The question (``survey`` in ``bridge/reply/templates.py``) offers a menu, so a bare digit means
what the menu says: 1 solved, 满意; 2 solved, 基本满意; 3 solved, 不满意; 4 not solved. Stars and
scores (5星, ⭐⭐⭐, 打3分) rate satisfaction: 4–5 满意, 3 基本满意, 0–2 不满意.

Measured on hand-written answers (``tests/data/survey``, ``govbridge survey eval``); the figures
are in docs/reliability.md, "回访 answers".
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, get_args

from bridge.triage.classify import _get_tokenizer, normalise

Satisfaction = Literal["满意", "基本满意", "不满意"]
SATISFACTION_LEVELS: Final[tuple[Satisfaction, ...]] = get_args(Satisfaction)
Unclear = Literal["", "sarcasm", "contradiction", "no answer"]

__all__ = [
    "MENU",
    "SATISFACTION_LEVELS",
    "Satisfaction",
    "SurveyAnswer",
    "SurveyReport",
    "evaluate",
    "parse_answer",
]

# What each digit of the question's menu means (the templates print this menu).
MENU: Final[dict[int, tuple[bool, Satisfaction | None]]] = {
    1: (True, "满意"),
    2: (True, "基本满意"),
    3: (True, "不满意"),
    4: (False, None),
}


@dataclass(frozen=True, slots=True)
class SurveyAnswer:
    """What an answer says. ``unclear`` names why it cannot be read (sarcasm, a
    contradiction, nothing about either question): the bridge asks once more."""

    solved: bool | None
    satisfaction: Satisfaction | None
    unclear: Unclear = ""

    @property
    def needs_asking_again(self) -> bool:
        return bool(self.unclear)


# -- preparing the text -------------------------------------------------------------------------

_REPLY_PREFIX = re.compile(r"^\s*回复\s*@[^:\s]{1,30}\s*:")
_MENTION = re.compile(r"@[\w\-·]{1,30}")
# Emoji and Weibo emoticons, as words the rules below read.
_SYMBOLS: Final[dict[str, str]] = {
    "[赞]": " 点赞 ",
    "[good]": " 点赞 ",
    "[心]": " 点赞 ",
    "[鼓掌]": " 点赞 ",
    "[怒]": " 愤怒 ",
    "[抓狂]": " 愤怒 ",
    "[微笑]": " 呵呵 ",
    "[呵呵]": " 呵呵 ",
    "[doge]": " 呵呵 ",
    "[哈哈]": " 哈哈 ",
    "👍": " 点赞 ",
    "👏": " 点赞 ",
    "💯": " 点赞 ",
    "👌": " 点赞 ",
    "❤": " 点赞 ",
    "😊": " 开心 ",
    "😄": " 开心 ",
    "😁": " 开心 ",
    "😀": " 开心 ",
    "🥰": " 开心 ",
    "🎉": " 开心 ",
    "👎": " 差评 ",
    "😡": " 愤怒 ",
    "😠": " 愤怒 ",
    "🤬": " 愤怒 ",
    "😤": " 愤怒 ",
    "💢": " 愤怒 ",
    "🙂": " 呵呵 ",
    "🙃": " 呵呵 ",
    "😅": " 呵呵 ",
    "😒": " 呵呵 ",
}
_STAR_GLYPHS = re.compile(r"[⭐★🌟]+")
# Typos, pinyin and dialect, as the words they stand for.
_SPELLINGS: Final[tuple[tuple[str, str], ...]] = (
    ("manyi", "满意"),
    ("满义", "满意"),
    ("蛮意", "满意"),
    ("满易", "满意"),
    ("以解决", "已解决"),
    ("解绝", "解决"),
    ("唔满意", "不满意"),
    ("唔系", "不是"),
    ("冇", "没"),
    ("木有", "没有"),
    ("莫得", "没有"),
    ("没得", "没有"),
    ("搞掂", "搞定"),
    ("整好", "弄好"),
    ("恩", "嗯"),
)


def _prepare(text: str) -> str:
    """Lower case, simplified characters, ASCII punctuation; emoji and emoticons as words;
    typos and dialect as the words they stand for; no reply prefix or @mentions."""
    t = text
    for symbol, word in _SYMBOLS.items():
        t = t.replace(symbol, word)
    t = _STAR_GLYPHS.sub(lambda m: f" {len(m.group())}星 ", t)
    t = normalise(t)
    t = _REPLY_PREFIX.sub(" ", t)
    t = _MENTION.sub(" ", t)
    for wrong, right in _SPELLINGS:
        t = t.replace(wrong, right)
    return re.sub(r"\s+", " ", t).strip()


# -- the menu, stars and scores ---------------------------------------------------------------

_CN_DIGITS: Final[dict[str, int]] = {
    "零": 0,
    "一": 1,
    "二": 2,
    "两": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
    "十": 10,
}
_MENU_CHOICE = re.compile(
    r"^(?:嗯|我|就)?(?:选|回复|回|选择)?\s*([0-9]+)(?![0-9]*\s*(?:星|颗|分|个|号|楼|天|月|次))"
)
_STARS = re.compile(r"([0-9]+|[一二两三四五])\s*颗?星")
_SCORE = re.compile(r"(?:打|给|评)?\s*([0-9]+|[零一二两三四五六七八九十])\s*分(?!钟|之|钱|局|开)")


def _number(token: str) -> int:
    return int(token) if token.isdigit() else _CN_DIGITS[token]


def _rating_of(stars: int, scale: int = 5) -> Satisfaction:
    share = stars / scale
    if share >= 0.8:
        return "满意"
    if share >= 0.6:
        return "基本满意"
    return "不满意"


def _menu_choice(t: str) -> int | None:
    """The menu digit an answer starts with (``1``, ``选2``, ``4，没人来``), else None; a
    number that is no single menu digit (``12``, ``1111``, ``138…``) is none."""
    m = _MENU_CHOICE.match(t)
    if m is None:
        return None
    digits = m.group(1)
    return int(digits) if len(digits) == 1 else -1


def _stars(t: str) -> Satisfaction | None:
    m = _STARS.search(t)
    if m:
        return _rating_of(_number(m.group(1)))
    if "满分" in t:
        return "满意"
    m = _SCORE.search(t)
    if m:
        score = _number(m.group(1))
        scale = 5 if score <= 5 else 10 if score <= 10 else 100
        return _rating_of(score, scale)
    return None


# -- resolution ---------------------------------------------------------------------------------

_NOT_SOLVED = re.compile(
    "|".join(
        (
            r"(?:没|没有|未|没能|尚未|并没有?|还没有?|都没有?|一直没有?|暂时没有?)"
            r"(?:彻底|完全|根本|真正|全部)?(?:人)?(?:来|去|给)?"
            r"(?:解决|修|处理|弄|搞|落实|整改|清|好|退|发|到账|办|剪|管|理|来|人|联系|变化|说法|动静|改善)",
            r"解决不了|修不好|解决个|解决了个|根本不|个寂寞",
            r"一半|部分|一部分|有一部分",
            r"又(?:坏|堵|漏|灭|不亮|开始|来了|出现|犯|停)",
            r"(?:还是|依然|依旧|仍然|仍|照样|照旧)(?!谢|感谢|要谢|挺|很满意|满意)",
            r"还在(?!处理中吗)|但还有|三天两头|隔三差五|(?:经常|老是|总是|动不动就)坏",
            r"先把.{0,6}(?:办|解决|修|处理)|没给个?说法|没个说法|没下文|没消息|没动静|没有?回音",
            r"问题还在|老样子|一样$|^一样|跟之前一样|没变|没有任何变化|毫无变化",
            r"还堵|还漏|不亮了|还坏|是坏的|还不热|不热|不亮",
            r"下周|下个月|等通知|等材料|处理中|在处理|尽快处理|快好了|差一点|还差",
            r"不指望|重办|重新(?:处理|派单|办理|办)|继续跟进|说好的|不理人|不退|跑了|没人",
            r"只是打了|就打了个电话|看了一眼就走|啥也没干|什么也没干|什么都没干",
            r"办成|没彻底|不彻底|没根本",
        )
    )
)
_NOT_SOLVED_EXCEPT = re.compile(r"没有不满意|没有任何问题|没问题|不是没解决")
_SOLVED = re.compile(
    "|".join(
        (
            r"已(?:经)?(?:解决|处理|修|办|恢复|清|拆|退|到账|剪|修剪|疏通|完成|落实|整改|弄|搞|不)",
            r"解决(?:了|啦|咯|喽|是解决了|倒是|得)",
            r"(?:已|已经|都|全部|彻底|基本上?|大体上?|差不多|终于|总算|算是|应该算|算)?解决",
            r"(?:修|弄|搞|处理|办|整|装|补|清理|弄)(?:好|完|定)",
            r"搞定|修复|恢复|(?<!不)通了|不堵了|不漏了|不吵了|安静了|亮了|热了|变好|好多了|好点了|好一点",
            r"没(?:有)?问题了|没事了|没毛病|清走|清理了|拆了|搬走|抓走|剪了|修剪了|补上|装好|停了|噪音没了|小了很多",
            r"(?:退款|钱).{0,4}(?:收到|到账)|(?:已经|已)?退款了|拿到了|到账|办下来了",
            r"处理得?(?:很|挺|非常)?及时|改善|(?<!太)(?<!老)(?<!快)(?<!就)(?<!差不多)好了|差不多好了",
        )
    )
)
_SOLVED_EXCEPT = re.compile(
    r"太好了|老好了|真好了|就好了|快好了|解决不了|解决个|解决了个"
    r"|(?:能|会|要|希望|尽快|赶紧|请|早日|早点)[^,.!?]{0,6}解决"  # a wish, not a fact
)
_UNKNOWN = re.compile(r"不知道|不清楚|不确定|不晓得|还没去看|没去看")


def _solved(t: str) -> bool | None:
    """True when the answer says the matter is solved, False when it says it is not (or only
    partly, or broke again: those win over a "solved" in the same answer), None when unsaid."""
    masked = _NOT_SOLVED_EXCEPT.sub(" ", t)
    if _NOT_SOLVED.search(masked):
        return False
    if _UNKNOWN.search(t):
        return None
    if _SOLVED.search(_SOLVED_EXCEPT.sub(" ", t)):
        return True
    return None


# -- satisfaction -------------------------------------------------------------------------------

_CLAUSE = re.compile(r"[,.;!?~。，；！？、…\s]+")
_NEGATORS = frozenset(
    {"不", "没", "没有", "不是", "并不", "并非", "谈不上", "说不上", "不算", "唔"}
)
_SOFTENERS = frozenset({"太", "很", "怎么", "大", "是", "是很", "是太", "算"})
_BASIC = frozenset({"基本", "基本上", "还算", "勉强", "凑合", "还", "算", "马马虎虎"})


def _any(*alternatives: str) -> re.Pattern[str]:
    return re.compile("|".join(alternatives))


_RATINGS: Final[tuple[tuple[re.Pattern[str], Satisfaction], ...]] = (
    (
        _any(
            r"差评|很差|太差|真差|差劲|垃圾(?![站桶堆还清问分车箱场味处扔])|很烂|太烂|恶心",
            r"失望|敷衍|恶劣|愤怒|服了|投诉",
        ),
        "不满意",
    ),
    (
        _any(r"太慢|慢死|效率(?:太|很|真)?低|不及时|推来推去|推诿|有什么用|没用|一点用"),
        "不满意",
    ),
    (_any(r"牛头不对马嘴|态度(?:很|太|真|极)?(?:差|不好|恶劣)|不认可|不行|不好"), "不满意"),
    (
        _any(r"一般|还行|还可以|凑合|马马虎虎|就那样|还好|能接受|可以接受|过得去|将就"),
        "基本满意",
    ),
    (
        _any(
            r"好评|点赞|(?:很|挺|非常|特别|十分|超|相当)(?:好|棒)|真好|不错|很棒|真棒|棒棒",
            r"太棒|给力|效率(?:很|真|挺|非常)?高",
        ),
        "满意",
    ),
    (
        _any(r"(?:速度|处理|办得|修得|来得)(?:很|挺|真|非常|特别)?(?:快|及时)|及时|好得很"),
        "满意",
    ),
    (_any(r"个屁|个毛线|个鬼|个锤子"), "不满意"),
    (
        _any(
            r"负责|认真|热情|耐心|巴适|得劲|开心|太好了|老好了|nice|good|赞",
            r"感谢政府|为人民服务",
        ),
        "满意",
    ),
)
_PROCESS_COMPLAINT = re.compile(
    r"(?:但(?!愿)|但是|不过|就是(?!这样)|虽然|可是|只是).{0,40}"
    r"(?:慢|拖|等|久|长|天|月|电话|流程|改进|希望|坏|压|麻烦|推)"
)


# Words that describe the problem, not the handling ("信号还是很差"), and questions ("满意？").
_STATE = re.compile(r"还是(?:很|那么|一样)?(?:差|烂)|满意\s*\?(?!\s*$)|满意\s*\?\s*$")


def _explicit(t: str) -> list[tuple[Satisfaction, bool]]:
    """Each 满意 / 不满意 the answer says, read with the words before it in its clause
    (jieba's): ``不是很满意`` → 不满意, ``没有不满意`` → 满意, ``不是不满意`` → 基本满意,
    ``还算满意`` → 基本满意, ``满意个鬼`` → 不满意; a question (``满意？``, ``会满意吗``)
    is no rating unless it is rhetorical. Each with whether it speaks of the result."""
    found: list[tuple[Satisfaction, bool]] = []
    tokenizer = _get_tokenizer()
    for clause in _CLAUSE.split(t):
        if "满意" not in clause:
            continue
        tokens = [w for w in tokenizer.lcut(clause, HMM=False) if w.strip()]
        for i, word in enumerate(tokens):
            if word not in ("满意", "比较满意"):
                continue
            before = tokens[max(0, i - 4) : i]
            after = tokens[i + 1 : i + 3]
            rest = "".join(tokens[i + 1 :])
            about_result = "结果" in "".join(before)
            if word == "比较满意":
                found.append(("满意", about_result))
                continue
            if rest.startswith(("个鬼", "个屁", "个毛")):
                found.append(("不满意", about_result))
                continue
            if "吗" in after or rest.startswith("吗"):
                if "会" in "".join(before) or "我会" in before or "能" in "".join(before):
                    found.append(("不满意", about_result))  # 你觉得我会满意吗
                continue
            if rest.startswith("度"):
                continue
            negated = 0
            basic = False
            j = len(before) - 1
            while j >= 0:
                w = before[j]
                if w in _NEGATORS or (w.startswith("不") and len(w) <= 3 and w != "不错"):
                    negated += 1
                elif w in _BASIC:
                    basic = True
                elif w in _SOFTENERS or w in {"都", "一点", "非常", "很", "极度", "特别", "也"}:
                    pass
                else:
                    break
                j -= 1
            # "满意不满意" (neither): the first of the pair is no rating
            if "".join(tokens[i + 1 : i + 3]) == "不满意" and negated == 0:
                found.append(("基本满意", about_result))
                break
            if negated == 0:
                found.append(("基本满意" if basic else "满意", about_result))
            elif negated == 1:
                found.append(("不满意", about_result))
            else:  # 没有不满意 / 不是不满意
                outer = before[j + 1] if j + 1 < len(before) else ""
                found.append(("满意" if outer in ("没", "没有") else "基本满意", about_result))
    return found


def _satisfaction(t: str, solved: bool | None) -> tuple[Satisfaction | None, bool]:
    """The rating an answer gives, and whether it contradicts itself."""
    t = _STATE.sub(" ", t)
    said = _explicit(t)
    levels = {level for level, _ in said}
    if len(levels) > 1:
        result = [level for level, about in said if about]
        if result:
            others = {level for level, about in said if not about}
            if result[0] == "满意" and "不满意" in others:
                return "基本满意", False
            return result[0], False
        if levels == {"满意", "基本满意"}:
            return "满意", False
        return None, True
    if levels:
        return levels.pop(), False
    star = _stars(t)
    if star is not None:
        return star, False
    hits: list[Satisfaction] = [level for pattern, level in _RATINGS if pattern.search(t)]
    if "不满意" in hits:
        return "不满意", False
    if "基本满意" in hits:
        return "基本满意", False
    if "满意" in hits:
        if solved is False:
            return None, False  # praise of the people while the matter stays unsolved
        return "满意", False
    if solved is True and _PROCESS_COMPLAINT.search(t):
        return "基本满意", False  # solved, but: slow, long, many calls
    return None, False


# -- sarcasm ------------------------------------------------------------------------------------

_SARCASM_MARK = re.compile(r"呵呵|好一个|真行|可真行|全家|厉害了|谢谢你们啊|真是谢谢|感谢你们全家")
_EXAGGERATED = re.compile(r"太满意|真满意|真是太|太棒了|真棒|真好|真快|效率真高啊|谢谢啊")
_LONG_WAIT = re.compile(
    r"[0-9一二两三四五六七八九十半几]+(?:个)?(?:月|年|星期|礼拜)|半年|一年|终于等到|都过去|照旧|还在|依旧"
)


def _sarcastic(t: str) -> bool:
    if _SARCASM_MARK.search(t):
        return True
    return bool(_EXAGGERATED.search(t) and _LONG_WAIT.search(t))


# -- the whole answer ---------------------------------------------------------------------------


def parse_answer(text: str) -> SurveyAnswer:
    """What a citizen's answer to the 回访 question says."""
    t = _prepare(text)
    if not t:
        return SurveyAnswer(None, None, "no answer")
    if _sarcastic(t):
        return SurveyAnswer(None, None, "sarcasm")
    choice = _menu_choice(t)
    rest = t
    if choice is not None:
        m = _MENU_CHOICE.match(t)
        rest = t[m.end() :] if m else t
    solved = _solved(rest)
    satisfaction, contradicts = _satisfaction(rest, solved)
    if choice is not None:
        if choice not in MENU:
            if solved is None and satisfaction is None:
                return SurveyAnswer(None, None, "no answer")
        else:
            menu_solved, menu_satisfaction = MENU[choice]
            if (solved is not None and solved != menu_solved) or (
                satisfaction is not None
                and menu_satisfaction is not None
                and satisfaction != menu_satisfaction
                and {satisfaction, menu_satisfaction} != {"满意", "基本满意"}
            ):
                return SurveyAnswer(None, None, "contradiction")
            solved = menu_solved
            satisfaction = menu_satisfaction or satisfaction
    if contradicts:
        return SurveyAnswer(solved, None, "contradiction")
    if solved is None and satisfaction is None:
        return SurveyAnswer(None, None, "no answer")
    return SurveyAnswer(solved, satisfaction)


# -- measuring ----------------------------------------------------------------------------------

Label = bool | str | None


@dataclass
class SurveyReport:
    """Confusion tables of labelled answers against what :func:`parse_answer` read."""

    solved: Counter[tuple[Label, Label]] = field(default_factory=Counter)
    satisfaction: Counter[tuple[Label, Label]] = field(default_factory=Counter)
    unclear: Counter[str] = field(default_factory=Counter)
    errors: list[tuple[str, str, Label, Label]] = field(default_factory=list)
    total: int = 0

    def correct(self, which: Literal["solved", "satisfaction"]) -> int:
        table = self.solved if which == "solved" else self.satisfaction
        return sum(n for (want, got), n in table.items() if want == got)

    def accuracy(self, which: Literal["solved", "satisfaction"]) -> float:
        return self.correct(which) / self.total if self.total else 0.0

    def format(self, *, show_errors: bool = False) -> str:
        lines: list[str] = []
        solved_values: Sequence[Label] = (True, False, None)
        satisfaction_values: Sequence[Label] = (*SATISFACTION_LEVELS, None)
        for which, table, values in (
            ("solved", self.solved, solved_values),
            ("satisfaction", self.satisfaction, satisfaction_values),
        ):
            names = [_name(v) for v in values]
            width = max(8, *(_width(n) + 2 for n in names))
            lines.append(f"{which}: rows = labelled, columns = parsed")
            lines.append(_pad("", 10) + "".join(_pad(n, width, right=True) for n in names))
            for want in values:
                cells = "".join(_pad(str(table[(want, got)]), width, right=True) for got in values)
                lines.append(_pad(_name(want), 10) + cells)
            lines.append("")
        unclear = sum(self.unclear.values())
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(self.unclear.items()))
        lines.append(
            f"unclear (asked again): {unclear} of {self.total}" + (f" ({kinds})" if kinds else "")
        )
        if show_errors and self.errors:
            lines.append("")
            lines.append("errors (field, labelled, parsed, text):")
            for which, text, want, got in self.errors:
                lines.append(f"  {which:<12} {_name(want):<8} {_name(got):<8} {text}")
        for which in ("solved", "satisfaction"):
            lines.append(
                f"{which} accuracy {self.accuracy(which):.3f}"  # type: ignore[arg-type]
                f" ({self.correct(which)}/{self.total})"  # type: ignore[arg-type]
            )
        return "\n".join(lines)


def _name(value: Label) -> str:
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else value


def _width(text: str) -> int:
    return sum(2 if ord(c) > 0x2E80 else 1 for c in text)


def _pad(text: str, width: int, *, right: bool = False) -> str:
    space = " " * max(0, width - _width(text))
    return space + text if right else text + space


def evaluate(rows: Iterable[tuple[str, bool | None, Satisfaction | None]]) -> SurveyReport:
    """Parse each labelled answer and count what was read against the label."""
    report = SurveyReport()
    for text, want_solved, want_satisfaction in rows:
        got = parse_answer(text)
        report.total += 1
        report.solved[(want_solved, got.solved)] += 1
        report.satisfaction[(want_satisfaction, got.satisfaction)] += 1
        if got.unclear:
            report.unclear[got.unclear] += 1
        if got.solved != want_solved:
            report.errors.append(("solved", text, want_solved, got.solved))
        if got.satisfaction != want_satisfaction:
            report.errors.append(("satisfaction", text, want_satisfaction, got.satisfaction))
    return report
