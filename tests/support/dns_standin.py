"""A DNS server for tests (dnspython's message format over UDP on 127.0.0.1): answers the records it is given,
NXDOMAIN for any other name. It serves on a daemon thread and stops with stop() or with the test process."""

from __future__ import annotations

import socket
import threading

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset


def txt(value: str) -> str:
    """A TXT record's text as zone files write it: quoted strings of at most 255 characters."""
    return " ".join(f'"{value[i : i + 200]}"' for i in range(0, len(value), 200))


class DnsStandIn:
    def __init__(self, records: dict[tuple[str, str], list[str]]):
        # {(name, type): [rdata as zone files write it]}, e.g. {("example.org", "TXT"): [txt("v=spf1 -all")]}
        self.records = {(name.rstrip(".").lower(), kind): values for (name, kind), values in records.items()}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def start(self) -> DnsStandIn:
        self._thread.start()
        return self

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                wire, client = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            query = dns.message.from_wire(wire)
            answer = dns.message.make_response(query)
            question = query.question[0]
            name = question.name.to_text().rstrip(".").lower()
            values = self.records.get((name, dns.rdatatype.to_text(question.rdtype)))
            if values:
                answer.answer.append(dns.rrset.from_text_list(question.name, 60, "IN", question.rdtype, values))
            elif not any(known == name for known, _ in self.records):
                answer.set_rcode(dns.rcode.NXDOMAIN)
            self.sock.sendto(answer.to_wire(), client)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
