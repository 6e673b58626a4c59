"""Gemini adapters: the online embedder and the Batch API backend (google-genai)."""
