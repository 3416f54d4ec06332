"""The LLM judge: Claude scores a question on the review rubric, like a human reviewer.

One call per question through the anthropic backend's client, response cache, budget and
retries (:meth:`AnthropicGenerator.cached_call`), with a forced ``submit_review`` tool whose
schema (:class:`JudgeReview`) holds a score and a one-line reason per criterion of
``../shared/docs/REVIEW_RUBRIC.md`` (the system prompt is ``assets/prompts/judge.md``). The
item is rendered blind, as reviewers see it (``review_text.normalise_text``). A reply that does
not fit the schema is asked for once more; if it still does not, the question's scores stay
null with the reason in ``error``: a verdict is never invented.

:func:`trusted_criteria` and :func:`judge_blocks` decide where the judge may block a question:
only on a criterion where its kappa with every human reviewer who scored enough of the same
items is at least ``threshold`` (0.6), and only when the run asks for it; elsewhere its verdict
is advisory and recorded.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from collections.abc import Mapping
from typing import Protocol

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from staffml_dagster.core.tool_schema import inline_refs
from staffml_dagster.paths import assets_dir
from staffml_dagster.quality.agreement import HUMAN_PREFIX, JUDGE, RUBRIC_CRITERIA
from staffml_dagster.quality.review_text import META_FIELDS, SECTIONS, normalise_text


class JudgeClient(Protocol):
    """What the judge needs of a Claude client (``AnthropicGenerator`` is one): its model, that
    model's price entry (``forced_tool_choice``, ``thinking``) and one cached, budgeted call."""

    model: str
    price: object

    def cached_call(
        self, key: str, params: dict, meta: Mapping, what: str, stat: str = ...
    ) -> tuple[dict, float, bool]: ...


JUDGE_VERSION = "judge/1"
JUDGE_TOOL_NAME = "submit_review"
SMELL = "template_smell"
TRUST_THRESHOLD = 0.6
TRUST_MIN_ITEMS = 20
JUDGE_COLUMNS = [
    "question_id",
    "topic",
    "track",
    *RUBRIC_CRITERIA,
    SMELL,
    "reasons",
    "model",
    "cost_usd",
    "cached",
    "error",
    "judged_at",
    "judge_version",
]


class Verdict(BaseModel):
    model_config = ConfigDict(extra="forbid")
    score: int = Field(ge=0, le=1, description="1 passes, 0 fails")
    reason: str = Field(min_length=1, max_length=400, description="one line; for a 0, what is wrong")


class SmellVerdict(BaseModel):
    model_config = ConfigDict(extra="forbid")
    score: int = Field(
        ge=0, le=2, description="0 reads as written by a person, 1 somewhat formulaic, 2 assembled from templates"
    )
    reason: str = Field(min_length=1, max_length=400)


class JudgeReview(BaseModel):
    model_config = ConfigDict(extra="forbid")
    topic_fit: Verdict
    zone_fit: Verdict
    grounding: Verdict
    math_correct: Verdict
    mistake_real: Verdict
    coherent: Verdict
    staff_worthy: Verdict
    template_smell: SmellVerdict


JUDGE_TOOL = {
    "name": JUDGE_TOOL_NAME,
    "description": "Submit your review of the item: a score and a one-line reason for every criterion of the rubric.",
    "input_schema": inline_refs(JudgeReview.model_json_schema()),
}
JUDGE_TOOL_HASH = hashlib.sha256(json.dumps(JUDGE_TOOL, sort_keys=True).encode()).hexdigest()[:16]


def judge_prompt() -> str:
    path = assets_dir() / "prompts" / "judge.md"
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"the judge's prompt is missing: {path}") from None


def item_block(row: dict) -> str:
    """The item as a reviewer sees it, between <item> tags (a closing tag inside is escaped)."""
    lines = [f"{name}: {normalise_text(row.get(f), f)}" for f, name in META_FIELDS]
    for f, name in SECTIONS:
        lines += ["", f"## {name}", normalise_text(row.get(f), f)]
    body = "\n".join(lines).replace("</item", "&lt;/item")
    return f"<item>\n{body}\n</item>"


def _params(backend: JudgeClient, system: str, user: str) -> dict:
    params = {
        "model": backend.model,
        "max_tokens": 2000,
        "system": [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": user}]}],
        "tools": [JUDGE_TOOL],
        "tool_choice": {"type": "tool", "name": JUDGE_TOOL_NAME}
        if backend.price.forced_tool_choice
        else {"type": "auto"},
    }
    if backend.price.thinking == "disabled":
        params["thinking"] = {"type": "disabled"}
    return params


def parse_review(message: dict) -> tuple[JudgeReview | None, str | None]:
    """The review in a reply, or (None, why not)."""
    blocks = [
        b
        for b in message.get("content") or []
        if isinstance(b, dict) and b.get("type") == "tool_use" and b.get("name") == JUDGE_TOOL_NAME
    ]
    if len(blocks) != 1:
        return None, f"expected one {JUDGE_TOOL_NAME} call, got {len(blocks)}"
    try:
        return JudgeReview.model_validate(blocks[0].get("input")), None
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]]
        return None, "; ".join(problems)


def judge_question(backend: JudgeClient, row: dict, system: str | None = None) -> dict:
    """One question's verdict row (JUDGE_COLUMNS); BudgetExceeded propagates."""
    system = system or judge_prompt()
    user = item_block(row)
    out = {
        "question_id": str(row["id"]),
        "topic": row.get("topic"),
        "track": row.get("track"),
        "model": backend.model,
        "cost_usd": 0.0,
        "cached": True,
        "error": None,
        "judge_version": JUDGE_VERSION,
        "judged_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    problem = None
    for attempt in range(2):
        text = (
            user
            if attempt == 0
            else (
                f"{user}\n\nYour previous reply could not be read: {problem}. "
                f"Call `{JUDGE_TOOL_NAME}` once, with every criterion."
            )
        )
        phash = hashlib.sha256(json.dumps([backend.model, system, text]).encode()).hexdigest()
        key = hashlib.sha256(
            json.dumps([backend.model, phash, f"judge.{attempt}", JUDGE_TOOL_HASH]).encode()
        ).hexdigest()
        meta = {
            "cell": f"{row.get('topic')}|{row.get('track')}",
            "sample": f"judge:{row['id']}.{attempt}",
            "prompt_hash": phash,
            "tool_hash": JUDGE_TOOL_HASH,
        }
        message, cost, cached = backend.cached_call(
            key, _params(backend, system, text), meta, f"judge {row['id']}", stat="judge_calls"
        )
        out["cost_usd"] += cost
        out["cached"] = out["cached"] and cached
        review, problem = parse_review(message)
        if review is not None:
            scores = review.model_dump()
            out.update({c: scores[c]["score"] for c in (*RUBRIC_CRITERIA, SMELL)})
            out["reasons"] = json.dumps(
                {c: scores[c]["reason"] for c in (*RUBRIC_CRITERIA, SMELL)}, ensure_ascii=False, sort_keys=True
            )
            return out
    out.update({c: None for c in (*RUBRIC_CRITERIA, SMELL)})
    out["reasons"] = "{}"
    out["error"] = f"no usable review after a repair: {problem}"
    return out


def judge_frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=JUDGE_COLUMNS)
    for c in (*RUBRIC_CRITERIA, SMELL):
        df[c] = df[c].astype("Int64")
    df["cost_usd"] = df["cost_usd"].astype(float)
    df["cached"] = df["cached"].astype(bool)
    for c in ("question_id", "topic", "track", "reasons", "model", "error", "judged_at", "judge_version"):
        df[c] = df[c].astype("string")
    return df


def judge_questions(backend: JudgeClient, questions: pd.DataFrame) -> pd.DataFrame:
    system = judge_prompt()
    return judge_frame([judge_question(backend, r, system) for r in questions.to_dict("records")])


# --------------------------------------------------------------------------- where the judge may block


def trusted_criteria(
    agreement: pd.DataFrame, threshold: float = TRUST_THRESHOLD, min_items: int = TRUST_MIN_ITEMS
) -> dict[str, str]:
    """Criterion -> why it is trusted, for every criterion where the judge's kappa with each
    human reviewer who scored at least ``min_items`` of the same items is >= ``threshold``
    (round "all" of the review_agreement table). No reviewer, no trust."""
    if agreement is None or agreement.empty:
        return {}
    rows = agreement[(agreement["round"].astype(str) == "all")]
    trusted = {}
    for criterion, part in rows.groupby("criterion"):
        pairs = part[part["raters"].str.startswith(f"{JUDGE} vs {HUMAN_PREFIX}") & (part["items"] >= min_items)]
        if pairs.empty or pairs["kappa"].isna().any():
            continue
        if (pairs["kappa"] >= threshold).all():
            trusted[criterion] = ", ".join(
                f"{r.raters.split(' vs ')[1]} kappa {r.kappa:.2f} on {r.items}" for r in pairs.itertuples()
            )
    return trusted


def judge_blocks(corpus: pd.DataFrame, judge: pd.DataFrame, trusted: dict[str, str]) -> pd.DataFrame:
    """The corpus questions the judge fails on a trusted criterion: id and the criteria with
    the judge's reasons."""
    columns = ["id", "judge_failures"]
    if corpus.empty or judge is None or judge.empty or not trusted:
        return pd.DataFrame(columns=columns)
    verdicts = judge.drop_duplicates("question_id", keep="last").set_index("question_id")
    rows = []
    for qid in corpus["id"].astype(str):
        if qid not in verdicts.index:
            continue
        v = verdicts.loc[qid]
        reasons = json.loads(v["reasons"]) if isinstance(v.get("reasons"), str) and v["reasons"] else {}
        failed = [f"{c}: {reasons.get(c, '')}".rstrip(": ") for c in trusted if pd.notna(v.get(c)) and int(v[c]) == 0]
        if failed:
            rows.append({"id": qid, "judge_failures": failed})
    return pd.DataFrame(rows, columns=columns)
