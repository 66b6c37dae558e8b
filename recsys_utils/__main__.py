"""``python -m recsys_utils``: see :mod:`recsys_utils.cli`."""

from recsys_utils.cli import main

raise SystemExit(main())
