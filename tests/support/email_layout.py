"""An email's HTML laid out by Chromium at a phone's or a desktop reading pane's width, and measured.

What a reader would notice, as numbers: each image's drawn size against its natural size (is it squashed?),
anything wider than the screen (does the reader have to scroll sideways, or is something cut off?), and words
split across two lines ("Statu / s"). The email is loaded once and the same page is resized to each width,
as a mail app's pane is; images come from the site's /media/ as the test site served them, and any other
request is refused and reported (an email must not fetch anything else).
"""

from __future__ import annotations

import mimetypes
import re
from dataclasses import dataclass, field

# Break opportunities a reader expects: spaces, and after a hyphen, a slash or a dash. A "word" between them
# that is split over two lines is a mid-word break. Longer runs (web addresses) may be broken to fit.
LONGEST_WORD = 30

_MEASURE = """
(longestWord) => {
  const width = window.innerWidth;
  const describe = (el) => {
    const text = (el.innerText || el.textContent || "").trim().replace(/\\s+/g, " ").slice(0, 60);
    const style = (el.getAttribute("style") || "").slice(0, 80);
    return `<${el.tagName.toLowerCase()}${style ? ` style="${style}"` : ""}>${text ? ` "${text}"` : ""}`;
  };
  const hidden = (el) => {
    for (let a = el; a && a !== document.documentElement; a = a.parentElement) {
      const s = getComputedStyle(a);
      if (!a.getClientRects().length || s.visibility === "hidden" || s.opacity === "0") return true;
      const r = a.getBoundingClientRect();
      if (s.overflow !== "visible" && (r.width < 1 || r.height < 1)) return true;
    }
    return false;
  };
  const fits = (r) => r.left >= -0.5 && r.right <= width + 0.5;

  const images = [...document.images].filter((img) => !hidden(img)).map((img) => {
    const r = img.getBoundingClientRect();
    return {src: img.currentSrc || img.src, alt: img.alt, loaded: img.complete && img.naturalWidth > 0,
            naturalWidth: img.naturalWidth, naturalHeight: img.naturalHeight, width: r.width, height: r.height};
  });

  // The outermost elements that stick out of the screen. One inside a box that scrolls sideways and itself
  // fits is fine (a wide table the reader can swipe); one inside a box that hides its overflow is cut off.
  const overflowing = [];
  const reported = new Set();
  for (const el of document.body.querySelectorAll("*")) {
    if (hidden(el)) continue;
    const r = el.getBoundingClientRect();
    if (r.width < 1 || fits(r)) continue;
    let box = null;
    for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
      if (getComputedStyle(a).overflowX !== "visible") { box = a; break; }
    }
    const scrolls = box && ["auto", "scroll"].includes(getComputedStyle(box).overflowX);
    if (scrolls && fits(box.getBoundingClientRect())) continue;
    let outer = false;
    for (let a = el.parentElement; a; a = a.parentElement) if (reported.has(a)) { outer = true; break; }
    reported.add(el);
    if (outer) continue;
    overflowing.push({element: describe(el), left: Math.round(r.left), right: Math.round(r.right),
                      cut_off_by: box && !scrolls ? describe(box) : null});
  }

  const broken = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const range = document.createRange();
  const word = /[^\\s\\-\\/\\u2010-\\u2014]+[\\-\\/\\u2010-\\u2014]?/g;
  while (walker.nextNode()) {
    const node = walker.currentNode;
    if (!node.parentElement || hidden(node.parentElement)) continue;
    for (const m of node.data.matchAll(word)) {
      if (m[0].length < 2 || m[0].length > longestWord) continue;
      range.setStart(node, m.index);
      range.setEnd(node, m.index + m[0].length);
      const tops = [...range.getClientRects()].filter((r) => r.width > 0).map((r) => r.top);
      if (tops.length > 1 && Math.max(...tops) - Math.min(...tops) > 2) {
        broken.push({word: m[0], element: describe(node.parentElement)});
      }
    }
  }
  return {width, scrollWidth: document.documentElement.scrollWidth, images, overflowing, broken};
}
"""


@dataclass
class Layout:
    """What one email looks like at one width."""

    width: int
    scroll_width: int
    images: list[dict]
    overflowing: list[dict]
    broken_words: list[dict]
    refused_requests: list[str] = field(default_factory=list)

    def squashed_images(self, tolerance: float = 1.5) -> list[dict]:
        """Images drawn at another shape than their own: height off by more than `tolerance` pixels from what
        the drawn width and the natural aspect ratio give."""
        out = []
        for image in self.images:
            if not image["loaded"]:
                out.append({**image, "problem": "did not load"})
                continue
            expected = image["width"] * image["naturalHeight"] / image["naturalWidth"]
            if abs(image["height"] - expected) > tolerance:
                out.append(
                    {
                        **image,
                        "problem": f"drawn {image['width']:.0f}×{image['height']:.0f} "
                        f"(ratio {image['width'] / image['height']:.2f}), natural {image['naturalWidth']}×"
                        f"{image['naturalHeight']} (ratio {image['naturalWidth'] / image['naturalHeight']:.2f})",
                    }
                )
        return out


def lay_out(page, html: str, widths: tuple[int, ...], media: dict[str, bytes], base_url: str) -> dict[int, Layout]:
    """Load `html` in `page` once and measure it at each width. `media` maps a site path to the bytes served
    there; the page may fetch nothing else."""
    refused: list[str] = []

    def serve(route):
        url = route.request.url
        path = url[len(base_url) :] if url.startswith(base_url + "/") else None
        if path in media:
            kind = mimetypes.guess_type(path)[0] or "application/octet-stream"
            route.fulfill(status=200, body=media[path], headers={"Content-Type": kind})
        else:
            refused.append(url)
            route.abort()

    page.route("**/*", serve)
    try:
        page.set_viewport_size({"width": widths[0], "height": 900})
        page.set_content(html, wait_until="load")
        layouts = {}
        for width in widths:
            page.set_viewport_size({"width": width, "height": 900})
            found = page.evaluate(_MEASURE, LONGEST_WORD)
            layouts[width] = Layout(
                width=found["width"],
                scroll_width=found["scrollWidth"],
                images=found["images"],
                overflowing=found["overflowing"],
                broken_words=found["broken"],
                refused_requests=refused,
            )
        return layouts
    finally:
        page.unroute("**/*", serve)


# What a reader sees of the text: its colour everywhere, a link's underline and weight, a heading's spacing.
_LOOKS = """
() => {
  const visible = (el) => el.getClientRects().length > 0 && getComputedStyle(el).visibility !== "hidden";
  return [...document.body.querySelectorAll("a, h1, h2, h3, h4, p, li, td, th, blockquote, strong, em")]
    .filter(visible)
    .map((el) => {
      const s = getComputedStyle(el);
      const looks = {color: s.color};
      if (el.tagName === "A") Object.assign(looks, {underline: s.textDecorationLine, weight: s.fontWeight});
      if (/^H[1-4]$/.test(el.tagName)) Object.assign(looks, {marginTop: s.marginTop, marginBottom: s.marginBottom});
      const text = (el.innerText || "").trim().replace(/\\s+/g, " ").slice(0, 50);
      return {element: `<${el.tagName.toLowerCase()}> "${text}"`, looks};
    });
}
"""
_STYLE_BLOCKS = re.compile(r"<style\b[^>]*>.*?</style>", re.IGNORECASE | re.DOTALL)


def without_style_blocks(html: str) -> str:
    """The email as Gmail's apps show it with a non-Google account (and Gmail in a phone's browser): every
    <style> block removed, only inline styles left."""
    return _STYLE_BLOCKS.sub("", html)


def looks(page, html: str, width: int, media: dict[str, bytes], base_url: str) -> list[dict]:
    """How each piece of text looks at `width`: [{"element": ..., "looks": {"color": ..., ...}}] in order."""
    lay_out(page, html, (width,), media, base_url)
    return page.evaluate(_LOOKS)
