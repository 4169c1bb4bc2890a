"""Nano Banana Pipeline: the shared code of the ingest and generate functions."""
