"""The Celery application: `celery -A mailer.worker worker` and `celery -A mailer.worker beat` (worker.py at the
repository root is the same). Bad settings end the process with their list and EX_CONFIG (78), no traceback."""

from .config import exit_on_config_error
from .tasks import bootstrap

with exit_on_config_error():
    app = bootstrap()
