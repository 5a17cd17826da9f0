"""The ASGI app: the JSON API, the live stream and the dashboard's static files.

Routes (relative to where the app is mounted)::

    GET  /                                 the dashboard (list of workflows)
    GET  /workflow?id=ID                   the dashboard's page of one workflow
    GET  /api/workflows                    list: ?name= &status= &since= &limit= &cursor=
    POST /api/workflows                    start: {"workflow", "input", "id", "version"}
    GET  /api/counts                       instances per state (?name=)
    GET  /api/workflows/{id}               status record
    GET  /api/workflows/{id}/history       journal rows {seq, kind, at, data}
    GET  /api/workflows/{id}/timeline      activities, timers, events, children with durations
    GET  /api/workflows/{id}/stream        Server-Sent Events of new journal rows (id SEQ-RUN)
    POST /api/workflows/{id}/events        send an event: {"name", "payload"}
    POST /api/workflows/{id}/cancel        cancel: {"reason"}
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from flowcore import _cli_render as render
from flowcore import serde
from flowcore._core import check_id
from flowcore._lifespan import lifespan
from flowcore.errors import (
    FlowcoreError,
    PayloadError,
    RegistrationError,
    WorkflowAlreadyExistsError,
    WorkflowFinishedError,
    WorkflowNotFoundError,
)
from flowcore.journal._batch import check_list_args
from flowcore.web import _queries
from flowcore.web._security import (
    ApiError,
    AsciiJSONResponse,
    LoopbackHostOnly,
    TokenAuth,
    is_loopback,
    read_json,
)
from flowcore.web._stream import commit_signal, journal_stream, parse_last_event_id

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.requests import Request

    from flowcore.runtime import Runtime

__all__ = ["DEFAULT_MAX_BODY", "close_streams", "create_app", "is_loopback_host"]

DEFAULT_MAX_BODY: Final = 1024 * 1024
"""Largest request body accepted by default (bytes)."""
_MAX_LIMIT: Final = 1000
_ROUTES: Final = (
    "the API's routes (under where the app is mounted) are GET and POST api/workflows, "
    "GET api/counts, GET api/workflows/{id} and its /history, /timeline and /stream, "
    "POST api/workflows/{id}/events and /cancel"
)
_START_FIELDS: Final = ("workflow", "input", "id", "version", "if_exists")
_STATIC: Final = Path(__file__).parent / "static"
_PAGE_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def is_loopback_host(host: str) -> bool:
    """True for ``127.0.0.1``, ``::1``, ``localhost`` and the rest of the loopback range."""
    return is_loopback({"server": (host, 0)})


def create_app(
    runtime: Runtime,
    *,
    token: str | None = None,
    host: str | None = None,
    max_body: int = DEFAULT_MAX_BODY,
    open_runtime: bool = False,
    heartbeat: float = 15.0,
) -> Starlette:
    """The flowcore web app (JSON API, live stream, dashboard) for ``runtime``.

    Mount it in a Starlette or FastAPI app (``app.mount("/flowcore", create_app(runtime))``)
    next to a ``lifespan=flowcore.lifespan(runtime)``, or serve it alone with
    ``open_runtime=True``.

    Args:
        runtime: The runtime whose journal the app shows and steers.
        token: When set, every request must present it (``Authorization: Bearer``, or the
            cookie the dashboard's sign-in page sets).
        host: The address the server binds to, if known: a non-loopback one without a token
            is refused here. Whatever it is, steering requests that arrive on a non-loopback
            address are refused (403) unless a token is set.
        max_body: Largest request body in bytes (413 beyond it).
        open_runtime: Open the runtime at the app's startup and close it at shutdown (only
            for an app served on its own: mounted apps get no lifespan events).
        heartbeat: Seconds between keep-alive comments on an idle stream.

    Returns:
        A Starlette application.

    Raises:
        ValueError: ``host`` is not a loopback address and no token is given, or a bad limit.
    """
    if token is not None and not token.strip():
        raise ValueError("the token must not be empty")
    if token is not None and token != token.strip():
        raise ValueError(
            "the token must not begin or end with whitespace (a bearer header cannot carry "
            f"it): got {len(token)} characters, {len(token.strip())} without it"
        )
    if host is not None and token is None and not is_loopback_host(host):
        raise ValueError(
            f"refusing to serve on non-loopback address {host!r} without a token: anyone "
            "who can reach it could start and cancel workflows; set a token (for "
            "'python -m flowcore serve', the FLOWCORE_WEB_TOKEN environment variable)"
        )
    if max_body < 1:
        raise ValueError("max_body must be at least 1 byte")
    api = _Api(runtime, token=token, max_body=max_body, heartbeat=heartbeat)
    commit_signal(runtime)  # install the hook before any stream needs it
    routes = [
        Route("/", _page("index.html")),
        Route("/workflow", _page("workflow.html")),
        Mount("/static", StaticFiles(directory=_STATIC), name="static"),
        Route("/api/counts", _handled(api.counts)),
        Route("/api/workflows", _handled(api.list), methods=["GET"]),
        Route("/api/workflows", api.steering(api.start), methods=["POST"]),
        *(
            Route(f"/api/workflows/{{wid:path}}/{suffix}", _handled(api.suffixed(read, suffix)))
            for suffix, read in (
                ("history", api.history),
                ("timeline", api.timeline),
                ("stream", api.stream),
            )
        ),
        Route("/api/workflows/{wid:path}/events", api.steering(api.send_event), methods=["POST"]),
        Route("/api/workflows/{wid:path}/cancel", api.steering(api.cancel), methods=["POST"]),
        Route("/api/workflows/{wid:path}", _handled(api.status)),
    ]
    if token is not None:
        middleware = [Middleware(TokenAuth, token=token)]
    else:
        middleware = [Middleware(LoopbackHostOnly)]
    return Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={HTTPException: _http_error, Exception: _internal_error},
        lifespan=lifespan(runtime) if open_runtime else None,
    )


def close_streams(runtime: Runtime) -> None:
    """End every live stream of ``runtime`` (call it before stopping the server).

    Servers wait for open responses before they shut down; an SSE stream stays open until its
    workflow ends, so a graceful shutdown ends them first.
    """
    commit_signal(runtime).close()


def _page(name: str) -> Callable[[Request], Awaitable[Response]]:
    async def page(request: Request) -> Response:  # noqa: ARG001 - Starlette's handler shape
        return FileResponse(_STATIC / name, media_type="text/html", headers=_PAGE_HEADERS)

    return page


def _json(data: Any, status: int = 200) -> AsciiJSONResponse:
    return AsciiJSONResponse(data, status_code=status, headers={"Cache-Control": "no-store"})


def _api_error(exc: Exception) -> ApiError:
    kind = type(exc).__name__
    match exc:
        case ApiError():
            return exc
        case WorkflowNotFoundError():
            return ApiError(404, str(exc), kind)
        case WorkflowAlreadyExistsError() | WorkflowFinishedError():
            return ApiError(409, str(exc), kind)
        case RegistrationError() | PayloadError() | ValueError():
            return ApiError(422, str(exc), kind)
        case _:
            return ApiError(503, str(exc), kind)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (no route, wrong method) in the API's ``{error, type}`` shape."""
    assert isinstance(exc, HTTPException)  # noqa: S101 - registered for HTTPException only
    kind = HTTPStatus(exc.status_code).phrase.replace(" ", "").replace("-", "")
    message = exc.detail
    where = f"{request.method} {request.url.path}"
    if exc.status_code == HTTPStatus.NOT_FOUND and message == "Not Found":
        message = f"no route for {where}; {_ROUTES}"
    elif exc.status_code == HTTPStatus.METHOD_NOT_ALLOWED and exc.headers:
        message = f"{where} is not allowed; this route takes {exc.headers.get('Allow')}"
    return AsciiJSONResponse(
        {"error": message, "type": kind}, status_code=exc.status_code, headers=exc.headers
    )


async def _internal_error(request: Request, exc: Exception) -> Response:  # noqa: ARG001
    """A bug's 500 in the API's shape (Starlette re-raises it after, so the server logs it)."""
    return AsciiJSONResponse(
        {
            "error": f"internal error ({type(exc).__name__}: {exc}); the server's log has "
            "the traceback",
            "type": "InternalServerError",
        },
        status_code=500,
    )


def _handled(
    handler: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    @functools.wraps(handler)
    async def run(request: Request) -> Response:
        try:
            return await handler(request)
        except (ApiError, FlowcoreError, ValueError) as exc:
            return _api_error(exc).response()

    return run


class _Api:
    """The route handlers, bound to one runtime and its settings."""

    def __init__(
        self, runtime: Runtime, *, token: str | None, max_body: int, heartbeat: float
    ) -> None:
        self._runtime = runtime
        self._token = token
        self._max_body = max_body
        self._heartbeat = heartbeat

    def steering(
        self, handler: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        """Wrap a steering handler: without a token, only loopback requests may steer."""

        async def steer(request: Request) -> Response:
            if self._token is None and not is_loopback(request.scope):
                raise ApiError(
                    403,
                    "steering (start, send-event, cancel) needs a token when the server is "
                    "reachable on a non-loopback address; start it with a token",
                    "Forbidden",
                )
            return await handler(request)

        return _handled(steer)

    def suffixed(
        self, handler: Callable[[Request], Awaitable[Response]], suffix: str
    ) -> Callable[[Request], Awaitable[Response]]:
        """Wrap a ``{id}/SUFFIX`` reader: a suffix whose '/' came as %2F is part of the id.

        The router sees the decoded path, so ``GET .../r%2Fhistory`` (the status of the id
        ``r/history``) would otherwise be answered with the history of ``r``.
        """

        async def read(request: Request) -> Response:
            raw = request.scope.get("raw_path")
            if raw is not None:
                _, slash, last = raw.partition(b"?")[0].rpartition(b"/")
                if not slash or unquote(last.decode("latin-1")) != suffix:
                    request.path_params["wid"] += "/" + suffix
                    return await self.status(request)
            return await handler(request)

        return read

    # -- reading -------------------------------------------------------------------------------

    async def list(self, request: Request) -> Response:
        """GET /api/workflows: a page of status records, newest first."""
        query = request.query_params
        limit = _int(query.get("limit", "50"), "limit", 1, _MAX_LIMIT)
        cursor = query.get("cursor")
        page = await _queries.list_page(
            self._runtime,
            name=query.get("name") or None,
            status=_status_filter(query.get("status") or None),
            since=_since(query.get("since")),
            limit=limit,
            cursor=_queries.decode_cursor(cursor) if cursor else None,
        )
        items = [render.status_json(s) for s in page.items]
        return _json({"items": items, "next_cursor": page.next_cursor})

    async def counts(self, request: Request) -> Response:
        """GET /api/counts: instances per state."""
        name = request.query_params.get("name") or None
        return _json(await _queries.count_by_status(self._runtime, name))

    async def status(self, request: Request) -> Response:
        """GET /api/workflows/{id}: the status record."""
        wid = request.path_params["wid"]
        try:
            found = await self._runtime.status(wid)
        except WorkflowNotFoundError as exc:
            head, _, last = wid.rpartition("/")
            if head and last in {"events", "cancel"}:
                raise ApiError(
                    405,
                    f"{request.method} {request.url.path} is not allowed (and no workflow has "
                    f"the id {wid!r}): send {last} as POST with a JSON body",
                    "MethodNotAllowed",
                ) from exc
            raise
        return _json(render.status_json(found))

    async def history(self, request: Request) -> Response:
        """GET /api/workflows/{id}/history: the journal rows of the current run."""
        events = await self._runtime.history(request.path_params["wid"])
        rows = render.export_rows(events)
        return _json([{"seq": i, **row} for i, row in enumerate(rows, start=1)])

    async def timeline(self, request: Request) -> Response:
        """GET /api/workflows/{id}/timeline: the status plus the grouped timeline items."""
        wid = request.path_params["wid"]
        status = await self._runtime.status(wid)
        events = await self._runtime.history(wid)
        items = [{**item.to_json(), "next_at": item.next_at} for item in render.timeline(events)]
        return _json({"status": render.status_json(status), "seq": len(events), "items": items})

    async def stream(self, request: Request) -> Response:
        """GET /api/workflows/{id}/stream: SSE of journal rows after Last-Event-ID (or ?after=)."""
        wid = request.path_params["wid"]
        await self._runtime.status(wid)  # 404 before the stream starts
        header = request.headers.get("last-event-id")
        after_text, source = (header, "Last-Event-ID") if header else (
            request.query_params.get("after"), "?after")  # fmt: skip
        after, run = parse_last_event_id(after_text or "0", source)
        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        if request.method == "HEAD":  # no body to send: a stream would hold the connection
            return Response(media_type="text/event-stream", headers=headers)
        body = journal_stream(self._runtime, wid, after, run, heartbeat=self._heartbeat)
        return StreamingResponse(body, media_type="text/event-stream", headers=headers)

    # -- steering ------------------------------------------------------------------------------

    async def start(self, request: Request) -> Response:
        """POST /api/workflows: start a workflow; 201 once its start is committed."""
        body = _only(await read_json(request, self._max_body), _START_FIELDS)
        name = _field(body, "workflow", str, required=True)
        version = _field(body, "version", str)
        wid = _field(body, "id", str)
        if wid is not None:
            check_id(wid)
        if_exists = _field(body, "if_exists", str) or "error"
        if if_exists not in ("error", "return"):
            raise ApiError(422, "if_exists must be 'error' or 'return'", "InvalidField")
        defn = self._runtime._registry.workflow(name, version)  # noqa: SLF001 - RegistrationError
        payload = body.get("input")
        _check_input(defn.fn, payload, takes_input=defn.takes_input)
        handle = await self._runtime.start(
            defn, payload, id=wid, if_exists="return" if if_exists == "return" else "error"
        )
        # a handle holds its instance only when this very start made it (atomic: no check
        # before the start, which concurrent requests for one new id would all pass)
        created = handle._instance is not None  # noqa: SLF001 - the web API is part of the package
        status = await self._runtime.status(handle.id)
        if not created and status.name != defn.name:
            raise ApiError(
                409,
                f"id {handle.id!r} belongs to an instance of workflow {status.name!r}, not "
                f"{defn.name!r}: if_exists='return' returns only an instance of the workflow "
                "asked for; start this one under another id",
                "WorkflowAlreadyExistsError",
            )
        return _json(
            {"id": handle.id, "status": render.status_json(status)}, 201 if created else 200
        )

    async def send_event(self, request: Request) -> Response:
        """POST /api/workflows/{id}/events: send an event; 200 once it is committed."""
        wid = request.path_params["wid"]
        body = _only(await read_json(request, self._max_body), ("name", "payload"))
        name = _field(body, "name", str, required=True)
        await self._runtime.send_event(wid, name, body.get("payload"))
        return _json({"id": wid, "event": name, "committed": True})

    async def cancel(self, request: Request) -> Response:
        """POST /api/workflows/{id}/cancel: request cancellation; 200 once it is committed."""
        wid = request.path_params["wid"]
        body = _only(await read_json(request, self._max_body), ("reason",))
        await self._runtime.cancel(wid, _field(body, "reason", str))
        return _json({"id": wid, "cancel_requested": True})


def _only(body: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """The body, unless it has a field the route does not take (a typo must not be dropped)."""
    unknown = [key for key in body if key not in fields]
    if unknown:
        raise ApiError(
            422,
            f"unknown field {unknown[0]!r} in the request body; expected "
            + ", ".join(repr(f) for f in fields),
            "InvalidField",
        )
    return body


def _field(body: dict[str, Any], key: str, kind: type, *, required: bool = False) -> Any:
    value = body.get(key)
    if value is None:
        if required:
            raise ApiError(422, f"the request body needs a {key!r} field", "InvalidField")
        return None
    if not isinstance(value, kind) or (kind is str and not value):
        raise ApiError(
            422, f"field {key!r} must be a non-empty {kind.__name__}, not {value!r}", "InvalidField"
        )
    return value


def _check_input(fn: Callable[..., Any], payload: Any, *, takes_input: bool) -> None:
    """Refuse an input that does not fit the workflow's type hint, before anything is written."""
    if not takes_input:
        return
    signature, hints, _ = serde.signature_hints(fn)
    first = next(iter(signature.parameters))
    serde.decode(payload, hints.get(first, Any), path="$.input")


def _status_filter(text: str | None) -> str | None:
    """The journal's own check of a status filter (the one ``list()`` makes), as a 422."""
    try:
        return check_list_args(text, 0)
    except ValueError as exc:
        raise ApiError(422, str(exc), "InvalidField") from None


def _int(text: str, name: str, low: int, high: int | None) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ApiError(422, f"{name} must be an integer, not {text!r}", "InvalidField") from None
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ApiError(422, f"{name} must be {bounds}, not {value}", "InvalidField")
    return value


def _since(text: str | None) -> float | None:
    if not text:
        return None
    try:
        when = datetime.fromisoformat(_plus_offset(text))
    except ValueError:
        raise ApiError(
            422,
            f"since must be an ISO 8601 time such as 2026-01-31T12:00, not {text!r}",
            "InvalidField",
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def _plus_offset(text: str) -> str:
    """Put back the ``+`` of a UTC offset that arrived unencoded in a query (read as a space)."""
    head, sep, offset = text.rpartition(" ")
    if sep and "T" in head and offset[:2].isdigit():
        return f"{head}+{offset}"
    return text
