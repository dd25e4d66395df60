"""Make the helper modules next to the tests importable (pytest runs with
``--import-mode=importlib``, which does not put ``tests/`` on ``sys.path``)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


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
