"""The LLM judge (quality/judge.py, the judge_verdicts asset) through the SDK's transport, never
the live API; and where it may block a question (stages/corpus.py apply_judge_gate)."""

from __future__ import annotations

import json

import anthropic
import dagster as dg
import httpx2
import pandas as pd
import pytest

from staffml_dagster.generation import anthropic as ab
from staffml_dagster.generation.anthropic import AnthropicGenerator, BudgetExceeded
from staffml_dagster.quality import judge as jd
from staffml_dagster.quality.agreement import RUBRIC_CRITERIA
from staffml_dagster.stages.corpus import apply_judge_gate
from staffml_dagster.stages.reviews import JudgeConfig, judge_verdicts
from staffml_dagster.storage import connect_warehouse
from tests.test_anthropic_backend import SECRET, USAGE, USAGE_COST, FakeAPI, client_for

QUESTIONS = pd.DataFrame(
    [
        {
            "id": f"gen{i}hidden",
            "topic": "kv-cache-management",
            "track": "cloud",
            "zone": "diagnosis",
            "level": "L4",
            "title": f"Decode stalls {i}",
            "scenario": "A fleet serves Llama 3 8B on H100s.",
            "question": "Why is decode slow?",
            "realistic_solution": "It is memory bound.",
            "common_mistake": "**The Pitfall:** Using peak FLOPs.",
            "napkin_math": "- t = 16 GB / 3.35 TB/s (specs/hardware.yaml: h100-sxm.memory_bandwidth) = 4.8 ms",
            "item_model": "imodel-zz",
            "backend": "offline-zz",
            "passed": i != 2,
        }
        for i in range(3)
    ]
)


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("STAFFML_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)


def review(staff_worthy: int = 0, **over) -> dict:
    out = {c: {"score": 1, "reason": f"{c} holds"} for c in RUBRIC_CRITERIA}
    out["staff_worthy"] = {
        "score": staff_worthy,
        "reason": "a lookup, not an L4 diagnosis" if not staff_worthy else "usable",
    }
    out["template_smell"] = {"score": 2, "reason": "assembled"}
    out.update(over)
    return out


def reply(tool_input) -> dict:
    return {
        "id": "msg_j",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-6",
        "content": [{"type": "tool_use", "id": "toolu_j", "name": jd.JUDGE_TOOL_NAME, "input": tool_input}],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": USAGE,
    }


def backend(api, tmp_path, **kw) -> AnthropicGenerator:
    return AnthropicGenerator(
        client_for(api), cache_dir=tmp_path / "cache", sleep=lambda s: None, clock=lambda: 0.0, **kw
    )


def test_judge_scores_every_criterion_blind_and_caches(tmp_path):
    api = FakeAPI([reply(review()), reply(review(staff_worthy=1)), reply(review())])
    df = jd.judge_questions(backend(api, tmp_path), QUESTIONS)
    assert api.calls == 3
    assert list(df["staff_worthy"]) == [0, 1, 0] and (df["template_smell"] == 2).all() and df["error"].isna().all()
    assert json.loads(df.loc[0, "reasons"])["staff_worthy"] == "a lookup, not an L4 diagnosis"
    assert df["cost_usd"].sum() == pytest.approx(3 * USAGE_COST)
    body = api.requests[0]
    assert body["tool_choice"] == {"type": "tool", "name": "submit_review"}
    assert body["tools"][0]["input_schema"]["required"] == [*RUBRIC_CRITERIA, "template_smell"]
    assert "staff_worthy" in body["system"][0]["text"] and body["system"][0]["cache_control"] == {"type": "ephemeral"}
    user = body["messages"][0]["content"][0]["text"]
    assert user.startswith("<item>") and "Decode stalls 0" in user
    for secret in ("hidden", "imodel-zz", "offline-zz", "specs/hardware.yaml"):
        assert secret not in user
    assert SECRET not in json.dumps(
        list((tmp_path / "cache").rglob("*.json")) and [p.read_text() for p in (tmp_path / "cache").rglob("*.json")]
    )

    # the same questions again: served from the response cache, no call, no cost
    again = FakeAPI([])
    df2 = jd.judge_questions(backend(again, tmp_path), QUESTIONS)
    assert again.calls == 0 and df2["cached"].all() and list(df2["staff_worthy"]) == [0, 1, 0]


def test_unreadable_reply_is_repaired_once_then_recorded_never_invented(tmp_path):
    bad = review()
    del bad["grounding"]
    api = FakeAPI(
        [
            reply(bad),
            reply(review(staff_worthy=1)),  # repaired
            reply({"nonsense": 1}),
            reply(review(zone_fit={"score": 3, "reason": "x"})),
        ]
    )  # twice unreadable
    df = jd.judge_questions(backend(api, tmp_path), QUESTIONS.head(2))
    assert api.calls == 4
    assert df.loc[0, "staff_worthy"] == 1 and pd.isna(df.loc[0, "error"])
    assert "could not be read: grounding: Field required" in api.requests[1]["messages"][0]["content"][0]["text"]
    assert df.loc[1, list(RUBRIC_CRITERIA)].isna().all()
    assert df.loc[1, "error"].startswith("no usable review after a repair: zone_fit.score")


def test_budget_stops_before_a_call(tmp_path):
    api = FakeAPI([reply(review())])
    with pytest.raises(BudgetExceeded, match="budget of \\$0.00"):
        jd.judge_questions(backend(api, tmp_path, budget_usd=0.0), QUESTIONS.head(1))
    assert api.calls == 0


def test_asset_is_skipped_without_a_key():
    ctx = dg.build_asset_context()
    df = judge_verdicts(ctx, JudgeConfig(), QUESTIONS)
    assert df.empty and list(df.columns) == jd.JUDGE_COLUMNS


def test_asset_judges_through_the_backend(tmp_path, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    api = FakeAPI([reply(review()), reply(review(staff_worthy=1))])
    real = ab.backend_from_env
    monkeypatch.setattr(
        ab,
        "backend_from_env",
        lambda **kw: real(
            http_client=anthropic.DefaultHttpxClient(transport=httpx2.MockTransport(api)),
            cache_dir=tmp_path / "cache",
            **kw,
        ),
    )
    df = judge_verdicts(dg.build_asset_context(), JudgeConfig(only_passed=True), QUESTIONS)
    assert list(df["question_id"]) == ["gen0hidden", "gen1hidden"] and list(df["staff_worthy"]) == [0, 1]
    assert any(SECRET in value for value in api.headers[0].values())  # the key comes from the environment


def _agreement(kappas: dict[str, float], items: int = 30) -> pd.DataFrame:
    rows = [
        {
            "round": "all",
            "criterion": c,
            "raters": raters,
            "method": "cohen",
            "items": items,
            "kappa": k,
            "ci_low": None,
            "ci_high": None,
            "observed_agreement": 0.9,
        }
        for (c, raters), k in kappas.items()
    ]
    return pd.DataFrame(rows)


def test_the_judge_blocks_only_where_it_agrees_with_every_reviewer(warehouse):
    agreement = _agreement(
        {
            ("staff_worthy", "judge vs human:ana"): 0.72,
            ("staff_worthy", "judge vs human:ben"): 0.65,
            ("staff_worthy", "gate vs human:ana"): 0.1,
            ("coherent", "judge vs human:ana"): 0.8,
            ("coherent", "judge vs human:ben"): 0.4,
            ("topic_fit", "judge vs human:ana"): 0.9,
        }
    )
    agreement.loc[len(agreement)] = {
        "round": "all",
        "criterion": "topic_fit",
        "raters": "judge vs human:ben",
        "method": "cohen",
        "items": 5,
        "kappa": 0.1,
        "ci_low": None,
        "ci_high": None,
        "observed_agreement": 0.5,
    }
    trusted = jd.trusted_criteria(agreement)
    # coherent: ben disagrees; topic_fit: ben's 5 shared items are too few to count, ana's 0.9 stands
    assert set(trusted) == {"staff_worthy", "topic_fit"}
    assert "human:ben kappa 0.65 on 30" in trusted["staff_worthy"]

    corpus = QUESTIONS[QUESTIONS["passed"]].drop(columns="passed")
    verdicts = jd.judge_frame(
        [
            {
                "question_id": "gen0hidden",
                **{c: 1 for c in RUBRIC_CRITERIA},
                "staff_worthy": 0,
                "coherent": 0,
                "reasons": json.dumps({"staff_worthy": "a lookup", "coherent": "two scenarios"}),
            },
            {"question_id": "gen1hidden", **{c: 1 for c in RUBRIC_CRITERIA}, "coherent": 0, "reasons": "{}"},
        ]
    )
    blocked = jd.judge_blocks(corpus, verdicts, trusted)
    assert blocked.to_dict("records") == [{"id": "gen0hidden", "judge_failures": ["staff_worthy: a lookup"]}]

    # the corpus asset's gate, reading the warehouse views
    kept, note = apply_judge_gate(corpus, None)
    assert len(kept) == 2 and note.startswith("advisory: the corpus is not run with use_judge")
    for name, frame in (("judge_verdicts", verdicts), ("review_agreement", agreement)):
        (warehouse / name).mkdir(parents=True)
        frame.to_parquet(warehouse / name / "part.parquet", index=False)
    kept, note = apply_judge_gate(corpus, connect_warehouse())
    assert list(kept["id"]) == ["gen1hidden"]
    assert "1 question(s) removed" in note and "`gen0hidden`: staff_worthy: a lookup" in note
    # with no trusted criterion the judge stays advisory even when asked to block
    (warehouse / "review_agreement" / "part.parquet").unlink()
    kept, note = apply_judge_gate(corpus, connect_warehouse())
    assert len(kept) == 2 and "no criterion has the judge at kappa >= 0.6" in note


def test_the_judge_gate_follows_the_environment_when_the_run_executes_not_when_the_code_loads(monkeypatch):
    from staffml_dagster.stages.corpus import JUDGE_GATE_ENV, CorpusConfig

    monkeypatch.delenv(JUDGE_GATE_ENV, raising=False)
    config = CorpusConfig()  # built before the variable is set, as when the definitions load
    assert config.judge_gate() is False
    monkeypatch.setenv(JUDGE_GATE_ENV, "1")
    assert config.judge_gate() is True
    assert CorpusConfig(use_judge=False).judge_gate() is False  # the run config wins
    monkeypatch.delenv(JUDGE_GATE_ENV)
    assert CorpusConfig(use_judge=True).judge_gate() is True
