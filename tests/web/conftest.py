from __future__ import annotations

import uuid

import pytest
from sqlalchemy.orm import Session

from storefunnel.models import User, Workspace
from storefunnel.workspaces.service import create_user
from tests.web.helpers import PASSWORD


@pytest.fixture
def user(session: Session, workspace: Workspace) -> User:
    return create_user(session, workspace.id, f"owner-{uuid.uuid4().hex[:8]}@example.com", PASSWORD)
