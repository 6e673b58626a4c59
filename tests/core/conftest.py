"""The core suite runs on every engine (the ``engine`` fixture of :mod:`tests.support`)."""

from __future__ import annotations

from tests.support import databases as databases
from tests.support import engine as engine
from tests.support import engine_server as engine_server
