"""Ingest: the Segment-compatible tracking API, store webhooks and CSV import, into contacts, touches and orders."""
