"""The backend class Open edX loads (entry point `openedx.proctoring`, name `proctor_pipeline`).

Everything is edx-proctoring's `BaseRestProctoringProvider`: it speaks the REST backend protocol
(edx-proctoring's docs/backends.rst) to `base_url`, the proctor-pipeline server's `/openedx` prefix, with the
client id and secret `proctor openedx add-client` printed. The options come from the LMS's
`PROCTORING_BACKENDS["proctor_pipeline"]` (each key becomes an attribute, as edx-proctoring does for every
backend).
"""

from __future__ import annotations

from typing import Any

from edx_proctoring.backends.rest import BaseRestProctoringProvider


class ProctorPipelineBackend(BaseRestProctoringProvider):  # type: ignore[misc]
    """Record-and-review proctoring by a proctor-pipeline server."""

    verbose_name = "Proctor Pipeline"
    supports_onboarding = False  # no onboarding exams: the recorder checks the camera before each attempt

    def __init__(self, client_id: str | None = None, client_secret: str | None = None, **options: Any) -> None:
        base_url = str(options.pop("base_url", "") or "").rstrip("/")
        if not base_url.startswith(("https://", "http://")):
            raise ValueError(
                "PROCTORING_BACKENDS['proctor_pipeline'] needs base_url, the server's /openedx prefix, "
                f"e.g. https://proctor.example.org/openedx; got {base_url!r}"
            )
        options["base_url"] = base_url
        super().__init__(client_id=client_id, client_secret=client_secret, **options)
