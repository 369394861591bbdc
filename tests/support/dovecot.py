"""A real IMAP server for tests: Debian's Dovecot with a configuration of its own (its own base directory,
a passwd-file with one user, maildirs under a temporary directory, plain IMAP on a free port of 127.0.0.1),
started in the foreground and stopped by its pid."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DOVECOT = "/usr/sbin/dovecot"
USER, PASSWORD = "bounces", "a test password"


class DovecotUnavailable(RuntimeError):
    pass


def _owner() -> tuple[int, int, str]:
    """Mail processes may not run as root: as root, the mailbox belongs to `nobody`."""
    if os.getuid() != 0:
        return os.getuid(), os.getgid(), pwd.getpwuid(os.getuid()).pw_name
    nobody = pwd.getpwnam("nobody")
    return nobody.pw_uid, nobody.pw_gid, "root"


def _config(root: Path, port: int, uid: int, gid: int, internal: str) -> str:
    users = "dovecot" if os.getuid() == 0 else internal
    login = "dovenull" if os.getuid() == 0 else internal
    return f"""
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = {users}
default_login_user = {login}
first_valid_uid = {min(uid, 500)}
first_valid_gid = {min(gid, 500)}
mail_location = maildir:{root}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""


class Dovecot:
    """Its directory is made here, readable by Dovecot's own users (a test's tmp_path is not), and removed by
    `stop`."""

    def __init__(self, port: int):
        self.root = Path(tempfile.mkdtemp(prefix="mailer-dovecot-"))
        self.root.chmod(0o755)
        self.port = port
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"imap://{USER}:{PASSWORD.replace(' ', '%20')}@127.0.0.1:{self.port}/INBOX"

    def start(self) -> None:
        if not os.access(DOVECOT, os.X_OK):
            raise DovecotUnavailable(f"{DOVECOT} is not installed (Debian package dovecot-imapd)")
        uid, gid, internal = _owner()
        for sub in ("run", "state", f"mail/{USER}"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}::::::\n")
        for path in (self.root / "mail", self.root / "mail" / USER):
            os.chown(path, uid, gid)
        config = self.root / "dovecot.conf"
        config.write_text(_config(self.root, self.port, uid, gid, internal))
        self.proc = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                said = self.proc.stdout.read().decode(errors="replace") + self._log()
                raise DovecotUnavailable(f"dovecot exited at start: {said.strip()[-800:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(200).startswith(b"* OK"):
                        return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise DovecotUnavailable(f"dovecot did not answer on port {self.port}: {self._log()[-800:]}")

    def _log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc is not None and self.proc.stdout:
            self.proc.stdout.close()
        self.proc = None
        shutil.rmtree(self.root, ignore_errors=True)
