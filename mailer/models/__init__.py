"""ORM models, one module per aggregate. Import from here so every table is registered."""

from .admin import ROLES, AdminSession, AdminUser, ApiToken, PasswordReset, RecoveryCode, SignInLockout
from .areas import SEED_AREAS, Area
from .audit import AuditEvent
from .base import MAX_ID, Base, utcnow
from .content import Media, Update
from .deliveries import DELIVERY_STATUSES, FINAL_STATUSES, Delivery
from .digests import DigestRun, DigestRunSubscriber
from .feedback import FEEDBACK_KINDS, FEEDBACK_SOURCES, RECIPIENT_FILTERS, SEVERITIES, FeedbackEvent
from .figures import TopicCount
from .identities import ExternalIdentity
from .imports import IMPORT_STATUSES, Import, ImportChunk
from .issues import EDITABLE, ISSUE_STATUSES, FrozenContent, Issue
from .keys import EMAIL_HASH, KeyFingerprint, key_fingerprint
from .requests import REQUEST_KINDS, PublicRequest
from .segments import Segment
from .subscribers import (
    AUDIENCES,
    FREQUENCIES,
    FREQUENCY_BITS,
    FREQUENCY_LABELS,
    SERVICES,
    SUBSCRIBER_STATUSES,
    ConsentEvent,
    Subscriber,
    Subscription,
    Suppression,
    address_digest,
    email_hash,
    email_key,
    keyed_hash,
    services_mask,
    services_of,
)
from .topics import MAX_TOPIC_ID, SEED_TOPICS, Topic

__all__ = [
    "Area",
    "SEED_AREAS",
    "MAX_TOPIC_ID",
    "EDITABLE",
    "ISSUE_STATUSES",
    "AuditEvent",
    "DigestRun",
    "DigestRunSubscriber",
    "FEEDBACK_KINDS",
    "FEEDBACK_SOURCES",
    "RECIPIENT_FILTERS",
    "SUBSCRIBER_STATUSES",
    "FeedbackEvent",
    "SEVERITIES",
    "Media",
    "Update",
    "AUDIENCES",
    "DELIVERY_STATUSES",
    "FINAL_STATUSES",
    "FREQUENCIES",
    "FREQUENCY_BITS",
    "FREQUENCY_LABELS",
    "ROLES",
    "AdminSession",
    "AdminUser",
    "ExternalIdentity",
    "ApiToken",
    "PasswordReset",
    "RecoveryCode",
    "SignInLockout",
    "Base",
    "EMAIL_HASH",
    "KeyFingerprint",
    "key_fingerprint",
    "MAX_ID",
    "ConsentEvent",
    "Delivery",
    "Import",
    "ImportChunk",
    "IMPORT_STATUSES",
    "FrozenContent",
    "Issue",
    "PublicRequest",
    "REQUEST_KINDS",
    "SEED_TOPICS",
    "SERVICES",
    "Segment",
    "Subscriber",
    "Subscription",
    "Suppression",
    "Topic",
    "TopicCount",
    "address_digest",
    "email_hash",
    "email_key",
    "keyed_hash",
    "services_mask",
    "services_of",
    "utcnow",
]
