"""Distributed training and data movement: collectives, pipelines, training time, checkpoints,
MoE all-to-all and single-link transfers.

Families (phrasing in ``assets/item_models/<id>.yaml``):

- ``ring-allreduce``: data-parallel gradient all-reduce (alpha-beta ring model) against the
  backward pass it has to hide behind.
- ``pipeline-bubble``: 1F1B pipeline schedule, bubble (p-1)/(v m + p - 1), step time.
- ``training-time``: 6 x params x tokens over N x peak x MFU, against a deadline.
- ``checkpoint-interval``: checkpoint write stall, cluster MTBF, Young-Daly interval.
- ``moe-routing``: MoE memory (all experts) versus expert-parallel all-to-all per decode step.
- ``link-transfer``: one payload over one link of the track, against the item period.

Conventions shared by the families:

- Link bandwidths are per direction (specs/hardware.yaml conventions) and are kept in the
  unit the spec states (Gbit/s stays Gbit/s; pint converts), so bits versus bytes is explicit.
- Display units of derived steps are chosen from the magnitude of the value computed for a
  reference platform of the track (the first one the family can build), so that right,
  mistaken and lever chains, and both sides of a comparison, share the same units.
"""

from __future__ import annotations

import re
from dataclasses import replace

from staffml_dagster.generation.calc import Calc, evaluate
from staffml_dagster.generation.item_model import ItemModel, Setting, assumption, platform_figure, scale_given, spec_figure, workload_given
from staffml_dagster.generation.item_models.common import axis_value
from staffml_dagster.specs import Interconnect

# --------------------------------------------------------------------------- display units

_TIME = "@time"
_BYTES = "@bytes"
_FLOP = "@flop"
_FLOPS = "@flops"

_SCALES = {
    _TIME: [("days", 2 * 86400.0), ("hours", 7200.0), ("minutes", 120.0), ("s", 1.0), ("ms", 1e-3), ("us", 0.0)],
    _BYTES: [("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3), ("byte", 0.0)],
    _FLOP: [("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 0.0)],
    _FLOPS: [("EFLOPS", 1e18), ("PFLOPS", 1e15), ("TFLOPS", 0.0)],
}
_BASE = {_TIME: "s", _BYTES: "byte", _FLOP: "FLOP", _FLOPS: "FLOPS"}


def _pick_unit(kind: str, value) -> str:
    magnitude = abs(float(value.to(_BASE[kind]).magnitude))
    for unit, threshold in _SCALES[kind]:
        if magnitude >= threshold:
            return unit
    return _SCALES[kind][-1][0]


class _Steps:
    """Adds derived steps; ``@time``-style units are resolved once per setting (see module doc)."""

    def __init__(self, calc: Calc, fixed: dict[str, str], chosen: dict[str, str] | None = None):
        self.calc, self.fixed, self.chosen = calc, fixed, chosen

    def __call__(self, name: str, expression: str, unit: str, label: str) -> float:
        if unit in _SCALES:
            if name in self.fixed:
                unit = self.fixed[name]
            else:
                unit = _pick_unit(unit, evaluate(expression, self.calc._env()))
                if self.chosen is not None:
                    self.chosen[name] = unit
        return self.calc.step(name, expression, unit, label)


class _Family(ItemModel):
    """Shared build plumbing: ``_build`` does the work, ``build`` fixes the display units."""

    def _build(self, s: Setting, calc: Calc, st: _Steps, mistake: str | None, lever: bool) -> None:
        raise NotImplementedError

    def _units_for(self, s: Setting, lever: bool = False) -> dict[str, str]:
        candidates = [p for p in s.specs.platforms_for(s.track)] or [s.platform]
        for p in candidates:
            chosen: dict[str, str] = {}
            probe = Calc()
            try:
                self._build(replace(s, platform=p), probe, _Steps(probe, {}, chosen), None, lever)
            except (ValueError, KeyError, ZeroDivisionError):
                continue
            return chosen
        return {}

    def build(self, s: Setting, calc: Calc, mistake: str | None = None, lever: bool = False) -> None:
        self._build(s, calc, _Steps(calc, self._units_for(s, lever)), mistake, lever)


# --------------------------------------------------------------------------- shared helpers


def _interconnect(s: Setting, ident: str | None) -> Interconnect:
    if not ident:
        raise ValueError(f"{s.platform.id} has no interconnect in specs/hardware.yaml")
    try:
        return s.specs.interconnect_by_id[ident]
    except KeyError:
        raise ValueError(f"specs/hardware.yaml has no interconnect {ident!r}") from None


def _link_bw(calc: Calc, name: str, ic: Interconnect, label: str, mistake: str | None = None) -> float:
    """The link's per-direction bandwidth as given in specs (unit kept), or a misconception's reading of it."""
    value, unit = ic.bandwidth.value, ic.bandwidth.unit
    if mistake == "bits-as-bytes" and "bit" in unit:
        unit = unit.replace("bit", "B")
        label += " (bits read as bytes)"
    elif mistake == "bidirectional-bw" and ic.scope in ("intra-node", "inter-node", "host-bus"):
        value *= 2
        label += ", both directions summed"
    return calc.given(name, value, unit, label, f"specs/hardware.yaml: interconnects.{ic.id}.bandwidth")


def _link_latency(calc: Calc, name: str, ic: Interconnect) -> bool:
    if ic.latency is None:
        return False
    calc.given(name, ic.latency.value, ic.latency.unit, f"{ic.name} latency per message", f"specs/hardware.yaml: interconnects.{ic.id}.latency")
    return True


def _train_precision(s: Setting) -> str | None:
    for prec in ("bf16", "fp16"):
        if prec in s.platform.compute:
            return prec
    return None


def _train_peak(calc: Calc, s: Setting, name: str = "peak") -> float:
    prec = _train_precision(s)
    if prec is None:
        raise ValueError(f"{s.platform.id} has no bf16/fp16 compute figure in specs/hardware.yaml")
    return platform_figure(calc, name, s, "compute", precision=prec, label=f"{s.platform.name} peak dense {prec.upper()} throughput")


def _bytes(fig) -> float:
    return float(fig.q.to("byte").magnitude)


def _economics(calc: Calc, s: Setting, name: str, key: str, label: str, unit: str | None = None) -> float:
    fig = s.specs.hardware.economics.get(key)
    if fig is None:
        raise ValueError(f"specs/hardware.yaml economics has no {key}")
    return spec_figure(calc, name, fig, label, f"specs/hardware.yaml: economics.{key}", unit)


def _scale_or_default(calc: Calc, s: Setting, name: str, axis: str, index: int, label: str, why: str, unit: str = "") -> float:
    if s.scale_axis == axis:
        return scale_given(calc, name, s, label, unit)
    return assumption(calc, name, axis_value(s, axis, index), unit, label, why)


def _scale_index(s: Setting) -> int:
    points = s.specs.track_by_id[s.track].scale_points.get(s.scale_axis) or [s.scale_value]
    try:
        return points.index(s.scale_value)
    except ValueError:
        return 0


def _gpus_per_node(s: Setting) -> int:
    return 4 if s.platform.kind == "tpu" else 8


def _scale_out_link(s: Setting, n: float) -> tuple[Interconnect, str]:
    """The link a collective over n devices is bound by, and where it sits.

    TPU slices keep every chip on the ICI torus; GPUs use the node's scale-up fabric up to one
    node (8 GPUs) and one scale-out NIC per GPU beyond: InfiniBand NDR for HBM training GPUs,
    100 GbE for PCIe-only inference cards."""
    own = _interconnect(s, s.platform.interconnect)
    if s.platform.kind == "tpu" or n <= _gpus_per_node(s):
        return own, "inside the node" if s.platform.kind != "tpu" else "on the slice's ICI torus"
    if own.scope == "host-bus":
        return _interconnect(s, "ethernet-100g"), "across nodes, one NIC per GPU"
    return _interconnect(s, "infiniband-ndr"), "across nodes, one NIC per GPU"


def _is_decoder(s: Setting) -> bool:
    return s.wl.family in ("llm-decoder", "moe-decoder")


# =========================================================================== ring all-reduce


class RingAllReduce(_Family):
    id = "ring-allreduce"
    tracks = frozenset({"cloud"})
    workload_families = frozenset({"llm-decoder", "encoder-transformer", "vision-transformer", "cnn-vision", "detector"})
    scale_axes = ("devices", "batch")
    asks = ("payload", "ar_transfer", "allreduce_time", "step_time", "scaling_efficiency")
    limit = "bwd_time"
    knob = "min_batch"
    units = None
    observable = ("ar_transfer", "link_bw", -1)
    recall = ("compute", "memory")

    def accepts(self, s: Setting) -> bool:
        n = axis_value(s, "devices", 2)
        if n < 2 or _train_precision(s) is None or not s.platform.interconnect:
            return False
        # feasible with sharded optimizer state: BF16 weights replicated + 16 bytes/param sharded
        return 2 * s.wl.params + 16 * s.wl.params / n <= _bytes(s.platform.memory)

    def _build(self, s: Setting, calc: Calc, st: _Steps, mistake: str | None, lever: bool) -> None:
        w = s.wl
        n = axis_value(s, "devices", 2)
        ic, where = _scale_out_link(s, n)
        workload_given(calc, "params", s, "params", f"{w.name} parameters")
        if lever:
            assumption(calc, "grad_bytes", 2.0, "byte", "bytes per gradient element", "BF16 gradient communication (DDP bf16 compression hook)")
        elif mistake == "bf16-grads":
            assumption(calc, "grad_bytes", 2.0, "byte", "bytes per gradient element", "taken as BF16 because the model computes in BF16")
        else:
            assumption(calc, "grad_bytes", 4.0, "byte", "bytes per gradient element", "FP32: under mixed precision DDP all-reduces the FP32 .grad buffers of the FP32 master parameters")
        _scale_or_default(calc, s, "devices", "devices", 2, "data-parallel ranks (devices)", "the cluster allocated to the job")
        st("payload", "params * grad_bytes", _BYTES, "gradient payload per rank")
        _link_bw(calc, "link_bw", ic, f"{ic.name} per-direction bandwidth per device ({where})", mistake)
        if mistake == "no-ring-factor":
            expr = "payload / link_bw"
        elif mistake == "shrinks-with-n":
            expr = "payload / (devices * link_bw)"
        else:
            expr = "2 * (devices - 1) / devices * payload / link_bw"
        st("ar_transfer", expr, _TIME, "ring all-reduce bandwidth term, 2(N-1)/N x payload / bandwidth")
        if _link_latency(calc, "link_latency", ic):
            st("ar_latency", "2 * (devices - 1) * link_latency", _TIME, "ring latency term, 2(N-1) hops")
            st("allreduce_time", "ar_transfer + ar_latency", _TIME, "gradient all-reduce time")
        else:
            st("allreduce_time", "ar_transfer", _TIME, f"gradient all-reduce time (specs give no latency for {ic.name}; bandwidth term only)")
        comm = "allreduce_time"
        decoder = _is_decoder(s)
        workload_given(calc, "flops_per_sample", s, "flops_per_inference", f"{w.name} forward FLOPs per {'token' if decoder else 'sample'}")
        _scale_or_default(calc, s, "batch", "batch", 1, f"local batch per device per step ({'sequences' if decoder else 'samples'})", "the per-device batch of the training recipe")
        work = "batch"
        if decoder:
            assumption(calc, "seq_len", 4096, "", "tokens per training sequence", "a 4,096-token training context")
            work = "batch * seq_len"
        _train_peak(calc, s)
        assumption(calc, "mfu", 0.4, "", "sustained fraction of peak (MFU)", "typical 35-45% model FLOPs utilization of large training jobs")
        st("fwd_time", f"flops_per_sample * {work} / (peak * mfu)", _TIME, "forward-pass time per step")
        st("bwd_time", "2 * fwd_time", _TIME, "backward-pass time per step (about 2x the forward pass)")
        st("step_time", f"fwd_time + max(bwd_time, {comm})", _TIME, "step time with the all-reduce overlapped with the backward pass")
        st("scaling_efficiency", "(fwd_time + bwd_time) / step_time", "percent", "data-parallel scaling efficiency (compute time / step time)")
        st("min_batch", f"ceil({comm} / (bwd_time / batch))", "", "smallest local batch whose backward pass hides the all-reduce")


# =========================================================================== pipeline bubble


class PipelineBubble(_Family):
    id = "pipeline-bubble"
    tracks = frozenset({"cloud"})
    workload_families = frozenset({"llm-decoder", "moe-decoder"})
    scale_axes = ("devices", "batch")
    asks = ("bubble_fraction", "chunk_compute", "p2p_time", "slot_time", "bubble_time", "job_throughput")
    limit = "step_time"
    knob = "min_microbatches"
    units = None
    observable = ("chunk_compute", "mfu", -1)
    recall = ("compute", "memory")

    @staticmethod
    def _layout(s: Setting) -> tuple[int, int, float]:
        """(tensor-parallel width, pipeline stages, devices)."""
        n = axis_value(s, "devices", 2)
        if n < 8:
            return 0, 0, n
        tp = 1 if n <= 8 else 8
        stages = int(min(n // tp, 16))
        return tp, stages, n

    def accepts(self, s: Setting) -> bool:
        tp, p, n = self._layout(s)
        w = s.wl
        if p < 2 or "bf16" not in s.platform.compute or not s.platform.interconnect or not w.layers or not w.hidden:
            return False
        if w.layers % (2 * p):  # whole layers per stage, also with 2 interleaved chunks
            return False
        return 16 * w.params / (tp * p) <= _bytes(s.platform.memory)

    def _build(self, s: Setting, calc: Calc, st: _Steps, mistake: str | None, lever: bool) -> None:
        w = s.wl
        tp, p, n = self._layout(s)
        if p < 2:
            raise ValueError("pipeline-bubble needs at least 8 devices")
        ic, where = _scale_out_link(s, n if tp > 1 else 1)
        _scale_or_default(calc, s, "devices", "devices", 2, "devices in the job", "the cluster allocated to the job")
        why = (f"{p} stages of one device each, all inside one node" if tp == 1
               else f"tensor parallel over {tp} devices per stage inside a node's fast fabric, {p} pipeline stages across nodes, data parallel over the remaining devices")
        assumption(calc, "stages", p, "", "pipeline stages", why)
        assumption(calc, "tp", tp, "", "devices per stage (tensor-parallel width)", why)
        assumption(calc, "vstages", 2 if lever else 1, "", "model chunks per device (virtual stages)", "interleaved 1F1B schedule" if lever else "plain 1F1B schedule")
        _scale_or_default(calc, s, "microbatches", "batch", 2, "micro-batches per pipeline per step", "the global batch split into micro-batches")
        workload_given(calc, "flops_per_token", s, "flops_per_inference", f"{w.name} forward FLOPs per token")
        assumption(calc, "mb_tokens", 4096, "", "tokens per micro-batch", "one 4,096-token sequence per micro-batch")
        _train_peak(calc, s)
        assumption(calc, "mfu", 0.4, "", "sustained fraction of peak (MFU)", "typical 35-45% model FLOPs utilization of large training jobs")
        factor = "1" if mistake == "forward-only" else "3"
        st("chunk_compute", f"{factor} * flops_per_token * mb_tokens / (stages * vstages * tp * peak * mfu)", _TIME,
           "compute time of one micro-batch on one stage chunk, 3 x FLOPs/token x tokens / (p v) over t x peak x MFU")
        workload_given(calc, "hidden", s, "hidden", f"{w.name} hidden size")
        assumption(calc, "act_bytes", 2.0, "byte", "bytes per activation element", "BF16 activations")
        _link_bw(calc, "link_bw", ic, f"{ic.name} per-direction bandwidth per device ({where})", mistake)
        if _link_latency(calc, "link_latency", ic):
            st("p2p_time", "mb_tokens * hidden * act_bytes / link_bw + link_latency", _TIME, "stage-to-stage send of one micro-batch's activations (tokens x hidden x bytes)")
        else:
            st("p2p_time", "mb_tokens * hidden * act_bytes / link_bw", _TIME, "stage-to-stage send of one micro-batch's activations (tokens x hidden x bytes)")
        st("slot_time", "chunk_compute + 2 * p2p_time", _TIME, "schedule slot per micro-batch and chunk (compute + activation and gradient sends)")
        if mistake == "ignore-bubble":
            st("step_time", "vstages * microbatches * slot_time", _TIME, "pipeline step time")
            st("bubble_time", "0 * slot_time", _TIME, "idle (bubble) time per step")
            st("bubble_fraction", "0 * stages", "percent", "bubble fraction of the step")
        else:
            st("step_time", "(vstages * microbatches + stages - 1) * slot_time", _TIME, "pipeline step time, (v m + p - 1) slots")
            st("bubble_time", "(stages - 1) * slot_time", _TIME, "idle (bubble) time per step, (p - 1) slots")
            if mistake == "bubble-over-m":
                st("bubble_fraction", "(stages - 1) / (vstages * microbatches)", "percent", "bubble fraction of the step")
            else:
                st("bubble_fraction", "(stages - 1) / (vstages * microbatches + stages - 1)", "percent", "bubble fraction of the step, (p - 1)/(v m + p - 1)")
        st("replicas", "devices / (tp * stages)", "", "data-parallel pipeline replicas")
        st("job_throughput", "replicas * microbatches * mb_tokens / step_time", "token/s", "training throughput of the whole job")
        assumption(calc, "bubble_target", 5, "percent", "bubble budget", "at most 5% of each step idle")
        if mistake == "ignore-bubble":
            st("min_microbatches", "1 + 0 * stages", "", "fewest micro-batches meeting the bubble budget")
        elif mistake == "bubble-over-m":
            st("min_microbatches", "ceil((stages - 1) / (bubble_target * vstages))", "", "fewest micro-batches meeting the bubble budget")
        else:
            st("min_microbatches", "ceil((stages - 1) * (1 - bubble_target) / (bubble_target * vstages))", "", "fewest micro-batches meeting the bubble budget")


# =========================================================================== training time


class TrainingTime(_Family):
    id = "training-time"
    tracks = frozenset({"cloud"})
    workload_families = frozenset({"llm-decoder", "moe-decoder"})
    scale_axes = ("dataset", "devices")
    asks = ("cluster_flops", "train_flops", "training_time", "wall_clock")
    limit = "deadline"
    knob = "max_params"
    units = "gpus_needed"
    observable = ("training_time", "mfu", -1)
    recall = ("compute", "memory")

    _DEVICES_FOR_TOKENS = {1.0e7: 8, 1.0e9: 64, 1.0e11: 512}
    _DEADLINE = {1.0e7: (1, "hour", "a fine-tuning run expected back within the hour"),
                 1.0e9: (1, "day", "a continued-pretraining run that must finish within a day"),
                 1.0e11: (14, "day", "a two-week pretraining slot on the cluster")}

    def _tokens_devices(self, s: Setting) -> tuple[float, float]:
        tokens = axis_value(s, "dataset", 2)
        if s.scale_axis == "devices":
            return tokens, s.scale_value
        return tokens, self._DEVICES_FOR_TOKENS.get(tokens, 512)

    def accepts(self, s: Setting) -> bool:
        tokens, n = self._tokens_devices(s)
        if n < 2 or "bf16" not in s.platform.compute or tokens not in self._DEADLINE:
            return False
        return 16 * s.wl.params / n <= _bytes(s.platform.memory)

    def _build(self, s: Setting, calc: Calc, st: _Steps, mistake: str | None, lever: bool) -> None:
        w = s.wl
        tokens, n = self._tokens_devices(s)
        moe = w.family == "moe-decoder"
        workload_given(calc, "params", s, "params", f"{w.name} parameters" + (" (all experts)" if moe else ""))
        per = 2.0 if mistake == "forward-only" else 6.0
        assumption(calc, "flop_per_param_token", per, "FLOP", "training FLOPs per parameter per token",
                   "forward pass only (2)" if per == 2 else "2 forward + 4 backward (the 6 x params x tokens rule)")
        if s.scale_axis == "dataset":
            scale_given(calc, "tokens", s, "training tokens")
        else:
            assumption(calc, "tokens", tokens, "", "training tokens", "the run's token budget")
        if moe:
            workload_given(calc, "flops_per_token", s, "flops_per_inference", f"{w.name} forward FLOPs per token (active experts only)")
            assumption(calc, "fwd_flop_per_param", 2.0, "FLOP", "forward FLOPs per active parameter per token", "one multiply-accumulate per weight")
            if mistake == "moe-total-params":
                st("train_flops", "flop_per_param_token * params * tokens", "FLOP", "training FLOPs, 6 x parameters x tokens")
            else:
                st("train_flops", "flop_per_param_token * (flops_per_token / fwd_flop_per_param) * tokens", "FLOP",
                   "training FLOPs, 6 x active parameters x tokens (active = forward FLOPs per token / 2)")
        else:
            st("train_flops", "flop_per_param_token * params * tokens", "FLOP", "training FLOPs, 6 x parameters x tokens")
        if s.scale_axis == "devices":
            scale_given(calc, "devices", s, "accelerators in the cluster")
        else:
            assumption(calc, "devices", n, "", "accelerators in the cluster", "the allocation for a run of this size")
        _train_peak(calc, s)
        if mistake == "peak-as-sustained":
            assumption(calc, "mfu", 1.0, "", "sustained fraction of peak (MFU)", "taken as the datasheet peak")
        elif lever:
            assumption(calc, "mfu", 0.5, "", "sustained fraction of peak (MFU)", "communication overlapped with compute and fused kernels lift MFU from 40% to 50%")
        else:
            assumption(calc, "mfu", 0.4, "", "sustained fraction of peak (MFU)", "typical 35-45% model FLOPs utilization of large dense training")
        st("cluster_flops", "devices * peak * mfu", _FLOPS, "sustained cluster throughput, N x peak x MFU")
        slip = " * 24" if mistake == "hours-as-days" else ""
        st("training_time", f"train_flops / cluster_flops{slip}", _TIME, "compute time of the run")
        _economics(calc, s, "ckpt_overhead", "checkpoint_overhead", "wall-clock share lost to checkpointing and restarts")
        st("wall_clock", "training_time / (1 - ckpt_overhead)", _TIME, "wall-clock time including checkpoint and restart overhead")
        value, unit, why = self._DEADLINE[tokens]
        assumption(calc, "deadline", value, unit if value == 1 else unit + "s", "deadline for the run", why)
        st("gpus_for_compute", "ceil(train_flops / ((1 - ckpt_overhead) * deadline * peak * mfu))", "", "accelerators needed to finish the FLOPs by the deadline")
        assumption(calc, "state_bytes", 16.0, "byte", "training-state bytes per parameter", "BF16 weights and gradients + FP32 master weights and two Adam moments, fully sharded")
        platform_figure(calc, "memory", s, "memory", unit="GB")
        st("gpus_for_memory", "ceil(state_bytes * params / memory)", "", "accelerators needed just to hold the training state")
        st("gpus_needed", "max(gpus_for_compute, gpus_for_memory)", "", "accelerators needed to meet the deadline")
        st("max_params", "min((1 - ckpt_overhead) * deadline * cluster_flops / (flop_per_param_token * tokens), devices * memory / state_bytes) / 1e9", "",
           "largest dense model (billions of parameters) trainable on this cluster by the deadline")


# =========================================================================== checkpoint interval


class CheckpointInterval(_Family):
    id = "checkpoint-interval"
    tracks = frozenset({"cloud"})
    workload_families = frozenset({"llm-decoder", "moe-decoder"})
    scale_axes = ("devices",)
    asks = ("ckpt_size", "stall", "interval", "waste")
    limit = "interval"
    knob = "interval"
    units = None
    observable = ("stall", "nvme_bw", -1)
    recall = ("memory", "memory_bandwidth")

    def accepts(self, s: Setting) -> bool:
        n = axis_value(s, "devices", 2)
        return n >= 2 and _train_precision(s) == "bf16" and 16 * s.wl.params / n <= _bytes(s.platform.memory)

    def _build(self, s: Setting, calc: Calc, st: _Steps, mistake: str | None, lever: bool) -> None:
        w = s.wl
        workload_given(calc, "params", s, "params", f"{w.name} parameters" + (" (all experts)" if w.family == "moe-decoder" else ""))
        if mistake == "weights-only":
            assumption(calc, "state_bytes", 2.0, "byte", "checkpoint bytes per parameter", "BF16 weights only")
        else:
            assumption(calc, "state_bytes", 14.0, "byte", "checkpoint bytes per parameter",
                       "BF16 weights (2) + FP32 master weights (4) + Adam first and second moments (4 + 4); gradients are not saved")
        st("ckpt_size", "params * state_bytes", _BYTES, "checkpoint size (weights + optimizer state)")
        _scale_or_default(calc, s, "devices", "devices", 2, "accelerators in the job", "the cluster allocated to the job")
        per_node = _gpus_per_node(s)
        assumption(calc, "per_node", per_node, "", "accelerators per node", "a TPU v5p host drives 4 chips" if per_node == 4 else "8-GPU server nodes")
        st("nodes", "ceil(devices / per_node)", "", "nodes writing checkpoint shards in parallel")
        nvme = _interconnect(s, "nvme-gen4")
        spec_figure(calc, "nvme_bw", nvme.bandwidth, f"{nvme.name} sequential bandwidth, one drive per node", f"specs/hardware.yaml: interconnects.{nvme.id}.bandwidth")
        if lever:
            host = _interconnect(s, "pcie-gen4-x16")
            spec_figure(calc, "host_bw", host.bandwidth, f"{host.name} per-direction bandwidth, device to host memory (at least Gen4 x16 per accelerator)",
                        f"specs/hardware.yaml: interconnects.{host.id}.bandwidth")
            st("stall", "ckpt_size / (devices * host_bw)", _TIME, "training stall per checkpoint (snapshot to host memory; the drive write runs in the background)")
        else:
            st("stall", "ckpt_size / (nodes * nvme_bw)", _TIME, "training stall per checkpoint (sharded write to local NVMe)")
        _economics(calc, s, "gpu_mttf", "gpu_mttf", "mean time to failure of one accelerator")
        if mistake == "single-gpu-mttf":
            st("cluster_mtbf", "gpu_mttf * 1", _TIME, "mean time between failures of the job")
        else:
            st("cluster_mtbf", "gpu_mttf / devices", _TIME, "mean time between failures of the job (MTTF / N)")
        if mistake == "no-factor-2":
            st("interval", "sqrt(stall * cluster_mtbf)", _TIME, "checkpoint interval")
        elif mistake == "every-mtbf":
            st("interval", "cluster_mtbf * 1", _TIME, "checkpoint interval")
        else:
            st("interval", "sqrt(2 * stall * cluster_mtbf)", _TIME, "Young-Daly checkpoint interval, sqrt(2 C M)")
        st("waste", "stall / interval + interval / (2 * cluster_mtbf)", "percent", "expected share of time lost (checkpoint stalls + rework after failures)")


# =========================================================================== MoE routing


class MoERouting(_Family):
    id = "moe-routing"
    tracks = frozenset({"cloud"})
    workload_families = frozenset({"moe-decoder"})
    scale_axes = ("batch", "devices")
    asks = ("a2a_bytes", "a2a_wire", "a2a_time", "read_time", "step_time")
    limit = "tpot_budget"
    knob = "max_experts"
    units = "devices_to_hold"
    observable = ("a2a_wire", "link_bw", -1)
    recall = ("memory", "memory_bandwidth")

    # Routing figures are not fields of specs/workloads.yaml; they are quoted there in the notes.
    _ROUTING = {
        "mixtral-8x7b": (8, 2, "Mixtral 8x7B: 8 experts per layer, top-2 routing (config, quoted in specs/workloads.yaml)"),
        "mixtral-8x22b": (8, 2, "Mixtral 8x22B: 8 experts per layer, top-2 routing (config, quoted in specs/workloads.yaml)"),
    }

    def accepts(self, s: Setting) -> bool:
        w = s.wl
        if w.id not in self._ROUTING or not w.hidden or not w.layers or not s.platform.interconnect:
            return False
        experts, top_k, _ = self._ROUTING[w.id]
        n = axis_value(s, "devices", 1)
        if n < 2 or axis_value(s, "batch", 2) < experts:
            return False
        active = float(w.flops_per_inference.q.to("FLOP").magnitude) / 2
        expert = (w.params - active) / (experts - top_k)
        resident = 2 * (active - top_k * expert + experts / min(n, experts) * expert)  # BF16 bytes
        return resident <= _bytes(s.platform.memory)

    def _build(self, s: Setting, calc: Calc, st: _Steps, mistake: str | None, lever: bool) -> None:
        w = s.wl
        if w.id not in self._ROUTING:
            raise ValueError(f"no expert count / top-k known for {w.id}")
        experts, top_k, why = self._ROUTING[w.id]
        n = axis_value(s, "devices", 1)
        ep = int(min(n, experts))
        ic = _interconnect(s, s.platform.interconnect)
        workload_given(calc, "params", s, "params", f"{w.name} total parameters (all experts)")
        workload_given(calc, "flops_per_token", s, "flops_per_inference", f"{w.name} forward FLOPs per token (routed experts only)")
        assumption(calc, "fwd_flop_per_param", 2.0, "FLOP", "forward FLOPs per active parameter per token", "one multiply-accumulate per weight")
        assumption(calc, "experts", experts, "", "experts per MoE layer", why)
        assumption(calc, "top_k", top_k, "", "experts each token is routed to (top-k)", why)
        assumption(calc, "param_bytes", 2.0, "byte", "bytes per weight", "BF16 weights")
        st("active", "flops_per_token / fwd_flop_per_param", "", "active parameters per token")
        if mistake == "active-memory":
            st("weights_total", "active * param_bytes", _BYTES, "weight memory to hold")
        else:
            st("weights_total", "params * param_bytes", _BYTES, "weight memory of all experts and shared layers")
        st("expert_params", "(params - active) / (experts - top_k)", "", "parameters of one expert (all layers)")
        st("expert_bytes", "expert_params * param_bytes", _BYTES, "memory of one expert (all layers)")
        st("shared_bytes", "(active - top_k * expert_params) * param_bytes", _BYTES, "memory of the shared (non-expert) weights")
        if s.scale_axis == "devices":
            scale_given(calc, "devices", s, "accelerators serving the model")
        else:
            assumption(calc, "devices", n, "", "accelerators serving the model", "one node of the serving fleet")
        assumption(calc, "ep", ep, "", "expert-parallel group size (devices)", f"one expert per device across {ep} devices; larger fleets replicate the group")
        if mistake == "active-memory":
            st("device_weights", "active * param_bytes / ep", _BYTES, "weights read by each device per step")
        elif mistake == "forget-shared":
            st("device_weights", "experts / ep * (params - active) / (experts - top_k) * param_bytes", _BYTES, "weights resident on each device of the group")
        else:
            st("device_weights", "(active - top_k * (params - active) / (experts - top_k) + experts / ep * (params - active) / (experts - top_k)) * param_bytes", _BYTES,
               "weights resident on each device: shared layers (active - k experts) + E/EP experts of (total - active)/(E - k) each")
        _scale_or_default(calc, s, "tokens", "batch", 2, "tokens per device per decode step (one per sequence)", "the decode batch per device")
        workload_given(calc, "hidden", s, "hidden", f"{w.name} hidden size")
        workload_given(calc, "layers", s, "layers", f"{w.name} MoE layers")
        assumption(calc, "dispatch_bytes", 1.0 if lever else 2.0, "byte", "bytes per dispatched activation element", "FP8 dispatch" if lever else "BF16 activations")
        assumption(calc, "combine_bytes", 2.0, "byte", "bytes per combined activation element", "BF16 expert outputs")
        k = "1" if mistake == "ignore-topk" else "top_k"
        wire_bytes = "dispatch_bytes" if mistake == "ignore-combine" else "(dispatch_bytes + combine_bytes)"
        st("a2a_bytes", f"tokens * hidden * {k} * layers * (ep - 1) / ep * {wire_bytes}", _BYTES,
           "all-to-all bytes each device sends per decode step (dispatch + combine, all layers)")
        _link_bw(calc, "link_bw", ic, f"{ic.name} per-direction bandwidth per device", mistake)
        st("a2a_wire", "a2a_bytes / link_bw", _TIME, "all-to-all bandwidth time per decode step")
        if _link_latency(calc, "link_latency", ic):
            st("a2a_time", "a2a_wire + 2 * layers * link_latency", _TIME, "all-to-all time per decode step (two exchanges per layer)")
        else:
            st("a2a_time", "a2a_wire", _TIME, f"all-to-all time per decode step (specs give no latency for {ic.name}; bandwidth term only)")
        comm = "a2a_time"
        platform_figure(calc, "mem_bw", s, "memory_bandwidth")
        st("read_time", "device_weights / mem_bw", _TIME, "time to stream the resident weights once per decode step")
        st("step_time", f"read_time + {comm}", _TIME, "decode step time (weight streaming + all-to-all, not overlapped)")
        assumption(calc, "tpot_budget", 50, "ms", "time-per-output-token budget", "interactive streaming at 20 tokens/s per user")
        platform_figure(calc, "memory", s, "memory", unit="GB")
        st("devices_to_hold", "ceil(weights_total / memory)", "", "devices needed just to hold all weights")
        if mistake == "forget-shared":
            st("max_experts", "floor(memory / expert_bytes)", "", "most experts one device can hold")
        else:
            st("max_experts", "floor((memory - shared_bytes) / expert_bytes)", "", "most experts one device can hold beside the shared weights")


# =========================================================================== link transfer

_RES = re.compile(r"(\d+)\s*x\s*(\d+)")


class LinkTransfer(_Family):
    id = "link-transfer"
    tracks = frozenset({"cloud", "edge", "mobile", "tinyml"})
    workload_families = frozenset({"llm-decoder", "moe-decoder", "cnn-vision", "detector", "vision-transformer", "keyword-spotting", "anomaly-detector"})
    scale_axes = ("request_rate", "sequence", "batch")
    asks = ("payload", "wire_time", "transfer_time")
    limit = "period"
    knob = "max_payload"
    units = "links_needed"
    observable = ("wire_time", "link_bw", -1)
    recall = ("memory_bandwidth", "memory")

    _IMAGE = ("cnn-vision", "detector", "vision-transformer")
    _AUDIO = ("keyword-spotting", "anomaly-detector")

    def _kind(self, s: Setting) -> str | None:
        fam = s.wl.family
        if s.track == "cloud":
            return "kv" if fam in ("llm-decoder", "moe-decoder") and s.scale_axis != "batch" else None
        if s.scale_axis == "sequence" or (s.scale_axis == "batch" and s.track not in ("edge", "mobile")):
            return None
        if s.track in ("edge", "mobile"):
            return "camera" if fam in self._IMAGE else None
        if s.scale_axis == "batch":
            return None
        if fam in self._AUDIO:
            return "audio"
        if fam in self._IMAGE and _RES.search(s.wl.input):
            return "image"
        return None

    def accepts(self, s: Setting) -> bool:
        kind = self._kind(s)
        if kind is None:
            return False
        if kind == "kv":
            w = s.wl
            return bool(w.layers and w.kv_heads and w.head_dim and s.platform.interconnect) and 2 * w.params <= _bytes(s.platform.memory)
        return True

    def _link(self, s: Setting, kind: str) -> tuple[Interconnect, str]:
        if kind == "kv":
            own = _interconnect(s, s.platform.interconnect)
            if s.platform.kind == "tpu" or _scale_index(s) % 2 == 0:
                return own, "prefill and decode on devices of the same node" if s.platform.kind != "tpu" else "prefill and decode chips on the same ICI slice"
            ident = "ethernet-100g" if own.scope == "host-bus" else "infiniband-ndr"
            return _interconnect(s, ident), "prefill and decode on different nodes"
        if kind == "camera":
            return _interconnect(s, "mipi-csi2-4lane"), "camera to SoC"
        if s.platform.interconnect:
            return _interconnect(s, s.platform.interconnect), "raw input streamed off the device to the gateway that runs the model"
        return _interconnect(s, "spi"), "sensor to microcontroller"

    def _build(self, s: Setting, calc: Calc, st: _Steps, mistake: str | None, lever: bool) -> None:
        kind = self._kind(s)
        if kind is None:
            raise ValueError(f"link-transfer has no payload for {s.track}/{s.wl.family}")
        w = s.wl
        ic, route = self._link(s, kind)
        fixed_payload_unit = st.fixed.get("payload")
        if kind == "kv":
            workload_given(calc, "layers", s, "layers", f"{w.name} layers")
            workload_given(calc, "kv_heads", s, "kv_heads", f"{w.name} KV heads")
            workload_given(calc, "head_dim", s, "head_dim", f"{w.name} head dimension")
            assumption(calc, "elem_bytes", 1.0 if lever else 2.0, "byte", f"bytes per cached K/V element sent over {ic.name} ({route})", "INT8 KV cache" if lever else "FP16 KV cache")
            _scale_or_default(calc, s, "sequence", "sequence", 1, "prompt tokens per request", "typical prompt length")
            expr = "2 * layers * kv_heads * head_dim * elem_bytes * sequence"
            payload_label = f"KV cache of one request handed from prefill to decode over {ic.name}"
            rate_label = f"requests per second whose KV cache crosses {ic.name} ({route})"
            rate_why = "the disaggregated-serving load on this link"
        elif kind == "camera":
            if s.track == "edge":
                width, height = 3840, 2160
                why = "a 4K camera (3840 x 2160)"
                base_bytes, base_why = 2.0, "YUV 4:2:2, 16 bits per pixel"
            else:
                width, height = 4032, 3024
                why = "a 12 MP phone camera sensor read out at full resolution (4032 x 3024)"
                base_bytes, base_why = 1.25, "10-bit RAW Bayer, packed"
            assumption(calc, "width", width, "", "frame width (pixels)", why)
            assumption(calc, "height", height, "", "frame height (pixels)", why)
            assumption(calc, "elem_bytes", 1.0 if lever else base_bytes, "byte", f"bytes per pixel on the {ic.name} ({route})", "8-bit RAW readout" if lever else base_why)
            expr = "width * height * elem_bytes"
            payload_label = f"one camera frame over {ic.name}"
            rate_label = f"camera frames per second over {ic.name} ({route})"
            rate_why = "the camera's frame rate"
        elif kind == "image":
            m = _RES.search(w.input)
            width, height = int(m.group(1)), int(m.group(2))
            calc.given("width", width, "", f"{w.name} input width (pixels)", f"specs/workloads.yaml: {w.id}.input")
            calc.given("height", height, "", f"{w.name} input height (pixels)", f"specs/workloads.yaml: {w.id}.input")
            assumption(calc, "elem_bytes", 1.0 if lever else 2.0, "byte", f"bytes per pixel sent over {ic.name} ({route})", "8-bit pixels" if lever else "RGB565, 16 bits per pixel as small camera modules output")
            expr = "width * height * elem_bytes"
            payload_label = f"one camera frame for {w.name} over {ic.name}"
            rate_label = f"frames per second crossing {ic.name} ({route})"
            rate_why = "the sensing rate of the product"
        else:  # audio
            assumption(calc, "sample_rate", 16000, "Hz", "audio sample rate", "16 kHz microphone audio, as the model's features expect")
            assumption(calc, "elem_bytes", 1.0 if lever else 2.0, "byte", f"bytes per audio sample sent over {ic.name} ({route})", "8-bit mu-law companding" if lever else "16-bit PCM")
            expr = "sample_rate * elem_bytes / rate"
            payload_label = f"new audio per inference over {ic.name}"
            rate_label = f"inferences per second whose audio crosses {ic.name} ({route})"
            rate_why = "the inference rate of the product"
        if s.scale_axis == "request_rate":
            scale_given(calc, "rate", s, rate_label, "Hz")
        else:  # cameras run at the track's top frame rate; other streams at its lowest rate
            assumption(calc, "rate", axis_value(s, "request_rate", 99 if kind == "camera" else 0), "Hz", rate_label, rate_why)
        if mistake == "gib-as-gb" and fixed_payload_unit in ("kB", "MB", "GB", "TB"):
            binary = {"kB": "1024", "MB": "1024 ** 2", "GB": "1024 ** 3", "TB": "1024 ** 4"}[fixed_payload_unit]
            decimal = {"kB": "1e3", "MB": "1e6", "GB": "1e9", "TB": "1e12"}[fixed_payload_unit]
            expr = f"{expr} * {decimal} / {binary}"
        st("payload", expr, _BYTES, payload_label)
        duplex = ic.scope in ("intra-node", "inter-node", "host-bus")
        _link_bw(calc, "link_bw", ic, f"{ic.name} bandwidth" + (" per direction" if duplex else ""), mistake)
        bw = "link_bw"
        if ic.id in ("wifi-4",):
            eff = 1.0 if mistake == "phy-rate" else 0.2
            assumption(calc, "link_eff", eff, "", "sustained share of the Wi-Fi PHY rate",
                       "taken as the PHY rate" if eff == 1.0 else "an MCU TCP stack sustains a few tens of Mbit/s of the 150 Mbit/s PHY rate")
            st("eff_bw", "link_bw * link_eff", "Mbit/s", "sustained link throughput")
            bw = "eff_bw"
        st("wire_time", f"payload / {bw}", _TIME, "time to put one payload on the link")
        latency = _link_latency(calc, "link_latency", ic)
        if latency:
            st("transfer_time", "wire_time + link_latency", _TIME, "transfer time per item including link latency")
        else:
            st("transfer_time", "wire_time", _TIME, f"transfer time per item (specs give no latency for {ic.name}; bandwidth term only)")
        st("period", "1 / rate", _TIME, "time between items")
        if kind == "camera":
            _scale_or_default(calc, s, "cameras", "batch", 1, f"cameras whose streams must be carried ({ic.name} ports or aggregated virtual channels)", "the product's camera count")
            st("links_needed", f"ceil(cameras * payload * rate / {bw})", "", "camera links needed for all camera streams")
        else:
            st("links_needed", f"ceil(payload * rate / {bw})", "", "links needed to carry the stream")
        if latency:
            st("max_payload", f"{bw} * (period - link_latency)", _BYTES, "largest payload that crosses the link within one period")
        else:
            st("max_payload", f"{bw} * period", _BYTES, "largest payload that crosses the link within one period")
