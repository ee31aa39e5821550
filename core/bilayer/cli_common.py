"""What every ``bilayer`` subcommand shares: exit statuses, one-line messages, explicit options."""

from __future__ import annotations

from typing import Any, Iterable

import click
from click.core import ParameterSource

__all__ = ["EXIT_INTERRUPTED", "EXIT_USAGE", "VOXEL_SIZE_HELP", "echo_error", "given_options", "one_line"]

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
VOXEL_SIZE_HELP = "Voxel size in Å, replacing the file header's (needed when the header has 0 or is wrong)."


def one_line(message: str) -> str:
    """``message`` with its whitespace (newlines included) collapsed to single spaces."""
    return " ".join(message.split())


def echo_error(error: str | BaseException) -> None:
    """``bilayer: error: <message>`` on stderr; a pre-flight error gives one such line per problem."""
    for line in getattr(error, "problems", None) or [error]:
        click.echo(f"bilayer: error: {one_line(str(line))}", err=True)


def given_options(exclude: Iterable[str] = (), ctx: click.Context | None = None) -> dict[str, Any]:
    """The command's options the user gave (on the command line or by environment), by name: the
    explicit layer of the engine's merge (defaults ← settings file ← these). ``ctx``: the current
    command's context by default."""
    ctx = ctx or click.get_current_context()
    skip = set(exclude)
    given = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT, ParameterSource.PROMPT)
    return {name: value for name, value in ctx.params.items()
            if name not in skip and ctx.get_parameter_source(name) in given}
