"""What the mail programs most readers use do with an email, from caniemail.com's data, in plain words.

The data is the JSON file the npm package `caniemail` ships (installed into node_modules/ by `make setup`, and
copied into the Docker image); it is read here at run time, never copied into the repository, and without it
the report says the email was not checked. This module reads what the email uses the way caniemail's own
linter does (tests/support/caniemail_lint.mjs runs that linter; a test holds the two to the same findings):
elements, attributes, CSS properties and values (inline and in top-level rules of style blocks), at-rules
such as @media, and image formats. Selectors, units and CSS functions are left to the linter in the tests.
A report is worked out once per HTML (an issue's version: anything that changes what it shows changes its HTML).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from html.parser import HTMLParser
from pathlib import Path

import tinycss2

from ..config import ROOT

# In a checkout node_modules/ is the repository's; for an installed wheel, the working directory's.
DATA = ROOT / "node_modules" / "caniemail" / "data" / "caniemail.json"

# The clients most of our readers use: (family, platforms) in caniemail's names, under the name people know.
CLIENTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "Gmail": ("gmail", ("desktop-webmail", "android", "ios", "mobile-webmail")),
    "Outlook on Windows": ("outlook", ("windows",)),
    "Outlook.com": ("outlook", ("outlook-com",)),
    "Apple Mail": ("apple-mail", ("macos", "ios")),
    "Yahoo Mail": ("yahoo", ("desktop-webmail", "android", "ios")),
}
PLATFORM_NAMES = {
    "desktop-webmail": "on the web",
    "mobile-webmail": "in a phone's browser",
    "android": "on Android",
    "ios": "on iPhone and iPad",
    "macos": "on Mac",
    "windows": "",
    "outlook-com": "",
}

# What a feature's lack means for the reader, said so the comms team can act on it. Keyed by caniemail title.
PLAIN_WORDS: dict[str, str] = {
    "border-radius": "shows buttons with square corners",
    "webP image format": "does not show WebP pictures: upload the picture as JPEG or PNG",
    "Animated PNG image format": "shows only the first frame of an animated PNG",
    "AVIF image format": "does not show AVIF pictures: upload the picture as JPEG or PNG",
    "SVG image format": "does not show SVG pictures: upload the picture as PNG",
    "HEIF image format": "does not show HEIF pictures: upload the picture as JPEG",
    "<table> element": "does not show tables as designed: keep what matters in the text too",
    "<blockquote> element": "does not set quotes apart",
    "<h1> to <h6> elements": "does not show headings as headings",
    "<ul>, <ol> and <dl>": "does not show lists as lists",
    "background-image": "does not show background pictures",
    "display:flex": "shows side-by-side parts one under the other",
    "display:grid": "shows side-by-side parts one under the other",
}
# Partial support is mostly about values we never use (a reversed list, elliptical corners); these are the
# partial ones a reader would notice.
PARTIAL_WORDS: dict[str, str] = {
    "GIF image format": "shows only the first frame of an animated GIF: put what matters in that frame",
}
# Features our templates use that change nothing a reader would notice in these clients (the rendering checks in
# tests/test_email_rendering.py hold the templates to that, with the reason for each). Writers cannot add styles
# of their own (Markdown is cleaned of them), so these are the same for every issue.
NO_VISIBLE_EFFECT = {
    "<style> element",  # what matters is inline; the style blocks hold MJML's resets and desktop widths
    "@media",  # every email is one full-width column without MJML's desktop rules
    "!important keyword",
    "<body> element",  # MJML repeats the background colour on its outer div
    "display:none",  # the hidden preview text is hidden by several properties, one each client honours
    "opacity",
    "max-height property",
    "overflow",
    "height property",  # images have height:auto, which becomes min-height:auto in Yahoo
    "word-break",  # only lets a very long web address break; never needed for ordinary words
    "target attribute",  # these clients open links in a new tab anyway
    "cursor",
    "outline",
    "word-spacing",
    "border-spacing",
    "aria-label attribute",
    "role attribute",
    "lang attribute",
    "dir attribute",
    "direction",
}

_PROPERTY_NAME = re.compile(r"^[a-z-]+$")
_PAIR = re.compile(r"([a-z-]+):\s*([a-z-]+)")
_TAG = re.compile(r"<(\w+)>")
_IMAGE_FORMATS = {
    "apng": "Animated PNG image format",
    "avif": "AVIF image format",
    "bmp": "BMP image format",
    "gif": "GIF image format",
    "heic": "HEIF image format",
    "heif": "HEIF image format",
    "ico": "ICO image format",
    "jpeg": "JPG image format",
    "jpg": "JPG image format",
    "png": "PNG image format",
    "svg": "SVG image format",
    "tif": "TIFF image format",
    "tiff": "TIFF image format",
    "webp": "webP image format",
}


@dataclass(frozen=True)
class ClientWarning:
    """One thing one client does with this email: `support` is "none" or "partial"."""

    feature: str  # caniemail's title
    support: str
    platforms: str  # "on Android, on iPhone and iPad", or "" for the whole client
    text: str  # in plain words
    url: str  # caniemail.com's page about it


@dataclass
class ClientSupport:
    """For each client, what it does not support (or supports in part) that this email uses."""

    checked: bool
    data_date: str = ""
    reason: str = ""  # why it was not checked
    warnings: dict[str, list[ClientWarning]] = field(default_factory=dict)  # client name → what to know
    minor: dict[str, list[str]] = field(default_factory=dict)  # client name → titles partly supported, no effect known

    @property
    def count(self) -> int:
        return sum(len(w) for w in self.warnings.values())


@dataclass
class _Data:
    features: dict[str, dict]  # title → caniemail's entry
    date: str
    elements: dict[str, list[str]]  # tag → titles
    attributes: dict[str, list[str]]  # attribute → titles
    properties: list[tuple[str, tuple[str, ...]]]  # (title, property names)
    pairs: list[tuple[str, str, str]]  # (title, property, value)
    at_rules: dict[str, str]  # name without @ → title


@lru_cache(maxsize=2)
def _load(path: Path, mtime: float) -> _Data:
    raw = json.loads(path.read_text(encoding="utf-8"))
    features = {f["title"]: f for f in raw["data"]}
    elements: dict[str, list[str]] = {}
    attributes: dict[str, list[str]] = {}
    properties, pairs, at_rules = [], [], {}
    for title, feature in features.items():
        if feature["category"] == "html":
            if title.endswith(" attribute"):
                attributes.setdefault(title.removesuffix(" attribute"), []).append(title)
                continue
            tags = ["h1", "h2", "h3", "h4", "h5", "h6"] if title.startswith("<h1> to <h6>") else _TAG.findall(title)
            for tag in tags:
                elements.setdefault(tag, []).append(title)
        elif feature["category"] == "css":
            if title.startswith("@"):
                at_rules[title[1:]] = title
                continue
            if pair := _PAIR.fullmatch(title):
                pairs.append((title, pair.group(1), pair.group(2)))
            name = title.strip().removesuffix(" shorthand").removesuffix(" property")
            names = tuple(p.strip() for p in re.split(r",|&", name))
            if all(_PROPERTY_NAME.match(n) for n in names):
                properties.append((title, names))
    return _Data(features, raw.get("last_update_date", ""), elements, attributes, properties, pairs, at_rules)


def _data() -> _Data | None:
    try:
        return _load(DATA, DATA.stat().st_mtime)
    except (OSError, ValueError, KeyError):
        return None


class _Uses(HTMLParser):
    """The features an HTML document uses, by caniemail title."""

    def __init__(self, data: _Data):
        super().__init__(convert_charrefs=True)
        self.data = data
        self.titles: set[str] = set()
        self._in_style = False
        self._css: list[str] = []

    def handle_starttag(self, tag, attrs):
        values = dict(attrs)
        self.titles.update(self.data.elements.get(tag, ()))
        for name in values:
            self.titles.update(self.data.attributes.get(name, ()))
        if tag == "a" and (values.get("href") or "").startswith("mailto:"):
            self.titles.add("mailto: links")
        if tag == "img" and values.get("src"):
            extension = values["src"].split("?", 1)[0].split("#", 1)[0].rsplit(".", 1)[-1].lower()
            if extension in _IMAGE_FORMATS:
                self.titles.add(_IMAGE_FORMATS[extension])
        if values.get("style"):
            self._declarations(tinycss2.parse_blocks_contents(values["style"]))
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        if tag == "style":
            self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self._css.append(data)

    def close(self):
        super().close()
        for css in self._css:
            # Like caniemail's linter: declarations of top-level rules; an at-rule counts as itself.
            for rule in tinycss2.parse_stylesheet(css, skip_comments=True, skip_whitespace=True):
                if rule.type == "at-rule" and rule.lower_at_keyword in self.data.at_rules:
                    self.titles.add(self.data.at_rules[rule.lower_at_keyword])
                elif rule.type == "qualified-rule":
                    self._declarations(tinycss2.parse_blocks_contents(rule.content))

    def _declarations(self, nodes) -> None:
        for node in nodes:
            if node.type != "declaration":
                continue
            name, value = node.lower_name, tinycss2.serialize(node.value).strip()
            if node.important:
                self.titles.add("!important keyword")
            for title, names in self.data.properties:
                if any(name == n or name.startswith(f"{n}-") for n in names):
                    self.titles.add(title)
            for title, prop, wanted in self.data.pairs:
                if name == prop and value == wanted:
                    self.titles.add(title)


def features_used(html: str) -> set[str] | None:
    """The caniemail titles of what `html` uses (None: the data is not installed)."""
    data = _data()
    if data is None:
        return None
    uses = _Uses(data)
    uses.feed(html)
    uses.close()
    return {t for t in uses.titles if t in data.features}


def read_titles() -> set[str]:
    """Every caniemail title this module can find in an email (empty when the data is not installed)."""
    data = _data()
    if data is None:
        return set()
    titles = {t for ts in (*data.elements.values(), *data.attributes.values()) for t in ts}
    titles |= {t for t, _names in data.properties} | {t for t, _p, _v in data.pairs} | set(data.at_rules.values())
    titles |= set(_IMAGE_FORMATS.values()) | {"mailto: links", "!important keyword"}
    return titles & set(data.features)


def findings(html: str) -> set[tuple[str, str, str]]:
    """(client, title, support) for everything `html` uses that a platform of CLIENTS does not fully support, with
    caniemail's client names ("outlook.windows") and support "none" or "partial", as its linter reports them."""
    data = _data()
    out = set()
    for title in features_used(html) or ():
        for family, platforms in CLIENTS.values():
            for platform in platforms:
                stats = (data.features[title].get("stats") or {}).get(family, {}).get(platform)
                support = _support(stats) if stats else "full"
                if support != "full":
                    out.add((f"{family}.{platform}", title, support))
    return out


def _support(stats: dict) -> str:
    """caniemail's reading of one platform's results, as its linter reads them: the latest test's "y" (full),
    "n" (none), anything else partial."""
    latest = stats[sorted(stats)[-1]]
    return "full" if latest.startswith("y") else "none" if latest.startswith("n") else "partial"


def _report(html: str) -> ClientSupport:
    data = _data()
    used = features_used(html) if data else None
    if data is None or used is None:
        return ClientSupport(
            checked=False,
            reason="The data on what mail programs support (npm package caniemail) is not installed here: "
            "run make setup.",
        )
    report = ClientSupport(checked=True, data_date=_data_date(data.date))
    for client, (family, platforms) in CLIENTS.items():
        said, minor = _client_findings(data, used, family, platforms)
        if said:
            report.warnings[client] = sorted(said.values(), key=lambda w: (w.support != "none", w.feature))
        if minor:
            report.minor[client] = minor
    return report


def _data_date(value: str) -> str:
    """caniemail's date as "4 March 2025" ("" if it is not a date)."""
    try:
        day = date.fromisoformat(value[:10])
    except ValueError:
        return ""
    return f"{day.day} {day:%B %Y}"


def _client_findings(data, used: set[str], family: str, platforms) -> tuple[dict[str, ClientWarning], list[str]]:
    """What one client (caniemail `family`, on its `platforms`) lacks of what the email uses: the warnings by
    their words (titles said in the same words are told once), and the titles only partly supported to no known
    visible effect."""
    said: dict[str, ClientWarning] = {}
    minor = []
    for title in sorted(used):
        feature = data.features[title]
        found = _platform_support(feature, family, platforms)
        lacking = {p: s for p, s in found.items() if s != "full"}
        if not lacking:
            continue
        support = "none" if "none" in lacking.values() else "partial"
        words = PLAIN_WORDS if support == "none" else PARTIAL_WORDS
        if title in NO_VISIBLE_EFFECT or (support == "partial" and title not in words):
            minor.append(title)
            continue
        where = ", ".join(PLATFORM_NAMES[p] for p in lacking if PLATFORM_NAMES[p]) if lacking != found else ""
        text = words.get(title) or f"does not support {title}, which this email uses"
        if text not in said:
            said[text] = ClientWarning(title, support, where, text, feature.get("url") or "")
    return said, minor


def _platform_support(feature: dict, family: str, platforms) -> dict[str, str]:
    """platform → "full", "partial" or "none", for the platforms caniemail has results for."""
    found = {}
    for platform in platforms:
        stats = (feature.get("stats") or {}).get(family, {}).get(platform)
        if stats:
            found[platform] = _support(stats)
    return found


_cache: OrderedDict[str, ClientSupport] = OrderedDict()
_cache_lock = threading.Lock()
CACHE_SIZE = 64


def client_support(html: str) -> ClientSupport:
    """What the clients in CLIENTS do with this HTML. Worked out once per HTML and kept (the last CACHE_SIZE)."""
    key = hashlib.sha256(html.encode("utf-8")).hexdigest()
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    report = _report(html)
    if report.checked:  # once the data is installed, an unchecked report is not kept
        with _cache_lock:
            _cache[key] = report
            while len(_cache) > CACHE_SIZE:
                _cache.popitem(last=False)
    return report
