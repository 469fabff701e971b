"""The shared vocabulary of govbridge: messages between stages, config models, canonical enums.

Nothing here imports ``bridge`` or ``adapters``.
"""

from schemas.messages import (
    MESSAGE_MODELS,
    SCHEMA_VERSION,
    Author,
    IncidentSurge,
    Inquiry,
    Message,
    PersonalDataFinding,
    PostRef,
    ReplyPosted,
    ReplyRequest,
    SlaEvent,
    ThreadRef,
    TicketCommand,
    TicketEvent,
    inquiry_id_for,
    stable_id,
)
from schemas.vocab import Category, InquiryKind, Platform, TicketStatus, Visibility

__all__ = [
    "MESSAGE_MODELS",
    "SCHEMA_VERSION",
    "Author",
    "Category",
    "IncidentSurge",
    "Inquiry",
    "InquiryKind",
    "Message",
    "PersonalDataFinding",
    "Platform",
    "PostRef",
    "ReplyPosted",
    "ReplyRequest",
    "SlaEvent",
    "ThreadRef",
    "TicketCommand",
    "TicketEvent",
    "TicketStatus",
    "Visibility",
    "inquiry_id_for",
    "stable_id",
]
