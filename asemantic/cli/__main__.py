"""``python -m asemantic.cli``."""

from asemantic.cli import main

raise SystemExit(main())
