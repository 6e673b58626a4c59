"""The PostgreSQL + pgvector engine (``postgresql://`` targets; ``pip install
"asemantic[postgres]"``).

Modules: :mod:`.connection` (pool, vector codec, typed errors), :mod:`.schema` (tables
and version), :mod:`.store` (the :class:`~asemantic.ports.Store`), :mod:`.jobs` (the
:class:`~asemantic.ports.JobStore`).
"""
