"""The runtime ships alone: the ``govbridge`` wheel holds what a department runs (bridge/,
adapters/, schemas/ and their data files) and none of the simulators, the demo or the benchmark,
which the ``govbridge-tools`` distribution (tools/) carries and registers as commands."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# slow (builds two wheels, about 10 s): tests/conftest.py SLOW_SUITES


def wheel(source: Path, out: Path) -> zipfile.ZipFile:
    """Build ``source``'s wheel from a copy of it (a build leaves build/ and egg-info behind)."""
    copy = out / "src"
    skip = shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", "__pycache__", "tests")
    shutil.copytree(source, copy, ignore=skip)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(copy), "--no-deps", "--quiet", "-w", str(out)],
        check=True,
        cwd=out,
    )
    (built,) = out.glob("*.whl")
    return zipfile.ZipFile(built)


def test_the_runtime_wheel_holds_no_simulator_demo_or_benchmark(tmp_path: Path) -> None:
    names = wheel(ROOT, tmp_path).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"bridge", "adapters", "schemas"}
    assert not [n for n in names if any(w in n for w in ("simulat", "demo", "bench", "kit.py"))]
    # what the daemon needs at run time is in it: the model, the console, every role
    for needed in (
        "bridge/triage/data/triage_model.json.gz",
        "bridge/web/static/console.js",
        *(f"bridge/{role}/role.py" for role in ("ingest", "triage", "ticketing", "sync")),
        *(f"bridge/{role}/role.py" for role in ("reply", "sla")),
    ):
        assert needed in names
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = wheel_text(tmp_path, entry_points)
    assert "govbridge = bridge.cli.main:main" in text
    assert "govbridge.commands" not in text


def test_the_tools_wheel_adds_demo_simulate_and_bench(tmp_path: Path) -> None:
    names = wheel(ROOT / "tools", tmp_path).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"govbridge_tools"}
    assert "govbridge_tools/simulators/weibo.py" in names
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = wheel_text(tmp_path, entry_points)
    for command in ("demo", "simulate", "bench"):
        assert f"{command} = govbridge_tools." in text


def wheel_text(out: Path, member: str) -> str:
    (built,) = out.glob("*.whl")
    return zipfile.ZipFile(built).read(member).decode()
