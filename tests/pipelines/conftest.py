"""The ingest fixtures (real embedded S3, SQLite / PostgreSQL, a live API) serve the pipeline tests too."""

from tests.ingest.conftest import api, context, settings

__all__ = ["api", "context", "settings"]
