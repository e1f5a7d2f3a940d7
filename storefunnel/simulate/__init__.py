"""The store simulator: a realistic shop with planted truth."""

from storefunnel.simulate.engine import simulate_store

__all__ = ["simulate_store"]
