"""Celery entry point in a checkout: `celery -A worker worker`, `celery -A worker beat` (installed: mailer.worker)."""

from mailer.worker import app

__all__ = ["app"]
