"""Runs whose process died: find them, mark them failed and give back their pool slots.

A ``kill -9`` (or an OOM kill) of the process executing a run leaves the run STARTED for ever
and keeps the concurrency-pool slots its steps claimed (the `anthropic` pool of `questions`),
so later runs wait on a slot no one will free. Every run records the process executing it in
its tags (:func:`owner_tags`, :func:`record_owner`); :func:`reclaim_dead_runs` checks those
processes on this host and, for each one that is gone, reports the run failed and frees its
slots. Slots still held by runs that already ended are freed as well. A run whose process
lives on another host, or that carries no owner tags, is left alone: it cannot be judged here.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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
        instance.report_run_failed(run, message=(
            f"the process executing this run (pid {run.tags[PID_TAG]} on {run.tags[HOST_TAG]}) is gone "
            "(killed or out of memory); marked failed and its pool slots freed by staffml"))
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
    return (f"{', '.join(sorted(set(waiting)))} waits for a slot in pool '{pool}' ({len(info.claimed_slots)} of "
            f"{info.slot_count} {held_by}); runs of dead processes are reclaimed when staffml run starts, "
            "live ones finish or can be cancelled in the UI")


@contextlib.contextmanager
def watching_pool(instance: dg.DagsterInstance, current_run: Callable[[], str | None], pool: str,
                  say: Callable[[str], None], every: float = 3.0) -> Iterator[None]:
    """While the block runs, say (once per change) when the current run waits on ``pool``."""
    stop = threading.Event()

    def watch() -> None:
        last = None
        while not stop.wait(every):
            run_id = current_run()
            try:
                message = pool_waits(instance, run_id, pool) if run_id else None
            except Exception:  # noqa: BLE001 - the watcher must never break the run it watches
                message = None
            if message and message != last:
                say(message)
            last = message

    thread = threading.Thread(target=watch, name=f"watch-pool-{pool}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=every + 1)
