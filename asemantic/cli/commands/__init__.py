"""The ``asemantic`` subcommands, one module per command (or command group)."""
