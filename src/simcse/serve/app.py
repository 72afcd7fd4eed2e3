"""The FastAPI application: OpenAI-style embeddings, similarity, search, health and the demo page.

One model is served, or two (``compare``: e.g. the base encoder beside the trained one, each with its own
encoder thread and an index of the same sentences); a request picks one by its ``model`` field (the first
when it names none), and the demo page shows both side by side.

Request bodies are read and checked here, not by FastAPI's body parsing, so every limit is enforced before
any work (size while streaming, text count, text length) and every failure has the OpenAI error shape
``{"error": {"message", "type", "code"}}``. Texts are encoded by the single :class:`EncodeBatcher` thread;
index search runs on one other thread; the event loop only parses, validates and routes.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from simcse.core.errors import SimCSEError, shorten
from simcse.serve.batcher import EncodeBatcher, QueueFull, ShuttingDown
from simcse.serve.request_checks import (
    ApiError,
    check_api_key,
    check_count,
    check_fields,
    error_response,
    json_type,
    optional_string,
    read_json_object,
    texts_field,
)
from simcse.serve.settings import ServeSettings
from simcse.use.api import SimCSE

MAX_TOP_K = 100
MODEL_ALIAS = "simcse"  # accepted as 'model' by every server, whatever it serves
EMBEDDINGS_FIELDS = ("input", "model", "encoding_format", "dimensions", "user")  # OpenAI's request fields
RETRY_AFTER_S = "1"
# The page loads its script and style from this server only and may only call this server.
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src data:; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


def _dumps(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


# ---------------------------------------------------------------------------------------------- guard
class GuardMiddleware:
    """Checks the Host header (DNS-rebinding defence for a loopback server) and adds security headers."""

    def __init__(self, app: ASGIApp, allowed_hosts: tuple[str, ...]):
        self.app = app
        self.any_host = "*" in allowed_hosts
        self.allowed = {h.lower().strip("[]") for h in allowed_hosts}

    def host_allowed(self, scope: Scope) -> bool:
        """Whether the request's Host header, without its port (and an IPv6 address without its brackets), is
        an allowed host; any host when ``*`` is allowed."""
        if self.any_host:
            return True
        raw = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1").lower()
        host = raw[1:].split("]")[0] if raw.startswith("[") else raw.rsplit(":", 1)[0] if ":" in raw else raw
        return host in self.allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not self.host_allowed(scope):
            response = error_response(
                400, "this Host header is not accepted (see --allowed-hosts)", "invalid_host"
            )
            await response(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + SECURITY_HEADERS
            await send(message)

        await self.app(scope, receive, send_with_headers)


# ---------------------------------------------------------------------------------------------- app
def model_name_of(model: SimCSE, given: str | None) -> str:
    """``given``, else the source's last path part: the directory or hub name ("all-MiniLM-L6-v2" for the
    embedded model)."""
    return given or model.encoder.source.split(" (")[0].rstrip("/").split("/")[-1] or "simcse"


@dataclass
class Served:
    """One served model: its name, the model (and its index) and the thread that encodes for it."""

    name: str
    model: SimCSE
    batcher: EncodeBatcher

    def index_size(self) -> int:
        """The number of vectors in the model's index (0 without one)."""
        index = self.model.vector_index
        return 0 if index is None else len(index)


class Service:
    """What the endpoints share: the served models, the settings, their encoder threads and the search
    thread. Each ``*_body`` method turns a checked request body into the response payload."""

    def __init__(self, model: SimCSE, settings: ServeSettings, compare: SimCSE | None = None):
        self.settings = settings
        names = [model_name_of(model, settings.model_name)]
        if compare is not None:
            names.append(model_name_of(compare, settings.compare_name))
            if names[1] in (names[0], MODEL_ALIAS):  # checked before any encoder thread starts
                raise SimCSEError(
                    f"both served models are named {names[1]!r}; name them apart with --model-name / --compare-name"
                )
        self.served = [self._serve(m, n) for m, n in zip([model, compare], names)]
        self.searcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="simcse-search")

    def _serve(self, model: SimCSE, name: str) -> Served:
        def encode_texts(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
            # the same steps as SimCSE.encode (tokenize, length-sorted batches, unit vectors), plus token counts
            tokens = model.encoder.tokenize(texts, model.max_length)
            vectors = model.encoder.encode_tokenized(
                tokens, self.settings.batch_size, normalize=True, dtype=model.dtype
            )
            return vectors.numpy(), tokens.lengths()

        return Served(
            name, model, EncodeBatcher(encode_texts, self.settings.batch_size, self.settings.queue_size)
        )

    def close(self) -> None:
        """Stop the encoder threads (queued requests fail with ShuttingDown) and the search thread."""
        for served in self.served:
            served.batcher.close()
        self.searcher.shutdown(wait=False, cancel_futures=True)

    async def encode(self, texts: list[str], served: Served | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Unit vectors and token counts of ``texts``, encoded by the encoder thread of ``served`` (None: the
        first model); a full queue or a shutdown is a 503 ApiError."""
        batcher = (served or self.served[0]).batcher
        try:  # ShuttingDown: raised by submit, or set on a queued job by close
            return await asyncio.wrap_future(batcher.submit(texts))
        except QueueFull as e:
            raise ApiError(
                503, f"the server is busy ({e}); retry later", "queue_full", {"Retry-After": RETRY_AFTER_S}
            ) from None
        except ShuttingDown:
            raise ApiError(503, "the server is shutting down", "shutting_down") from None

    async def handle(self, request: Request, work: Callable[[dict[str, Any]], Awaitable[Any]]) -> Response:
        """Authorise, read the body, run ``work`` under the per-request timeout, render JSON off the loop."""
        settings = self.settings
        check_api_key(request, settings.api_key)

        async def steps() -> Any:
            body = await read_json_object(request, settings.max_body_bytes)
            return await work(body)

        try:  # cancelling steps() cancels the queued job too: a request that times out is never encoded
            payload = await asyncio.wait_for(steps(), settings.timeout)
        except asyncio.TimeoutError:
            raise ApiError(
                504,
                f"the request took longer than {settings.timeout:g} s (--timeout)",
                "timeout",
                {"Connection": "close"},
            ) from None
        return Response(await run_in_threadpool(_dumps, payload), media_type="application/json")

    def check_model(self, body: dict[str, Any]) -> Served:
        """The model a request names (the first served one when it names none, or ``simcse``); any other
        name is 404 ``model_not_found``, as the OpenAI API answers, never echoed back as if it were served."""
        name = optional_string(body, "model")
        if name is None or name == MODEL_ALIAS:
            return self.served[0]
        for served in self.served:
            if served.name == name:
                return served
        names = " and ".join(repr(s.name) for s in self.served)
        raise ApiError(
            404,
            f"model {shorten(name, 80)!r} is not served here; this server serves {names} "
            f"(also accepted: {MODEL_ALIAS!r}, the first)",
            "model_not_found",
        )

    async def embeddings_body(self, body: dict[str, Any]) -> dict[str, Any]:
        """OpenAI's embeddings API: its fields (``user`` is accepted and ignored); any other is 422."""
        check_fields(body, EMBEDDINGS_FIELDS, ("input",))
        texts, _ = texts_field(body, "input", self.settings)
        served = self.check_model(body)
        dim = served.model.dim
        fmt = body.get("encoding_format") or "float"
        if fmt not in ("float", "base64"):
            raise ApiError(
                422, f"'encoding_format' must be 'float' or 'base64', got {fmt!r}", "invalid_value"
            )
        dims = body.get("dimensions")
        if dims is not None and (isinstance(dims, bool) or dims != dim):
            raise ApiError(
                422,
                f"'dimensions' must be {dim} for this model (no truncation), got {dims!r}",
                "invalid_value",
            )
        vectors, counts = await self.encode(texts, served)
        if fmt == "base64":
            little_endian = vectors.astype("<f4", copy=False)  # one conversion, not one per row
            rows = [base64.b64encode(v.tobytes()).decode("ascii") for v in little_endian]
        else:
            rows = vectors.tolist()
        tokens = int(counts.sum())
        return {
            "object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(rows)],
            "model": served.name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    async def similarity_body(self, body: dict[str, Any]) -> dict[str, Any]:
        """Cosine similarity: a number for two strings, else a len(a) x len(b) matrix (a string counts as
        a list of one)."""
        check_fields(body, ("a", "b", "model"), ("a", "b"))
        a, single_a = texts_field(body, "a", self.settings)
        b, single_b = texts_field(body, "b", self.settings)
        check_count(len(a) + len(b), "'a' and 'b' have", self.settings)
        served = self.check_model(body)
        vectors, _ = await self.encode(a + b, served)
        scores = np.clip(vectors[: len(a)] @ vectors[len(a) :].T, -1.0, 1.0)
        result = float(scores[0, 0]) if single_a and single_b else scores.tolist()
        return {"object": "similarity", "model": served.name, "scores": result}

    async def search_body(self, body: dict[str, Any]) -> dict[str, Any]:
        """Nearest indexed sentences, best first: a list of hits for a string, a list of lists for a list."""
        check_fields(body, ("query", "top_k", "threshold", "model"), ("query",))
        queries, single = texts_field(body, "query", self.settings)
        top_k = body.get("top_k", 5)
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
            raise ApiError(
                422, f"'top_k' must be an integer from 1 to {MAX_TOP_K}, got {top_k!r}", "invalid_value"
            )
        threshold = body.get("threshold")
        if threshold is not None and (
            isinstance(threshold, bool)
            or not isinstance(threshold, (int, float))
            or not math.isfinite(threshold)
        ):
            got = threshold if isinstance(threshold, float) else json_type(threshold)
            raise ApiError(422, f"'threshold' must be a finite number, got {got}", "invalid_value")
        served = self.check_model(body)
        index = served.model.vector_index
        if index is None or len(index) == 0:
            raise ApiError(409, "no index is loaded: start the server with --index DIR", "no_index")
        vectors, _ = await self.encode(queries, served)
        loop = asyncio.get_running_loop()
        scores, ids = await loop.run_in_executor(self.searcher, index.search, vectors, top_k)
        results = []
        for row_scores, row_ids in zip(scores, ids):
            hits = [
                {"sentence": served.model.sentences[i], "score": float(s), "id": int(i)}
                for s, i in zip(row_scores, row_ids)
                if i >= 0 and (threshold is None or s >= threshold)
            ]
            results.append(hits)
        return {"object": "search", "model": served.name, "results": results[0] if single else results}

    def health_body(self) -> dict[str, Any]:
        """Open without the API key (for load balancers and the demo page); shows no indexed text. The
        top-level model fields describe the first model; ``models`` lists every served one."""
        settings, first = self.settings, self.served[0]
        return {
            "status": "ok",
            "model": first.name,
            "dim": first.model.dim,
            "index_size": first.index_size(),
            "models": [
                {"name": s.name, "dim": s.model.dim, "index_size": s.index_size()} for s in self.served
            ],
            "queue_depth": sum(s.batcher.depth for s in self.served),
            "queue_size": settings.queue_size,
            "api_key_required": settings.api_key is not None,
            "limits": {
                "max_batch": settings.max_batch,
                "max_text_chars": settings.max_text_chars,
                "max_body_bytes": settings.max_body_bytes,
                "timeout": settings.timeout,
                "max_top_k": MAX_TOP_K,
            },
        }


def create_app(model: SimCSE, settings: ServeSettings, compare: SimCSE | None = None) -> FastAPI:
    """The service around an already loaded model (and its index, if any), and ``compare`` beside it."""
    settings.validate()
    service = Service(model, settings, compare)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        service.close()

    app = FastAPI(
        title="simcse", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )  # no docs pages: they load scripts from a CDN
    app.state.batcher = service.served[0].batcher
    app.state.settings = settings
    app.state.model_name = service.served[0].name
    app.state.compare_name = service.served[1].name if len(service.served) > 1 else None
    app.add_middleware(GuardMiddleware, allowed_hosts=settings.allowed_hosts)
    add_error_handlers(app)
    add_routes(app, service)
    return app


def add_error_handlers(app: FastAPI) -> None:
    """Every failure answers in the OpenAI error shape."""

    @app.exception_handler(ApiError)
    async def on_api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.code, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            message, code = f"no such endpoint: {request.method} {request.url.path}", "not_found"
        elif exc.status_code == 405:
            allow = (exc.headers or {}).get("Allow", "")
            message, code = (
                f"method {request.method} is not allowed on {request.url.path} (allowed: {allow})",
                "method_not_allowed",
            )
        else:
            message, code = str(exc.detail), "http_error"
        return error_response(exc.status_code, message, code, dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        # not reached by the endpoints below (they read their bodies themselves); kept so that any
        # FastAPI-validated parameter answers in the same error shape
        parts = [f"{'.'.join(str(x) for x in e.get('loc', ()))}: {e.get('msg', '')}" for e in exc.errors()]
        return error_response(422, "; ".join(parts) or "invalid request", "invalid_request")

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        return error_response(500, "internal server error", "internal_error")


def add_routes(app: FastAPI, service: Service) -> None:
    """Register the endpoints on ``app``: ``POST /v1/embeddings``, ``/similarity``, ``/search``, ``GET
    /health`` and the demo page with its script and style sheet."""
    static = resources.files("simcse.serve") / "static"
    page = (static / "index.html").read_bytes()
    script = (static / "app.js").read_bytes()
    style = (static / "style.css").read_bytes()

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Response:
        return await service.handle(request, service.embeddings_body)

    @app.post("/similarity")
    async def similarity(request: Request) -> Response:
        return await service.handle(request, service.similarity_body)

    @app.post("/search")
    async def search(request: Request) -> Response:
        return await service.handle(request, service.search_body)

    @app.get("/health")
    async def health() -> JSONResponse:
        return JSONResponse(service.health_body())

    @app.get("/")
    async def demo_page() -> Response:
        return Response(
            page, media_type="text/html; charset=utf-8", headers={"Content-Security-Policy": PAGE_CSP}
        )

    @app.get("/app.js")
    async def demo_script() -> Response:
        return Response(script, media_type="text/javascript; charset=utf-8")

    @app.get("/style.css")
    async def demo_style() -> Response:
        return Response(style, media_type="text/css; charset=utf-8")
