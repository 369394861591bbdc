"""Celery entry point: `celery -A worker worker` and `celery -A worker beat`."""

from mailer.tasks import bootstrap

app = bootstrap()
