"""What one anonymous view of the public archive costs, for an ordinary issue and the heaviest one allowed.

Three Markdown inputs are measured first, per 1,000 characters, through the renderer (markdown-it-py and nh3,
HTML and text parts): ordinary prose with links and lists, and the two costliest patterns found (`![` repeated,
and `[` repeated: every opener is tried as a link). Then, through the services a writer uses (so the limits in
force apply), two issues are sent: a 12-block newsletter of ordinary prose, and the heaviest issue the validators
accept, as many text blocks of `![` as the limits allow. Each page (`/news/<slug>`) is fetched `BENCH_VIEWS`
times (default 5) through the Flask test client; the CPU time (this process) and wall time per view are printed,
and the same for an update at its longest body (`/news/updates/<slug>`). Last, one JSON line. SQLite in a
temporary directory; `BENCH_REDIS_PORT` (default 17611) for the redis-server it starts (the app needs one).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mailer.compose import inputs as limits_in_force  # noqa: E402
from mailer.config import load_settings  # noqa: E402
from mailer.dev.redis_server import server_args  # noqa: E402
from mailer.render.content import markdown_to_html, markdown_to_text  # noqa: E402
from mailer.schema import init_database  # noqa: E402

PROSE = (
    "Project Fusion is bringing community, mental health and learning disability services together across "
    "Hampshire and the Isle of Wight. Read [the plan](https://example.nhs.uk/plan) and **tell us** what you think.\n\n"
    "* Community services\n* Mental health services\n* Learning disability services\n\n"
)


def _per_thousand(source: str) -> float:
    started = time.process_time()
    markdown_to_html(source)
    markdown_to_text(source)
    return (time.process_time() - started) * 1000 / (len(source) / 1000)


def _limits() -> dict:
    """The limits in force: per text block, per issue (if any), blocks per issue, per update body."""
    return {
        "blocks": limits_in_force.MAX_BLOCKS,
        "text": limits_in_force.TEXT_MAX,
        "issue_text": limits_in_force.ISSUE_TEXT_MAX,
        "update_body": limits_in_force.UPDATE_BODY_MAX,
    }


def _heaviest_blocks(limits: dict) -> list[dict]:
    """Full text blocks of `![` up to the issue's limit, the last one holding what is left."""
    sizes, left = [], limits["issue_text"]
    while left > 0 and len(sizes) < limits["blocks"]:
        sizes.append(min(limits["text"], left))
        left -= sizes[-1]
    return [{"type": "text", "markdown": "![" * (size // 2)} for size in sizes]


def _send(rt, subject: str, blocks: list[dict]) -> tuple[str, float]:
    """Send an issue through the services; returns its slug and the CPU milliseconds `request_send` took."""
    from mailer.audience.lookups import parse_in
    from mailer.compose.inputs import IssueInput
    from mailer.compose.issues import approve_issue, create_issue, request_send, submit_issue

    with rt.db.transaction() as session:
        written = {"subject": subject, "body": "", "topic": "trust-matters", "blocks": blocks}
        issue = create_issue(session, parse_in(session, IssueInput, written))
        submit_issue(session, issue.id)
        approve_issue(session, issue.id)
        started = time.process_time()
        slug = request_send(session, issue.id).slug
        return slug, (time.process_time() - started) * 1000


def _publish(rt, body: str) -> str:
    from mailer.audience.lookups import parse_in
    from mailer.compose.inputs import UpdateInput
    from mailer.compose.updates import create_update, publish_update

    with rt.db.transaction() as session:
        data = parse_in(session, UpdateInput, {"title": "A long update", "topic": "project-fusion", "body": body})
        update = create_update(session, data)
        publish_update(session, update.id)
        return update.slug


def _views(client, path: str, count: int) -> dict:
    cpu, wall = [], []
    for _ in range(count):
        c0, w0 = time.process_time(), time.perf_counter()
        response = client.get(path)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
        assert response.status_code == 200, (path, response.status_code)
    return {
        "cpu_ms_median": round(statistics.median(cpu) * 1000, 2),
        "wall_ms_median": round(statistics.median(wall) * 1000, 2),
        "first_view_cpu_ms": round(cpu[0] * 1000, 2),
        "bytes": len(response.data),
    }


def main() -> None:
    views = int(os.environ.get("BENCH_VIEWS", "5"))
    limits = _limits()
    n = 20_000
    result: dict = {
        "limits": limits,
        "markdown_cpu_ms_per_1000_chars": {
            "prose": round(_per_thousand((PROSE * (n // len(PROSE) + 1))[:n]), 3),
            "![ repeated": round(_per_thousand("![" * (n // 2)), 3),
            "[ repeated": round(_per_thousand("[" * n), 3),
        },
    }
    for name, value in result["markdown_cpu_ms_per_1000_chars"].items():
        print(f"markdown {name:14} {value:8.3f} ms CPU per 1,000 characters (HTML and text)")
    print("limits:", ", ".join(f"{k} {v:,}" for k, v in limits.items()))

    with tempfile.TemporaryDirectory(prefix="archive-bench-") as tmp:
        work = Path(tmp)
        port = int(os.environ.get("BENCH_REDIS_PORT", "17611"))
        args = server_args(port, work / "redis")
        args[args.index("--appendonly") + 1] = "no"
        redis_proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            redis_url = f"redis://127.0.0.1:{port}/0"
            for _ in range(100):
                try:
                    redis.Redis.from_url(redis_url).ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.05)
            database_url = f"sqlite:///{work / 'bench.db'}"
            init_database(database_url)
            settings = load_settings(
                {
                    "DATABASE_URL": database_url,
                    "REDIS_URL": redis_url,
                    "SMTP_URL": "smtp://127.0.0.1:9",
                    "SECRET_KEY": "bench-secret",
                    "VAR_DIR": str(work / "var"),
                    "BASE_URL": "http://bench.test",
                }
            )
            from mailer.web import create_app

            app = create_app(settings)
            rt = app.extensions["mailer"]
            client = app.test_client()

            ordinary = [{"type": "heading", "text": "This month"}] + [
                {"type": "text", "markdown": PROSE * 4} for _ in range(11)
            ]
            heaviest = _heaviest_blocks(limits)
            ordinary_slug, ordinary_send = _send(rt, "Ordinary", ordinary)
            heaviest_slug, heaviest_send = _send(rt, "Heaviest", heaviest)
            cases = {
                "ordinary issue (12 blocks, prose)": ("/news/" + ordinary_slug, ordinary, ordinary_send),
                f"heaviest issue allowed ({len(heaviest)} blocks of '![')": (
                    "/news/" + heaviest_slug,
                    heaviest,
                    heaviest_send,
                ),
                "update, longest body of '!['": (
                    "/news/updates/" + _publish(rt, "![" * (limits["update_body"] // 2)),
                    [{"markdown": "x" * limits["update_body"]}],
                    None,
                ),
            }
            client.get("/news")  # the first request of a process compiles templates: not a view's cost
            result["views"] = {}
            for name, (path, content, send_ms) in cases.items():
                chars = sum(len(b.get("markdown", "")) for b in content)
                figures = _views(client, path, views) | {"markdown_chars": chars}
                if send_ms is not None:
                    figures["request_send_cpu_ms"] = round(send_ms, 1)
                result["views"][name] = figures
                sent = f"sending {send_ms:8.1f} ms CPU; " if send_ms is not None else " " * 27
                print(
                    f"{name:40} {chars:9,} chars  {sent}first view {figures['first_view_cpu_ms']:9.1f} ms CPU; "
                    f"then median {figures['cpu_ms_median']:9.1f} ms CPU, {figures['wall_ms_median']:7.1f} ms wall"
                )
            rt.db.dispose()
        finally:
            redis_proc.terminate()
            redis_proc.wait(10)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
