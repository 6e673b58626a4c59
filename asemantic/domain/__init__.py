"""Pure, synchronous domain code: no asyncio, no I/O, no vendor SDKs."""
