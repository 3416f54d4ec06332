"""Latency and serving families: memory-bound decode, queueing, frame deadlines,
speculative decoding and serving cost.

Every figure comes from specs/ (platform, workload, track scale points and scale budgets,
economics) or is an explicit ``assumption`` with its reason. Phrasing lives in
``assets/item_models/<id>.yaml``.
"""

from __future__ import annotations

from staffml_dagster.generation.calc import Calc
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
from staffml_dagster.specs import Platform, Workload

# --------------------------------------------------------------------------- shared helpers

VISION_AND_ENCODERS = frozenset({"detector", "cnn-vision", "vision-transformer", "encoder-transformer"})
FRAME_FAMILIES = frozenset({"detector", "cnn-vision", "vision-transformer", "keyword-spotting", "anomaly-detector"})

# LLM weight precision before the lever (bytes per weight) and why.
DECODE_BYTES = {
    "cloud": (2.0, "FP16/BF16 weights, 2 bytes each, the unquantized serving baseline"),
    "edge": (2.0, "FP16 weights, 2 bytes each, the unquantized baseline on the module"),
    "mobile": (1.0, "INT8 weights, 1 byte each: on-device LLMs ship quantized to fit phone memory"),
}
QUANT_NAME = {2.0: "INT8", 1.0: "INT4"}

# Per-token latency SLO for interactive generation, per track.
# Each is below memory capacity / bandwidth on every platform of its track, so the SLO (not
# memory) is what bounds the batch and the design conclusion "beyond it breaks the SLO" holds.
TOKEN_SLO = {
    "cloud": (20.0, "a premium interactive tier of 20 ms per output token (50 tokens/s per user)"),
    "edge": (100.0, "an on-device assistant SLO of 100 ms per output token (10 tokens/s, above reading speed)"),
    "mobile": (80.0, "an on-device assistant SLO of 80 ms per output token (12.5 tokens/s, above reading speed)"),
}

# Output tokens per request used to turn a request rate into a token rate.
TOKENS_PER_RESPONSE = {
    "cloud": (300.0, "a typical chat answer of about 300 output tokens"),
    "edge": (64.0, "short spoken or command-style answers of about 64 output tokens"),
}

# Sustained fraction of peak compute at batch 1 (no request batching).
PEAK_FRACTION = {
    "cloud": (0.10, "batch-1 requests leave most of a datacenter GPU's tensor cores idle (small GEMMs, launch overhead); about 10% of dense peak is typical"),
    "edge": (0.10, "batch-1 inference on an embedded accelerator sustains about 10% of its dense peak (memory stalls, layers too small to fill the array)"),
    "mobile": (0.10, "batch-1 inference on a phone NPU sustains about 10% of its headline TOPS (memory stalls, ops that fall back to the CPU or GPU)"),
    "tinyml": (0.15, "CMSIS-NN kernels sustain about 15% of the SMLAD/vector peak: int8 operands are widened first and loads share the single pipeline"),
}


def dense_precision(p: Platform) -> str:
    """The dense INT8 key where the headline figure assumes 2:4 sparsity (Jetson), else the default."""
    return "int8_dense" if "int8_dense" in p.compute else p.default_precision


def sparse_precision(p: Platform) -> str | None:
    """The key of a 2:4-sparse headline figure, if the platform lists one beside the dense figure."""
    if "int8_sparse" in p.compute:
        return "int8_sparse"
    return "int8" if "int8_dense" in p.compute else None


def compute_label(p: Platform, prec: str) -> str:
    if prec == sparse_precision(p):
        what = "headline INT8 (2:4 sparse)"
    elif prec == "int8_dense" or (prec == "int8" and sparse_precision(p)):
        what = "dense INT8"
    else:
        what = prec.upper()
    return f"{p.name} peak {what} throughput"


def kv_ready(w: Workload) -> bool:
    return all(getattr(w, a) for a in ("layers", "kv_heads", "head_dim"))


def llm_resident_bytes(w: Workload, bpp: float) -> float:
    return w.params * bpp


def kv_bytes_per_token(w: Workload, kv_bytes: float = 2.0) -> float:
    return 2 * w.layers * w.kv_heads * w.head_dim * kv_bytes


def _q(fig, unit: str) -> float:
    return float(fig.q.to(unit).magnitude)


def _kv_steps(calc: Calc, s: Setting, prefix: str = "", w: Workload | None = None, where: str | None = None) -> None:
    """Layers, KV heads and head dimension of a decoder, as givens (optionally prefixed)."""
    w = w or s.wl
    src = where or f"specs/workloads.yaml: {w.id}"
    calc.given(f"{prefix}layers", float(w.layers), "", f"{w.name} layers", f"{src}.layers")
    calc.given(f"{prefix}kv_heads", float(w.kv_heads), "", f"{w.name} KV heads", f"{src}.kv_heads")
    calc.given(f"{prefix}head_dim", float(w.head_dim), "", f"{w.name} head dimension", f"{src}.head_dim")


# =========================================================================== 1. decode throughput


class DecodeThroughput(ItemModel):
    """Memory-bound LLM decode: bytes per step over memory bandwidth."""

    id = "decode-throughput"
    tracks = frozenset({"cloud", "edge", "mobile"})
    workload_families = frozenset({"llm-decoder", "moe-decoder"})
    scale_axes = ("batch", "sequence", "request_rate")
    asks = ("weight_time", "kv_time", "time_per_token")
    limit = "slo"
    knob = "max_batch"
    units = "replicas"
    observable = ("time_per_token", "bandwidth", -1)
    recall = ("memory_bandwidth", "memory")

    def _batch_seq(self, s: Setting) -> tuple[float, float]:
        return axis_value(s, "batch", 1), axis_value(s, "sequence", 1)

    def accepts(self, s: Setting) -> bool:
        p, w = s.platform, s.workload
        if w is None or not kv_ready(w) or p.kind == "accelerator" or s.track not in DECODE_BYTES:
            return False
        batch, seq = self._batch_seq(s)
        bpp = DECODE_BYTES[s.track][0]
        footprint = llm_resident_bytes(w, bpp) + kv_bytes_per_token(w) * seq * batch
        if footprint > _q(p.memory, "byte"):
            return False
        slo_bytes = _q(p.memory_bandwidth, "byte/s") * TOKEN_SLO[s.track][0] / 1000
        # the weights alone must stream within the SLO (else there is no design space), and the SLO,
        # not memory capacity, must be what bounds the batch
        if not llm_resident_bytes(w, bpp) < slo_bytes <= _q(p.memory, "byte"):
            return False
        if w.family == "moe-decoder":
            # above batch 1 the model reads every expert; with top-2 of 8 routing that holds from about
            # 8 tokens per step (1 - 0.75^8 = 90% of experts touched), so the SLO must allow batch >= 8
            slo_batch = (slo_bytes - llm_resident_bytes(w, bpp)) / (kv_bytes_per_token(w) * seq)
            return slo_batch >= 8 and (batch == 1 or batch >= 8)
        return True

    def build(self, s: Setting, calc: Calc, mistake: str | None = None, lever: bool = False) -> None:
        w, track = s.wl, s.track
        base_bpp, why = DECODE_BYTES[track]
        bpp = base_bpp / 2 if lever else base_bpp
        batch, seq = self._batch_seq(s)
        moe = w.family == "moe-decoder"

        workload_given(calc, "params", s, "params", f"{w.name} parameters (all experts)" if moe else f"{w.name} parameters")
        if lever:
            assumption(calc, "bytes_per_param", bpp, "byte", "bytes per weight", f"{QUANT_NAME[base_bpp]} weight quantization")
        else:
            assumption(calc, "bytes_per_param", bpp, "byte", "bytes per weight", why)
        calc.step("resident_bytes", "params * bytes_per_param", "GB", "weights resident in memory")
        if s.scale_axis == "batch":
            scale_given(calc, "batch", s, "concurrent sequences decoded per step")
        else:
            assumption(calc, "batch", batch, "", "concurrent sequences decoded per step", "the serving batch")
        if moe and batch == 1:
            workload_given(calc, "flops_per_token", s, "flops_per_inference", f"{w.name} FLOPs per token (active experts only)", "GFLOP")
            assumption(calc, "flop_per_param", 2.0, "FLOP", "FLOPs per active parameter per token", "one multiply-accumulate per weight = 2 FLOP")
            calc.step("weight_bytes", "flops_per_token / flop_per_param * bytes_per_param", "GB", "weights read per step (only the routed experts at batch 1)")
        elif moe:
            calc.step("weight_bytes", "resident_bytes", "GB", "weights read per step (a batch of tokens routes to nearly every expert)")
        else:
            calc.step("weight_bytes", "params * bytes_per_param", "GB", "weights read per decode step")

        _kv_steps(calc, s)
        if lever:
            assumption(calc, "kv_bytes", 1.0, "byte", "bytes per cached K/V element", "INT8/FP8 KV cache")
        else:
            assumption(calc, "kv_bytes", 2.0, "byte", "bytes per cached K/V element", "FP16 KV cache")
        calc.step("kv_per_token", "2 * layers * kv_heads * head_dim * kv_bytes", "kB", "KV cache per token (K and V, every layer)")
        if s.scale_axis == "sequence":
            scale_given(calc, "sequence", s, "context length per sequence (tokens)")
        else:
            assumption(calc, "sequence", seq, "", "context length per sequence (tokens)", "the typical context of a live request")
        if mistake == "forget-kv":
            kv_expr = "kv_per_token * sequence * batch * 0"
        elif mistake == "kv-one-sequence":
            kv_expr = "kv_per_token * sequence"
        else:
            kv_expr = "kv_per_token * sequence * batch"
        calc.step("kv_read", kv_expr, "GB", "KV cache read per step for the whole batch")

        if mistake == "bits-for-bytes":
            bw = s.platform.memory_bandwidth
            calc.given("bandwidth", bw.value / 8, bw.unit, f"{s.platform.name} memory bandwidth", f"specs/hardware.yaml: {s.platform.id}.memory_bandwidth")
        else:
            platform_figure(calc, "bandwidth", s, "memory_bandwidth")
        calc.step("bytes_per_step", "weight_bytes + kv_read", "GB", "bytes read per decode step")
        if mistake == "compute-bound":
            workload_given(calc, "flops_token", s, "flops_per_inference", f"{w.name} FLOPs per token", "GFLOP")
            platform_figure(calc, "peak_compute", s, "compute")
            calc.step("weight_time", "batch * flops_token / peak_compute", "ms", "time per step from FLOPs at peak")
            calc.step("kv_time", "kv_read / bandwidth", "ms", "time to stream the batch's KV cache")
            calc.step("time_per_token", "batch * flops_token / peak_compute", "ms", "time per step from FLOPs at peak")
        else:
            calc.step("weight_time", "weight_bytes / bandwidth", "ms", "time to stream the weights once")
            calc.step("kv_time", "kv_read / bandwidth", "ms", "time to stream the batch's KV cache")
            calc.step("time_per_token", "bytes_per_step / bandwidth", "ms", "time per decode step (one token per sequence)")
        calc.step("seq_rate", "1 / time_per_token", "token/s", "tokens per second seen by one sequence")
        agg = "1 / time_per_token" if mistake == "per-sequence-rate" else "batch / time_per_token"
        calc.step("aggregate_rate", agg, "token/s", "tokens per second across the batch")

        slo, slo_why = TOKEN_SLO[track]
        assumption(calc, "slo", slo, "ms", "per-token latency SLO", slo_why)
        platform_figure(calc, "memory", s, "memory", unit="GB")
        calc.step("kv_per_seq", "kv_per_token * sequence", "GB", "KV cache per sequence")
        if mistake == "memory-only-batch":
            calc.step("max_batch", "floor((memory - resident_bytes) / kv_per_seq)", "", "largest batch whose KV cache fits in memory")
        else:
            calc.step(
                "max_batch",
                "min(floor((slo * bandwidth - resident_bytes) / kv_per_seq), floor((memory - resident_bytes) / kv_per_seq))",
                "",
                "largest batch meeting the per-token SLO whose KV cache also fits in memory",
            )
        if track in TOKENS_PER_RESPONSE:
            rr = axis_value(s, "request_rate", 1)
            if s.scale_axis == "request_rate":
                scale_given(calc, "request_rate", s, "request rate (requests per second)", "Hz")
            else:
                assumption(calc, "request_rate", rr, "Hz", "request rate (requests per second)", "the expected peak traffic")
            n, n_why = TOKENS_PER_RESPONSE[track]
            assumption(calc, "tokens_per_response", n, "", "output tokens per response", n_why)
            calc.step("target_rate", "request_rate * tokens_per_response", "token/s", "generated tokens per second to sustain")
            calc.step("replicas", "ceil(target_rate / aggregate_rate)", "", "devices (one model replica each) to sustain the token rate")
        else:
            calc.step("replicas", "0 * batch", "", "replicas (not applicable: one phone serves one user)")


# =========================================================================== 2. queueing latency


QUEUE_PLAN_RHO = 0.7


class QueueingLatency(ItemModel):
    """M/M/1 per replica (M/M/c approximated by c independent M/M/1 queues with the load split)."""

    id = "queueing-latency"
    tracks = frozenset({"cloud", "edge", "mobile"})
    workload_families = VISION_AND_ENCODERS
    scale_axes = ("request_rate",)
    asks = ("service_time", "mean_time", "p99_time", "mean_wait")
    limit = "budget"
    knob = "max_rate"
    units = "replicas_needed"
    observable = ("service_time", "peak_fraction", -1)
    recall = ("compute",)

    def _service_s(self, s: Setting) -> float:
        p = s.platform
        peak = _q(p.compute[dense_precision(p)], "FLOP/s")
        return _q(s.wl.flops_per_inference, "FLOP") / (peak * PEAK_FRACTION[s.track][0])

    def accepts(self, s: Setting) -> bool:
        if s.workload is None or s.track not in PEAK_FRACTION:
            return False
        svc = self._service_s(s)
        budget = _q(s.specs.track_by_id[s.track].scale.latency_budget, "s")
        mu = 1 / svc
        if mu - 4.605170186 / budget <= 0:  # p99 cannot meet the budget even with no queueing
            return False
        if s.track == "mobile":
            return axis_value(s, "request_rate", 1) < mu  # one NPU must be stable
        return True

    def build(self, s: Setting, calc: Calc, mistake: str | None = None, lever: bool = False) -> None:
        p, w, track = s.platform, s.wl, s.track
        workload_given(calc, "flops", s, "flops_per_inference", f"{w.name} FLOPs per request", "GFLOP")
        prec = dense_precision(p)
        platform_figure(calc, "peak_compute", s, "compute", precision=prec, label=compute_label(p, prec))
        frac, frac_why = PEAK_FRACTION[track]
        if mistake == "peak-as-sustained":
            assumption(calc, "peak_fraction", 1.0, "", "sustained fraction of peak compute", "datasheet peak")
        elif lever:
            assumption(calc, "peak_fraction", 2 * frac, "", "sustained fraction of peak compute", "an optimized engine (fused kernels, CUDA graphs or the NPU compiler) assumed to double the batch-1 fraction of peak")
        else:
            assumption(calc, "peak_fraction", frac, "", "sustained fraction of peak compute", frac_why)
        calc.step("service_time", "flops / (peak_compute * peak_fraction)", "ms", "service time per request")
        calc.step("service_rate", "1 / service_time", "Hz", "service rate of one replica (requests per second)")
        if s.scale_axis == "request_rate":
            scale_given(calc, "request_rate", s, "arrival rate (requests per second)", "Hz")
        else:
            assumption(calc, "request_rate", axis_value(s, "request_rate", 1), "Hz", "arrival rate (requests per second)", "the expected peak traffic")
        if track == "mobile":
            assumption(calc, "replicas_deployed", 1.0, "", "replicas serving the traffic", "one NPU on the phone")
        else:
            plan = 1.0 if mistake == "full-utilization" else QUEUE_PLAN_RHO
            assumption(calc, "plan_rho", plan, "", "planned utilization per replica",
                       "replicas were provisioned to run at 70% busy, a common capacity-planning rule" if plan < 1 else "provisioned to run every replica fully busy")
            calc.step("replicas_deployed", "ceil(request_rate / (plan_rho * service_rate))", "", "replicas deployed under the capacity plan")
        calc.step("arrival_per_replica", "request_rate / replicas_deployed", "Hz", "arrival rate per replica (load split evenly)")
        calc.step("utilization", "arrival_per_replica / service_rate", "percent", "utilization of each replica (rho)")
        if mistake == "no-queueing":
            calc.step("mean_time", "service_time", "ms", "mean time in system taken as the service time")
        else:
            calc.step("mean_time", "1 / (service_rate - arrival_per_replica)", "ms", "mean time in system, W = 1 / (mu - lambda)")
        if mistake == "no-queueing":
            calc.step("mean_wait", "0 * service_time", "ms", "mean time waiting in the queue (ignored)")
        else:
            calc.step("mean_wait", "utilization * mean_time", "ms", "mean time waiting in the queue, Wq = rho x W")
        if mistake == "mean-for-p99":
            calc.step("p99_time", "mean_time", "ms", "P99 time in system taken as the mean")
        elif mistake == "no-queueing":
            calc.step("p99_time", "service_time", "ms", "P99 time in system taken as the service time")
        elif mistake == "gaussian-tail":
            calc.step("p99_time", "(1 + 2.326) * mean_time", "ms", "P99 as mean + 2.326 standard deviations")
        else:
            calc.step("p99_time", "ln(100) * mean_time", "ms", "P99 time in system, ln(100) x W for an exponential sojourn time")
        spec_figure(calc, "budget", s.specs.track_by_id[track].scale.latency_budget, "P99 latency budget",
                    f"specs/tracks.yaml: {track}.scale.latency_budget", unit="ms")
        if mistake in ("no-queueing", "full-utilization"):
            calc.step("max_rate", "service_rate", "Hz", "highest arrival rate per replica (stability only)")
        elif mistake == "mean-for-p99":
            calc.step("max_rate", "service_rate - 1 / budget", "Hz", "highest arrival rate per replica with the mean under the budget")
        elif mistake == "gaussian-tail":
            calc.step("max_rate", "service_rate - (1 + 2.326) / budget", "Hz", "highest arrival rate per replica under the budget (Gaussian tail)")
        else:
            calc.step("max_rate", "service_rate - ln(100) / budget", "Hz", "highest arrival rate per replica with P99 under the budget")
        if track == "mobile":
            calc.step("replicas_needed", "0 * max_rate / service_rate", "", "replicas (not applicable: one NPU per phone)")
        else:
            calc.step("replicas_needed", "ceil(request_rate / max_rate)", "", "replicas needed to keep P99 under the budget")


# =========================================================================== 3. frame deadline


PRE_POST = {
    "edge": ((4.0, "capture, resize and normalize of one camera frame on the CPU/VIC, about 4 ms"),
             (2.0, "decode and non-maximum suppression or top-k on the CPU, about 2 ms")),
    "mobile": ((3.0, "camera ISP hand-off, resize and normalize, about 3 ms"),
               (1.0, "decoding the outputs on the CPU, about 1 ms")),
    "tinyml": ((20.0, "feature extraction for one window on the core (MFCC, log-mel or image crop), about 20 ms"),
               (1.0, "averaging scores and thresholding on the core, about 1 ms")),
}
JITTER = {
    "edge": (1.3, "worst case about 30% above the mean from shared-DRAM contention and DVFS"),
    "mobile": (1.5, "worst case about 50% above the mean from thermal throttling and background apps"),
    "tinyml": (1.1, "a bare-metal core is nearly deterministic; interrupts add about 10% in the worst case"),
}


class FrameDeadline(ItemModel):
    """Per-frame pipeline (pre + inference + post) with a worst-case margin against 1/fps."""

    id = "frame-deadline"
    tracks = frozenset({"edge", "mobile", "tinyml"})
    workload_families = FRAME_FAMILIES
    scale_axes = ("request_rate",)
    asks = ("inference_time", "pipeline_time", "worst_case")
    limit = "frame_budget"
    knob = "max_frame_rate"
    units = None
    observable = ("inference_time", "peak_fraction", -1)
    recall = ("compute", "memory_bandwidth", "clock")

    def accepts(self, s: Setting) -> bool:
        p, w = s.platform, s.workload
        if w is None or s.track not in PRE_POST:
            return False
        if p.kind == "accelerator" and _q(p.memory, "byte") < 1e8:
            # an on-chip parameter cache must hold the INT8 weights, or every frame streams them over the host link
            return w.params * 1.0 <= _q(p.memory, "byte")
        return True

    def build(self, s: Setting, calc: Calc, mistake: str | None = None, lever: bool = False) -> None:
        p, w, track = s.platform, s.wl, s.track
        unit = "Hz"
        if s.scale_axis == "request_rate":
            scale_given(calc, "frame_rate", s, "input rate (frames or windows per second)", unit)
        else:
            assumption(calc, "frame_rate", axis_value(s, "request_rate", 1), unit, "input rate (frames or windows per second)", "the sensor's rate")
        calc.step("frame_budget", "1 / frame_rate", "ms", "time budget per frame (one period)")
        flops_unit = "MFLOP" if track == "tinyml" else "GFLOP"
        workload_given(calc, "flops", s, "flops_per_inference", f"{w.name} operations per inference", flops_unit)
        prec = dense_precision(p)
        if mistake == "sparse-headline" and sparse_precision(p):
            prec = sparse_precision(p)
        platform_figure(calc, "peak_compute", s, "compute", precision=prec, label=compute_label(p, prec))
        frac, frac_why = PEAK_FRACTION[track]
        if mistake == "peak-as-sustained":
            assumption(calc, "peak_fraction", 1.0, "", "sustained fraction of peak compute", "datasheet peak")
        else:
            assumption(calc, "peak_fraction", frac, "", "sustained fraction of peak compute", frac_why)
        calc.step("sustained", "peak_compute * peak_fraction", "GOPS" if track != "tinyml" else "MOPS", "sustained throughput")
        if mistake == "prefix-slip":
            calc.step("inference_time", "flops / sustained / 1000", "ms", "inference time per frame")
        else:
            calc.step("inference_time", "flops / sustained", "ms", "inference time per frame")
        (pre, pre_why), (post, post_why) = PRE_POST[track]
        if lever:
            assumption(calc, "pre_time", 0.0, "ms", "pre-processing time on the critical path", "pre-processing fused into the accelerator graph or the sensor front end, off the per-frame critical path")
        else:
            assumption(calc, "pre_time", pre, "ms", "capture and pre-processing time", pre_why)
        assumption(calc, "post_time", post, "ms", "post-processing time", post_why)
        if mistake == "forget-pre-post":
            calc.step("pipeline_time", "inference_time", "ms", "per-frame time (inference only)")
        else:
            calc.step("pipeline_time", "pre_time + inference_time + post_time", "ms", "mean per-frame pipeline time")
        jit, jit_why = JITTER[track]
        if mistake == "average-not-worst":
            assumption(calc, "jitter", 1.0, "", "worst-case over mean execution time", "the average run")
        else:
            assumption(calc, "jitter", jit, "", "worst-case over mean execution time", jit_why)
        calc.step("worst_case", "pipeline_time * jitter", "ms", "worst-case per-frame time")
        calc.step("max_frame_rate", "1 / worst_case", "Hz", "highest input rate whose period still covers the worst case")


# =========================================================================== 4. speculative decoding


# Drafts share the target's tokenizer (Llama 3 vocabulary of 128,256 tokens).
DRAFT_FOR = {"llama-3-70b": "llama-3-8b", "llama-3-8b": "llama-3-2-1b", "llama-3-2-3b": "llama-3-2-1b"}
SPEC_K = 4
SPEC_ALPHA = 0.7
SPEC_ALPHA_LEVER = 0.8


class SpeculativeDecoding(ItemModel):
    """Draft k tokens with a small model, verify them in one memory-bound target pass."""

    id = "speculative-decoding"
    tracks = frozenset({"cloud", "edge", "mobile"})
    workload_families = frozenset({"llm-decoder"})
    scale_axes = ("sequence",)
    asks = ("weights_time", "draft_step", "step_cost", "spec_time")
    limit = "target_step"
    knob = "max_draft_bytes"
    units = None
    observable = ("target_step", "bandwidth", -1)
    recall = ("memory_bandwidth", "memory")

    def _draft(self, s: Setting) -> Workload | None:
        if s.workload is None:
            return None
        did = DRAFT_FOR.get(s.workload.id)
        return next((w for w in s.specs.workloads.workloads if w.id == did), None)

    def accepts(self, s: Setting) -> bool:
        p, w = s.platform, s.workload
        d = self._draft(s)
        if w is None or d is None or not kv_ready(w) or not kv_ready(d) or p.kind == "accelerator" or s.track not in DECODE_BYTES:
            return False
        bpp = DECODE_BYTES[s.track][0]
        seq = axis_value(s, "sequence", 1)
        footprint = (w.params + d.params) * bpp + (kv_bytes_per_token(w) + kv_bytes_per_token(d)) * seq
        return footprint <= _q(p.memory, "byte")

    def build(self, s: Setting, calc: Calc, mistake: str | None = None, lever: bool = False) -> None:
        w, track = s.wl, s.track
        d = self._draft(s)
        if d is None:
            raise ValueError(f"no same-tokenizer draft model for {w.id} in specs/workloads.yaml")
        bpp, why = DECODE_BYTES[track]
        workload_given(calc, "params", s, "params", f"{w.name} (target) parameters")
        assumption(calc, "bytes_per_param", bpp, "byte", "bytes per target weight", why)
        calc.step("target_weights", "params * bytes_per_param", "GB", "target weights read per step")
        _kv_steps(calc, s)
        assumption(calc, "kv_bytes", 2.0, "byte", "bytes per cached K/V element", "FP16 KV cache")
        if s.scale_axis == "sequence":
            scale_given(calc, "sequence", s, "context length (tokens)")
        else:
            assumption(calc, "sequence", axis_value(s, "sequence", 1), "", "context length (tokens)", "the typical context of a live request")
        kv_zero = " * 0" if mistake == "forget-kv" else ""
        calc.step("target_kv", f"2 * layers * kv_heads * head_dim * kv_bytes * sequence{kv_zero}", "GB", "target KV cache read per step")
        platform_figure(calc, "bandwidth", s, "memory_bandwidth")
        if mistake == "flops-time":
            workload_given(calc, "flops_token", s, "flops_per_inference", f"{w.name} FLOPs per token", "GFLOP")
            platform_figure(calc, "peak_compute", s, "compute")
            calc.step("weights_time", "flops_token / peak_compute", "ms", "time per target step from FLOPs at peak")
            calc.step("target_step", "flops_token / peak_compute", "ms", "time per target step from FLOPs at peak")
        else:
            calc.step("weights_time", "target_weights / bandwidth", "ms", "time to stream the target weights once")
            calc.step("target_step", "(target_weights + target_kv) / bandwidth", "ms", "plain decode time per token (one target step)")

        dsrc = f"specs/workloads.yaml: {d.id}"
        calc.given("draft_params", d.params, "", f"{d.name} (draft) parameters", f"{dsrc}.params")
        if lever:
            assumption(calc, "draft_bytes_per_param", bpp / 2, "byte", "bytes per draft weight", "the distilled draft is quantized to half the target's bytes per weight")
        else:
            assumption(calc, "draft_bytes_per_param", bpp, "byte", "bytes per draft weight", "the draft uses the target's precision")
        calc.step("draft_weights", "draft_params * draft_bytes_per_param", "GB", "draft weights read per draft step")
        _kv_steps(calc, s, prefix="draft_", w=d, where=dsrc)
        calc.step("draft_kv", f"2 * draft_layers * draft_kv_heads * draft_head_dim * kv_bytes * sequence{kv_zero}", "GB", "draft KV cache read per draft step")
        if mistake == "flops-time":
            calc.given("draft_flops", _q(d.flops_per_inference, "GFLOP"), "GFLOP", f"{d.name} FLOPs per token", f"{dsrc}.flops_per_inference")
            calc.step("draft_step", "draft_flops / peak_compute", "ms", "time per draft step from FLOPs at peak")
        else:
            calc.step("draft_step", "(draft_weights + draft_kv) / bandwidth", "ms", "time per draft step (memory-bound)")

        assumption(calc, "k", float(SPEC_K), "", "draft tokens proposed per verification", "a common draft length")
        if lever:
            assumption(calc, "alpha", SPEC_ALPHA_LEVER, "", "per-token acceptance rate", "a draft distilled from the target accepts more often")
        else:
            assumption(calc, "alpha", SPEC_ALPHA, "", "per-token acceptance rate", "a typical rate for an off-the-shelf same-family draft on chat traffic")
        if mistake == "linear-acceptance":
            calc.step("expected_tokens", "1 + k * alpha", "", "tokens per verification, counted as if acceptances were independent")
        elif mistake == "all-accepted":
            calc.step("expected_tokens", "k + 1", "", "tokens per verification, assuming every draft token is accepted")
        else:
            calc.step("expected_tokens", "(1 - alpha ** (k + 1)) / (1 - alpha)", "", "expected tokens per verification step")
        if mistake == "ignore-draft-cost":
            calc.step("step_cost", "target_step", "ms", "time per speculation round (draft taken as free)")
        elif mistake == "verify-per-token":
            calc.step("step_cost", "(k + 1) * target_step + k * draft_step", "ms", "time per speculation round (verification as k+1 target steps)")
        else:
            calc.step("step_cost", "target_step + k * draft_step", "ms", "time per speculation round: k draft steps plus one verification pass")
        calc.step("spec_time", "step_cost / expected_tokens", "ms", "time per generated token with speculation")
        calc.step("speedup", "target_step / spec_time", "", "speedup over plain decode")
        calc.step("max_draft_bytes", "(expected_tokens - 1) * (target_weights + target_kv) / k - draft_kv", "GB",
                  "largest draft weight footprint at which speculation still breaks even")


# =========================================================================== 5. serving cost


COST_TARGET = [  # (max params, USD per 1M tokens, why)
    (2.0e10, 0.20, "the product's unit-economics target for an 8B-class model, in line with hosted-API prices of about 0.20 USD per 1M output tokens"),
    (1.0e12, 1.00, "the product's unit-economics target for a 70B-class model, in line with hosted-API prices of about 1 USD per 1M output tokens"),
]
LIFETIME_HOURS = 26280.0  # 3 years x 8760 h
COST_SEQUENCE_INDEX = 0


class ServingCost(ItemModel):
    """Cost per 1M output tokens of owned GPUs: amortized purchase price plus energy at PUE."""

    id = "serving-cost"
    tracks = frozenset({"cloud"})
    workload_families = frozenset({"llm-decoder"})
    scale_axes = ("batch", "duty_cycle", "request_rate", "sequence")
    asks = ("energy_per_mtok", "gpu_cost_per_mtok", "cost_per_mtok")
    limit = "cost_target"
    knob = "max_gpu_price"
    units = "gpus_needed"
    observable = ("gpu_cost_per_mtok", "utilization", -1)
    recall = ("memory_bandwidth", "power", "compute")

    def _batch_seq(self, s: Setting) -> tuple[float, float]:
        return axis_value(s, "batch", 2), axis_value(s, "sequence", COST_SEQUENCE_INDEX)

    def accepts(self, s: Setting) -> bool:
        p, w = s.platform, s.workload
        if w is None or not kv_ready(w) or p.unit_cost is None:
            return False
        batch, seq = self._batch_seq(s)
        return llm_resident_bytes(w, 2.0) + kv_bytes_per_token(w) * seq * batch <= _q(p.memory, "byte")

    def build(self, s: Setting, calc: Calc, mistake: str | None = None, lever: bool = False) -> None:
        p, w = s.platform, s.wl
        econ = s.specs.hardware.economics
        batch, seq = self._batch_seq(s)
        workload_given(calc, "params", s, "params", f"{w.name} parameters")
        if lever:
            assumption(calc, "bytes_per_param", 1.0, "byte", "bytes per weight", "INT8 weight-only quantization (the KV cache stays FP16)")
        else:
            assumption(calc, "bytes_per_param", 2.0, "byte", "bytes per weight", "FP16/BF16 weights, 2 bytes each")
        _kv_steps(calc, s)
        assumption(calc, "kv_bytes", 2.0, "byte", "bytes per cached K/V element", "FP16 KV cache")
        calc.step("kv_per_token", "2 * layers * kv_heads * head_dim * kv_bytes", "kB", "KV cache per token (K and V, every layer)")
        if s.scale_axis == "batch":
            scale_given(calc, "batch", s, "concurrent sequences per GPU")
        else:
            assumption(calc, "batch", batch, "", "concurrent sequences per GPU", "the serving batch")
        if s.scale_axis == "sequence":
            scale_given(calc, "sequence", s, "average context per sequence (tokens)")
        else:
            assumption(calc, "sequence", seq, "", "average context per sequence (tokens)", "a typical chat context")
        platform_figure(calc, "bandwidth", s, "memory_bandwidth")
        if mistake == "peak-throughput":
            workload_given(calc, "flops_token", s, "flops_per_inference", f"{w.name} FLOPs per token", "GFLOP")
            platform_figure(calc, "peak_compute", s, "compute")
            calc.step("throughput", "peak_compute / flops_token", "token/s", "tokens per second per GPU at peak FLOPs")
        elif mistake == "forget-kv":
            calc.step("throughput", "batch * bandwidth / (params * bytes_per_param)", "token/s", "tokens per second per GPU (weights only)")
        else:
            calc.step("throughput", "batch * bandwidth / (params * bytes_per_param + batch * kv_per_token * sequence)", "token/s",
                      "tokens per second per GPU: batch x bandwidth / (weights + batch x KV per sequence)")
        if s.scale_axis == "duty_cycle" and mistake != "ignore-utilization":
            scale_given(calc, "utilization", s, "average GPU utilization (busy share of the hours paid for)")
        else:
            u = 1.0 if mistake == "ignore-utilization" else axis_value(s, "duty_cycle", 1)
            assumption(calc, "utilization", u, "", "average GPU utilization (busy share of the hours paid for)",
                       "diurnal traffic and headroom keep the fleet busy this share of the time" if u < 1 else "the GPU taken as always busy")
        spec_figure(calc, "unit_cost", p.unit_cost, f"{p.name} purchase price", f"specs/hardware.yaml: {p.id}.unit_cost", unit="USD")
        assumption(calc, "lifetime", LIFETIME_HOURS, "s" if mistake == "hour-as-second" else "hour", "amortization period",
                   "3-year depreciation (3 x 8,760 h); GPU price only, host and network excluded")
        calc.step("capex_hour", "unit_cost / lifetime", "USD/hour", "amortized purchase price per GPU-hour")
        platform_figure(calc, "power", s, "power", unit="kW")
        if mistake == "ignore-pue":
            calc.given("pue", 1.0, "", "power usage effectiveness (PUE)", "assumption: IT power only")
        else:
            spec_figure(calc, "pue", econ["pue"], "power usage effectiveness (PUE)", "specs/hardware.yaml: economics.pue", unit="")
        spec_figure(calc, "electricity_price", econ["electricity_price"], "electricity price", "specs/hardware.yaml: economics.electricity_price", unit="USD/kWh")
        calc.step("energy_per_mtok", "power * pue * electricity_price * 1e6 / throughput", "USD", "energy cost per 1M tokens (TDP while serving, idle draw ignored)")
        calc.step("gpu_cost_per_mtok", "capex_hour * 1e6 / (throughput * utilization)", "USD", "hardware cost per 1M tokens")
        calc.step("cost_per_mtok", "gpu_cost_per_mtok + energy_per_mtok", "USD", "total cost per 1M tokens")
        target, why = next((t, y) for limit_params, t, y in COST_TARGET if w.params <= limit_params)
        assumption(calc, "cost_target", target, "USD", "cost target per 1M tokens", why)
        calc.step("max_gpu_price", "lifetime * utilization * (cost_target * throughput / 1e6 - power * pue * electricity_price)", "USD",
                  "highest GPU purchase price that still meets the cost target")
        if s.scale_axis == "request_rate":
            scale_given(calc, "request_rate", s, "request rate (requests per second)", "Hz")
        else:
            assumption(calc, "request_rate", axis_value(s, "request_rate", 1), "Hz", "request rate (requests per second)", "the expected average traffic")
        n, n_why = TOKENS_PER_RESPONSE["cloud"]
        assumption(calc, "tokens_per_response", n, "", "output tokens per response", n_why)
        calc.step("token_demand", "request_rate * tokens_per_response", "token/s", "generated tokens per second to serve")
        calc.step("gpus_needed", "ceil(token_demand / (throughput * utilization))", "", "GPUs needed at that utilization")
