"""``python -m deadlockwatch``: the command line (see ``--help``)."""

from __future__ import annotations

from ._cli import main

raise SystemExit(main())
