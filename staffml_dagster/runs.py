"""Runs whose process died: find them, mark them failed and give back their pool slots.

A ``kill -9`` (or an OOM kill) of the process executing a run leaves the run STARTED for ever
and keeps the concurrency-pool slots its steps claimed (the `anthropic` pool of `questions`),
so later runs wait on a slot no one will free. Every run records the process executing it in
its tags (:func:`owner_tags`, :func:`record_owner`); :func:`reclaim_dead_runs` checks those
processes on this host and, for each one that is gone, reports the run failed and frees its
slots. Slots still held by runs that already ended are freed as well. A run whose process
lives on another host, or that carries no owner tags, is left alone: it cannot be judged here.

``staffml run`` executes its jobs in its own process as runs of the instance that the UI lists
in each job's history (:func:`execute_job_run`), and while one executes it says on the console
what the run's log says about progress, when a step waits for a pool slot, and stops a waiting
run on SIGTERM or Ctrl-C (:func:`watching_run`).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

PID_TAG = "staffml/pid"
HOST_TAG = "staffml/host"
PROCESS_START_TAG = "staffml/process_start"  # the process's start time in clock ticks since boot, against pid reuse
ACTIVE_STATUSES = (dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING)


def _process_start(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat (start time after boot), or None when it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def owner_tags(pid: int | None = None) -> dict[str, str]:
    """Tags naming the process that executes a run: pid, host and the pid's start time."""
    pid = pid or os.getpid()
    tags = {PID_TAG: str(pid), HOST_TAG: socket.gethostname()}
    start = _process_start(pid)
    if start:
        tags[PROCESS_START_TAG] = start
    return tags


def record_owner(instance: dg.DagsterInstance, run_id: str) -> None:
    """Tag a run with the current process when it has no owner yet (a run launched from the
    UI executes in a process of its own, known only once a step runs)."""
    run = instance.get_run_by_id(run_id)
    if run is not None and PID_TAG not in run.tags:
        instance.add_run_tags(run_id, owner_tags())


def process_alive(tags: dict[str, str]) -> bool | None:
    """Whether the run's recorded process still runs: None when it cannot be told (no tags, or
    another host)."""
    if PID_TAG not in tags or tags.get(HOST_TAG) != socket.gethostname():
        return None
    pid = int(tags[PID_TAG])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    start = tags.get(PROCESS_START_TAG)
    if start and _process_start(pid) not in (None, start):
        return False  # the pid was reused by another process
    return True


@dataclass(frozen=True)
class Reclaimed:
    run_id: str
    status: str  # the run's status before
    slots: int  # pool slots freed


def reclaim_dead_runs(instance: dg.DagsterInstance) -> list[Reclaimed]:
    """Mark failed every active run whose process is gone and free its pool slots; free the
    slots of runs that already ended. Returns what was reclaimed."""
    storage = instance.event_log_storage
    pools = storage.supports_global_concurrency_limits
    held = _slots_held(instance) if pools else {}
    active = instance.get_runs(filters=dg.RunsFilter(statuses=list(ACTIVE_STATUSES)))
    reclaimed = []
    for run in active:
        if process_alive(run.tags) is not False:
            continue
        instance.report_run_failed(
            run,
            message=(
                f"the process executing this run (pid {run.tags[PID_TAG]} on {run.tags[HOST_TAG]}) is gone "
                "(killed or out of memory); marked failed and its pool slots freed by staffml"
            ),
        )
        if pools:
            storage.free_concurrency_slots_for_run(run.run_id)  # the failure event may have freed them already
        reclaimed.append(Reclaimed(run.run_id, run.status.value, held.pop(run.run_id, 0)))
    for run_id in sorted(set(storage.get_concurrency_run_ids()) if pools else ()):
        run = instance.get_run_by_id(run_id)
        if run is None or run.is_finished:
            storage.free_concurrency_slots_for_run(run_id)
            if held.get(run_id):
                reclaimed.append(Reclaimed(run_id, run.status.value if run else "deleted", held[run_id]))
    return reclaimed


def _slots_held(instance: dg.DagsterInstance) -> dict[str, int]:
    """Claimed pool slots per run id, over every pool."""
    held: dict[str, int] = {}
    storage = instance.event_log_storage
    for key in storage.get_concurrency_keys():
        for slot in storage.get_concurrency_info(key).claimed_slots:
            held[slot.run_id] = held.get(slot.run_id, 0) + 1
    return held


def pool_waits(instance: dg.DagsterInstance, run_id: str, pool: str) -> str | None:
    """A sentence when ``run_id`` has a step waiting for a slot in ``pool``, else None."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return None
    info = storage.get_concurrency_info(pool)
    waiting = [s.step_key for s in info.pending_steps if s.run_id == run_id and s.assigned_timestamp is None]
    if not waiting:
        return None
    holders = sorted({s.run_id for s in info.claimed_slots if s.run_id != run_id})
    held_by = f"held by run(s) {', '.join(h[:8] for h in holders)}" if holders else "all in use"
    return (
        f"{', '.join(sorted(set(waiting)))} waits for a slot in pool '{pool}' ({len(info.claimed_slots)} of "
        f"{info.slot_count} {held_by}); runs of dead processes are reclaimed when staffml run starts, "
        "live ones finish or can be cancelled in the UI"
    )


CODE_LOCATION = "staffml_dagster"  # the code location's name in workspace.yaml (make ui) and deploy/workspace.yaml
DEFINITIONS_MODULE = "staffml_dagster.definitions"


def execute_job_run(
    instance: dg.DagsterInstance,
    job_name: str,
    *,
    defs: dg.Definitions,
    run_id: str,
    run_config: dict | None = None,
    tags: dict[str, str] | None = None,
):
    """Execute a job of ``defs`` (the Definitions of ``staffml_dagster.definitions``, which the
    run reconstructs by module) in this process as a run of ``instance`` that carries
    the code location's origin, so the UI lists it in the job's run history and on the
    Overview (a run of ``execute_in_process`` has no origin and shows under no job).
    Returns Dagster's execution result."""
    from dagster._core.definitions.reconstruct import ReconstructableRepository
    from dagster._core.execution.api import execute_run
    from dagster._core.remote_origin import InProcessCodeLocationOrigin, RemoteRepositoryOrigin
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

    from staffml_dagster.paths import PROJECT_ROOT

    working_directory = str(PROJECT_ROOT)
    job = ReconstructableRepository.for_module(
        DEFINITIONS_MODULE, "defs", working_directory=working_directory
    ).get_reconstructable_job(job_name)
    location = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(module_name=DEFINITIONS_MODULE, working_directory=working_directory),
        location_name=CODE_LOCATION,
    )
    origin = RemoteRepositoryOrigin(location, defs.get_repository_def().name).get_job_origin(job_name)
    run = instance.create_run_for_job(
        job_def=job.get_definition(),
        run_id=run_id,
        run_config=run_config or {},
        tags=tags or {},
        remote_job_origin=origin,
        job_code_origin=job.get_python_origin(),
    )
    return execute_run(job, run, instance)


def progress_lines(instance: dg.DagsterInstance, run_id: str, cursor: str | None) -> tuple[list[str], str | None]:
    """The run's progress lines (progress.PREFIX) logged since ``cursor``, and the next cursor."""
    from staffml_dagster.progress import PREFIX

    connection = instance.event_log_storage.get_records_for_run(run_id, cursor=cursor)
    lines = [
        r.event_log_entry.user_message[len(PREFIX) :]
        for r in connection.records
        if r.event_log_entry.dagster_event is None and (r.event_log_entry.user_message or "").startswith(PREFIX)
    ]
    return lines, connection.cursor


def interrupt_main_thread(error: type[BaseException]) -> None:
    """Raise ``error`` in the main thread at its next bytecode, as a signal handler would. A
    step waiting for a pool slot loops in Dagster's in-process executor, which only notes a
    SIGTERM or SIGINT for later (the next step), so nothing else ends the wait."""
    main = threading.main_thread().ident
    if main is not None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(main), ctypes.py_object(error))


@dataclass
class Watch:
    """What the watcher saw: the signal that stopped the run (None when none did). ``runs``: the
    ids of the runs the block launched, in order (the caller appends each), whose progress lines
    are said even when a run starts and ends between two looks of the watcher."""

    stopped_by: int | None = None
    stopped_waiting: bool = False
    runs: list[str] = field(default_factory=list)


@contextlib.contextmanager
def watching_run(
    instance: dg.DagsterInstance,
    current_run: Callable[[], str | None],
    pool: str,
    say: Callable[[str], None],
    every: float = 3.0,
    catch_signals: bool = True,
) -> Iterator[Watch]:
    """While the block executes runs in this process: say the current run's progress lines as
    they are logged; say (once per change) when it waits for a slot in ``pool``, and by whom;
    and on SIGTERM or SIGINT while it waits, mark it canceling and end the wait in the main
    thread, so the run ends CANCELED, its pending claim is given back and the process can exit.
    Outside a wait, Dagster itself interrupts the step that is executing. ``catch_signals``
    needs the main thread (signal.set_wakeup_fd)."""
    stop = threading.Event()
    watch = Watch()
    reader = writer = None
    previous_fd = None
    if catch_signals and threading.current_thread() is threading.main_thread():
        reader, writer = os.pipe()
        os.set_blocking(writer, False)
        previous_fd = signal.set_wakeup_fd(writer, warn_on_full_buffer=False)

    def on_signal(signum: int, waiting: str | None, run_id: str | None) -> None:
        watch.stopped_by = watch.stopped_by or signum
        name = signal.Signals(signum).name
        if not waiting or run_id is None:
            say(f"{name} received: the run stops at the step that is executing")
            return
        run = instance.get_run_by_id(run_id)
        if run is not None and run.status == dg.DagsterRunStatus.STARTED:
            instance.report_run_canceling(run, message=f"{name} received while waiting for a slot in pool '{pool}'")
        watch.stopped_waiting = True
        say(f"{name} received while waiting for a slot in pool '{pool}': the run is cancelled, it wrote nothing")
        interrupt_main_thread(dg.DagsterExecutionInterruptedError)

    def say_progress(cursors: dict[str, str | None]) -> None:
        """Say the lines logged since the last look, of every run launched so far."""
        for run_id in dict.fromkeys([*watch.runs, *([current_run()] if current_run() else [])]):
            lines, cursors[run_id] = progress_lines(instance, run_id, cursors.get(run_id))
            for line in lines:
                say(line)

    def loop() -> None:
        last = None
        cursors: dict[str, str | None] = {}
        received = None  # a signal not handled yet: kept until the storage answers
        while not stop.is_set():
            if reader is not None:
                ready, _, _ = select.select([reader], [], [], every)
                if ready:
                    signums = [b for b in os.read(reader, 64) if b in (signal.SIGINT, signal.SIGTERM)]
                    received = received or (signums[0] if signums else None)
            else:
                stop.wait(every)
            run_id = current_run()
            try:
                message = pool_waits(instance, run_id, pool) if run_id else None
                if message and message != last:
                    say(message)
                last = message
                if received and not watch.stopped_waiting:
                    on_signal(received, message, run_id)
                received = None
                say_progress(cursors)
            except Exception:  # noqa: BLE001 - the watcher must never break the run it watches
                pass
        try:  # the lines logged since the last look, once the block is done
            say_progress(cursors)
        except Exception:  # noqa: BLE001
            pass

    thread = threading.Thread(target=loop, name=f"watch-run-{pool}", daemon=True)
    thread.start()
    try:
        yield watch
    finally:
        stop.set()
        if writer is not None:
            os.write(writer, b"\0")  # wake the select
        thread.join(timeout=every + 1)
        if reader is not None:
            signal.set_wakeup_fd(previous_fd)
            os.close(reader)
            os.close(writer)
