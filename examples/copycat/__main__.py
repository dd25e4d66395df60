"""``python -m examples.copycat [--fixed] [--quiet]``: the CopyCat incident under suptrace."""

from __future__ import annotations

import sys

import suptrace
from examples.copycat import incident


async def main(fixed: bool) -> None:
    out = await incident.run(fixed=fixed)
    print()
    print("--- dbg-style trace of copycat.import_sup (last lines) ---")
    for line in out.trace_lines[-12:]:
        print(line)
    print()
    print(f"baby monitor before: {out.monitor_before}")
    print(f"baby monitor after:  {out.monitor_after}")
    print(f"import supervisor alive at the end: {out.import_sup_alive_at_end}")
    print(f"fetches after the database recovered: {out.stats.fetches_after_recovery}")


if __name__ == "__main__":
    fixed = "--fixed" in sys.argv
    if "--quiet" in sys.argv:
        from loguru import logger

        logger.remove()
        logger.add(sys.stderr, level="WARNING")
    suptrace.run(main, fixed)
