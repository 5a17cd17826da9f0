"""flowcore.web: a mountable ASGI app with a JSON API, live streams and a dashboard.

Needs the ``web`` extra (``pip install 'flowcore[web]'``: Starlette and uvicorn)::

    runtime = flowcore.Runtime("orders.db")
    app = FastAPI(lifespan=flowcore.lifespan(runtime))
    app.mount("/flowcore", flowcore.web.create_app(runtime))

``python -m flowcore serve MODULE --http 127.0.0.1:8080`` serves the same app next to a
runtime.
"""

from __future__ import annotations

try:
    import starlette  # noqa: F401 - only checks that the extra is installed
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "flowcore.web needs Starlette: install the web extra, pip install 'flowcore[web]'"
    ) from exc

from flowcore._lifespan import lifespan as lifespan
from flowcore.web._app import DEFAULT_MAX_BODY as DEFAULT_MAX_BODY
from flowcore.web._app import close_streams as close_streams
from flowcore.web._app import create_app as create_app
from flowcore.web._app import is_loopback_host as is_loopback_host

__all__ = ["DEFAULT_MAX_BODY", "close_streams", "create_app", "is_loopback_host", "lifespan"]
