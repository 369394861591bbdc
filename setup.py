"""What pyproject.toml cannot say: the wheel carries templates/ and migrations/ inside the package.

They stay at the top of the repository, where the project's layout has them and where every migration is written,
and a wheel can only hold what is under a package, so they are mapped to mailer/_shipped/templates and
mailer/_shipped/migrations (mailer.config.shipped() finds either). The static files, NHS.UK assets included (copied
in by `make assets` first), are the web package's data. tests/test_packaging.py builds the wheel and installs it.
"""

from setuptools import find_packages, setup

SHIPPED = {"mailer._shipped.templates": "templates", "mailer._shipped.migrations": "migrations"}

setup(
    packages=[*find_packages(include=["mailer", "mailer.*"]), *SHIPPED],
    package_dir=SHIPPED,
    package_data={
        "mailer.web": ["static/*.css", "static/*.js", "static/nhsuk/**/*"],
        "mailer._shipped.templates": ["**/*.html", "**/*.mjml", "**/*.txt"],
        "mailer._shipped.migrations": ["script.py.mako", "versions/*.py"],
    },
)
