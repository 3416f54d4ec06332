"""The docker-compose deployment: its files, and the same shape run as processes here.

The first tests read docker-compose.yml, deploy/ and the Dockerfile (no Docker engine is
needed). The integration test runs PostgreSQL, the gRPC code server, dagster-webserver and
dagster-daemon as separate processes on 127.0.0.1 (tests/deployment.py) and drives them the
way a person would through the UI: GraphQL launches the design stages, a backfill of two
(topic, track) partitions and starts the capacity schedule, which the daemon then ticks.
"""

from __future__ import annotations

import re
import sys
import time

import pandas as pd
import pytest
import yaml

from tests.deployment import (
    DEPLOY,
    LOCATION,
    REPOSITORY,
    ROOT,
    postgres_missing_reason,
    release_shared_deployment,
    shared_deployment,
)

COMPOSE = ROOT / "docker-compose.yml"
DAGSTER_SERVICES = ("code-server", "webserver", "daemon")
PG_ENV = ("DAGSTER_PG_USERNAME", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_DB")


# --------------------------------------------------------------------------- the files


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _env_refs(value: str) -> set[str]:
    return set(re.findall(r"(?<!\$)\$\{([A-Z0-9_]+)", value))  # $${...} is a literal $ for the container


def test_compose_services_ports_and_volumes(compose):
    services = compose["services"]
    assert set(services) == {"postgres", *DAGSTER_SERVICES}
    pg = services["postgres"]
    assert pg["image"].split(":")[0] == "postgres"
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    for name in DAGSTER_SERVICES:
        svc = services[name]
        assert svc["depends_on"]["postgres"]["condition"] == "service_healthy", name
        assert "warehouse:/opt/dagster/data" in svc["volumes"], f"{name} must share the warehouse volume"
        assert svc["build"]["dockerfile"] == "Dockerfile" and svc["image"] == services["code-server"]["image"]
    assert services["webserver"]["depends_on"]["code-server"]["condition"] == "service_healthy"
    assert services["daemon"]["depends_on"]["code-server"]["condition"] == "service_healthy"

    code = services["code-server"]["command"]
    assert code[:3] == ["dagster", "code-server", "start"] and code[code.index("-p") + 1] == "4000"
    assert (
        code[code.index("-m") + 1] == "staffml_dagster.definitions"
        and code[code.index("--location-name") + 1] == LOCATION
    )
    web = services["webserver"]["command"]
    assert web[0] == "dagster-webserver" and web[web.index("-p") + 1] == "3000"
    assert services["webserver"]["ports"] == ["127.0.0.1:${DAGSTER_WEBSERVER_PORT:-3000}:3000"], (
        "the UI is published on the loopback only"
    )
    assert services["daemon"]["command"][:2] == ["dagster-daemon", "run"]
    workspace_in_image = "/opt/dagster/dagster_home/workspace.yaml"
    assert web[web.index("-w") + 1] == workspace_in_image and services["daemon"]["command"][-1] == workspace_in_image
    assert {"pgdata", "warehouse"} <= set(compose["volumes"])


def test_compose_environment_wiring(compose):
    services = compose["services"]
    pg_env = services["postgres"]["environment"]
    for name in DAGSTER_SERVICES:
        env = services[name]["environment"]
        for key in PG_ENV:
            assert key in env, f"{name} lacks {key}"
        assert env["DAGSTER_PG_HOST"] == "postgres" and env["DAGSTER_PG_PORT"] == "5432"
        assert env["DAGSTER_CODE_SERVER_HOST"] == "code-server" and env["DAGSTER_CODE_SERVER_PORT"] == "4000"
        assert env["STAFFML_DATA_DIR"] == "/opt/dagster/data"
        # the same credentials on both sides, from the environment, and the password is required
        assert env["DAGSTER_PG_USERNAME"] == pg_env["POSTGRES_USER"] and env["DAGSTER_PG_DB"] == pg_env["POSTGRES_DB"]
        assert env["DAGSTER_PG_PASSWORD"] == pg_env["POSTGRES_PASSWORD"]
        assert _env_refs(env["DAGSTER_PG_PASSWORD"]) == {"DAGSTER_PG_PASSWORD"} and ":?" in env["DAGSTER_PG_PASSWORD"]
    # the key reaches only the container where runs execute, passed through (no value in the file)
    assert "ANTHROPIC_API_KEY" in services["code-server"]["environment"]
    assert services["code-server"]["environment"]["ANTHROPIC_API_KEY"] is None
    assert all("ANTHROPIC_API_KEY" not in services[s]["environment"] for s in ("webserver", "daemon", "postgres"))
    # every ${VAR} the file uses is documented in .env.example, except the pass-through key
    example = dict(
        line.split("=", 1)
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    used = _env_refs(COMPOSE.read_text())
    assert used <= set(example), f"not in .env.example: {used - set(example)}"
    assert "ANTHROPIC_API_KEY" not in example


def test_no_secret_is_written_in_the_files():
    texts = {
        p.name: p.read_text()
        for p in (COMPOSE, DEPLOY / "dagster.yaml", DEPLOY / "workspace.yaml", ROOT / "Dockerfile")
    }
    for name, text in texts.items():
        assert not re.search(r"sk-ant-", text), name
        # a password is only ever an env reference: ${VAR...} in compose, {env: VAR} (next line) in dagster.yaml
        assert not re.search(
            r"(?im)^[ \t-]*(POSTGRES_PASSWORD|DAGSTER_PG_PASSWORD|password)[ \t]*[:=][ \t]*['\"]?[A-Za-z0-9]", text
        ), f"{name} writes a password"


def test_dockerfile_installs_cpu_torch_then_the_project():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"(?m)^FROM python:3\.11-slim\b", text)
    torch = text.index("pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu")
    project = text.index('pip install ".[deploy]"')
    assert torch < project
    for copied in (
        "COPY specs",
        "COPY assets",
        "COPY deploy/dagster.yaml deploy/workspace.yaml /opt/dagster/dagster_home/",
    ):
        assert copied in text
    for env in (
        "DAGSTER_HOME=/opt/dagster/dagster_home",
        "STAFFML_SPECS_DIR=",
        "STAFFML_ASSETS_DIR=",
        "STAFFML_DATA_DIR=/opt/dagster/data",
    ):
        assert env in text
    assert "ANTHROPIC_API_KEY" not in text


def test_deploy_instance_config_is_a_valid_postgres_instance(tmp_path, monkeypatch):
    from dagster._config import process_config
    from dagster._core.instance.config import dagster_instance_config
    from dagster._core.instance.ref import InstanceRef
    from dagster_postgres import DagsterPostgresStorage
    from dagster_postgres.utils import pg_url_from_config

    (tmp_path / "dagster.yaml").write_text((DEPLOY / "dagster.yaml").read_text())
    config, custom_class = dagster_instance_config(str(tmp_path))  # validates against the instance schema
    assert custom_class is None
    db = config["storage"]["postgres"]["postgres_db"]
    assert {k: db[k] for k in ("username", "password", "hostname", "db_name", "port")} == {
        "username": {"env": "DAGSTER_PG_USERNAME"},
        "password": {"env": "DAGSTER_PG_PASSWORD"},
        "hostname": {"env": "DAGSTER_PG_HOST"},
        "db_name": {"env": "DAGSTER_PG_DB"},
        "port": {"env": "DAGSTER_PG_PORT"},
    }
    assert db["scheme"] == "postgresql+psycopg2"
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert config["telemetry"]["enabled"] is False
    # the same concurrency shape as the local instance (dagster.yaml at the project root)
    local = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    assert config["concurrency"] == local["concurrency"]

    ref = InstanceRef.from_dir(str(tmp_path))
    assert (ref.storage_data.module_name, ref.storage_data.class_name) == ("dagster_postgres", "DagsterPostgresStorage")
    assert (ref.scheduler_data.class_name, ref.run_launcher_data.class_name) == (
        "DagsterDaemonScheduler",
        "DefaultRunLauncher",
    )
    env = {
        "DAGSTER_PG_USERNAME": "u",
        "DAGSTER_PG_PASSWORD": "p w",
        "DAGSTER_PG_HOST": "db",
        "DAGSTER_PG_PORT": "6543",
        "DAGSTER_PG_DB": "d",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    processed = process_config(DagsterPostgresStorage.config_type(), ref.storage_data.config_dict)
    assert processed.success, processed.errors
    assert pg_url_from_config(processed.value) == "postgresql+psycopg2://u:p%20w@db:6543/d"


def test_workspace_points_at_the_code_server_from_env():
    workspace = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())
    (entry,) = workspace["load_from"]
    grpc = entry["grpc_server"]
    assert grpc == {
        "host": {"env": "DAGSTER_CODE_SERVER_HOST"},
        "port": {"env": "DAGSTER_CODE_SERVER_PORT"},
        "location_name": LOCATION,
    }


# --------------------------------------------------------------------------- the running deployment

PARTITIONS = ["kv-cache-management|cloud", "kv-cache-management|edge"]
BACKFILLED = ["questions", "question_embeddings", "validated_questions"]
DESIGN_ASSETS = ["skills", "zones", "levels", "tracks", "topics", "hardware_platforms", "applicability_matrix", "cells"]
# a guard against hanging, not a timing assertion
RUN_TIMEOUT = 240.0

LAUNCH_RUN = """
mutation($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on Error { message }
  }
}"""

RUN_STATUS = """
query($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { runId status jobName tags { key value } }
    ... on Error { message }
  }
}"""

LAUNCH_BACKFILL = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
  }
}"""

BACKFILL_STATUS = """
query($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { id status partitionNames runs { runId status tags { key value } } }
    ... on Error { message }
  }
}"""

START_SCHEDULE = """
mutation($selector: ScheduleSelector!) {
  startSchedule(scheduleSelector: $selector) {
    __typename
    ... on ScheduleStateResult { scheduleState { id status } }
    ... on Error { message }
  }
}"""

STOP_SCHEDULE = """
mutation($id: String!) {
  stopRunningSchedule(id: $id) {
    __typename
    ... on ScheduleStateResult { scheduleState { status } }
    ... on Error { message }
  }
}"""

SCHEDULE = """
query($selector: ScheduleSelector!) {
  scheduleOrError(scheduleSelector: $selector) {
    __typename
    ... on Schedule {
      name cronSchedule
      scheduleState { status ticks(limit: 10) { tickId status timestamp runIds skipReason error { message } } }
    }
    ... on Error { message }
  }
}"""

TERMINATE = """
mutation($runId: String!) {
  terminateRun(runId: $runId) {
    __typename
    ... on TerminateRunFailure { message }
    ... on Error { message }
  }
}"""

FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


def test_graphql_documents_match_the_schema():
    """Every query and mutation the integration test sends is valid for this dagster-graphql."""
    from dagster_graphql.schema import create_schema
    from graphql import parse, validate

    import tests.deployment as helpers

    schema = create_schema().graphql_schema
    documents = {
        name: value
        for module in (helpers, sys.modules[__name__])
        for name, value in vars(module).items()
        if name.isupper() and isinstance(value, str) and value.lstrip().startswith(("query", "mutation"))
    }
    assert len(documents) >= 10
    for name, document in documents.items():
        assert [e.message for e in validate(schema, parse(document))] == [], name


def _poll(what: str, deployment, fn, timeout: float = RUN_TIMEOUT, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in deployment.processes:
            assert p.alive(), f"{p.name} died while waiting for {what}\n{deployment.logs()}"
        value = fn()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"gave up waiting for {what} after {timeout:.0f} s\n{deployment.logs()}")


def _run(deployment, run_id: str) -> dict:
    out = deployment.graphql(RUN_STATUS, {"runId": run_id})["runOrError"]
    assert out["__typename"] == "Run", out
    return out


def _wait_run(deployment, run_id: str) -> dict:
    return _poll(f"run {run_id}", deployment, lambda: (r := _run(deployment, run_id))["status"] in FINISHED and r)


@pytest.fixture(scope="module")
def deployment(request):
    missing = postgres_missing_reason()
    if missing:
        pytest.skip(missing)
    dep = shared_deployment(request)  # the one the browser test started, if it ran first
    assert dep.postgres is not None
    yield dep
    release_shared_deployment()  # every process stopped and checked, PostgreSQL stopped


@pytest.fixture
def instance(deployment, monkeypatch):
    """The servers' instance, opened in this process from the same DAGSTER_HOME and environment."""
    for key in (*PG_ENV, "DAGSTER_ARTIFACTS_DIR", "DAGSTER_COMPUTE_LOGS_DIR"):
        monkeypatch.setenv(key, deployment.env[key])
    opened = deployment.instance()
    yield opened
    opened.dispose()


@pytest.mark.integration
def test_deployment_backfills_partitions_and_the_daemon_ticks_the_schedule(deployment, instance):
    dep = deployment
    import dagster as dg
    from dagster._core.storage.dagster_run import RunsFilter
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    from staffml_dagster.partitions import topic_track

    t0 = time.monotonic()

    def mark(label: str) -> None:  # progress in the captured output (shown on failure, or with -s)
        print(f"[deployment test] {time.monotonic() - t0:6.1f} s  {label}", flush=True)

    # the servers' instance is the Postgres one of deploy/dagster.yaml
    assert isinstance(instance.run_storage, PostgresRunStorage)
    assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
    assert instance.get_runs_count() == 0

    # 1. the design stages, launched like the UI's Materialize button: queued, then the daemon
    #    hands the run to the code server, which executes it
    selector = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}
    out = dep.graphql(
        LAUNCH_RUN, {"params": {"selector": {**selector, "jobName": "design_stages"}, "runConfigData": {}}}
    )["launchRun"]
    assert out["__typename"] == "LaunchRunSuccess", out
    design_id = out["run"]["runId"]
    design = _wait_run(dep, design_id)
    mark(f"design_stages run {design['status']}")
    assert design["status"] == "SUCCESS", dep.logs()
    events = {e.dagster_event_type.value for e in instance.all_logs(design_id) if e.is_dagster_event}
    assert {"PIPELINE_ENQUEUED", "PIPELINE_STARTING", "PIPELINE_SUCCESS"} <= events, (
        "queued, then launched by the daemon"
    )
    for asset in DESIGN_ASSETS:
        assert instance.get_latest_materialization_event(dg.AssetKey(asset)) is not None, asset
        assert (dep.warehouse / asset / "part.parquet").exists(), asset
    matrix = pd.read_parquet(dep.warehouse / "applicability_matrix" / "part.parquet")
    for key in PARTITIONS:
        topic, track = key.split("|")
        assert matrix[(matrix.topic == topic) & (matrix.track == track)].applicable.item(), f"{key} must be applicable"

    # 2. a backfill of two (topic, track) partitions of the questions and their validation
    params = {
        "partitionNames": PARTITIONS,
        "assetSelection": [{"path": [a]} for a in BACKFILLED],
        "title": "deployment test",
    }
    out = dep.graphql(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
    assert out["__typename"] == "LaunchBackfillSuccess", out
    backfill_id = out["backfillId"]

    def backfill_done():
        b = dep.graphql(BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
        assert b["__typename"] == "PartitionBackfill", b
        return b if b["status"] not in ("REQUESTED", "CANCELING", "FAILING") else None

    backfill = _poll(f"backfill {backfill_id}", dep, backfill_done)
    mark(f"backfill {backfill['status']}")
    assert backfill["status"] in ("COMPLETED_SUCCESS", "COMPLETED"), f"{backfill}\n{dep.logs()}"
    assert sorted(backfill["partitionNames"]) == sorted(PARTITIONS)
    runs = backfill["runs"]
    assert runs and all(r["status"] == "SUCCESS" for r in runs), runs
    covered = set()  # a run carries one partition, or a range (single-run backfill policy)
    for r in runs:
        tags = {t["key"]: t["value"] for t in r["tags"]}
        assert tags["dagster/backfill"] == backfill_id
        if "dagster/partition" in tags:
            covered.add(tags["dagster/partition"])
        else:
            span = dg.PartitionKeyRange(
                tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]
            )
            covered |= set(topic_track.get_partition_keys_in_range(span))
    assert covered == set(PARTITIONS), [r["tags"] for r in runs]

    for asset in BACKFILLED:
        materialized = instance.get_materialized_partitions(dg.AssetKey(asset))
        assert set(PARTITIONS) <= set(materialized), f"{asset}: {materialized}"
        assert len(materialized) == len(PARTITIONS), f"{asset}: only the backfilled partitions: {materialized}"
    for key in PARTITIONS:
        topic, track = key.split("|")
        questions = pd.read_parquet(dep.warehouse / "questions" / f"topic={topic}" / f"track={track}" / "part.parquet")
        validated = pd.read_parquet(
            dep.warehouse / "validated_questions" / f"topic={topic}" / f"track={track}" / "part.parquet"
        )
        assert len(questions) > 0 and len(validated) == len(questions), key
        assert set(validated["id"]) == set(questions["id"])
    assert not (dep.warehouse / "questions" / "topic=kv-cache-management" / "track=mobile").exists(), (
        "only the two partitions"
    )

    # 3. the real capacity_schedule, its cron taken from specs (the deployment's specs copy says
    #    every minute): started through GraphQL, evaluated by the daemon's scheduler
    schedule_selector = {**selector, "scheduleName": "capacity_schedule"}
    schedule = dep.graphql(SCHEDULE, {"selector": schedule_selector})["scheduleOrError"]
    assert schedule["__typename"] == "Schedule" and schedule["cronSchedule"] == "* * * * *", schedule
    assert schedule["scheduleState"]["status"] == "STOPPED" and schedule["scheduleState"]["ticks"] == []
    started = dep.graphql(START_SCHEDULE, {"selector": schedule_selector})["startSchedule"]
    assert started["__typename"] == "ScheduleStateResult" and started["scheduleState"]["status"] == "RUNNING", started
    mark("capacity_schedule started")

    def tick_with_run():
        ticks = dep.graphql(SCHEDULE, {"selector": schedule_selector})["scheduleOrError"]["scheduleState"]["ticks"]
        failed = [t for t in ticks if t["status"] == "FAILURE"]
        assert not failed, failed
        return next((t for t in ticks if t["status"] == "SUCCESS" and t["runIds"]), None)

    try:
        tick = _poll("the daemon to tick capacity_schedule", dep, tick_with_run, timeout=150.0, interval=2.0)
    finally:
        stopped = dep.graphql(STOP_SCHEDULE, {"id": started["scheduleState"]["id"]})["stopRunningSchedule"]
    assert stopped["scheduleState"]["status"] == "STOPPED", stopped
    mark("the daemon ticked capacity_schedule")
    (run_id,) = tick["runIds"]
    run = _run(dep, run_id)
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert run["jobName"] == "capacity_job"
    assert tags["dagster/schedule_name"] == "capacity_schedule"
    all_keys = topic_track.get_partition_keys()
    assert (tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]) == (
        all_keys[0],
        all_keys[-1],
    )
    by_schedule = instance.get_runs(filters=RunsFilter(tags={"dagster/schedule_name": "capacity_schedule"}))
    assert [r.run_id for r in by_schedule] == [run_id]

    # the daemon's run queue hands the scheduled run to the code server; measuring all 344
    # partitions takes far longer than a test, so once it is launched it is terminated
    launched = _poll(
        f"scheduled run {run_id} to start in the code server",
        dep,
        lambda: (r := _run(dep, run_id))["status"] not in ("QUEUED", "NOT_STARTED", "STARTING") and r,
    )
    assert launched["status"] in ("STARTED", *FINISHED), launched
    mark(f"scheduled run {launched['status']}")
    terminated = launched["status"] not in FINISHED
    if terminated:
        out = dep.graphql(TERMINATE, {"runId": run_id})["terminateRun"]
        assert out["__typename"] == "TerminateRunSuccess", out
    final = _wait_run(dep, run_id)
    mark(f"scheduled run {final['status']}")
    events = {e.dagster_event_type.value for e in instance.all_logs(run_id) if e.is_dagster_event}
    assert {"PIPELINE_ENQUEUED", "PIPELINE_STARTING", "PIPELINE_START"} <= events, "queued, launched, executing"
    if terminated:
        assert final["status"] == "CANCELED", final
