"""Memory and compute footprints: model size, roofline, training state and MCU tensor arenas.

Four families:

- ``model-footprint``: weights at the platform's default precision (+ activations where the
  workload publishes them, + the runtime's share) against device memory, or against flash on
  a microcontroller, where weights execute in place.
- ``roofline``: weight-streaming roofline of one forward pass of a batch: arithmetic
  intensity, ridge point, attainable throughput and batch latency against the track's
  latency budget.
- ``training-memory``: mixed-precision Adam state (16 bytes per parameter), ZeRO-3 sharding
  and checkpointed transformer activations against accelerator memory.
- ``tensor-arena-fit``: peak live activations + interpreter overhead + application buffers
  against a microcontroller's SRAM.
"""

from __future__ import annotations

import re

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

BITS = {"fp32": 32.0, "tf32": 32.0, "fp16": 16.0, "bf16": 16.0, "fp8": 8.0, "int8": 8.0, "int4": 4.0, "fp4": 4.0}
FLOAT_PRECISIONS = {"fp32", "tf32", "fp16", "bf16", "fp8", "fp4"}
BINARY_TO_DECIMAL = {"KiB": "kB", "MiB": "MB", "GiB": "GB", "TiB": "TB"}
DECIMAL_TO_BINARY_FACTOR = {"kB": 1.024, "MB": 1.048576, "GB": 1.073741824, "TB": 1.099511627776}


# ----------------------------------------------------------------------------- helpers


def _peek(calc: Calc, expression: str):
    """Evaluate an expression over the stated steps without adding it (to pick display units)."""
    env = {s.name: Q_(s.value, parse_unit(s.unit)) for s in calc.steps}
    return evaluate(expression, env)


def _bytes_unit(q) -> str:
    b = float(q.to("byte").magnitude)
    if b >= 1e9:
        return "GB"
    if b >= 1e6:
        return "MB"
    if b >= 1e3:
        return "kB"
    return "byte"


def _bits(s: Setting) -> float:
    prec = s.platform.default_precision
    if prec not in BITS:
        raise ValueError(f"{s.platform.id}: no bit width known for default precision {prec!r}")
    return BITS[prec]


def _max_devices(s: Setting) -> float:
    return max(s.specs.track_by_id[s.track].scale_points.get("devices") or [1.0])


def _weights_unit(s: Setting) -> str:
    """Display unit for weight bytes, fixed per workload so that every platform, precision and
    misconception of a setting reports the step in the same unit (framings compare raw values)."""
    return _bytes_unit(Q_(s.wl.params, "byte"))


TIME_UNIT = "ms"  # one unit for every latency-like step, for the same reason


# ============================================================================= model-footprint

FOOTPRINT_FAMILIES = frozenset({
    "cnn-vision", "detector", "encoder-transformer", "vision-transformer", "keyword-spotting",
    "anomaly-detector", "speech", "diffusion", "recsys", "llm-decoder",
})

# Share of device memory that is not available to the model (an explicit planning assumption).
RESERVE = {
    "cloud": (10.0, "runtime context, workspace and fragmentation; serving stacks such as vLLM default to using 90% of GPU memory"),
    "edge": (25.0, "the module's unified memory is shared with Linux, the camera pipeline and the runtime context"),
    "mobile": (50.0, "the OS, the GPU driver and other apps keep about half of a phone's RAM; a foreground app can plan on the rest"),
}
FLASH_CODE_KB = 100.0


class ModelFootprint(ItemModel):
    id = "model-footprint"
    tracks = frozenset({"cloud", "edge", "mobile", "tinyml"})
    workload_families = FOOTPRINT_FAMILIES
    scale_axes = ("batch",)
    asks = ("weights", "activations", "total")
    limit = "budget"
    knob = "max_params"
    units = "devices"
    observable = ("weight_read_time", "bandwidth", -1)
    recall = ("memory", "memory_bandwidth", "flash")

    def accepts(self, s: Setting) -> bool:
        if s.workload is None:
            return False
        if s.track == "tinyml" and s.platform.flash is None:
            return False
        try:
            calc = Calc()
            self.build(s, calc)
        except ValueError:
            return False
        held = "total" if any(st.name == "total" for st in calc.steps) else "weights"
        if s.track in ("tinyml", "mobile"):  # one device: the model must fit in what it offers the model
            return _peek(calc, f"{held} / budget").to("").magnitude <= 1.0
        return 0 < calc.get("devices").value <= _max_devices(s)

    @staticmethod
    def _has_reserve(s: Setting) -> bool:
        # An accelerator whose "memory" is its on-chip parameter cache (Coral) keeps no runtime there.
        return not (s.platform.kind == "accelerator" and "SRAM" in s.platform.memory_kind)

    def build(self, s: Setting, calc: Calc, mistake: str | None = None, lever: bool = False) -> None:
        w, p = s.wl, s.platform
        tiny = s.track == "tinyml"
        prec = p.default_precision
        bits = _bits(s)
        if lever:
            bits = 8.0 if bits > 8 else 4.0
            calc.given("lever_bits", bits, "", "bits per weight after quantization", "assumption: the proposed weight quantization")
        if mistake == "macs-as-params":
            macs = float(w.flops_per_inference.q.to("FLOP").magnitude) / 2
            calc.given("params", macs, "", f"{w.name} parameters (taken from the MAC count)", f"specs/workloads.yaml: {w.id}.flops_per_inference / 2")
        else:
            workload_given(calc, "params", s, "params", f"{w.name} parameters")
        if mistake == "fp32-bytes":
            assumption(calc, "bits_per_param", 32.0, "bit", "bits per weight", "FP32, as in the training checkpoint")
        elif mistake == "bits-as-bytes":
            assumption(calc, "bits_per_param", bits, "byte", "bytes per weight", "the bit width read as bytes")
        elif lever:
            assumption(calc, "bits_per_param", bits, "bit", "bits per weight after quantization", f"weights quantized to INT{bits:g} (weight-only; activations unchanged)")
        else:
            assumption(calc, "bits_per_param", bits, "bit", f"bits per weight at {prec.upper()}",
                       f"weights stored at {prec.upper()}, the {p.name}'s default inference precision in specs/hardware.yaml")
        weights_expr = "params * bits_per_param"
        weights_unit = _weights_unit(s)
        if mistake == "binary-prefix" and weights_unit in DECIMAL_TO_BINARY_FACTOR and not self._binary_capacity(s):
            weights_expr = f"params * bits_per_param / {DECIMAL_TO_BINARY_FACTOR[weights_unit]}"
        calc.step("weights", weights_expr, weights_unit, "weight footprint")

        # budget: flash on a microcontroller (weights execute in place); elsewhere the device memory
        # minus the share the OS and runtime keep (none on a parameter-cache accelerator)
        figure = "flash" if tiny else "memory"
        fig = getattr(p, figure)
        if fig is None:
            raise ValueError(f"{p.id} has no {figure} figure in specs/hardware.yaml")
        reserve = not tiny and self._has_reserve(s)
        cap_name = "capacity" if reserve else "budget"
        cap_label = f"{p.name} on-chip flash" if tiny else (f"{p.name} memory" if reserve else f"{p.name} on-chip parameter memory")
        if mistake == "binary-prefix" and fig.unit in BINARY_TO_DECIMAL:
            calc.given(cap_name, fig.value, BINARY_TO_DECIMAL[fig.unit], cap_label, f"specs/hardware.yaml: {p.id}.{figure} (prefix misread)")
        else:
            platform_figure(calc, cap_name, s, figure, label=cap_label)
        forget = mistake == "forget-overhead"

        if tiny:
            assumption(calc, "code", FLASH_CODE_KB, "kB", "firmware code in flash (RTOS/HAL, application, interpreter and kernels)",
                       "a typical TFLite Micro firmware image around a small model; read the real figure from the linker map")
            calc.step("total", "weights" if forget else "weights + code", "kB", "flash image: weights plus firmware code")
            calc.step("max_params", "floor(budget / bits_per_param)" if forget else "floor((budget - code) / bits_per_param)", "",
                      "largest parameter count whose weights fit in the flash left after the code")
            calc.step("devices", "0 * total / budget", "", "not applicable: one microcontroller per node")
            return self._observable(s, calc)
        if reserve:
            share, why = RESERVE[s.track]
            assumption(calc, "reserve_share", 0.0 if forget else share, "percent", "share of memory the OS and runtime keep", why)
            calc.step("budget", "capacity * (1 - reserve_share)", "GB", "memory available to the model")
        held = "weights"
        if w.activation_bytes is not None:
            spec_figure(calc, "act_int8", w.activation_bytes, f"{w.name} peak live activations per sample at INT8", f"specs/workloads.yaml: {w.id}.activation_bytes", unit="kB")
            if s.scale_axis == "batch":
                scale_given(calc, "batch", s, "samples per batch")
            else:
                assumption(calc, "batch", axis_value(s, "batch", 0), "", "samples per batch", "the serving batch size")
            act_bits = _bits(s)  # weight quantization (the lever) leaves activations alone
            if act_bits != 8:
                assumption(calc, "act_scale", act_bits / 8, "", f"activation size relative to INT8 ({prec.upper()})", f"activations kept at {prec.upper()}")
                calc.step("act_per_sample", "act_int8 * act_scale", "kB", "peak live activations per sample")
                act_expr = "act_per_sample * batch"
            else:
                act_expr = "act_int8 * batch"
            calc.step("activations", f"0 * {act_expr}" if forget else act_expr, "kB", "peak live activations of the batch")
            calc.step("total", "weights + activations", weights_unit, "footprint: weights plus peak activations")
            held = "total"
            calc.step("max_params", "floor((budget - activations) / bits_per_param)", "", "largest parameter count whose weights fit beside the activations")
        else:
            calc.step("max_params", "floor(budget / bits_per_param)", "", "largest parameter count whose weights fit")
        if s.track in ("cloud", "edge"):
            calc.step("devices", f"ceil({held} / budget)", "", "devices needed to hold the model")
        else:
            calc.step("devices", f"0 * {held} / budget", "", "not applicable: a phone cannot shard the model")
        self._observable(s, calc)

    def _observable(self, s: Setting, calc: Calc) -> None:
        p = s.platform
        platform_figure(calc, "bandwidth", s, "memory_bandwidth", label=f"{p.name} memory bandwidth")
        calc.step("weight_read_time", "weights / bandwidth", TIME_UNIT, "time to stream every weight once at the memory bandwidth")

    @staticmethod
    def _binary_capacity(s: Setting) -> bool:
        fig = s.platform.flash if s.track == "tinyml" else s.platform.memory
        return fig is not None and fig.unit in BINARY_TO_DECIMAL


# ============================================================================= roofline

ROOFLINE_FAMILIES = frozenset({
    "llm-decoder", "encoder-transformer", "vision-transformer", "cnn-vision", "detector",
    "keyword-spotting", "anomaly-detector", "speech", "diffusion",
})


class Roofline(ItemModel):
    id = "roofline"
    tracks = frozenset({"cloud", "edge", "mobile", "tinyml"})
    workload_families = ROOFLINE_FAMILIES
    scale_axes = ("batch",)
    asks = ("compute_time", "memory_time", "batch_latency")
    limit = "latency_budget"
    knob = "max_batch"
    units = None
    observable = ("memory_time", "bandwidth", -1)
    recall = ("compute", "memory_bandwidth")

    def accepts(self, s: Setting) -> bool:
        if s.workload is None or s.platform.kind == "accelerator":
            # host-attached accelerators keep weights on chip; their memory_bandwidth is the host link
            return False
        try:
            calc = Calc()
            self.build(s, calc)
        except ValueError:
            return False
        return _peek(calc, "weights / memory").to("").magnitude <= 1.0

    @staticmethod
    def _has_sparse_headline(s: Setting) -> bool:
        """Whether the vendor headlines a 2:4 structured-sparsity figure twice the dense peak."""
        p = s.platform
        note = (p.compute[p.default_precision].note or "").lower()
        return f"{p.default_precision}_sparse" in p.compute or "sparsity" in note or "dense" in note

    def build(self, s: Setting, calc: Calc, mistake: str | None = None, lever: bool = False) -> None:
        w, p = s.wl, s.platform
        prec = p.default_precision
        bits = _bits(s)
        if lever:
            bits = 8.0 if bits > 8 else 4.0
            calc.given("lever_bits", bits, "", "bits per weight after quantization", "assumption: the proposed weight quantization")
        per = "decoded token" if w.family == "llm-decoder" else "sample"
        if mistake == "macs-as-flops":
            calc.given("flops", w.flops_per_inference.value / 2, w.flops_per_inference.unit, f"{w.name} operations per {per} (MAC count)",
                       f"specs/workloads.yaml: {w.id}.flops_per_inference / 2")
        else:
            workload_given(calc, "flops", s, "flops_per_inference", f"{w.name} operations per {per}")
        workload_given(calc, "params", s, "params", f"{w.name} parameters")
        if lever:
            assumption(calc, "bits_per_param", bits, "bit", "bits per weight after quantization",
                       f"weight-only INT{bits:g} quantization; the math still runs at {prec.upper()}")
        else:
            assumption(calc, "bits_per_param", bits, "bit", f"bits per weight at {prec.upper()}",
                       f"weights stored at {prec.upper()}, the {p.name}'s default precision")
        if s.scale_axis == "batch":
            scale_given(calc, "batch", s, "samples per batch" if w.family != "llm-decoder" else "sequences decoded together")
        else:
            assumption(calc, "batch", axis_value(s, "batch", 0), "", "samples per batch" if w.family != "llm-decoder" else "sequences decoded together",
                       "the serving batch size")
        prec_c = p.default_precision
        peak_fig = p.compute[prec_c]
        sparse = mistake == "sparse-peak" and self._has_sparse_headline(s)
        value = peak_fig.value * (2.0 if sparse else 1.0)
        calc.given("peak", value, peak_fig.unit, f"{p.name} peak {prec_c.upper()} throughput" + (" (2:4 sparse)" if sparse else ""),
                   f"specs/hardware.yaml: {p.id}.compute.{prec_c}")
        bw = p.memory_bandwidth
        if mistake == "bits-bandwidth":
            calc.given("bandwidth", bw.value / 8, bw.unit, f"{p.name} memory bandwidth (read as bits)", f"specs/hardware.yaml: {p.id}.memory_bandwidth / 8")
        else:
            platform_figure(calc, "bandwidth", s, "memory_bandwidth", label=f"{p.name} memory bandwidth")
        platform_figure(calc, "memory", s, "memory", label=f"{p.name} memory capacity")
        spec_figure(calc, "latency_budget", s.specs.track_by_id[s.track].scale.latency_budget, f"{s.track} latency budget per batch",
                    f"specs/tracks.yaml: {s.track}.scale.latency_budget")
        intensity_unit = "FLOP/byte" if prec in FLOAT_PRECISIONS else "op/byte"

        calc.step("weights", "params * bits_per_param", _weights_unit(s), "weight bytes read from memory per batch (activations assumed to stay on chip)")
        calc.step("batch_flops", "flops * batch", w.flops_per_inference.unit, "operations for the whole batch")
        per_sample = mistake == "weights-per-sample"
        traffic = "(weights * batch)" if per_sample else "weights"
        calc.step("compute_time", "batch_flops / peak", TIME_UNIT, "time at peak compute")
        calc.step("memory_time", f"{traffic} / bandwidth", TIME_UNIT, "time to stream the weights from memory")
        calc.step("intensity", f"batch_flops / {traffic}", intensity_unit, "arithmetic intensity of the batch")
        calc.step("ridge", "peak / bandwidth", intensity_unit, f"{p.name} ridge point")
        calc.step("attainable", "peak * min(1, intensity / ridge)", peak_fig.unit, "attainable throughput on the roofline")
        if mistake == "peak-compute":
            calc.step("batch_latency", "batch_flops / peak", TIME_UNIT, "latency of one forward pass of the batch")
        else:
            calc.step("batch_latency", "batch_flops / attainable", TIME_UNIT, "latency of one forward pass of the batch")
        if per_sample:
            calc.step("max_batch", "floor(latency_budget / max(flops / peak, weights / bandwidth))", "", "largest batch within the latency budget")
        else:
            fits = _peek(calc, "memory_time / latency_budget").to("").magnitude <= 1.0
            if mistake == "peak-compute" or fits:
                calc.step("max_batch", "floor(latency_budget * peak / flops)", "", "largest batch within the latency budget")
            else:  # streaming the weights alone overruns the budget: no batch size meets it
                calc.step("max_batch", "0 * latency_budget * peak / flops", "", "largest batch within the latency budget (none)")


# ============================================================================= training-memory

TRAINING_FAMILIES = frozenset({"llm-decoder", "encoder-transformer", "vision-transformer", "cnn-vision"})
KORTHIKANTI_WORKING_SET = 34.0  # bytes per token per hidden unit for one transformer layer (FP16, no recompute, no s^2 scores)


def _tokens_per_sample(s: Setting) -> tuple[float, str, str] | None:
    """Tokens one training sample carries: (tokens, label, source) or None if not a token model."""
    w = s.wl
    if w.family == "llm-decoder":
        return None  # the track's sequence axis sets it
    m = re.search(r"(\d+) patches \+ CLS", w.input)
    if m:
        return float(int(m.group(1)) + 1), "tokens per image (patches + CLS)", f"specs/workloads.yaml: {w.id}.input"
    m = re.search(r"(\d+)-token", w.input)
    if m:
        return float(m.group(1)), "tokens per sequence", f"specs/workloads.yaml: {w.id}.input"
    return None


class TrainingMemory(ItemModel):
    id = "training-memory"
    tracks = frozenset({"cloud", "edge"})
    workload_families = TRAINING_FAMILIES
    scale_axes = ("devices", "batch", "sequence")
    asks = ("optimizer_state", "model_state", "activations", "state_per_device", "per_device_total")
    limit = "memory"
    knob = "max_params"
    units = "devices_needed"
    observable = ("opt_step_time", "bandwidth", -1)
    recall = ("memory", "memory_bandwidth")

    def accepts(self, s: Setting) -> bool:
        if s.workload is None or s.platform.kind == "accelerator":
            return False  # inference-only accelerators
        try:
            calc = Calc()
            self.build(s, calc)
        except ValueError:
            return False
        names = {st.name for st in calc.steps}
        if "activations" in names and _peek(calc, "activations / memory").to("").magnitude > 0.5:
            return False  # would need checkpointing finer than per layer or sequence parallelism
        needed, group = calc.get("devices_needed").value, calc.get("devices").value
        if needed > _max_devices(s):
            return False
        # the configured ZeRO-3 group may be undersized (that is what the analysis exposes), but a
        # single device for a model that needs several, or a group far too small, is no scenario
        return group >= needed or (group > 1 and 4 * group >= needed)

    def _has_tokens(self, s: Setting) -> bool:
        w = s.wl
        return bool(w.layers and w.hidden) and (w.family == "llm-decoder" or _tokens_per_sample(s) is not None)

    def build(self, s: Setting, calc: Calc, mistake: str | None = None, lever: bool = False) -> None:
        w, p = s.wl, s.platform
        workload_given(calc, "params", s, "params", f"{w.name} parameters")
        if mistake == "forget-optimizer":
            w_b, g_b, o_b = 2.0, 0.0, 0.0
        else:
            w_b, g_b = 2.0, 2.0
            o_b = 6.0 if lever else (8.0 if mistake == "forget-master" else 12.0)
        assumption(calc, "weight_bytes", w_b, "byte", "bytes per parameter for the FP16/BF16 working weights", "mixed-precision training")
        assumption(calc, "grad_bytes", g_b, "byte", "bytes per parameter for FP16/BF16 gradients", "mixed-precision training")
        if lever:
            why = "8-bit Adam: FP32 master weights (4) + 8-bit first and second moments (1 + 1)"
        elif mistake == "forget-master":
            why = "Adam first and second moments in FP32 (4 + 4)"
        elif mistake == "forget-optimizer":
            why = "optimizer state left out"
        else:
            why = "FP32 master weights (4) + Adam first moment (4) + second moment (4)"
        assumption(calc, "optim_bytes", o_b, "byte", "bytes per parameter of optimizer state", why)
        if s.scale_axis == "devices":
            scale_given(calc, "devices", s, "accelerators sharing the training state (ZeRO-3)")
        else:
            assumption(calc, "devices", axis_value(s, "devices", 1), "", "accelerators sharing the training state (ZeRO-3)", "the job's data-parallel group")
        platform_figure(calc, "memory", s, "memory", label=f"{p.name} memory", unit="GB")
        platform_figure(calc, "bandwidth", s, "memory_bandwidth", label=f"{p.name} memory bandwidth")

        calc.step("state_bytes", "weight_bytes + grad_bytes + optim_bytes", "byte", "training-state bytes per parameter")
        calc.step("optimizer_state", "params * optim_bytes", "GB", "optimizer state (master weights and Adam moments)")
        calc.step("model_state", "params * state_bytes", "GB", "weights, gradients and optimizer state")
        zero1 = mistake == "zero1-only"
        if zero1:
            calc.step("state_per_device", "params * (weight_bytes + grad_bytes) + params * optim_bytes / devices", "GB", "training state per device")
        else:
            calc.step("state_per_device", "model_state / devices", "GB", "training state per device under ZeRO-3")

        has_act = self._has_tokens(s)
        if has_act:
            if w.family == "llm-decoder":
                if s.scale_axis == "sequence":
                    scale_given(calc, "sequence", s, "tokens per training sequence")
                else:
                    assumption(calc, "sequence", axis_value(s, "sequence", 0), "", "tokens per training sequence", "the training context length")
            else:
                tok, label, source = _tokens_per_sample(s)
                calc.given("sequence", tok, "", label, source)
            if s.scale_axis == "batch":
                scale_given(calc, "micro_batch", s, "sequences per micro-batch on each device")
            else:
                assumption(calc, "micro_batch", axis_value(s, "batch", 0), "", "sequences per micro-batch on each device", "the per-device micro-batch")
            workload_given(calc, "layers", s, "layers", f"{w.name} layers")
            workload_given(calc, "hidden", s, "hidden", f"{w.name} hidden size")
            assumption(calc, "ckpt_bytes", 2.0, "byte", "checkpointed bytes per token per hidden unit per layer",
                       "full activation checkpointing keeps each layer's FP16 input (Korthikanti et al. 2022)")
            assumption(calc, "work_bytes", KORTHIKANTI_WORKING_SET, "byte", "working-set bytes per token per hidden unit of the layer being recomputed",
                       "34 bytes for a transformer layer in FP16 with attention scores not stored (Korthikanti et al. 2022, FlashAttention)")
            calc.step("tokens", "sequence * micro_batch", "", "tokens per micro-batch")
            calc.step("activations", "tokens * hidden * (ckpt_bytes * layers + work_bytes)", "GB", "activation memory per device")
            if mistake == "shard-activations":
                calc.step("per_device_total", "state_per_device + activations / devices", "GB", "memory per device: state share plus activations")
            else:
                calc.step("per_device_total", "state_per_device + activations", "GB", "memory per device: state share plus activations")
        free = "memory - activations" if has_act else "memory"

        # units: fewest devices whose memory holds the sharded state beside each one's activations
        if zero1:
            zero1_expr = f"ceil(params * optim_bytes / ({free} - params * (weight_bytes + grad_bytes)))"
            if _peek(calc, f"{free} - params * (weight_bytes + grad_bytes)").to("byte").magnitude <= 0:
                # replicated weights and gradients alone overflow a device: no finite answer to be wrong with
                zero1_expr = f"ceil(model_state / ({free}))"
            calc.step("devices_needed", zero1_expr, "", "devices needed to hold the training state")
            calc.step("max_params", "floor(memory / (weight_bytes + grad_bytes + optim_bytes / devices))", "", "largest trainable parameter count")
        else:
            if mistake == "shard-activations" and has_act:
                calc.step("devices_needed", "ceil((model_state + activations) / memory)", "", "devices needed to hold the training state")
            else:
                calc.step("devices_needed", f"ceil(model_state / ({free}))", "", "devices needed to hold the training state")
            calc.step("max_params", "floor(devices * memory / state_bytes)", "", "largest trainable parameter count with ZeRO-3")

        # observable: the optimizer step is a streaming pass over each device's shard of the state
        traffic = 16.0 if lever else 28.0
        assumption(calc, "step_traffic", traffic, "byte", "bytes moved per parameter by one Adam step",
                   ("8-bit Adam: read gradient 2 + master 4 + moments 1 + 1, write master 4 + moments 1 + 1 + FP16 weights 2" if lever else
                    "read gradient 2 + master weights 4 + moments 4 + 4, write master 4 + moments 4 + 4 + FP16 weights 2"))
        calc.step("shard_traffic", "params * step_traffic / devices", "GB", "optimizer-step traffic per device")
        calc.step("opt_step_time", "shard_traffic / bandwidth", TIME_UNIT, "optimizer step time at the memory bandwidth")


# ============================================================================= tensor-arena-fit

ARENA_FAMILIES = frozenset({"keyword-spotting", "anomaly-detector", "cnn-vision", "detector"})
INTERPRETER_OVERHEAD_KB = 8.0
APP_BUFFERS_KB = 32.0


def _mfcc_frames(s: Setting) -> tuple[float, float] | None:
    """(frames, coefficients) of an MFCC input, e.g. '49x10 MFCC'."""
    m = re.search(r"(\d+)x(\d+) MFCC", s.wl.input)
    return (float(m.group(1)), float(m.group(2))) if m else None


class TensorArenaFit(ItemModel):
    id = "tensor-arena-fit"
    tracks = frozenset({"tinyml"})
    workload_families = ARENA_FAMILIES
    scale_axes = ("sequence",)
    asks = ("act_peak", "arena", "sram_needed")
    limit = "sram"
    knob = "max_growth"
    units = None
    observable = ("inference_time", "compute", -1)
    recall = ("memory", "flash", "clock", "compute")

    def accepts(self, s: Setting) -> bool:
        if s.workload is None or s.wl.activation_bytes is None:
            return False
        try:
            calc = Calc()
            self.build(s, calc)
        except ValueError:
            return False
        return calc.get("headroom").value > 0

    def build(self, s: Setting, calc: Calc, mistake: str | None = None, lever: bool = False) -> None:
        w, p = s.wl, s.platform
        act_values = float(w.activation_bytes.q.to("byte").magnitude)
        calc.given("act_values", act_values, "", f"{w.name} peak live activation values (largest set of tensors alive at once)",
                   f"specs/workloads.yaml: {w.id}.activation_bytes (one byte per value at INT8)")
        act_b = 4.0 if mistake == "fp32-activations" else 1.0
        assumption(calc, "act_bytes", act_b, "byte", "bytes per activation value",
                   "INT8 activations after quantization" if lever else ("FP32 activations" if act_b == 4 else "INT8 activations, as deployed"))
        mfcc = _mfcc_frames(s)
        if mfcc is not None and s.scale_axis == "sequence":
            calc.given("base_frames", mfcc[0], "", f"MFCC frames in {w.name}'s published input", f"specs/workloads.yaml: {w.id}.input")
            scale_given(calc, "frames", s, "MFCC frames in the deployed input window")
            calc.step("act_peak", "act_values * act_bytes * frames / base_frames", "kB",
                      "peak live activations (they scale with the number of frames)")
        else:
            calc.step("act_peak", "act_values * act_bytes", "kB", "peak live activations")
        assumption(calc, "overhead", INTERPRETER_OVERHEAD_KB, "kB", "interpreter overhead in the arena (tensor and node metadata, kernel scratch)",
                   "a few kB for a graph of a few dozen tensors; measure it with the interpreter's arena_used_bytes()")
        calc.step("arena", "act_peak" if mistake == "forget-overhead" else "act_peak + overhead", "kB", "tensor arena")
        assumption(calc, "app_buffers", APP_BUFFERS_KB, "kB", "application RAM outside the arena (stack, RTOS and HAL state, sensor DMA buffers)",
                   "the firmware team's budget for everything that is not the model")
        if mistake == "weights-in-sram":
            workload_given(calc, "params", s, "params", f"{w.name} parameters")
            assumption(calc, "weight_bytes", 1.0, "byte", "bytes per INT8 weight", "INT8 weights")
            calc.step("sram_needed", "arena + app_buffers + params * weight_bytes", "kB", "SRAM needed")
        elif mistake == "forget-app-buffers":
            calc.step("sram_needed", "arena", "kB", "SRAM needed")
        else:
            calc.step("sram_needed", "arena + app_buffers", "kB", "SRAM needed: arena plus application buffers")
        fig = p.memory
        if mistake == "kib-as-kb" and fig.unit in BINARY_TO_DECIMAL:
            calc.given("sram", fig.value, BINARY_TO_DECIMAL[fig.unit], f"{p.name} SRAM", f"specs/hardware.yaml: {p.id}.memory (prefix misread)")
        else:
            platform_figure(calc, "sram", s, "memory", label=f"{p.name} SRAM")
        calc.step("headroom", "sram - sram_needed", "kB", "SRAM left free")
        overhead = "" if mistake == "forget-overhead" else " - overhead"
        buffers = "" if mistake == "forget-app-buffers" else " - app_buffers"
        extra = " - params * weight_bytes" if mistake == "weights-in-sram" else ""
        calc.step("max_growth", f"floor(100 * (sram{buffers}{overhead}{extra}) / act_peak) / 100", "",
                  "largest growth factor of the peak activations that still fits")
        prec = p.default_precision
        workload_given(calc, "flops", s, "flops_per_inference", f"{w.name} operations per inference")
        platform_figure(calc, "compute", s, "compute", label=f"{p.name} peak {prec.upper()} throughput")
        calc.step("inference_time", "flops / compute", TIME_UNIT, "inference time at peak throughput")
