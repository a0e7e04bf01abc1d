"""API: the platform-facing HTTP API, `/v1`, and its OpenAPI document: what exam platforms integrate against.

Thin FastAPI routes per resource (uploads in `api.sessions`, review outcomes in `api.review`, enrolments
and erasing a candidate in `api.candidates`) over the stages that do the work. It may import `core`,
`storage`, `ingest` (the upload protocol) and `review_ui`'s results (what a platform learns of a review);
nothing imports it but the `proctor` composition root.
"""
