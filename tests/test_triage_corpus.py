"""The triage corpus: well-formed, with provenance, and a held-back split that has not moved
since it was fixed (see tests/data/triage/README.md)."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bridge.triage.classify import NoiseReason, _compact_tokenizer, normalise
from schemas.vocab import Category

CORPUS = Path(__file__).parent / "data" / "triage"
# Recorded when the split was made, before any training; never update it to make a test pass.
HELDBACK_SHA256 = "1a47a7eaf6d236d704be2801a3ce9d0e8fc01a91615fddd15ec3f0c7ceb0e5cf"


def load(name: str) -> list[dict[str, object]]:
    lines = (CORPUS / name).read_text("utf-8").splitlines()
    return [json.loads(line) for line in lines if line]


def test_heldback_split_is_the_one_fixed_before_training() -> None:
    manifest = json.loads((CORPUS / "MANIFEST.json").read_text("utf-8"))
    for name, entry in manifest["files"].items():
        digest = hashlib.sha256((CORPUS / name).read_bytes()).hexdigest()
        assert digest == entry["sha256"], f"{name} changed; its hash is in MANIFEST.json"
        assert len(load(name)) == entry["items"]
    assert manifest["files"]["heldback.jsonl"]["sha256"] == HELDBACK_SHA256


def test_items_are_well_formed_with_provenance() -> None:
    for name in ("train.jsonl", "heldback.jsonl"):
        for item in load(name):
            assert set(item) == {"text", "category", "noise", "source"}, item
            Category(str(item["category"]))
            assert item["noise"] is None or item["noise"] in NoiseReason.ALL
            if item["noise"]:
                assert item["category"] == "other"
            assert isinstance(item["source"], str) and item["source"]


def test_corpus_is_large_varied_and_the_splits_do_not_overlap() -> None:
    train, heldback = load("train.jsonl"), load("heldback.jsonl")
    handwritten = [i for i in train + heldback if str(i["source"]).startswith("handwritten-")]
    assert len(handwritten) >= 1500
    texts = [str(i["text"]) for i in train + heldback]
    assert len(set(texts)) == len(texts), "duplicate texts"
    # whole sittings are held back: no batch is on both sides
    assert not {i["source"] for i in train} & {i["source"] for i in heldback}
    for split in (train, heldback):
        real = Counter(i["category"] for i in split if i["noise"] is None)
        assert all(real[c.value] >= 20 for c in Category), real
        assert sum(1 for i in split if i["noise"]) >= 20
    complaints = [str(i["text"]) for i in train + heldback if i["category"] == "complaint"]
    without_the_word = [t for t in complaints if "投诉" not in t]
    assert len(without_the_word) / len(complaints) > 0.9
    for split in (train, heldback):
        traditional = [i for i in split if str(i["source"]).startswith("handwritten-traditional")]
        assert len(traditional) >= 20


def _chinese_lines() -> list[str]:
    """Every line of tests/data with a Chinese character (5,069 when this was written)."""
    lines: list[str] = []
    for path in sorted(CORPUS.parent.rglob("*")):
        if path.is_file() and path.suffix in {".jsonl", ".txt", ".md", ".py"}:
            text = path.read_text("utf-8")
            lines += [line for line in text.splitlines() if re.search("[\u4e00-\u9fff]", line)]
    return lines


def test_the_trie_prefix_dictionary_segments_exactly_as_jieba_does(tmp_path: Path) -> None:
    """Triage's tokenizer keeps jieba's prefix dictionary in a trie (3 MB instead of 44-59 MB)
    and builds jieba's DAG and route from it; every cut must be jieba's own, on the raw and the
    normalised lines, in each mode, with and without the HMM."""
    import jieba

    lines = _chinese_lines()
    assert len(lines) > 5000
    texts = lines + [normalise(line) for line in lines]
    theirs = jieba.Tokenizer()
    theirs.tmp_dir = str(tmp_path)
    ours = _compact_tokenizer()  # built from jieba's dictionary file: no cache in tmp_path yet
    ours.tmp_dir = str(tmp_path)
    # the same dictionary: every word and prefix with jieba's count, and jieba's total
    ours.initialize()
    theirs.initialize()
    assert len(ours.FREQ) == len(theirs.FREQ) > 400_000
    assert all(ours.FREQ.get(key) == count for key, count in theirs.FREQ.items())
    assert ours.total == theirs.total
    cuts: dict[str, Callable[[Any, str], list[Any]]] = {
        # what triage calls: lcut without the HMM (features, incidents, survey answers) and
        # tokenize (keyword matching), on the raw lines and as the model sees them
        "precise, no HMM": lambda t, s: t.lcut(s, HMM=False),
        "tokenize": lambda t, s: list(t.tokenize(s)),
        # jieba's other paths through the dictionary: the HMM's, full mode's, search mode's
        "precise, HMM": lambda t, s: t.lcut(s),
        "full": lambda t, s: t.lcut(s, cut_all=True),
        "search, no HMM": lambda t, s: t.lcut_for_search(s, HMM=False),
    }
    for mode, cut in cuts.items():
        on = texts if mode in ("precise, no HMM", "tokenize") else lines
        differ = [s for s in on if cut(ours, s) != cut(theirs, s)]
        assert not differ, (mode, len(differ), differ[:3])
    # the cache written on the way is read back the same
    again = _compact_tokenizer()
    again.tmp_dir = str(tmp_path)
    assert [again.lcut(s, HMM=False) for s in lines] == [theirs.lcut(s, HMM=False) for s in lines]
    assert again.FREQ.get("举报") == theirs.FREQ["举报"] > 0
    assert "举" in again.FREQ and again.FREQ["举"] == theirs.FREQ["举"]
    assert again.FREQ.get("\ud800") is None and "\ud800" not in again.FREQ
