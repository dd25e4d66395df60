"""The shop service.

Tree (started top to bottom, stopped bottom to top)::

    shop.sup (one_for_one)
    ├── shop.db          a slow database: every query takes DB_DELAY seconds
    ├── shop.importers   one_for_one supervisor
    │   ├── shop.importer.north   adds stock every IMPORT_EVERY seconds (send_after)
    │   └── shop.importer.south
    ├── shop.jobs        DynamicSupervisor: one temporary job per order (packing it)
    ├── shop.poller      counts pending orders every POLL_EVERY seconds (send_after)
    └── shop.front       TCP front end: asyncio.start_server inside the GenServer

The front end's connection handlers are plain asyncio tasks, not processes:
they `call` the database and even the front end itself (``STATS``), and start
jobs under the DynamicSupervisor. One command per line::

    STOCK <item>            -> <count>
    BUY <item> <qty>        -> ORDER <id> | SOLD OUT
    STATUS <id>             -> pending | packed | unknown
    STATS                   -> connections=<n> orders=<n> pending=<n>

Every server prints ``terminate <name> <reason>`` when it stops, so the
orderly shutdown on SIGTERM or Ctrl-C is visible: front end first, database last.
"""

from __future__ import annotations

import asyncio
from typing import Any

import suptrace
from suptrace import ChildSpec, DynamicSupervisor, GenServer, Pid, Supervisor

DB_DELAY = 0.02
IMPORT_EVERY = 0.5
POLL_EVERY = 0.5
PACK_TIME = 0.05


def say(text: str) -> None:
    print(text, flush=True)


class Stopping(GenServer):
    """A server that traps exits (so a shutdown runs ``terminate``) and says when it stops."""

    label = "shop server"

    async def init(self, *args: Any) -> None:
        suptrace.trap_exit(True)
        await self.setup(*args)

    async def setup(self, *args: Any) -> None:
        """State for the subclass (called from init)."""

    async def terminate(self, reason: Any) -> None:
        say(f"terminate {self._proc.name} {reason}")


class Database(Stopping):
    """Stock and orders; slow, as databases are."""

    async def setup(self) -> None:
        self.stock: dict[str, int] = {"apple": 5, "pear": 2}
        self.orders: dict[int, str] = {}

    async def handle_call(self, request: Any, caller: suptrace.Caller) -> Any:
        await asyncio.sleep(DB_DELAY)  # the query
        match request:
            case ("stock", item):
                return self.stock.get(item, 0)
            case ("restock", item, qty):
                self.stock[item] = self.stock.get(item, 0) + qty
                return self.stock[item]
            case ("buy", item, qty):
                if self.stock.get(item, 0) < qty:
                    return None
                self.stock[item] -= qty
                order = len(self.orders) + 1
                self.orders[order] = "pending"
                return order
            case ("set_status", order, status):
                self.orders[order] = status
                return status
            case ("status", order):
                return self.orders.get(order, "unknown")
            case "pending":
                return sum(1 for s in self.orders.values() if s == "pending")
            case "orders":
                return len(self.orders)
        raise ValueError(f"unknown query {request!r}")


class Importer(Stopping):
    """Adds stock from its warehouse every IMPORT_EVERY seconds."""

    async def setup(self, warehouse: str) -> None:
        self.warehouse = warehouse
        self.imports = 0
        self.timer = suptrace.send_after(IMPORT_EVERY, suptrace.self_pid(), "import")

    async def handle_info(self, msg: Any) -> None:
        if msg == "import":
            await suptrace.call("shop.db", ("restock", "apple", 1))
            self.imports += 1
            self.timer = suptrace.send_after(IMPORT_EVERY, suptrace.self_pid(), "import")


class Poller(Stopping):
    """Looks at the pending orders every POLL_EVERY seconds."""

    async def setup(self) -> None:
        self.pending = 0
        suptrace.send_after(POLL_EVERY, suptrace.self_pid(), "poll")

    async def handle_info(self, msg: Any) -> None:
        if msg == "poll":
            self.pending = await suptrace.call("shop.db", "pending")
            suptrace.send_after(POLL_EVERY, suptrace.self_pid(), "poll")

    async def handle_call(self, request: Any, caller: suptrace.Caller) -> Any:
        return self.pending


class Front(Stopping):
    """The TCP front end: an asyncio server whose handlers are plain tasks."""

    async def setup(self, host: str, port: int) -> None:
        self.connections = 0
        self.me = suptrace.self_pid()
        #: Open connections: handler task -> its writer (closed on shutdown).
        self.open: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}
        self.server = await asyncio.start_server(self.client, host, port)
        self.port = self.server.sockets[0].getsockname()[1]
        say(f"listening on {host}:{self.port}")

    async def handle_call(self, request: Any, caller: suptrace.Caller) -> Any:
        if request == "connected":
            self.connections += 1
            return self.connections
        if request == "stats":
            return self.connections
        raise ValueError(f"unknown request {request!r}")

    async def terminate(self, reason: Any) -> None:
        self.server.close()  # no new connections...
        for writer in self.open.values():
            writer.close()  # ...and the open ones read end-of-file: their handlers return
        if self.open:  # a handler stuck in a call to this very server gives up at 1 s
            await asyncio.wait(list(self.open), timeout=1.0)
        await super().terminate(reason)

    async def client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A plain task: it calls its own server like any client would.
        task = asyncio.current_task()
        assert task is not None
        self.open[task] = writer
        try:
            await suptrace.call(self.me, "connected")
            while line := await reader.readline():
                writer.write((await self.answer(line.decode().split()) + "\n").encode())
                await writer.drain()
        except suptrace.CallError as e:
            writer.write(f"ERROR {e}\n".encode())
        except ConnectionError:
            pass  # the client went away
        finally:
            del self.open[task]
            writer.close()

    async def answer(self, words: list[str]) -> str:
        match words:
            case ["STOCK", item]:
                return str(await suptrace.call("shop.db", ("stock", item)))
            case ["BUY", item, qty] if qty.isdigit():
                order = await suptrace.call("shop.db", ("buy", item, int(qty)))
                if order is None:
                    return "SOLD OUT"
                spec = ChildSpec(id=order, start=(start_pack, (order,)), restart="temporary")
                await suptrace.start_child("shop.jobs", spec)
                return f"ORDER {order}"
            case ["STATUS", order] if order.isdigit():
                return str(await suptrace.call("shop.db", ("status", int(order))))
            case ["STATS"]:
                connections = await suptrace.call(self.me, "stats")
                orders = await suptrace.call("shop.db", "orders")
                pending = await suptrace.call("shop.poller", "pending")
                return f"connections={connections} orders={orders} pending={pending}"
        return f"ERROR unknown command {' '.join(words)!r}"


async def pack(order: int) -> None:
    """A job: pack one order, then record it."""
    await asyncio.sleep(PACK_TIME)
    await suptrace.call("shop.db", ("set_status", order, "packed"))


async def start_pack(order: int) -> Pid:
    return suptrace.spawn_link(pack, order)


async def start_server(cls: type[Stopping], name: str, *args: Any) -> Pid:
    pid: Pid = await cls.start_link(*args, name=name)
    say(f"started {name}")
    return pid


async def start_importers() -> Pid:
    specs = [
        ChildSpec(id=w, start=(start_server, (Importer, f"shop.importer.{w}", w)))
        for w in ("north", "south")
    ]
    pid: Pid = await Supervisor.start_link(specs, name="shop.importers")
    return pid


async def start_jobs() -> Pid:
    pid: Pid = await DynamicSupervisor.start_link(name="shop.jobs", max_children=100)
    return pid


async def start(host: str = "127.0.0.1", port: int = 0) -> Pid:
    """Start the whole tree; returns the top supervisor's pid."""
    specs = [
        ChildSpec(id="db", start=(start_server, (Database, "shop.db"))),
        ChildSpec(id="importers", start=(start_importers, ()), type="supervisor"),
        ChildSpec(id="jobs", start=(start_jobs, ()), type="supervisor"),
        ChildSpec(id="poller", start=(start_server, (Poller, "shop.poller"))),
        ChildSpec(id="front", start=(start_server, (Front, "shop.front", host, port))),
    ]
    pid: Pid = await Supervisor.start_link(specs, name="shop.sup", intensity=3, period=5)
    return pid
