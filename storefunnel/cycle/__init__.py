"""The five-stage sales cycle: every contact's stage as an always-current fact, with its history.

Orders and email events call ``on_facts_changed`` in their transaction; the tracking API only marks the contacts
it touched (``cycle.dirty``), which the worker drains every few seconds; a scheduler calls ``tick``.
"""

from storefunnel.cycle.events import StageTransition, subscribe
from storefunnel.cycle.service import on_facts_changed, recompute, tick, update_contacts

__all__ = ["StageTransition", "on_facts_changed", "recompute", "subscribe", "tick", "update_contacts"]
