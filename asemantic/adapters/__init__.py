"""Adapters: the only place vendor packages (google-genai, aiosqlite, sqlite-vec) are imported."""
