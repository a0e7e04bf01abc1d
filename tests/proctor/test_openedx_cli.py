"""`proctor openedx`: an operator adds an Open edX installation, lists it and revokes it, and the running server
honours each step on edX's next call (its OAuth token endpoint). Each command is in the audit trail."""

from __future__ import annotations

import re
import uuid

import httpx

from core.lms_tables import EdxClient
from tests.proctor.conftest import Served


def token_answer(served: Served, client_id: str, secret: str) -> httpx.Response:
    """What edX's OAuth client gets from the server for these credentials."""
    return httpx.post(
        f"{served.url}/openedx/oauth2/access_token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret, "token_type": "jwt"},
        timeout=30,
    )


def test_an_operator_adds_lists_and_revokes_an_open_edx_client(served: Served) -> None:
    slug = f"lms-{uuid.uuid4().hex[:8]}"
    assert served.cli("tenants", "add", slug)[0] == 0
    code, out = served.cli(
        "openedx", "add-client", slug, "--lms-url", "https://lms.example.org/", "--lms-client-id", "our-client",
        "--lms-client-secret-stdin", stdin="the-lms-secret\n",
    )  # fmt: skip
    assert code == 0, out
    client_id = re.search(r"client_id: (\S+)", out)[1]  # type: ignore[index]
    secret = re.search(r"client_secret: (\S+)", out)[1]  # type: ignore[index]
    with served.context.db() as db:
        row = db.query(EdxClient).filter_by(client_id=client_id).one()
        assert row.lms_url == "https://lms.example.org" and row.lms_client_id == "our-client"
        assert secret not in row.secret_sealed and "the-lms-secret" not in (row.lms_secret_sealed or "")
    assert token_answer(served, client_id, secret).status_code == 200
    assert token_answer(served, client_id, secret + "x").json()["error"] == "invalid_client"

    code, out = served.cli("openedx", "clients", slug)
    assert code == 0 and client_id in out and secret not in out

    assert served.cli("openedx", "revoke-client", client_id)[0] == 0
    refused = token_answer(served, client_id, secret)
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
    assert [e.detail["client_id"] for e in served.audited("add_edx_client")] == [client_id]
    assert [e.detail["client_id"] for e in served.audited("revoke_edx_client")] == [client_id]

    code, out = served.cli("openedx", "add-client", "no-such-tenant", "--lms-url", "https://lms.example.org")
    assert code != 0 and "no tenant 'no-such-tenant'" in out
