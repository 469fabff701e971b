"""The triage corpus: well-formed, with provenance, and a held-back split that has not moved
since it was fixed (see tests/data/triage/README.md)."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

from bridge.triage.classify import NoiseReason
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
