"""The dashboard: server-rendered pages organised by the two hats, Marketing and Sales, and Together."""

from __future__ import annotations

from fastapi import FastAPI


def install_dashboard(app: FastAPI) -> None:
    """Mount the dashboard's routes, static files and session middleware on ``app``."""
