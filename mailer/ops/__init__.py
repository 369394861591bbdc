"""Running and watching the service: logs (logs.py, and gunicorn_config.py for gunicorn's own), what never goes
into them or into error reports (redact.py), error reports (sentry.py), the figures /metrics and /healthz read
(figures.py, metrics.py, health.py), the marks workers and beat leave in Redis for them (beacons.py) and
`mailer doctor` (doctor.py, dns_records.py).

Nothing here is a room's use case: it reads what the rooms wrote and never writes to the database.
"""
