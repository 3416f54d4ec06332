"""Weights + KV-cache footprint of LLM serving against accelerator memory."""

from __future__ import annotations

from staffml_dagster.generation.calc import Calc
from staffml_dagster.generation.item_model import ItemModel, Setting, assumption, platform_figure, scale_given, workload_given
from staffml_dagster.generation.item_models.common import axis_value


class LLMServingMemory(ItemModel):
    id = "llm-serving-memory"
    tracks = frozenset({"cloud", "edge", "mobile"})
    workload_families = frozenset({"llm-decoder", "moe-decoder"})
    scale_axes = ("sequence", "batch")
    asks = ("weights", "kv_per_token", "kv_per_seq", "kv_total", "total")
    limit = "memory"
    knob = "max_batch"
    units = "devices_needed"
    recall = ("memory", "memory_bandwidth")

    def accepts(self, s: Setting) -> bool:
        w = s.wl
        return all(getattr(w, a) for a in ("layers", "kv_heads", "head_dim"))

    def build(self, s: Setting, calc: Calc, mistake: str | None = None, lever: bool = False) -> None:
        w = s.wl
        bpp = 1.0 if lever else (4.0 if mistake == "fp32-weights" else 2.0)
        workload_given(calc, "params", s, "params", f"{w.name} parameters")
        assumption(calc, "bytes_per_param", bpp, "byte", "bytes per weight", "INT8 weights after quantization" if lever else "FP16/BF16 weights, 2 bytes each")
        calc.step("weights", "params * bytes_per_param", "GB", "weight memory")
        workload_given(calc, "layers", s, "layers", f"{w.name} layers")
        kv_heads_attr = "heads" if mistake == "mha-kv" else "kv_heads"
        workload_given(calc, "kv_heads", s, kv_heads_attr, f"{w.name} KV heads" if kv_heads_attr == "kv_heads" else f"{w.name} attention heads")
        workload_given(calc, "head_dim", s, "head_dim", f"{w.name} head dimension")
        assumption(calc, "kv_bytes", 2.0, "byte", "bytes per cached K/V element", "FP16 KV cache")
        factor = "1" if mistake == "k-only" else "2"
        calc.step("kv_per_token", f"{factor} * layers * kv_heads * head_dim * kv_bytes", "kB", "KV cache per token (K and V, every layer)")
        seq = axis_value(s, "sequence", 1)
        batch = axis_value(s, "batch", 1)
        if s.scale_axis == "sequence":
            scale_given(calc, "sequence", s, "context length per sequence (tokens)")
        else:
            assumption(calc, "sequence", seq, "", "context length per sequence (tokens)", "the product's context window")
        calc.step("kv_per_seq", "kv_per_token * sequence", "GB", "KV cache per sequence")
        if s.scale_axis == "batch":
            scale_given(calc, "batch", s, "concurrent sequences in the batch")
        else:
            assumption(calc, "batch", batch, "", "concurrent sequences in the batch", "the serving batch size")
        kv_expr = "kv_per_seq * batch * 0" if mistake == "forget-kv" else "kv_per_seq * batch"
        calc.step("kv_total", kv_expr, "GB", "KV cache for the whole batch")
        calc.step("total", "weights + kv_total", "GB", "weights plus KV cache")
        platform_figure(calc, "memory", s, "memory", unit="GB")
        calc.step("max_batch", "floor((memory - weights) / kv_per_seq)", "", "largest batch whose KV cache fits beside the weights")
        calc.step("devices_needed", "ceil(total / memory)", "", "accelerators needed to hold weights plus KV cache")
