"""Applicability rests on physics (justified pairs, substrates defined by their physics on every
tier) and is shown beside the evidence of generation (applicability_evidence)."""

import dagster as dg
import pandas as pd
import pytest

from staffml_dagster.resources import SpecsResource
from staffml_dagster.stages.applicability import (
    applicability_evidence,
    applicability_evidence_rows,
    applicability_rows,
    leading_failures,
    unjustified_inclusions,
)


@pytest.fixture(scope="module")
def matrix(specs):
    return applicability_rows(specs)


def _row(matrix, topic, track):
    return matrix[(matrix.topic == topic) & (matrix.track == track)].iloc[0]


def test_every_pair_names_the_substrates_it_rests_on(matrix):
    applicable = matrix[matrix.applicable]
    assert (applicable.justification.str.len() > 0).all()
    kv = _row(matrix, "kv-cache-management", "cloud")
    assert (
        kv.applicable
        and "applies on Cloud because the track provides" in kv.justification
        and "(gb-dram)" in kv.justification
    )
    roofline = _row(matrix, "roofline-analysis", "tinyml")
    assert roofline.applicable and "requires no substrate" in roofline.justification
    assert not unjustified_inclusions(matrix)
    broken = matrix.copy()
    broken.loc[kv.name, "justification"] = "Applies."
    assert unjustified_inclusions(broken) == ["kv-cache-management|cloud"]


@pytest.mark.parametrize(
    "topic, track, why",
    [
        (
            "thermal-management",
            "cloud",
            "a thermal envelope exists on every tier: GPUs throttle, racks are cooling-limited",
        ),
        ("systolic-dataflow", "tinyml", "microcontrollers with an Ethos-U55 carry a MAC array"),
        ("duty-cycling", "edge", "battery-powered drones, robots and field cameras sleep between bursts"),
        ("federated-learning", "edge", "home and cabin cameras hold personal data that must stay local"),
        ("activation-memory", "mobile", "phones fine-tune models on their own data"),
    ],
)
def test_substrates_defined_by_their_physics_admit_these_pairs(matrix, topic, track, why):
    assert _row(matrix, topic, track).applicable, why


@pytest.mark.parametrize(
    "topic, track, missing",
    [
        ("gpu-compute-architecture", "tinyml", "tensor-accelerator"),  # an NPU is not a GPU with warps and tensor cores
        ("mixed-precision-training", "tinyml", "training-capacity"),  # mixed precision *training* needs backpropagation
        ("kv-cache-management", "tinyml", "gb-dram"),
        ("datacenter-efficiency", "edge", "datacenter-facility"),
    ],
)
def test_exclusions_that_stay(matrix, topic, track, missing):
    row = _row(matrix, topic, track)
    assert not row.applicable and missing in row.missing_substrates and f"({missing})" in row.justification


EVIDENCE_MATRIX = pd.DataFrame(
    [
        ("a", "cloud", True, "A applies on Cloud ..."),
        ("a", "tinyml", False, "A is excluded on TinyML ..."),
        ("b", "cloud", True, "B applies on Cloud ..."),
        ("c", "cloud", True, "C applies on Cloud ..."),
    ],
    columns=["topic", "track", "applicable", "justification"],
)
NATIVE = pd.DataFrame(
    [("a", "cloud", 2), ("a", "tinyml", 0), ("b", "cloud", 1), ("c", "cloud", 0)],
    columns=["topic", "track", "native_item_models"],
)
# a|cloud: 4 questions, 3 pass; b|cloud: 3 questions, 1 passes (below 50%); c|cloud: nothing generated
VALIDATED = pd.DataFrame(
    [
        ("q1", "a", "cloud", True, []),
        ("q2", "a", "cloud", True, []),
        ("q3", "a", "cloud", True, []),
        ("q4", "a", "cloud", False, ["coherence: the figure 3 GB is not used"]),
        ("q5", "b", "cloud", True, []),
        ("q6", "b", "cloud", False, ["grounding: 700 W differs from specs", "coherence: unused figure"]),
        ("q7", "b", "cloud", False, ["grounding: 80 GB differs from specs"]),
    ],
    columns=["id", "topic", "track", "passed", "failures"],
)


def test_leading_failures_count_criteria():
    assert leading_failures(VALIDATED[VALIDATED.topic == "b"]["failures"]) == ["grounding (2)", "coherence (1)"]


def test_evidence_records_attempts_pass_share_and_flags_what_the_generator_cannot_serve():
    ev = applicability_evidence_rows(EVIDENCE_MATRIX, VALIDATED, NATIVE, 0.5).set_index(["topic", "track"])
    a = ev.loc[("a", "cloud")]
    assert (a.attempts, a.passed, a.pass_share) == (4, 3, 0.75) and not a.physics_without_evidence
    assert (
        a.leading_failures == ["coherence (1)"]
        and "4 generated from 2 native item model(s), 3 passed (75%)" in a.evidence
    )
    b = ev.loc[("b", "cloud")]
    assert (
        b.physics_without_evidence
        and b.pass_share == pytest.approx(1 / 3)
        and "grounding (2)" in b.evidence
        and "below the 50%" in b.evidence
    )
    c = ev.loc[("c", "cloud")]
    assert c.physics_without_evidence and c.attempts == 0 and "no native item model" in c.evidence
    excluded = ev.loc[("a", "tinyml")]
    assert not excluded.physics_without_evidence and excluded.evidence == "not generated: excluded by physics"
    assert ev.loc[("a", "cloud"), "justification"] == "A applies on Cloud ..."  # the decision travels with its evidence


def test_evidence_of_an_empty_run_flags_every_applicable_pair():
    ev = applicability_evidence_rows(EVIDENCE_MATRIX, VALIDATED.iloc[0:0], NATIVE, 0.5)
    assert list(ev.physics_without_evidence) == [True, False, True, True]
    assert (ev.attempts == 0).all()


def test_applicability_evidence_asset_on_the_real_matrix(matrix, specs):
    validated = pd.DataFrame(
        [
            ("q1", "kv-cache-management", "cloud", True, []),
            ("q2", "kv-cache-management", "cloud", False, ["hygiene: template title"]),
        ],
        columns=["id", "topic", "track", "passed", "failures"],
    )
    ctx = dg.build_asset_context()
    df = applicability_evidence(
        context=ctx, specs=SpecsResource(), applicability_matrix=matrix, validated_questions=validated
    )
    assert len(df) == len(matrix)
    kv = df[(df.topic == "kv-cache-management") & (df.track == "cloud")].iloc[0]
    assert kv.attempts == 2 and kv.pass_share == 0.5 and not kv.physics_without_evidence and kv.native_item_models > 0
    # every other applicable pair has no question in this run, so it is flagged
    assert int(df.physics_without_evidence.sum()) == int(matrix.applicable.sum()) - 1
