"""Distinct-question capacity: grouping by cosine threshold and species-richness estimators."""

import math

import numpy as np
import pytest

from staffml_dagster.estimation import (
    CapacityEstimate,
    abundances,
    chao1,
    chao1_interval,
    chao2,
    estimate_capacity,
    fit_saturation,
    good_turing_coverage,
    group_by_threshold,
)

DIM = 64
THRESHOLD = 0.9


def _population(n_items: int, dim: int = DIM, seed: int = 0) -> np.ndarray:
    """n_items orthonormal rows (from the Q of a random Gaussian matrix): pairwise cosine 0."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    return q[:n_items]


def _noisy(pop: np.ndarray, idx, rng, sigma: float = 0.01) -> np.ndarray:
    """Draws of items ``idx`` with tiny noise: cosine to the clean item ~0.997 >> 0.9."""
    return pop[idx] + sigma * rng.standard_normal((len(idx), pop.shape[1]))


# --------------------------------------------------------------------------------------
# grouping
# --------------------------------------------------------------------------------------


def test_group_by_threshold_near_duplicates_together_orthogonal_apart():
    rng = np.random.default_rng(1)
    pop = _population(5)
    idx = [0, 1, 0, 2, 1, 3, 4, 4, 0]
    labels, leaders = group_by_threshold(_noisy(pop, idx, rng) * 7.0, THRESHOLD)  # scale-free
    assert labels.tolist() == [0, 1, 0, 2, 1, 3, 4, 4, 0]
    assert leaders.shape == (5, DIM)
    assert np.allclose(np.linalg.norm(leaders, axis=1), 1.0)


def test_group_by_threshold_joins_first_group_not_best_and_threshold_one():
    a = np.array([1.0, 0.0])
    b = np.array([math.cos(0.3), math.sin(0.3)])  # cos(a, b) = 0.955
    c = np.array([math.cos(0.25), math.sin(0.25)])  # closer to b (0.999) but also >= 0.9 to a
    labels, _ = group_by_threshold(np.vstack([a, b, c]), 0.96)
    assert labels.tolist() == [0, 1, 0]  # c joins a (first group), although b is closer
    # threshold 1.0 still merges exact duplicates despite rounding in the cosine
    v = np.array([[0.1, 0.2, 0.3], [0.1, 0.2, 0.3], [0.3, 0.2, 0.1]])
    assert group_by_threshold(v, 1.0)[0].tolist() == [0, 0, 1]


def test_group_ids_stable_across_rounds():
    rng = np.random.default_rng(2)
    pop = _population(6)
    labels1, leaders1 = group_by_threshold(_noisy(pop, [0, 1, 2], rng), THRESHOLD)
    assert labels1.tolist() == [0, 1, 2]
    before = leaders1.copy()
    labels2, leaders2 = group_by_threshold(_noisy(pop, [2, 3, 0, 3, 5], rng), THRESHOLD, leaders1)
    assert labels2.tolist() == [2, 3, 0, 3, 4]
    assert leaders2.shape[0] == 5
    assert np.array_equal(leaders2[:3], before)  # old leaders kept in place
    assert np.array_equal(leaders1, before)  # input not modified


def test_group_by_threshold_empty_input():
    labels, leaders = group_by_threshold(np.empty((0, 4)), 0.9)
    assert labels.size == 0 and leaders.shape[0] == 0
    old = _population(2, dim=4)
    labels, leaders = group_by_threshold(np.empty((0, 4)), 0.9, old)
    assert labels.size == 0 and np.allclose(leaders, old)
    with pytest.raises(ValueError):
        group_by_threshold(np.ones((2, 3)), 0.9, np.ones((1, 4)))


def test_abundances():
    assert abundances([3, 0, 3, 3, 1, 0]).tolist() == [2, 1, 3]  # ids 0, 1, 3 (2 absent)
    assert abundances([]).tolist() == []
    with pytest.raises(ValueError):
        abundances([0, -1])


# --------------------------------------------------------------------------------------
# estimators: known answers
# --------------------------------------------------------------------------------------

# counts [1, 1, 1, 2, 2, 3, 5]: S_obs = 7, n = 15, f1 = 3, f2 = 2, A = (n-1)/n = 14/15
COUNTS = [1, 1, 1, 2, 2, 3, 5]


def test_chao1_known_answers():
    # 7 + (14/15) * 3*2 / (2*(2+1)) = 7 + 14/15 = 7.9333...
    assert chao1(COUNTS) == pytest.approx(7 + 14 / 15)
    # f2 = 0: [1, 1, 3]: S=3, n=5, f1=2 -> 3 + (4/5) * 2*1 / (2*1) = 3.8
    assert chao1([1, 1, 3]) == pytest.approx(3.8)
    # classic f1^2/(2 f2) would be 3 + 4/2 = 5 here; the bias-corrected form is finite at f2=0
    # f1 = 0: [2, 3, 4] -> S_obs = 3;  f1 = 1: [1, 4] -> f1(f1-1) = 0 -> S_obs = 2
    assert chao1([2, 3, 4]) == 3.0
    assert chao1([1, 4]) == 2.0
    # zeros are unseen groups and ignored; n = 1 -> (n-1)/n = 0 -> 1; empty -> 0
    assert chao1([0, 1, 0, 1, 1, 3]) == pytest.approx(chao1([1, 1, 1, 3]))
    assert chao1([1]) == 1.0
    assert chao1([]) == 0.0
    # all singletons, f2 = 0: [1]*4 -> 4 + (3/4) * 4*3/2 = 8.5
    assert chao1([1, 1, 1, 1]) == pytest.approx(8.5)
    with pytest.raises(ValueError):
        chao1([1, -2])


def test_coverage_known_answers():
    # Chao & Jost: 1 - f1/n * (n-1) f1 / ((n-1) f1 + 2 f2) = 1 - (3/15) * 42/46 = 0.8173913
    assert good_turing_coverage(COUNTS) == pytest.approx(1 - 0.2 * 42 / 46)
    # Turing: 1 - 3/15 = 0.8
    assert good_turing_coverage(COUNTS, method="turing") == pytest.approx(0.8)
    # f2 = 0: factor (n-1) f1 / ((n-1) f1) = 1 -> Turing: [1, 1, 3] -> 1 - 2/5 = 0.6
    assert good_turing_coverage([1, 1, 3]) == pytest.approx(0.6)
    assert good_turing_coverage([2, 3, 4]) == 1.0  # f1 = 0
    assert good_turing_coverage([1]) == 0.0  # n = 1: 0/0 factor -> Turing 1 - 1/1
    assert good_turing_coverage([]) == 0.0  # nothing sampled
    for counts in ([1, 1, 2, 7], [1, 2, 2, 2], [1] * 5, [1, 9]):
        c = good_turing_coverage(counts)
        assert 0.0 <= c <= 1.0
        assert c >= good_turing_coverage(counts, method="turing")


def test_chao2_known_answers():
    # units {0,1,2} {0,3} {0,4} {1,5}: m = 4; incidence 0:3, 1:2, 2..5:1 -> S=6, Q1=4, Q2=1
    # 6 + (3/4) * 4*3 / (2*(1+1)) = 6 + 0.75 * 3 = 8.25
    units = [[0, 1, 2], [0, 3], [0, 4], [1, 5]]
    assert chao2(units) == pytest.approx(8.25)
    # a repeat inside one unit counts once (presence/absence)
    assert chao2([[0, 0, 1, 2, 2], [0, 3], [0, 4], [1, 5]]) == pytest.approx(8.25)
    # m = 1 -> (m-1)/m = 0 -> S_obs; no units -> 0; Q1 = 0 -> S_obs
    assert chao2([[0, 1, 2]]) == 3.0
    assert chao2([]) == 0.0
    assert chao2([[0, 1], [1, 0]]) == 2.0
    # Q2 = 0: units {0} {1} {2}: m=3, Q1=3 -> 3 + (2/3) * 3*2/2 = 5
    assert chao2([[0], [1], [2]]) == pytest.approx(5.0)


def test_chao1_interval_known_answer():
    # Var = A f1(f1-1)/(2(f2+1)) + A^2 f1(2f1-1)^2/(4(f2+1)^2) + A^2 f1^2 f2 (f1-1)^2/(4(f2+1)^4)
    #     = A*1 + A^2*75/36 + A^2*72/324 with A = 14/15  ->  2.941728
    # T = 14/15; K = exp(1.96 sqrt(ln(1 + Var/T^2))) = exp(1.96 sqrt(ln 4.376967)) = 10.8219
    # (7 + T/K, 7 + T*K) = (7.08625, 17.0998)
    low, high = chao1_interval(COUNTS)
    assert low == pytest.approx(7.08625, rel=1e-4)
    assert high == pytest.approx(17.0998, rel=1e-4)


@pytest.mark.parametrize("counts", [[1], [1, 4], [2, 3, 4], [2] * 100, [1, 1, 3], [1, 1, 1, 1], [5, 1, 1, 2, 1]])
def test_chao1_interval_edges_are_finite_and_ordered(counts):
    s_obs = len(counts)
    low, high = chao1_interval(counts)
    assert math.isfinite(low) and math.isfinite(high)
    assert s_obs <= low <= chao1(counts) <= high


def test_chao1_interval_empty():
    assert chao1_interval([]) == (0.0, 0.0)


# --------------------------------------------------------------------------------------
# synthetic population of 50 distinct questions
# --------------------------------------------------------------------------------------

TRUE_S = 50


def _sample_grouped(n: int, seed: int):
    """Draw n items with replacement from the 50-item population, grouped in two rounds
    (the first 40 draws, then the rest, leaders passed back in)."""
    pop = _population(TRUE_S)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, TRUE_S, size=n)
    vecs = _noisy(pop, idx, rng)
    first = min(40, n)
    l1, leaders = group_by_threshold(vecs[:first], THRESHOLD)
    l2, leaders = group_by_threshold(vecs[first:], THRESHOLD, leaders)
    return idx, np.concatenate([l1, l2])


def _same_partition(a, b) -> bool:
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def test_chao1_near_truth_at_moderate_sample():
    idx, labels = _sample_grouped(100, seed=7)
    assert _same_partition(idx, labels)  # grouping recovers the true identities exactly
    counts = abundances(labels)
    s_obs = len(counts)
    assert s_obs < TRUE_S  # not everything seen yet
    est = chao1(counts)
    assert abs(est - TRUE_S) / TRUE_S <= 0.15
    assert abs(est - TRUE_S) < abs(s_obs - TRUE_S)  # better than just counting
    low, high = chao1_interval(counts)
    assert s_obs <= low <= TRUE_S <= high


def test_chao1_nearly_unbiased_over_replicates():
    # mean over 30 independent samples of 100 draws (about 43 of 50 seen on average)
    rngs = [np.random.default_rng(s) for s in range(30)]
    ests = [chao1(np.bincount(r.integers(0, TRUE_S, 100))) for r in rngs]
    assert abs(np.mean(ests) - TRUE_S) / TRUE_S < 0.05


def test_chao1_after_40_then_400_draws():
    idx, labels = _sample_grouped(40, seed=3)
    counts40 = abundances(labels)
    assert len(counts40) < TRUE_S
    assert chao1(counts40) > len(counts40)
    assert good_turing_coverage(counts40) < 0.9

    idx, labels = _sample_grouped(400, seed=3)
    assert _same_partition(idx, labels)
    counts = abundances(labels)
    assert len(counts) == TRUE_S
    assert np.median(counts) >= 5  # most seen several times
    assert good_turing_coverage(counts) > 0.98
    assert chao1(counts) == pytest.approx(TRUE_S, abs=0.5)


# --------------------------------------------------------------------------------------
# saturation curve
# --------------------------------------------------------------------------------------


def test_fit_saturation_recovers_michaelis_menten():
    n = np.arange(10, 401, 15, dtype=float)
    s = 120.0 * n / (80.0 + n)
    s_max, k = fit_saturation(n, s)
    assert s_max == pytest.approx(120.0, rel=0.01)
    assert k == pytest.approx(80.0, rel=0.01)


def test_fit_saturation_degenerate_inputs():
    assert fit_saturation([], []) == (0.0, 0.0)
    assert fit_saturation([10], [7]) == (7.0, 0.0)  # one point: nothing to extrapolate
    for drawn, distinct in (([10, 20, 30], [10, 20, 30]), ([10, 20], [5, 5]), ([5, 10], [5, 8])):
        s_max, k = fit_saturation(drawn, distinct)
        assert math.isfinite(s_max) and math.isfinite(k)
        assert s_max >= max(distinct) and k >= 0
    with pytest.raises(ValueError):
        fit_saturation([1, 2], [1])


# --------------------------------------------------------------------------------------
# the sampling loop
# --------------------------------------------------------------------------------------


def _sampler(pop: np.ndarray, round_size: int, seed: int, per_unit: int = 1):
    rng = np.random.default_rng(seed)

    def draw(_round: int):
        return [_noisy(pop, rng.integers(0, len(pop), size=per_unit), rng) for _ in range(round_size)]

    return draw


def _assert_curve_ok(est: CapacityEstimate):
    assert len(est.curve) == est.rounds
    drawn = [d for d, _ in est.curve]
    distinct = [s for _, s in est.curve]
    assert drawn == sorted(drawn) and distinct == sorted(distinct)
    if est.curve:
        assert est.curve[-1] == (est.drawn, est.observed)
    assert est.estimate >= est.observed


def test_estimate_capacity_stops_by_coverage_on_small_population():
    pop = _population(8)
    est = estimate_capacity(_sampler(pop, 20, seed=4), threshold=THRESHOLD, round_size=20, max_rounds=10)
    assert est.stop_reason == "coverage"
    assert est.rounds == 2  # min_rounds
    assert est.observed == 8 and est.estimate == 8
    assert est.coverage >= 0.95
    assert est.chao2 is None  # single-question units
    _assert_curve_ok(est)


def test_estimate_capacity_stops_by_novelty():
    # round r returns items 0-4 (always the same) plus 5 items never seen before:
    # novelty = 1.0 in round 0, 0.5 afterwards. After 2 rounds n = 20, f1 = 10, f2 = 5:
    # coverage = 1 - (10/20) * (19*10 / (19*10 + 2*5)) = 1 - 0.5 * 0.95 = 0.525 < 0.95
    pop = _population(60)
    rng = np.random.default_rng(5)

    def draw(r):
        return [_noisy(pop, [i], rng) for i in [0, 1, 2, 3, 4, *range(5 + 5 * r, 10 + 5 * r)]]

    est = estimate_capacity(draw, threshold=THRESHOLD, round_size=10, max_rounds=8, min_novelty=0.6)
    assert est.stop_reason == "novelty"
    assert est.rounds == 2 and est.curve == [(10, 10), (20, 15)]
    assert est.coverage == pytest.approx(0.525)
    _assert_curve_ok(est)


def test_estimate_capacity_stops_at_max_rounds_with_multi_question_units():
    pop = _population(200, dim=256, seed=1)  # random in 256-D: pairwise cosine ~ +-0.06
    est = estimate_capacity(_sampler(pop, 10, seed=6, per_unit=3), threshold=THRESHOLD, round_size=10, max_rounds=3)
    assert est.stop_reason == "max_rounds"
    assert est.rounds == 3 and est.drawn == 90
    assert est.chao2 is not None and est.chao2 >= est.observed
    assert est.chao1_low <= est.chao1 <= est.chao1_high
    assert est.s_max >= est.observed
    _assert_curve_ok(est)


def test_estimate_capacity_exhausted():
    pop = _population(30)
    rng = np.random.default_rng(8)

    def draw(r):
        return [_noisy(pop, [i], rng) for i in range(10 * r, 10 * r + 10)] if r < 2 else []

    est = estimate_capacity(draw, threshold=THRESHOLD, round_size=10, max_rounds=10, min_novelty=0.0)
    assert est.stop_reason == "exhausted"
    assert est.rounds == 2 and est.curve == [(10, 10), (20, 20)]
    _assert_curve_ok(est)

    nothing = estimate_capacity(lambda r: [], threshold=THRESHOLD, round_size=5, max_rounds=3)
    assert nothing.stop_reason == "exhausted"
    assert (nothing.observed, nothing.drawn, nothing.rounds, nothing.curve) == (0, 0, 0, [])
    assert nothing.chao1 == 0.0 and nothing.coverage == 0.0 and nothing.estimate == 0


def test_estimate_capacity_ignores_surplus_units_with_warning():
    pop = _population(5)
    with pytest.warns(UserWarning, match="round_size"):
        est = estimate_capacity(_sampler(pop, 7, seed=9), threshold=THRESHOLD, round_size=5, max_rounds=1)
    assert est.drawn == 5
