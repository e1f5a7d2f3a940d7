"""The five-stage sales cycle: every contact's stage as an always-current fact, with its history.

Ingest calls ``on_facts_changed`` after writing touches or orders; a scheduler calls ``tick``.
"""

from storefunnel.cycle.events import StageTransition, subscribe
from storefunnel.cycle.service import on_facts_changed, recompute, tick, update_contacts

__all__ = ["StageTransition", "on_facts_changed", "recompute", "subscribe", "tick", "update_contacts"]
