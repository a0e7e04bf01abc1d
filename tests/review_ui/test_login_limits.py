"""The login form under hostile load: rate limits, bounded hashing, a lockout that cannot be raced or turned
against the account's owner, and one answer for every refusal.

Password checks are counted by an instrumented Argon2id hasher (the service's parameters, 64 MiB each) that
the app's login gate is given. Different attackers are real client addresses: each HTTP client binds its own
127.0.0.x source address, so the server sees what it would see from different machines.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import timedelta

import httpx
import pytest
from argon2 import PasswordHasher, extract_parameters
from argon2.profiles import RFC_9106_LOW_MEMORY
from sqlalchemy import select

from core.context import AppContext
from core.db import utcnow
from core.tables import User
from core.vocabulary import Role
from proctor.local_server import BackgroundServer
from proctor.wiring import login_policy, server_app
from review_ui.accounts import (
    REFUSED_MESSAGE,
    LoginPolicy,
    LoginRefused,
    Passwords,
    add_user,
    authenticate,
    password_hasher,
)
from review_ui.login_limits import Limit, LoginLimits, Rate, Throttled
from review_ui.sign_in import LoginGate

PASSWORD = "correct horse battery"
REAL_USER_IP, ATTACKER_IP = "127.0.0.2", "127.0.0.9"


# --- the limits alone, on a clock the test steps ----------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


Step = tuple[str, str, str]  # (verb: admit / wait / succeed / refund, address or seconds, username)


def A(address: str, username: str = "ann") -> Step:
    return ("admit", address, username)


# (what it shows, steps, what the last admit answers); limits: 3 per address, 4 per username, 2 failures per pair
LIMIT_CASES: list[tuple[str, list[Step], Throttled | None]] = [
    ("a first attempt goes through", [A("10.0.0.1")], None),
    ("a second failure of the pair goes through", [A("10.0.0.1")] * 2, None),
    ("a third failure of the pair is locked out", [A("10.0.0.1")] * 3, Throttled(Limit.FAILURES, 600)),
    ("another address is not locked out", [A("10.0.0.1")] * 2 + [A("10.0.0.2")], None),
    ("a success clears the pair", [A("10.0.0.1"), A("10.0.0.1"), ("succeed", "10.0.0.1", "ann"), A("10.0.0.1")], None),
    ("a refund gives a failure back", [A("10.0.0.1"), A("10.0.0.1"), ("refund", "10.0.0.1", "ann"), A("10.0.0.1")],
     None),
    ("the pair's lockout ends when its oldest failure leaves the window",
     [A("10.0.0.1"), ("wait", "300", ""), A("10.0.0.1"), ("wait", "300", ""), A("10.0.0.1")], None),
    ("one address spraying usernames is rate limited", [A("10.0.0.1", f"u{i}") for i in range(4)],
     Throttled(Limit.ADDRESS, 60)),
    ("the address window slides", [A("10.0.0.1", f"u{i}") for i in range(3)] + [("wait", "60", ""), A("10.0.0.1")],
     None),
    ("the retry-after counts from the oldest attempt",
     [A("10.0.0.1", "u0"), ("wait", "45.5", ""), A("10.0.0.1", "u1"), A("10.0.0.1", "u2"), A("10.0.0.1", "u3")],
     Throttled(Limit.ADDRESS, 15)),
    ("one username from many addresses is rate limited", [A(f"10.0.1.{i}") for i in range(5)],
     Throttled(Limit.USERNAME, 60)),
    ("a locked-out pair does not use up the username's attempts",
     [A("10.0.0.1")] * 5 + [A(f"10.0.1.{i}") for i in range(2)], None),
    ("unknown and known usernames are alike: the limits hold no account data", [A("10.0.0.1", "nobody")] * 3,
     Throttled(Limit.FAILURES, 600)),
]  # fmt: skip


@pytest.mark.parametrize(("steps", "expected"), [c[1:] for c in LIMIT_CASES], ids=[c[0] for c in LIMIT_CASES])
def test_login_limits(steps: list[Step], expected: Throttled | None) -> None:
    clock = Clock()
    limits = LoginLimits(Rate(3, 60), Rate(4, 60), Rate(2, 600), clock)
    answer: Throttled | None = None
    for verb, address, username in steps:
        if verb == "admit":
            answer = limits.admit(address, username)
        elif verb == "wait":
            clock.now += float(address)
        elif verb == "succeed":
            limits.succeeded(address, username)
        else:
            limits.refund(address, username)
    assert answer == expected


def test_idle_keys_are_forgotten() -> None:
    clock = Clock()
    limits = LoginLimits(Rate(100, 60), Rate(100, 60), Rate(5, 60), clock)
    for i in range(50):
        assert limits.admit(f"10.0.{i}.1", f"user{i}") is None
    assert limits.tracked_keys() == 150
    clock.now += 61
    assert limits.admit("10.9.9.9", "late") is None
    assert limits.tracked_keys() == 3


@pytest.mark.parametrize(("attempts", "window_s"), [(0, 60.0), (5, 0.0), (5, -1.0)])
def test_a_rate_refuses_nonsense(attempts: int, window_s: float) -> None:
    with pytest.raises(ValueError, match="attempts >= 1 and window_s > 0"):
        Rate(attempts, window_s)


def test_passwords_are_hashed_with_argon2id_at_rfc_9106s_low_memory_profile(context: AppContext) -> None:
    """What ships: the suite hashes faster (tests/conftest.py), but the function imported before that swap is the
    service's own, and a stored hash carries its parameters."""
    assert extract_parameters(password_hasher().hash(PASSWORD)) == RFC_9106_LOW_MEMORY
    username = new_user(context, "profile")
    with context.db() as db:
        stored = db.scalar(select(User.password_hash).where(User.username == username))
    assert stored is not None and extract_parameters(stored).memory_cost < RFC_9106_LOW_MEMORY.memory_cost, (
        "the suite's users are hashed with the fast test hasher"
    )


# --- the account-wide backstop, in the database (SQLite and PostgreSQL) ------------------------------------------


class CountingHasher(PasswordHasher):
    """Argon2id with the service's parameters, counting the password checks: in all, and the most at once."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self.running = self.peak = self.checks = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        with self._lock:
            self.running += 1
            self.checks += 1
            self.peak = max(self.peak, self.running)
        try:
            return super().verify(hash, password)
        finally:
            with self._lock:
                self.running -= 1


def policy(context: AppContext, **changes: object) -> LoginPolicy:
    return replace(login_policy(context.settings), **changes)  # type: ignore[arg-type]


def new_user(context: AppContext, label: str) -> str:
    """A reviewer with `PASSWORD`, named uniquely (the PostgreSQL database is shared by the run)."""
    username = f"{label}-{uuid.uuid4().hex[:8]}"
    with context.db() as db:
        add_user(db, username, PASSWORD, Role.REVIEWER)
        db.commit()
    return username


def test_parallel_wrong_guesses_cannot_pass_the_account_limit(context: AppContext) -> None:
    target = new_user(context, "target")
    hasher = CountingHasher()
    passwords = Passwords.using(hasher)
    rules = policy(context, account_max_failures=5)
    now = utcnow()

    def guess(password: str) -> str:
        with context.db() as db:
            try:
                authenticate(db, target, password, now, rules, passwords)
            except LoginRefused as refused:
                return refused.reason
            db.commit()
            return "signed_in"

    with ThreadPoolExecutor(12) as pool:
        reasons = list(pool.map(guess, [f"wrong guess {i}" for i in range(24)]))
    assert reasons.count("wrong_password") == 5 and reasons.count("account_locked") == 19
    assert hasher.checks == 24  # a locked account still costs one check against the dummy hash
    assert guess(PASSWORD) == "account_locked"
    with context.db() as db:
        user = db.scalars(select(User).where(User.username == target)).one()
        assert user.failed_logins == 0 and user.locked_until == now + rules.lockout
    now += rules.lockout
    assert guess(PASSWORD) == "signed_in"


# --- the real server ----------------------------------------------------------------------------------------------


@dataclass
class Server:
    url: str
    hasher: CountingHasher

    def client(self, address: str) -> LoginClient:
        return LoginClient(self.url, address)


class LoginClient(httpx.Client):
    """A browser at one client address, holding the login form's CSRF cookie and token."""

    def __init__(self, url: str, address: str) -> None:
        # No keep-alive: on a loaded machine opening 64 forms takes longer than the server keeps an idle connection
        # (uvicorn: 5 s), and a POST on a connection the server has just closed is reset, not refused.
        transport = httpx.HTTPTransport(local_address=address, limits=httpx.Limits(max_keepalive_connections=0))
        super().__init__(base_url=url, timeout=60, transport=transport)
        self.csrf = ""

    def open_form(self) -> LoginClient:
        found = re.search(r'name="csrf_token" value="([^"]+)"', self.get("/review/login").text)
        assert found is not None
        self.csrf = found[1]
        return self

    def login(self, username: str, password: str) -> httpx.Response:
        if not self.csrf:
            self.open_form()
        return self.post("/review/login", data={"username": username, "password": password, "csrf_token": self.csrf})


def refusal(response: httpx.Response) -> str:
    found = re.search(r'<p class="error" role="alert">([^<]*)</p>', response.text)
    assert found is not None, response.text
    return found[1]


@pytest.fixture
def serve(context: AppContext) -> Iterator[Callable[..., Server]]:
    """Start the review app with a login gate built from the settings and `changes`, around a counting hasher."""
    with ExitStack() as servers:

        def start(**changes: object) -> Server:
            hasher = CountingHasher()
            app = server_app(context)
            app.state.login_gate = LoginGate.for_policy(policy(context, **changes), Passwords.using(hasher))
            return Server(servers.enter_context(BackgroundServer(app)), hasher)

        yield start


def test_64_concurrent_anonymous_logins_hash_at_most_n_at_once_and_the_excess_gets_429(
    serve: Callable[..., Server],
) -> None:
    server = serve(hash_slots=2, hash_wait_s=0.2)
    clients = [server.client(f"127.0.0.{10 + i}").open_form() for i in range(64)]
    start = threading.Barrier(64)

    def attempt(i: int) -> httpx.Response:
        start.wait()
        return clients[i].login(f"nobody-{i}", "some guess at all")

    with ThreadPoolExecutor(64) as pool:
        responses = list(pool.map(attempt, range(64)))
    codes = [r.status_code for r in responses]
    assert set(codes) <= {401, 429}, codes
    assert 1 <= server.hasher.peak <= 2
    assert server.hasher.checks == codes.count(401)  # each refused unknown user cost one dummy check, no more
    busy = [r for r in responses if r.status_code == 429]
    assert busy, "with 2 slots and a 0.2 s wait, 64 simultaneous checks cannot all be served"
    assert all(int(r.headers["retry-after"]) >= 1 for r in busy)
    # The server survived and still answers.
    assert server.client("127.0.0.3").get("/review/login").status_code == 200


def test_rate_limits_answer_429_with_retry_after_before_any_hashing(
    context: AppContext, serve: Callable[..., Server]
) -> None:
    ann = new_user(context, "ann")
    server = serve(per_address=Rate(3, 60), per_username=Rate(5, 60))
    sprayer = server.client("127.0.0.5")
    assert [sprayer.login(f"user{i}", "guess").status_code for i in range(3)] == [401] * 3
    sprayed = sprayer.login("user3", "guess")
    assert sprayed.status_code == 429 and 55 <= int(sprayed.headers["retry-after"]) <= 60
    assert server.hasher.checks == 3
    # Five addresses use up ann's attempts; the sixth waits, whoever it is.
    for i in range(5):
        assert server.client(f"127.0.1.{i + 1}").login(ann, "guess").status_code == 401
    crowded = server.client(REAL_USER_IP).login(ann, PASSWORD)
    assert crowded.status_code == 429 and "retry-after" in crowded.headers
    assert server.hasher.checks == 8


def test_parallel_wrong_guesses_cannot_exceed_max_failures(context: AppContext, serve: Callable[..., Server]) -> None:
    ann = new_user(context, "ann")
    server = serve(max_failures=5, hash_slots=4, hash_wait_s=30)
    clients = [server.client(ATTACKER_IP).open_form() for _ in range(20)]
    start = threading.Barrier(20)

    def guess(i: int) -> int:
        start.wait()
        return clients[i].login(ann, f"wrong guess {i}").status_code

    with ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(guess, range(20)))
    assert codes == [401] * 20
    assert server.hasher.checks == 5
    assert server.client(ATTACKER_IP).login(ann, PASSWORD).status_code == 401  # locked out, even when right


def test_an_attacker_from_another_address_cannot_lock_out_the_real_user(
    context: AppContext, serve: Callable[..., Server]
) -> None:
    ann = new_user(context, "ann")
    server = serve(max_failures=5)
    attacker = server.client(ATTACKER_IP)
    assert [attacker.login(ann, f"wrong guess {i}").status_code for i in range(12)] == [401] * 12
    assert server.hasher.checks == 5
    signed_in = server.client(REAL_USER_IP).login(ann, PASSWORD)
    assert signed_in.status_code == 303 and "pp_session" in signed_in.cookies


def test_every_refusal_reads_the_same_for_unknown_and_known_users(
    context: AppContext, serve: Callable[..., Server]
) -> None:
    ann, locked, disabled = (new_user(context, label) for label in ("ann", "locked", "disabled"))
    with context.db() as db:
        for user in db.scalars(select(User).where(User.username.in_([locked, disabled]))):
            user.locked_until = utcnow() + timedelta(hours=1)
            user.disabled_at = utcnow() if user.username == disabled else None
        db.commit()
    server = serve(max_failures=2)
    answers = {
        "wrong password": server.client("127.0.0.21").login(ann, "wrong guess"),
        "unknown user": server.client("127.0.0.22").login("nobody", "wrong guess"),
        "account locked (right password)": server.client("127.0.0.23").login(locked, PASSWORD),
        "account disabled (right password)": server.client("127.0.0.24").login(disabled, PASSWORD),
    }
    repeated = server.client("127.0.0.25")
    for _ in range(2):
        repeated.login(ann, "wrong guess")
    answers["address locked out (right password)"] = repeated.login(ann, PASSWORD)
    for name, response in answers.items():
        assert response.status_code == 401, name
        assert refusal(response) == REFUSED_MESSAGE, name
    assert server.hasher.checks == 6  # each refusal but the address's lockout cost one check, account or not


def test_a_correct_password_clears_the_failures_of_its_address(
    context: AppContext, serve: Callable[..., Server]
) -> None:
    ann = new_user(context, "ann")
    server = serve(max_failures=3)
    browser = server.client(REAL_USER_IP)
    for _ in range(2):
        assert browser.login(ann, "typo").status_code == 401
    assert browser.login(ann, PASSWORD).status_code == 303
    fresh = server.client(REAL_USER_IP)
    assert [fresh.login(ann, "typo").status_code for _ in range(3)] == [401] * 3
    assert fresh.login(ann, PASSWORD).status_code == 401
    assert server.hasher.checks == 6
