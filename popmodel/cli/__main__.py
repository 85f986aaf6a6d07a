"""``python -m popmodel.cli``: the ``popmodel`` command."""

from popmodel.cli import main

raise SystemExit(main())
