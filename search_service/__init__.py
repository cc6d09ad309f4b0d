"""The gpnas search service: FastAPI app, SQLAlchemy models, migrations, refit worker and CLI."""

from .core import SchemaOutdatedError, Settings
from .main import create_app

__all__ = ["SchemaOutdatedError", "Settings", "create_app"]
