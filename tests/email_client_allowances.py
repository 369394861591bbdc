"""What caniemail says our emails use that some of our readers' mail programs do not support, and why each
difference is accepted: it changes how the email looks there a little, but never its layout or what it says.

tests/test_email_rendering.py fails on any finding not accepted here, so a new feature in a template, or a
client that stops supporting one, is looked at by a person before it reaches an inbox. An allowance that no
email needs any more fails too: take it out. Keep them narrow: name the clients, and where the finding is
(`where`, a regular expression searched in the element's opening tag, or `<style> <rule>` for a style block),
so the same feature used somewhere else is looked at again. Clients are caniemail's names: `outlook.windows`,
`gmail.*` (web, its Android and iPhone apps, mobile web), `apple-mail.*`, `yahoo.*`, `outlook.outlook-com`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from support.email_lint import Finding, matches


@dataclass(frozen=True)
class Allowance:
    titles: tuple[str, ...]  # caniemail feature titles
    clients: tuple[str, ...]  # glob patterns of caniemail client names
    reason: str
    where: str | None = None  # the finding's place must match this (re.search); None: anywhere
    not_where: str | None = None  # ... and must not match this

    def accepts(self, finding: Finding) -> bool:
        return (
            finding.title in self.titles
            and matches(finding.client, self.clients)
            and (self.where is None or re.search(self.where, finding.where) is not None)
            and (self.not_where is None or re.search(self.not_where, finding.where) is None)
        )


EVERY = ("gmail.*", "outlook.windows", "outlook.outlook-com", "apple-mail.*", "yahoo.*")
GMAIL_WITHOUT_STYLE = ("gmail.android", "gmail.ios", "gmail.mobile-webmail")
# The hidden preview text (MJML's <mj-preview>): a div at the top of the body, nothing in it but the text.
PREHEADER = r"^<div style=\"(?=[^\"]*display:\s*none)(?=[^\"]*max-height:\s*0)(?=[^\"]*overflow:\s*hidden)"
STYLE_BLOCK = r"^<style\b"

ALLOWANCES: tuple[Allowance, ...] = (
    # --- Clients that drop <style> blocks (Gmail's apps with a non-Google account, Gmail in a phone's browser)
    Allowance(
        ("<style> element", "@media", "!important keyword"),
        ("gmail.*", "outlook.windows", "outlook.outlook-com", "yahoo.*"),
        "The style blocks hold MJML's resets and its desktop column widths. Every email is one column that is "
        "full width without them, and what matters (colours, spacing of headings, links) is inline: "
        "test_what_matters_is_inline_for_clients_that_drop_style_blocks renders every email without them.",
        where=STYLE_BLOCK,
    ),
    Allowance(
        ("Type selector", "Class selector", "ID selector", "Descendant combinator", "Chaining selectors"),
        EVERY,
        "Selectors of the style blocks: where they are not supported the rule is lost, as if the style block "
        "were (see the <style> element allowance). The chained ones are MJML's mobile full-width rules and its "
        "Thunderbird fix, which Outlook and Gmail's mobile web never needed.",
        where=STYLE_BLOCK,
    ),
    # --- The hidden preview text -------------------------------------------------------------------------------
    Allowance(
        ("display:none", "opacity", "max-height property", "overflow"),
        ("outlook.windows",),
        "Outlook on Windows (Word) ignores these (display:none only in part), so the preview text is hidden "
        "from it by mso-hide:all, the "
        "one property it honours for that.",
        where=PREHEADER + r"(?=[^\"]*mso-hide:\s*all)",
    ),
    Allowance(
        ("display:none", "opacity"),
        ("gmail.mobile-webmail",),
        "Gmail's mobile web drops display:none and opacity; the preview text stays hidden by max-height:0 with "
        "overflow:hidden, which it keeps.",
        where=PREHEADER,
    ),
    Allowance(
        ("overflow",),
        ("gmail.*", "outlook.outlook-com", "apple-mail.*", "yahoo.*"),
        "Only overflow-block and overflow-inline are unsupported (and scrolling hidden content, in Gmail's and "
        "Yahoo's apps): the preview text uses overflow:hidden to stay hidden, with nothing to scroll to.",
        where=PREHEADER,
    ),
    # --- Buttons (mj-button) -------------------------------------------------------------------------------------
    Allowance(
        ("border-radius",),
        ("outlook.windows",),
        "Outlook on Windows ignores border-radius: buttons have square corners there.",
        where=r"^<(a|td)\b[^>]*border-radius:3px",
    ),
    Allowance(
        ("border-radius",),
        ("yahoo.*",),
        "Only the elliptical slash notation is unsupported; buttons use a plain radius.",
        not_where=r"border-radius:[^;\"]*/",
    ),
    Allowance(
        ("cursor",),
        EVERY,
        "MJML's cursor:auto on a button's cell: the pointer a mouse shows over a button, nothing a reader sees.",
        where=r"cursor:auto",
    ),
    Allowance(
        ("target attribute",),
        EVERY,
        'MJML\'s target="_blank" on buttons and image links: these clients open every link in a new window or '
        "tab anyway.",
        where=r"target=\"_blank\"",
    ),
    Allowance(
        ("text-transform",),
        ("outlook.windows",),
        "MJML's text-transform:none on buttons; only `lowercase` is unsupported.",
        where=r"text-transform:none",
    ),
    # --- MJML's layout tables and wrappers -----------------------------------------------------------------------
    Allowance(
        ("<body> element",),
        ("gmail.*", "outlook.outlook-com", "yahoo.*"),
        "Webmail replaces <body> with a div, losing its background colour; MJML repeats the colour on the "
        "email's outer div. caniemail also reports every <tbody> as <body> (it matches tag names by substring).",
        where=r"^<(body|tbody)\b",
    ),
    Allowance(
        ("word-spacing",),
        ("outlook.windows", "yahoo.*"),
        "MJML's word-spacing:normal on <body>, the default anyway.",
        where=r"^<body\b[^>]*word-spacing:normal",
    ),
    Allowance(
        ("word-break",),
        EVERY,
        "MJML's word-break:break-word on each block's cell only lets a word longer than a whole line (a pasted "
        "web address) break instead of widening the email. Yahoo ignores it (such a word then widens the "
        "column); the layout checks in Chromium show no ordinary word broken at 320 px.",
        where=r"word-break:break-word",
    ),
    Allowance(
        ("border-spacing",),
        ("outlook.windows",),
        'MJML\'s border-spacing:0 on layout tables, which also carry cellspacing="0" that Outlook reads.',
        where=r"cellspacing=\"0\"[^>]*border-spacing:0",
    ),
    Allowance(
        ("outline",),
        ("outlook.windows",),
        "MJML's outline:none on images (no focus ring around a linked image), which Outlook never draws.",
        where=r"outline:\s*none",
    ),
    Allowance(
        ("aria-label attribute", "role attribute", "lang attribute", "dir attribute", "direction"),
        EVERY,
        'MJML\'s article wrapper (role, aria-label with the subject, lang="en", dir="auto") and direction:ltr '
        "help screen readers; clients that drop them show the email the same, and every email is in English "
        "(left to right).",
        where=r"^<(div aria-label=|div class=\"mj-|td style=\"direction:ltr)",
    ),
    Allowance(
        ("role attribute", "lang attribute", "dir attribute"),
        EVERY,
        'The document\'s own lang="en" dir="auto" and MJML\'s role="presentation" on layout tables and cells, '
        "which tell screen readers the tables only lay the email out. Where a client drops them (Yahoo keeps role "
        "on tables only) the email looks the same; it is English, left to right.",
        where=r"^<html\b|role=\"presentation\"",
    ),
    Allowance(
        ("word-break",),
        EVERY,
        "word-break:normal on the cells of a Markdown table undoes MJML's break-word there, so at 320 px words wrap "
        "whole instead of breaking mid-word. Yahoo ignores word-break (and so MJML's break-word too: the same "
        "result); Gmail, Apple Mail and Outlook.com add word-wrap:break-word to every cell, so only a word longer "
        "than its column breaks there, as in all their mail, and the preview warns of a table too wide for a phone.",
        where=r"^<t[dh]\b[^>]*border:1px solid #d8dde0[^>]*word-break:normal",
    ),
    # --- Properties these clients support in part: we use none of the unsupported values -------------------------
    Allowance(
        ("margin",),
        EVERY,
        "Unsupported are negative margins, margins on <span> and <body>, and `auto` in Outlook on Windows. We "
        "use none of them but MJML's `margin:0px auto` on its column wrapper and its divider, which Outlook gets "
        "as centred tables of MJML's own instead.",
        not_where=r"margin[-a-z]*:\s*-|^<(span|body)\b[^>]*margin"
        r"|^(?!<div\b[^>]*max-width:\d+px|<p style=\"border-top:)[^>]*margin[-a-z]*:[^;\"]*\bauto\b",
    ),
    Allowance(
        ("padding",),
        ("outlook.windows",),
        "Outlook on Windows pads only table cells. MJML's own boxes are cells or carry mso-padding-alt; on what a "
        "writer's Markdown makes (a quote, a list, a code block, a table record) it ignores the padding, so the "
        "text sits against the quote's border and lists keep Outlook's own indent: all of it still shows.",
        where=r"^<(td|th|div|a|blockquote|ul|ol|pre|p|style)\b",
    ),
    Allowance(
        ("font-size",),
        ("outlook.windows", "yahoo.*"),
        "Only rem values are unsupported; our sizes are in px.",
        not_where=r"font-size:[^;\"]*rem\b",
    ),
    Allowance(
        ("font-weight",),
        ("outlook.windows", "yahoo.*"),
        "Only numeric weights other than the round hundreds are unsupported; we use `bold`.",
        not_where=r"font-weight:\s*\d",
    ),
    Allowance(
        ("line-height",),
        ("outlook.windows",),
        "Outlook on Windows handles px and em line heights oddly; MJML adds mso-line-height-rule where it "
        "matters and text uses unitless 1.5.",
        # px and em only with MJML's rule, or on the hidden preview text (1px: nothing of it shows).
        not_where=r"^(?![^>]*mso-line-height-rule|" + PREHEADER[1:] + r")[^>]*line-height:\s*[\d.]+(px|em)",
    ),
    Allowance(
        ("text-align",),
        ("gmail.*", "outlook.windows", "yahoo.*"),
        "Only start, end and match-parent are unsupported; we use left, right and center.",
        not_where=r"text-align:\s*(start|end|match-parent)",
    ),
    Allowance(
        ("text-decoration",),
        ("gmail.*", "outlook.windows"),
        "Only several values at once and overline are unsupported; we use none and underline. Gmail's apps with a "
        "non-Google account ignore it: a button's label may be underlined there, a look, not the layout.",
        not_where=r"text-decoration:\s*\w+\s+\w",
    ),
    Allowance(
        ("background",),
        ("outlook.windows", "yahoo.*"),
        "Only plain colours are used in background (no images, gradients or several layers).",
        not_where=r"background:[^;\"]*(url\(|gradient|,)",
    ),
    Allowance(
        ("border",),
        ("outlook.windows",),
        "Borders are 1 to 4 px (over 8 px is unsupported); the divider's border on a <p> has MJML's Outlook table.",
        not_where=r"border[-a-z]*:\s*(9|[1-9]\d+)px",
    ),
    Allowance(
        ("display",),
        ("gmail.*", "outlook.windows", "yahoo.*"),
        "Only flex, grid and other newer values are unsupported (and anything but none in Outlook on Windows, "
        "which lays the email out from MJML's conditional tables); we use block and inline-block.",
        not_where=r"display:\s*(flex|grid|inline-flex|inline-grid|contents|flow-root)",
    ),
    Allowance(
        ("width property", "width attribute", "height attribute", "max-width"),
        ("outlook.windows", "apple-mail.*"),
        "Outlook on Windows sizes images and columns from MJML's width and height attributes and its conditional "
        "tables; max-width on tables (Apple Mail on iPhone) is not used by MJML. Not for an image without a width "
        "attribute (a picture in Markdown): Outlook would show it at its full size, wider than the email.",
        not_where=r"^<img\b(?![^>]*\bwidth=\")",
    ),
    Allowance(
        ("height property",),
        ("outlook.windows",),
        "Unsupported only on <body>, <span>, <div> and <p>: images keep their height attribute there.",
        where=r"^<(img|style)\b",
    ),
    Allowance(
        ("height property",),
        ("yahoo.*",),
        "Yahoo turns height into min-height: harmless for height:auto, the only height an image may have (a "
        "fixed one would stretch it on a phone).",
        where=r"^(<img\b[^>]*[;\"]height:\s*auto|<style> height: auto)",
    ),
    Allowance(
        ("<ul>, <ol> and <dl>",),
        EVERY,
        "Only reversed lists and <li value> are unsupported; Markdown makes neither.",
        not_where=r"\breversed\b",
    ),
    Allowance(
        ("mailto: links",),
        ("yahoo.*",),
        "Only bcc in a mailto: link is unsupported; ours give just the address.",
        not_where=r"bcc=",
    ),
)


def accepted(finding: Finding) -> Allowance | None:
    """The allowance that accepts `finding`, or None: it must be fixed or looked at."""
    return next((a for a in ALLOWANCES if a.accepts(finding)), None)
