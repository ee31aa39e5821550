"""bilayer.cli_common: one-line messages, one error line per problem, only given options passed on."""

from __future__ import annotations

import click
from click.testing import CliRunner

from bilayer.cli_common import EXIT_INTERRUPTED, EXIT_USAGE, echo_error, given_options, one_line


def test_one_line_collapses_every_run_of_whitespace():
    assert one_line("  cannot read\n  t.mrc:\tbad header \n") == "cannot read t.mrc: bad header"
    assert one_line("") == ""
    assert (EXIT_USAGE, EXIT_INTERRUPTED) == (2, 130)


class _Problems(Exception):
    problems = ["a.mrc does not exist", "b.mrc: voxel size\n1 Å"]


def test_errors_are_one_line_each_on_stderr(capsys):
    echo_error("window=100 must be\n a multiple of 32")
    echo_error(_Problems("two problems"))
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == ["bilayer: error: window=100 must be a multiple of 32",
                                "bilayer: error: a.mrc does not exist",
                                "bilayer: error: b.mrc: voxel size 1 Å"]


@click.command()
@click.option("--window", type=int, default=160)
@click.option("--tta/--no-tta", default=True)
@click.option("--threshold", type=float, default=0.0, envvar="TEST_THRESHOLD")
@click.option("--out", default=".")
def _command(**_: object) -> None:
    click.echo(sorted(given_options(exclude=("out",)).items()))


def test_given_options_are_those_from_the_command_line_or_the_environment():
    runner = CliRunner()
    assert runner.invoke(_command, []).output.strip() == "[]"
    given = runner.invoke(_command, ["--no-tta", "--window", "160", "--out", "x"], env={"TEST_THRESHOLD": "0.5"})
    # a value equal to the default still counts when given; excluded names never do
    assert given.output.strip() == "[('threshold', 0.5), ('tta', False), ('window', 160)]"
