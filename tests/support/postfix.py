"""A real relay for tests: Debian's Postfix with a configuration directory, queue and data of its own, listening
on 127.0.0.1 and a free port. It relays everything to `relayhost` (a test SMTP server downstream), sends mail
for the bounce domain to our receiver (transport_maps), and gives up on a deferred message at once
(maximal_queue_lifetime = 0: one attempt), so its DSNs come back within seconds. Stopped by its own
`postfix -c DIR stop`."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

POSTFIX = "/usr/sbin/postfix"

# Only the services this relay needs; nothing chrooted (its queue is a temporary directory).
MASTER_CF = """\
{listen}  inet  n  -  n  -  -  smtpd
pickup    unix  n  -  n  60  1  pickup
cleanup   unix  n  -  n  -  0  cleanup
qmgr      unix  n  -  n  300  1  qmgr
rewrite   unix  -  -  n  -  -  trivial-rewrite
bounce    unix  -  -  n  -  0  bounce
defer     unix  -  -  n  -  0  bounce
trace     unix  -  -  n  -  0  bounce
verify    unix  -  -  n  -  1  verify
flush     unix  n  -  n  1000?  0  flush
proxymap  unix  -  -  n  -  -  proxymap
smtp      unix  -  -  n  -  -  smtp
relay     unix  -  -  n  -  -  smtp
showq     unix  n  -  n  -  -  showq
error     unix  -  -  n  -  -  error
retry     unix  -  -  n  -  -  error
discard   unix  -  -  n  -  -  discard
anvil     unix  -  -  n  -  1  anvil
scache    unix  -  -  n  -  1  scache
postlog   unix-dgram  n  -  n  -  1  postlogd
"""


class PostfixUnavailable(RuntimeError):
    pass


class Postfix:
    def __init__(self, port: int, relayhost: int, routes: dict[str, int]):
        """`routes`: domain → a port on 127.0.0.1 that takes that domain's mail (our bounce receiver)."""
        self.port, self.relayhost, self.routes = port, relayhost, routes
        self.root = Path(tempfile.mkdtemp(prefix="mailer-postfix-"))
        self.root.chmod(0o755)
        self.config = self.root / "etc"
        self.started = False

    def main_cf(self) -> str:
        routes = ", ".join(f"{domain}=smtp:[127.0.0.1]:{port}" for domain, port in self.routes.items())
        return f"""\
compatibility_level = 3.6
queue_directory = {self.root}/queue
data_directory = {self.root}/data
maillog_file = {self.root}/postfix.log
maillog_file_prefixes = {self.root}
mail_owner = postfix
setgid_group = postdrop
myhostname = relay.hospital.test
mydomain = hospital.test
myorigin = $myhostname
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
relayhost = [127.0.0.1]:{self.relayhost}
transport_maps = inline:{{ {routes} }}
smtp_dns_support_level = disabled
smtp_tls_security_level = none
smtpd_tls_security_level = none
maximal_queue_lifetime = 0
bounce_queue_lifetime = 0
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
delay_warning_time = 0
notify_classes =
smtputf8_enable = no
in_flow_delay = 0
smtp_connect_timeout = 5s
"""

    def _postfix(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            [POSTFIX, "-c", str(self.config), *args], capture_output=True, text=True, timeout=timeout, check=False
        )

    def start(self) -> None:
        if not os.access(POSTFIX, os.X_OK):
            raise PostfixUnavailable(f"{POSTFIX} is not installed (Debian package postfix)")
        if os.getuid() != 0:
            raise PostfixUnavailable("Postfix's master must be started as root (these tests run as another user)")
        self.config.mkdir()
        (self.config / "main.cf").write_text(self.main_cf())
        (self.config / "master.cf").write_text(MASTER_CF.format(listen=f"127.0.0.1:{self.port}"))
        for sub in ("queue", "data"):
            (self.root / sub).mkdir()
        shutil.chown(self.root / "data", "postfix", "postfix")
        # set-permissions makes the queue's directories with the owners Postfix wants; start checks and runs it.
        made = self._postfix("set-permissions")
        started = self._postfix("start") if made.returncode == 0 else made
        if started.returncode != 0:
            raise PostfixUnavailable(f"postfix could not start: {(started.stderr or started.stdout).strip()[-800:]}")
        self.started = True
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(200).startswith(b"220"):
                        return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise PostfixUnavailable(f"postfix did not answer on port {self.port}: {self.log()[-800:]}")

    def log(self) -> str:
        path = self.root / "postfix.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.started:
            self._postfix("stop")
            self.started = False
        shutil.rmtree(self.root, ignore_errors=True)
