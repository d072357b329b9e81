#!/usr/bin/env python3
"""Capture the real-traffic wire vectors for signpost-wire.

Starts unbound with ./unbound.conf (loopback only, everything answered from
local data), puts a recording relay between dig/kdig and unbound, runs every
case in CASES once and writes the exact bytes of the query and of the
response as NAME.query.bin / NAME.response.bin (the raw DNS message; for TCP
the two-byte length prefix is stripped).

    cd crates/wire/tests/vectors && python3 capture.py          # all cases
    python3 capture.py rr_a rr_txt                              # some cases

Every dig/kdig invocation gets an explicit @127.0.0.1 -p RELAY_PORT (and dig
gets -r so no ~/.digrc is read); nothing is ever sent anywhere but loopback.
Query IDs, cookies and the like are random, so a re-run produces different
bytes; expectations.txt only depends on the section counts.
"""

import os
import socket
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
UNBOUND_ADDR = ("127.0.0.1", 55353)
RELAY_ADDR = ("127.0.0.1", 55354)

# (name, tool, arguments, options). The server address is added by run_case().
# options: tcp=True (the relay must see TCP), source="127.0.0.2" (relay
# forwards from that address), first=True (only the first exchange matters).
NOCOOKIE = "+nocookie"
CASES = [
    # Typed RDATA.
    ("rr_a", "dig", [NOCOOKIE, "a.example.", "A"], {}),
    ("rr_aaaa", "dig", [NOCOOKIE, "aaaa.example.", "AAAA"], {}),
    ("rr_ns_glue", "dig", [NOCOOKIE, "example.", "NS"], {}),
    ("rr_cname_chain", "dig", [NOCOOKIE, "chain.example.", "A"], {}),
    ("rr_dname", "dig", [NOCOOKIE, "host.dn.example.", "A"], {}),
    ("rr_ptr", "dig", [NOCOOKIE, "-x", "192.0.2.80"], {}),
    ("rr_mx_glue", "dig", [NOCOOKIE, "example.", "MX"], {}),
    ("rr_txt", "dig", [NOCOOKIE, "txt.example.", "TXT"], {}),
    ("rr_srv", "dig", [NOCOOKIE, "_sip._tcp.example.", "SRV"], {}),
    ("rr_caa", "dig", [NOCOOKIE, "caa.example.", "CAA"], {}),
    ("rr_naptr", "dig", [NOCOOKIE, "naptr.example.", "NAPTR"], {}),
    ("rr_svcb", "dig", [NOCOOKIE, "svc.example.", "SVCB"], {}),
    ("rr_https", "dig", [NOCOOKIE, "https.example.", "HTTPS"], {}),
    ("rr_https_alias", "kdig", ["alias.example.", "HTTPS"], {}),
    ("rr_ds", "dig", [NOCOOKIE, "sec.example.", "DS"], {}),
    ("rr_dnskey_do", "dig", [NOCOOKIE, "+dnssec", "sec.example.", "DNSKEY"], {}),
    ("rr_tlsa", "dig", [NOCOOKIE, "_443._tcp.www.example.", "TLSA"], {}),
    ("rr_type65280", "dig", [NOCOOKIE, "priv.example.", "TYPE65280"], {}),
    # A typical answer: CNAME + 3 A + OPT.
    ("typical_cname_3a", "dig", [NOCOOKIE, "www.example.com.", "A"], {}),
    # Unusual but legal names.
    ("name_escaped_dot", "dig", [NOCOOKIE, "a\\.b.example.", "A"], {}),
    ("name_binary_label", "dig", [NOCOOKIE, "\\000\\255bin.example.", "A"], {}),
    ("name_label63", "dig",
     [NOCOOKIE, "sixty-three-octet-label-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.example.", "A"], {}),
    ("name_255", "dig", [NOCOOKIE, ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 53, "example."]), "A"], {}),
    ("name_mixed_case", "dig", [NOCOOKIE, "wWw.ExAmPlE.cOm.", "A"], {}),
    # EDNS.
    ("edns_none", "dig", [NOCOOKIE, "+noedns", "a.example.", "A"], {}),
    ("edns_ecs_v4", "dig", [NOCOOKIE, "+subnet=192.0.2.0/24", "www.example.com.", "A"], {}),
    ("edns_ecs_v6", "kdig", ["+subnet=2001:db8:abcd::/48", "www.example.com.", "AAAA"], {}),
    ("edns_cookie", "dig", ["+cookie", "a.example.", "A"], {}),
    ("edns_padding_dig", "dig", [NOCOOKIE, "+padding=128", "a.example.", "A"], {}),
    ("edns_padding_kdig", "kdig", ["+padding=64", "a.example.", "A"], {}),
    ("edns_nsid", "dig", [NOCOOKIE, "+nsid", "a.example.", "A"], {}),
    ("edns_ede_prohibited", "dig", [NOCOOKIE, "a.example.", "A"], {"source": "127.0.0.2"}),
    ("edns_badvers", "dig", [NOCOOKIE, "+edns=1", "+noednsnegotiation", "a.example.", "A"], {}),
    ("edns_keepalive_tcp", "dig", [NOCOOKIE, "+tcp", "+keepalive", "a.example.", "A"], {"tcp": True}),
    # Negative answers.
    ("nxdomain", "dig", [NOCOOKIE, "nx.example.", "A"], {}),
    ("nodata", "dig", [NOCOOKIE, "www.example.", "MX"], {}),
    # TCP from kdig.
    ("tcp_kdig_mx", "kdig", ["+tcp", "example.", "MX"], {"tcp": True}),
]


class Relay:
    """UDP and TCP relay on RELAY_ADDR that records (transport, query, response)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.exchanges = []
        self.source = "127.0.0.1"
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.udp.bind(RELAY_ADDR)
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind(RELAY_ADDR)
        self.tcp.listen(8)
        self.running = True
        for target in (self.serve_udp, self.serve_tcp):
            threading.Thread(target=target, daemon=True).start()

    def record(self, transport, query, response):
        with self.lock:
            self.exchanges.append((transport, query, response))

    def take(self):
        with self.lock:
            out, self.exchanges = self.exchanges, []
        return out

    def serve_udp(self):
        while self.running:
            try:
                query, client = self.udp.recvfrom(65535)
            except OSError:
                return
            upstream = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            upstream.bind((self.source, 0))
            upstream.settimeout(3)
            upstream.sendto(query, UNBOUND_ADDR)
            try:
                response, _ = upstream.recvfrom(65535)
            except socket.timeout:
                response = None
            upstream.close()
            self.record("udp", query, response)
            if response is not None:
                self.udp.sendto(response, client)

    def serve_tcp(self):
        while self.running:
            try:
                conn, _ = self.tcp.accept()
            except OSError:
                return
            threading.Thread(target=self.tcp_conn, args=(conn,), daemon=True).start()

    @staticmethod
    def read_exact(sock, n):
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    def tcp_conn(self, conn):
        upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        upstream.bind((self.source, 0))
        upstream.settimeout(3)
        upstream.connect(UNBOUND_ADDR)
        with conn, upstream:
            while True:
                head = self.read_exact(conn, 2)
                if head is None:
                    return
                query = self.read_exact(conn, struct.unpack("!H", head)[0])
                upstream.sendall(head + query)
                rhead = self.read_exact(upstream, 2)
                response = self.read_exact(upstream, struct.unpack("!H", rhead)[0])
                self.record("tcp", query, response)
                conn.sendall(rhead + response)

    def close(self):
        self.running = False
        self.udp.close()
        self.tcp.close()


def wait_for_unbound():
    query = bytes.fromhex("1234 0000 0001 0000 0000 0000 01 61 07 6578616d706c65 00 0001 0001".replace(" ", ""))
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.settimeout(0.2)
            try:
                probe.sendto(query, UNBOUND_ADDR)
                probe.recvfrom(512)
                return
            except OSError:
                time.sleep(0.1)
    raise SystemExit("unbound did not come up on %s:%d" % UNBOUND_ADDR)


def command(tool, args):
    server = ["@%s" % RELAY_ADDR[0], "-p", str(RELAY_ADDR[1])]
    if tool == "dig":
        return ["dig", "-r"] + server + ["+tries=1", "+timeout=3"] + args
    return ["kdig"] + server + ["+retry=0", "+timeout=3"] + args


def run_case(relay, name, tool, args, opts):
    relay.source = opts.get("source", "127.0.0.1")
    relay.take()
    argv = command(tool, args)
    result = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=30)
    time.sleep(0.1)
    exchanges = relay.take()
    relay.source = "127.0.0.1"
    want = "tcp" if opts.get("tcp") else "udp"
    if not exchanges or exchanges[0][2] is None:
        raise SystemExit("%s: no answered exchange\n%s%s" % (name, result.stdout, result.stderr))
    if len(exchanges) != 1 and not opts.get("first"):
        raise SystemExit("%s: %d exchanges (expected one)" % (name, len(exchanges)))
    transport, query, response = exchanges[0]
    if transport != want:
        raise SystemExit("%s: went over %s, expected %s" % (name, transport, want))
    for suffix, data in (("query", query), ("response", response)):
        with open(os.path.join(HERE, "%s.%s.bin" % (name, suffix)), "wb") as out:
            out.write(data)
    print("### %s  (%s, query %d B, response %d B)" % (name, transport, len(query), len(response)))
    print("$ " + " ".join(argv))
    print(result.stdout.rstrip())
    print()


def main():
    wanted = set(sys.argv[1:])
    unbound = subprocess.Popen(["unbound", "-d", "-c", "unbound.conf"], cwd=HERE)
    relay = None
    try:
        wait_for_unbound()
        relay = Relay()
        for name, tool, args, opts in CASES:
            if not wanted or name in wanted:
                run_case(relay, name, tool, args, opts)
    finally:
        if relay is not None:
            relay.close()
        unbound.terminate()
        unbound.wait(timeout=10)


if __name__ == "__main__":
    main()
