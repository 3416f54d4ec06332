"""The questions of each (topic, track) partition, from the generator resource's backend."""

import dagster as dg
import pandas as pd

from staffml_dagster.generation.anthropic import GENERATOR_VERSION as ANTHROPIC_VERSION
from staffml_dagster.generation.anthropic import AnthropicBackendError
from staffml_dagster.generation.backend import QUESTION_COLUMNS, GeneratorBackend
from staffml_dagster.generation.offline import GENERATOR_VERSION
from staffml_dagster.generation.partition import cell_targets, empty_questions
from staffml_dagster.partitions import topic_track
from staffml_dagster.progress import ProgressLog
from staffml_dagster.resources import GeneratorResource, SpecsResource
from staffml_dagster.runs import record_owner
from staffml_dagster.stages.metadata import add_partition_metadata, markdown_table
from staffml_dagster.storage import DuckDBWarehouse

GROUP = "questions"

# Top up a partition once its measured capacity changes (cell_capacity re-materialized);
# a change of the design stages is left to a deliberate backfill.
TOP_UP = (
    dg.AutomationCondition.any_deps_updated()
    .ignore(dg.AssetSelection.assets("cells", "applicability_matrix"))
    .since_last_handled()
    & ~dg.AutomationCondition.any_deps_missing()
    & ~dg.AutomationCondition.in_progress()
).with_label("top up when the measured capacity changes")


class QuestionsConfig(dg.Config):
    seed: int | None = None


def backend_metadata(backend: GeneratorBackend) -> dict:
    """Cost, calls and failures of a backend that reports them (Claude), for the partition's metadata."""
    summary = backend.run_summary()
    if summary is None:
        return {}
    rows = [{"cell": f.get("cell"), "reason": f.get("reason"), "raw": f.get("raw")} for f in backend.failures]
    return {
        "generation": dg.MetadataValue.json(summary),
        "generation_failures": dg.MetadataValue.md(
            markdown_table(pd.DataFrame(rows), rows=20, width=160) if rows else "none"
        ),
    }


def render_question(row: pd.Series | dict) -> str:
    return (
        f"#### {row['title']}  \n*{row['zone']} · {row['level']} · {row['track']}*\n\n"
        f"{row['scenario']}\n\n**Question.** {row['question']}\n\n**Solution.** {row['realistic_solution']}\n\n"
        f"{row['common_mistake']}\n\n{row['napkin_math']}\n"
    )


def questions_metadata(df: pd.DataFrame) -> dict:
    if df.empty:
        return {"dagster/row_count": dg.MetadataValue.int(0)}
    pivot = (
        df.groupby(["zone", "level"]).size().unstack(fill_value=0)
    )  # the counts of pivot_table, in half the time (once per partition)
    samples = df.sample(n=min(5, len(df)), random_state=0)
    return {
        "dagster/row_count": dg.MetadataValue.int(len(df)),
        "zone_x_level": dg.MetadataValue.md(pivot.to_markdown()),
        "item_models": dg.MetadataValue.md(df["item_model"].value_counts().to_frame().to_markdown()),
        "preview": dg.MetadataValue.md(
            markdown_table(df, ["id", "zone", "level", "title", "answer_value", "answer_unit"], rows=10)
        ),
        "samples": dg.MetadataValue.md("\n\n---\n\n".join(render_question(r) for _, r in samples.iterrows())),
    }


def partition_plan(
    loaded,
    topic: str,
    track: str,
    cells: pd.DataFrame,
    applicability_matrix: pd.DataFrame,
    cell_capacity: pd.DataFrame,
    warehouse: DuckDBWarehouse,
) -> tuple[pd.DataFrame | None, pd.DataFrame | None, str | None]:
    """One partition's cells with their targets and what they hold (``filled``), its previous
    questions (as ``warehouse`` holds them), or the reason it is inapplicable."""
    verdict = applicability_matrix[(applicability_matrix["topic"] == topic) & (applicability_matrix["track"] == track)]
    if verdict.empty:
        raise dg.Failure(
            f"partition {topic}|{track} is not in the applicability matrix; rematerialize applicability_matrix"
        )
    if not bool(verdict.iloc[0]["applicable"]):
        return None, None, str(verdict.iloc[0]["justification"])
    previous = warehouse.read_partition("questions", {"topic": topic, "track": track})
    mine = cell_targets(
        cells[(cells["topic"] == topic) & (cells["track"] == track)],
        cell_capacity,
        previous,
        loaded.generation.questions_per_cell,
    )
    held = previous.groupby(["zone", "level"]).size().to_dict() if previous is not None and len(previous) else {}
    mine["filled"] = [int(held.get((r.zone, r.level), 0)) for r in mine.itertuples()]
    return mine, previous, None


def run_questions(
    loaded,
    backend: GeneratorBackend,
    partitions: list[tuple[str, str]],
    cells: pd.DataFrame,
    applicability_matrix: pd.DataFrame,
    cell_capacity: pd.DataFrame,
    seed: int | None,
    warehouse: DuckDBWarehouse,
    progress: ProgressLog | None = None,
) -> tuple[dict[tuple[str, str], pd.DataFrame], dict]:
    """The questions of every (topic, track) partition of a run and what happened to them;
    what each partition held before is read from ``warehouse``, the folder its output goes to.

    An inapplicable partition is empty with its reason. The cells of all applicable partitions
    are generated in gap order (quality/gaps.py: open gaps first, mastery and optimization zones
    and underfilled critical topics ahead), so when a budget stops the backend, the cells it
    reached are the most important ones: they are written, and every cell it did not reach keeps
    the questions it held (nothing is lost). Other backend errors fail the run, writing nothing.
    ``progress`` counts the cells generated."""
    from staffml_dagster.generation.anthropic import BudgetExceeded
    from staffml_dagster.generation.partition import generate_in_order
    from staffml_dagster.quality.gaps import gap_priority, generation_order

    frames: dict[tuple[str, str], pd.DataFrame] = {}
    plans: dict[tuple[str, str], tuple[pd.DataFrame, pd.DataFrame | None]] = {}
    outcome: dict = {"inapplicable": {}, "kept": 0, "dropped": 0, "stopped": None, "not_reached": [], "previous": {}}
    for topic, track in partitions:
        mine, previous, reason = partition_plan(
            loaded, topic, track, cells, applicability_matrix, cell_capacity, warehouse
        )
        if reason is not None:
            frames[(topic, track)] = empty_questions()
            outcome["inapplicable"][f"{topic}|{track}"] = reason
        else:
            plans[(topic, track)] = (mine, previous)
    if plans:
        critical, zones = gap_priority(loaded)
        order = generation_order(pd.concat([m for m, _ in plans.values()], ignore_index=True), critical, zones)
        if progress is not None:
            progress.start(len(order))
        try:
            done = generate_in_order(
                loaded, backend, order, seed, stop_on=(BudgetExceeded,), on_cell=progress.advance if progress else None
            )
        except AnthropicBackendError as exc:  # retries exhausted, ...: nothing is written for this run
            raise dg.Failure(str(exc), metadata=backend_metadata(backend)) from None
        outcome["stopped"], outcome["not_reached"] = done.stopped, done.not_reached
        not_reached = set(done.not_reached)
        for (topic, track), (mine, previous) in plans.items():
            generated = [row for r in mine.itertuples() for row in done.rows.get((topic, track, r.zone, r.level), [])]
            parts = [pd.DataFrame(generated, columns=QUESTION_COLUMNS)] if generated else []
            if previous is not None and len(previous):
                keep = [(topic, track, z, lv) in not_reached for z, lv in zip(previous["zone"], previous["level"])]
                if any(keep):  # a cell the stop left unreached keeps what it held
                    parts.append(previous[keep].reindex(columns=QUESTION_COLUMNS))
            df = pd.concat(parts, ignore_index=True) if parts else empty_questions()
            frames[(topic, track)] = df
            kept = set(previous["id"]) if previous is not None and len(previous) else set()
            mine_kept, mine_dropped = len(kept & set(df["id"])), len(kept - set(df["id"]))
            outcome["previous"][f"{topic}|{track}"] = {"kept": mine_kept, "dropped": mine_dropped}
            outcome["kept"] += mine_kept
            outcome["dropped"] += mine_dropped
    return frames, outcome


@dg.asset(
    partitions_def=topic_track,
    group_name=GROUP,
    kinds={"pandas", "parquet"},
    code_version=f"{GENERATOR_VERSION}+{ANTHROPIC_VERSION}",
    pool="anthropic",
    automation_condition=TOP_UP,
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def questions(
    context: dg.AssetExecutionContext,
    config: QuestionsConfig,
    specs: SpecsResource,
    generator: GeneratorResource,
    warehouse: DuckDBWarehouse,
    cells: pd.DataFrame,
    applicability_matrix: pd.DataFrame,
    cell_capacity: pd.DataFrame,
) -> pd.DataFrame:
    """Questions of each (topic, track) partition: every applicable cell filled up to its target with distinct questions
    from the generator backend (offline item models by default, Claude with the `generator` resource set to anthropic).
    An inapplicable partition is an empty table with the reason in metadata. A backfill of many partitions is one run,
    which generates the cells of all its partitions in gap order (open_gaps: mastery and optimization zones and
    underfilled critical topics first); a spent budget stops it there, the cells reached are written and the others keep
    what they held. Runs in the `anthropic` concurrency pool, whose limit is set in dagster.yaml.
    """
    record_owner(
        context.instance, context.run_id
    )  # this process holds an `anthropic` slot: tag it so a dead one is reclaimed
    loaded = specs.load()
    backend = generator.create_backend(warehouse)
    partitions = []
    for key in context.partition_keys:
        dims = topic_track.get_partition_key_from_str(key).keys_by_dimension
        partitions.append((dims["topic"], dims["track"]))
    progress = ProgressLog(context.log.info, "questions", f"cells of {len(partitions)} partition(s)", 0)
    by_partition, outcome = run_questions(
        loaded, backend, partitions, cells, applicability_matrix, cell_capacity, config.seed, warehouse, progress
    )
    frames = [by_partition[p] for p in partitions]
    inapplicable = outcome["inapplicable"]
    filled = [f for f in frames if len(f)]
    df = pd.concat(filled, ignore_index=True) if filled else empty_questions()
    capacity_source = (
        "measured (cell_capacity)"
        if len(cell_capacity)
        else f"interim bound of {loaded.generation.questions_per_cell} per cell (capacity not measured yet)"
    )

    def partition_meta(key: str, rows: pd.DataFrame) -> dict:
        if key in inapplicable:
            return {**questions_metadata(rows), "inapplicable": inapplicable[key]}
        previous = outcome["previous"][key]
        return {
            **questions_metadata(rows),
            "capacity_source": capacity_source,
            "kept_from_previous": dg.MetadataValue.int(previous["kept"]),
            "dropped_from_previous": dg.MetadataValue.int(previous["dropped"]),
        }

    meta = {
        **add_partition_metadata(context, df, partition_meta),
        **backend_metadata(backend),
        "partitions": dg.MetadataValue.int(len(frames)),
    }
    if len(frames) > 1:
        meta.update(
            {
                "run_row_count": dg.MetadataValue.int(len(df)),
                "run_inapplicable_partitions": dg.MetadataValue.int(len(inapplicable)),
            }
        )
    if outcome["stopped"]:
        context.log.warning(
            f"generation stopped after the most important cells: {outcome['stopped']}; "
            f"{len(outcome['not_reached'])} cell(s) not reached keep what they held"
        )
        meta.update(
            {
                "stopped": outcome["stopped"],
                "cells_not_reached": dg.MetadataValue.int(len(outcome["not_reached"])),
                "not_reached": dg.MetadataValue.md(
                    "\n".join(f"- {'|'.join(c)}" for c in outcome["not_reached"][:40]) or "none"
                ),
            }
        )
    context.add_output_metadata(meta)
    return df
