"""Napkin math as data: evaluation with units, recomputation catches wrong numbers."""

import pytest

from staffml_dagster.core.calc import Calc, CalcError, OutOfDomain, evaluate, fmt_quantity, recompute
from staffml_dagster.units import Q_


def _chain():
    c = Calc()
    c.given("params", 8.03e9, "", "parameters", "specs/workloads.yaml")
    c.given("bytes_per_param", 2, "byte", "bytes per weight", "assumption")
    c.step("weights", "params * bytes_per_param", "GB", "weights")
    c.given("memory", 80, "GB", "HBM", "specs/hardware.yaml")
    c.step("share", "weights / memory", "percent", "share of HBM")
    c.given("bw", 3.35, "TB/s", "bandwidth", "specs/hardware.yaml")
    c.step("sweep", "weights / bw", "ms", "time to read the weights once")
    return c


def test_chain_values_and_units():
    c = _chain()
    assert c.get("weights").value == pytest.approx(16.06)
    assert c.get("share").value == pytest.approx(20.08, rel=1e-3)
    assert c.get("sweep").value == pytest.approx(4.794, rel=1e-3)
    assert recompute([s.as_dict() for s in c.steps]) == []


def test_a_celsius_reading_takes_rises_in_kelvin():
    """Junction = air reading + power x K/W; the hottest air = cap - rises; a rise = reading - reading."""
    c = Calc()
    c.given("cap", 105, "celsius_reading", "junction cap", "assumption")
    c.given("air", 60, "celsius_reading", "plant air", "assumption")
    c.given("power", 0.33, "W", "MCU power", "specs/hardware.yaml")
    c.given("theta", 55, "K/W", "package resistance", "assumption")
    c.step("rise", "power * theta", "K", "package rise")
    c.step("junction", "air + rise", "celsius_reading", "junction")
    c.step("hottest_air", "cap - rise", "celsius_reading", "hottest plant air")
    c.step("headroom", "cap - air", "K", "rise the cap leaves")
    assert c.get("junction").value == pytest.approx(78.15)
    assert c.get("hottest_air").value == pytest.approx(86.85)
    assert c.get("headroom").value == pytest.approx(45)
    assert recompute([s.as_dict() for s in c.steps]) == []
    with pytest.raises(CalcError):
        c.step("wrong", "power * theta", "celsius_reading * W", "a rise read as a power")


def test_a_root_or_log_outside_its_domain_is_refused_as_such():
    """The square root of a negative remainder (what is left after the forward cameras) means the
    situation does not arise at that setting: OutOfDomain, which the item model reads as a missing step."""
    env = {"left": Q_(-1.6, "TOPS"), "need": Q_(6.0, "TOPS")}
    with pytest.raises(OutOfDomain):
        evaluate("640 * sqrt(left / need)", env)
    with pytest.raises(OutOfDomain):
        evaluate("ln(left / need)", env)
    assert evaluate("640 * sqrt(-left / need)", env).magnitude == pytest.approx(640 * (1.6 / 6.0) ** 0.5)


def test_recompute_flags_a_wrong_stated_value():
    steps = [s.as_dict() for s in _chain().steps]
    steps[2]["value"] = 18.0
    problems = recompute(steps)
    assert problems and "weights" in problems[0] and "16.06" in problems[0]


def test_recompute_flags_a_wrong_given_and_bad_units():
    steps = [s.as_dict() for s in _chain().steps]
    steps[5]["expression"] = "3.35 Tbit/s"  # bits where bytes were stated
    assert any("bw" in p for p in recompute(steps))
    steps = [s.as_dict() for s in _chain().steps]
    steps[6]["unit"] = "GB"  # a time expressed as bytes
    assert any("cannot be expressed" in p for p in recompute(steps))


def test_evaluate_refuses_code_and_unknown_names():
    with pytest.raises(CalcError, match="unsupported"):
        evaluate("__import__('os').system('true')", {})
    with pytest.raises(CalcError, match="no earlier step"):
        evaluate("x * 2", {})
    with pytest.raises(CalcError, match="incompatible units"):
        evaluate("a + b", {"a": Q_("1 GB"), "b": Q_("1 s")})


def test_ceil_floor_and_closure():
    c = _chain()
    c.step("devices", "ceil(weights * 10 / memory)", "", "devices")
    assert c.get("devices").value == 3
    assert [s.name for s in c.closure("devices")] == ["params", "bytes_per_param", "weights", "memory", "devices"]


def test_formatting():
    assert fmt_quantity(131072, "") == "131,072"
    assert fmt_quantity(16.06, "GB") == "16.06 GB"
    assert fmt_quantity(20.08, "percent") == "20.08%"
    assert fmt_quantity(8.03e9, "") == "8.03e9"
    # prose quotes three significant figures, the napkin math four; rates read "per <unit>"
    assert fmt_quantity(4.0132, "ms", 3) == "4.01 ms" and fmt_quantity(4.0132, "ms") == "4.013 ms"
    assert fmt_quantity(4013.4, "", 3) == "4,010"
    assert fmt_quantity(4000, "1/day") == "4,000 per day" and fmt_quantity(12, "1/s") == "12 per second"
    assert fmt_quantity(1, "day") == "1 day" and fmt_quantity(1.5, "day") == "1.5 days"
    # a spec may write a countable unit in the plural: the value decides the form
    assert fmt_quantity(1, "days") == "1 day" and fmt_quantity(4000, "1/days") == "4,000 per day"
    assert fmt_quantity(3, "queries") == "3 queries" and fmt_quantity(1, "GPUs") == "1 GPU"
    assert fmt_quantity(0.1, "1/cm**2") == "0.1 per cm²"
    assert fmt_quantity(72.9, "celsius_reading") == "72.9 °C" and fmt_quantity(13.95, "K") == "13.95 K"


def test_a_step_on_a_knife_edge_is_refused():
    """A floor whose argument lands on 7.9998 from the stated (rounded) figures and on 8 from the exact
    ones would give a reader recomputing from the specs another answer; an exact near-integer
    (log2(65504 / 4) = 13.9996, floor 13 either way) is fine."""
    from staffml_dagster.core.calc import KnifeEdge

    c = Calc()
    c.given("sram", 192, "KiB", "SRAM", "spec")
    c.given("per_px", 24, "byte", "bytes per pixel", "scenario")
    c.step("arena", "sram * 0.5", "kB", "arena")  # 98.304 kB, stated as 98.3
    with pytest.raises(KnifeEdge, match="7 from the stated figures, 8 from the exact ones"):
        c.step("side", "floor(2 * sqrt(arena / per_px) / 16)", "", "largest side / 16")
    c = Calc()
    c.given("fp16_max", 65504, "", "largest FP16", "spec")
    c.given("max_grad", 4, "", "largest gradient", "scenario")
    assert c.step("k", "floor(log2(fp16_max / max_grad))", "", "exponent") == 13


def test_napkin_math_shows_no_echo_and_no_quoted_literals():
    """A step that only carries a value over reads '- label: value', not '141.1 GB = 141.1 GB';
    a quoted literal in a calc ('1 byte') reads without its quotes."""
    from staffml_dagster.core.render import napkin_math

    c = Calc()
    c.given("w", 141.1, "GB", "weights", "scenario: the model card")
    c.step("w_dev", "w", "GB", "weights on the device")
    c.given("b", 262.1, "kB", "bytes per unit of rank", "scenario: adapter shape")
    c.step("units", "b / '1 byte'", "", "bytes as a count")
    text = napkin_math(c.steps, "done")
    assert "- weights on the device: 141.1 GB\n" in text and "141.1 GB = 141.1 GB" not in text
    assert "- bytes as a count: 262.1 kB / 1 byte = 262,100" in text and "'" not in text
