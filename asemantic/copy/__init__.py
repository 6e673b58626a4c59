"""Moving a knowledge base between engines without embedding it again.

See :mod:`asemantic.copy.copier` for what is copied and how a copy is verified, and
:mod:`asemantic.copy.checksums` for the canonical row encoding the checksums use.
"""

from asemantic.copy.checksums import VECTORS, TableFigures
from asemantic.copy.copier import (
    COPY_LEASE_OWNER,
    CopyProgress,
    CopyReport,
    TableReport,
    copy_knowledge_base,
    transfer_of,
)

__all__ = [
    "COPY_LEASE_OWNER",
    "CopyProgress",
    "CopyReport",
    "TableFigures",
    "TableReport",
    "VECTORS",
    "copy_knowledge_base",
    "transfer_of",
]
