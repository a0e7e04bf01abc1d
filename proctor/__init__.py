"""Proctor: the `proctor` program and the composition root of the product.

It owns the command line, the server (`proctor serve`: the platform API and the review UI in one app,
with the webhook sender), the demo and its sample recording, structured logging, and the wiring from the
settings object to each stage's typed config (`proctor.wiring`, `proctor.processing`). It may import every
other folder; no other folder imports it.
"""
