"""The in-memory store: every port of a database, with the SQLite store's semantics.

For tests and demos (no file, no I/O); the contract suite in ``tests/ports`` runs the
same tests over it and over SQLite.
"""

from asemantic.adapters.memory.jobs import MemoryJobStore
from asemantic.adapters.memory.store import MemoryStore

__all__ = ["MemoryJobStore", "MemoryStore"]
