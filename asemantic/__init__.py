"""asemantic: semantic search over your own documents with Gemini embeddings."""

from asemantic.keys import GoogleKeyring

__all__ = ["GoogleKeyring"]
__version__ = "0.1.0"
