"""SEND_RATE: one token bucket in Redis shared by every worker on every machine.

Each caller reserves the tokens it needs and is told how long to wait for them; reserving ahead (the
bucket may go negative) keeps callers in a fair queue instead of all polling at once.
"""

from __future__ import annotations

import time

import redis

_RESERVE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + (now - ts) * rate / 1000000) - want
redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', now)
redis.call('PEXPIRE', KEYS[1], 600000)
if tokens >= 0 then return 0 end
return math.ceil(-tokens * 1000000 / rate)
"""


class SendRate:
    """At most `rate` messages a second across every process that shares `redis_url` and `key`."""

    def __init__(self, redis_url: str, rate: float, key: str = "mailer:send-rate"):
        if rate <= 0:
            raise ValueError("rate must be above zero")
        self.rate = rate
        self.burst = max(rate, 1.0)  # at most one second's worth at once
        self.key = key
        self._redis = redis.Redis.from_url(redis_url)
        self._reserve = self._redis.register_script(_RESERVE)

    def acquire(self, count: int = 1) -> float:
        """Block until `count` messages may go; returns the seconds waited."""
        wait_us = int(self._reserve(keys=[self.key], args=[self.rate, self.burst, count]))
        if wait_us > 0:
            time.sleep(wait_us / 1_000_000)
        return wait_us / 1_000_000
