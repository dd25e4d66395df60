"""Make the helper modules next to the tests importable (pytest runs with
``--import-mode=importlib``, which does not put ``tests/`` on ``sys.path``)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

#: ``SUPTRACE_TEST_LOOP=uvloop`` runs the asyncio tests, and every node a test starts in this
#: process (``suptrace.run`` goes through ``asyncio.run``), on uvloop's event loop.
TEST_LOOP = os.environ.get("SUPTRACE_TEST_LOOP", "asyncio") or "asyncio"


def pytest_configure(config: pytest.Config) -> None:
    if TEST_LOOP == "asyncio":
        return
    if TEST_LOOP != "uvloop":
        raise pytest.UsageError(
            f"SUPTRACE_TEST_LOOP={TEST_LOOP!r} is not an event loop the tests know: "
            "use 'asyncio' (the default) or 'uvloop'"
        )
    try:
        import uvloop
    except ImportError as exc:
        raise pytest.UsageError(
            f"SUPTRACE_TEST_LOOP=uvloop but uvloop cannot be imported ({exc}): "
            "install the dev extra (pip install -e '.[dev]')"
        ) from exc
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


@pytest.fixture
def grpc_receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A real OTLP gRPC receiver on loopback, with the ``OTEL_*`` variables pointing at it."""
    from otlp_receivers import GrpcReceiver, otlp_env

    receiver = GrpcReceiver()
    with otlp_env(monkeypatch, receiver, "grpc"):
        yield receiver
    receiver.close()


@pytest.fixture
def http_receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A real OTLP HTTP receiver on loopback, with the ``OTEL_*`` variables pointing at it."""
    from otlp_receivers import HttpReceiver, otlp_env

    receiver = HttpReceiver()
    with otlp_env(monkeypatch, receiver, "http/protobuf"):
        yield receiver
    receiver.close()
