"""``python -m bridge.cli``: the same as the ``govbridge`` command."""

from bridge.cli.main import main

raise SystemExit(main())
