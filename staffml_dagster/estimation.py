"""How many *distinct* questions can a cell hold? Species-richness estimation over embeddings.

A cell (topic, track, zone, level) is sampled by calling the question generator in rounds.
Each generated question is an embedding vector; two questions are "the same question" when
the cosine of their L2-normalised vectors is >= a threshold. Grouping the sample this way
turns it into an ecological abundance sample (group = species, question = individual), so the
classic non-parametric richness estimators apply:

* **Chao1** (abundance based, Chao 1984; bias-corrected form Chao 2005) with the log-normal
  confidence interval of Chao (1987) as used by EstimateS (Colwell);
* **Chao2** (incidence based, Chao 1987): one generator call is a sampling unit that may
  return several questions;
* **sample coverage** (Good 1953 / Turing; improved estimator of Chao & Jost 2012) - the
  estimated probability that the *next* question drawn belongs to a group already seen;
* a **Michaelis-Menten saturation fit** S(n) = S_max * n / (K + n) of the accumulation curve
  (Raaijmakers 1987; Colwell & Coddington 1994) as a second, model-based opinion.

Notation used throughout: for an abundance vector (questions per group) ``n`` is the number
of questions drawn, ``S_obs`` the number of groups seen, ``f_k`` the number of groups seen
exactly ``k`` times (f1 = singletons, f2 = doubletons). For incidence data ``m`` is the number
of sampling units and ``Q_k`` the number of groups that occur in exactly ``k`` units.

Edge cases never divide by zero and never return NaN: an empty sample estimates 0 distinct
questions with coverage 0; see each function for its exact convention.

Plain Python + numpy/scipy; no Dagster.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit

__all__ = [
    "CapacityEstimate",
    "abundances",
    "chao1",
    "chao1_interval",
    "chao2",
    "estimate_capacity",
    "fit_saturation",
    "good_turing_coverage",
    "group_by_threshold",
]

# Cosines are computed in floating point; an exact duplicate can come out as 0.9999999999.
# Comparing against ``threshold - _COS_TOL`` keeps threshold=1.0 meaning "identical".
_COS_TOL = 1e-9


# --------------------------------------------------------------------------------------
# grouping
# --------------------------------------------------------------------------------------


def _normalize_rows(x: np.ndarray) -> np.ndarray:
    """L2-normalise rows; all-zero rows stay zero (cosine 0 with everything)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def _as_matrix(vectors, name: str) -> np.ndarray:
    arr = np.asarray(vectors, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr.reshape(1, -1) if arr.size else arr.reshape(0, 0)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (one row per vector), got shape {arr.shape}")
    if arr.size and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def group_by_threshold(
    vectors: np.ndarray, threshold: float, leaders: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy leader clustering in input order on L2-normalized rows.

    Each vector (processed in input order) joins the *first* existing group - lowest group
    id, not the most similar one - whose leader has cosine >= ``threshold``; otherwise it
    starts a new group and becomes that group's leader. A leader is the first member of its
    group and is never updated, so a group is the set of vectors within ``threshold`` of one
    fixed question (groups therefore do not chain: A~B and B~C does not put A with C).

    ``leaders`` (optional) are existing group leaders from earlier rounds, row ``i`` being the
    leader of group ``i``; passing the returned leader matrix back in on the next round keeps
    group ids stable across rounds (new groups get ids ``len(leaders)``, ``len(leaders)+1``...).
    The input ``leaders`` array is not modified.

    Rows are L2-normalised before comparison (so cosine = dot product); an all-zero row has
    cosine 0 with everything. Cosines are compared with a tolerance of 1e-9 so that
    ``threshold=1.0`` still merges exact duplicates.

    Returns ``(labels, leaders)``: int64 group ids for the new vectors and the updated
    (normalised) leader matrix, one row per group. Empty ``vectors`` give empty labels and the
    leaders unchanged.
    """
    if not math.isfinite(threshold):
        raise ValueError("threshold must be a finite number")
    x = _normalize_rows(_as_matrix(vectors, "vectors")) if np.size(vectors) else None
    if leaders is not None and np.size(leaders):
        lead = _normalize_rows(_as_matrix(leaders, "leaders"))
    else:
        lead = None

    if x is None:  # nothing new to group
        if lead is None:
            dim = np.shape(leaders)[-1] if leaders is not None and np.ndim(leaders) == 2 else 0
            lead = np.empty((0, dim))
        return np.empty(0, dtype=np.int64), lead

    n, dim = x.shape
    if lead is not None and lead.shape[1] != dim:
        raise ValueError(f"leaders have dimension {lead.shape[1]} but vectors have {dim}")

    g = 0 if lead is None else lead.shape[0]
    buf = np.empty((g + n, dim))  # at most n new leaders
    if g:
        buf[:g] = lead
    labels = np.empty(n, dtype=np.int64)
    cut = threshold - _COS_TOL
    for i in range(n):
        v = x[i]
        if g:
            hits = np.flatnonzero(buf[:g] @ v >= cut)
            if hits.size:
                labels[i] = hits[0]
                continue
        buf[g] = v
        labels[i] = g
        g += 1
    return labels, buf[:g].copy()


def abundances(labels: Sequence[int]) -> np.ndarray:
    """Number of members per group (the abundance vector of ecology).

    Ordered by ascending group id; groups that do not occur in ``labels`` are omitted, so
    ``len(abundances(labels)) == S_obs`` and every entry is >= 1. Empty input gives an empty
    int64 array. Labels must be non-negative integers.
    """
    arr = np.asarray(labels)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    arr = arr.ravel()
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.mod(arr, 1) == 0):
            raise ValueError("labels must be integers")
        arr = arr.astype(np.int64)
    if arr.min() < 0:
        raise ValueError("labels must be non-negative")
    _, counts = np.unique(arr, return_counts=True)
    return counts.astype(np.int64)


# --------------------------------------------------------------------------------------
# abundance-based estimators
# --------------------------------------------------------------------------------------


def _counts(counts: Sequence[int]) -> np.ndarray:
    """Validate an abundance vector; zero entries (unseen groups) are dropped."""
    arr = np.asarray(counts, dtype=np.float64).ravel()
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if not np.all(np.isfinite(arr)) or np.any(arr < 0) or not np.all(np.mod(arr, 1) == 0):
        raise ValueError("counts must be non-negative integers")
    arr = arr.astype(np.int64)
    return arr[arr > 0]


def _freqs(c: np.ndarray) -> tuple[int, int, int, int]:
    """(S_obs, n, f1, f2) of a cleaned abundance vector."""
    return int(c.size), int(c.sum()), int(np.count_nonzero(c == 1)), int(np.count_nonzero(c == 2))


def chao1(counts: Sequence[int]) -> float:
    """Bias-corrected Chao1 richness estimate (Chao 1984; bias-corrected form Chao 2005).

        Chao1 = S_obs + (n - 1)/n * f1 (f1 - 1) / (2 (f2 + 1))

    The bias-corrected form is defined for every f2 (the classic S_obs + f1^2 / (2 f2) is
    undefined at f2 = 0) and is what EstimateS and iNEXT report by default.

    Edge cases: empty / all-zero counts -> 0.0; n = 1 -> 1.0 (the (n-1)/n factor is 0);
    f1 in {0, 1} -> S_obs (no evidence of unseen groups); f2 = 0 uses f2 + 1 = 1.
    The result is always >= S_obs. Zero entries in ``counts`` are ignored.
    """
    s_obs, n, f1, f2 = _freqs(_counts(counts))
    if n == 0:
        return 0.0
    return s_obs + (n - 1) / n * f1 * (f1 - 1) / (2.0 * (f2 + 1))


def _chao1_variance(s_obs: int, n: int, f1: int, f2: int, point: float) -> float:
    """Variance of bias-corrected Chao1 (Chao 2005; EstimateS eqs. 6-8), A = (n-1)/n.

    f1 > 0, f2 > 0:  A f1(f1-1)/(2(f2+1)) + A^2 f1(2f1-1)^2/(4(f2+1)^2)
                     + A^2 f1^2 f2 (f1-1)^2/(4(f2+1)^4)
    f1 > 0, f2 = 0:  A f1(f1-1)/2 + A^2 f1(2f1-1)^2/4 - A^2 f1^4/(4 Chao1)
    f1 = 0:          S_obs exp(-n/S_obs) (1 - exp(-n/S_obs))
    """
    a = (n - 1) / n
    if f1 == 0:
        p = math.exp(-n / s_obs)
        var = s_obs * p * (1 - p)
    elif f2 > 0:
        var = (
            a * f1 * (f1 - 1) / (2 * (f2 + 1))
            + a * a * f1 * (2 * f1 - 1) ** 2 / (4 * (f2 + 1) ** 2)
            + a * a * f1 * f1 * f2 * (f1 - 1) ** 2 / (4 * (f2 + 1) ** 4)
        )
    else:
        var = a * f1 * (f1 - 1) / 2 + a * a * f1 * (2 * f1 - 1) ** 2 / 4 - a * a * f1**4 / (4 * point)
    return max(var, 0.0)


def chao1_interval(counts: Sequence[int], z: float = 1.96) -> tuple[float, float]:
    """Log-normal confidence interval for Chao1 (Chao 1987; EstimateS user guide, Colwell).

    With T = Chao1 - S_obs > 0 (estimated number of unseen groups) and var = Var(Chao1)
    (see ``_chao1_variance``)::

        K = exp(z * sqrt(ln(1 + var / T^2)))
        (low, high) = (S_obs + T / K, S_obs + T * K)

    so the lower bound is never below S_obs and the interval is asymmetric (long upper tail).

    When T = 0 (f1 <= 1: no evidence of unseen groups) the log-normal form is undefined and the
    EstimateS rule for the no-singleton case is used, with P = exp(-n / S_obs)::

        (low, high) = (max(S_obs, S_obs/(1-P) - z sqrt(S_obs P/(1-P))),
                       S_obs/(1-P) + z sqrt(S_obs P/(1-P)))

    The interval is finally widened, if needed, to contain the point estimate (that rule can
    otherwise exclude it for large S_obs with small n), so S_obs <= low <= Chao1 <= high.
    Empty counts -> (0.0, 0.0).
    """
    c = _counts(counts)
    s_obs, n, f1, f2 = _freqs(c)
    if n == 0:
        return 0.0, 0.0
    z = abs(float(z))
    point = chao1(c)
    t = point - s_obs
    if t > 0:
        var = _chao1_variance(s_obs, n, f1, f2, point)
        k = math.exp(z * math.sqrt(math.log1p(var / (t * t))))
        low, high = s_obs + t / k, s_obs + t * k
    else:
        p = math.exp(-n / s_obs)
        centre = s_obs / (1 - p)
        half = z * math.sqrt(s_obs * p / (1 - p))
        low, high = max(float(s_obs), centre - half), centre + half
    return max(float(s_obs), min(low, point)), max(high, point)


def good_turing_coverage(counts: Sequence[int], *, method: str = "chao-jost") -> float:
    """Estimated sample coverage: probability that the next draw falls in a group already seen.

    ``method="chao-jost"`` (default) - the improved estimator of Chao & Jost (2012, Ecology
    93:2533, eq. 4b)::

        C = 1 - f1/n * ((n - 1) f1 / ((n - 1) f1 + 2 f2))

    ``method="turing"`` - Good's (1953) / Turing's classic ``C = 1 - f1/n``.

    The Chao & Jost form uses doubletons to correct the known upward bias of f1/n as the
    estimate of the undetected probability mass; it is never below Turing's value, and equals
    it when f2 = 0. (iNEXT replaces the f2 = 0 case by a bias-corrected variant that reports
    C = 1 for a sample with one singleton and no doubletons; that is deliberately *not* used
    here because this value drives a stopping rule, so the conservative Turing value is kept.)

    Edge cases: empty counts -> 0.0 (nothing sampled, nothing covered); f1 = 0 -> 1.0;
    n = 1 (one singleton: 0/0 in the correction factor) -> Turing's 1 - 1/1 = 0.0.
    """
    if method not in ("chao-jost", "turing"):
        raise ValueError(f"unknown coverage method {method!r}; use 'chao-jost' or 'turing'")
    _, n, f1, f2 = _freqs(_counts(counts))
    if n == 0:
        return 0.0
    if f1 == 0:
        return 1.0
    factor = 1.0
    if method == "chao-jost":
        denom = (n - 1) * f1 + 2 * f2
        if denom > 0:
            factor = (n - 1) * f1 / denom
    return min(1.0, max(0.0, 1.0 - f1 / n * factor))


# --------------------------------------------------------------------------------------
# incidence-based estimator
# --------------------------------------------------------------------------------------


def chao2(incidence: Sequence[Iterable[int]]) -> float:
    """Bias-corrected Chao2 from incidence data (Chao 1987; bias-corrected form Chao 2005).

    ``incidence`` lists sampling units (e.g. one generator call that returned several
    questions), each an iterable of the group ids it contains; a group repeated inside one
    unit counts once (presence/absence). With m units, Q1 groups found in exactly one unit
    ("uniques") and Q2 in exactly two ("duplicates")::

        Chao2 = S_obs + (m - 1)/m * Q1 (Q1 - 1) / (2 (Q2 + 1))

    Every unit counts toward m, including an empty one (a sampling unit that found nothing).
    Edge cases: no units or no groups -> float(S_obs) (0.0 for empty input); m = 1 -> S_obs;
    Q1 in {0, 1} -> S_obs. Always >= S_obs.
    """
    units = [set(int(g) for g in unit) for unit in incidence]
    m = len(units)
    if m == 0:
        return 0.0
    freq: dict[int, int] = {}
    for unit in units:
        for g in unit:
            freq[g] = freq.get(g, 0) + 1
    s_obs = len(freq)
    q1 = sum(1 for v in freq.values() if v == 1)
    q2 = sum(1 for v in freq.values() if v == 2)
    return s_obs + (m - 1) / m * q1 * (q1 - 1) / (2.0 * (q2 + 1))


# --------------------------------------------------------------------------------------
# accumulation-curve fit
# --------------------------------------------------------------------------------------


def _mm(n, s_max, k):
    return s_max * n / (k + n)


def fit_saturation(drawn: Sequence[float], distinct: Sequence[float]) -> tuple[float, float]:
    """Fit the Michaelis-Menten accumulation curve S(n) = S_max * n / (K + n).

    ``drawn`` is the number of questions drawn so far and ``distinct`` the number of distinct
    groups seen at that point (the accumulation curve). S_max is the asymptote (estimated
    richness) and K the half-saturation sample size (S(K) = S_max / 2); see Raaijmakers (1987)
    and Colwell & Coddington (1994) for its use as a richness estimator.

    Method, first that succeeds:

    1. non-linear least squares (``scipy.optimize.curve_fit``, trust-region reflective) with
       bounds S_max >= max(distinct), K > 0 and p0 = (1.2 * max(distinct) + 1, K through the
       last point);
    2. Lineweaver-Burk: linear regression 1/S = 1/S_max + (K/S_max) * (1/n), accepted when
       intercept > 0 and slope >= 0;
    3. no usable shape (a single point, or a curve that is not concave): (max(distinct), 0.0),
       i.e. "nothing to extrapolate beyond what was seen".

    An accumulation curve that is still linear (every draw new) has no finite asymptote; the
    least-squares fit then returns a very large S_max and K - trust Chao1's interval instead.
    Points with drawn <= 0 are ignored (S(0) = 0 holds by construction). Returns (0.0, 0.0)
    when nothing was seen. Always S_max >= max(distinct) and K >= 0, both finite.
    """
    x = np.asarray(drawn, dtype=np.float64).ravel()
    y = np.asarray(distinct, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError("drawn and distinct must have the same length")
    if x.size and not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("drawn and distinct must be finite")
    keep = x > 0
    x, y = x[keep], y[keep]
    if x.size == 0 or y.max() <= 0:
        return 0.0, 0.0
    y_max = float(y.max())

    if x.size >= 2:
        s0 = 1.2 * y_max + 1.0
        last = int(np.argmax(x))
        k0 = x[last] * (s0 / y[last] - 1.0) if y[last] > 0 else float(np.median(x))
        k0 = max(k0, 1e-6)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", OptimizeWarning)
                warnings.simplefilter("ignore", RuntimeWarning)
                popt, _ = curve_fit(
                    _mm,
                    x,
                    y,
                    p0=(s0, k0),
                    bounds=([y_max, 1e-9], [np.inf, np.inf]),
                    method="trf",
                    x_scale="jac",
                    maxfev=20000,
                )
            s_max, k = float(popt[0]), float(popt[1])
            if math.isfinite(s_max) and math.isfinite(k) and s_max >= y_max and k >= 0:
                return s_max, k
        except (RuntimeError, ValueError, FloatingPointError):
            pass

        pos = y > 0
        if np.count_nonzero(pos) >= 2 and np.unique(x[pos]).size >= 2:
            slope, intercept = np.polyfit(1.0 / x[pos], 1.0 / y[pos], 1)
            if intercept > 0 and slope >= 0:
                s_max = max(1.0 / intercept, y_max)
                k = slope * s_max  # keep the fitted initial slope S_max / K
                if math.isfinite(s_max) and math.isfinite(k):
                    return float(s_max), float(k)

    return y_max, 0.0


# --------------------------------------------------------------------------------------
# the sampling loop
# --------------------------------------------------------------------------------------


@dataclass
class CapacityEstimate:
    """Result of :func:`estimate_capacity` for one cell.

    ``observed``: distinct groups seen (S_obs). ``chao1`` / ``chao1_low`` / ``chao1_high``:
    bias-corrected Chao1 and its log-normal CI. ``chao2``: incidence-based estimate over
    generator calls, ``None`` when every call returned a single question (Chao2 would then
    just repeat Chao1 with m = n). ``coverage``: Chao & Jost sample coverage. ``s_max`` / ``k``:
    Michaelis-Menten fit of ``curve``. ``rounds``: rounds that returned questions; ``drawn``:
    questions drawn in total. ``curve``: (drawn so far, distinct so far) after each round.
    ``stop_reason``: "coverage" | "novelty" | "max_rounds" | "exhausted".
    """

    observed: int
    chao1: float
    chao1_low: float
    chao1_high: float
    chao2: float | None
    coverage: float
    s_max: float
    k: float
    rounds: int
    drawn: int
    curve: list[tuple[int, int]] = field(default_factory=list)
    stop_reason: str = "max_rounds"

    @property
    def estimate(self) -> int:
        """Capacity point estimate: ``round(chao1)``, never below ``observed``.

        Chao1 is used rather than the Michaelis-Menten asymptote or Chao2 because it (a) uses
        every question as an individual, whatever the call batching; (b) is a *lower-bound*
        estimator under heterogeneous draw probabilities (Chao 1984) - an LLM generator strongly
        favours some questions, so a lower bound is the safe number to plan generation
        against; (c) has a well-studied CI; and (d) does not depend on the round schedule the
        way a curve fit does (MM asymptotes are known to swing with sample size).
        """
        return max(int(self.observed), int(round(self.chao1)))


def estimate_capacity(
    draw: Callable[[int], list[np.ndarray]],
    *,
    threshold: float,
    round_size: int,
    max_rounds: int,
    coverage_target: float = 0.95,
    min_novelty: float = 0.05,
    min_rounds: int = 2,
) -> CapacityEstimate:
    """Sample a cell round by round until the number of distinct questions can be estimated.

    ``draw(round_index)`` (round_index = 0, 1, ...) returns a list of sampling units, each a
    2-D array of embedding vectors - one row per question returned by one generator call (a
    unit may have 1 row). ``round_size`` is the number of units a round should hold: the
    caller's ``draw`` is expected to return that many; fewer is fine (e.g. the pool is running
    out), surplus units are ignored with a warning so rounds stay comparable. Units with no
    rows are skipped (a call that returned nothing is not evidence about the population).

    After each round: all vectors are grouped with :func:`group_by_threshold` (leaders persist
    across rounds, so group ids are stable), abundance counts and per-unit incidence are
    updated and (drawn so far, distinct so far) is appended to the curve. Stop, checked in
    this order:

    * "exhausted" - ``draw`` returned no units (or no vectors); nothing from that call is used;
    * "coverage" - sample coverage (Chao & Jost 2012) >= ``coverage_target``;
    * "novelty" - the round's novelty, new groups / vectors drawn in that round, < ``min_novelty``;
    * "max_rounds" - ``max_rounds`` rounds were run.

    The coverage and novelty rules only apply once ``min_rounds`` rounds have been run, so a
    lucky or degenerate first round cannot end sampling (``max_rounds`` still caps it).
    Chao2 is computed (units as sampling units) when any unit had more than one vector.
    """
    if round_size < 1:
        raise ValueError("round_size must be >= 1")
    if max_rounds < 1:
        raise ValueError("max_rounds must be >= 1")
    if min_rounds < 1:
        raise ValueError("min_rounds must be >= 1")

    leaders: np.ndarray | None = None
    counts: list[int] = []  # index = group id
    incidence: list[set[int]] = []
    multi = False
    curve: list[tuple[int, int]] = []
    drawn = 0
    rounds = 0
    stop_reason = "max_rounds"

    for r in range(max_rounds):
        got = draw(r)
        units = [] if got is None else list(got)
        if len(units) > round_size:
            warnings.warn(
                f"draw({r}) returned {len(units)} units, more than round_size={round_size}; the surplus is ignored",
                stacklevel=2,
            )
            units = units[:round_size]
        mats = [m for m in (_as_matrix(u, "unit") for u in units) if m.shape[0] > 0]
        if not mats:
            stop_reason = "exhausted"
            break

        sizes = [m.shape[0] for m in mats]
        before = 0 if leaders is None else leaders.shape[0]
        labels, leaders = group_by_threshold(np.vstack(mats), threshold, leaders)
        counts.extend([0] * (leaders.shape[0] - len(counts)))
        for g in labels:
            counts[g] += 1
        start = 0
        for size in sizes:
            incidence.append(set(labels[start : start + size].tolist()))
            start += size
        multi = multi or any(size > 1 for size in sizes)

        n_round = int(labels.size)
        drawn += n_round
        rounds += 1
        curve.append((drawn, len(counts)))
        novelty = (leaders.shape[0] - before) / n_round

        if rounds >= min_rounds:
            if good_turing_coverage(counts) >= coverage_target:
                stop_reason = "coverage"
                break
            if novelty < min_novelty:
                stop_reason = "novelty"
                break

    low, high = chao1_interval(counts)
    s_max, k = fit_saturation([c[0] for c in curve], [c[1] for c in curve])
    return CapacityEstimate(
        observed=len(counts),
        chao1=chao1(counts),
        chao1_low=low,
        chao1_high=high,
        chao2=chao2(incidence) if multi else None,
        coverage=good_turing_coverage(counts),
        s_max=s_max,
        k=k,
        rounds=rounds,
        drawn=drawn,
        curve=curve,
        stop_reason=stop_reason,
    )


# --------------------------------------------------------------------------- measuring a cell


def measure_cell_capacity(
    generate: Callable[[int], list[dict]],
    embed: Callable[[list[str]], np.ndarray],
    text: Callable[[dict], str],
    *,
    threshold: float,
    max_rounds: int,
    min_rounds: int,
    coverage_target: float,
    min_novelty: float,
) -> CapacityEstimate:
    """Measure one cell: ``generate(round)`` asks the backend for one round of questions
    (a fresh sample each round, as many as the caller's round size); the call is one
    sampling unit whose questions are embedded with ``embed`` and grouped at ``threshold``."""

    def draw(round_index: int) -> list[np.ndarray]:
        rows = generate(round_index)
        if not rows:
            return []
        return [np.asarray(embed([text(r) for r in rows]), dtype=np.float64)]

    return estimate_capacity(
        draw,
        threshold=threshold,
        round_size=1,
        max_rounds=max_rounds,
        coverage_target=coverage_target,
        min_novelty=min_novelty,
        min_rounds=min_rounds,
    )
