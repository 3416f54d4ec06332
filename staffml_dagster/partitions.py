"""The (topic, track) partitioning of every per-cell asset, built from specs/.

On the CLI a key reads ``"<topic>|<track>"`` (dimension names sorted: topic, track).
"""

from __future__ import annotations

import dagster as dg
import pandas as pd

from staffml_dagster.specs import Specs, cached_specs


def topic_track_partitions(specs: Specs) -> dg.MultiPartitionsDefinition:
    return dg.MultiPartitionsDefinition(
        {
            "topic": dg.StaticPartitionsDefinition([t.id for t in specs.topics.topics]),
            "track": dg.StaticPartitionsDefinition([t.id for t in specs.tracks.tracks]),
        }
    )


def applicable_pairs(matrix: pd.DataFrame) -> list[tuple[str, str]]:
    """The (topic, track) pairs the ``applicability_matrix`` admits, in the matrix's order."""
    admitted = matrix["applicable"].astype(bool)
    return list(zip(matrix.loc[admitted, "topic"], matrix.loc[admitted, "track"]))


def check_partition_keys(keys: list[str], specs: Specs) -> None:
    """Raise ValueError naming the first key that is not ``"<topic>|<track>"`` of a topic in
    specs/topics.yaml and a track in specs/tracks.yaml."""
    for key in keys:
        topic, sep, track = key.partition("|")
        if not sep or "|" in track:
            raise ValueError(f'partition {key!r}: expected "<topic>|<track>", e.g. "kv-cache-management|cloud"')
        if topic not in specs.topic_by_id:
            raise ValueError(f"partition {key!r}: unknown topic {topic!r} (not in topics.yaml)")
        if track not in specs.track_by_id:
            raise ValueError(
                f"partition {key!r}: unknown track {track!r}; expected one of {', '.join(specs.track_by_id)}"
            )


topic_track = topic_track_partitions(cached_specs())
