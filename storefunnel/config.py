"""One settings object, read from ``STOREFUNNEL_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = Path("var")
DEV_SECRET = "dev-only-not-secret"


class Settings(BaseSettings):
    """Where the data lives and how the app behaves; secrets must be set outside dev."""

    model_config = SettingsConfigDict(env_prefix="STOREFUNNEL_", extra="ignore")

    env: Literal["dev", "test", "prod"] = "dev"
    database_url: str = ""
    data_dir: Path = DEFAULT_DATA_DIR
    secret_key: str = DEV_SECRET
    smtp_url: str = "smtp://127.0.0.1:8025"
    public_url: str = "http://127.0.0.1:8000"
    # Optional: workers block on Redis and wake at once when work is enqueued; the database stays the queue.
    redis_url: str = ""
    redis_prefix: str = "storefunnel"
    login_attempts_per_minute: int = 10
    # Analytics: the live database, a DuckDB snapshot, or auto (snapshots for large stores; insight/snapshots.py).
    analytics_engine: Literal["auto", "database", "duckdb"] = "auto"
    snapshot_min_contacts: int = 50_000
    snapshot_max_age_s: int = 3600
    max_page_size: int = 500
    # PostgreSQL memory for the full cycle recompute's one sort of every fact, in MB (that transaction only):
    # about 760 MB keeps 1M contacts / 10M touches in memory; less spills to disk and is slower, never wrong.
    cycle_recompute_work_mem_mb: int = Field(default=1536, ge=4, le=65536)

    @model_validator(mode="after")
    def _defaults(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'storefunnel.db').as_posix()}"
        if self.env == "prod" and self.secret_key == DEV_SECRET:
            raise ValueError("STOREFUNNEL_SECRET_KEY must be set to a real secret when STOREFUNNEL_ENV=prod")
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache
def get_settings() -> Settings:
    return Settings()
