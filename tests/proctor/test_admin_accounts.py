"""Operators take access away through the CLI, and the running server honours it on the next request: a revoked
API key is refused with its own code, a disabled user is signed out everywhere and refused at sign-in like any
wrong password, a reset password closes every browser session. Each command is in the audit trail.

The CLI runs in-process (typer's CliRunner) on the same database as a live server (the platform API and the
review UI over real HTTP, real S3), on SQLite and PostgreSQL.
"""

from __future__ import annotations

import uuid

from review_ui.accounts import REFUSED_MESSAGE
from tests.proctor.conftest import OPERATOR, Served
from tests.review_ui.conftest import PASSWORD, Browser

NEW_PASSWORD = "a brand new passphrase"


def signed_out(browser: Browser) -> bool:
    response = browser.get("/review/queue")
    return response.status_code == 303 and response.headers["location"].startswith("/review/login")


def test_a_revoked_key_is_refused_from_the_next_request_with_its_own_code(served: Served) -> None:
    slug = f"plat-{uuid.uuid4().hex[:8]}"
    code, out = served.cli("tenants", "add", slug)
    assert code == 0, out
    first = out.split()[-1]
    code, second = served.cli("tenants", "key", slug, "--label", "rotation")
    assert code == 0, second
    prefix = first.split("_")[1]
    assert served.api_status(first)[0] == 404

    listed = served.keys(slug)
    assert set(listed) == {f"pp_{prefix}", f"pp_{second.split('_')[1]}"}
    assert "rotation" in listed[f"pp_{second.split('_')[1]}"] and first not in str(listed)
    assert all(row.count("UTC") == 1 for row in listed.values()), "created, not revoked"

    code, out = served.cli("tenants", "revoke-key", f"pp_{prefix}")
    assert code == 0, out
    assert served.api_status(first) == (401, "api_key_revoked")
    assert served.api_status(second)[0] == 404, "the tenant's other key still works"
    forged = f"pp_{prefix}_{'x' * 43}"
    assert served.api_status(forged) == (401, "unauthorized"), "only the key's holder learns it was revoked"

    listed = served.keys(slug)
    assert listed[f"pp_{prefix}"].count("UTC") == 2, "the revoked key shows when it was created and revoked"
    assert listed[f"pp_{second.split('_')[1]}"].count("UTC") == 1

    (entry,) = served.audited("revoke_api_key")
    assert entry.actor == f"cli:{OPERATOR}" and entry.detail["prefix"] == prefix and entry.tenant_id is not None

    code, out = served.cli("tenants", "revoke-key", prefix)
    assert code == 2 and "already revoked" in out
    code, out = served.cli("tenants", "revoke-key", "pp_000000000000")
    assert code == 2 and "no API key with prefix" in out
    code, out = served.cli("tenants", "keys", "nosuch-tenant")
    assert code == 2 and "no tenant" in out
    assert len(served.audited("revoke_api_key")) == 1, "refused commands are not audited"


def test_revoking_the_last_key_says_how_to_issue_one(served: Served) -> None:
    slug = f"plat-{uuid.uuid4().hex[:8]}"
    key = served.cli("tenants", "add", slug)[1].split()[-1]
    code, out = served.cli("tenants", "revoke-key", key)  # the whole key pasted in names its prefix
    assert code == 0, out
    assert f"proctor tenants key {slug}" in out
    assert served.api_status(key) == (401, "api_key_revoked")


def test_a_disabled_user_is_signed_out_everywhere_and_refused_like_a_wrong_password(served: Served) -> None:
    username = served.reviewer()
    laptop, tablet = served.signed_in(username), served.signed_in(username)
    assert served.open_sessions(username) == 2

    code, out = served.cli("users", "disable", username)
    assert code == 0, out
    assert "2 browser session(s) closed" in out
    assert served.open_sessions(username) == 0
    assert signed_out(laptop) and signed_out(tablet)

    refused = Browser(served.url).login(username, PASSWORD)
    wrong = Browser(served.url).login(f"nobody-{uuid.uuid4().hex[:6]}", PASSWORD)
    assert refused.status_code == wrong.status_code == 401
    assert REFUSED_MESSAGE in refused.text and REFUSED_MESSAGE in wrong.text
    failed = [e for e in served.audited("login_failed") if e.actor == f"user:{username}"]
    assert [e.detail["reason"] for e in failed] == ["account_disabled"]

    code, out = served.cli("users", "disable", username)
    assert code == 2 and "already disabled" in out

    code, out = served.cli("users", "enable", username)
    assert code == 0, out
    served.signed_in(username).close()  # the same password works again
    code, out = served.cli("users", "enable", username)
    assert code == 2 and "is not disabled" in out

    (disabled,) = served.audited("disable_user")
    (enabled,) = served.audited("enable_user")
    assert disabled.actor == enabled.actor == f"cli:{OPERATOR}"
    assert disabled.detail == {"username": username, "sessions_closed": 2}
    assert enabled.detail == {"username": username}
    code, out = served.cli("users", "disable", "nobody-at-all")
    assert code == 2 and "no user 'nobody-at-all'" in out


def test_a_password_reset_signs_the_user_out_of_every_browser(served: Served) -> None:
    username = served.reviewer()
    browser = served.signed_in(username)

    code, out = served.cli("users", "reset-password", username, "--password-stdin", stdin="too short\n")
    assert code == 2 and "at least 12 characters" in out
    assert not signed_out(browser), "a refused reset changes nothing"

    code, out = served.cli("users", "reset-password", username, "--password-stdin", stdin=NEW_PASSWORD + "\n")
    assert code == 0, out
    assert "1 browser session(s) closed" in out
    assert signed_out(browser)
    assert Browser(served.url).login(username, PASSWORD).status_code == 401
    served.signed_in(username, NEW_PASSWORD).close()

    (entry,) = served.audited("reset_password")
    assert entry.actor == f"cli:{OPERATOR}" and entry.detail == {"username": username, "sessions_closed": 1}
    code, out = served.cli("users", "reset-password", "nobody-at-all", "--password-stdin", stdin=NEW_PASSWORD + "\n")
    assert code == 2 and "no user 'nobody-at-all'" in out
