from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from core.settings import Settings
from proctor.wiring import review_config


def make(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_defaults_are_embedded_services_under_the_data_dir(tmp_path: Path) -> None:
    settings = make(data_dir=tmp_path)
    assert settings.s3_endpoint is None
    assert settings.resolved_database_url == f"sqlite:///{tmp_path.resolve() / 'proctor.db'}"


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROCTOR_S3_ENDPOINT", "minio:9000")
    monkeypatch.setenv("PROCTOR_S3_ACCESS_KEY", "ak")
    monkeypatch.setenv("PROCTOR_S3_SECRET_KEY", "sk")
    monkeypatch.setenv("PROCTOR_PART_SIZE_BYTES", str(8 * 1024 * 1024))
    settings = make()
    assert settings.s3_endpoint == "minio:9000" and settings.part_size_bytes == 8 * 1024 * 1024
    assert "sk" not in repr(settings), "secrets are not printed"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"s3_endpoint": "minio:9000"}, "PROCTOR_S3_ACCESS_KEY or PROCTOR_S3_SECRET_KEY is missing"),
        ({"environment": "production", "database_url": "postgresql://x/y"}, "PROCTOR_S3_ENDPOINT is unset"),
        (
            {
                "environment": "production",
                "s3_endpoint": "m:9000",
                "s3_access_key": "a",
                "s3_secret_key": "b",
            },
            "must name PostgreSQL",
        ),
        ({"part_size_bytes": 1024}, "greater than or equal"),
    ],
)
def test_unsafe_or_incomplete_settings_are_refused(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        make(**values)


PRODUCTION = {"environment": "production", "database_url": "postgresql://x/y", "s3_endpoint": "m:9000"}


@pytest.mark.parametrize(
    ("values", "secure"),
    [
        ({}, False),  # the embedded server answers plain http on 127.0.0.1
        ({"cookie_secure": True}, True),
        (PRODUCTION, True),
        ({**PRODUCTION, "cookie_secure": False}, False),  # served over plain http on purpose: said explicitly
    ],
)
def test_review_cookies_are_secure_in_production_unless_turned_off(values: dict[str, object], secure: bool) -> None:
    settings = make(**values, s3_access_key="a", s3_secret_key="b")
    assert review_config(settings).cookie_secure is secure
