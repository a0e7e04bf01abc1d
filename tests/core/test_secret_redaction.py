"""Secrets stay out of what gets printed and logged: the settings' repr and str, a refused setting's error, the
object store's location and the app context that holds both, and the database URL shown to operators."""

from __future__ import annotations

import logging

import pytest
from pydantic import ValidationError

from core.context import AppContext
from core.settings import Settings, redact_database_url
from storage.object_store import S3Location

DB_PASSWORD = "hunter2-db-pass"
S3_SECRET = "s3-secret-Zq8T"
ANCHOR_KEY = "anchor-key-Pw3"


def make(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            f"postgresql+psycopg://proctor:{DB_PASSWORD}@db:5432/proctor",
            "postgresql+psycopg://proctor:***@db:5432/proctor",
        ),
        (
            f"postgresql+psycopg://proctor:{DB_PASSWORD}@db/proctor?sslmode=require",
            "postgresql+psycopg://proctor:***@db/proctor?sslmode=require",
        ),
        (
            f"postgresql://db/proctor?user=proctor&password={DB_PASSWORD}",
            "postgresql://db/proctor?password=***&user=proctor",
        ),
        ("postgresql+psycopg://proctor@db:5432/proctor", "postgresql+psycopg://proctor@db:5432/proctor"),
        ("sqlite:////var/lib/proctor/proctor.db", "sqlite:////var/lib/proctor/proctor.db"),
        (f"not a url {DB_PASSWORD}", "<a database URL that does not parse: check PROCTOR_DATABASE_URL>"),
    ],
)
def test_a_database_url_is_shown_with_its_password_hidden(url: str, shown: str) -> None:
    assert redact_database_url(url) == shown


def test_the_settings_repr_and_str_show_no_secret() -> None:
    settings = make(
        database_url=f"postgresql+psycopg://proctor:{DB_PASSWORD}@db:5432/proctor",
        s3_endpoint="minio:9000",
        s3_access_key="AKIAPROCTOR",
        s3_secret_key=S3_SECRET,
        audit_anchor_key=ANCHOR_KEY,
    )
    for shown in (repr(settings), str(settings), f"{settings!r}", f"{settings}"):
        for secret in (DB_PASSWORD, S3_SECRET, ANCHOR_KEY):
            assert secret not in shown
        assert "postgresql+psycopg://proctor:***@db:5432/proctor" in shown, "the rest of the URL stays readable"
    assert settings.resolved_database_url.endswith(f":{DB_PASSWORD}@db:5432/proctor"), "the engine gets it whole"
    assert settings.redacted_database_url == "postgresql+psycopg://proctor:***@db:5432/proctor"


def test_a_refused_setting_names_the_problem_but_not_the_values_given() -> None:
    with pytest.raises(ValidationError, match="must name PostgreSQL") as refused:
        make(
            environment="production",
            s3_endpoint="m:9000",
            s3_access_key="a",
            s3_secret_key=S3_SECRET,
            database_url=f"sqlite:///{DB_PASSWORD}.db",
        )
    assert S3_SECRET not in str(refused.value) and DB_PASSWORD not in str(refused.value)


def test_an_s3_location_repr_shows_where_but_not_the_secret_key() -> None:
    location = S3Location("minio:9000", "AKIAPROCTOR", S3_SECRET, "proctor")
    assert S3_SECRET not in repr(location) and S3_SECRET not in str(location)
    assert "minio:9000" in repr(location) and "proctor" in repr(location)
    assert location.secret_key == S3_SECRET, "the client still gets it"


def test_logging_the_app_context_leaks_neither_s3_secret_nor_settings_secrets(
    context: AppContext, caplog: pytest.LogCaptureFixture
) -> None:
    """`context` runs on the real embedded S3 server, whose secret key is generated; the context holds it."""
    with caplog.at_level(logging.INFO):
        logging.getLogger("tests.redaction").info("started with %r", context)
    assert context.location.secret_key not in caplog.text
    assert "endpoint=" in caplog.text
