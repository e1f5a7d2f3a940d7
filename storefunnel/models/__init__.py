"""All tables; importing this module registers every one on ``Base.metadata``."""

from storefunnel.models.contact import AgeBand, Contact, ContactStage, Identity, Stage, StageChange
from storefunnel.models.cycle import CycleDirty, CycleOutbox
from storefunnel.models.ingest import Receipt, Spend, WebhookSecret
from storefunnel.models.insight import BestSeller, ClvPrediction, ModelFit, RelatedRule
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
from storefunnel.models.scoring import ContactScore, ScoringModel
from storefunnel.models.segment import Segment, SegmentMember
from storefunnel.models.touch import Touch
from storefunnel.models.user import ApiKey, KeyKind, Role, User
from storefunnel.models.workspace import Workspace

__all__ = [
    "AgeBand",
    "ApiKey",
    "BestSeller",
    "Campaign",
    "ClvPrediction",
    "Contact",
    "ContactScore",
    "ContactStage",
    "CycleDirty",
    "CycleOutbox",
    "EmailTemplate",
    "Flow",
    "FlowEnrollment",
    "FlowStep",
    "Identity",
    "KeyKind",
    "MessageEvent",
    "ModelFit",
    "Order",
    "OrderLine",
    "Product",
    "Receipt",
    "RelatedRule",
    "Role",
    "ScoringModel",
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
