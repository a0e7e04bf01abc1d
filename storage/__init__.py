"""Storage: S3-compatible object storage.

It owns the object-store adapter (the only module that imports `minio`), the sized reader it and the probe
sandbox read through, the embedded SeaweedFS server for one-machine use and the tests, and object keys
(`tenant/exam/session/...`, built only from validated identifiers). It imports nothing else of ours, so any
stage can use it.
"""
