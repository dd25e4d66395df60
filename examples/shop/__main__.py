"""``python -m examples.shop [--port N] [--quiet]``: the shop service, until
SIGTERM or Ctrl-C stops it in order.

Talk to it with ``nc 127.0.0.1 N``: ``STOCK apple``, ``BUY apple 2``,
``STATUS 1``, ``STATS``. Watch it with ``suptrace tree`` or
``suptrace attach shop.poller`` from another terminal.
"""

from __future__ import annotations

import argparse
import sys

import suptrace
from examples.shop import service


async def main(port: int) -> None:
    await service.start(port=port)
    print("ready", flush=True)
    await suptrace.receive(lambda _m: False)  # serve until the node is stopped


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0..65535 (0: any free one), got {port}")
    return port


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        prog="python -m examples.shop", description="The shop service, until SIGTERM or Ctrl-C."
    )
    parser.add_argument("--port", type=_port, default=8040, help="TCP port (default 8040)")
    parser.add_argument("--quiet", action="store_true", help="log warnings and errors only")
    args = parser.parse_args()
    port = args.port
    if args.quiet:
        from loguru import logger

        logger.remove()
        logger.add(sys.stderr, level="WARNING")
    suptrace.run(main, port, node="shop")
