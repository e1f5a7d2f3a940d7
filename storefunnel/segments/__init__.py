"""Buying groups (segments): rules compiled to one SQL query, static lists, membership history."""
