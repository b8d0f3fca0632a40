"""The HTTP side: OpenAI-compatible `POST /v1/chat/completions` (JSON, or server-sent events with
`"stream": true`) and `GET /v1/models`, plus `GET /metrics` (the batcher's counters, what is loaded) and
`GET /health`.

`model` is "accrete-production" (the default: whatever production is when the request arrives) or "v<N>"
(a named version, for someone allowed to see it). Every answer says which version produced it: the `model`
field ("v<N>") and the `X-Accrete-Version` header. Callers authenticate with an API token (`Bearer acc_…`);
the platform itself (the playground's task) calls with ACCRETE_INFERENCE_KEY and may use any version.

The event loop never touches the database or the model: database work runs in one thread of its own (with
a connection opened and closed around each call, as Django does around a request), loading a version in
another, decoding in the batcher's.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import json
import logging
import re
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from django.conf import settings
from django.db import close_old_connections, connections
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from registry.models import ModelVersion
from registry.selectors import production_version, versions_visible_to
from tokens.services import token_authenticate
from workers.serving.batching import Batcher, Completion, Finished
from workers.serving.versions import ProductionWatcher, ServedVersions, load_version

log = logging.getLogger(__name__)
PRODUCTION = "accrete-production"
NAMED = re.compile(r"v(\d{1,9})")
PLATFORM = object()  # the principal of a request made with ACCRETE_INFERENCE_KEY


class ServingError(Exception):
    """Answered in OpenAI's error shape: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status: int, message: str, code: str, *, param: str | None = None,
                 type_: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.code, self.param, self.type = status, message, code, param, type_

    def response(self) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        body = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers=headers)


@dataclass
class ChatRequest:
    model: str
    messages: list[dict]
    max_tokens: int
    temperature: float
    top_p: float
    seed: int | None
    stream: bool
    include_usage: bool

    @classmethod
    def parse(cls, body: object) -> ChatRequest:
        """The request body, checked; a ServingError (400) names the parameter and what it accepts."""
        def bad(param: str, message: str, code: str = "invalid_value") -> ServingError:
            return ServingError(400, message, code, param=param)

        if not isinstance(body, dict):
            raise bad("", "the request body must be a JSON object")
        for param in ("stop", "tools", "functions", "logprobs", "response_format"):
            if body.get(param) not in (None, False, [], {"type": "text"}):
                raise bad(param, f"'{param}' is not supported by this server; remove it", "unsupported_parameter")
        if body.get("n", 1) != 1:
            raise bad("n", "only n=1 is supported", "unsupported_parameter")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise bad("messages", "'messages' must be a non-empty list of {role, content}")
        plain = []
        for i, message in enumerate(messages):
            message = message if isinstance(message, dict) else {}
            content = message.get("content")
            if isinstance(content, list):  # content parts: only text ones
                if not all(isinstance(p, dict) and p.get("type") == "text" for p in content):
                    raise bad(f"messages[{i}].content", "only text content parts are supported")
                content = "".join(str(p.get("text", "")) for p in content)
            if message.get("role") not in {"system", "user", "assistant"} or not isinstance(content, str):
                raise bad(f"messages[{i}]", "each message needs a role (system, user or assistant) and a text content")
            plain.append({"role": message["role"], "content": content})
        limit = settings.ACCRETE_SERVE_MAX_NEW_TOKENS
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        max_tokens = limit if max_tokens is None else max_tokens
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or not 1 <= max_tokens <= limit:
            raise bad("max_tokens", f"max_tokens must be an integer from 1 to {limit} (ACCRETE_SERVE_MAX_NEW_TOKENS)")
        temperature = body.get("temperature") if body.get("temperature") is not None else 0.0
        top_p = body.get("top_p") if body.get("top_p") is not None else 1.0
        if not _number(temperature) or not 0 <= temperature <= 2:
            raise bad("temperature", "temperature must be a number from 0 to 2 (0: greedy)")
        if not _number(top_p) or not 0 < top_p <= 1:
            raise bad("top_p", "top_p must be a number above 0 and at most 1")
        seed = body.get("seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63):
            raise bad("seed", "seed must be an integer from 0 to 2**63-1")
        model = body.get("model") or PRODUCTION
        if not isinstance(model, str):
            raise bad("model", f"model must be '{PRODUCTION}' or 'v<N>'")
        options = body.get("stream_options") or {}
        return cls(model=model, messages=plain, max_tokens=max_tokens, temperature=float(temperature),
                   top_p=float(top_p), seed=seed, stream=bool(body.get("stream")),
                   include_usage=isinstance(options, dict) and bool(options.get("include_usage")))


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _in_db(fn, *args):
    # As Django does around a request: a connection past CONN_MAX_AGE or broken (a restarted database) is
    # closed, so the next call opens a fresh one.
    close_old_connections()
    try:
        return fn(*args)
    finally:
        close_old_connections()


def authenticate(raw: str):
    """The principal of a request: the token's user, or PLATFORM for the platform's own key; else 401."""
    key = settings.ACCRETE_INFERENCE_KEY
    if key and hmac.compare_digest(raw.encode(), key.encode()):
        return PLATFORM
    token = token_authenticate(raw)
    if token is None:
        raise ServingError(401, "Incorrect or expired API token: pass 'Authorization: Bearer acc_…' with an active "
                                "token (make one under API tokens).", "invalid_api_key")
    return token.user


def visible_versions(principal):
    if principal is PLATFORM:
        return ModelVersion.objects.select_related("skill__team")
    return versions_visible_to(principal)


def resolve(principal, model: str) -> ModelVersion | None:
    """The version `model` names, if `principal` may use it: None means production."""
    visible = visible_versions(principal)
    if model == PRODUCTION:
        if not visible.filter(status=ModelVersion.Status.PRODUCTION).exists():
            if production_version() is None:
                raise ServingError(503, "There is no production version yet.", "no_production_version",
                                   type_="server_error")
            raise ServingError(403, "You are in no team: the shared model is served to team members.",
                               "model_not_permitted")
        return None
    match = NAMED.fullmatch(model)
    version = visible.filter(number=int(match.group(1))).first() if match else None
    if version is None:
        raise ServingError(404, f"The model '{model}' does not exist or you do not have access to it; use "
                                f"'{PRODUCTION}' or a version you can see (GET /v1/models).", "model_not_found",
                           param="model")
    return version


def models_listed(principal) -> list[dict]:
    visible = visible_versions(principal).order_by("-number")
    production = next((v for v in visible if v.status == ModelVersion.Status.PRODUCTION), None)
    rows = [{"id": PRODUCTION, "object": "model", "created": int(production.promoted_at.timestamp()),
             "owned_by": "accrete", "version": production.number}] if production and production.promoted_at else []
    return rows + [{"id": f"v{v.number}", "object": "model", "created": int(v.created_at.timestamp()),
                    "owned_by": v.skill.team.slug if v.skill_id else "accrete", "status": v.status}
                   for v in visible]


class Service:
    """The batcher, the versions held, the production watcher and the threads the event loop hands work to."""

    def __init__(self, *, max_batch: int, wait_s: float, poll_s: float, keep: int = 3, load=load_version):
        self.batcher = Batcher(max_batch=max_batch, wait_s=wait_s)
        self.versions = ServedVersions(keep=keep, load=load)
        self.watcher = ProductionWatcher(self.versions, poll_s)
        self.db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="db")
        self.loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="loader")

    @classmethod
    def from_settings(cls) -> Service:
        return cls(max_batch=settings.ACCRETE_SERVE_MAX_BATCH, wait_s=settings.ACCRETE_SERVE_BATCH_WAIT_MS / 1000,
                   poll_s=settings.ACCRETE_SERVE_POLL_S)

    def start(self) -> None:
        """Warm: the production version is loaded before the first request is accepted."""
        try:
            self.db.submit(_in_db, self.watcher.check).result()
        except Exception:
            log.exception("could not load the production version at start; the watcher retries")
        if self.versions.production is None:
            log.warning("no production version is loaded: requests for it get 503 until the watcher loads one")
        self.batcher.start()
        self.watcher.start()

    def stop(self) -> None:
        self.watcher.stop()
        self.batcher.stop()
        for executor in (self.db, self.loader):
            executor.submit(connections.close_all).result()  # its thread's connection, kept for CONN_MAX_AGE
            executor.shutdown()

    async def in_db(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.db, functools.partial(_in_db, fn, *args))


def bearer(request: Request) -> str:
    scheme, _, raw = request.headers.get("authorization", "").partition(" ")
    return raw.strip() if scheme.lower() == "bearer" else ""


def create_app(service: Service) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app):
        await asyncio.get_running_loop().run_in_executor(None, service.start)
        yield
        await asyncio.get_running_loop().run_in_executor(None, service.stop)

    async def chat_completions(request: Request):
        try:
            principal = await service.in_db(authenticate, bearer(request))
            try:
                body = json.loads(await request.body())
            except ValueError:
                raise ServingError(400, "the request body is not valid JSON", "invalid_json") from None
            chat = ChatRequest.parse(body)
            version = await service.in_db(resolve, principal, chat.model)
            loaded = await acquire(version)
        except ServingError as error:
            return error.response()
        events: asyncio.Queue = asyncio.Queue()
        loop = asyncio.get_running_loop()
        try:
            completion = admit(chat, loaded, lambda event: loop.call_soon_threadsafe(events.put_nowait, event))
        except BaseException:
            loaded.release()
            raise
        if isinstance(completion, ServingError):
            loaded.release()
            return completion.response()
        service.batcher.submit(completion)
        headers = {"X-Accrete-Version": str(loaded.number)}
        meta = {"id": f"chatcmpl-{secrets.token_hex(12)}", "created": int(time.time()), "model": f"v{loaded.number}"}
        if chat.stream:
            return StreamingResponse(sse(completion, events, meta, chat.include_usage), headers=headers,
                                     media_type="text/event-stream")
        while not isinstance(event := await events.get(), Finished | Exception):
            pass
        if isinstance(event, Exception):
            return ServingError(500, f"generation failed: {event}", "generation_failed", type_="server_error").response()
        return JSONResponse({**meta, "object": "chat.completion", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": event.text}, "finish_reason": event.reason,
             "logprobs": None}], "usage": usage(event)}, headers=headers)

    async def acquire(version: ModelVersion | None):
        if version is None:
            loaded = service.versions.acquire_production()
            if loaded is None:
                raise ServingError(503, "The production version is still loading; retry in a few seconds.",
                                   "model_loading", type_="server_error")
            return loaded
        try:
            return await asyncio.get_running_loop().run_in_executor(
                service.loader, functools.partial(_in_db, service.versions.acquire, version))
        except Exception as error:  # a missing or tampered artifact: the message names the file
            log.exception("loading v%s failed", version.number)
            raise ServingError(503, f"v{version.number} could not be loaded: {error}", "model_unavailable",
                               type_="server_error") from None

    def admit(chat: ChatRequest, loaded, emit) -> Completion | ServingError:
        try:
            prompt_ids = loaded.generator.prompt_ids(chat.messages)
        except Exception as error:  # the chat template refused the conversation
            return ServingError(400, f"the messages do not fit the model's chat template: {error}",
                                "invalid_messages", param="messages")
        room = loaded.context_length - len(prompt_ids)
        if room < 1:
            return ServingError(400, f"the prompt is {len(prompt_ids)} tokens; this model reads at most "
                                     f"{loaded.context_length}: shorten the messages", "context_length_exceeded",
                                param="messages")
        return Completion(loaded, prompt_ids, min(chat.max_tokens, room), emit, temperature=chat.temperature,
                          top_p=chat.top_p, seed=chat.seed)

    async def models(request: Request):
        try:
            rows = await service.in_db(models_listed, await service.in_db(authenticate, bearer(request)))
        except ServingError as error:
            return error.response()
        return JSONResponse({"object": "list", "data": rows})

    async def metrics(request: Request):
        return JSONResponse({**service.batcher.stats, "waiting": len(service.batcher.pending),
                             **service.versions.describe()})

    async def health(request: Request):
        ready = service.versions.production is not None
        return JSONResponse({"ready": ready, **service.versions.describe()}, status_code=200 if ready else 503)

    return Starlette(routes=[
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
    ], lifespan=lifespan, max_body_size=4 << 20)


def usage(finished: Finished) -> dict:
    return {"prompt_tokens": finished.prompt_tokens, "completion_tokens": finished.completion_tokens,
            "total_tokens": finished.prompt_tokens + finished.completion_tokens}


async def sse(completion: Completion, events: asyncio.Queue, meta: dict, include_usage: bool):
    """The stream: a role chunk, a chunk per new piece of text, a chunk with the finish reason, optionally
    the usage, then [DONE]. A client that goes away cancels its row at the batcher's next step."""
    def chunk(delta: dict, finish_reason: str | None = None, **extra) -> str:
        body = {**meta, "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}], **extra}
        return f"data: {json.dumps(body)}\n\n"

    try:
        yield chunk({"role": "assistant", "content": ""})
        while isinstance(event := await events.get(), str):
            yield chunk({"content": event})
        if isinstance(event, Exception):
            error = {"message": f"generation failed: {event}", "type": "server_error", "code": "generation_failed"}
            yield f"data: {json.dumps({'error': error})}\n\n"
            return
        yield chunk({}, event.reason)
        if include_usage:
            yield f"data: {json.dumps({**meta, 'object': 'chat.completion.chunk', 'choices': [], 'usage': usage(event)})}\n\n"
        yield "data: [DONE]\n\n"
    finally:
        completion.cancelled = True  # no effect once the row has finished
