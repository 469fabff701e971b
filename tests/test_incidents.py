"""Issue 24, the engine: near-duplicate inquiries become one incident (bridge/triage/incidents.py),
measured on the hand-written corpus in tests/data/incidents/ (split into tune and held-back parts
before the engine was written) with ``govbridge incidents eval``; surges as pure logic."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bridge.cli.incidents import evaluate, read_inquiries
from bridge.cli.main import main
from bridge.triage.incidents import (
    IncidentConfig,
    IncidentIndex,
    SurgeDetector,
    pairwise_scores,
    places_of,
)

DATA = Path(__file__).parent / "data" / "incidents"
T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


def scores(name: str) -> tuple[float, float, float]:
    ev = evaluate(read_inquiries(DATA / name))
    p, r, f = pairwise_scores([row.incident for row in ev.rows], ev.predicted)
    print(f"{name}: pairwise precision {p:.3f} recall {r:.3f} f1 {f:.3f}")
    return p, r, f


def test_corpus_is_what_the_issue_asks() -> None:
    rows = read_inquiries(DATA / "tune.jsonl") + read_inquiries(DATA / "heldback.jsonl")
    incidents = {r.incident for r in rows if r.incident is not None}
    assert len(rows) >= 1000
    assert len(incidents) >= 100
    assert sum(1 for r in rows if r.incident is None) >= 300
    held = {r.incident for r in read_inquiries(DATA / "heldback.jsonl") if r.incident}
    assert held and not held & {r.incident for r in read_inquiries(DATA / "tune.jsonl")}


def test_tune_part() -> None:
    precision, recall, _ = scores("tune.jsonl")  # 0.970 / 0.961 at commit 4102e99
    assert precision >= 0.96
    assert recall >= 0.95


def test_held_back_part_meets_the_issue() -> None:
    """Issue 24's floors on text the engine was not tuned on: pairwise precision >= 0.95 and
    recall >= 0.85 (0.961 / 0.856 at commit 4102e99, 2026-12-07; docs/reliability.md)."""
    precision, recall, _ = scores("heldback.jsonl")
    assert precision >= 0.95
    assert recall >= 0.85


# -- the command -------------------------------------------------------------------------------


def test_eval_command_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [
        ("解放路128号门口水管爆了，水冲得老高", "burst", 0),
        ("解放路128号门口水管爆了，路上全是水，赶紧来关阀门", "burst", 10),
        ("解放路128號水管爆裂，水一直往外冒", "burst", 20),
        ("请问水费可以在手机上交吗", None, 30),
    ]
    path = tmp_path / "inquiries.jsonl"
    path.write_text(
        "\n".join(
            json.dumps(
                {
                    "text": text,
                    "incident": label,
                    "department": "water",
                    "created_at": (T0 + timedelta(minutes=m)).isoformat(),
                },
                ensure_ascii=False,
            )
            for text, label, m in rows
        )
        + "\n",
        encoding="utf-8",
    )
    assert main(["incidents", "eval", str(path), "--errors"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "inquiries 4: 1 labelled incidents, 1 singletons"
    assert "wrongly split: 0 of 1 incidents" in out
    assert "wrongly merged: 0 incidents join inquiries of different incidents or singletons" in out
    assert out[-1] == "pairwise precision 1.000 recall 1.000 f1 1.000"


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "not an object"),
        ('{"text": "停水了", "incident": null, "department": "water"}', "missing created_at"),
        (
            '{"text": "停水了", "incident": 3, "department": "water",'
            ' "created_at": "2026-11-02T08:00:00+08:00"}',
            "incident must be a label (string) or null",
        ),
        (
            '{"text": "停水了", "incident": null, "department": "water",'
            ' "created_at": "yesterday"}',
            "created_at is not ISO 8601",
        ),
        (
            '{"text": "停水了", "incident": null, "department": "water",'
            ' "created_at": "2026-11-02T08:00:00"}',
            "created_at has no time zone",
        ),
        (
            '{"text": "停水了", "incident": null, "department": "water",'
            ' "created_at": "2026-11-02T08:00:00+08:00", "coords": [200, 1]}',
            "coords must be [latitude, longitude]",
        ),
    ],
)
def test_eval_refuses_a_bad_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, why: str
) -> None:
    good = (
        '{"text": "停水了", "incident": null, "department": "water",'
        ' "created_at": "2026-11-02T08:00:00+08:00"}'
    )
    path = tmp_path / "bad.jsonl"
    path.write_text(f"{good}\n\n{line}\n", encoding="utf-8")
    assert main(["incidents", "eval", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:3: {why}" in err


def test_eval_refuses_an_empty_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("\n", encoding="utf-8")
    assert main(["incidents", "eval", str(path)]) == 2
    assert f"{path}: no inquiries" in capsys.readouterr().err


# -- the index ---------------------------------------------------------------------------------


def test_paraphrase_typo_and_traditional_join_one_incident() -> None:
    index = IncidentIndex()
    first = index.add("1", "解放路128号门口水管爆了！水冲起一米多高", "water", T0)
    assert (
        index.add("2", "解放路128號門口水管爆裂，水一直往外冒", "water", T0 + timedelta(minutes=5))
        == first
    )
    assert (
        index.add(
            "3",
            "解放路128号附近爆管，早上上班鞋全湿了，水管爆了没人管",
            "water",
            T0 + timedelta(minutes=9),
        )
        == first
    )


# Hand-written for the synonym and typo folding (not taken from either part of the corpus):
# each group is one matter told in words that share little, each pair a different matter.
SAME_MATTER_OTHER_WORDS = [
    (
        "water",
        ["和平路66号水管破裂，地上全是水", "和平路66号爆管了", "和平路66號水管炸了，流了一地"],
    ),
    ("traffic", ["光明路口的信号灯坏了", "光明路口红绿灯不亮了，车乱开", "光明路口交通灯故障"]),
    ("traffic", ["青年路小学门口违停严重", "青年路小学门口乱停车，接孩子都挤不进去"]),
    ("market", ["金色广场那家烧烤店吃完拉肚子", "金色广场烧烤店吃了以后上吐下泻"]),
    ("city", ["红星小区的路等坏了，晚上黑漆漆", "红星小区路灯不亮，走路摔了一跤"]),
    ("housing", ["迎宾花园5栋电梯坏了两天", "迎宾花园5栋电悌停运，老人下不了楼"]),
    ("water", ["胜利街40号门口水管爆裂", "我在胜利街42号开店，隔壁水管破了，水往店里灌"]),
    ("city", ["文化路18号的窨井盖丢了，差点有人掉下去", "文化路18号井盖没了，很危险"]),
    ("city", ["锦绣花园地下车库内涝，车都泡了", "锦绣花园地下车库积水半米深"]),
    ("water", ["朝阳路的自来水浑浊，烧开了也有沉淀", "朝阳路自来水发黄，不敢给孩子喝"]),
]
DIFFERENT_MATTERS_ONE_PLACE = [
    ("city", "红星小区的路灯不亮", "红星小区的垃圾没人清运，臭得很"),
    ("traffic", "光明路口红绿灯坏了", "光明路口违停太多，公交进不了站"),
    ("water", "和平路66号水管破裂，地上全是水", "和平路66号的水表走得太快，水费翻倍"),
]


@pytest.mark.parametrize(("department", "texts"), SAME_MATTER_OTHER_WORDS)
def test_synonyms_and_typos_join_one_incident(department: str, texts: list[str]) -> None:
    index = IncidentIndex()
    got = [
        index.add(str(i), text, department, T0 + timedelta(minutes=7 * i))
        for i, text in enumerate(texts)
    ]
    assert got == [got[0]] * len(texts), texts


@pytest.mark.parametrize(("department", "first", "second"), DIFFERENT_MATTERS_ONE_PLACE)
def test_folding_does_not_join_different_matters(department: str, first: str, second: str) -> None:
    index = IncidentIndex()
    a = index.add("1", first, department, T0)
    b = index.add("2", second, department, T0 + timedelta(minutes=10))
    assert a != b


def test_two_problems_on_one_street_are_two_incidents() -> None:
    index = IncidentIndex()
    a = index.add("1", "幸福路12号那家饭店把人行道全占了，摆满了桌子", "city", T0)
    b = index.add("2", "幸福路12号旁边的垃圾桶被人烧坏了", "city", T0 + timedelta(hours=1))
    c = index.add(
        "3", "幸福路12号饭店占用人行道摆桌子，行人只能走机动车道", "city", T0 + timedelta(hours=2)
    )
    assert a != b
    assert c == a


def test_two_places_on_one_street_are_two_incidents() -> None:
    index = IncidentIndex()
    a = index.add("1", "中山路200号附近路灯坏了，晚上一片漆黑", "city", T0)
    b = index.add("2", "中山路50号附近路灯坏了，晚上一片漆黑", "city", T0 + timedelta(minutes=30))
    c = index.add("3", "人民路步行街北口水管爆了", "water", T0)
    d = index.add("4", "人民路汽车站门口水管爆了", "water", T0 + timedelta(minutes=10))
    assert a != b
    assert c != d
    assert places_of("中山路200号路灯").conflicts(places_of("中山路50号路灯"), 500)


def test_same_problem_in_two_places_is_two_incidents() -> None:
    index = IncidentIndex()
    a = index.add("1", "翠湖苑小区突然停水了，没有任何通知", "water", T0)
    b = index.add("2", "丽景湾小区突然停水了，没有任何通知", "water", T0 + timedelta(minutes=20))
    c = index.add("3", "学府路一带停电了", "power", T0)
    d = index.add("4", "丽景湾一带停电了", "power", T0 + timedelta(minutes=20))
    assert a != b
    assert c != d


def test_departments_are_kept_apart() -> None:
    index = IncidentIndex()
    a = index.add("1", "胜利街大树倒了，把电线压断了", "city", T0)
    b = index.add("2", "胜利街大树倒了，把电线压断了", "power", T0 + timedelta(minutes=1))
    assert a != b


def test_coordinates_decide_where_given() -> None:
    index = IncidentIndex()
    a = index.add("1", "这里水管爆了，水冒得老高", "water", T0, coords=(31.2301, 121.4737))
    near = index.add("2", "这里水管爆了，水冒得很高", "water", T0, coords=(31.2303, 121.4735))
    far = index.add("3", "这里水管爆了，水冒得老高", "water", T0, coords=(31.2411, 121.4901))
    assert near == a
    assert far != a


def test_window_expiry_and_recurrence() -> None:
    index = IncidentIndex(IncidentConfig(window=timedelta(hours=72)))
    a = index.add("1", "丽景湾小区停电了，黑灯瞎火的", "power", T0)
    assert index.add("2", "丽景湾停电了，什么时候恢复", "power", T0 + timedelta(hours=1)) == a
    later = T0 + timedelta(days=14)
    again = index.add("3", "丽景湾又停电了，黑灯瞎火的", "power", later)
    assert again == "3"  # a recurrence weeks later is a new incident
    assert len(index) == 1  # the first two expired
    assert index.incident_of("1") is None
    assert index.incident_of("3") == "3"


def test_size_is_bounded() -> None:
    index = IncidentIndex(IncidentConfig(max_entries=5))
    for i in range(12):
        index.add(
            str(i), f"第{i}个问题：光明街{i}号门口的井盖坏了", "city", T0 + timedelta(minutes=i)
        )
    assert len(index) == 5
    assert index.incident_of("0") is None
    assert index.incident_of("11") is not None


def test_lsh_buckets_are_bounded_and_a_near_duplicate_is_still_found() -> None:
    """A bucket keeps only the newest ``lsh_bucket`` inquiries, so complaints sharing common
    words cannot make every query return the whole window; a report that shares many bands
    with an older one still finds it through the bands not flooded."""
    index = IncidentIndex(IncidentConfig(lsh_bucket=4))
    first = index.add("burst", "自来水管爆了，水冲起一米多高，马路变成河", "water", T0)
    for i in range(60):
        index.add(
            f"other{i}",
            f"家里的水龙头坏了第{i}天，水费太贵了，请问怎么办",
            "water",
            T0 + timedelta(minutes=i + 1),
        )
    buckets = [len(b) for table in index._bands["water"] for b in table.values()]
    assert max(buckets) <= 4
    later = index.add(
        "again", "水管爆了，水冲起一米多高，马路变成河了", "water", T0 + timedelta(hours=2)
    )
    assert later == first


def test_a_report_like_two_incidents_joins_them() -> None:
    index = IncidentIndex()
    a = index.add("1", "建设路朝阳路口水管爆了，水漫过马路", "water", T0)
    b = index.add("2", "建设路朝阳路口停水了，家里没水做饭", "water", T0 + timedelta(minutes=5))
    index.add("3", "建设路朝阳路口水管爆了，家里停水没水做饭", "water", T0 + timedelta(minutes=9))
    assert index.resolve(a) == index.resolve(b) == index.incident_of("2")


# -- surges ------------------------------------------------------------------------------------


def test_surge_at_three_within_a_day() -> None:
    surges = SurgeDetector()  # 3 in 24 hours
    assert surges.observe("i1", "water", "complaint", T0, ["解放路 128号"]) is None
    assert surges.observe("i1", "water", "complaint", T0 + timedelta(minutes=20)) is None
    surge = surges.observe("i1", "water", "complaint", T0 + timedelta(minutes=50), ["解放路"])
    assert surge is not None
    assert (surge.incident, surge.department, surge.category, surge.size) == (
        "i1",
        "water",
        "complaint",
        3,
    )
    assert surge.growth_per_hour == 3.0
    assert surge.places == ["解放路", "解放路 128号"]
    # raised once; still listed while it lasts
    assert surges.observe("i1", "water", "complaint", T0 + timedelta(hours=2)) is None
    assert [s.size for s in surges.surges(T0 + timedelta(hours=3))] == [4]
    assert surges.surges(T0 + timedelta(days=2)) == []


def test_no_surge_when_spread_out_or_split_by_category() -> None:
    surges = SurgeDetector(threshold=3, window=timedelta(hours=24))
    for h in (0, 13, 26, 39):
        assert surges.observe("i2", "city", "complaint", T0 + timedelta(hours=h)) is None
    assert surges.observe("i3", "city", "complaint", T0) is None
    assert surges.observe("i3", "city", "consultation", T0) is None
    assert surges.observe("i3", "city", "help", T0) is None


def test_pairwise_scores() -> None:
    truth = ["a", "a", "a", None, "b", "b"]
    assert pairwise_scores(truth, ["x", "x", "x", "y", "z", "z"]) == (1.0, 1.0, 1.0)
    p, r, _ = pairwise_scores(truth, ["x", "x", "y", "y", "z", "z"])
    assert (p, r) == (2 / 3, 2 / 4)


def test_bench_stage_incidents_reports_cost_and_memory() -> None:
    """``govbridge bench --stage incidents`` run small (the recorded figures use 100,000)."""
    import subprocess
    import sys

    command = [sys.executable, "-m", "bridge.cli", "bench", "--stage", "incidents", "--json"]
    out = subprocess.run(
        [*command, "--in-window", "400", "--measure", "100"],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    report = json.loads(out.strip().splitlines()[-1])
    assert report["stage"] == "incidents"
    assert report["in_window"] == 400 and report["measured_adds"] == 100
    assert 0 < report["add_p50_ms"] <= report["add_p99_ms"] <= report["add_max_ms"]
    assert report["memory_mb"] >= 0


def test_a_street_lamp_is_not_a_street() -> None:
    places = places_of("红星小区路灯不亮，走路摔了一跤")
    assert places.streets == frozenset()
    assert places.sites == frozenset({"红星小区"})
    assert places_of("光明路口的路灯坏了").streets == frozenset({"光明路"})


def test_minhash_and_bands_are_datasketchs() -> None:
    """The index computes MinHash signatures and LSH bands itself (importing datasketch
    imports scipy, 44 MB of every triage process): the same numbers as datasketch 2.0's
    ``MinHash(num_perm)`` (scheme affine32, seed 1) and ``MinHashLSH(threshold, num_perm)``."""
    np = pytest.importorskip("numpy")
    datasketch = pytest.importorskip("datasketch")
    from bridge.triage.incidents import lsh_bands, minhash_permutations, minhash_signature

    for threshold in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9):
        for num_perm in (32, 64, 128):
            lsh = datasketch.MinHashLSH(threshold=threshold, num_perm=num_perm)
            assert lsh_bands(threshold, num_perm) == (lsh.b, lsh.r)
    rng = np.random.default_rng(7)
    for num_perm in (64, 128):
        ref = datasketch.MinHash(num_perm=num_perm)
        perm = minhash_permutations(num_perm)
        assert (ref.permutations[0] == perm[0]).all() and (ref.permutations[1] == perm[1]).all()
        for _ in range(20):
            hashes = [int(h) for h in rng.integers(0, 2**32, int(rng.integers(1, 40)))]
            m = datasketch.MinHash(
                num_perm=num_perm, hashfunc=int, permutations=ref.permutations, scheme=ref.scheme
            )
            m.update_batch(hashes)
            assert (m.hashvalues == minhash_signature(perm, hashes)).all()
