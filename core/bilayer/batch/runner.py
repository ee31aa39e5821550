"""A resumable segmentation run: tomograms one after another into a run folder, each claimed,
skipped when done, recorded when finished or failed.

:func:`run_batch` is what ``bilayer segment INPUTS --out RUN`` runs. Every input that is still to do
is checked first (:func:`~bilayer.infer.preflight.plan_segmentation`: all problems before any work);
then each tomogram is claimed (:mod:`bilayer.batch.claims`), segmented with its outputs published
together (:func:`~bilayer.infer.segmentation.segment_planned`), and recorded
(:mod:`bilayer.batch.records`), so a rerun or a second process sharing the folder does only what
is left.

Existing outputs: in a folder with a run record they are this run's (a kill between publishing
and recording leaves them, and the rerun replaces them); in a folder without one (an old-style
output folder) they are refused unless ``overwrite``, as before runs existed. A tomogram whose
work fails (a constant volume, a bug) gets a ``failed`` record with its one-line reason and the
others go on; an :class:`~bilayer.errors.OutputError` (a full disk) stops the run without
recording the tomogram, so the rerun takes it again.

Above 350 lines: the checks, the loop, the per-tomogram claim and record, and reading a run back for
``bilayer status`` share one contract; the reading part (``open_existing_run``, ``run_status``,
``run_tomograms``) could move to its own module once the adapters' imports move with it.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bilayer.batch.claims import CLAIMS_FOLDER, ClaimState, claim_state, try_claim
from bilayer.batch.inputs import BatchInput
from bilayer.batch.lock import LOCK_FILE, folder_lock
from bilayer.batch.records import (
    RUN_FILE,
    RecordStatus,
    Run,
    TomogramRecord,
    changed_settings,
    is_done,
    model_id,
    open_run,
    read_record,
    recorded_settings,
    run_table,
    tomogram_key,
    write_record,
    write_summary,
)
from bilayer.errors import BilayerError, ConfigError, OutputError, PreflightError
from bilayer.io import atomic_open, ensure_output_dir, file_identity

if TYPE_CHECKING:
    from bilayer.infer.blend import ProgressFn
    from bilayer.infer.config import OutputOptions, SegmentOptions
    from bilayer.infer.predictor import Predictor
    from bilayer.infer.preflight import TomogramPlan
    from bilayer.infer.segmentation import SegmentReport

__all__ = ["RUN_BOOKKEEPING", "TOMOGRAMS_FILE", "BatchReport", "Outcome", "PreparedBatch", "changed_run_settings", "open_existing_run",
           "prepare_batch",
           "run_batch", "run_settings", "run_status", "run_tomograms", "work_batch"]

#: The run's tomograms (absolute paths, one a line, in the order first given), for ``bilayer status``.
TOMOGRAMS_FILE = "tomograms.txt"
#: Every name a run adds to its folder besides the tomograms' outputs (its bookkeeping).
RUN_BOOKKEEPING = frozenset({RUN_FILE, "records", CLAIMS_FOLDER, "summary.json", "summary.csv", TOMOGRAMS_FILE,
                             LOCK_FILE})


@dataclass(frozen=True)
class Outcome:
    """What happened to one tomogram: ``status`` is done, failed, skipped (done by another process
    meanwhile), held (another live process has it) or stopped (an output error ended the run).
    ``summary`` is the one-line result of a finished tomogram (:meth:`SegmentReport.summary`);
    ``worker`` names the worker process that did it (:mod:`bilayer.batch.workers`), if any."""

    tomogram: Path
    status: str
    report: SegmentReport | None = None
    error: BaseException | None = None
    summary: str = ""
    worker: str = ""


@dataclass
class BatchReport:
    """The tomograms of one :func:`run_batch` call by what became of them."""

    done: list[Path] = field(default_factory=list)
    failed: list[Path] = field(default_factory=list)
    done_before: list[Path] = field(default_factory=list)
    failed_before: list[Path] = field(default_factory=list)
    """Failed with these settings in an earlier call and not retried (``retry_failed`` takes them)."""
    skipped: list[Path] = field(default_factory=list)
    """Finished by another process after this one planned them."""
    held: list[Path] = field(default_factory=list)
    """Claimed by another live process."""
    stopped: BaseException | None = None
    """What ended the run early: an output error (a full disk), or a worker process that died with
    tomograms left undone."""
    warnings: list[str] = field(default_factory=list)
    """What went wrong without costing a tomogram (a worker that died after a sibling took its work over)."""

    @property
    def exit_status(self) -> int:
        """0 when nothing failed (now or before) and the run was not stopped, else 2. Tomograms held by
        other processes do not count: they are theirs to finish (``bilayer status`` shows them)."""
        return 2 if self.failed or self.failed_before or self.stopped is not None else 0


@dataclass
class PreparedBatch:
    """A checked run, ready to work: the opened run, the report so far (``done_before``,
    ``failed_before``) and one plan per tomogram to do, in order."""

    run: Run
    report: BatchReport
    plans: list[TomogramPlan]
    overwrite: bool
    """Whether existing outputs of the tomograms to do are replaced (they are the run's, or asked)."""


def run_settings(options: SegmentOptions) -> tuple[dict[str, Any], str]:
    """The settings a run records (the options that change outputs, less the model's path) and the
    model's identity (its bytes' sha256), from ``options``."""
    settings = {k: v for k, v in recorded_settings(options.to_dict()).items() if k != "model"}
    return settings, model_id(options.model)


def changed_run_settings(run_dir: str | os.PathLike, options: SegmentOptions) -> list[str]:
    """The settings (and ``model_id``) that ``options`` would change in the run of ``run_dir``: what
    continuing it with them would refuse; none where the folder has no run yet. For adapters that
    word the refusal in their own terms (a RELION job, a Scipion protocol)."""
    if not (Path(run_dir) / RUN_FILE).is_file():
        return []
    recorded = open_existing_run(run_dir)
    settings, model = run_settings(options)
    return changed_settings({**recorded.settings, "model_id": recorded.model_id}, {**settings, "model_id": model})


def run_batch(sources: Sequence[str | os.PathLike | BatchInput], run_dir: str | os.PathLike, options: SegmentOptions,
              predictor: Predictor, *, folders: Sequence[str | os.PathLike] | None = None, redo: bool = False,
              retry_failed: bool = False, overwrite: bool = False, memory: int | None = -1,
              progress: Callable[[TomogramPlan], ProgressFn | None] | None = None,
              on_start: Callable[[BatchReport, int], None] | None = None,
              on_outcome: Callable[[Outcome], None] | None = None,
              heartbeat: float = 30.0, stale_after: float = 300.0, prefetch: bool = True) -> BatchReport:
    """Segment ``sources`` into the run folder ``run_dir``, doing only what is not done yet.

    Args:
        sources: tomogram files (or :class:`~bilayer.batch.inputs.BatchInput` with a voxel size from
            a STAR list), in the order to do them.
        run_dir: the run folder: outputs (named as by ``bilayer segment``), the run record, the
            records, claims and summary.
        options: the segmentation options; ``predictor`` must be loaded from them. ``options.voxel_size``
            replaces every tomogram's, a STAR list's included.
        folders: an output folder per source (e.g. ``RUN/tomograms/TS_01``, as RELION lays jobs out);
            ``None``: every output in ``run_dir``.
        redo: do every tomogram again with these settings (earlier records become stale).
        retry_failed: take tomograms that failed with these settings again.
        overwrite: replace existing outputs in a folder that has no run record yet.
        memory: bytes of memory one tomogram may plan for (-1: what is available; ``None``: no check),
            as :func:`~bilayer.infer.preflight.plan_segmentation`.
        progress: a window-progress callback per tomogram (``(done, total)``), or ``None``.
        on_start: called once after the checks, before any work, with the report (``done_before``,
            ``failed_before`` filled) and the number of tomograms to do.
        on_outcome: called after each tomogram taken up with its :class:`Outcome`.
        heartbeat, stale_after: of the claims (:func:`~bilayer.batch.claims.try_claim`).
        prefetch: read the next tomogram into the page cache while the current one is segmented.

    Raises:
        PreflightError: problems of the inputs or outputs to do, all listed, before any work.
        ConfigError: the folder's run was made with other settings (unless ``redo``).
    """
    prepared = prepare_batch(sources, run_dir, options, predictor, folders=folders, redo=redo,
                             retry_failed=retry_failed, overwrite=overwrite, memory=memory)
    if on_start is not None:
        on_start(prepared.report, len(prepared.plans))
    return work_batch(prepared, predictor, options.outputs, retry_failed=retry_failed, progress=progress,
                      on_outcome=on_outcome, heartbeat=heartbeat, stale_after=stale_after, prefetch=prefetch)


def prepare_batch(sources: Sequence[str | os.PathLike | BatchInput], run_dir: str | os.PathLike,
                  options: SegmentOptions, predictor: Predictor, *,
                  folders: Sequence[str | os.PathLike] | None = None, redo: bool = False,
                  retry_failed: bool = False, overwrite: bool = False, memory: int | None = -1) -> PreparedBatch:
    """The checks and bookkeeping of :func:`run_batch` before any work: sort the tomograms into done
    before, failed before and to do, check every one to do, then open (or start) the run and add the
    tomograms to its list. Same arguments as :func:`run_batch`; writes nothing when a check fails."""
    from bilayer.infer.preflight import plan_segmentation

    if predictor.config != options.inference:
        raise ConfigError("the predictor was loaded with other inference options than the run's; load it with "
                          "Predictor.from_checkpoint(options.model, options.inference, options.device)")
    folder = ensure_output_dir(run_dir)
    paths, sizes = _sources(sources, options.voxel_size)
    if folders is not None and len(folders) != len(paths):
        raise ConfigError(f"{len(folders)} output folders given for {len(paths)} tomograms; give one per tomogram")
    outs = [folder] * len(paths) if folders is None else [ensure_output_dir(f) for f in folders]
    settings, model = run_settings(options)
    existing = (folder / RUN_FILE).is_file()
    earlier = open_run(folder, settings, model) if existing and not redo else None  # writes nothing
    report = BatchReport()
    todo = []
    for index, source in enumerate(paths):
        key = tomogram_key(source)
        if earlier is not None and is_done(earlier, key):
            report.done_before.append(source)
        elif earlier is not None and not retry_failed and _failed(earlier, key):
            report.failed_before.append(source)
        else:
            todo.append(index)
    chosen = set(todo)
    _check_shared_outputs([(paths[i], outs[i]) for i in todo],
                          [(p, o) for i, (p, o) in enumerate(zip(paths, outs)) if i not in chosen], options.outputs)
    ours = overwrite or existing

    def plan() -> list[TomogramPlan]:
        return plan_segmentation([paths[i] for i in todo], [outs[i] for i in todo], predictor, options.outputs,
                                 voxel_size=[sizes[i] for i in todo], overwrite=ours, memory=memory) if todo else []

    try:
        plans = plan()
    except PreflightError:
        if ours or not (folder / RUN_FILE).is_file():
            raise
        ours = True  # another process started the run meanwhile: the outputs found are the run's
        plans = plan()
    run = open_run(folder, settings, model, redo=redo)
    _remember_tomograms(run, paths)
    write_summary(run)
    return PreparedBatch(run, report, plans, ours)


def work_batch(prepared: PreparedBatch, predictor: Predictor, outputs: OutputOptions, *, retry_failed: bool = False,
               progress: Callable[[TomogramPlan], ProgressFn | None] | None = None,
               on_outcome: Callable[[Outcome], None] | None = None, heartbeat: float = 30.0,
               stale_after: float = 300.0, prefetch: bool = True) -> BatchReport:
    """Claim, segment and record each planned tomogram of ``prepared`` in turn (see :func:`run_batch`);
    returns ``prepared.report`` filled in."""
    from bilayer.batch.prefetch import Prefetch

    run, report, plans = prepared.run, prepared.report, prepared.plans
    reading: Prefetch | None = None

    def take(planned: TomogramPlan, following: Path | None) -> Outcome:
        nonlocal reading
        if reading is not None:
            reading.stop()
        reading = Prefetch.start(following) if prefetch and following is not None else None
        return _segment_one(run, planned, predictor, outputs, overwrite=prepared.overwrite, retry_failed=retry_failed,
                            progress=progress(planned) if progress else None, heartbeat=heartbeat,
                            stale_after=stale_after)

    def tell(outcome: Outcome) -> bool:
        """File the outcome; False when the run must stop."""
        {"done": report.done, "failed": report.failed, "skipped": report.skipped,
         "held": report.held}.get(outcome.status, []).append(outcome.tomogram)
        if outcome.status in ("done", "failed"):
            write_summary(run)
        if on_outcome is not None:
            on_outcome(outcome)
        if outcome.status == "stopped":
            report.stopped = outcome.error
        return outcome.status != "stopped"

    held = []
    try:
        for index in range(len(plans)):
            planned = plans[index]
            outcome = take(planned, _next_free(run, plans[index + 1:], stale_after))
            plans[index] = None  # type: ignore[call-overload]  # its memory map goes (its pages left RSS growing)
            if outcome.status == "held":
                held.append(planned)  # taken once more at the end: its holder may have died meanwhile
            elif not tell(outcome):
                return report
            del planned
        for planned in held:
            if not tell(take(planned, None)):
                return report
    finally:
        if reading is not None:
            reading.stop()
    return report


def _next_free(run: Run, plans: Sequence[TomogramPlan], stale_after: float, look: int = 8) -> Path | None:
    """The first of the next ``look`` tomograms that no process holds and none has done: the one this
    process will most likely take next (others sharing the run take the ones they claim)."""
    for planned in plans[:look]:
        key = tomogram_key(planned.source)
        if claim_state(run.folder, key, stale_after) is not ClaimState.HELD and not is_done(run, key):
            return planned.source
    return None


def _sources(sources: Sequence[str | os.PathLike | BatchInput],
             voxel_size: float | None) -> tuple[list[Path], list[float | None]]:
    """The paths of ``sources`` and the voxel size of each: ``voxel_size`` when given, else a STAR
    list's (a :class:`BatchInput`'s), else ``None`` (the header's)."""
    paths, sizes = [], []
    for source in sources:
        if isinstance(source, BatchInput):
            paths.append(source.path)
            sizes.append(voxel_size if voxel_size is not None else source.voxel_size)
        else:
            paths.append(Path(source))
            sizes.append(voxel_size)
    return paths, sizes


class _ClaimLost(BilayerError):
    """This process's claim was broken (judged stale) while it worked: another process has the tomogram."""


def _segment_one(run: Run, plan: TomogramPlan, predictor: Predictor, outputs: OutputOptions, *, overwrite: bool,
                 retry_failed: bool, progress: ProgressFn | None, heartbeat: float, stale_after: float) -> Outcome:
    """Claim, re-check, segment and record one tomogram."""
    from bilayer.infer.segmentation import segment_planned

    source = plan.source
    key = tomogram_key(source)
    if is_done(run, key):
        return Outcome(source, "skipped")
    with ExitStack() as held:  # the claim is released on any exit, KeyboardInterrupt (Ctrl-C, SIGTERM) included
        with _interrupts_deferred() as interrupted:  # no claim file left between its making and its context
            claim = try_claim(run.folder, key, heartbeat=heartbeat, stale_after=stale_after)
            if claim is not None:
                held.enter_context(claim)
        if interrupted:
            raise KeyboardInterrupt
        if claim is None:
            return Outcome(source, "held")
        if is_done(run, key) or (not retry_failed and _failed(run, key)):
            return Outcome(source, "skipped")  # another process finished it between our check and our claim

        def guarded(done: int, total: int) -> None:
            if not claim.held:  # checked after every batch of windows: give up before publishing anything
                raise _ClaimLost(f"{source}: another process took over its claim")
            if progress is not None:
                progress(done, total)

        started = time.perf_counter()
        try:
            result = segment_planned(plan, predictor, outputs, overwrite=overwrite, progress=guarded)
        except _ClaimLost:
            return Outcome(source, "held")
        except OutputError as e:
            return Outcome(source, "stopped", error=e)
        except Exception as e:  # noqa: BLE001  (one tomogram's failure must not end a run of hundreds)
            reason = str(e) if isinstance(e, BilayerError) else f"{type(e).__name__}: {e}"
            if claim.held:
                write_record(run, key, TomogramRecord.failed(run, source.absolute(), f"{source}: {reason}"
                                                             if str(source) not in reason else reason,
                                                             seconds=time.perf_counter() - started))
            return Outcome(source, "failed", error=e)
        if not claim.held:  # lost after the last window: the outputs are whole either way; its holder records
            return Outcome(source, "held", report=result)
        write_record(run, key, TomogramRecord.done(run, source.absolute(), result.outputs, seconds=result.seconds,
                                                   membrane_fraction=result.membrane_fraction))
    return Outcome(source, "done", report=result, summary=result.summary())


@contextmanager
def _interrupts_deferred() -> Iterator[list[int]]:
    """Hold Ctrl-C and SIGTERM back (in the main thread) until the block ends; yields the signals that came."""
    came: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield came
        return
    kept = {sig: signal.signal(sig, lambda number, _frame: came.append(number))
            for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield came
    finally:
        for sig, handler in kept.items():
            signal.signal(sig, handler)


def _failed(run: Run, key: str) -> bool:
    record = read_record(run, key)
    return record is not None and record.status is RecordStatus.FAILED and record.settings_hash == run.settings_hash


def _check_shared_outputs(todo: Sequence[tuple[Path, Path]], others: Sequence[tuple[Path, Path]],
                          outputs: OutputOptions) -> None:
    """Refuse a tomogram to do whose outputs are those of one done (or failed) before, e.g. a second
    ``t.mrc`` from another folder (the pre-flight checks the ones to do among themselves). Each
    tomogram comes with its output folder."""
    taken = {path: source for source, folder in others for path in outputs.paths(source, folder).values()}
    problems = []
    for source, folder in todo:
        for path in outputs.paths(source, folder).values():
            if path in taken and file_identity(taken[path]) != file_identity(source):
                problems.append(f"{taken[path]} and {source} would both write {path}; rename one, or segment them "
                                "into separate run folders")
                break
    if problems:
        raise PreflightError(problems)


def _remember_tomograms(run: Run, sources: Sequence[Path]) -> None:
    """Add ``sources`` (absolute) to the run's list of tomograms, keeping the order first given."""
    with folder_lock(run.folder):  # two processes starting together must not drop each other's tomograms
        known = run_tomograms(run.folder)
        seen = set(known)
        new = [p for p in dict.fromkeys(str(s.absolute()) for s in sources) if p not in seen]
        if new:
            with atomic_open(run.folder / TOMOGRAMS_FILE, overwrite=True) as f:
                f.write("".join(f"{p}\n" for p in (*known, *new)).encode())


def run_tomograms(run_dir: str | os.PathLike) -> list[str]:
    """The tomograms ever given to the run in ``run_dir``, in the order first given."""
    path = Path(run_dir) / TOMOGRAMS_FILE
    try:
        return [line for line in path.read_text().splitlines() if line]
    except FileNotFoundError:
        return []
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror or e}; check the run folder's permissions") from e


def open_existing_run(run_dir: str | os.PathLike) -> Run:
    """The run in ``run_dir`` with its recorded settings (writes nothing).

    Raises:
        ConfigError: ``run_dir`` has no readable run record.
    """
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a run folder (it has no {RUN_FILE}); give the --out folder of a "
                          "bilayer segment run")
    try:
        data = json.loads(path.read_text())
        return open_run(run_dir, data["settings"], data["model_id"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"cannot read the run record {path} ({e}); rerun bilayer segment into a new folder") from e


def run_status(run_dir: str | os.PathLike, stale_after: float = 300.0) -> list:
    """:func:`~bilayer.batch.records.run_table` of the run in ``run_dir``: every tomogram it was given
    (and any recorded), done / failed / running (a live claim) / waiting."""
    run = open_existing_run(run_dir)
    records = {}
    for path in sorted(run.records.glob("*.json")) if run.records.is_dir() else []:
        record = read_record(run, path.stem)
        if record is not None:
            records[path.stem] = record.tomogram
    tomograms = run_tomograms(run.folder)
    listed = {tomogram_key(t) for t in tomograms}
    tomograms += [t for key, t in records.items() if key not in listed]
    return run_table(run, tomograms, lambda key: claim_state(run.folder, key, stale_after).value)
