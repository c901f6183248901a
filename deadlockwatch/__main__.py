"""``python -m deadlockwatch``: the command line (see ``--help``)."""

from __future__ import annotations

from deadlockwatch._cli import main

raise SystemExit(main())
