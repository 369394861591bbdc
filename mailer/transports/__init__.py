"""Ways out for a finished message. One small interface: `send(envelope_from, recipient, data)`.

A transport raises `TemporaryFailure` (try again later: 4xx, connection trouble) or `PermanentFailure`
(5xx: never retry, suppress on a hard bounce). It knows nothing of the database.

`transport_for(settings)` is the one every sender uses: SMTP_URL, Amazon SES's API or GOV.UK Notify, as
TRANSPORT says, one per process and thread; `rate_cap(settings)` is the fastest that way out takes.
"""

from __future__ import annotations

from .base import PermanentFailure, TemporaryFailure, Transport
from .smtp import SmtpTransport, reused, smtp_transport_for

__all__ = [
    "PermanentFailure",
    "SmtpTransport",
    "TemporaryFailure",
    "Transport",
    "rate_cap",
    "smtp_transport_for",
    "transport_for",
]


def _key(settings) -> tuple:
    d = settings.deliverability
    if d.transport == "ses":
        return ("ses", d.ses_region, d.ses_endpoint_url, d.ses_configuration_set)
    if d.transport == "notify":
        return ("notify", d.notify_api_key, d.notify_template_id, d.notify_base_url)
    return ("smtp", settings.smtp_url)


def transport_for(settings) -> Transport:
    """The reused transport of TRANSPORT (smtp, ses, notify) for this process and thread: the one every sender
    uses (bulk, transactional, tests). SMTP and SES send our bytes, so they are signed with DKIM when DKIM_* are set
    (transports.dkim); Notify writes its own message and signs it with its own key."""
    from .dkim import signing

    raw = _reused(settings)
    return raw if settings.deliverability.transport == "notify" else signing(raw, settings)


def _reused(settings) -> Transport:
    key = _key(settings)
    if key[0] == "smtp":
        return smtp_transport_for(settings.smtp_url)
    return reused(key, lambda: _make(settings))


def _make(settings) -> Transport:
    d = settings.deliverability
    if d.transport == "ses":
        from .ses import SesTransport

        return SesTransport(d.ses_region, d.ses_endpoint_url, d.ses_configuration_set)
    from .notify import NotifyTransport

    return NotifyTransport(d.notify_api_key, d.notify_template_id, d.notify_base_url)


_caps: dict[tuple, float | None] = {}


def rate_cap(settings) -> float | None:
    """Messages a second the way out takes at most: SES's MaxSendRate (asked once per process), Notify's 50; None
    for SMTP (SEND_RATE alone says)."""
    key = _key(settings)
    if key[0] == "notify":
        from .notify import NOTIFY_MAX_RATE

        return NOTIFY_MAX_RATE
    if key[0] != "ses":
        return None
    if key not in _caps:
        cap = _reused(settings).max_send_rate()
        if cap is None or cap <= 0:
            return None  # asked again next time: SES may answer then
        _caps[key] = cap
    return _caps[key]
