"""How long the command line takes to start: ``suptrace --help`` against ``python -c pass``.

Uses hyperfine when it is installed, otherwise times repeated subprocesses
itself. Also lists which heavy packages ``suptrace --help`` imports (it
should import neither the runtime nor OpenTelemetry).

    .venv/bin/python bench/cli_startup.py            # 20 runs each
    .venv/bin/python bench/cli_startup.py --runs 50
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_SCRIPT = Path(sys.executable).with_name("suptrace")
SUPTRACE = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "suptrace"]

COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "python -c 'import typer'": [sys.executable, "-c", "import typer"],
    "suptrace --help": [*SUPTRACE, "--help"],
    "suptrace nodes --json": [*SUPTRACE, "nodes", "--json"],
}

#: Packages whose presence after ``--help`` would mean an import is not lazy enough.
WATCH = (
    "suptrace.core",
    "suptrace.node.node",
    "opentelemetry",
    "loguru",
    "asyncio",
    "rich",
    "pydantic",
)

_PROBE = """
import sys
sys.argv = ["suptrace", "--help"]
from suptrace.cli.app import main
try:
    main()
except SystemExit:
    pass
watch = {watch!r}
print("\\n" + " ".join(w for w in watch if any(m == w or m.startswith(w + ".") for m in sys.modules)))
"""


def _with_hyperfine(runs: int) -> None:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = ["hyperfine", "--warmup", "3", "--runs", str(runs), "--export-json", out.name, "-N"]
        for label, argv in COMMANDS.items():
            cmd += ["-n", label, " ".join(argv)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        results = json.loads(Path(out.name).read_text())["results"]
    for r in results:
        _row(r["command"], r["mean"], r["stddev"] or 0.0, r["min"])


def _by_hand(runs: int) -> None:
    for label, argv in COMMANDS.items():
        for _ in range(3):  # warm the page cache
            subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        samples = []
        for _ in range(runs):
            start = time.perf_counter()
            subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            samples.append(time.perf_counter() - start)
        _row(label, statistics.mean(samples), statistics.pstdev(samples), min(samples))


def _row(label: str, mean: float, stdev: float, best: float) -> None:
    print(f"{label:<28} {mean * 1e3:8.1f} ms  ± {stdev * 1e3:5.1f}   (best {best * 1e3:.1f} ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    tool = "hyperfine" if shutil.which("hyperfine") else f"{args.runs} subprocess runs each"
    print(f"command line start-up ({tool}; {sys.executable})")
    if shutil.which("hyperfine"):
        _with_hyperfine(args.runs)
    else:
        _by_hand(args.runs)
    probe = subprocess.run(
        [sys.executable, "-c", _PROBE.format(watch=WATCH)], capture_output=True, text=True
    )
    loaded = probe.stdout.strip().splitlines()[-1] if probe.stdout.strip() else ""
    print(f"imported by `suptrace --help`: {loaded or 'none of ' + ', '.join(WATCH)}")


if __name__ == "__main__":
    main()
