"""Pipelines: signals to flagged segments, Ray fan-out, the job queue and the `proctor` CLI."""
