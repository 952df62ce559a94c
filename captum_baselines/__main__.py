"""``python -m captum_baselines``: the ``captum-baselines`` command line."""

from .cli import main

raise SystemExit(main())
