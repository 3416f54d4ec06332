"""Claude's exemplars come only from questions reviews rated staff-worthy (quality/exemplars.py)."""

import pandas as pd

from staffml_dagster.generation.anthropic import exemplar_block
from staffml_dagster.quality.agreement import RUBRIC_CRITERIA
from staffml_dagster.quality.exemplars import reviewed_exemplars, staff_worthy_ids
from staffml_dagster.storage import connect_warehouse


def _review(qid, reviewer, rnd, staff_worthy, source="corpus"):
    return {
        "question_id": qid,
        "reviewer": reviewer,
        "round": rnd,
        "source": source,
        **{c: 1 for c in RUBRIC_CRITERIA},
        "staff_worthy": staff_worthy,
        "template_smell": 0,
        "reasons": "{}",
    }


REVIEWS = pd.DataFrame(
    [
        _review("a", "ana", 1, 1),
        _review("a", "ben", 1, 1),  # both reviewers: staff-worthy
        _review("b", "ana", 1, 1),
        _review("b", "ben", 1, 0),  # one reviewer says no
        _review("c", "ana", 1, 0),
        _review("c", "ana", 2, 1),  # ana changed her mind in round 2
        _review("pub1", "ana", 1, 1, source="calibration"),  # a published calibration item is no exemplar
    ]
)
JUDGE = pd.DataFrame({"question_id": ["b", "d", "e"], "staff_worthy": [1, 1, 0]})


def test_only_questions_rated_staff_worthy_and_by_whom():
    assert staff_worthy_ids(REVIEWS) == {"a": "reviewers ana, ben (round 1)", "c": "reviewers ana (round 2)"}
    # the judge counts only where it is trusted on staff_worthy, and never over a reviewer's 0
    assert "d" not in staff_worthy_ids(REVIEWS, JUDGE, {"coherent": "ana kappa 0.9 on 30"})
    rated = staff_worthy_ids(REVIEWS, JUDGE, {"staff_worthy": "human:ana kappa 0.70 on 30"})
    assert set(rated) == {"a", "c", "d"} and rated["d"].startswith("judge, trusted on staff_worthy")


def test_reviewed_exemplars_from_the_warehouse_and_in_the_prompt(warehouse):
    assert reviewed_exemplars(connect_warehouse()) == []  # nothing reviewed: no exemplar at all
    corpus = pd.DataFrame(
        {
            "id": ["a", "b", "c", "d"],
            "topic": "kv-cache-management",
            "track": "cloud",
            "zone": "diagnosis",
            "level": "L4",
            "title": ["A", "B", "C", "D"],
            "scenario": "s",
            "question": "q",
        }
    )
    for name, frame in (("corpus", corpus), ("reviews", REVIEWS)):
        (warehouse / name).mkdir(parents=True)
        frame.to_parquet(warehouse / name / "part.parquet", index=False)
    exemplars = reviewed_exemplars(connect_warehouse())
    assert [e["id"] for e in exemplars] == ["a", "c"]
    block = exemplar_block(exemplars)
    assert '<exemplar source="corpus:a" reviewed_by="reviewers ana, ben (round 1)">' in block
    assert "corpus:b" not in block
