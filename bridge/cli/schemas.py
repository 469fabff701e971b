"""``govbridge schemas --out DIR``: the JSON Schema of every message and of the config."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    schemas = sub.add_parser("schemas", help="export the JSON Schema of every message")
    schemas.add_argument("--out", required=True)
    schemas.set_defaults(func=cmd_schemas)


def cmd_schemas(args: argparse.Namespace) -> int:
    from pydantic import BaseModel

    from schemas.config import GovbridgeConfig
    from schemas.messages import MESSAGE_MODELS

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    models: dict[str, type[BaseModel]] = {**MESSAGE_MODELS, "GovbridgeConfig": GovbridgeConfig}
    for name, model in models.items():
        path = out / f"{name}.schema.json"
        path.write_text(json.dumps(model.model_json_schema(), ensure_ascii=False, indent=2))
        print(path)
    return 0
