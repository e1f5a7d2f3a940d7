"""Insight: answers to an owner's questions, computed by queries over the facts, with their uncertainty."""
