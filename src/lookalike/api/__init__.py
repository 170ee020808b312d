"""HTTP API and web page: a FastAPI app over the same Engine the CLI uses."""

from lookalike.api.app import create_app, create_app_from_env

__all__ = ["create_app", "create_app_from_env"]
