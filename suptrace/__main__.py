"""``python -m suptrace``: the command-line interface."""

from suptrace.cli.app import main

main()
