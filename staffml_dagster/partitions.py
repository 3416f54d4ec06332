"""The (topic, track) partitioning of every per-cell asset, built from specs/.

On the CLI a key reads ``"<topic>|<track>"`` (dimension names sorted: topic, track).
"""

from __future__ import annotations

import dagster as dg

from staffml_dagster.specs import Specs, cached_specs


def topic_track_partitions(specs: Specs) -> dg.MultiPartitionsDefinition:
    return dg.MultiPartitionsDefinition(
        {
            "topic": dg.StaticPartitionsDefinition([t.id for t in specs.topics.topics]),
            "track": dg.StaticPartitionsDefinition([t.id for t in specs.tracks.tracks]),
        }
    )


def partition_key(topic: str, track: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"topic": topic, "track": track})


topic_track = topic_track_partitions(cached_specs())
