"""The Content-Security-Policy of the pages the server sends (`api.guards` puts it on every response).

The review UI loads only its own files. Inline `style` attributes (the timeline's positions) are allowed;
<style> elements and inline scripts are not (`style-src-elem` overrides `style-src` for elements). The incident
report (`review_ui.incident_report`) embeds its evidence frames as data: URIs, so that its PDF renderer fetches
nothing; its page alone also allows data: images.
"""

from __future__ import annotations

_DIRECTIVES = (
    "style-src 'self' 'unsafe-inline'; style-src-elem 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
PAGE_POLICY = f"default-src 'self'; {_DIRECTIVES}"
REPORT_POLICY = f"default-src 'self'; img-src 'self' data:; {_DIRECTIVES}"
