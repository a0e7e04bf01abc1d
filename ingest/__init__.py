"""Ingest: the object store, the upload protocol, media validation and the metadata database."""
