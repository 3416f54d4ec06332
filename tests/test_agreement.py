"""Inter-rater reliability (quality/agreement.py) against published worked examples."""

import numpy as np
import pandas as pd
import pytest

from staffml_dagster.quality.agreement import (
    agreement_by_round,
    agreement_table,
    cohen_kappa,
    cohen_table_kappa,
    disagreements,
    fleiss_kappa,
    gate_ratings,
    kappa_estimate,
    review_ratings,
)

# Fleiss, J. L. (1971). Measuring nominal scale agreement among many raters. Psychological
# Bulletin 76(5), 378-382, Table 1: 30 patients, 6 psychiatrists each, 5 diagnoses
# (depression, personality disorder, schizophrenia, neurosis, other). Rows: raters per diagnosis.
# The paper gives kappa = .430 (the rater-by-rater form is the `diagnoses` data of R's irr package).
FLEISS_1971 = [
    [0, 0, 0, 6, 0],
    [0, 3, 0, 0, 3],
    [0, 1, 4, 0, 1],
    [0, 0, 0, 0, 6],
    [0, 3, 0, 3, 0],
    [2, 0, 4, 0, 0],
    [0, 0, 4, 0, 2],
    [2, 0, 3, 1, 0],
    [2, 0, 0, 4, 0],
    [0, 0, 0, 0, 6],
    [1, 0, 0, 5, 0],
    [1, 1, 0, 4, 0],
    [0, 3, 3, 0, 0],
    [1, 0, 0, 5, 0],
    [0, 2, 0, 3, 1],
    [0, 0, 5, 0, 1],
    [3, 0, 0, 1, 2],
    [5, 1, 0, 0, 0],
    [0, 2, 0, 4, 0],
    [1, 0, 2, 0, 3],
    [0, 0, 0, 0, 6],
    [0, 1, 0, 5, 0],
    [0, 2, 0, 1, 3],
    [2, 0, 0, 4, 0],
    [1, 0, 0, 4, 1],
    [0, 5, 0, 1, 0],
    [4, 0, 0, 0, 2],
    [0, 2, 0, 4, 0],
    [1, 0, 5, 0, 0],
    [0, 0, 0, 0, 6],
]

# Fleiss, J. L. (1981). Statistical Methods for Rates and Proportions, 2nd ed., Table 13.1 (and
# Fleiss, Levin & Paik 2003, Table 18.1): two raters diagnose 100 subjects as psychotic, neurotic
# or organic. p_o = .89, p_e = .66, kappa = .68.
FLEISS_1981_TWO_RATERS = [[75, 1, 4], [5, 4, 1], [0, 0, 10]]


def _labels_from_table(table):
    a, b = [], []
    for i, row in enumerate(table):
        for j, n in enumerate(row):
            a += [i] * n
            b += [j] * n
    return a, b


def test_fleiss_1971_psychiatric_diagnoses():
    assert fleiss_kappa(FLEISS_1971) == pytest.approx(0.430, abs=5e-4)


def test_fleiss_kappa_from_rater_matrix_matches_counts():
    # the same table as an items x raters matrix of labels: kappa_estimate takes Fleiss for 6 raters
    ratings = np.array([[cat for cat, n in enumerate(row) for _ in range(n)] for row in FLEISS_1971])
    est = kappa_estimate(ratings, resamples=500)
    assert est.method == "fleiss" and est.raters == 6 and est.items == 30
    assert est.kappa == pytest.approx(0.430, abs=5e-4)
    assert est.ci_low < est.kappa < est.ci_high
    assert 0.25 < est.ci_low and est.ci_high < 0.6  # 30 items: an interval about +-0.1 wide
    assert kappa_estimate(ratings, resamples=500) == est  # fixed seed: same ratings, same interval


def test_cohen_fleiss_1981_two_raters():
    assert cohen_table_kappa(FLEISS_1981_TWO_RATERS) == pytest.approx((0.89 - 0.66) / (1 - 0.66))
    a, b = _labels_from_table(FLEISS_1981_TWO_RATERS)
    assert cohen_kappa(a, b) == pytest.approx(0.676, abs=5e-4)
    est = kappa_estimate(np.array([a, b]).T, resamples=500)
    assert est.method == "cohen" and est.observed_agreement == pytest.approx(0.89)
    assert est.ci_low < 0.676 < est.ci_high


def test_cohen_agrees_with_sklearn_on_random_binary_scores():
    sklearn = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    for _ in range(5):
        a = rng.integers(0, 2, 40)
        b = np.where(rng.random(40) < 0.7, a, 1 - a)
        assert cohen_kappa(list(a), list(b)) == pytest.approx(sklearn.cohen_kappa_score(a, b))


def test_edge_cases():
    assert cohen_kappa([1, 0, 1], [1, 0, 1]) == pytest.approx(1.0)
    assert cohen_kappa([1, 1, 1], [1, 1, 1]) is None  # chance agreement 1: undefined, not 1
    assert kappa_estimate(np.ones((5, 3), dtype=int)).kappa is None
    with pytest.raises(ValueError, match="same items"):
        cohen_kappa([1, 0], [1])
    with pytest.raises(ValueError, match="same number of ratings"):
        fleiss_kappa([[2, 0], [1, 2]])
    with pytest.raises(ValueError, match="square"):
        cohen_table_kappa([[1, 2, 3]])


def _reviews(rows):
    return pd.DataFrame(rows, columns=["question_id", "reviewer", "round", "topic_fit", "staff_worthy"])


def test_agreement_table_gate_judge_and_humans():
    ids = [f"q{i}" for i in range(12)]
    truth = [1, 1, 0, 1, 0, 0, 1, 1, 0, 1, 0, 1]
    validated = pd.DataFrame({"id": ids, "topic_fit_ok": [bool(t) for t in truth], "passed": [True] * 12})
    humans = _reviews(
        [(q, "ana", 1, t, t) for q, t in zip(ids, truth)]
        + [(q, "ben", 1, t if i % 4 else 1 - t, t) for i, (q, t) in enumerate(zip(ids, truth))]
    )
    ratings = pd.concat([gate_ratings(validated), review_ratings(humans).drop(columns="round")])
    table = agreement_table(ratings, resamples=200)
    topic = table[table["criterion"] == "topic_fit"].set_index("raters")
    assert topic.loc["gate vs human:ana", "kappa"] == pytest.approx(1.0)
    assert topic.loc["gate vs human:ben", "kappa"] < 1.0
    assert topic.loc["all (gate, human:ana, human:ben)", "method"] == "fleiss"
    # the gate passes everything: staff_worthy kappa with a human who fails some is 0, with the
    # interval computed over resamples
    staff = table[table["criterion"] == "staff_worthy"].set_index("raters")
    assert staff.loc["gate vs human:ana", "kappa"] == pytest.approx(0.0)
    assert staff.loc["human:ana vs human:ben", "kappa"] == pytest.approx(1.0)

    worst = disagreements(ratings, top=3)
    # ben differs from the gate and ana on topic_fit for q0, q4, q8; on q4 and q8 the gate also
    # passes what both humans call not staff-worthy, so they split on two criteria
    assert list(worst["item"]) == ["q4", "q8", "q0"]
    assert worst.loc[0, "split"] == "topic_fit (0: gate, human:ana); staff_worthy (0: human:ana, human:ben)"


def test_agreement_rises_across_rounds():
    ids = [f"q{i}" for i in range(20)]
    truth = [i % 3 != 0 for i in range(20)]
    validated = pd.DataFrame({"id": ids, "topic_fit_ok": truth})
    rows = []
    for rnd, noise in ((1, 6), (2, 2)):
        for i, (q, t) in enumerate(zip(ids, truth)):
            rows.append((q, "ana", rnd, int(t), 1))
            rows.append((q, "ben", rnd, int(t) if i >= noise else 1 - int(t), 1))
    by_round = agreement_by_round(review_ratings(_reviews(rows)), gate_ratings(validated), resamples=100)
    pair = by_round[(by_round["criterion"] == "topic_fit") & (by_round["raters"] == "human:ana vs human:ben")]
    assert list(pair["round"]) == [1, 2]
    assert pair["kappa"].iloc[1] > pair["kappa"].iloc[0]
    assert set(by_round["raters"]) >= {"gate vs human:ana", "gate vs human:ben"}


def test_a_rater_who_passes_everything_is_marked():
    from staffml_dagster.quality.agreement import agreement_markdown, agreement_report

    validated = pd.DataFrame({"id": ["a", "b", "c", "d"], "passed": [True] * 4})
    reviews = pd.DataFrame(
        {"question_id": ["a", "b", "c", "d"], "reviewer": "ana", "round": 1, "staff_worthy": [1, 0, 1, 0]}
    )
    report = agreement_report(validated, reviews, resamples=50)
    row = report.overall.iloc[0]
    assert (
        row["raters"] == "gate vs human:ana" and row["kappa"] == pytest.approx(0.0) and row["constant_raters"] == "gate"
    )
    assert "| staff_worthy | gate* vs human:ana | cohen | 4 | 0.00 |" in agreement_markdown(report)


def test_the_estimate_matches_the_direct_formulas_on_random_ratings():
    rng = np.random.default_rng(11)
    for raters, k in ((2, 2), (2, 3), (3, 2), (5, 4)):
        r = rng.integers(0, k, (40, raters))
        mask = rng.random(40) < 0.5
        r[mask] = r[mask][:, :1]  # half the rows unanimous, so kappa is well above 0
        est = kappa_estimate(r, resamples=100)
        if raters == 2:
            direct = cohen_kappa(list(r[:, 0]), list(r[:, 1]))
        else:
            direct = fleiss_kappa([[int((row == c).sum()) for c in range(k)] for row in r])
        assert direct > 0.2
        assert est.kappa == pytest.approx(direct)
