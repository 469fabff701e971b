"""Training and measuring the triage model (``govbridge triage train|eval|bench``).

Training needs scikit-learn (``pip install 'govbridge[train]'``, part of ``[dev]``); the bridge
itself only loads the exported JSON (:mod:`bridge.triage.classify`). Cross-validation holds out
whole
sources (a handwritten batch, the earlier labelled set) per fold, the way the held-back split
was made, so near-paraphrases written in one sitting never sit on both sides of a fold.
"""

from __future__ import annotations

import hashlib
import os
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bridge.triage.classify import (
    Classifier,
    LinearModel,
    Report,
    detect_noise,
    evaluate,
    features,
    read_labelled,
    warm_up,
)
from schemas.vocab import Category

CORPUS_DIR = Path("tests/data/triage")
DEFAULT_TRAIN = CORPUS_DIR / "train.jsonl"
DEFAULT_HELDBACK = CORPUS_DIR / "heldback.jsonl"
DEFAULT_OUT = Path(__file__).parent / "data" / "triage_model.json.gz"


class TrainingUnavailable(RuntimeError):
    """scikit-learn is not installed."""


@dataclass(frozen=True)
class TrainParams:
    """Chosen by source-grouped 5-fold cross-validation on the training side only."""

    C: float = 10.0
    class_weight: str | None = "balanced"
    min_df: int = 2


def _sklearn() -> Any:
    try:
        import sklearn
    except ImportError:
        raise TrainingUnavailable(
            "training needs scikit-learn: pip install 'govbridge[train]'"
        ) from None
    return sklearn


def fit_sklearn(items: Sequence[Mapping[str, Any]], params: TrainParams = TrainParams()) -> Any:
    """The fitted scikit-learn pipeline (vectorizer, then logistic regression), trained on the
    real inquiries among ``items`` (noise is the rule detector's job)."""
    _sklearn()
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    real = [i for i in items if not i.get("noise")]
    pipeline = make_pipeline(
        TfidfVectorizer(
            analyzer=features, sublinear_tf=True, min_df=params.min_df, lowercase=False
        ),
        LogisticRegression(C=params.C, class_weight=params.class_weight, max_iter=5000),
    )
    pipeline.fit([str(i["text"]) for i in real], [Category(i["category"]).value for i in real])
    return pipeline


def export(pipeline: Any, params: TrainParams) -> LinearModel:
    """The pipeline as plain numbers (rounded to 6 decimals; see ``LinearModel``)."""
    sklearn = _sklearn()
    vectorizer, model = pipeline[0], pipeline[-1]
    names = vectorizer.get_feature_names_out()
    idf = {str(f): round(float(v), 6) for f, v in zip(names, vectorizer.idf_, strict=True)}
    coef = {
        str(f): tuple(round(float(v), 6) for v in model.coef_[:, j]) for j, f in enumerate(names)
    }
    return LinearModel(
        classes=tuple(Category(c) for c in model.classes_),
        intercept=tuple(round(float(v), 6) for v in model.intercept_),
        idf=idf,
        coef=coef,
        meta={
            "algorithm": "tf-idf (jieba words + char 1-3-grams, sublinear tf, l2) + multinomial"
            " logistic regression",
            "params": asdict(params),
            "scikit_learn": sklearn.__version__,
        },
    )


def fit(items: Sequence[Mapping[str, Any]], params: TrainParams = TrainParams()) -> LinearModel:
    """Train and export in one step."""
    model = export(fit_sklearn(items, params), params)
    meta = dict(model.meta)
    meta["trained_on_items"] = sum(1 for i in items if not i.get("noise"))
    return LinearModel(model.classes, model.intercept, model.idf, model.coef, meta)


def _source_group(item: Mapping[str, Any]) -> str:
    return str(item.get("source") or "unknown")


def cross_validate(
    items: Sequence[Mapping[str, Any]],
    params: TrainParams = TrainParams(),
    folds: int = 5,
    seed: int = 0,
) -> list[Report]:
    """One report per fold; each fold's model never saw the sources it is scored on."""
    _sklearn()
    from sklearn.model_selection import StratifiedGroupKFold

    labels = ["noise" if i.get("noise") else i["category"] for i in items]
    groups = [_source_group(i) for i in items]
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    reports = []
    for train_idx, test_idx in splitter.split(list(items), labels, groups):
        model = fit([items[i] for i in train_idx], params)
        reports.append(evaluate([items[i] for i in test_idx], Classifier(model)))
    return reports


def format_cv(reports: Sequence[Report]) -> str:
    def spread(values: list[float]) -> str:
        return f"{statistics.mean(values):.3f} ± {statistics.pstdev(values):.3f}"

    acc = [r.accuracy for r in reports]
    complaint = [r.recall(Category.COMPLAINT) for r in reports]
    noise_p = [r.noise_precision for r in reports]
    return (
        f"{len(reports)}-fold cross-validation (whole sources held out per fold): "
        f"accuracy {spread(acc)}, complaint recall {spread(complaint)}, "
        f"noise precision {spread(noise_p)}"
    )


def file_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass(frozen=True)
class Percentiles:
    p50_us: float
    p90_us: float
    p99_us: float
    max_us: float

    @classmethod
    def of(cls, samples_ns: list[int]) -> Percentiles:
        ordered = sorted(samples_ns)

        def pct(q: float) -> float:
            return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000

        return cls(pct(0.50), pct(0.90), pct(0.99), ordered[-1] / 1000)

    def format(self) -> str:
        return (
            f"p50 {self.p50_us / 1000:.3f} ms, p90 {self.p90_us / 1000:.3f} ms, "
            f"p99 {self.p99_us / 1000:.3f} ms, max {self.max_us / 1000:.3f} ms"
        )


@dataclass(frozen=True)
class Timing:
    """Per-inquiry latency: wall clock (what a message waits, including time the OS gave the
    core to other processes) and the thread's own CPU time (the cost of classifying)."""

    calls: int
    wall: Percentiles
    cpu: Percentiles
    load_average: float | None

    def format(self) -> str:
        load = f", load average {self.load_average:.2f}" if self.load_average is not None else ""
        return (
            f"classification latency over {self.calls} calls (noise check + classify, one "
            f"thread{load}):\n  wall clock {self.wall.format()}\n"
            f"  CPU time   {self.cpu.format()}"
        )


def bench(texts: Sequence[str], classifier: Classifier, repeat: int = 5) -> Timing:
    """Time what triage does per inquiry (noise check, then classification), after warm-up."""
    warm_up()
    for text in texts[:50]:
        detect_noise(text)
        classifier.classify(text)
    wall: list[int] = []
    cpu: list[int] = []
    clock, cpu_clock = time.perf_counter_ns, time.thread_time_ns
    for _ in range(repeat):
        for text in texts:
            start, start_cpu = clock(), cpu_clock()
            if detect_noise(text) is None:
                classifier.classify(text)
            cpu.append(cpu_clock() - start_cpu)
            wall.append(clock() - start)
    try:
        load: float | None = os.getloadavg()[0]
    except OSError:
        load = None
    return Timing(len(wall), Percentiles.of(wall), Percentiles.of(cpu), load)


def load_items(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for path in paths:
        items += read_labelled(path)
    return items
