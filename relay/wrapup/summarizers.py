"""Who writes the wrap-up: the OpenAI Responses API (structured output) or the offline,
extractive rules. Both behind one method, `summarize(request, usage) -> WrapUpResult`.

OpenAI: `responses.parse` with the `WrapUpNotes` pydantic model (disposition narrowed to the
operator's codes), so the SDK sends a strict JSON schema and parses the answer. A transcript
over the token budget is read in chunks (map), whose partial notes are then combined
(reduce; again in chunks if the partial notes themselves are over budget), so no line is cut
to fit. Each request gets bounded retries with backoff on 429, 5xx, timeouts, connection
errors, refusals, incomplete answers and answers that do not match the schema; an incomplete
answer (`max_output_tokens`) is retried with twice the output allowance. SDK exceptions are
translated here into a failure reason; the SDK's own retries are off, so every attempt is
counted. `usage` is filled as requests complete, so a caller that gives up at its deadline
still knows what was spent.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Protocol

import openai
import pydantic
from openai import AsyncOpenAI

from relay.wrapup.schema import (
    Usage,
    WrapUpNotes,
    WrapUpRequest,
    WrapUpResult,
    chunk_lines,
    estimate_tokens,
    extractive_wrapup,
    notes_model,
    render_line,
    render_suggestion,
    schema_tokens,
)
from sync_publisher.backoff import backoff_delay
from sync_publisher.network import describe_failure

log = logging.getLogger("relay.wrapup.schema")


class Summarizer(Protocol):
    engine: str
    model: str | None

    async def summarize(self, request: WrapUpRequest, usage: Usage) -> WrapUpResult: ...


class ExtractiveSummarizer:
    """The offline engine's wrap-up: no model, no credentials, milliseconds."""

    engine = "local"
    model: str | None = None

    async def summarize(self, request: WrapUpRequest, usage: Usage) -> WrapUpResult:
        notes = extractive_wrapup(request)
        return WrapUpResult(status="ok", notes=notes, engine=self.engine, chunks=1, lines=len(request.lines))


class AttemptFailed(Exception):
    """One request's failure, with the reason the wrap-up reports if retries run out."""

    def __init__(self, reason: str, *, retry: bool = True, bigger_output: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry = retry
        self.bigger_output = bigger_output


class OpenAISummarizer:
    engine = "openai"

    def __init__(
        self,
        client: AsyncOpenAI,
        *,
        model: str,
        instructions: str,
        token_budget: int = 12_000,
        max_output_tokens: int = 2_000,
        max_attempts: int = 3,
        request_timeout_s: float = 20.0,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 8.0,
        parallel_chunks: int = 4,
        seed: int | None = None,
    ) -> None:
        # Our own retries (counted, within the caller's deadline), not the SDK's.
        self._client = client.with_options(max_retries=0, timeout=request_timeout_s)
        self.model: str | None = model
        self._instructions = instructions
        self._budget = token_budget
        self._max_output = max_output_tokens
        self._max_attempts = max(1, max_attempts)
        self._backoff = (backoff_initial_s, backoff_max_s)
        self._parallel = asyncio.Semaphore(max(1, parallel_chunks))
        self._rng = random.Random(seed)

    def warm_up(self, codes: tuple[str, ...]) -> None:
        """Build the schema and import the SDK's Responses types now, not in the first
        burst of calls ending (a warm-up only: the SDK's helper is not public API)."""
        try:
            from openai.lib._parsing._responses import type_to_text_format_param

            type_to_text_format_param(notes_model(codes))
        except ImportError:
            pass
        schema_tokens(notes_model(codes))
        _ = self._client.responses

    async def summarize(self, request: WrapUpRequest, usage: Usage) -> WrapUpResult:
        model = notes_model(request.dispositions.names)
        codes = request.dispositions.describe()
        instructions = f"{self._instructions.strip()}\n\nDisposition codes (choose exactly one):\n{codes}"
        entries = sorted(
            [(line.at_s, render_line(line)) for line in request.lines]
            + [(s.at_s, render_suggestion(s)) for s in request.suggestions],
            key=lambda entry: entry[0],
        )
        rendered = [text for _, text in entries]
        # What one request may spend on the transcript: the budget less the instructions
        # and the schema (~1 token per 4 characters of its JSON).
        room = max(500, self._budget - estimate_tokens(instructions) - schema_tokens(model) - 200)
        chunks = chunk_lines(rendered, room)
        result = WrapUpResult(status="ok", engine=self.engine, model=self.model, lines=len(request.lines), usage=usage)
        try:
            if len(chunks) <= 1:
                transcript = "\n".join(chunks[0]) if chunks else "(nothing was said)"
                result.notes = await self._ask(model, instructions, f"Call transcript:\n{transcript}", usage)
                result.chunks = 1
                return result
            result.chunks = len(chunks)
            partials = await self._map(model, instructions, chunks, usage)
            result.notes = await self._reduce(model, instructions, partials, room, usage)
            return result
        except AttemptFailed as exc:
            return WrapUpResult.failed(
                exc.reason, engine=self.engine, model=self.model, chunks=result.chunks, lines=result.lines, usage=usage
            )

    async def _map(
        self, model: type[WrapUpNotes], instructions: str, chunks: list[list[str]], usage: Usage
    ) -> list[WrapUpNotes]:
        total = len(chunks)

        async def one(i: int, chunk: list[str]) -> WrapUpNotes:
            async with self._parallel:
                text = (
                    f"Part {i} of {total} of a long call's transcript. Write notes for this part only; "
                    f"they will be combined with the other parts' notes.\n" + "\n".join(chunk)
                )
                return await self._ask(model, instructions, text, usage)

        return list(await asyncio.gather(*(one(i, c) for i, c in enumerate(chunks, 1))))

    async def _reduce(
        self, model: type[WrapUpNotes], instructions: str, partials: list[WrapUpNotes], room: int, usage: Usage
    ) -> WrapUpNotes:
        while True:
            rendered = [f"Notes for part {i}: {p.model_dump_json()}" for i, p in enumerate(partials, 1)]
            groups = chunk_lines(rendered, room)
            if len(groups) == 1:
                text = (
                    "Notes written for consecutive parts of one call, in order. Combine them into the "
                    "notes for the whole call (sentiment start from the first part, end from the last).\n"
                    + "\n".join(groups[0])
                )
                return await self._ask(model, instructions, text, usage)
            partials = await self._map(model, instructions, groups, usage)

    async def _ask(self, model: type[WrapUpNotes], instructions: str, text: str, usage: Usage) -> WrapUpNotes:
        max_output = self._max_output
        for attempt in range(1, self._max_attempts + 1):
            try:
                return await self._attempt(model, instructions, text, max_output, usage)
            except AttemptFailed as exc:
                if not exc.retry or attempt == self._max_attempts:
                    raise
                if exc.bigger_output:
                    max_output *= 2
                usage.retries += 1
                log.info("wrap-up request retried", extra={"reason": exc.reason, "attempt": attempt})
                await asyncio.sleep(
                    backoff_delay(attempt, initial_s=self._backoff[0], max_s=self._backoff[1], rng=self._rng)
                )
        raise AssertionError("unreachable")

    async def _attempt(
        self, model: type[WrapUpNotes], instructions: str, text: str, max_output: int, usage: Usage
    ) -> WrapUpNotes:
        usage.requests += 1
        try:
            response = await self._client.responses.parse(
                model=self.model or "",
                instructions=instructions,
                input=text,
                text_format=model,  # the request's strict JSON schema
                parse_as=None,  # parsed below, after the refusal and completeness checks
                max_output_tokens=max_output,
                store=False,
            )
        except openai.RateLimitError as exc:
            raise AttemptFailed(f"rate_limited: 429 {_code(exc)}") from exc
        except openai.APITimeoutError as exc:
            raise AttemptFailed("timeout") from exc
        except openai.APIConnectionError as exc:
            raise AttemptFailed(f"unavailable: {describe_failure(exc.__cause__ or exc)}") from exc
        except openai.APIStatusError as exc:
            retry = exc.status_code >= 500 or exc.status_code == 408
            raise AttemptFailed(f"http_{exc.status_code}: {_code(exc)}", retry=retry) from exc
        if response.usage is not None:
            usage.input_tokens += response.usage.input_tokens
            usage.output_tokens += response.usage.output_tokens
            usage.cached_input_tokens += response.usage.input_tokens_details.cached_tokens
        for item in response.output:
            if item.type == "message":
                for content in item.content:
                    if content.type == "refusal":
                        raise AttemptFailed(f"refused: {content.refusal[:200]}")
        if response.status == "incomplete":
            why = response.incomplete_details.reason if response.incomplete_details else None
            raise AttemptFailed(f"incomplete: {why or 'unknown'}", bigger_output=why == "max_output_tokens")
        try:
            return model.model_validate_json(response.output_text)
        except pydantic.ValidationError as exc:
            raise AttemptFailed(f"invalid_structure: {exc.error_count()} schema errors") from exc


def _code(exc: openai.APIStatusError) -> str:
    code = getattr(exc, "code", None)
    return str(code) if code else exc.__class__.__name__
