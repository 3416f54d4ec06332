"""The anthropic generator: one Messages call asks Claude for several questions of one cell
(topic, track, zone, level) through the forced ``submit_questions`` tool; code checks each.

Every returned question is parsed and checked on its own (:func:`drafts.row_problems`: the
draft's schema, its workload, and the criteria of its form as validation judges them). A
question that fails is sent back alone with a focused repair prompt, up to
``max_retries_per_row`` times, and is otherwise recorded in :attr:`last_failures` (and the
run-long :attr:`failures`) with its reason: nothing is dropped silently.

Transport failures are the SDK's to retry: it retries connection errors, 408, 409, 429 and
every 5xx (529 overloaded included) ``max_api_retries`` times with exponential backoff and
jitter, honouring ``retry-after``; a middleware counts and logs each retry. Cost comes from
each response's ``usage`` and the price table in ``specs/models.yaml``; a run stops with
:class:`BudgetExceeded` before any call once ``budget_usd`` is spent. Backfills go through
the Message Batches API (:meth:`AnthropicGenerator.submit_batch`,
:meth:`~AnthropicGenerator.collect_batch`, :meth:`~AnthropicGenerator.resume_batches`);
batch results land in the same response cache, at the batch discount.

The API key is read from ``ANTHROPIC_API_KEY`` once, handed to the SDK client, and never
stored on this object, logged, hashed, cached or put into an exception message. The SDK is
imported only when a generator without a given client is built.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from staffml_dagster.generation.anthropic.cache import (
    BATCH_ID,
    BatchManifests,
    ResponseCache,
    cache_key,
    cell_from_json,
    cell_json,
    cell_key,
)
from staffml_dagster.generation.anthropic.drafts import (
    BACKEND_NAME,
    DRAFT_CHARS,
    GENERATOR_VERSION,
    TOOL,
    TOOL_HASH,
    TOOL_NAME,
    QuestionDraft,
    build_row,
    excerpt,
    extract_questions,
    row_problems,
    validation_reasons,
)
from staffml_dagster.generation.anthropic.errors import (
    AnthropicBackendError,
    BatchTimeout,
    BudgetExceeded,
    MissingAPIKey,
)
from staffml_dagster.generation.anthropic.pricing import cost_usd, load_models, usage_dict
from staffml_dagster.generation.anthropic.prompts import (
    cell_block,
    escape_data,
    prompt_hash,
    select_exemplars,
    static_block,
    titles_from_signatures,
)
from staffml_dagster.generation.backend import CellRequest, now_iso
from staffml_dagster.paths import data_dir
from staffml_dagster.specs import Specs

logger = logging.getLogger(__name__)

KEY_ENV = "ANTHROPIC_API_KEY"
MISSING_KEY_MESSAGE = (
    "ANTHROPIC_API_KEY is not set; export it or choose the offline backend (STAFFML_GENERATOR=item-models)"
)
MAX_NONSTREAMING_TOKENS = 20_000  # the SDK refuses non-streaming calls it expects to exceed 10 minutes
MAX_BATCH_REQUESTS = 100_000


@dataclass
class _Call:
    cell: CellRequest
    label: str  # sample index, or sample.repair labels
    count: int
    static: str
    user: str
    phash: str
    key: str


@dataclass
class _Reply:
    message: dict | None
    cost: float
    cached: bool
    problem: str | None = None


class AnthropicGenerator:
    """GeneratorBackend writing questions with Claude (see the module docstring)."""

    name = BACKEND_NAME
    version = GENERATOR_VERSION

    def __init__(
        self,
        client: Any = None,
        *,
        model: str | None = None,
        cache_dir: Path | str | None = None,
        budget_usd: float = 5.0,
        max_retries_per_row: int = 2,
        max_api_retries: int = 4,
        questions_per_call: int = 4,
        extra_rounds: int = 1,
        max_exemplars: int = 3,
        exemplars: list[dict] | None = None,
        max_tokens_per_question: int = 3000,
        models_path: Path | str | None = None,
        http_client: Any = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.prices = load_models(models_path)
        self.model = model or self.prices.default_model
        self.price = self.prices.price(self.model)  # unknown model: SpecError naming models.yaml before any call
        self.max_api_retries = int(max_api_retries)
        self.stats: Counter = Counter()
        if client is None:
            key = os.environ.get(KEY_ENV, "").strip()
            if not key:
                raise MissingAPIKey(MISSING_KEY_MESSAGE)
            import anthropic  # the SDK takes seconds to import: only when Claude is asked

            client = anthropic.Anthropic(
                api_key=key, max_retries=self.max_api_retries, http_client=http_client, middleware=[self._count_retry]
            )
            del key
        elif hasattr(client, "with_options"):
            client = client.with_options(
                max_retries=self.max_api_retries, middleware=[*client.middleware, self._count_retry]
            )
        self.client = client
        self.cache_dir = Path(cache_dir) if cache_dir else data_dir() / "cache" / "anthropic"
        self.cache = ResponseCache(self.cache_dir)
        self.manifests = BatchManifests(self.cache_dir / "batches")
        self.budget_usd = float(budget_usd)
        self.max_retries_per_row = int(max_retries_per_row)
        self.questions_per_call = max(1, int(questions_per_call))
        self.extra_rounds = max(0, int(extra_rounds))
        self.max_exemplars = int(max_exemplars)
        self.exemplars = list(exemplars or [])
        self.max_tokens_per_question = int(max_tokens_per_question)
        self.sleep = sleep  # between polls of a batch
        self.clock = clock
        self.spent_usd = 0.0
        self.last_failures: list[dict] = []
        self.failures: list[dict] = []

    def __repr__(self) -> str:
        return (
            f"AnthropicGenerator(model={self.model!r}, cache_dir={str(self.cache_dir)!r}, "
            f"budget_usd={self.budget_usd}, spent_usd={self.spent_usd:.4f})"
        )

    # ------------------------------------------------------------------ public API

    def generate(
        self, specs: Specs, cell: CellRequest, *, exemplars: list[dict] | None = None, avoid_titles: Iterable[str] = ()
    ) -> list[dict]:
        """Rows for one cell, at most ``cell.target``; failures go to :attr:`last_failures`."""
        self.last_failures = []
        return self._generate(specs, cell, self._exemplars_for(cell, exemplars), list(avoid_titles))

    def submit_batch(
        self, specs: Specs, cells: list[CellRequest], *, exemplars: list[dict] | None = None
    ) -> str | None:
        """Submit the first-round calls of ``cells`` that are not cached yet as one Message
        Batch; persist its id and custom_id -> cell mapping. Returns the batch id, or None
        when every call is already cached (then :meth:`generate` needs no API call)."""
        requests, mapping, cells_meta = [], {}, {}
        for cell in cells:
            chosen = self._exemplars_for(cell, exemplars)
            avoid = titles_from_signatures(cell.accepted_signatures)
            static = static_block(specs, cell.track)
            cells_meta[cell_key(cell)] = {"cell": cell_json(cell), "exemplars": chosen}
            for sample, count in enumerate(self._plan(cell.target)):
                call = self._first_call(specs, cell, static, count, sample, avoid, chosen)
                if self.cache.get(call.key) is not None:
                    continue
                custom_id = f"q{len(requests):05d}-{call.key[:16]}"
                requests.append({"custom_id": custom_id, "params": self._params(call)})
                mapping[custom_id] = {
                    "cell": cell_key(cell),
                    "sample": call.label,
                    "count": count,
                    "cache_key": call.key,
                    "prompt_hash": call.phash,
                }
        if not requests:
            logger.info(
                "anthropic batch: every first-round call of %d cell(s) is cached; nothing to submit", len(cells)
            )
            return None
        if len(requests) > MAX_BATCH_REQUESTS:
            raise ValueError(
                f"{len(requests)} requests exceed the Message Batches limit of {MAX_BATCH_REQUESTS}; submit fewer "
                "cells per batch"
            )
        self._check_budget()
        batch = self.client.messages.batches.create(requests=requests)
        self.stats["batches_submitted"] += 1
        if not BATCH_ID.match(str(batch.id)):
            raise AnthropicBackendError(f"unexpected batch id format {str(batch.id)[:40]!r}")
        manifest = {
            "batch_id": batch.id,
            "model": self.model,
            "generator_version": self.version,
            "spec_version": specs.version,
            "created_at": now_iso(),
            "processing_status": batch.processing_status,
            "results_cached": False,
            "collected": False,
            "cells": cells_meta,
            "requests": mapping,
            "batch_failures": [],
        }
        self.manifests.save(manifest)
        logger.info("anthropic batch %s submitted: %d request(s) for %d cell(s)", batch.id, len(requests), len(cells))
        return batch.id

    def collect_batch(
        self,
        specs: Specs,
        batch_id: str,
        *,
        poll_interval: float = 60.0,
        timeout: float = 24 * 3600.0,
        allow_calls: bool = True,
    ) -> dict[str, list[dict]]:
        """Poll until the batch has ended, move its replies into the response cache (cost at
        the batch discount), then build each cell's rows from the cache. Repairs and
        top-ups are synchronous calls unless ``allow_calls`` is False. Returns
        ``{"topic|track|zone|level": rows}``; failures of every cell are in :attr:`last_failures`."""
        manifest = self.manifests.load(batch_id)
        if manifest.get("model") != self.model:
            raise AnthropicBackendError(
                f"batch {batch_id} was submitted for model {manifest.get('model')!r}; this generator uses "
                f"{self.model!r}"
            )
        deadline = self.clock() + timeout
        while True:
            batch = self.client.messages.batches.retrieve(batch_id)
            if batch.processing_status == "ended":
                break
            if self.clock() >= deadline:
                raise BatchTimeout(
                    f"batch {batch_id} is still {batch.processing_status} after {timeout:g} s; call collect_batch "
                    f"again later (the id is persisted under {self.manifests.dir})"
                )
            logger.info("anthropic batch %s: %s, next poll in %g s", batch_id, batch.processing_status, poll_interval)
            self.sleep(poll_interval)
        if not manifest.get("results_cached"):
            manifest["batch_failures"] = self._cache_batch_results(batch_id, manifest)
            manifest["results_cached"] = True
            manifest["processing_status"] = "ended"
            self.manifests.save(manifest)
        self.last_failures = [dict(f) for f in manifest.get("batch_failures", [])]
        self.failures.extend(self.last_failures)
        out: dict[str, list[dict]] = {}
        for key, meta in manifest["cells"].items():
            cell = cell_from_json(meta["cell"])
            out[key] = self._generate(specs, cell, list(meta.get("exemplars", [])), [], allow_calls=allow_calls)
        manifest["collected"] = True
        manifest["collected_at"] = now_iso()
        self.manifests.save(manifest)
        return out

    def resume_batches(self) -> list[str]:
        """Ids of persisted batches not collected yet, oldest first (resume without resubmitting)."""
        return self.manifests.pending()

    def run_summary(self) -> dict:
        """Numbers for Dagster metadata: spend, calls, cache hits, retries, tokens, failures."""
        return {
            "model": self.model,
            "spent_usd": round(self.spent_usd, 6),
            "budget_usd": self.budget_usd,
            **{
                k: int(self.stats.get(k, 0))
                for k in (
                    "api_calls",
                    "cache_hits",
                    "retries",
                    "repairs",
                    "batches_submitted",
                    "input_tokens",
                    "output_tokens",
                    "cache_creation_input_tokens",
                    "cache_read_input_tokens",
                )
            },
            "failures": len(self.failures),
            "exemplars": [
                {"id": str(ex.get("id")), "reviewed_by": ex.get("reviewed_by") or "not reviewed"}
                for ex in self.exemplars
            ],
        }

    # ------------------------------------------------------------------ planning and prompts

    @property
    def batches_dir(self) -> Path:
        return self.manifests.dir

    def _plan(self, target: int) -> list[int]:
        n = self.questions_per_call
        return [min(n, target - i) for i in range(0, max(0, target), n)]

    def _exemplars_for(self, cell: CellRequest, exemplars: list[dict] | None) -> list[dict]:
        return select_exemplars(self.exemplars if exemplars is None else exemplars, cell, self.max_exemplars)

    def _first_call(
        self,
        specs: Specs,
        cell: CellRequest,
        static: str,
        count: int,
        sample: int,
        avoid: list[str],
        exemplars: list[dict],
    ) -> _Call:
        user = cell_block(specs, cell, count, sample, avoid, exemplars)
        phash = prompt_hash(self.model, static, user)
        label = f"{cell.seed}.{sample}"  # the seed picks a fresh set of samples for the same prompts
        return _Call(cell, label, count, static, user, phash, cache_key(self.model, phash, label))

    def _repair_call(self, call: _Call, note: str, label: str, count: int) -> _Call:
        user = f"{call.user}\n\n# Repair\n\n{note}"
        phash = prompt_hash(self.model, call.static, user)
        return _Call(call.cell, label, count, call.static, user, phash, cache_key(self.model, phash, label))

    def _params(self, call: _Call) -> dict:
        params: dict[str, Any] = {
            "model": self.model,
            "max_tokens": min(MAX_NONSTREAMING_TOKENS, 1000 + self.max_tokens_per_question * call.count),
            "system": [{"type": "text", "text": call.static, "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": call.user}]}],
            "tools": [TOOL],
            "tool_choice": {"type": "tool", "name": TOOL_NAME} if self.price.forced_tool_choice else {"type": "auto"},
        }
        if self.price.thinking == "disabled":
            params["thinking"] = {"type": "disabled"}
        return params

    # ------------------------------------------------------------------ one cell

    def _generate(
        self,
        specs: Specs,
        cell: CellRequest,
        exemplars: list[dict],
        avoid_titles: list[str],
        *,
        allow_calls: bool = True,
    ) -> list[dict]:
        for attr, ids in (
            ("topic", specs.topic_by_id),
            ("zone", specs.zone_by_id),
            ("level", specs.level_by_id),
            ("track", specs.track_by_id),
        ):
            if getattr(cell, attr) not in ids:
                raise KeyError(f"unknown {attr} {getattr(cell, attr)!r} in cell {cell_key(cell)}")
        if cell.level not in specs.zone_by_id[cell.zone].levels:  # a property of the cell no draft can repair
            raise ValueError(
                f"cell {cell_key(cell)}: zone {cell.zone} fits levels {'/'.join(specs.zone_by_id[cell.zone].levels)}, "
                f"not {cell.level} (specs/zones.yaml)"
            )
        static = static_block(specs, cell.track)
        avoid = list(dict.fromkeys([*avoid_titles, *titles_from_signatures(cell.accepted_signatures)]))
        seen = set(cell.accepted_signatures)
        rows: list[dict] = []
        plan = self._plan(cell.target)
        for sample in range(len(plan) + self.extra_rounds):
            if len(rows) >= cell.target:
                break
            if sample < len(plan):  # first round: same prompts as a batch submission would send
                call = self._first_call(specs, cell, static, plan[sample], sample, avoid, exemplars)
            else:  # top-up: ask for what is missing, avoiding what this run accepted too
                taken = avoid + [r["title"] for r in rows]
                call = self._first_call(
                    specs, cell, static, min(self.questions_per_call, cell.target - len(rows)), sample, taken, exemplars
                )
            rows.extend(self._harvest(specs, cell, call, seen, allow_calls)[: cell.target - len(rows)])
        return rows

    def _harvest(self, specs: Specs, cell: CellRequest, call: _Call, seen: set[str], allow_calls: bool) -> list[dict]:
        """Parse one reply into accepted rows, repairing each failing question on its own."""
        reply = self._fetch(call, allow_calls)
        items, problem = (None, reply.problem) if reply.message is None else extract_questions(reply.message)
        attempt = 0
        while items is None and attempt < self.max_retries_per_row and reply.message is not None:
            attempt += 1
            note = (
                f"Your previous reply to this request could not be read: {problem}. Call `{TOOL_NAME}` once, "
                f"with an object whose `questions` list holds exactly {call.count} question object(s)."
            )
            repair = self._repair_call(call, note, f"{call.label}.whole.{attempt}", call.count)
            reply = self._fetch(repair, allow_calls, repair=True)
            items, problem = (None, reply.problem) if reply.message is None else extract_questions(reply.message)
        if items is None:
            self._fail(cell, call.label, None, [problem or "no reply"], reply.message)
            return []
        if len(items) < call.count:
            self._fail(
                cell,
                call.label,
                None,
                [f"the reply holds {len(items)} of the {call.count} requested question(s)"],
                None,
            )
        elif len(items) > call.count:
            self._fail(
                cell,
                call.label,
                None,
                [
                    f"the reply holds {len(items)} questions but {call.count} were requested; the extra ones are not "
                    "used"
                ],
                items[call.count :],
            )
            items = items[: call.count]
        share = reply.cost / max(1, len(items))
        rows = []
        for index, raw in enumerate(items):
            row, reasons = self._accept(specs, cell, call, raw, seen, share)
            attempt = 0
            while reasons and attempt < self.max_retries_per_row:
                attempt += 1
                note = (
                    "One question of your previous reply failed the checks:\n"
                    + "\n".join(f"- {r}" for r in reasons)
                    + f"\n\nIts draft, as data:\n<draft>\n{escape_data(excerpt(raw, None)[:DRAFT_CHARS])}\n</draft>\n\n"
                    f"This replaces the count above: call `{TOOL_NAME}` with exactly 1 question — the same idea, "
                    "corrected so that every check passes "
                    "(or a new question for this cell if the idea cannot be fixed)."
                )
                repair = self._repair_call(call, note, f"{call.label}.q{index}.{attempt}", 1)
                fixed = self._fetch(repair, allow_calls, repair=True)
                share += fixed.cost
                if fixed.message is None:
                    reasons = [fixed.problem or "no reply"]
                    break
                new_items, problem = extract_questions(fixed.message)
                if new_items is None:
                    reasons, raw = [problem], fixed.message
                    continue
                raw = new_items[0]
                row, reasons = self._accept(specs, cell, call, raw, seen, share)
            if reasons:
                self._fail(cell, call.label, index, reasons, raw)
                continue
            seen.add(row["signature"])
            rows.append(row)
        return rows

    def _accept(
        self, specs: Specs, cell: CellRequest, call: _Call, raw: object, seen: set[str], cost: float
    ) -> tuple[dict | None, list[str]]:
        try:
            draft = QuestionDraft.model_validate(raw)
        except ValidationError as exc:
            return None, validation_reasons(exc)
        row = build_row(specs, cell, draft, model=self.model, phash=call.phash, cost=cost)
        reasons = row_problems(specs, cell, draft, row)
        if row["signature"] in seen:
            reasons.append(
                "it repeats an accepted question of this cell (same platforms, workload, scale point and title); write "
                "a different one"
            )
        return row, reasons

    def _fail(self, cell: CellRequest, sample: str, index: int | None, reasons: list[str], raw: object) -> None:
        failure = {
            "cell": cell_key(cell),
            "sample": sample,
            "index": index,
            "reason": "; ".join(reasons),
            "raw": excerpt(raw) if raw is not None else "",
        }
        logger.warning(
            "anthropic: question rejected in %s (call %s%s): %s",
            failure["cell"],
            sample,
            "" if index is None else f", #{index}",
            failure["reason"][:300],
        )
        self.last_failures.append(failure)
        self.failures.append(failure)

    # ------------------------------------------------------------------ calls, cache, cost, retries

    def _fetch(self, call: _Call, allow_calls: bool = True, repair: bool = False) -> _Reply:
        entry = self.cache.get(call.key)
        if entry is not None:
            self.stats["cache_hits"] += 1
            return _Reply(entry["message"], float(entry.get("cost_usd", 0.0)), True)
        if not allow_calls:
            return _Reply(
                None,
                0.0,
                False,
                f"no cached reply for call {call.label} and API calls are disabled (the batch request did not succeed)",
            )
        self._check_budget()
        params = self._params(call)
        response = self.client.messages.create(**params)
        message = response.model_dump(mode="json") if hasattr(response, "model_dump") else dict(response)
        cost = self._account(message.get("usage"), batch=False)
        self.stats["repairs" if repair else "first_calls"] += 1
        self.cache.put(call.key, self._entry(call, message, cost, batch_id=None))
        logger.info(
            "anthropic %s call %s: $%.4f (run total $%.4f of $%.2f)",
            cell_key(call.cell),
            call.label,
            cost,
            self.spent_usd,
            self.budget_usd,
        )
        return _Reply(message, cost, False)

    def cached_call(
        self, key: str, params: dict, meta: Mapping, what: str, stat: str = "other_calls"
    ) -> tuple[dict, float, bool]:
        """One Messages call through this backend's response cache, budget and client, for
        callers other than the generator (the judge): the cached reply when ``key`` is cached;
        otherwise :class:`BudgetExceeded` once the budget is spent, or a call that is accounted
        and cached. ``meta`` names it in the cache entry (cell, sample, prompt_hash, tool_hash).
        Returns (message, cost in USD, served from the cache)."""
        entry = self.cache.get(key)
        if entry is not None:
            self.stats["cache_hits"] += 1
            return entry["message"], float(entry.get("cost_usd", 0.0)), True
        self._check_budget()
        response = self.client.messages.create(**params)
        message = response.model_dump(mode="json") if hasattr(response, "model_dump") else dict(response)
        cost = self._account(message.get("usage"), batch=False)
        self.stats[stat] += 1
        self.cache.put(key, self._entry(meta, message, cost, batch_id=None))
        logger.info("anthropic %s: $%.4f (run total $%.4f of $%.2f)", what, cost, self.spent_usd, self.budget_usd)
        return message, cost, False

    def _entry(self, call_or_meta: _Call | Mapping, message: dict, cost: float, batch_id: str | None) -> dict:
        tool_hash = TOOL_HASH
        if isinstance(call_or_meta, _Call):
            cell, sample, phash = cell_key(call_or_meta.cell), call_or_meta.label, call_or_meta.phash
        else:
            cell, sample, phash = call_or_meta["cell"], call_or_meta["sample"], call_or_meta["prompt_hash"]
            tool_hash = call_or_meta.get("tool_hash", TOOL_HASH)
        return {
            "model": self.model,
            "prompt_hash": phash,
            "sample": sample,
            "cell": cell,
            "tool_hash": tool_hash,
            "generator_version": self.version,
            "batch_id": batch_id,
            "cost_usd": cost,
            "usage": usage_dict(message.get("usage")),
            "created_at": now_iso(),
            "message": message,
        }

    def _account(self, usage: Any, *, batch: bool) -> float:
        cost = cost_usd(self.price, usage, self.prices.per_tokens, self.prices.batch_discount if batch else 1.0)
        self.spent_usd += cost
        self.stats["api_calls" if not batch else "batch_results"] += 1
        for k, v in usage_dict(usage).items():
            self.stats[k] += v
        return cost

    def _check_budget(self) -> None:
        if self.spent_usd >= self.budget_usd:
            raise BudgetExceeded(
                f"budget of ${self.budget_usd:.2f} reached after ${self.spent_usd:.4f}; raise the budget or resume "
                f"later (replies so far are cached under {self.cache_dir})"
            )

    def _count_retry(self, request: Any, call_next: Callable[[Any], Any]) -> Any:
        """SDK middleware, run once per HTTP attempt: counts and logs the SDK's retries (the
        request's method and path only, never its headers)."""
        if request.retries_taken:
            self.stats["retries"] += 1
            logger.warning(
                "anthropic %s %s: retry %d/%d (the SDK backs off with jitter, honouring retry-after)",
                request.method.upper(),
                request.url,
                request.retries_taken,
                self.max_api_retries,
            )
        return call_next(request)

    def _cache_batch_results(self, batch_id: str, manifest: dict) -> list[dict]:
        failures = []
        results = list(self.client.messages.batches.results(batch_id))
        for item in results:
            meta = manifest["requests"].get(item.custom_id)
            if meta is None:
                logger.warning("anthropic batch %s: result for unknown custom_id %s ignored", batch_id, item.custom_id)
                continue
            result = item.result
            if result.type == "succeeded":
                message = result.message.model_dump(mode="json")
                cost = self._account(message.get("usage"), batch=True)  # billed either way
                if self.cache.get(meta["cache_key"]) is None:
                    self.cache.put(meta["cache_key"], self._entry(meta, message, cost, batch_id))
                else:  # a synchronous run answered this call meanwhile: keep the rows it produced
                    logger.info("anthropic batch %s: %s already cached; batch reply not used", batch_id, item.custom_id)
                continue
            detail = ""
            if result.type == "errored":
                err = getattr(getattr(result, "error", None), "error", None)
                detail = f": {getattr(err, 'type', '')} {getattr(err, 'message', '')}".rstrip()
            failures.append(
                {
                    "cell": meta["cell"],
                    "sample": meta["sample"],
                    "index": None,
                    "reason": f"batch request {result.type}{detail}",
                    "raw": "",
                }
            )
        logger.info(
            "anthropic batch %s: %d result(s) cached, %d failed; run total $%.4f",
            batch_id,
            len(results) - len(failures),
            len(failures),
            self.spent_usd,
        )
        return failures


def backend_from_env(**kw: Any) -> AnthropicGenerator:
    """The backend configured from the environment: ANTHROPIC_API_KEY (required),
    STAFFML_ANTHROPIC_MODEL, STAFFML_ANTHROPIC_BUDGET_USD, STAFFML_ANTHROPIC_CACHE_DIR.
    Keyword arguments win over the environment."""
    env = os.environ
    if "model" not in kw and env.get("STAFFML_ANTHROPIC_MODEL"):
        kw["model"] = env["STAFFML_ANTHROPIC_MODEL"]
    if "budget_usd" not in kw and env.get("STAFFML_ANTHROPIC_BUDGET_USD"):
        try:
            kw["budget_usd"] = float(env["STAFFML_ANTHROPIC_BUDGET_USD"])
        except ValueError:
            raise ValueError(
                f"STAFFML_ANTHROPIC_BUDGET_USD must be a number of USD, got {env['STAFFML_ANTHROPIC_BUDGET_USD']!r}"
            ) from None
    if "cache_dir" not in kw and env.get("STAFFML_ANTHROPIC_CACHE_DIR"):
        kw["cache_dir"] = env["STAFFML_ANTHROPIC_CACHE_DIR"]
    return AnthropicGenerator(**kw)
