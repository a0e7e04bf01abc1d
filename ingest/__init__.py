"""Ingest: the upload protocol, and nothing else.

It owns registering a session, resumable checksummed parts (through the API or presigned S3 URLs),
completing and validating an upload (the media probe, the event-log parser, hashing in one pass), the
request and response schemas, erasure on the platform's request, and the platform-side client. It may
import `core` and `storage`; it knows nothing of processing or review (a completed upload only queues a
job through `core.jobs`).
"""
