"""bench/top.py stays runnable: at a tiny size, as a subprocess; it checks that the
figures are written and well formed, never how fast anything is."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_top_bench_measures_every_configuration(tmp_path: Path) -> None:
    out = tmp_path / "top.json"
    done = subprocess.run(
        [sys.executable, "bench/top.py", "--rounds", "1", "--window", "0.3", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "calls/s (median)" in done.stdout
    configs = json.loads(out.read_text())["configs"]
    assert set(configs) == {"unwatched", "top 1s", "top 0.2s"}
    assert all(c["median"] > 0 for c in configs.values())
    assert configs["unwatched"]["requests"] == 0 and configs["top 0.2s"]["requests"] >= 1
