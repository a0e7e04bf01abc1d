"""Detectors: typed frame batches in, typed per-frame signals out. No I/O, no Ray."""
