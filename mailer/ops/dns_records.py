"""The DNS records `mailer doctor` looks at, asked with dnspython: the DKIM key (is what is published ours?), SPF
and DMARC for the From domain, MX for the bounce domain. A record that is missing, or a lookup that fails or times
out, is a warning: the mailer still sends, but receivers will trust its mail less. Only a published DKIM key
that is not ours is a FAIL: every signature would then fail."""

from __future__ import annotations

import re
from collections.abc import Iterator

import dns.exception
import dns.resolver

from ..transports.dkim import load_rsa_key, public_record
from .doctor import FAIL, OK, WARN, Finding

LIFETIME = 5.0  # seconds for each lookup, retries included


def _tags(record: str) -> dict[str, str]:
    """`v=DKIM1; k=rsa; p=…` as a dict (whitespace inside values dropped, as DKIM's own parser does)."""
    tags = {}
    for part in record.split(";"):
        name, _, value = part.partition("=")
        if name.strip():
            tags[name.strip()] = re.sub(r"\s+", "", value)
    return tags


class Lookup:
    def __init__(self, nameservers: list[tuple[str, int]] | None = None, lifetime: float = LIFETIME):
        if nameservers:
            self.resolver = dns.resolver.Resolver(configure=False)
            self.resolver.nameservers = [address for address, _port in nameservers]
            self.resolver.port = nameservers[0][1]
        else:
            try:
                self.resolver = dns.resolver.Resolver()
            except dns.exception.DNSException:  # no /etc/resolv.conf: every lookup below then warns
                self.resolver = dns.resolver.Resolver(configure=False)
        self.resolver.lifetime = self.lifetime = lifetime

    def _txt(self, name: str) -> list[str] | str:
        """The TXT strings at `name`, or why there are none (a sentence)."""
        try:
            answer = self.resolver.resolve(name, "TXT")
        except dns.resolver.NXDOMAIN:
            return f"{name} does not exist in DNS"
        except dns.resolver.NoAnswer:
            return f"{name} has no TXT record"
        except dns.exception.Timeout:
            return f"no DNS answer for {name} within {self.lifetime:g} s"
        except dns.exception.DNSException as exc:
            return f"DNS lookup of {name} failed ({exc.__class__.__name__})"
        return [b"".join(rdata.strings).decode("utf-8", "replace") for rdata in answer]

    def dkim(self, domain: str, selector: str | None, private_key: str | None) -> Iterator[Finding]:
        name = f"{selector}._domainkey.{domain}"
        found = self._txt(name)
        if isinstance(found, str):
            yield Finding(WARN, "dns", f"DKIM: {found}: publish the record `mailer dkim check` prints")
            return
        ours = _tags(public_record(load_rsa_key(private_key))).get("p")
        keys = [_tags(text).get("p") for text in found if "p=" in text]
        if ours in keys:
            yield Finding(OK, "dns", f"DKIM: {name} publishes our key")
        elif keys:
            yield Finding(FAIL, "dns", f"DKIM: {name} publishes another key than DKIM_PRIVATE_KEY's: mail fails DKIM")
        else:
            yield Finding(WARN, "dns", f"DKIM: {name} has TXT records but no DKIM key (p=)")

    def spf_and_dmarc(self, domain: str) -> Iterator[Finding]:
        for what, name, marker, advice in (
            ("SPF", domain, "v=spf1", "`mailer dkim check` says what to publish"),
            ("DMARC", f"_dmarc.{domain}", "v=DMARC1", "start with p=none"),
        ):
            found = self._txt(name)
            if isinstance(found, str):
                yield Finding(WARN, "dns", f"{what}: {found}: {advice}")
                continue
            records = [text for text in found if text.lower().startswith(marker.lower())]
            if len(records) == 1:
                yield Finding(OK, "dns", f"{what}: {name} {records[0]}")
            elif records:
                yield Finding(WARN, "dns", f"{what}: {name} has {len(records)} {marker} records; receivers want one")
            else:
                yield Finding(WARN, "dns", f"{what}: {name} has no {marker} record: {advice}")

    def mx(self, domain: str) -> Iterator[Finding]:
        try:
            answer = self.resolver.resolve(domain, "MX")
        except dns.exception.DNSException as exc:
            yield Finding(
                WARN, "dns", f"bounce domain: no MX for {domain} ({exc.__class__.__name__}): DSNs cannot come back"
            )
            return
        hosts = ", ".join(sorted(str(r.exchange).rstrip(".") for r in answer))
        yield Finding(OK, "dns", f"bounce domain: {domain} MX {hosts}")
