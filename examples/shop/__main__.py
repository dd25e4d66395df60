"""``python -m examples.shop [--port N] [--quiet]``: the shop service, until
SIGTERM or Ctrl-C stops it in order.

Talk to it with ``nc 127.0.0.1 N``: ``STOCK apple``, ``BUY apple 2``,
``STATUS 1``, ``STATS``. Watch it with ``suptrace tree`` or
``suptrace attach shop.poller`` from another terminal.
"""

from __future__ import annotations

import sys

import suptrace
from examples.shop import service


async def main(port: int) -> None:
    await service.start(port=port)
    print("ready", flush=True)
    await suptrace.receive(lambda _m: False)  # serve until the node is stopped


if __name__ == "__main__":
    port = int(sys.argv[sys.argv.index("--port") + 1]) if "--port" in sys.argv else 8040
    if "--quiet" in sys.argv:
        from loguru import logger

        logger.remove()
        logger.add(sys.stderr, level="WARNING")
    suptrace.run(main, port, node="shop")
