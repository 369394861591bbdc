"""Sending: the ledger, batch sending, retries and recovery.

Receives its audience as a ready SQL select and its message ready-compiled: it never imports audience,
compose or render's templates.
"""
