"""Power, fleet and data families.

battery-life, energy-per-inference, thermal-throttling, datacenter-energy, ota-update,
sample-size and data-pipeline-throughput. Phrasing: ``assets/item_models/<id>.yaml``.

Every ask whose chain has 2-5 derived steps shares the dimension of the family's
``limit``, because the analyze zone divides the asked step by the limit (levels L3-L4
pick asks with 2-5 derived steps). Asks of another dimension sit at 1 derived step
(L2 only) or at 6+ (L5 and above).

Display units: a derived step may list candidate units; the unit is picked by the
magnitude of the nominal chain (no mistake, no lever) of a reference platform of the
track, so mistaken, optimized and compared values are always stated in the same unit.
"""

from __future__ import annotations

from dataclasses import replace

from staffml_dagster.generation.calc import Calc, evaluate
from staffml_dagster.generation.item_model import (
    ItemModel,
    Setting,
    assumption,
    platform_figure,
    scale_given,
    spec_figure,
    workload_given,
)
from staffml_dagster.generation.item_models.common import axis_value
from staffml_dagster.units import Q_, parse_unit

# --------------------------------------------------------------------------- shared helpers


def _env(calc: Calc) -> dict:
    return {st.name: Q_(st.value, parse_unit(st.unit)) for st in calc.steps}


def _pick_unit(q, candidates: list[str]) -> str:
    """The largest candidate unit in which the quantity is at least 1 (candidates small to large)."""
    chosen = candidates[0]
    for unit in candidates:
        try:
            mag = abs(float(q.to(parse_unit(unit)).magnitude))
        except Exception:  # pint raises several error types
            return candidates[0]
        if mag >= 1:
            chosen = unit
    return chosen


class _Steps:
    """calc.step with a display unit fixed by the nominal chain when a list of candidates is given."""

    def __init__(self, calc: Calc, units: dict[str, str] | None):
        self.calc, self.units = calc, units

    def __call__(self, name: str, expression: str, unit: str | list[str], label: str) -> float:
        if isinstance(unit, (list, tuple)):
            if self.units is not None and name in self.units:
                unit = self.units[name]
            else:
                unit = _pick_unit(evaluate(expression, _env(self.calc)), list(unit))
        return self.calc.step(name, expression, unit, label)


ENERGY = ["pJ", "nJ", "uJ", "mJ", "J", "kJ", "MJ"]
POWER = ["nW", "uW", "mW", "W", "kW", "MW"]
BYTES = ["byte", "kB", "MB", "GB", "TB", "PB"]
BYTE_RATE = ["byte/s", "kB/s", "MB/s", "GB/s", "TB/s"]
BIT_RATE = ["kbit/s", "Mbit/s", "Gbit/s"]
TIME_SHORT = ["ns", "us", "ms", "s"]
WH = ["mWh", "Wh", "kWh", "MWh", "GWh"]


class _Family(ItemModel):
    """Base for the families here.

    Display units are fixed per (track, workload, scale point) from the nominal chain of a
    reference platform of the track, so every build of a setting (mistaken, with the lever,
    or the other option of an evaluation) states each step in the same unit.
    """

    def build(self, s: Setting, calc: Calc, mistake: str | None = None, lever: bool = False) -> None:
        self._build(s, calc, _Steps(calc, self._nominal_units(s)), mistake, lever)

    def _nominal_units(self, s: Setting) -> dict[str, str]:
        key = (s.specs.version, s.track, s.workload.id if s.workload else None, s.scale_axis, s.scale_value)
        cache = self.__dict__.setdefault("_units_cache", {})
        if key not in cache:
            units: dict[str, str] = {}
            for p in [*s.specs.platforms_for(s.track), s.platform]:
                ref = replace(s, platform=p)
                if not self.accepts(ref):
                    continue
                nominal = Calc()
                try:
                    self._build(ref, nominal, _Steps(nominal, None), None, False)
                except ValueError:
                    continue
                units = {st.name: st.unit for st in nominal.steps}
                break
            cache[key] = units
        return cache[key]

    def _build(self, s: Setting, calc: Calc, step: _Steps, mistake: str | None, lever: bool) -> None:
        raise NotImplementedError


def _peak_precision(s: Setting) -> str:
    """Dense INT8 where the headline figure assumes 2:4 sparsity (Jetson), else the default precision."""
    return "int8_dense" if "int8_dense" in s.platform.compute else s.platform.default_precision


def _peak(calc: Calc, name: str, s: Setting) -> float:
    prec = _peak_precision(s)
    label = f"{s.platform.name} peak {prec.replace('_dense', '').upper()}{' dense' if prec.endswith('_dense') else ''} throughput"
    return platform_figure(calc, name, s, "compute", label=label, precision=prec)


def _hw_section(s: Setting, section: str, key: str):
    table = getattr(s.specs.hardware, section)
    if key not in table:
        raise ValueError(f"specs/hardware.yaml has no {section}.{key}")
    return table[key]


def _hw_figure(calc: Calc, name: str, s: Setting, section: str, key: str, label: str, unit: str | None = None) -> float:
    return spec_figure(calc, name, _hw_section(s, section, key), label, f"specs/hardware.yaml: {section}.{key}", unit)


def _link(s: Setting, link_id: str):
    ic = s.specs.interconnect_by_id.get(link_id)
    if ic is None:
        raise ValueError(f"specs/hardware.yaml has no interconnect {link_id}")
    return ic


def _link_figure(calc: Calc, name: str, s: Setting, link_id: str, label: str, unit: str | None = None) -> float:
    ic = _link(s, link_id)
    return spec_figure(calc, name, ic.bandwidth, label, f"specs/hardware.yaml: interconnects.{ic.id}.bandwidth", unit)


def _rate_unit(s: Setting) -> str:
    return "token/s" if s.workload is not None and s.workload.family in ("llm-decoder", "moe-decoder") else "Hz"


# --------------------------------------------------------------------------- 1. battery life

BATCH1_WHY = ("batch-1 inference on an embedded GPU or phone NPU sustains roughly 10-20% of dense peak "
              "(small layers, kernel launches and synchronization); ResNet-50 takes about 1-2 ms on such parts")

# which specs energy source powers a device (platform id, else the track default)
BATTERY_BY_PLATFORM = {"nrf52840": "cr2032", "esp32-s3": "lipo_1000mah"}
BATTERY_BY_TRACK = {"tinyml": "aa_alkaline_pair", "mobile": "phone_battery"}
BATTERY_NAMES = {
    "cr2032": "CR2032 coin cell",
    "lipo_1000mah": "1000 mAh Li-Po cell",
    "aa_alkaline_pair": "pair of AA alkaline cells",
    "phone_battery": "phone battery",
}
# nominal cell voltage per source (for the mAh-as-energy mistake only)
BATTERY_VOLTS = {"cr2032": 3.0, "lipo_1000mah": 3.7, "aa_alkaline_pair": 3.0, "phone_battery": 3.85}


class BatteryLife(_Family):
    id = "battery-life"
    tracks = frozenset({"mobile", "tinyml"})
    workload_families = frozenset({"keyword-spotting", "anomaly-detector", "cnn-vision", "detector"})
    scale_axes = ("request_rate",)
    asks = ("t_active", "p_inference", "p_sleep_avg", "p_avg", "life")
    limit = "power_budget"
    knob = "max_rate"
    units = "batteries"
    observable = ("e_event", "p_active", 1)
    recall = ("power", "idle_power", "compute")

    UTIL = {"tinyml": (0.25, "int8 kernels on a microcontroller sustain about a quarter of the dual-MAC peak (operand widening, im2col and loop overhead)"),
            "mobile": (0.15, BATCH1_WHY)}
    WAKE = {"tinyml": (5, "ms", "restart from deep sleep (reset, clock and regulator start-up, sensor settling) before each inference"),
            "mobile": (20, "ms", "resuming the application processor from suspend and letting it settle back costs at least ~20 ms at full power per wake-up")}
    TARGET = {"tinyml": (1, "year", "the product promises one year between battery changes"),
              "mobile": (24, "h", "the phone must last a full day between overnight charges")}

    def battery_key(self, s: Setting) -> str:
        return BATTERY_BY_PLATFORM.get(s.platform.id, BATTERY_BY_TRACK.get(s.track, "phone_battery"))

    def accepts(self, s: Setting) -> bool:
        p, w = s.platform, s.wl
        if p.idle_power is None or self.battery_key(s) not in s.specs.hardware.energy_sources:
            return False
        util = self.UTIL[s.track][0]
        t_active = (w.flops_per_inference.q / (p.compute[_peak_precision(s)].q * util)).to("s").magnitude
        wake = Q_(self.WAKE[s.track][0], self.WAKE[s.track][1]).to("s").magnitude
        return s.scale_value * (t_active + wake) <= 0.5  # the device must sleep most of the time

    def _build(self, s, calc, step, mistake, lever):
        w, p = s.wl, s.platform
        workload_given(calc, "flops", s, "flops_per_inference", f"{w.name} operations per inference")
        _peak(calc, "peak", s)
        util, why = self.UTIL[s.track]
        if mistake == "peak-as-sustained":
            assumption(calc, "util", 100, "percent", "sustained fraction of peak throughput", "the datasheet peak taken as sustained")
        else:
            assumption(calc, "util", util * 100, "percent", "sustained fraction of peak throughput", why)
        step("t_active", "flops / (peak * util)", TIME_SHORT, "inference time per event")
        wake, wake_unit, wake_why = self.WAKE[s.track]
        assumption(calc, "t_wake", wake, wake_unit, "wake-up overhead per event at active power", wake_why)
        platform_figure(calc, "p_active", s, "power", label=f"{p.name} active power")
        idle = p.idle_power
        if mistake == "mw-uw":  # the same digits read with the wrong prefix
            wrong_unit = {"uW": "mW", "mW": "uW", "nW": "uW", "W": "mW"}.get(idle.unit, "mW")
            calc.given("p_sleep", idle.value, wrong_unit, f"{p.name} sleep power", f"specs/hardware.yaml: {p.id}.idle_power")
        else:
            platform_figure(calc, "p_sleep", s, "idle_power", label=f"{p.name} deep-sleep power")
        scale_given(calc, "rate", s, "events per second to classify", "Hz")
        rate = "rate"
        if lever:
            assumption(calc, "gate_pass", 10, "percent", "share of events the always-on trigger passes to the model",
                       "a hardware wake-on-event trigger (voice-activity or motion detector in the sensor, drawing a few uW) lets only candidate events wake the processor")
            step("rate_wake", "rate * gate_pass", "Hz", "wake-ups per second after the trigger")
            rate = "rate_wake"
        step("e_event", "p_active * (t_active + t_wake)", ENERGY, "energy per wake-up (inference plus wake overhead at active power)")
        if mistake == "always-active":
            step("p_inference", "p_active * 1", POWER, "average power of the inference work")
            step("duty", f"{rate} * (t_active + t_wake)", "percent", "share of time awake")
            step("p_sleep_avg", "p_sleep * 0", POWER, "average sleep power")
        else:
            step("p_inference", f"e_event * {rate}", POWER, "average power of the inference work")
            step("duty", f"{rate} * (t_active + t_wake)", "percent", "share of time awake")
            step("p_sleep_avg", "p_sleep * 0" if mistake == "ignore-sleep" else "p_sleep * (1 - duty)", POWER, "average sleep power")
        step("p_avg", "p_inference + p_sleep_avg", POWER, "average power")
        key = self.battery_key(s)
        name = BATTERY_NAMES.get(key, key)
        if mistake == "mah-as-wh":  # the mAh figure read as mWh, i.e. the cell voltage dropped
            fig = _hw_section(s, "energy_sources", key)
            wrong = float(fig.q.to("mWh").magnitude) / BATTERY_VOLTS.get(key, 3.7)
            calc.given("battery", wrong, "mWh", f"{name} energy", f"specs/hardware.yaml: energy_sources.{key}")
        else:
            _hw_figure(calc, "battery", s, "energy_sources", key, f"{name} energy")
        tv, tu, twhy = self.TARGET[s.track]
        assumption(calc, "target_life", tv, tu, "target battery life", twhy)
        step("power_budget", "battery / target_life", POWER, "average power the battery allows over the target life")
        step("life", "battery / p_avg", "days" if s.track == "tinyml" else "hours", "battery life")
        step("batteries", "ceil(target_life / life)", "", "batteries (cell swaps or full charges) over the target life")
        step("max_rate", "min((power_budget - p_sleep) / (e_event - p_sleep * (t_active + t_wake)), 1 / (t_active + t_wake))", "Hz",
             "highest event rate that still meets the target life")


# --------------------------------------------------------------------------- 2. energy per inference


class EnergyPerInference(_Family):
    id = "energy-per-inference"
    # MCU energy is dominated by core and flash overhead (~1000x the Horowitz MAC energy), so the
    # per-operation model only holds where a matrix engine does the work.
    tracks = frozenset({"cloud", "edge", "mobile"})
    workload_families = frozenset({"llm-decoder", "encoder-transformer", "vision-transformer", "cnn-vision", "detector",
                                   "speech", "diffusion", "keyword-spotting", "anomaly-detector"})
    scale_axes = ("batch", "request_rate")
    asks = ("e_compute", "e_memory", "e_inference", "e_day")
    limit = "e_budget"
    knob = "max_rate"
    units = None
    observable = ("e_memory", "pj_byte", 1)
    recall = ("power", "compute", "memory_bandwidth")

    def accepts(self, s: Setting) -> bool:
        # accelerators without DRAM of their own keep weights on chip: no DRAM traffic to price;
        # the FP16 weights must fit the device's memory with room to spare
        fp16_bytes = s.wl.params * 2.0
        return s.platform.kind != "accelerator" and fp16_bytes <= 0.8 * float(s.platform.memory.q.to("byte").magnitude)

    def _build(self, s, calc, step, mistake, lever):
        w, p = s.wl, s.platform
        prec = "int8" if lever else "fp16"
        workload_given(calc, "flops", s, "flops_per_inference", f"{w.name} operations per {'token' if w.family == 'llm-decoder' else 'inference'}")
        if mistake == "flops-as-macs":
            assumption(calc, "ops_per_mac", 1, "FLOP", "operations per multiply-accumulate", "every FLOP counted as a MAC")
        else:
            assumption(calc, "ops_per_mac", 2, "FLOP", "operations per multiply-accumulate", "one MAC = a multiply and an add (specs convention)")
        step("macs", "flops / ops_per_mac", "", "multiply-accumulates per inference")
        mac_key = "fp32_mac" if mistake == "fp32-energy" else f"{prec}_mac"
        mac_label = {"fp32_mac": "FP32", "fp16_mac": "FP16/BF16", "int8_mac": "INT8"}[mac_key]
        fig = _hw_section(s, "energy_per_op", mac_key)
        mac_unit = "nJ" if mistake == "pj-as-nj" else fig.unit
        calc.given("pj_mac", fig.value, mac_unit, f"energy per {mac_label} MAC (45 nm)", f"specs/hardware.yaml: energy_per_op.{mac_key}")
        step("e_compute", "macs * pj_mac", ENERGY, "arithmetic energy per inference")
        workload_given(calc, "params", s, "params", f"{w.name} parameters", "")
        bpp = 4.0 if mistake == "fp32-weights" else (1.0 if lever else 2.0)
        why = "FP32 checkpoint size" if mistake == "fp32-weights" else ("INT8 weights after quantization" if lever else "FP16/BF16 weights, 2 bytes each")
        assumption(calc, "bytes_per_param", bpp, "byte", "bytes per weight", why)
        if s.scale_axis == "batch":
            scale_given(calc, "batch", s, "inferences sharing one pass over the weights (batch)")
        else:
            assumption(calc, "batch", axis_value(s, "batch", 0), "", "inferences sharing one pass over the weights (batch)", "batch 1, latency-first serving")
        step("weight_traffic", "params * bytes_per_param / batch", BYTES, "weight bytes read from DRAM per inference")
        dram = _hw_section(s, "energy_per_op", "dram_per_byte")
        calc.given("pj_byte", dram.value, "nJ/byte" if mistake == "pj-as-nj" else dram.unit, "DRAM energy per byte (45 nm)", "specs/hardware.yaml: energy_per_op.dram_per_byte")
        step("e_memory", "weight_traffic * pj_byte", ENERGY, "DRAM energy per inference")
        step("e_inference", "e_compute" if mistake == "compute-only" else "e_compute + e_memory", ENERGY, "energy per inference (arithmetic plus DRAM)")
        runit = _rate_unit(s)
        if s.scale_axis == "request_rate":
            scale_given(calc, "rate", s, "inference rate", runit)
        else:
            assumption(calc, "rate", axis_value(s, "request_rate", 1), runit, "inference rate", "the service's steady request rate")
        platform_figure(calc, "power", s, "power", label=f"{p.name} power envelope")
        step("e_budget", "power / rate", ENERGY, "energy per inference the power envelope allows at this rate")
        assumption(calc, "day", 24, "h", "one day of operation", "daily energy at a steady rate")
        step("e_day", "e_inference * rate * day", WH, "energy per day at this rate")
        step("max_rate", "power / e_inference", runit, "inference rate the power envelope can pay for (energy-bound ceiling)")


# --------------------------------------------------------------------------- 3. thermal throttling


class ThermalThrottling(_Family):
    id = "thermal-throttling"
    tracks = frozenset({"edge", "mobile"})
    workload_families = frozenset({"cnn-vision", "detector", "vision-transformer"})
    scale_axes = ("request_rate",)
    asks = ("t_burst", "t_sustained", "t_hot")
    limit = "frame_budget"
    knob = "max_fps"
    units = None
    observable = ("t_sustained", "envelope", -1)
    recall = ("power", "compute")

    # (value, unit, why)
    UTIL = {"edge": (0.15, BATCH1_WHY), "mobile": (0.15, BATCH1_WHY)}
    HEADROOM = {"edge": (55, "the module throttles near 95 °C junction; air inside the sealed enclosure sits at 40 °C"),
                "mobile": (18, "skin-temperature limit of about 43 °C for a device held in the hand, in a 25 °C room")}
    R_TH = {"edge": (5.5, "sealed, fanless IP67 enclosure: heatsink and case to outside air"),
            "mobile": (6, "phone chassis to still air; about 3 W of sustained power reaches the skin limit")}
    HOT = {"edge": (15, "sun-loaded enclosure on a summer afternoon: 55 °C inside instead of 40 °C"),
           "mobile": (10, "a 35 °C summer day instead of a 25 °C room")}
    # the chip-not-enclosure mistake: a phone budgeted at its ~95 °C junction limit, an edge box at its fan-cooled devkit heatsink
    JUNCTION_HEADROOM_MOBILE = 70
    DEVKIT_R_TH = 1.5

    def envelope_w(self, s: Setting) -> float:
        return self.HEADROOM[s.track][0] / self.R_TH[s.track][0]

    def accepts(self, s: Setting) -> bool:
        return float(s.platform.power.q.to("W").magnitude) > self.envelope_w(s) * 1.05

    def _build(self, s, calc, step, mistake, lever):
        w, p = s.wl, s.platform
        workload_given(calc, "flops", s, "flops_per_inference", f"{w.name} operations per frame")
        flops = "flops"
        if lever:
            assumption(calc, "res_scale", 56.25, "percent", "FLOPs left after lowering the input resolution",
                       "3/4 of the resolution per side keeps 9/16 of the pixels, and convolution and patch FLOPs scale with pixels")
            step("flops_low", "flops * res_scale", ["MFLOP", "GFLOP", "TFLOP"], "operations per frame at the lower resolution")
            flops = "flops_low"
        _peak(calc, "peak", s)
        util, uwhy = self.UTIL[s.track]
        if mistake == "peak-as-sustained":
            assumption(calc, "util", 100, "percent", "sustained fraction of peak throughput", "the datasheet peak taken as delivered")
        else:
            assumption(calc, "util", util * 100, "percent", "sustained fraction of peak throughput", uwhy)
        step("t_burst", f"{flops} / (peak * util)", TIME_SHORT, "inference time per frame at full clock (burst)")
        platform_figure(calc, "p_burst", s, "power", label=f"{p.name} power at full clock")
        hv, hwhy = self.HEADROOM[s.track]
        if mistake == "chip-not-enclosure" and s.track == "mobile":
            assumption(calc, "headroom", self.JUNCTION_HEADROOM_MOBILE, "K", "allowed temperature rise", "the SoC's ~95 °C junction limit in a 25 °C room")
        else:
            assumption(calc, "headroom", hv, "K", "allowed temperature rise above ambient", hwhy)
        rv, rwhy = self.R_TH[s.track]
        if mistake == "chip-not-enclosure" and s.track == "edge":
            assumption(calc, "r_th", self.DEVKIT_R_TH, "K/W", "thermal resistance to ambient", "the developer kit's fan-cooled heatsink")
        else:
            assumption(calc, "r_th", rv, "K/W", "thermal resistance to ambient", rwhy)
        step("envelope", "headroom / r_th", POWER, "sustained power envelope")
        if mistake == "burst-as-sustained":
            thr = "1 + 0 * envelope / p_burst"
        elif mistake == "cube-root":
            thr = "min(1, (envelope / p_burst) ** (1 / 3))"
        else:
            thr = "min(1, envelope / p_burst)"
        step("throttle", thr, "percent", "sustained clock as a share of full clock (throughput ∝ power)")
        step("t_sustained", "t_burst / throttle", TIME_SHORT, "sustained inference time per frame")
        xv, xwhy = self.HOT[s.track]
        assumption(calc, "hot_rise", xv, "K", "extra ambient temperature on a hot day", xwhy)
        step("headroom_hot", "headroom" if mistake == "ignore-hot-ambient" else "headroom - hot_rise", "K", "temperature rise left on a hot day")
        step("envelope_hot", "headroom_hot / r_th", POWER, "sustained power envelope on a hot day")
        step("throttle_hot", thr.replace("envelope", "envelope_hot"), "percent", "sustained clock share on a hot day")
        step("t_hot", "t_burst / throttle_hot", TIME_SHORT, "sustained inference time per frame on a hot day")
        scale_given(calc, "rate", s, "required frame rate", "Hz")
        step("frame_budget", "1 / rate", ["ms", "s"], "time budget per frame")
        step("max_fps", "1 / t_hot", "Hz", "highest frame rate held under sustained load on a hot day")


# --------------------------------------------------------------------------- 4. datacenter energy


class DatacenterEnergy(_Family):
    id = "datacenter-energy"
    tracks = frozenset({"cloud"})
    workload_families = None
    scale_axes = ("devices", "duty_cycle")
    asks = ("p_per_gpu_it", "server_power", "rack_power", "cost_month", "carbon_month")
    limit = "rack_limit"
    knob = "max_gpus_per_rack"
    units = "racks"
    observable = ("cost_month", "price", 1)
    recall = ("power", "memory_bandwidth", "compute")

    def _build(self, s, calc, step, mistake, lever):
        p = s.platform
        tpu = p.kind == "tpu"
        platform_figure(calc, "p_gpu", s, "power", label=f"{p.name} power at TDP")
        assumption(calc, "host_overhead", 0 if mistake == "forget-host" else 50, "percent", "host power (CPUs, DRAM, NICs, fans) as a share of accelerator TDP",
                   "the accelerator ignores nothing else in the server" if mistake == "forget-host"
                   else "8-accelerator servers add roughly half the accelerator power for hosts, networking, fans and power conversion")
        step("host_per_gpu", "p_gpu * host_overhead", POWER, "host power per accelerator")
        gpu = "p_gpu"
        if lever:
            assumption(calc, "power_cap", 70, "percent", "power cap as a share of TDP",
                       "capping each accelerator at 70% of TDP; large training and inference jobs lose much less than 30% throughput")
            step("p_gpu_cap", "p_gpu * power_cap", POWER, "capped accelerator power")
            gpu = "p_gpu_cap"
        if s.scale_axis == "duty_cycle":
            scale_given(calc, "load", s, "average draw as a share of TDP", "")
        else:
            assumption(calc, "load", axis_value(s, "duty_cycle", 1), "", "average draw as a share of TDP", "utilization-weighted average over a month")
        it_expr = f"{gpu} + host_per_gpu"
        if mistake == "racks-at-average":
            it_expr = f"({gpu} + host_per_gpu) * load"
        step("p_per_gpu_it", it_expr, POWER, "IT power per accelerator at nameplate, host share included")
        per_server = 4 if tpu else 8
        assumption(calc, "per_server", per_server, "", "accelerators per server", "TPU v5p hosts carry 4 chips" if tpu else "8-GPU HGX-class servers")
        step("server_power", "per_server * p_per_gpu_it", POWER, "server power at nameplate")
        assumption(calc, "servers_per_rack", 8 if tpu else 4, "", "servers per rack in the floor plan", "32 accelerators per rack as planned")
        step("rack_power", "servers_per_rack * server_power", POWER, "rack power at nameplate")
        _hw_figure(calc, "rack_limit", s, "economics", "rack_power_air_cooled", "air-cooled rack power limit")
        step("max_gpus_per_rack", "floor(rack_limit / p_per_gpu_it)", "", "most accelerators one rack can power at nameplate")
        if s.scale_axis == "devices":
            scale_given(calc, "n_gpus", s, "accelerators in the cluster", "")
        else:
            assumption(calc, "n_gpus", axis_value(s, "devices", 3), "", "accelerators in the cluster", "the cluster size being planned")
        step("racks", "ceil(n_gpus / max_gpus_per_rack)", "", "racks needed")
        load = "1" if mistake == "tdp-as-average" else "load"
        if lever:
            step("gpu_avg", f"p_gpu * min({load}, power_cap)", POWER, "average accelerator draw under the cap")
        else:
            step("gpu_avg", f"p_gpu * {load}", POWER, "average accelerator draw")
        step("it_avg", f"n_gpus * (gpu_avg + host_per_gpu * {load})", POWER, "average IT power of the cluster")
        _hw_figure(calc, "pue", s, "economics", "pue", "facility PUE")
        step("facility_avg", "it_avg" if mistake == "ignore-pue" else "it_avg * pue", POWER, "average facility power")
        if mistake == "kw-vs-kwh":
            assumption(calc, "month", 1, "h", "billing period", "the kW figure paid as if it were kWh")
        else:
            assumption(calc, "month", 730, "h", "hours in a month", "8,760 hours a year / 12")
        step("energy_month", "facility_avg * month", WH, "facility energy per month")
        _hw_figure(calc, "price", s, "economics", "electricity_price", "electricity price")
        step("cost_month", "energy_month * price", "USD", "electricity cost per month")
        _hw_figure(calc, "carbon", s, "economics", "carbon_intensity_us", "grid carbon intensity (US average)")
        step("carbon_month", "energy_month * carbon", "t", "CO2 emitted per month")


# --------------------------------------------------------------------------- 5. OTA update


# device link per platform (its own radio) or per track, and the goodput share of the quoted rate
OTA_LINK_BY_PLATFORM = {"esp32-s3": "wifi-4", "nrf52840": "ble-5"}
OTA_LINK_BY_TRACK = {"tinyml": "lte-cat-m1", "edge": "wifi-6", "mobile": "wifi-6"}
OTA_LINK_EFF = {
    "wifi-6": (50, "real Wi-Fi 6 throughput is roughly half the PHY rate"),
    "wifi-4": (20, "an MCU's TCP stack gets a few tens of Mbit/s out of the 150 Mbit/s PHY rate"),
    "lte-cat-m1": (30, "sustained LTE-M field throughput is a few hundred kbit/s of the 1 Mbit/s peak"),
    "ble-5": (80, "DFU acknowledgements and flash-erase pauses on top of the application-level rate"),
}
OTA_ACCESS = {"tinyml": (10, "the gateway's or cell's backhaul share per node"),
              "edge": (20, "the site uplink or LTE modem each box downloads through"),
              "mobile": (50, "a typical home broadband or 4G download rate from the CDN")}
OTA_EGRESS = {"tinyml": "ethernet-10g", "edge": "ethernet-10g", "mobile": "ethernet-100g"}
OTA_WINDOW = {"tinyml": (1, "h", "the nodes accept updates during a one-hour nightly window"),
              "edge": (4, "h", "the boxes may update only in a four-hour nightly maintenance window"),
              "mobile": (2, "h", "the OS downloads background updates while the phone charges on Wi-Fi, about two hours a night")}


class OtaUpdate(_Family):
    id = "ota-update"
    tracks = frozenset({"edge", "mobile", "tinyml"})
    workload_families = frozenset({"keyword-spotting", "anomaly-detector", "cnn-vision", "detector", "llm-decoder", "speech",
                                   "vision-transformer", "encoder-transformer", "diffusion"})
    scale_axes = ("fleet",)
    asks = ("payload", "t_device", "t_fleet")
    limit = "window"
    knob = "max_payload"
    units = "waves"
    observable = ("t_device", "goodput", -1)
    recall = ("flash", "memory", "memory_bandwidth")

    def link_id(self, s: Setting) -> str:
        return OTA_LINK_BY_PLATFORM.get(s.platform.id, OTA_LINK_BY_TRACK[s.track])

    def accepts(self, s: Setting) -> bool:
        w = s.wl
        if s.track == "tinyml":  # the model must fit one A/B slot at all
            return s.platform.flash is not None and w.params * 1.0 <= float(s.platform.flash.q.to("byte").magnitude) / 2
        return True

    def _build(self, s, calc, step, mistake, lever):
        w, p = s.wl, s.platform
        workload_given(calc, "params", s, "params", f"{w.name} parameters", "")
        assumption(calc, "bytes_per_param", 1, "byte", "bytes per weight", "INT8 weights as deployed")
        payload_expr = "params * bytes_per_param"
        if lever:
            assumption(calc, "delta_share", 20, "percent", "share of the model a delta update ships",
                       "the retrain froze the backbone, so a binary delta carries about a fifth of the weights")
            payload_expr += " * delta_share"
        if mistake == "gib-as-gb":
            nominal_unit = self._nominal_units(s).get("payload", "MB")
            factor = {"kB": 1.024, "MB": 1.048576, "GB": 1.073741824, "TB": 1.099511627776}.get(nominal_unit, 1.048576)
            payload_expr = f"{payload_expr} / {factor}"
        step("payload", payload_expr, BYTES, "update payload")
        lid = self.link_id(s)
        ic = _link(s, lid)
        if mistake == "bits-as-bytes" and ic.bandwidth.unit.endswith("bit/s"):  # the same digits read as bytes per second
            calc.given("link", ic.bandwidth.value, ic.bandwidth.unit.replace("bit/s", "B/s"), f"{ic.name} link rate",
                       f"specs/hardware.yaml: interconnects.{ic.id}.bandwidth")
        else:
            _link_figure(calc, "link", s, lid, f"{ic.name} link rate")
        eff, why = OTA_LINK_EFF.get(lid, (50, "protocol and retransmission overhead"))
        assumption(calc, "link_eff", 100 if mistake == "protocol-overhead" else eff, "percent", "goodput as a share of the quoted rate",
                   "the quoted rate taken as goodput" if mistake == "protocol-overhead" else why)
        av, awhy = OTA_ACCESS[s.track]
        assumption(calc, "access", av, "MB/s" if mistake == "bits-as-bytes" else "Mbit/s", "internet access rate per device", awhy)
        step("goodput", "min(link * link_eff, access)", BIT_RATE, "download goodput per device")
        step("t_device", "payload / goodput", ["s", "min", "hour"], "download time per device")
        if s.scale_axis == "fleet":
            scale_given(calc, "fleet", s, "devices in the fleet", "")
        else:
            assumption(calc, "fleet", axis_value(s, "fleet", 1), "", "devices in the fleet", "the deployed fleet")
        step("volume", "payload * fleet", BYTES, "total transfer volume")
        eid = OTA_EGRESS[s.track]
        eic = _link(s, eid)
        _link_figure(calc, "egress", s, eid, f"update server egress ({eic.name})")
        step("t_fleet", "volume / egress", ["s", "min", "hour", "day"], "time for the server to push the whole fleet's payload")
        wv, wu, wwhy = OTA_WINDOW[s.track]
        assumption(calc, "window", wv, wu, "update window per night", wwhy)
        step("server_per_window", "floor(egress * window / payload)", "", "devices the server can update per window")
        assumption(calc, "max_wave_share", 10, "percent", "largest share of the fleet one wave may touch",
                   "blast radius: a bad update must never reach more than a tenth of the fleet before it has soaked")
        if mistake == "single-wave":
            step("per_wave", "fleet + 0 * server_per_window * max_wave_share", "", "devices updated per wave")
        else:
            step("per_wave", "min(server_per_window, floor(fleet * max_wave_share))", "", "devices per wave (server egress or blast-radius cap)")
        step("waves", "ceil(fleet / per_wave)", "", "nightly waves to reach the whole fleet")
        if s.track == "tinyml" and p.flash is not None:
            platform_figure(calc, "flash", s, "flash", label=f"{p.name} flash")
            slot = "flash" if mistake == "no-ab-slot" else "flash / 2"
            step("max_payload", f"min(goodput * window, {slot})", BYTES, "largest update image a device can take (window and A/B slot)")
        else:
            step("max_payload", "goodput * window", BYTES, "largest payload one device can download in a window")


# --------------------------------------------------------------------------- 6. sample size


class SampleSize(_Family):
    id = "sample-size"
    tracks = frozenset({"cloud", "edge", "mobile", "tinyml"})
    workload_families = None
    scale_axes = ("request_rate",)
    asks = ("n_group", "days_collect", "label_days", "t_eval")
    limit = "budget"
    knob = "e_min"
    units = "annotators_needed"
    observable = ("days_collect", "rate", -1)
    recall = ()

    def _build(self, s, calc, step, mistake, lever):
        assumption(calc, "z", 1 if mistake == "no-z-squared" else 1.96, "",
                   "z-score", "the z factor dropped" if mistake == "no-z-squared" else "two-sided 95% confidence")
        assumption(calc, "p", 10, "percent", "expected per-group error rate", "the current model's error rate on the metric being audited")
        if mistake == "percent-as-fraction":
            assumption(calc, "e", 100, "percent", "margin of error", "'1' from '±1 point' used as a fraction")
        elif mistake == "width-as-margin":
            assumption(calc, "e", 2, "percent", "margin of error", "the full ±1 point interval width used as the margin")
        else:
            assumption(calc, "e", 1, "percent", "margin of error (half-width)", "the audit must resolve ±1 percentage point")
        step("n_group", "ceil(z**2 * p * (1 - p) / e**2)", "", "labeled samples needed per subgroup")
        assumption(calc, "group_share", 2, "percent", "smallest subgroup's share of traffic", "the rarest accent, region or device model in the audit")
        assumption(calc, "groups", 8, "", "subgroups audited", "the slices the fairness review requires")
        scale_given(calc, "rate", s, "events per second reaching the evaluation pipeline", "Hz")
        step("group_rate", "rate" if mistake == "overall-population" else "rate * group_share", "Hz", "events per second from the smallest subgroup")
        step("days_collect", "n_group / group_rate", ["min", "hours", "days"], "time to collect the smallest subgroup's samples")
        if lever:
            step("n_labels", "n_group * groups", "", "samples to label with stratified sampling")
        elif mistake == "overall-population":
            step("n_labels", "n_group * 1", "", "samples to label")
        else:
            step("n_labels", "ceil(n_group / group_share)", "", "samples to label at random so the smallest subgroup gets its share")
        assumption(calc, "annotators", 4, "", "annotators on the team", "the labeling team assigned to the audit")
        assumption(calc, "per_annotator", 500, "", "labels per annotator-day", "a quick single-label judgment per sample")
        assumption(calc, "one_day", 1, "day", "one working day", "labeling throughput is counted per day")
        step("label_days", "n_labels / (annotators * per_annotator) * one_day", "days", "time to label")
        step("t_eval", "max(days_collect, label_days)", "days", "time until the audit set is complete (collection and labeling overlap)")
        assumption(calc, "budget", 14, "days", "time budget", "the audit must finish within one two-week release cycle")
        step("n_budget", "min(group_rate * budget, annotators * per_annotator * budget / one_day * group_share)", "",
             "rarest-subgroup samples that collection and labeling can both supply within the budget")
        step("e_min", "z * sqrt(p * (1 - p) / n_budget)", "percent", "smallest margin of error reachable within the budget")
        step("annotators_needed", "ceil(n_labels * one_day / (per_annotator * budget))", "", "annotators needed to label within the budget")


# --------------------------------------------------------------------------- 7. data pipeline throughput

# bytes per sample, decode rate per core, by workload family
PIPE_SAMPLE = {
    "cnn-vision": (110, "kB", "average ImageNet JPEG (about 500x375 pixels)"),
    "vision-transformer": (110, "kB", "average ImageNet JPEG (about 500x375 pixels)"),
    "detector": (160, "kB", "average COCO JPEG (about 640x480 pixels)"),
    "speech": (960, "kB", "30 s of 16 kHz 16-bit mono PCM"),
}
PIPE_DECODE = {
    "cnn-vision": (250, "JPEG decode plus random-resized-crop with libjpeg-turbo, about 4 ms per image per core"),
    "vision-transformer": (250, "JPEG decode plus random-resized-crop with libjpeg-turbo, about 4 ms per image per core"),
    "detector": (100, "decode plus mosaic and scale augmentation of a 640-pixel frame, about 10 ms per core"),
    "speech": (50, "log-mel features of a 30 s clip, about 20 ms per core"),
}
PIPE_READ_ONLY = 20000  # samples per second per core when only the file read is counted (the ignore-decode mistake)


class DataPipelineThroughput(_Family):
    id = "data-pipeline-throughput"
    tracks = frozenset({"cloud", "edge"})
    workload_families = frozenset(PIPE_SAMPLE)
    scale_axes = ("dataset", "devices")
    asks = ("gpu_rate", "read_bw_gpu", "read_bw_node", "read_bw_device")
    limit = "nvme"
    knob = "max_samples"
    units = "cores_needed"
    observable = ("epoch_time", "nvme", -1)
    recall = ("compute", "memory_bandwidth")

    def accepts(self, s: Setting) -> bool:
        # host-attached accelerators (Coral, Hailo) hang off a single PCIe lane next to an SD card, not an NVMe drive
        return s.platform.kind != "accelerator" and "nvme-gen4" in s.specs.interconnect_by_id

    def _build(self, s, calc, step, mistake, lever):
        w, p = s.wl, s.platform
        cloud = s.track == "cloud"
        runit = _rate_unit(s)
        workload_given(calc, "flops", s, "flops_per_inference", f"{w.name} forward operations per sample")
        _peak(calc, "peak", s)
        if cloud:
            util = (15, "convnets with batch-norm and small channel counts reach low model-FLOPs utilization") if w.family in ("cnn-vision", "detector") \
                else (40, "well-tuned transformer training reaches about 40% model-FLOPs utilization")
        else:
            util = (30, "int8 inference engines on an embedded GPU sustain roughly 30% of dense peak")
        assumption(calc, "util", util[0], "percent", "sustained fraction of peak throughput", util[1])
        if cloud:
            assumption(calc, "train_mult", 1 if mistake == "forward-only" else 3, "",
                       "training FLOPs as a multiple of the forward pass",
                       "forward pass only" if mistake == "forward-only" else "forward plus backward is about 3x the forward FLOPs")
            step("gpu_rate", "peak * util / (train_mult * flops)", runit, "samples per second one accelerator trains on")
        else:
            step("gpu_rate", "peak * util / flops", runit, "samples per second the accelerator processes (batch inference over recorded data)")
        bv, bu, bwhy = PIPE_SAMPLE[w.family]
        if mistake == "bits-as-bytes":
            assumption(calc, "bytes_per_sample", bv, bu.replace("B", "bit") if bu != "byte" else "bit", "stored bytes per sample", "the size read as bits")
        else:
            assumption(calc, "bytes_per_sample", bv, bu, "stored bytes per sample", bwhy)
        step("read_bw_gpu", "gpu_rate * bytes_per_sample", BYTE_RATE, "read bandwidth one accelerator needs")
        per_node = 4 if p.kind == "tpu" else (8 if cloud else 1)
        assumption(calc, "per_node", per_node, "", "accelerators per node sharing one local drive",
                   "TPU v5p hosts carry 4 chips" if p.kind == "tpu" else ("8-GPU servers" if cloud else "one module per box"))
        step("read_bw_node", "read_bw_gpu * per_node", BYTE_RATE, "read bandwidth one node needs")
        if lever:
            assumption(calc, "random_eff", 100, "percent", "achieved share of sequential drive bandwidth",
                       "samples packed into large sequential shards (WebDataset/TFRecord-style) read at the drive's sequential rate")
        elif mistake == "ignore-shuffle":
            assumption(calc, "random_eff", 100, "percent", "achieved share of sequential drive bandwidth", "the sequential datasheet rate assumed for shuffled reads")
        else:
            assumption(calc, "random_eff", 40, "percent", "achieved share of sequential drive bandwidth",
                       "shuffled reads of one file per sample at modest queue depth pay file-open and small-I/O overhead")
        step("read_bw_device", "read_bw_node / random_eff", BYTE_RATE, "sequential-equivalent drive bandwidth the node needs")
        ic = _link(s, "nvme-gen4")
        _link_figure(calc, "nvme", s, "nvme-gen4", f"{ic.name} sequential read bandwidth")
        step("node_rate", "gpu_rate * per_node", runit, "samples per second one node consumes")
        dv, dwhy = PIPE_DECODE[w.family]
        if mistake == "ignore-decode":
            assumption(calc, "decode_rate", PIPE_READ_ONLY, runit, "samples per second per CPU core", "file reads only (~50 us of CPU per file), decode ignored")
        else:
            assumption(calc, "decode_rate", dv, runit, "samples decoded per second per CPU core", dwhy)
        step("cores_needed", "ceil(node_rate / decode_rate)", "", "CPU cores needed for decoding and augmentation per node")
        assumption(calc, "cores", 112 if cloud else 8, "", "host CPU cores per node",
                   "two 56-core sockets, as in a DGX H100" if cloud else "Jetson Orin modules have 6-12 Arm cores")
        step("max_samples", "min(nvme * random_eff / bytes_per_sample, cores * decode_rate)", runit,
             "samples per second the node's input pipeline sustains (drive or decode, whichever binds)")
        if s.scale_axis == "dataset":
            scale_given(calc, "dataset", s, "samples in the dataset", "")
        else:
            assumption(calc, "dataset", axis_value(s, "dataset", 1), "", "samples in the dataset", "the dataset being processed")
        if s.scale_axis == "devices":
            scale_given(calc, "devices", s, "accelerators in the job", "")
        else:
            assumption(calc, "devices", axis_value(s, "devices", 2 if cloud else 0), "", "accelerators in the job", "the job's allocation")
        step("nodes", "ceil(devices / per_node)", "", "nodes, each reading from its own drive")
        step("epoch_time", "dataset * bytes_per_sample / (nodes * nvme * random_eff)", ["s", "min", "hour", "day"],
             "time to stream one epoch from the drives")
