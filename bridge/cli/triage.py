"""``govbridge triage train|eval|bench|export-corrections``: the classifier's life cycle.

- ``train``: fit the model on the training side (and exported corrections) and write the file
  the package ships (or ``--out``); with ``--cv`` first print source-grouped 5-fold CV.
- ``eval``: the report on the held-back split (accuracy, complaint recall, noise precision,
  confusion), the classification latency, and with ``--cv`` cross-validation on the rest.
- ``bench``: classification latency percentiles (noise check + classify per inquiry).
- ``export-corrections``: officials' checks of held inquiries as training items (JSONL).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bridge.cli.load import load
from bridge.triage.classify import Classifier, ModelError, load_model


def _classifier(args: argparse.Namespace) -> Classifier:
    try:
        return Classifier(load_model(args.model) if args.model else None)
    except ModelError as exc:
        raise SystemExit(f"govbridge triage: {exc}") from None


def _need(path: Path) -> Path:
    if not path.is_file():
        raise SystemExit(
            f"govbridge triage: {path}: no such file (run from a source checkout or give --data)"
        )
    return path


def cmd_train(args: argparse.Namespace) -> int:
    from bridge.triage import train as tt

    paths = [_need(Path(p)) for p in (args.data or [tt.DEFAULT_TRAIN])]
    paths += [_need(Path(p)) for p in args.extra]
    items = tt.load_items(paths)
    params = tt.TrainParams(
        C=args.C,
        class_weight=None if args.class_weight == "none" else args.class_weight,
        min_df=args.min_df,
    )
    try:
        if args.cv:
            print(tt.format_cv(tt.cross_validate(items, params)))
        model = tt.fit(items, params)
    except tt.TrainingUnavailable as exc:
        print(f"govbridge triage train: {exc}", file=sys.stderr)
        return 2
    meta = dict(model.meta)
    meta["data"] = {p.name: tt.file_digest(p) for p in paths}
    model = type(model)(model.classes, model.intercept, model.idf, model.coef, meta)
    out = Path(args.out)
    model.save(out)
    print(
        f"trained on {meta['trained_on_items']} inquiries from {len(paths)} file(s); "
        f"{len(model.idf)} features; wrote {out} ({out.stat().st_size // 1024} KiB)"
    )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from bridge.triage import train as tt
    from bridge.triage.classify import evaluate

    clf = _classifier(args)
    data = _need(Path(args.data or tt.DEFAULT_HELDBACK))
    report = evaluate(data, clf)
    print(f"{data} (model: {args.model or 'shipped'})")
    print(report.format(show_errors=args.errors, review_below=args.review_below))
    texts = [str(i["text"]) for i in tt.load_items([data])]
    print()
    print(tt.bench(texts, clf, repeat=3).format())
    if args.cv:
        params = tt.TrainParams(**clf.model.meta.get("params", {}))
        train = _need(Path(args.train))
        try:
            print(tt.format_cv(tt.cross_validate(tt.load_items([train]), params)) + f" on {train}")
        except tt.TrainingUnavailable as exc:
            print(f"cross-validation skipped: {exc}", file=sys.stderr)
            return 2
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from bridge.triage import train as tt

    data = _need(Path(args.data or tt.DEFAULT_HELDBACK))
    texts = [str(i["text"]) for i in tt.load_items([data])]
    print(tt.bench(texts, _classifier(args), repeat=args.repeat).format())
    return 0


def cmd_export_corrections(args: argparse.Namespace) -> int:
    from bridge.security.keyring import Keyring
    from bridge.store import open_store
    from bridge.triage.review import ReviewQueue

    cfg = load(args.config)

    async def export() -> list[dict[str, Any]]:
        store = await open_store(cfg.store.url, Keyring("audit", cfg.audit.keys))
        try:
            return await ReviewQueue(store).training_items(
                include_confirmed=not args.corrected_only
            )
        finally:
            await store.close()

    items = asyncio.run(export())
    lines = "".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items)
    if args.out == "-":
        sys.stdout.write(lines)
    else:
        Path(args.out).write_text(lines, "utf-8")
        print(f"{len(items)} checked inquiries written to {args.out}", file=sys.stderr)
    return 0


def register(sub: Any) -> None:
    from bridge.triage import train as tt

    p = sub.add_parser("triage", help="train, evaluate and benchmark the inquiry classifier")
    tsub = p.add_subparsers(dest="triage_command", required=True, metavar="ACTION")

    train = tsub.add_parser("train", help="train the model (needs scikit-learn)")
    train.add_argument(
        "--data", action="append", help=f"labelled JSONL (default {tt.DEFAULT_TRAIN})"
    )
    train.add_argument(
        "--extra",
        action="append",
        default=[],
        help="more labelled JSONL, e.g. exported corrections",
    )
    train.add_argument("--out", default=str(tt.DEFAULT_OUT), help="model file (.json or .json.gz)")
    train.add_argument("--C", type=float, default=tt.TrainParams.C)
    train.add_argument(
        "--class-weight", default=tt.TrainParams.class_weight, choices=["balanced", "none"]
    )
    train.add_argument("--min-df", type=int, default=tt.TrainParams.min_df)
    train.add_argument("--cv", action="store_true", help="print 5-fold cross-validation first")
    train.set_defaults(func=cmd_train)

    ev = tsub.add_parser("eval", help="report on the held-back split, with timing")
    ev.add_argument("--data", help=f"labelled JSONL (default {tt.DEFAULT_HELDBACK})")
    ev.add_argument("--model", help="model file (default: the shipped one)")
    ev.add_argument("--errors", action="store_true", help="list misclassified inquiries")
    ev.add_argument(
        "--review-below", type=float, default=0.5, help="show the effect of this threshold"
    )
    ev.add_argument("--cv", action="store_true", help="also 5-fold cross-validation on --train")
    ev.add_argument("--train", default=str(tt.DEFAULT_TRAIN))
    ev.set_defaults(func=cmd_eval)

    bench = tsub.add_parser("bench", help="classification latency percentiles")
    bench.add_argument("--data", help=f"texts to classify (default {tt.DEFAULT_HELDBACK})")
    bench.add_argument("--model")
    bench.add_argument("--repeat", type=int, default=20)
    bench.set_defaults(func=cmd_bench)

    exp = tsub.add_parser(
        "export-corrections", help="officials' checks of held inquiries as training JSONL"
    )
    exp.add_argument("-c", "--config", default="govbridge.toml")
    exp.add_argument("--out", default="-", help="file, or - for stdout")
    exp.add_argument(
        "--corrected-only", action="store_true", help="only where the official changed the category"
    )
    exp.set_defaults(func=cmd_export_corrections)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="govbridge")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["triage", *(sys.argv[1:] if argv is None else argv)])
    code: int = args.func(args)
    return code
