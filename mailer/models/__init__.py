"""ORM models, one module per aggregate. Import from here so every table is registered."""

from .admin import ROLES, AdminUser, ApiToken
from .base import Base, utcnow
from .deliveries import DELIVERY_STATUSES, FINAL_STATUSES, Delivery
from .issues import Issue
from .subscribers import (
    AREAS,
    FREQUENCIES,
    ConsentEvent,
    Subscriber,
    Subscription,
    Suppression,
    email_hash,
    email_key,
)
from .topics import SEED_TOPICS, Topic

__all__ = [
    "AREAS",
    "DELIVERY_STATUSES",
    "FINAL_STATUSES",
    "FREQUENCIES",
    "ROLES",
    "AdminUser",
    "ApiToken",
    "Base",
    "ConsentEvent",
    "Delivery",
    "Issue",
    "SEED_TOPICS",
    "Subscriber",
    "Subscription",
    "Suppression",
    "Topic",
    "email_hash",
    "email_key",
    "utcnow",
]
