"""``python -m flowcore``: the command line (see :mod:`flowcore._cli`)."""

from flowcore._cli import main

raise SystemExit(main())
