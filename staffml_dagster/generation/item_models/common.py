"""Small helpers shared by item models."""

from __future__ import annotations

from staffml_dagster.generation.item_model import Setting


def axis_value(s: Setting, axis: str, default_index: int = 0) -> float:
    """The setting's scale value when it varies ``axis``, else the track's default point on it."""
    if s.scale_axis == axis:
        return s.scale_value
    points = s.specs.track_by_id[s.track].scale_points.get(axis) or [1.0]
    return points[min(default_index, len(points) - 1)]


PRECISION_BYTES = {"fp32": 4.0, "fp16": 2.0, "bf16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5}
