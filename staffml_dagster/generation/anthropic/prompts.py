"""The prompts of one call, built from ``assets/prompts/``: a static system block per track
(role, the quality criteria, output rules, the track's hardware table), marked for prompt
caching, and a per-cell user block (topic, zone, level, capacity dimensions, titles to avoid,
exemplars as delimited data: corpus questions reviews rated staff-worthy, see
``quality/exemplars.py``). Their hash keys the response cache."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping

from staffml_dagster.generation.anthropic.drafts import SIGNATURE_PREFIX
from staffml_dagster.generation.backend import CellRequest
from staffml_dagster.paths import assets_dir
from staffml_dagster.specs import Figure, Platform, Specs

_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


def load_template(name: str) -> str:
    path = assets_dir() / "prompts" / name
    if not path.is_file():
        raise FileNotFoundError(f"prompt template assets/prompts/{name} not found at {path}")
    return path.read_text()


def fill(template: str, values: Mapping[str, object], name: str = "template") -> str:
    """Replace ``{placeholder}`` names; an unknown placeholder is an error naming the template."""

    def sub(m: re.Match) -> str:
        key = m.group(1)
        if key not in values:
            raise KeyError(f"assets/prompts/{name}: placeholder {{{key}}} has no value")
        return str(values[key])

    return _PLACEHOLDER.sub(sub, template)


def _fig(f: Figure | None) -> str:
    return "" if f is None else f"{f.value:g} {f.unit}".strip()


def _platform_line(p: Platform) -> str:
    compute = ", ".join(
        f"{prec} {_fig(fig)}" + (f" [{fig.note}]" if fig.note else "") for prec, fig in p.compute.items()
    )
    parts = [
        f"memory {_fig(p.memory)} {p.memory_kind} (`{p.id}.memory`)",
        (
            f"memory bandwidth {_fig(p.memory_bandwidth)} (`{p.id}.memory_bandwidth`)"
            if p.memory_bandwidth
            else "no published memory bandwidth (weights in on-chip SRAM; the host link is its interconnect)"
        ),
        f"peak compute per precision (`{p.id}.compute.<precision>`): {compute}; default precision "
        f"{p.default_precision}",
        f"power {_fig(p.power)} (`{p.id}.power`)",
    ]
    for attr in ("idle_power", "clock", "flash"):
        fig = getattr(p, attr)
        if fig is not None:
            parts.append(f"{attr.replace('_', ' ')} {_fig(fig)} (`{p.id}.{attr}`)")
    if p.interconnect:
        parts.append(f"interconnect {p.interconnect}")
    return f"- **`{p.id}`** — {p.name} ({p.vendor} {p.kind}): " + "; ".join(parts) + "."


def hardware_block(specs: Specs, track: str) -> str:
    """The track's hardware figures with units, as the static prompt lists them."""
    lines = ["## Platforms", ""]
    lines += [_platform_line(p) for p in specs.platforms_for(track)]
    links = [i for i in specs.hardware.interconnects if track in i.tracks]
    if links:
        lines += ["", "## Links (cite as `specs/hardware.yaml: interconnects.<id>.bandwidth` or `.latency`)", ""]
        for i in links:
            lat = f", latency {_fig(i.latency)}" if i.latency else ""
            note = f" [{i.bandwidth.note}]" if i.bandwidth.note else ""
            lines.append(f"- `{i.id}` — {i.name} ({i.scope}): bandwidth {_fig(i.bandwidth)} per direction{note}{lat}.")
    lines += ["", "## Economics (cite as `specs/hardware.yaml: economics.<key>`)", ""]
    lines += [f"- `{k}`: {_fig(f)}" + (f" [{f.note}]" if f.note else "") for k, f in specs.hardware.economics.items()]
    lines += ["", "## Energy per operation, 45 nm (cite as `specs/hardware.yaml: energy_per_op.<key>`)", ""]
    lines.append("; ".join(f"`{k}` {_fig(f)}" for k, f in specs.hardware.energy_per_op.items()) + ".")
    if specs.hardware.energy_sources:
        lines += ["", "## Energy sources (cite as `specs/hardware.yaml: energy_sources.<key>`)", ""]
        lines.append("; ".join(f"`{k}` {_fig(f)}" for k, f in specs.hardware.energy_sources.items()) + ".")
    lines += ["", "## Conventions pinned by specs/hardware.yaml", ""]
    lines += [f"- {c}" for c in specs.hardware.conventions]
    return "\n".join(lines)


def static_block(specs: Specs, track: str) -> str:
    t = specs.track_by_id[track]
    return fill(
        load_template("static.md"),
        {
            "track": track,
            "track_name": t.name,
            "track_description": t.description,
            "hardware": hardware_block(specs, track),
        },
        "static.md",
    )


_SPEC_POLICY = {
    "given": "every figure the solver needs, hardware figures included, is stated in the scenario.",
    "partial": (
        "the scenario states the workload and scale figures but leaves the platform's own hardware figures for the "
        "candidate to recall (calc still carries them with their specs/hardware.yaml source)."
    ),
    "withheld": (
        "design under ambiguity: the scenario names the platform and the goal but not the specs; the candidate "
        "recalls the figures and chooses assumptions (calc still carries every figure with its source)."
    ),
}


def escape_data(text: str) -> str:
    """``text`` with every opening or closing exemplar tag neutralised, so data cannot end its own block."""
    return re.sub(r"</?\s*exemplar", lambda m: m.group(0).replace("<", "&lt;"), str(text), flags=re.IGNORECASE)


def exemplar_block(exemplars: list[dict]) -> str:
    if not exemplars:
        return "(none for this cell)"
    out = []
    for ex in exemplars:
        body = "\n".join(
            f"{key}: {escape_data(ex[key])}"
            for key in (
                "topic",
                "zone",
                "level",
                "title",
                "scenario",
                "question",
                "realistic_solution",
                "common_mistake",
                "napkin_math",
            )
            if ex.get(key) not in (None, "")
        )
        reviewed = (
            f' reviewed_by="{escape_data(ex["reviewed_by"]).replace(chr(34), "")}"' if ex.get("reviewed_by") else ""
        )
        out.append(f'<exemplar source="corpus:{escape_data(ex["id"])}"{reviewed}>\n{body}\n</exemplar>')
    return "\n\n".join(out)


def select_exemplars(exemplars: Iterable[dict] | None, cell: CellRequest, limit: int) -> list[dict]:
    """Up to ``limit`` validated corpus questions, the closest to the cell first (stable order)."""
    ranked = []
    for ex in exemplars or ():
        if not isinstance(ex, Mapping) or not ex.get("id"):
            raise ValueError("every exemplar must be a corpus question dict with an 'id'")
        if ex.get("passed") is False:
            continue  # only validated corpus questions may serve as exemplars
        same_topic, same_zone, same_track = (
            ex.get("topic") == cell.topic,
            ex.get("zone") == cell.zone,
            ex.get("track") == cell.track,
        )
        rank = (
            0
            if same_topic and same_zone
            else 1
            if same_topic
            else 2
            if same_zone and same_track
            else 3
            if same_track
            else 4
        )
        ranked.append((rank, str(ex["id"]), dict(ex)))
    ranked.sort(key=lambda r: (r[0], r[1]))
    return [r[2] for r in ranked[:limit]]


def titles_from_signatures(signatures: Iterable[str]) -> list[str]:
    """Titles of this backend's accepted questions, recovered from their signatures."""
    return sorted(s.rsplit("|", 1)[-1].replace("-", " ") for s in signatures if s.startswith(SIGNATURE_PREFIX))


def _scale_text(axis: str, value: float) -> str:
    return f"{axis}={value:g}"


def cell_block(
    specs: Specs, cell: CellRequest, count: int, sample: int, avoid_titles: list[str], exemplars: list[dict]
) -> str:
    topic = specs.topic_by_id[cell.topic]
    zone = specs.zone_by_id[cell.zone]
    level = specs.level_by_id[cell.level]
    platforms = specs.platforms_for(cell.track)
    workloads = specs.workloads_for(cell.topic, cell.track)
    scales = specs.scale_points_for(cell.topic, cell.track)
    lead_platform = platforms[sample % len(platforms)].id if platforms else "-"
    lead_scale = _scale_text(*scales[sample % len(scales)]) if scales else "-"
    focus = (
        f"Focus of this call (call {sample + 1}): lead with platform `{lead_platform}` and scale point `{lead_scale}`; "
        "the other questions of this call use other platforms, workloads or scale points."
    )
    workload_text = (
        "; ".join(
            f"`{w.id}` ({w.name}, {w.family}, {w.params:.4g} params"
            + "".join(
                f", {a} {getattr(w, a)}" for a in ("layers", "hidden", "heads", "kv_heads", "head_dim") if getattr(w, a)
            )
            + f", {_fig(w.flops_per_inference)} per {w.input})"
            for w in workloads
        )
        or "(none apply; set workload to null)"
    )
    return fill(
        load_template("cell.md"),
        {
            "count": count,
            "topic_id": topic.id,
            "topic_name": topic.name,
            "topic_area": topic.area,
            "topic_description": topic.description,
            "topic_mechanism": topic.mechanism,
            "track": cell.track,
            "platform_ids": ", ".join(f"`{p.id}`" for p in platforms),
            "zone_id": zone.id,
            "zone_skills": " + ".join(zone.skills),
            "zone_description": zone.description,
            "zone_asks": zone.asks,
            "level_id": level.id,
            "level_name": level.name,
            "level_scope": level.scope,
            "steps_min": level.steps[0],
            "steps_max": level.steps[1],
            "spec_policy": _SPEC_POLICY[level.specs],
            "platforms": ", ".join(f"`{p.id}`" for p in platforms),
            "workloads": workload_text,
            "failure_modes": "; ".join(topic.failure_modes),
            "scale_points": ", ".join(f"`{_scale_text(a, v)}`" for a, v in scales) or "(none)",
            "focus": focus,
            "avoid": "\n".join(f"- {t}" for t in avoid_titles) or "(none yet)",
            "exemplars": exemplar_block(exemplars),
        },
        "cell.md",
    )


def prompt_hash(model: str, static: str, cell: str) -> str:
    digest = hashlib.sha256()
    for part in (model, static, cell):
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()
