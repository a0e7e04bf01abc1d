"""A live server (platform API, review UI and Open edX backend over real HTTP, real S3) and the `proctor` CLI run
in-process (typer's CliRunner) on the same database, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from core.context import AppContext
from core.tables import AuditEvent, User, WebSession
from core.vocabulary import Role
from proctor.cli import app
from proctor.local_server import BackgroundServer
from proctor.wiring import server_app
from review_ui.accounts import add_user
from tests.review_ui.conftest import PASSWORD, Browser
from tests.support.platform import problem

OPERATOR = "ops-alice"
runner = CliRunner()


@dataclass
class Served:
    url: str
    context: AppContext
    env: dict[str, str]

    def cli(self, *args: str, stdin: str | None = None) -> tuple[int, str]:
        """Exit code and output, the output's words rejoined (typer wraps errors in a box)."""
        result = runner.invoke(app, list(args), env=self.env, input=stdin)
        return result.exit_code, " ".join(result.output.replace("│", " ").split())

    def keys(self, slug: str) -> dict[str, str]:
        """`proctor tenants keys`: each listed prefix and its table row."""
        result = runner.invoke(app, ["tenants", "keys", slug], env=self.env)
        assert result.exit_code == 0, result.output
        return {line.split()[1]: line for line in result.output.splitlines() if "pp_" in line}

    def api_status(self, key: str) -> tuple[int, str]:
        """What the API answers this key on a session it does not have: 404 for a good key."""
        response = httpx.get(f"{self.url}/v1/sessions/nosuch", headers={"Authorization": f"Bearer {key}"}, timeout=30)
        return problem(response)

    def audited(self, action: str) -> list[AuditEvent]:
        with self.context.db() as db:
            return list(db.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)))

    def open_sessions(self, username: str) -> int:
        with self.context.db() as db:
            user_id = db.scalar(select(User.id).where(User.username == username))
            return db.scalar(select(func.count()).select_from(WebSession).where(WebSession.user_id == user_id)) or 0

    def reviewer(self) -> str:
        username = f"rev-{uuid.uuid4().hex[:8]}"
        with self.context.db() as db:
            add_user(db, username, PASSWORD, Role.REVIEWER)
            db.commit()
        return username

    def signed_in(self, username: str, password: str = PASSWORD) -> Browser:
        browser = Browser(self.url)
        assert browser.login(username, password).status_code == 303
        assert browser.get("/review/queue").status_code == 200
        return browser


@pytest.fixture
def served(context: AppContext) -> Iterator[Served]:
    env = {
        "PROCTOR_DATA_DIR": str(context.settings.data_dir),
        "PROCTOR_DATABASE_URL": context.settings.resolved_database_url,
        "LOGNAME": OPERATOR,  # who the audit trail says ran the command (getpass reads it first)
    }
    with BackgroundServer(server_app(context)) as url:
        yield Served(url, context, env)
