"""Rate limits: one limiter for the site, counted in Redis so every web process shares the count.

Views decorate themselves with `limiter.limit(...)` and one of the limits named here. The per-address cap on
confirmation mails (audience.subscriptions) protects an inbox; these protect the service.
"""

from __future__ import annotations

from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

# Per client address unless a view says otherwise (key_func).
limiter = Limiter(get_remote_address, strategy="fixed-window")
SUBSCRIBE_LIMIT = "20 per minute; 200 per hour"
LOGIN_LIMIT = "10 per minute; 50 per hour"
# "Forgotten your password?": each form queues a lookup and perhaps a mail (at most 3 an hour reach one account).
RESET_LIMIT = "5 per minute; 30 per hour"
MANAGE_LINK_LIMIT = "5 per minute; 30 per hour"
# Test sends go to any address the team types: enough for checking an issue, too few to mail the world.
TEST_SEND_LIMIT = "10 per minute; 60 per hour"
# One-click unsubscribe (RFC 8058) is posted by mail providers from their own servers, for all their users at
# once: a few addresses carry every Gmail or Yahoo reader's unsubscribes. So the tight limit is per signed link
# (one person's: no provider retries one link more than a few times) and the per-address one only stops a flood.
ONE_CLICK_LINK_LIMIT = "10 per minute; 30 per hour"
ONE_CLICK_ADDRESS_LIMIT = "300 per minute"
# The API, per token (a runaway script) and per address (many tokens, or guessed ones, from one place). A
# website posting its sign-ups, or a sync script, stays far below.
API_TOKEN_LIMIT = "600 per minute"
API_ADDRESS_LIMIT = "1200 per minute"
# The providers' webhooks (api/hooks.py), per address: SNS and Notify post from a few addresses for every message
# sent (Notify up to 3,000 a minute), so the API's per-token and per-address limits are not theirs.
HOOK_LIMIT = "6000 per minute"
