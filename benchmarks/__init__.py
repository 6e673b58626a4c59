"""Runnable benchmarks; each module has run(quick) -> list of rows."""
