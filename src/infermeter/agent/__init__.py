"""The agent: decorator, pipeline, embedded runtime, HTTP API, proxy and CLI."""
