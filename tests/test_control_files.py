"""A stopping node removes its socket and its ``<node>.json`` sidecar, each on its own.

asyncio 3.13 unlinks a Unix server's socket file in ``server.close()``; the node must still
remove its sidecar then (and on every version when the socket is gone for another reason),
and must leave alone a sidecar that another node has written since.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import suptrace


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "run"
    monkeypatch.setenv("SUPTRACE_RUNTIME_DIR", str(path))
    return path


async def test_the_sidecar_goes_even_when_the_socket_is_already_gone(run_dir: Path) -> None:
    async with suptrace.Node("gone", log_reports=False) as node:
        assert node.control is not None and node.control.path is not None
        assert (run_dir / "gone.json").exists()
        node.control.path.unlink()  # what asyncio 3.13's server.close() does before us
    assert sorted(os.listdir(run_dir)) == []


async def test_a_normal_stop_leaves_nothing_behind(run_dir: Path) -> None:
    async with suptrace.Node("plain", log_reports=False):
        assert sorted(os.listdir(run_dir)) == ["plain.json", "plain.sock"]
    assert sorted(os.listdir(run_dir)) == []


async def test_a_sidecar_another_node_wrote_since_is_left_alone(run_dir: Path) -> None:
    async with suptrace.Node("taken", log_reports=False) as node:
        assert node.control is not None and node.control.path is not None
        node.control.path.unlink()
        (run_dir / "taken.json").write_text(json.dumps({"node": "taken", "pid": os.getpid() + 1}))
    assert sorted(os.listdir(run_dir)) == ["taken.json"]
