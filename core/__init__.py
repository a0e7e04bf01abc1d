"""Core: the shared kernel every stage builds on.

It owns the one settings object, the metadata database (tables, engine, migrations), the session state
machine and every status and kind enum, the audit trail, tenants and their API keys, putting jobs on the
queue, erasure and retention, and the app context a process builds once. It may import `storage` (the app
context holds the object store; erasure deletes objects) and nothing else of ours: no stage, no CLI.
"""
