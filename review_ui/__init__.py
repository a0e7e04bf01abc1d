"""Review UI: the reviewers' and integrity officers' web app.

It owns accounts and sign-in, the prioritised queue, claims and decisions (four eyes on a Rules
Violation), exam reports, the audit trail's pages, the review result a platform receives, and the signed
webhooks that deliver it. It may import `core` and `storage`; it knows nothing of uploads or processing.
"""
