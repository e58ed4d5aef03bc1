"""The HTTP API under /v1, for integrations."""
