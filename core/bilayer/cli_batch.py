"""``bilayer status``: where a run folder of ``bilayer segment`` stands."""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["status_command"]


@click.command("status")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--stale-after", type=click.FloatRange(min=0, min_open=True), default=300.0, show_default=True,
              help="Seconds without a heartbeat after which a claim counts as abandoned (its tomogram: waiting).")
def status_command(run_dir: Path, stale_after: float) -> int:
    """Show every tomogram of the run folder RUN_DIR (the --out of bilayer segment): done, failed
    (with its reason), running (claimed by a live process) or waiting, and the counts; then the
    state of each SLURM job submitted for it (bilayer segment --slurm)."""
    from bilayer.batch.records import format_table
    from bilayer.batch.runner import run_status
    from bilayer.batch.slurm import job_lines

    click.echo(format_table(run_status(run_dir, stale_after)))
    for line in job_lines(run_dir):
        click.echo(line)
    return 0
