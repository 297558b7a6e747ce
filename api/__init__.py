"""The outside: HTTP API, widget and the `tidings` CLI (the composition root)."""
