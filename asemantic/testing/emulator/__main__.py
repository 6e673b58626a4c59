"""Entry point of ``python -m asemantic.testing.emulator``."""

from __future__ import annotations

from asemantic.testing.emulator.cli import main

raise SystemExit(main())
