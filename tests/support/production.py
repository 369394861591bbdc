"""A production environment that passes every rule MAILER_ENV=production checks (mailer.config.production_problems):
tests of production defaults start from it and change what they test."""

from __future__ import annotations

from pathlib import Path

STRONG = "kq3W-9zP_x7LmV2bN8cR4tY6uH1jD5sA0fG"  # 36 characters, 35 different


def production_env(var_dir: Path) -> dict[str, str]:
    return {
        "MAILER_ENV": "production",
        "DATABASE_URL": "postgresql://mailer:pw@db.internal:5432/mailer",
        "REDIS_URL": "redis://redis.internal:6379/0",
        "SMTP_URL": "smtp://relay.internal:587?starttls=1",
        "BASE_URL": "https://updates.trust.test",
        "SECRET_KEY": STRONG,
        "EMAIL_HASH_KEY": STRONG[::-1],
        "MAIL_FROM": "Trust Matters <news@trust.test>",
        "VAR_DIR": str(var_dir),
    }
