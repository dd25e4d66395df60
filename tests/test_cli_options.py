"""The command line's option scheme, checked over every command at once: a short
option means the same long option everywhere, the common long options always have
their short form, and no flag shows a value placeholder in --help."""

from __future__ import annotations

from typing import Any

import typer.main

from suptrace.cli.app import app

#: Long options that always come with their short form.
SCHEME = {
    "--node": "-n",
    "--json": "-j",
    "--follow": "-f",
    "--kind": "-k",
    "--limit": "-l",
    "--sort": "-s",
    "--interval": "-i",
}


def _commands() -> dict[str, Any]:
    root: Any = typer.main.get_command(app)
    return dict(root.commands)


def test_every_short_option_means_one_long_option() -> None:
    # A short option maps to the long names of each option that carries it; options that
    # carry one short must share a long name (an alias such as reports' --last/--limit).
    meaning: dict[str, list[frozenset[str]]] = {}
    for name, command in _commands().items():
        for param in command.params:
            shorts = [o for o in param.opts if o.startswith("-") and not o.startswith("--")]
            longs = [o for o in param.opts if o.startswith("--")]
            for short in shorts:
                meaning.setdefault(short, []).append(frozenset(longs))
            for long in longs:
                if long in SCHEME and not param.secondary_opts:
                    assert SCHEME[long] in shorts, f"{name} {long} lacks {SCHEME[long]}"
    clashes = {
        short: sorted(set().union(*groups))
        for short, groups in meaning.items()
        if not frozenset.intersection(*groups)
    }
    assert not clashes, clashes
    assert set().union(*meaning["-t"]) == {"--flags"}  # attach: what to trace (-f is --follow everywhere)


def test_help_shows_no_placeholder_for_flags() -> None:
    from typer.testing import CliRunner

    runner = CliRunner()
    for name in _commands():
        result = runner.invoke(app, [name, "--help"], env={"COLUMNS": "100"})
        assert result.exit_code == 0, (name, result.output)
        assert "<bool>" not in result.output, (name, result.output)
