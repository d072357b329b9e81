#!/usr/bin/env python3
"""Capture zone transfer streams from Knot DNS for signpost-wire's tests.

Run a knotd serving example. (the zone in ./example.zone at serial
2024010101, then edited to ./example-2.zone at 2024010102 and reloaded, so
its journal holds the change) on 127.0.0.1:PORT, then:

    python3 capture.py PORT

Writes NAME.query.bin (the query, no length prefix) and NAME.stream.bin (the
whole TCP byte stream of the answer, length prefixes included) for an AXFR
and for an IXFR from serial 2024010101. Loopback only.
"""

import socket
import struct
import sys


def name(text):
    out = b""
    for label in text.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def query(qid, qtype, authority=b""):
    header = struct.pack("!HHHHHH", qid, 0, 1, 0, 1 if authority else 0, 0)
    return header + name("example.") + struct.pack("!HH", qtype, 1) + authority


def soa(serial):
    rdata = name("ns1.example.") + name("hostmaster.example.") + struct.pack("!IIIII", serial, 0, 0, 0, 0)
    return name("example.") + struct.pack("!HHIH", 6, 1, 0, len(rdata)) + rdata


def capture(port, label, message):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(struct.pack("!H", len(message)) + message)
        sock.shutdown(socket.SHUT_WR)
        stream = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            stream += chunk
    with open(f"{label}.query.bin", "wb") as f:
        f.write(message)
    with open(f"{label}.stream.bin", "wb") as f:
        f.write(stream)


port = int(sys.argv[1])
capture(port, "knot_axfr", query(0x1234, 252))
capture(port, "knot_ixfr", query(0x2345, 251, soa(2024010101)))
