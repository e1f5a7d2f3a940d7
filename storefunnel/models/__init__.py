"""All tables; importing this module registers every one on ``Base.metadata``."""

from storefunnel.models.contact import AgeBand, Contact, Identity, Stage, StageChange
from storefunnel.models.cycle import CycleOutbox
from storefunnel.models.ingest import Receipt, Spend, WebhookSecret
from storefunnel.models.messaging import (
    Campaign,
    EmailTemplate,
    Flow,
    FlowEnrollment,
    FlowStep,
    MessageEvent,
    Send,
    Suppression,
)
from storefunnel.models.order import Order, OrderLine, Product
from storefunnel.models.segment import Segment, SegmentMember
from storefunnel.models.touch import Touch
from storefunnel.models.user import ApiKey, KeyKind, Role, User
from storefunnel.models.workspace import Workspace

__all__ = [
    "AgeBand",
    "ApiKey",
    "Campaign",
    "Contact",
    "CycleOutbox",
    "EmailTemplate",
    "Flow",
    "FlowEnrollment",
    "FlowStep",
    "Identity",
    "KeyKind",
    "MessageEvent",
    "Order",
    "OrderLine",
    "Product",
    "Receipt",
    "Role",
    "Segment",
    "SegmentMember",
    "Send",
    "Spend",
    "Stage",
    "StageChange",
    "Suppression",
    "Touch",
    "User",
    "WebhookSecret",
    "Workspace",
]
