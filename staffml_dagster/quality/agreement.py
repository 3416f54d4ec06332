"""Inter-rater reliability: Cohen's kappa (two raters), Fleiss' kappa (more), with bootstrap
confidence intervals over items, per rubric criterion and per review round.

Raters are the deterministic gate, the LLM judge (when it ran) and each human reviewer; a
rating is one rater's 0/1 score of one item on one criterion. Plain numpy and pandas.

- :func:`cohen_kappa` — two raters' labels of the same items (Cohen 1960):
  ``(p_o - p_e) / (1 - p_e)`` with ``p_e`` from each rater's own marginals.
- :func:`fleiss_kappa` — an items x categories table of counts, every item rated by the same
  number of raters (Fleiss 1971): mean pairwise agreement per item against agreement
  expected from the pooled category shares.
- :func:`kappa_estimate` — either one on an items x raters matrix, with a percentile bootstrap
  interval (items resampled with replacement, fixed seed, so the same ratings always give the
  same interval), vectorised over resamples.
- :func:`agreement_table` — per criterion, every pair of raters (Cohen) and, with three or
  more raters, all of them together (Fleiss), on the items each set has all rated.
- :func:`agreement_by_round` — the same per review round: does agreement rise as the corpus
  and the rubric's use improve?
- :func:`disagreements` — the items where raters split most, for the next round.

Kappa is undefined (None) when chance agreement is 1: every rater gave every item the same
score, so there is nothing to agree on beyond chance.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

RUBRIC_CRITERIA = ("topic_fit", "zone_fit", "grounding", "math_correct", "mistake_real", "coherent", "staff_worthy")
# The gate's verdict column -> the rubric criterion it claims to measure (benchmarks/reviews/score.py
# reads it from here): the gate "passes" a question when it would call it staff-worthy.
GATE_TO_RUBRIC = {
    "topic_fit_ok": "topic_fit",
    "structure_ok": "zone_fit",
    "grounding_ok": "grounding",
    "computability_ok": "math_correct",
    "falsifiability_ok": "mistake_real",
    "coherence_ok": "coherent",
    "passed": "staff_worthy",
}
GATE = "gate"
JUDGE = "judge"
HUMAN_PREFIX = "human:"
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 20261207
CONFIDENCE = 0.95


def _kappa(observed: float, expected: float) -> float | None:
    if expected >= 1.0 - 1e-12:
        return None
    return (observed - expected) / (1.0 - expected)


def cohen_table_kappa(table: Sequence[Sequence[float]]) -> float | None:
    """Cohen's kappa from a square contingency table (rows: rater A's category, columns:
    rater B's)."""
    t = np.asarray(table, dtype=float)
    if t.ndim != 2 or t.shape[0] != t.shape[1]:
        raise ValueError(f"a Cohen table must be square, got shape {t.shape}")
    n = t.sum()
    if n <= 0:
        raise ValueError("a Cohen table needs at least one rated item")
    p = t / n
    return _kappa(float(np.trace(p)), float(p.sum(axis=1) @ p.sum(axis=0)))


def cohen_kappa(a: Sequence, b: Sequence) -> float | None:
    """Cohen's kappa of two raters' labels of the same items, in the same order."""
    if len(a) != len(b):
        raise ValueError(f"two raters must label the same items: {len(a)} labels against {len(b)}")
    if not len(a):
        raise ValueError("Cohen's kappa needs at least one item")
    categories = sorted(set(a) | set(b), key=str)
    index = {c: i for i, c in enumerate(categories)}
    table = np.zeros((len(categories), len(categories)))
    for x, y in zip(a, b):
        table[index[x], index[y]] += 1
    return cohen_table_kappa(table)


def fleiss_kappa(counts: Sequence[Sequence[float]]) -> float | None:
    """Fleiss' kappa from an items x categories table: ``counts[i][j]`` raters put item i in
    category j; every item must have the same number of ratings (two or more)."""
    c = np.asarray(counts, dtype=float)
    if c.ndim != 2 or c.shape[0] == 0:
        raise ValueError("Fleiss' kappa needs an items x categories table with at least one item")
    per_item = c.sum(axis=1)
    m = per_item[0]
    if not np.all(per_item == m):
        raise ValueError(
            f"every item must have the same number of ratings for Fleiss' kappa; got {sorted(set(per_item.tolist()))}"
        )
    if m < 2:
        raise ValueError("Fleiss' kappa needs at least two ratings per item")
    p_items = ((c * c).sum(axis=1) - m) / (m * (m - 1))
    shares = c.sum(axis=0) / c.sum()
    return _kappa(float(p_items.mean()), float((shares * shares).sum()))


@dataclass(frozen=True)
class KappaEstimate:
    method: str  # "cohen" (two raters) | "fleiss" (more)
    items: int
    raters: int
    kappa: float | None
    ci_low: float | None
    ci_high: float | None
    observed_agreement: float  # share of items on which all raters gave the same score


def _kappa_terms(codes: np.ndarray, k: int, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Observed and chance agreement of the resamples ``idx`` (resamples x items, row indices
    into ``codes``, an items x raters matrix of category codes 0..k-1), vectorised: Cohen's
    terms for two raters, Fleiss' for more."""
    if codes.shape[1] == 2:
        a, b = codes[:, 0], codes[:, 1]
        observed = (a == b)[idx].mean(axis=1)
        expected = sum((a == j)[idx].mean(axis=1) * (b == j)[idx].mean(axis=1) for j in range(k))
        return observed, expected
    m = codes.shape[1]
    counts = np.stack([(codes == j).sum(axis=1) for j in range(k)], axis=1)  # items x categories
    per_item = ((counts * counts).sum(axis=1) - m) / (m * (m - 1))
    observed = per_item[idx].mean(axis=1)
    shares = np.stack([counts[:, j][idx].sum(axis=1) for j in range(k)], axis=1) / (idx.shape[1] * m)
    return observed, (shares * shares).sum(axis=1)


def kappa_estimate(
    ratings, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED, confidence: float = CONFIDENCE
) -> KappaEstimate:
    """Kappa of an items x raters matrix of labels (no missing values), Cohen for two raters,
    Fleiss for more, with a percentile bootstrap interval over items. Resamples whose kappa is
    undefined are left out; with fewer than half defined, the interval is None."""
    r = np.asarray(ratings, dtype=object)
    if r.ndim != 2 or r.shape[1] < 2:
        raise ValueError(f"ratings must be an items x raters matrix with two or more raters, got shape {r.shape}")
    if r.shape[0] == 0:
        raise ValueError("ratings must hold at least one item")
    categories = sorted({v for v in r.ravel().tolist()}, key=str)
    index = {c: i for i, c in enumerate(categories)}
    codes = np.vectorize(index.__getitem__, otypes=[int])(r)
    n, k = codes.shape[0], len(categories)
    observed, expected = _kappa_terms(codes, k, np.arange(n)[None, :])
    kappa = _kappa(float(observed[0]), float(expected[0]))
    unanimous = float(np.mean((codes == codes[:, :1]).all(axis=1)))
    low = high = None
    if kappa is not None and resamples > 0 and n > 1:
        rng = np.random.default_rng(seed)
        draws = []
        for start in range(0, resamples, 500):  # bounded memory: 500 resamples x items at a time
            idx = rng.integers(0, n, (min(500, resamples - start), n))
            po, pe = _kappa_terms(codes, k, idx)
            defined = pe < 1.0 - 1e-12
            draws.append((po[defined] - pe[defined]) / (1.0 - pe[defined]))
        draws = np.concatenate(draws)
        if len(draws) >= resamples / 2:
            tail = (1 - confidence) / 2
            low, high = (float(v) for v in np.quantile(draws, [tail, 1 - tail]))
    return KappaEstimate("cohen" if r.shape[1] == 2 else "fleiss", int(n), int(r.shape[1]), kappa, low, high, unanimous)


# --------------------------------------------------------------------------- ratings tables


def gate_ratings(validated: pd.DataFrame) -> pd.DataFrame:
    """The gate's verdicts as long ratings (item, rater, criterion, score) through
    GATE_TO_RUBRIC; a null verdict is no rating."""
    frames = []
    for column, criterion in GATE_TO_RUBRIC.items():
        if column not in validated.columns or "id" not in validated.columns:
            continue
        part = validated[["id", column]].dropna()
        frames.append(
            pd.DataFrame(
                {
                    "item": part["id"].astype(str),
                    "rater": GATE,
                    "criterion": criterion,
                    "score": part[column].astype(bool).astype(int),
                }
            )
        )
    return pd.concat(frames, ignore_index=True) if frames else empty_ratings()


def review_ratings(reviews: pd.DataFrame, rater: str | None = None) -> pd.DataFrame:
    """A reviews table (one row per question id, reviewer, round; a column per criterion) as
    long ratings with a ``round`` column. Humans are ``human:<reviewer>``; ``rater`` names
    them all otherwise (the judge's table)."""
    frames = []
    for criterion in RUBRIC_CRITERIA:
        if criterion not in reviews.columns:
            continue
        part = reviews.dropna(subset=[criterion])
        frames.append(
            pd.DataFrame(
                {
                    "item": part["question_id"].astype(str),
                    "rater": rater if rater else HUMAN_PREFIX + part["reviewer"].astype(str),
                    "criterion": criterion,
                    "score": part[criterion].astype(int),
                    "round": part["round"].astype(int) if "round" in part.columns else 0,
                }
            )
        )
    return pd.concat(frames, ignore_index=True) if frames else empty_ratings()


def empty_ratings() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "item": pd.Series(dtype=str),
            "rater": pd.Series(dtype=str),
            "criterion": pd.Series(dtype=str),
            "score": pd.Series(dtype=int),
        }
    )


AGREEMENT_COLUMNS = [
    "criterion",
    "raters",
    "method",
    "items",
    "kappa",
    "ci_low",
    "ci_high",
    "observed_agreement",
    "constant_raters",
]


def agreement_table(
    ratings: pd.DataFrame, min_items: int = 2, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> pd.DataFrame:
    """Per criterion: Cohen's kappa for every pair of raters and, with three or more raters,
    Fleiss' kappa over all of them, each on the items the raters in it have all scored (at
    least ``min_items``). ``raters`` reads "gate vs human:ana" or "all (gate, judge, ...)"."""
    rows = []
    for criterion in [c for c in RUBRIC_CRITERIA if c in set(ratings["criterion"])]:
        part = ratings[ratings["criterion"] == criterion]
        wide = part.pivot_table(index="item", columns="rater", values="score", aggfunc="first")
        raters = sorted(wide.columns, key=_rater_order)
        groups = [list(p) for p in itertools.combinations(raters, 2)]
        if len(raters) >= 3:
            groups.append(raters)
        for group in groups:
            shared = wide[group].dropna()
            if len(shared) < min_items:
                continue
            est = kappa_estimate(shared.to_numpy(dtype=int), resamples=resamples, seed=seed)
            label = " vs ".join(group) if len(group) == 2 else f"all ({', '.join(group)})"
            # a rater who gave every shared item the same score agrees no better than chance by
            # construction (Cohen's kappa is 0 whatever the other says): said, not hidden
            constant = ", ".join(r for r in group if shared[r].nunique() == 1)
            rows.append(
                {
                    "criterion": criterion,
                    "raters": label,
                    "method": est.method,
                    "items": est.items,
                    "kappa": est.kappa,
                    "ci_low": est.ci_low,
                    "ci_high": est.ci_high,
                    "observed_agreement": est.observed_agreement,
                    "constant_raters": constant,
                }
            )
    return pd.DataFrame(rows, columns=AGREEMENT_COLUMNS)


def _rater_order(rater: str) -> tuple[int, str]:
    return ({GATE: 0, JUDGE: 1}.get(rater, 2), rater)


def agreement_by_round(human: pd.DataFrame, others: pd.DataFrame | None = None, **kwargs) -> pd.DataFrame:
    """agreement_table per review round: the humans of that round, with ``others`` (the gate,
    the judge: raters without rounds) joined to every round. One row per (round, criterion,
    raters), sorted by round."""
    frames = []
    for rnd in sorted(human["round"].dropna().unique()) if "round" in human.columns else []:
        this = human[human["round"] == rnd].drop(columns=["round"])
        both = (
            pd.concat([this, others.drop(columns=["round"], errors="ignore")], ignore_index=True)
            if others is not None
            else this
        )
        table = agreement_table(both, **kwargs)
        table.insert(0, "round", int(rnd))
        frames.append(table)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["round", *AGREEMENT_COLUMNS])


def disagreements(ratings: pd.DataFrame, top: int = 10) -> pd.DataFrame:
    """Items ranked by how much their raters split: per (item, criterion) the share of rater
    pairs that disagree, averaged over the item's criteria; with the criteria that split and
    the raters scoring 0 on them. Only items rated by two or more raters."""
    rows = []
    for item, part in ratings.groupby("item"):
        split, shares = [], []
        for criterion in [c for c in RUBRIC_CRITERIA if c in set(part["criterion"])]:
            crit = part[part["criterion"] == criterion]
            scores = crit.drop_duplicates("rater")["score"].tolist()
            if len(scores) < 2:
                continue
            ones = sum(scores)
            pairs = len(scores) * (len(scores) - 1) / 2
            shares.append(ones * (len(scores) - ones) / pairs)
            if 0 < ones < len(scores):
                zeros = sorted(crit.loc[crit["score"] == 0, "rater"].unique(), key=_rater_order)
                split.append(f"{criterion} (0: {', '.join(zeros)})")
        if shares:
            rows.append(
                {
                    "item": item,
                    "disagreement": float(np.mean(shares)),
                    "criteria_split": len(split),
                    "split": "; ".join(split),
                    "raters": int(part["rater"].nunique()),
                }
            )
    out = pd.DataFrame(rows, columns=["item", "disagreement", "criteria_split", "split", "raters"])
    return (
        out.sort_values(["disagreement", "criteria_split", "item"], ascending=[False, False, True])
        .head(top)
        .reset_index(drop=True)
    )


# --------------------------------------------------------------------------- the report over gate, judge and reviewers


def latest_reviews(reviews: pd.DataFrame) -> pd.DataFrame:
    """Each reviewer's most recent score of each question (their latest round)."""
    if reviews.empty:
        return reviews
    return reviews.sort_values("round").drop_duplicates(["question_id", "reviewer"], keep="last")


def _comparison(raters: str) -> str | None:
    """Which comparison a row of agreement_table belongs to, for convergence."""
    if raters.startswith("all ("):
        return None
    a, b = raters.split(" vs ")
    if a.startswith(HUMAN_PREFIX) and b.startswith(HUMAN_PREFIX):
        return "among reviewers"
    if b.startswith(HUMAN_PREFIX) and a in (GATE, JUDGE):
        return f"{a} vs reviewers"
    return None


def convergence(by_round: pd.DataFrame) -> pd.DataFrame:
    """Mean kappa per round, criterion and comparison (among reviewers, gate vs reviewers,
    judge vs reviewers): does agreement rise from round to round?"""
    if by_round.empty:
        return pd.DataFrame(columns=["round", "criterion", "comparison", "kappa", "pairs"])
    df = by_round.assign(comparison=by_round["raters"].map(_comparison)).dropna(subset=["comparison", "kappa"])
    out = (
        df.groupby(["round", "criterion", "comparison"], sort=False)
        .agg(kappa=("kappa", "mean"), pairs=("kappa", "size"))
        .reset_index()
    )
    return out.sort_values(
        ["comparison", "criterion", "round"], key=lambda s: s.map(_criterion_rank) if s.name == "criterion" else s
    ).reset_index(drop=True)


def _criterion_rank(c: str) -> int:
    return RUBRIC_CRITERIA.index(c) if c in RUBRIC_CRITERIA else len(RUBRIC_CRITERIA)


@dataclass
class AgreementReport:
    overall: pd.DataFrame  # agreement_table over every rater, reviewers at their latest round
    by_round: pd.DataFrame  # agreement_by_round
    convergence: pd.DataFrame  # convergence(by_round)
    disagreements: pd.DataFrame  # the items raters split on most
    raters: list[str]


def agreement_report(
    validated: pd.DataFrame,
    reviews: pd.DataFrame,
    judge: pd.DataFrame | None = None,
    top: int = 15,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> AgreementReport:
    """Everything the review_agreement asset shows. ``validated``: the gate's verdicts (id and
    ``*_ok``/``passed`` columns); ``reviews``: the reviews table; ``judge``: the judge's verdicts
    (``question_id`` and a column per criterion; null scores are no rating)."""
    gate = gate_ratings(validated)
    others = [gate]
    if judge is not None and len(judge):
        others.append(review_ratings(judge, rater=JUDGE).drop(columns=["round"]))
    others_df = pd.concat(others, ignore_index=True)
    human_all = review_ratings(reviews) if len(reviews) else empty_ratings().assign(round=pd.Series(dtype=int))
    human_latest = review_ratings(latest_reviews(reviews)).drop(columns=["round"]) if len(reviews) else empty_ratings()
    everyone = pd.concat([others_df, human_latest], ignore_index=True)
    reviewed = set(human_latest["item"])
    overall = agreement_table(everyone, resamples=resamples, seed=seed)
    by_round = (
        agreement_by_round(human_all, others_df, resamples=resamples, seed=seed)
        if len(human_all)
        else pd.DataFrame(columns=["round", *AGREEMENT_COLUMNS])
    )
    # the next round's candidates: items a reviewer has seen first (people settle them), then the rest
    worst = disagreements(everyone[everyone["item"].isin(reviewed)] if reviewed else everyone, top=top)
    return AgreementReport(
        overall, by_round, convergence(by_round), worst, sorted(everyone["rater"].unique(), key=_rater_order)
    )


def _fmt(x) -> str:
    return "-" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.2f}"


def agreement_markdown(report: AgreementReport) -> str:
    """The report as Markdown: kappa per criterion and rater pair, convergence, disagreements."""
    out = []
    if report.overall.empty:
        return (
            "No agreement to compute yet: it needs two raters on the same items (the gate's verdicts and a review "
            "round: `staffml review export`, then `staffml review import FILE --round 1 --reviewer NAME`)."
        )
    out += [
        f"Raters: {', '.join(report.raters)}. Cohen's kappa for two raters, Fleiss' for all together; 95% bootstrap "
        "interval over items. Reviewers at their latest round. A rater marked * gave every shared item the same score "
        "(e.g. the gate on corpus items, which all passed it): its kappa is 0 by construction, so review items it "
        "rejected too (`staffml review export --rejected K`).",
        "",
        "| criterion | raters | method | items | kappa | 95% CI | all agree |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report.overall.itertuples():
        raters = r.raters
        for name in filter(None, str(r.constant_raters or "").split(", ")):
            raters = re.sub(rf"(?<![\w:]){re.escape(name)}(?![\w])", f"{name}*", raters)
        out.append(
            f"| {r.criterion} | {raters} | {r.method} | {r.items} | {_fmt(r.kappa)} | "
            f"{_fmt(r.ci_low)} to {_fmt(r.ci_high)} | {r.observed_agreement:.0%} |"
        )
    if not report.convergence.empty:
        rounds = sorted(report.convergence["round"].unique())
        out += [
            "",
            "Convergence: mean kappa per round.",
            "",
            "| comparison | criterion | " + " | ".join(f"round {r}" for r in rounds) + " |",
            "|---|---|" + "---|" * len(rounds),
        ]
        pivot = report.convergence.pivot_table(
            index=["comparison", "criterion"], columns="round", values="kappa", sort=False
        )
        for (comparison, criterion), row in pivot.iterrows():
            out.append(f"| {comparison} | {criterion} | " + " | ".join(_fmt(row.get(r)) for r in rounds) + " |")
    if not report.disagreements.empty:
        out += [
            "",
            "Most disagreement (for the next round: `staffml review export --ids ...`).",
            "",
            "| question | disagreement | split |",
            "|---|---|---|",
        ]
        for r in report.disagreements.itertuples():
            out.append(f"| {r.item} | {r.disagreement:.2f} | {r.split.replace('|', '/')} |")
    return "\n".join(out)
