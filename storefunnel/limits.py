"""Input limits every API schema and route shares, whatever the domain."""

from __future__ import annotations

# Ids are signed 64-bit in the database; a larger number can only be a wrong id, so it is refused as input.
MAX_ID = 2**63 - 1
# PostgreSQL text cannot hold NUL: refusing it at the edge gives a 422 naming the field instead of a 500.
NO_NUL = r"^[^\x00]*$"
