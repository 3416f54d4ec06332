"""Exemplars for the Claude backend's prompt, drawn only from reviewed questions.

The gate passes questions a Staff interviewer rejects, so "validated" is not good enough to
teach from. An exemplar must be a corpus question that reviews rated staff-worthy:

- every human reviewer who scored it (at their latest round) gave ``staff_worthy`` 1, and at
  least one did; a reviewer's 0 excludes it whatever the judge says; or
- no human scored it, the judge gave it 1, and the judge is trusted on ``staff_worthy``
  (kappa >= 0.6 with every reviewer, ``judge.trusted_criteria``).

Each exemplar carries ``reviewed_by``, which the prompt shows next to it.
"""

from __future__ import annotations

import pandas as pd

from staffml_dagster.quality.agreement import latest_reviews

CRITERION = "staff_worthy"


def staff_worthy_ids(
    reviews: pd.DataFrame | None, judge: pd.DataFrame | None = None, trusted: dict[str, str] | None = None
) -> dict[str, str]:
    """Question id -> who rated it staff-worthy."""
    out: dict[str, str] = {}
    humans = set()
    if reviews is not None and len(reviews):
        latest = latest_reviews(
            reviews[reviews["source"].astype(str) == "corpus"] if "source" in reviews.columns else reviews
        )
        for qid, part in latest.groupby("question_id"):
            humans.add(str(qid))
            if (part[CRITERION].astype(int) == 1).all():
                names = ", ".join(sorted(part["reviewer"].astype(str)))
                out[str(qid)] = f"reviewers {names} (round {int(part['round'].max())})"
    if trusted and CRITERION in trusted and judge is not None and len(judge):
        ok = judge.dropna(subset=[CRITERION])
        for qid in ok.loc[ok[CRITERION].astype(int) == 1, "question_id"].astype(str):
            if qid not in humans:
                out[qid] = f"judge, trusted on staff_worthy ({trusted[CRITERION]})"
    return out


def reviewed_exemplars(con) -> list[dict]:
    """The corpus questions reviews rated staff-worthy, as exemplar dicts with ``reviewed_by``;
    empty when nothing has been reviewed (the prompt then shows no exemplar)."""
    from staffml_dagster.quality.judge import trusted_criteria

    views = {r[0] for r in con.execute("SHOW TABLES").fetchall()}
    if "corpus" not in views or "reviews" not in views and "judge_verdicts" not in views:
        return []
    reviews = con.execute("SELECT * FROM reviews").df() if "reviews" in views else None
    judge = con.execute("SELECT * FROM judge_verdicts").df() if "judge_verdicts" in views else None
    agreement = con.execute("SELECT * FROM review_agreement").df() if "review_agreement" in views else None
    rated = staff_worthy_ids(reviews, judge, trusted_criteria(agreement))
    if not rated:
        return []
    corpus = con.execute("SELECT * FROM corpus").df()
    rows = corpus[corpus["id"].astype(str).isin(rated)].sort_values("id").to_dict("records")
    return [{**r, "reviewed_by": rated[str(r["id"])]} for r in rows]
