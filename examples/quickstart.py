"""A first look at suptrace: processes, links, a GenServer and a crash.

Run: python examples/quickstart.py
"""

from __future__ import annotations

import suptrace


class Counter(suptrace.GenServer):
    async def init(self, start: int) -> None:
        self.n = start

    async def handle_call(self, request: object, caller: suptrace.Caller) -> object:
        if request == "get":
            return self.n
        if request == "boom":
            raise RuntimeError("counter exploded")
        raise ValueError(f"unknown request {request!r}")

    async def handle_cast(self, msg: object) -> None:
        if isinstance(msg, tuple) and msg[0] == "add":
            self.n += msg[1]


async def main() -> None:
    suptrace.trap_exit(True)
    pid = await Counter.start_link(0, name="counter")
    print(f"started counter as {pid}")
    for _ in range(3):
        suptrace.cast("counter", ("add", 1))
    print("counter =", await suptrace.call("counter", "get"))
    try:
        await suptrace.call("counter", "boom")
    except suptrace.CallExit as e:
        print(f"call failed: {e}")
    exit_msg = await suptrace.receive(lambda m: isinstance(m, suptrace.ExitMsg))
    print(f"linked counter died: ExitMsg({exit_msg.pid}, {exit_msg.reason!r})")
    try:
        await suptrace.call("counter", "get")
    except suptrace.NoProc as e:
        print(f"and now: {e}")


if __name__ == "__main__":
    suptrace.run(main)
