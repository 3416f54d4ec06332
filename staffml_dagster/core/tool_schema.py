"""JSON schemas of tool calls, as the Messages API reads them."""

from __future__ import annotations


def inline_refs(schema: dict) -> dict:
    """Replace pydantic's ``$defs``/``$ref`` with inline schemas (simpler for the tool API)."""
    defs = schema.get("$defs", {})

    def walk(node):
        if isinstance(node, dict):
            if "$ref" in node:
                target = node["$ref"].rsplit("/", 1)[-1]
                return walk(dict(defs[target]))
            return {k: walk(v) for k, v in node.items() if k != "$defs"}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(schema)
