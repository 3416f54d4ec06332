"""A run whose process was killed while holding an `anthropic` pool slot no longer blocks later
runs: its slot and its STARTED status are reclaimed, a waiting run says so and stops on SIGTERM;
`staffml run` records its runs where the UI lists them and prints their progress."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from staffml_dagster.runs import (
    CODE_LOCATION,
    PID_TAG,
    owner_tags,
    pool_waits,
    process_alive,
    reclaim_dead_runs,
    watching_run,
)

ROOT = Path(__file__).resolve().parents[1]

# a run with one asset in the `anthropic` pool that sleeps; the owner is tagged at launch (as
# `staffml run` does) or from inside the step (as a run launched from the UI is)
HOLDER = """
import sys, time
import dagster as dg
from staffml_dagster.runs import owner_tags, record_owner

@dg.asset(pool="anthropic")
def holder(context):
    if sys.argv[2] == "step":
        record_owner(context.instance, context.run_id)
    print("holding", flush=True)
    time.sleep(float(sys.argv[1]))

job = dg.Definitions(assets=[holder], jobs=[dg.define_asset_job("hold", [holder])]).resolve_job_def("hold")
result = job.execute_in_process(instance=dg.DagsterInstance.get(), tags=owner_tags() if sys.argv[2] == "launch" else {})
print("done", result.success, flush=True)
"""


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A Dagster instance whose `anthropic` pool has one slot."""
    (tmp_path / "dagster.yaml").write_text(
        f"storage:\n  sqlite:\n    base_dir: {tmp_path / 'storage'}\n"
        "concurrency:\n  pools:\n    default_limit: 1\ntelemetry:\n  enabled: false\n"
    )
    (tmp_path / "holder.py").write_text(HOLDER)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    return tmp_path


def _start(home, seconds, owner="launch"):
    env = {**os.environ, "DAGSTER_HOME": str(home), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, str(home / "holder.py"), str(seconds), owner],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        start_new_session=True,
    )


def _wait_holding(proc, limit=120):
    deadline = time.monotonic() + limit
    for line in proc.stdout:
        if line.startswith("holding"):
            return
        assert time.monotonic() < deadline, "the holder never started"
    raise AssertionError("the holder exited before holding its slot")


def _claimed(instance):
    return [s.run_id for s in instance.event_log_storage.get_concurrency_info("anthropic").claimed_slots]


def _kill(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


@pytest.mark.parametrize("owner", ["launch", "step"])
def test_killed_run_is_reclaimed_and_the_next_run_completes(home, owner):
    holder = _start(home, 600, owner)
    try:
        _wait_holding(holder)
    finally:
        _kill(holder)  # kill -9 while it holds the pool's only slot
    instance = dg.DagsterInstance.get()
    (dead,) = instance.get_runs()
    # the failure of issue 17: the dead run stays STARTED and keeps the slot
    assert dead.status == dg.DagsterRunStatus.STARTED and _claimed(instance) == [dead.run_id]
    assert process_alive(instance.get_run_by_id(dead.run_id).tags) is False

    if owner == "launch":
        reclaimed = reclaim_dead_runs(instance)
        assert [(r.run_id, r.status, r.slots) for r in reclaimed] == [(dead.run_id, "STARTED", 1)]
    else:  # the UI path: the daemon's sensor does it
        from staffml_dagster.definitions import reclaim_dead_runs_sensor

        skip = reclaim_dead_runs_sensor(dg.build_sensor_context(instance=instance))
        assert "reclaimed 1 run(s)" in skip.skip_message
    run = instance.get_run_by_id(dead.run_id)
    assert run.status == dg.DagsterRunStatus.FAILURE and _claimed(instance) == []
    assert reclaim_dead_runs(instance) == []  # nothing left to reclaim

    nxt = _start(home, 0)
    try:
        out, _ = nxt.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        _kill(nxt)
        pytest.fail("the next run still waits for the pool slot")
    assert "done True" in out


def test_live_run_is_left_alone_and_a_waiting_run_says_so(home):
    instance = dg.DagsterInstance.get()
    holder = _start(home, 600)
    waiter = None
    try:
        _wait_holding(holder)
        (live,) = instance.get_runs()
        assert reclaim_dead_runs(instance) == [] and _claimed(instance) == [live.run_id]

        waiter = _start(home, 0)
        deadline = time.monotonic() + 120
        message = None
        while message is None and time.monotonic() < deadline:
            others = [r.run_id for r in instance.get_runs() if r.run_id != live.run_id]
            message = pool_waits(instance, others[0], "anthropic") if others else None
            time.sleep(0.5)
        assert message and message.startswith(
            "holder waits for a slot in pool 'anthropic' (1 of 1 held by run(s) " + live.run_id[:8]
        )

        said = []
        with watching_run(instance, lambda: others[0], "anthropic", said.append, every=0.2, catch_signals=False):
            time.sleep(1.5)
        assert said == [message]  # once, not on every poll
    finally:
        _kill(holder)
        if waiter is not None:
            _kill(waiter)


def test_owner_tags_name_this_process_and_a_reused_pid_counts_as_dead():
    tags = owner_tags()
    assert tags[PID_TAG] == str(os.getpid()) and process_alive(tags) is True
    assert process_alive({**tags, "staffml/process_start": "1"}) is False  # same pid, another process
    assert process_alive({**tags, "staffml/host": "elsewhere"}) is None  # cannot be judged here
    assert process_alive({}) is None


def test_staffml_run_reclaims_before_it_launches_anything(monkeypatch, home):
    from staffml_dagster import cli, runs

    calls = []

    def reclaim(instance):
        calls.append(instance)
        raise RuntimeError("stop here")

    monkeypatch.setattr(runs, "reclaim_dead_runs", reclaim)
    with pytest.raises(RuntimeError, match="stop here"):
        cli.run_pipeline(["kv-cache-management|cloud"])
    assert len(calls) == 1 and dg.DagsterInstance.get().get_runs() == []


def _staffml_run(home, data, *args):
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "STAFFML_DATA_DIR": str(data),
        "STAFFML_EMBEDDER": "tfidf",
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "staffml_dagster.cli", "run", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=ROOT,
        start_new_session=True,
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_run_waiting_for_a_slot_says_so_and_stops_on_sigterm_or_ctrl_c(home, tmp_path, signum):
    """Issue 17: a run waiting on a held slot was silent and ignored SIGTERM and Ctrl-C."""
    instance = dg.DagsterInstance.get()
    holder = _start(home, 600)  # a live run holds the pool's only slot: nothing reclaims it
    run = None
    try:
        _wait_holding(holder)
        (live,) = instance.get_runs()
        run = _staffml_run(home, tmp_path / "data", "--partition", "kv-cache-management|cloud")
        seen = []
        deadline = time.monotonic() + 300
        for line in run.stdout:
            seen.append(line)
            if "questions waits for a slot in pool 'anthropic'" in line:
                break
            assert time.monotonic() < deadline, "".join(seen)
        else:
            pytest.fail("staffml run ended without waiting:\n" + "".join(seen))
        assert f"held by run(s) {live.run_id[:8]}" in seen[-1]
        os.kill(run.pid, signum)
        try:
            rest, _ = run.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"staffml run ignored {signal.Signals(signum).name} while waiting for the slot")
        assert run.returncode == 128 + signum, rest
        assert f"stopped by {signal.Signals(signum).name}" in rest and "while it waited for a pool slot" in rest
        waiting = [r for r in instance.get_runs() if r.job_name == "questions_job"]
        assert [r.status for r in waiting] == [dg.DagsterRunStatus.CANCELED]
        info = instance.event_log_storage.get_concurrency_info("anthropic")
        assert [s.run_id for s in info.claimed_slots] == [live.run_id]  # the holder keeps its slot
        assert not [s for s in info.pending_steps if s.run_id == waiting[0].run_id]  # the waiting claim is gone
        assert holder.poll() is None
    finally:
        _kill(holder)
        if run is not None:
            _kill(run)


def test_staffml_run_is_in_the_ui_history_and_prints_progress(home, warehouse, capsys, monkeypatch):
    """Issue 17: `make run` ran in-process with no origin, so the UI's Overview said "No runs";
    and it printed nothing for minutes."""
    from dagster._core.storage.tags import REPOSITORY_LABEL_TAG
    from dagster._core.workspace.load_target import WorkspaceFileTarget

    from staffml_dagster.cli import main
    from staffml_dagster.definitions import defs

    monkeypatch.setenv("STAFFML_EMBEDDER", "tfidf")
    key = "kv-cache-management|cloud"
    assert main(["run", "--partition", key]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^  cell_capacity: 1/1 partitions \(100%\), \d+ s elapsed, done$", out, flags=re.M), out
    assert re.search(r"^  questions: (\d+)/\1 cells of 1 partition\(s\) \(100%\)", out, flags=re.M), out
    assert re.search(r"^  validated_questions: (\d+)/\1 questions of 1 partition\(s\)", out, flags=re.M), out

    # the UI (make ui: workspace.yaml) lists a job's runs by its code location's label
    (origin,) = WorkspaceFileTarget([str(ROOT / "workspace.yaml")]).create_origins()
    assert origin.location_name == CODE_LOCATION
    assert "-w workspace.yaml" in next(
        line for line in (ROOT / "Makefile").read_text().splitlines() if "dagster dev" in line
    )
    label = f"{defs.get_repository_def().name}@{origin.location_name}"
    instance = dg.DagsterInstance.get()
    for job in ("design_stages", "questions_job", "corpus_job"):
        (run,) = instance.get_runs(filters=dg.RunsFilter(job_name=job, tags={REPOSITORY_LABEL_TAG: label}))
        assert run.remote_job_origin is not None and run.tags[PID_TAG] == str(os.getpid())
    (questions_run,) = instance.get_runs(filters=dg.RunsFilter(job_name="questions_job"))
    assert questions_run.tags["dagster/partition"] == key and questions_run.status == dg.DagsterRunStatus.SUCCESS


def test_make_run_launches_the_everything_job_over_every_partition(monkeypatch, home):
    from staffml_dagster import cli, runs
    from staffml_dagster.partitions import topic_track

    launched = []

    def execute(instance, job_name, **kwargs):
        launched.append((job_name, kwargs["tags"]))
        raise RuntimeError("stop here")

    monkeypatch.setattr(runs, "execute_job_run", execute)
    with pytest.raises(RuntimeError, match="stop here"):
        cli.run_pipeline()
    keys = topic_track.get_partition_keys()
    ((job, tags),) = launched
    assert (
        job == "everything"
        and tags["dagster/asset_partition_range_start"] == keys[0]
        and tags["dagster/asset_partition_range_end"] == keys[-1]
    )


def test_progress_of_a_run_that_starts_and_ends_between_two_looks_is_still_said(monkeypatch):
    """staffml run launches several runs; a quick one can start and end between two looks of the
    watcher, and its progress lines must still reach the console (seen on a fast machine)."""
    from staffml_dagster import runs

    logged = {"first": ["first: 1/1 partitions (100%), 1 s elapsed, done"], "second": ["second: 2/2 cells, done"]}

    def lines_since(instance, run_id, cursor):
        return (logged[run_id] if cursor is None else []), "end"

    monkeypatch.setattr(runs, "progress_lines", lines_since)
    monkeypatch.setattr(runs, "pool_waits", lambda *a: None)
    said: list[str] = []
    current = {"run_id": None}
    with runs.watching_run(
        None, lambda: current["run_id"], "anthropic", said.append, every=60, catch_signals=False
    ) as watch:
        for run_id in ("first", "second"):  # both begin and end long before the watcher's next look
            current["run_id"] = run_id
            watch.runs.append(run_id)
    assert said == logged["first"] + logged["second"]
