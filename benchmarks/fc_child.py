"""flowcore's side of W4 and W5 in a child process.

``python -m benchmarks.fc_child setup|recover|memory KIND DB SIZES`` (run by the harness).
"""

from __future__ import annotations

import logging

import structlog

from benchmarks.common import child_main
from benchmarks.workloads import CHILD_HANDLERS

if __name__ == "__main__":
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    child_main(CHILD_HANDLERS)
