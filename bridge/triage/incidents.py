"""Incidents and surges without I/O: near-duplicate inquiries to the same department within a
window become one incident, and an incident that grows fast is a surge (issue 24).

How two inquiries are judged the same incident:

- **Text.** The citizen's own words (``classify._content_text``: NFKC, lower case, traditional →
  simplified, no @mentions, links or reply prefixes), common typos corrected and synonyms of the
  common faults folded to one word (``_TYPOS``, ``_FOLDS``: 路等 → 路灯, 水管破裂 → 爆管), with
  the place names taken out, as a set of jieba words and character 1–2-grams. Candidates come
  from the inquiries naming the same place and from MinHash/LSH over that set (``datasketch``'s
  MinHash permutations over the features' crc32, 64 of them; its choice of bands for threshold
  0.2, 28 bands of 2 rows, kept here in tables whose buckets hold the newest ``lsh_bucket``
  inquiries, so a common band cannot return a good part of the window), at most
  ``max_candidates``, those sharing the most bands first; each is scored with the cosine of
  the two sets, every feature weighted by the inverse document frequency the shipped
  classifier learned (so 坏了 counts little and 承重墙 much).
- **Places.** Streets (``…路``, ``…街``, ``…大道``), sites (``…小区``, ``…花园``, ``…小学``…, and
  bare landmarks such as ``汽车站``), house numbers (``128号``), buildings (``3栋``), bus and
  metro lines and, where the platform gives them, coordinates. Two inquiries that name different
  places (two streets, two house numbers more than 4 apart, two buildings, a street and an
  estate with no name in common, coordinates further apart than ``max_distance_m``) are never
  one incident. Sharing a place lowers the similarity needed (``threshold_shared_place``) below
  that for inquiries with no place in common (``threshold``).
- **Time and department.** Only inquiries to the same department within ``window`` of each other
  are compared; older ones expire, and the index holds at most ``max_entries``.

An inquiry joins the incident of its best-scoring candidate, so incidents grow by chaining:
each new report needs to resemble one earlier report, not all of them. When it also resembles
another incident strongly (``merge_factor`` times the threshold), the two become one
(:meth:`IncidentIndex.resolve` gives the surviving id).

Surges (:class:`SurgeDetector`) are pure bookkeeping over the incidents found: N inquiries of one
incident, department and category within a window (default 3 in 24 hours) make a surge, with its
size, growth per hour and places.
"""

from __future__ import annotations

import contextlib
import functools
import math
import re
import zlib
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

import numpy as np

from bridge.triage.classify import _content_text, _get_tokenizer, _is_punctuation_run

__all__ = [
    "Decision",
    "IncidentConfig",
    "IncidentIndex",
    "Places",
    "Surge",
    "SurgeDetector",
    "distance_m",
    "pairwise_scores",
    "places_of",
    "signature_features",
]

# -- places ------------------------------------------------------------------------------------

_CJK = r"[\u4e00-\u9fff]"


def _words(spaced: str) -> frozenset[str]:
    return frozenset(spaced.split())


# A street: two characters before the suffix (most names are two; a longer name keeps its last
# two, which is all that needs to be consistent). Words that end like a street but are not one
# are dropped below.
_STREET = re.compile(rf"({_CJK}{{2}})(大道|大街|路(?!灯)|街|巷)")  # 小区路灯 is no street
_NOT_STREET: Final = frozenset(
    {
        "马路",
        "公路",
        "道路",
        "走路",
        "绕路",
        "修路",
        "铁路",
        "线路",
        "电路",
        "网路",
        "思路",
        "出路",
        "一路",
        "上路",
        "过马路",
        "这条路",
        "那条路",
        "条路",
        "段路",
        "的路",
        "街道",
        "一条街",
        "条街",
        "上街",
        "逛街",
        "沿街",
        "跑路",
        "步行街",
        "商业街",
        "美食街",
        "酒吧街",
    }
)
_NOT_NAME_END: Final = "这那条段的了个们在到是"
_SITE = re.compile(
    rf"({_CJK}{{2}})(小区|花园|家园|新村|公寓|大厦|广场|公园|中学|小学|幼儿园|医院|菜市场|市场"
    r"|天桥|隧道|地铁站|火车站|汽车站|工地|苑|湾|园|村)"
)
_NOT_SITE_FIRST: Final = "这那个的了在到从和与及是我你他她们家"
_NOT_SITE_NAME: Final = _words(
    "附近 周边 周围 旁边 对面 靠近 人行 整个 所有 各个 很多 好多 几个 一个 老旧 新建 高档 小区"
)
# Landmarks known by their kind alone (人民路汽车站, 人民路步行街北口): a place on a street.
_LANDMARK = re.compile(r"步行街|商业街|美食街|酒吧街|汽车站|火车站|高铁站|收费站|菜市场|天桥|隧道")
_NUMBER = re.compile(r"(\d{1,5})\s*号(?![线楼])")
_CN_DIGITS: Final = {c: i for i, c in enumerate("零一二三四五六七八九十")}
_BUILDING = re.compile(r"(\d{1,3}|[一二三四五六七八九十]{1,3})\s*(?:号楼|栋|幢|号院|单元)")
_LINE = re.compile(r"(\d{1,3}|[一二三四五六七八九十]{1,3})\s*(?:路公交|路车|路公车|号线)")


def _cn_number(s: str) -> int:
    if s.isdigit():
        return int(s)
    if s == "十":
        return 10
    if s.startswith("十"):
        return 10 + _CN_DIGITS.get(s[1], 0)
    if s.endswith("十"):
        return _CN_DIGITS.get(s[0], 0) * 10
    if "十" in s:
        a, b = s.split("十", 1)
        return _CN_DIGITS.get(a, 0) * 10 + _CN_DIGITS.get(b, 0)
    return _CN_DIGITS.get(s[0], 0)


@dataclass(frozen=True, slots=True)
class Places:
    """The places an inquiry names, each kind a set of canonical names."""

    streets: frozenset[str] = frozenset()
    sites: frozenset[str] = frozenset()
    numbers: frozenset[int] = frozenset()
    buildings: frozenset[int] = frozenset()
    lines: frozenset[int] = frozenset()
    """Bus and metro lines (``18路公交``, ``2号线``)."""
    coords: tuple[float, float] | None = None

    def index_keys(self) -> list[str]:
        """What the place index files this inquiry under."""
        out = [f"s:{s}" for s in self.streets] + [f"t:{t}" for t in self.sites]
        out += [f"l:{n}" for n in self.lines]
        if self.coords is not None:  # a ~550 m cell
            out.append(f"g:{round(self.coords[0] * 200)}:{round(self.coords[1] * 200)}")
        return out

    def conflicts(self, other: Places, max_distance_m: float) -> bool:
        """Whether the two name different places (so cannot be one incident): places of one
        kind that differ (two streets, two house numbers, two buildings, coordinates further
        apart than ``max_distance_m``), or each names a street, site or line and they have
        none in common (学府路 and 丽景湾)."""
        if (
            self.coords is not None
            and other.coords is not None
            and distance_m(self.coords, other.coords) > max_distance_m
        ):
            return True
        if self.sites and other.sites and not _same_site(self.sites, other.sites):
            return True
        if self.numbers and other.numbers and not _near_numbers(self.numbers, other.numbers):
            return True
        for a, b in (
            (self.streets, other.streets),
            (self.buildings, other.buildings),
            (self.lines, other.lines),
        ):
            if a and b and not (a & b):
                return True
        mine, theirs = self.stems(), other.stems()
        return bool(mine and theirs and not (mine & theirs)) and not (
            self.coords is not None and other.coords is not None
        )

    def stems(self) -> set[str]:
        """The names of streets and sites without their kind: 滨江路, 滨江隧道 and 滨江花园
        are all 滨江 (a street's tunnel, a street's estate)."""
        return {name[:2] for name in self.streets | self.sites}

    def shares(self, other: Places, near_m: float) -> bool:
        """Whether the two name a place in common (a street, site, number or line, or
        coordinates within ``near_m``)."""
        if (self.stems() & other.stems()) or (self.lines & other.lines):
            return True
        return (
            self.coords is not None
            and other.coords is not None
            and distance_m(self.coords, other.coords) <= near_m
        )

    def pinpoints(self, other: Places) -> bool:
        """Whether the two name the same spot, not just the same street: one house number,
        one building, or one named site."""
        return bool(
            (self.numbers & other.numbers)
            or (self.buildings & other.buildings)
            or {s for s in self.sites if len(s) > 3} & other.sites
        )

    def describe(self) -> str:
        """A short human form: ``解放路 128号`` or ``锦绣花园 3栋``."""
        parts = sorted(self.streets) + sorted(self.sites)
        parts += [f"{n}号" for n in sorted(self.numbers)]
        parts += [f"{n}栋" for n in sorted(self.buildings)]
        parts += [f"{n}路/号线" for n in sorted(self.lines)]
        if not parts and self.coords is not None:
            parts.append(f"{self.coords[0]:.4f},{self.coords[1]:.4f}")
        return " ".join(parts)


def _same_site(a: frozenset[str], b: frozenset[str]) -> bool:
    """Whether two sets of sites name one in common; a bare landmark is its named form
    (隧道 and 滨江隧道)."""
    return any(x == y or x.endswith(y) or y.endswith(x) for x in a for y in b)


_NEAR_NUMBERS: Final = 4
"""House numbers this close are one spot (爆管 at 128号 seen from 130号 next door)."""


def _near_numbers(a: frozenset[int], b: frozenset[int]) -> bool:
    return any(abs(x - y) <= _NEAR_NUMBERS for x in a for y in b)


def distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance in metres between two (latitude, longitude) points."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * 6_371_000 * math.asin(min(1.0, math.sqrt(h)))


def _blank(t: str, spans: Iterable[tuple[int, int]]) -> str:
    chars = list(t)
    for start, end in spans:
        for i in range(start, end):
            chars[i] = " "
    return "".join(chars)


# Words citizens use for one thing, folded to one form before places and features are read:
# synonyms of the common faults (爆管 / 水管破裂 / 水管炸了; 违停 / 乱停车; 红绿灯 / 信号灯) and
# common typos (路等, 垃级, 电悌). Written from how complaints are worded, not from the corpus's
# held-back part; each group is one matter, never a fault and its cause.
_FOLDS: Final = {
    "爆管": "水管爆裂 水管破裂 水管爆了 水管破了 水管炸了 水管裂了 水管裂开 管道爆裂 管道破裂 "
    "爆水管 水管爆开 管子爆了 水管漏了",
    "停水": "没水了 断水 没有水 没自来水 没有自来水",
    "停电": "没电 断电 没有电 跳闸停电",
    "违停": "违法停车 违章停车 乱停车 乱停乱放 乱停 随意停车 违规停车 停车占道",
    "红绿灯": "信号灯 交通灯 交通信号灯",
    "腹泻": "拉肚子 上吐下泻 吃坏肚子 吃坏了肚子 拉稀",
    "拥堵": "堵车 堵死 堵住 塞车 堵得 堵了 很堵 太堵",
    "施工": "打桩 挖掘机 动工 开工",
    "清运": "没人清 没人拉 没人收 没人运 没人管的垃圾 不清运 没清运",
    "路灯不亮": "路灯坏了 路灯坏 路灯故障 没有路灯 路灯不亮 路灯全灭 路灯灭了 漆黑 黑漆漆 "
    "黑灯瞎火 路灯不开",
    "电梯故障": "电梯坏了 电梯坏 电梯停运 电梯不动 电梯停了 电梯又坏 电梯故障",
    "发黄": "浑浊 黄得 是黄的 水黄 黄水 锈水 铁锈味",
    "井盖": "窨井盖 下水道盖 井盖子",
    "积水": "内涝 水淹 淹水 被淹 淹了",
    "占道经营": "占道摆摊 乱摆摊 流动摊贩 摆地摊 占道经营",
    "暖气不热": "暖气温度低 暖气不达标 暖气温度不达标 暖气冰凉 暖气不暖",
    "小广告": "牛皮癣 乱贴广告 乱贴小广告",
    "不牵绳": "不拴绳 没牵绳 没拴绳 不栓绳",
    "倒树": "树倒了 大树倒了 树被刮倒 树刮倒了",
    "飞线充电": "飞线 私拉电线 私拉电线充电",
    "晚点": "班次太少 班次少 等不到车 没车 等了快一个小时 等了四十分钟 等了半天 半天不来",
}
_TYPOS: Final = {
    "路灯": "路等 路登",
    "垃圾": "垃级 拉圾 垃吸",
    "电梯": "电悌 电第",
    "暖气": "暧气 暖汽",
    "红绿灯": "红路灯 红绿等",
}


def _folder(groups: dict[str, str]) -> tuple[re.Pattern[str], dict[str, str]]:
    to = {v: k for k, vs in groups.items() for v in vs.split()}
    return re.compile("|".join(sorted(map(re.escape, to), key=len, reverse=True))), to


_TYPO_RE, _TYPO_MAP = _folder(_TYPOS)
_FOLD_RE, _FOLD_MAP = _folder(_FOLDS)


def _fold(t: str) -> str:
    """``t`` with its typos corrected (``_TYPOS``), then each synonym in ``_FOLDS`` replaced by
    its one form (路等坏了 → 路灯坏了 → 路灯不亮)."""
    t = _TYPO_RE.sub(lambda m: _TYPO_MAP[m.group()], t)
    return _FOLD_RE.sub(lambda m: _FOLD_MAP[m.group()], t)


def _spans_and_places(t: str, coords: tuple[float, float] | None) -> tuple[Places, str]:
    """The places of normalised text ``t`` and the text with them blanked out."""
    t = _fold(t)
    streets: set[str] = set()
    sites: set[str] = set()
    cut: list[tuple[int, int]] = []
    for m in _STREET.finditer(t):
        word = m.group(1) + m.group(2)
        if (
            m.group(1)[1] in _NOT_NAME_END
            or m.group(1) in _NOT_SITE_NAME
            or any(word.endswith(w) for w in _NOT_STREET)
        ):
            continue
        streets.add(word)
        cut.append(m.span())
    no_streets = _blank(t, cut)
    for m in _SITE.finditer(no_streets):
        name, suffix = m.group(1), m.group(2)
        if name[0] in _NOT_SITE_FIRST or name[1] in _NOT_NAME_END or name in _NOT_SITE_NAME:
            continue
        if suffix in "苑湾园村" and name.endswith(("公", "花", "家", "校", "乐", "果", "菜")):
            continue  # 公园/花园/家园 are sites of their own, matched above
        sites.add(name + suffix)
        cut.append(m.span())
    for m in _LANDMARK.finditer(_blank(t, cut)):
        sites.add(m.group())
        cut.append(m.span())
    numbers = {int(m.group(1)) for m in _NUMBER.finditer(t)}
    cut += [m.span() for m in _NUMBER.finditer(t)]
    buildings = {_cn_number(m.group(1)) for m in _BUILDING.finditer(t)}
    cut += [m.span() for m in _BUILDING.finditer(t)]
    lines = {_cn_number(m.group(1)) for m in _LINE.finditer(t)}
    t = _blank(t, cut)
    if not (streets or sites or numbers or buildings or lines or coords):
        return _NOWHERE, t
    places = Places(
        _frozen(streets),
        _frozen(sites),
        _frozen(numbers),
        _frozen(buildings),
        _frozen(lines),
        coords,
    )
    return places, t


_NOWHERE: Final = Places()
_NO_BANDS: Final = np.zeros(0, dtype=np.int64)
_EMPTY: Final[frozenset[Any]] = frozenset()


def _frozen(items: set[Any]) -> frozenset[Any]:
    """A frozenset, the shared empty one when empty (each new empty one costs 216 bytes)."""
    return frozenset(items) if items else _EMPTY


def places_of(text: str, place: str | None = None, coords: Sequence[float] | None = None) -> Places:
    """The places an inquiry names, in its text or the platform's place field."""
    t = _content_text(f"{place or ''} {text}")
    return _spans_and_places(t, _coords(coords))[0]


def _coords(coords: Sequence[float] | None) -> tuple[float, float] | None:
    if coords is None:
        return None
    lat, lon = float(coords[0]), float(coords[1])
    return (lat, lon)


# -- text features -----------------------------------------------------------------------------

# Words every inquiry uses whatever it is about: they would make unrelated inquiries similar.
_STOP_WORDS: Final = _words(
    "的 了 是 在 我 我们 你们 他们 有 没有 人 都 也 还 就 又 和 与 吗 呢 吧 啊 呀 么 什么 怎么 "
    "这 那 这边 那边 这里 那里 一个 一下 一直 已经 现在 今天 昨天 晚上 早上 上午 下午 请 请问 "
    "尽快 赶紧 马上 处理 解决 反映 投诉 希望 能不能 可以 谁 管 管管 有人 没人 到底 门口 附近 "
    "旁边 一带 这段 那段 好 太 很 非常 真的 问题 情况 多久 时候 几天 好几天 小时 个 给 让 被 "
    "说 看 看看 来 去 到 过 着 为什么 一点 部门 相关 市 局 公司 政府"
)
_UNSEEN_IDF: Final = 7.2  # about the largest idf the classifier's model knows
_IDF: dict[int, float] | None = None


def _idf() -> dict[int, float]:
    """How telling each feature is: the inverse document frequency the shipped classifier
    learned from its 1,349 training inquiries (same ``w:``/``c:`` feature names), unseen
    features counting as rare. Borrowed, not fitted to the incident corpus."""
    global _IDF
    if _IDF is None:
        from bridge.triage.classify import shipped_model

        _IDF = {_hash(f): w for f, w in shipped_model().idf.items()}
    return _IDF


_CJK_RUN = re.compile(rf"{_CJK}+|[a-z0-9]+")


def signature_features(text: str) -> tuple[Places, list[str]]:
    """An inquiry's places and the features its similarity is judged on: the jieba words and
    character bigrams of its words once places are blanked out."""
    places, rest = _spans_and_places(_content_text(text), None)
    return places, _features(rest)


def _features(rest: str) -> list[str]:
    feats: set[str] = set()
    for w in _get_tokenizer().lcut(rest, HMM=False):
        w = w.strip()
        if len(w) >= 2 and w not in _STOP_WORDS and not _is_punctuation_run(w):
            feats.add("w:" + w)
    for run in _CJK_RUN.findall(rest):
        if run.isascii():
            continue
        for i in range(len(run)):
            if run[i] not in _STOP_WORDS:
                feats.add("c:" + run[i])
            g = run[i : i + 2]
            if len(g) == 2 and g not in _STOP_WORDS:
                feats.add("c:" + g)
    return sorted(feats)


# -- the index ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IncidentConfig:
    window: timedelta = timedelta(hours=72)
    """Inquiries further apart than this are never one incident."""
    threshold: float = 0.30
    """Similarity (Jaccard of the feature sets) needed when no place is shared."""
    threshold_shared_place: float = 0.10
    """Similarity needed when the two name a place in common (a street, a site, a line)."""
    threshold_same_spot: float = 0.10
    """Similarity needed when they name the same spot (house number, building, named site)."""
    max_distance_m: float = 500.0
    """Coordinates further apart than this are different places."""
    num_perm: int = 64
    lsh_threshold: float = 0.2
    max_entries: int = 200_000
    """The most inquiries the index holds; the oldest go first when it is full."""
    merge_factor: float = 1.5
    """An inquiry like two incidents merges them only when it is this many times as similar
    to the second as the threshold asks (a weak bridge would join two matters on one spot)."""
    max_candidates: int = 100
    """At most this many candidates are scored per inquiry: those naming the same place, then
    the LSH candidates sharing the most bands, newest first."""
    lsh_bucket: int = 16
    """Inquiries remembered per LSH bucket (newest first): a bucket of a common band (the
    minimum hashes of 坏 and 了) would otherwise hold a good part of the window."""
    place_bucket: int = 64
    """Inquiries remembered per place (newest first) as candidates."""


def _hash(feature: str) -> int:
    return zlib.crc32(feature.encode())


_FEATURE_INFO: dict[str, tuple[int, float]] = {}
"""Each feature seen: its crc32 and its squared idf weight (bounded: ``_FEATURE_INFO_MAX``)."""
_FEATURE_INFO_MAX: Final = 200_000  # about 30 MB when full; past it, features are hashed anew


def _hashed(feats: Sequence[str]) -> tuple[list[int], list[float]]:
    """The sorted distinct crc32 of the features, and the squared weight of each."""
    info = _FEATURE_INFO
    pairs: dict[int, float] = {}
    for f in feats:
        hw = info.get(f)
        if hw is None:
            h = _hash(f)
            hw = (h, _idf().get(h, _UNSEEN_IDF) ** 2)
            if len(info) < _FEATURE_INFO_MAX:
                info[f] = hw
        pairs[hw[0]] = hw[1]
    hashes = sorted(pairs)
    return hashes, [pairs[h] for h in hashes]


@dataclass(slots=True)
class _Entry:
    key: str
    department: str
    created_at: datetime
    places: Places
    features: np.ndarray
    """The crc32 of each feature, sorted (uint32: a fifth of a MinHash signature's memory)."""
    norm: float
    """The length of its weighted feature vector."""
    incident: str
    place_keys: list[str]
    seq: int
    bands: np.ndarray
    """The key of each LSH band of its MinHash signature (int64; empty without features)."""


@dataclass(slots=True)
class Decision:
    """What :meth:`IncidentIndex.decide` found: the incident, the similarity of the best
    match (0.0 when none) and the inquiry it matched."""

    incident: str
    similarity: float
    matched: str | None
    joined: tuple[str, ...] = ()
    """Other incidents this inquiry showed to be part of ``incident`` (now merged into it)."""


class IncidentIndex:
    """Incidents of recent inquiries: :meth:`add` files an inquiry and returns its incident id
    (the id of the incident's first inquiry). Inquiries must arrive roughly in time order: the
    newest ``created_at`` seen sets what has expired.

    Similarity is the cosine of the two feature sets with each feature weighted by its inverse
    document frequency among the inquiries the index holds, so the words every complaint uses
    (坏了, 什么时候) count little and the words of this matter (爆管, 承重墙) much."""

    def __init__(self, config: IncidentConfig | None = None) -> None:
        self.config = config or IncidentConfig()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._by_time: deque[tuple[datetime, str]] = deque()
        self._bands: dict[str, list[dict[int, list[str]]]] = {}
        """Per department, one table per LSH band: band key -> the newest inquiries in it."""
        self._by_place: dict[tuple[str, str], list[str]] = {}
        self._merged_into: OrderedDict[str, str] = OrderedDict()
        """Incidents found to be one: an incident id -> the id it joined (union-find)."""
        self._newest: datetime | None = None
        self._seq = 0
        self._perm = minhash_permutations(self.config.num_perm)  # reused for every signature
        # datasketch's choice of bands (b) and rows per band (r) for the threshold
        self._b, self._r = lsh_bands(self.config.lsh_threshold, self.config.num_perm)

    def __len__(self) -> int:
        return len(self._entries)

    def incident_of(self, inquiry_id: str) -> str | None:
        """The incident an inquiry in the index belongs to now (incidents found to be one
        since it was added answer with the surviving id)."""
        entry = self._entries.get(inquiry_id)
        return self.resolve(entry.incident) if entry is not None else None

    def resolve(self, incident: str) -> str:
        """The surviving id of an incident that may have been merged into another."""
        root = incident
        while root in self._merged_into:
            root = self._merged_into[root]
        while incident != root:  # path compression
            parent = self._merged_into[incident]
            self._merged_into[incident] = root
            incident = parent
        return root

    def _merge(self, incidents: Iterable[str]) -> str:
        """One incident of several: the one started first survives."""
        roots = sorted({self.resolve(i) for i in incidents}, key=self._started)
        for other in roots[1:]:
            self._merged_into[other] = roots[0]
        while len(self._merged_into) > self.config.max_entries:
            self._merged_into.popitem(last=False)
        return roots[0]

    def _started(self, incident: str) -> tuple[int, str]:
        entry = self._entries.get(incident)
        return (entry.seq if entry is not None else 0, incident)

    def _band_keys(self, hashes: list[int]) -> np.ndarray:
        """The LSH band keys of the features' MinHash signature (datasketch's permutations over
        the features' crc32, which stands in for its sha1 of each feature)."""
        if not hashes:
            return _NO_BANDS
        signature = minhash_signature(self._perm, hashes)
        rows = signature[: self._b * self._r].astype(np.uint64).reshape(self._b, self._r)
        keys = rows[:, 0].copy()
        for j in range(1, self._r):
            keys = keys * np.uint64(0x9E3779B97F4A7C15) ^ rows[:, j]
        return keys.view(np.int64)

    def add(
        self,
        inquiry_id: str,
        text: str,
        department: str,
        created_at: datetime,
        place: str | None = None,
        coords: Sequence[float] | None = None,
    ) -> str:
        """File one inquiry; its incident's id (an earlier inquiry's incident, or its own id
        when it starts one)."""
        return self.decide(inquiry_id, text, department, created_at, place, coords).incident

    def decide(
        self,
        inquiry_id: str,
        text: str,
        department: str,
        created_at: datetime,
        place: str | None = None,
        coords: Sequence[float] | None = None,
    ) -> Decision:
        """:meth:`add`, also saying how similar the best match was and which inquiry it was."""
        if inquiry_id in self._entries:
            e = self._entries[inquiry_id]
            return Decision(e.incident, 1.0, None)
        cfg = self.config
        if self._newest is None or created_at > self._newest:
            self._newest = created_at
        self.expire(self._newest - cfg.window)
        t = _content_text(f"{place or ''} {text}")
        places, rest = _spans_and_places(t, _coords(coords))
        hashes, w2 = _hashed(_features(rest))
        bands = self._band_keys(hashes)
        mine = np.array(hashes, dtype=np.uint32)
        mine_w2 = np.array(w2, dtype=np.float64)
        norm = math.sqrt(float(mine_w2.sum()))
        best: _Entry | None = None
        best_sim = 0.0
        matched: set[str] = set()
        scored: list[tuple[float, float, _Entry]] = []
        candidates = self._candidates(department, places, bands)
        lowest = min(cfg.threshold, cfg.threshold_shared_place, cfg.threshold_same_spot)
        sims = self._similarities(mine, mine_w2, norm, candidates)
        for entry, sim in zip(candidates, sims, strict=True):
            if sim < lowest or abs(created_at - entry.created_at) > cfg.window:
                continue
            if places.conflicts(entry.places, cfg.max_distance_m):
                continue
            if not places.shares(entry.places, cfg.max_distance_m):
                need = cfg.threshold
            elif places.pinpoints(entry.places):
                need = cfg.threshold_same_spot
            else:
                need = cfg.threshold_shared_place
            if sim >= need:
                scored.append((sim, need, entry))
                if sim > best_sim:
                    best, best_sim = entry, sim
        if best is not None:
            matched.add(best.incident)
            matched.update(e.incident for sim, need, e in scored if sim >= need * cfg.merge_factor)
        # An inquiry like two incidents shows they are one (the second report of a burst main
        # that did not resemble the first, joined by a third that resembles both).
        joined: tuple[str, ...] = ()
        if matched:
            roots = {self.resolve(i) for i in matched}
            incident = self._merge(roots)
            joined = tuple(sorted(roots - {incident}))
        else:
            incident = inquiry_id
        self._insert(inquiry_id, department, created_at, places, bands, mine, norm, incident)
        return Decision(incident, best_sim, best.key if best is not None else None, joined)

    def remember(
        self,
        inquiry_id: str,
        text: str,
        department: str,
        created_at: datetime,
        incident: str,
        place: str | None = None,
        coords: Sequence[float] | None = None,
    ) -> None:
        """File an inquiry whose incident was decided elsewhere (by another process, or before
        a restart): it becomes a candidate for later inquiries, its incident unchanged."""
        if inquiry_id in self._entries:
            return
        if self._newest is None or created_at > self._newest:
            self._newest = created_at
        self.expire(self._newest - self.config.window)
        if created_at < self._newest - self.config.window:
            return
        t = _content_text(f"{place or ''} {text}")
        places, rest = _spans_and_places(t, _coords(coords))
        hashes, w2 = _hashed(_features(rest))
        features = np.array(hashes, dtype=np.uint32)
        norm = math.sqrt(sum(w2))
        bands = self._band_keys(hashes)
        self._insert(inquiry_id, department, created_at, places, bands, features, norm, incident)

    def join(self, incident: str, into: str) -> None:
        """Incidents found to be one elsewhere: ``incident`` answers as ``into`` from now on."""
        a, b = self.resolve(incident), self.resolve(into)
        if a != b:
            self._merged_into[a] = b

    @staticmethod
    def _similarities(
        mine: np.ndarray, mine_w2: np.ndarray, norm: float, entries: Sequence[_Entry]
    ) -> list[float]:
        """The weighted cosine of one inquiry's features with each entry's, all at once."""
        if not norm or not entries:
            return [0.0] * len(entries)
        lengths = np.array([len(e.features) for e in entries])
        allf = np.concatenate([e.features for e in entries])
        if not len(allf):
            return [0.0] * len(entries)
        at = np.minimum(np.searchsorted(mine, allf), len(mine) - 1)
        contrib = np.where(mine[at] == allf, mine_w2[at], 0.0)
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        shared = np.add.reduceat(contrib, np.minimum(starts, len(allf) - 1))
        shared[lengths == 0] = 0.0  # reduceat gives an empty segment the next element
        norms = np.array([e.norm for e in entries])
        with np.errstate(divide="ignore", invalid="ignore"):
            sims = np.where(norms > 0, shared / (norm * norms), 0.0)
        return [float(x) for x in sims]

    def _candidates(self, department: str, places: Places, bands: np.ndarray) -> list[_Entry]:
        """The inquiries naming one of its places, then those sharing LSH bands with it (most
        bands first, then newest), at most ``max_candidates``."""
        cap = self.config.max_candidates
        entries = self._entries
        found: dict[str, _Entry] = {}
        for pk in places.index_keys():
            for k in reversed(self._by_place.get((department, pk), ())):
                e = entries.get(k)
                if e is not None:
                    found[k] = e
        tables = self._bands.get(department)
        if tables is not None and len(bands):
            shared: dict[str, int] = {}
            for table, bk in zip(tables, bands.tolist(), strict=True):
                bucket = table.get(bk)
                if bucket:
                    for k in bucket:
                        shared[k] = shared.get(k, 0) + 1
            ranked = [(n, e.seq, e) for k, n in shared.items() if (e := entries.get(k)) is not None]
            ranked.sort(key=lambda x: (x[0], x[1]), reverse=True)
            for _, _, e in ranked:
                if len(found) >= cap:
                    break
                found.setdefault(e.key, e)
        out = list(found.values())
        if len(out) > cap:
            out.sort(key=lambda e: e.seq, reverse=True)
            del out[cap:]
        return out

    def _insert(
        self,
        key: str,
        department: str,
        created_at: datetime,
        places: Places,
        bands: np.ndarray,
        features: np.ndarray,
        norm: float,
        incident: str,
    ) -> None:
        cfg = self.config
        while len(self._entries) >= cfg.max_entries:
            self._drop(next(iter(self._entries)))
        self._seq += 1
        place_keys = places.index_keys()
        entry = _Entry(
            key,
            department,
            created_at,
            places,
            features,
            norm,
            incident,
            place_keys,
            self._seq,
            bands,
        )
        self._entries[key] = entry
        self._by_time.append((created_at, key))
        if len(bands):
            tables = self._bands.get(department)
            if tables is None:
                tables = self._bands[department] = [{} for _ in range(self._b)]
            for table, bk in zip(tables, bands.tolist(), strict=True):
                bucket = table.get(bk)
                if bucket is None:
                    table[bk] = [key]
                else:
                    bucket.append(key)
                    if len(bucket) > cfg.lsh_bucket:
                        del bucket[0]
        for pk in place_keys:
            bucket = self._by_place.setdefault((department, pk), [])
            bucket.append(key)
            if len(bucket) > cfg.place_bucket:
                del bucket[0]

    def expire(self, before: datetime) -> int:
        """Forget inquiries created before ``before``; how many were forgotten."""
        gone = 0
        while self._by_time and self._by_time[0][0] < before:
            _, key = self._by_time.popleft()
            if key in self._entries:
                self._drop(key)
                gone += 1
        return gone

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key)
        tables = self._bands.get(entry.department)
        if tables is not None and len(entry.bands):
            for table, bk in zip(tables, entry.bands.tolist(), strict=True):
                bucket = table.get(bk)
                if bucket is not None:
                    with contextlib.suppress(ValueError):
                        bucket.remove(key)
                    if not bucket:
                        del table[bk]
        for pk in entry.place_keys:
            bucket = self._by_place.get((entry.department, pk))
            if bucket is not None:
                with contextlib.suppress(ValueError):
                    bucket.remove(key)
                if not bucket:
                    del self._by_place[(entry.department, pk)]


# -- surges ------------------------------------------------------------------------------------


@dataclass(slots=True)
class Surge:
    """One incident growing fast in one department and category."""

    incident: str
    department: str
    category: str
    size: int
    """Inquiries of the incident within the surge window."""
    first_at: datetime
    last_at: datetime
    growth_per_hour: float
    """Inquiries joined in the last hour before ``last_at``."""
    places: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Track:
    times: deque[datetime] = field(default_factory=deque)
    places: dict[str, int] = field(default_factory=dict)
    raised: bool = False


class SurgeDetector:
    """N inquiries of one incident, department and category within ``window`` are a surge
    (default 3 in 24 hours). :meth:`observe` returns the surge the first time it is reached
    (what raises the event and alert), ``None`` otherwise; :meth:`surges` lists the current
    ones, largest first."""

    def __init__(
        self,
        threshold: int = 3,
        window: timedelta = timedelta(hours=24),
        max_tracked: int = 100_000,
    ) -> None:
        if threshold < 2:
            raise ValueError("a surge needs at least 2 inquiries")
        self.threshold, self.window, self.max_tracked = threshold, window, max_tracked
        self._tracks: OrderedDict[tuple[str, str, str], _Track] = OrderedDict()

    def observe(
        self,
        incident: str,
        department: str,
        category: str,
        created_at: datetime,
        places: Iterable[str] = (),
    ) -> Surge | None:
        key = (department, category, incident)
        track = self._tracks.get(key)
        if track is None:
            track = self._tracks[key] = _Track()
            while len(self._tracks) > self.max_tracked:
                self._tracks.popitem(last=False)
        else:
            self._tracks.move_to_end(key)
        track.times.append(created_at)
        for p in places:
            if p:
                track.places[p] = track.places.get(p, 0) + 1
        self._trim(track, created_at)
        if len(track.times) >= self.threshold and not track.raised:
            track.raised = True
            return self._surge(key, track)
        if len(track.times) < self.threshold:
            track.raised = False  # fell back below: a later rise is a new surge
        return None

    def _trim(self, track: _Track, now: datetime) -> None:
        while track.times and track.times[0] < now - self.window:
            track.times.popleft()

    def _surge(self, key: tuple[str, str, str], track: _Track) -> Surge:
        department, category, incident = key
        times = sorted(track.times)
        last = times[-1]
        recent = sum(1 for t in times if t > last - timedelta(hours=1))
        places = sorted(track.places, key=lambda p: (-track.places[p], p))
        return Surge(
            incident, department, category, len(times), times[0], last, float(recent), places
        )

    def surges(self, now: datetime) -> list[Surge]:
        """The incidents at or above the threshold within the window ending ``now``."""
        out = []
        for key, track in self._tracks.items():
            self._trim(track, now)
            if len(track.times) >= self.threshold:
                out.append(self._surge(key, track))
        return sorted(out, key=lambda s: (-s.size, s.first_at))


# -- measuring ---------------------------------------------------------------------------------


def pairwise_scores(
    truth: Sequence[str | None], predicted: Sequence[str]
) -> tuple[float, float, float]:
    """Pairwise precision, recall and f1 of predicted incidents against labelled ones (``None``:
    a singleton). A pair is positive when both inquiries are in one incident."""
    from collections import Counter

    def pairs(counts: Iterable[int]) -> int:
        return sum(n * (n - 1) // 2 for n in counts)

    true_labels = [t if t is not None else f"\0single{i}" for i, t in enumerate(truth)]
    both = pairs(Counter(zip(true_labels, predicted, strict=True)).values())
    true_pairs = pairs(Counter(true_labels).values())
    pred_pairs = pairs(Counter(predicted).values())
    precision = both / pred_pairs if pred_pairs else 1.0
    recall = both / true_pairs if true_pairs else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


# -- MinHash and LSH bands, as datasketch 2.0 computes them ----------------------------------
# (its default scheme "affine32", seed 1, and MinHashLSH's choice of bands; the same numbers,
# tests/test_incidents.py compares them with datasketch's own). Not datasketch itself:
# importing it imports scipy (for the bands' integrals), about 44 MB of a process's memory.

_FMIX32 = (
    np.uint32(16),
    np.uint32(0x85EBCA6B),
    np.uint32(13),
    np.uint32(0xC2B2AE35),
    np.uint32(16),
)


def minhash_permutations(num_perm: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The affine permutations ``a * h + b`` (mod 2^32, ``a`` odd) of datasketch's
    ``MinHash(num_perm, seed)``."""
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return a, b


def minhash_signature(perm: tuple[np.ndarray, np.ndarray], hashes: list[int]) -> np.ndarray:
    """The MinHash signature (uint32 per permutation) of 32-bit feature hashes: each hash
    pre-mixed by the MurmurHash3 finalizer, then permuted; the least per permutation."""
    hv = np.array(hashes, dtype=np.uint32).reshape(-1, 1)
    s1, m1, s2, m2, s3 = _FMIX32
    hv = hv ^ (hv >> s1)
    hv = hv * m1
    hv = hv ^ (hv >> s2)
    hv = hv * m2
    hv = hv ^ (hv >> s3)
    a, b = perm
    phv = hv * a + b
    return np.minimum(np.full(len(a), np.uint32(0xFFFFFFFF), dtype=np.uint32), phv.min(axis=0))


def _simpson(lo: float, hi: float, steps: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Points and weights of Simpson's rule on [lo, hi] (the integrands are smooth)."""
    x = np.linspace(lo, hi, steps + 1)
    w = np.where(np.arange(steps + 1) % 2 == 1, 4.0, 2.0)
    w[0] = w[-1] = 1.0
    return x, w * (hi - lo) / steps / 3


@functools.cache
def lsh_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """Bands and rows per band that minimise the false positive and false negative
    probabilities, weighted equally (datasketch's ``MinHashLSH(threshold, num_perm)``)."""
    best, opt = float("inf"), (0, 0)
    below, wb = _simpson(0.0, threshold)
    above, wa = _simpson(threshold, 1.0)
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            fp = float(wb @ (1 - (1 - below ** float(r)) ** float(b)))
            fn = float(wa @ ((1 - above ** float(r)) ** float(b)))
            error = fp * 0.5 + fn * 0.5
            if error < best:
                best, opt = error, (b, r)
    if opt[0] < 2:  # as datasketch refuses it
        raise ValueError("The number of bands are too small (b < 2)")
    return opt
