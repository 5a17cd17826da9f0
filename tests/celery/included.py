"""An activity module the test app declares in ``Celery(include=[...])`` and never imports."""

from __future__ import annotations

from flowcore import activity
from tests.celery.activities import _count


@activity(backend="celery")
def cel_included(x: int) -> int:
    """Runs on a worker that loads its module through the app's ``include``."""
    _count("cel_included", x)
    return x * 10
