"""Safety of the web API: the bearer token, the loopback rule for steering, body size and JSON.

* With a token, every request must carry it: an ``Authorization: Bearer`` header (API clients)
  or the ``flowcore_token`` cookie the dashboard's sign-in page sets (browsers cannot put a
  header on a page load or an EventSource). Tokens are compared in constant time and never
  logged or echoed.
* Without a token, steering (start, send-event, cancel) is refused unless the request came in
  on a loopback address: an app served on a public interface cannot be steered by anyone.
* Without a token, a request that came in on a loopback address must also name a loopback host
  (``Host: 127.0.0.1:8080``, ``localhost``, ``[::1]``): a web page whose own name was rebound
  to 127.0.0.1 (DNS rebinding) would otherwise count as same-origin and read and steer freely.
* Request bodies are read up to a limit (413 beyond it) and must be JSON objects (422 with the
  parser's reason otherwise).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote

from starlette.requests import cookie_parser
from starlette.responses import HTMLResponse, JSONResponse

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = [
    "COOKIE",
    "ApiError",
    "AsciiJSONResponse",
    "LoopbackHostOnly",
    "TokenAuth",
    "is_loopback",
    "read_json",
]

COOKIE: Final = "flowcore_token"
_SIGN_IN_STYLE: Final = "body { font-family: sans-serif; max-width: 28em; margin: 4em auto }"
_SIGN_IN_SCRIPT: Final = """
document.getElementById("f").addEventListener("submit", function (e) {
  e.preventDefault();
  var value = encodeURIComponent(document.getElementById("t").value);
  var secure = location.protocol === "https:" ? "; Secure" : "";
  document.cookie = "flowcore_token=" + value + "; path=/; SameSite=Strict" + secure;
  location.reload();
});
"""
_SIGN_IN: Final = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>flowcore: sign in</title>
<style>{_SIGN_IN_STYLE}</style></head>
<body>
<h1>flowcore</h1>
<p>This dashboard is protected by a token. Paste it to continue (it is kept in a cookie for
this site only).</p>
<form id="f"><input id="t" type="password" autocomplete="current-password" size="40"
 aria-label="token"> <button>Sign in</button></form>
<script>{_SIGN_IN_SCRIPT}</script></body></html>
"""


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


SIGN_IN_HEADERS: Final = {
    # as strict as the dashboard's pages: only this page's own script and style may run
    "Content-Security-Policy": (
        f"default-src 'none'; script-src {_csp_hash(_SIGN_IN_SCRIPT)}; "
        f"style-src {_csp_hash(_SIGN_IN_STYLE)}; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class AsciiJSONResponse(JSONResponse):
    """JSON as ASCII text: a journaled string may hold a lone surrogate, which UTF-8 cannot encode.

    The escaped form (a backslash-u escape) is valid JSON and reads back as the same string.
    """

    def render(self, content: Any) -> bytes:
        """The body: compact JSON, non-ASCII characters escaped."""
        return json.dumps(content, allow_nan=False, separators=(",", ":")).encode("ascii")


class ApiError(Exception):
    """An error answered as ``{"error": message, "type": kind}`` with an HTTP status."""

    def __init__(self, status: int, message: str, kind: str = "BadRequest") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind

    def response(self) -> AsciiJSONResponse:
        """The JSON response for this error."""
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None  # noqa: PLR2004
        return AsciiJSONResponse(
            {"error": self.message, "type": self.kind}, status_code=self.status, headers=headers
        )


def is_loopback(scope: Scope) -> bool:
    """True when the request came in on a loopback address of this host."""
    server = scope.get("server")
    if not server:
        return False
    host = str(server[0]).strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_name(header: str) -> str:
    """The name in a ``Host`` header, without its port (and brackets for IPv6)."""
    if header.startswith("["):
        return header[1:].partition("]")[0]
    return header.rpartition(":")[0] if ":" in header else header


def is_loopback_name(name: str) -> bool:
    """True for ``localhost`` (and ``*.localhost``), loopback IP addresses and ``0.0.0.0``/``::``.

    The unspecified addresses are what servers bound to every interface print as their URL
    (``http://0.0.0.0:8000``); a browser that opens it reaches this host, and only a page at that
    very address sends that name, so it is as local as ``127.0.0.1``.
    """
    name = name.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


class LoopbackHostOnly:
    """ASGI middleware for an app without a token: loopback requests need a loopback host name.

    A page whose DNS name was rebound to 127.0.0.1 is same-origin with this server in the
    browser's eyes; its requests carry its own name in ``Host`` and are answered 403.
    """

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass requests on unless they came in on loopback under a foreign host name."""
        if scope["type"] == "http" and is_loopback(scope):
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            if host and not is_loopback_name(_host_name(host)):
                response = ApiError(
                    403,
                    f"this server answers on loopback only to a loopback host name, not "
                    f"{_host_name(host)!r}: open it as http://127.0.0.1:PORT/, or set a token "
                    "to serve it under another name (say, behind a reverse proxy)",
                    "Forbidden",
                ).response()
                await response(scope, receive, send)
                return
        await self._app(scope, receive, send)


def _presented(headers: dict[bytes, bytes]) -> bytes | None:
    """The token the request presents, as the bytes it was sent in (UTF-8 for a cookie)."""
    scheme, _, value = headers.get(b"authorization", b"").partition(b" ")
    if scheme.lower() == b"bearer" and value.strip():
        return value.strip()
    raw = headers.get(b"cookie")
    if raw:
        # Starlette's lenient parser, as browsers read: http.cookies drops the whole header
        # at a cookie it finds invalid (a JSON value, a space, no '='), and a browser sends
        # those of every app on this host, whatever its port.
        cookie = cookie_parser(raw.decode("latin-1")).get(COOKIE)
        if cookie is not None:
            return unquote(cookie).encode(errors="surrogateescape")
    return None


class TokenAuth:
    """ASGI middleware: every HTTP request must present the token (header or cookie)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self._app = app
        self._token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass authorised requests on; answer the others 401."""
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        presented = _presented(headers)
        if presented is not None and hmac.compare_digest(presented, self._token):
            await self._app(scope, receive, send)
            return
        accept = headers.get(b"accept", b"").decode("latin-1")
        if scope["method"] == "GET" and "text/html" in accept:
            response: Any = HTMLResponse(_SIGN_IN, status_code=401, headers=SIGN_IN_HEADERS)
        else:
            reason = "missing" if presented is None else "wrong"
            response = ApiError(
                401, f"{reason} token: send 'Authorization: Bearer <token>'", "Unauthorized"
            ).response()
        await response(scope, receive, send)


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    """Read the request body (at most ``limit`` bytes) as a JSON object; empty means ``{}``.

    Raises:
        ApiError: 413 for a body over the limit, 415 unless declared ``application/json``,
            422 for invalid JSON or JSON that is not an object.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_large(limit)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        # Also what keeps other web sites out: a cross-site JSON request needs a CORS
        # preflight, which this app never grants.
        raise ApiError(
            415,
            "send the body as JSON with 'Content-Type: application/json' "
            f"(got {ctype or 'none'!r})",
            "UnsupportedMediaType",
        )
    if not body.strip():
        return {}
    try:
        data = json.loads(body, parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        raise ApiError(
            422, f"the request body is not UTF-8 ({exc}): send the JSON as UTF-8", "InvalidJSON"
        ) from exc
    except ValueError as exc:
        raise ApiError(422, f"invalid JSON in the request body: {exc}", "InvalidJSON") from exc
    except RecursionError:
        raise ApiError(
            422, "invalid JSON in the request body: nested too deeply", "InvalidJSON"
        ) from None
    if not isinstance(data, dict):
        raise ApiError(
            422, f"the request body must be a JSON object, not {type(data).__name__}", "InvalidJSON"
        )
    return data


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413, f"request body is larger than the limit of {limit} bytes", "PayloadTooLarge"
    )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
