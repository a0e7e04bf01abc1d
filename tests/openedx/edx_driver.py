"""Drive our backend with edx-proctoring's own REST client, as the LMS does (run by a venv holding
edx-proctoring, edx-rest-api-client and proctor-edx; never imported by the test suite itself).

Usage: python edx_driver.py <base_url> <client_id> <client_secret>. Prints one JSON line per call,
`{"call": <name>, "result": <what the backend method returned>}`, or `{"call", "error"}` if it raised.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

import django
from django.conf import settings

settings.configure(
    SECRET_KEY="edx-driver",
    SITE_NAME="lms.example.org",
    PLATFORM_NAME="Test LMS",
    LMS_ROOT_URL="https://lms.example.org",
    LANGUAGE_CODE="en",
    USE_I18N=True,
    USE_TZ=True,
    DEFAULT_FROM_EMAIL="noreply@example.org",
    CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
    INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes"],
    PROCTORING_SETTINGS={},
    PROCTORING_USER_OBFUSCATION_KEY="driver-key",
)
django.setup()


def say(call: str, action: Callable[[], Any]) -> Any:
    try:
        result = action()
    except Exception as exc:  # reported to the test, which fails on it
        print(json.dumps({"call": call, "error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()}))
        return None
    print(json.dumps({"call": call, "result": result}), flush=True)
    return result


def main(base_url: str, client_id: str, client_secret: str) -> None:
    found = entry_points(group="openedx.proctoring", name="proctor_pipeline")
    backend_class = next(iter(found)).load()
    backend = backend_class(base_url=base_url, client_id=client_id, client_secret=client_secret)
    print(json.dumps({"call": "backend", "result": f"{backend_class.__module__}.{backend_class.__name__}"}))

    from django.utils import translation

    say("get_proctoring_config", backend.get_proctoring_config)
    with translation.override("fr"):
        say("get_proctoring_config_fr", backend.get_proctoring_config)
    exam = {
        "id": 7,
        "course_id": "course-v1:Org+C101+2026",
        "content_id": "block-v1:Org+C101+2026+type@sequential+block@final",
        "external_id": None,
        "exam_name": "Final exam",
        "time_limit_mins": 60,
        "is_proctored": True,
        "is_practice_exam": False,
        "is_active": True,
        "due_date": None,
        "hide_after_due": False,
        "backend": "proctor_pipeline",
        "rules": {"allow_notes": True, "record_screen": True},
    }
    external_id = say("on_exam_saved_create", lambda: backend.on_exam_saved(dict(exam)))
    exam.update(external_id=external_id, exam_name="Final exam (v2)", rules={"allow_multiple_monitors": True})
    say("on_exam_saved_update", lambda: backend.on_exam_saved(dict(exam)))
    say("get_exam", lambda: backend.get_exam({"id": external_id}))

    def register(user_id: str) -> Any:
        context = {
            "lms_host": "https://lms.example.org",
            "time_limit_mins": 60,
            "attempt_code": "ABC-123",
            "is_sample_attempt": False,
            "user_id": user_id,
            "full_name": "Ada Lovelace",
            "email": "ada@example.org",
        }
        return backend.register_exam_attempt({"id": 7, "external_id": external_id}, context)

    first = say("register_exam_attempt", lambda: register("learner-a"))
    second = say("register_exam_attempt_2", lambda: register("learner-b"))
    print(json.dumps({"call": "attempts", "result": [first, second]}), flush=True)
    sys.stdin.readline()  # the test runs both attempts' recorders (start, ready, an upload) before we go on
    say("start_exam_attempt", lambda: backend.start_exam_attempt(external_id, first))
    attempt = {"external_id": first, "proctored_exam": {"external_id": external_id}}
    say("get_attempt", lambda: backend.get_attempt(attempt))
    say("stop_exam_attempt", lambda: backend.stop_exam_attempt(external_id, first))
    say("mark_erroneous_exam_attempt", lambda: backend.mark_erroneous_exam_attempt(external_id, second))
    say("remove_exam_attempt", lambda: backend.remove_exam_attempt(external_id, second))
    say("remove_exam_attempt_again", lambda: backend.remove_exam_attempt(external_id, second))
    say("retire_user", lambda: backend.retire_user("learner-a"))
    say(
        "get_instructor_url",
        lambda: backend.get_instructor_url(
            "course-v1:Org+C101+2026",
            {"id": 1, "full_name": "Staff", "email": "staff@example.org"},
            exam_id=external_id,
        ),
    )


if __name__ == "__main__":
    main(*sys.argv[1:4])
