#!/usr/bin/env python3
"""Independent reference decoder for the wire vectors (not used by cargo test).

    python3 check.py            # decode every .bin, compare with expectations.txt
    python3 check.py --dump X   # print a decoded view of X.bin (or several)
    python3 check.py --emit     # print the expectation line each file decodes to

It implements the parser rules the vectors are built against:
  * < 12 bytes                       -> ShortHeader{len}
  * a section count larger than the records present (the message ends at a
    record boundary)                 -> MissingRecords{section,expected,found,offset=len}
  * compression pointers must point strictly before the start of the run of
    labels currently being read      -> ForwardPointer{offset=pointer,target}
  * more than 64 pointer hops        -> TooManyPointers{offset=name start}
  * first octet 0x40-0x7f             -> LabelTooLong{offset,len=first}
  * label type 0x80                   -> ReservedLabelType{offset,label_type=first & 0xc0}
  * > 255 octets uncompressed        -> NameTooLong{offset=name start}
  * label data past the end          -> UnexpectedEnd{offset=label data,needed}
  * RDLENGTH past the end            -> UnexpectedEnd{offset=RDATA start,needed}
  * typed RDATA not filling RDLENGTH -> RdataLength{rtype,offset=RDATA start,rdlength,used}
  * OPT outside additional / non-root owner -> MisplacedOpt{offset=record start}
  * a second OPT                     -> DuplicateOpt{offset=record start}
  * bytes after the last record      -> TrailingData{offset,len}
"""

import base64
import ipaddress
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SECTIONS = ("question", "answer", "authority", "additional")
TYPES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 10: "NULL", 12: "PTR", 15: "MX", 16: "TXT",
         28: "AAAA", 33: "SRV", 35: "NAPTR", 39: "DNAME", 41: "OPT", 43: "DS", 46: "RRSIG",
         48: "DNSKEY", 52: "TLSA", 64: "SVCB", 65: "HTTPS", 257: "CAA"}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED",
          16: "BADVERS", 23: "BADCOOKIE"}
OPTIONS = {3: "NSID", 8: "ECS", 10: "COOKIE", 11: "KEEPALIVE", 12: "PADDING", 15: "EDE"}
SVC_KEYS = {0: "mandatory", 1: "alpn", 2: "no-default-alpn", 3: "port", 4: "ipv4hint", 5: "ech",
            6: "ipv6hint"}
MAX_HOPS = 128


class WireError(Exception):
    def __init__(self, variant, **fields):
        super().__init__(variant)
        self.variant = variant
        self.fields = fields

    def line(self):
        return " ".join(["error", self.variant] + ["%s=%s" % kv for kv in self.fields.items()])


def tname(rtype):
    return TYPES.get(rtype, "TYPE%d" % rtype)


def need(msg, offset, n):
    if offset + n > len(msg):
        raise WireError("UnexpectedEnd", offset=offset, needed=offset + n - len(msg))


def parse_name(msg, offset):
    """Return (labels, end) where end is just past the name at `offset`."""
    pos, run_start, end, wire_len, hops, labels = offset, offset, None, 1, 0, []
    while True:
        need(msg, pos, 1)
        first = msg[pos]
        kind = first & 0xC0
        if kind == 0x00:
            if first == 0:
                return labels, (end if end is not None else pos + 1)
            wire_len += 1 + first
            if wire_len > 255:
                raise WireError("NameTooLong", offset=offset)
            need(msg, pos + 1, first)
            labels.append(msg[pos + 1:pos + 1 + first])
            pos += 1 + first
        elif kind == 0xC0:
            need(msg, pos + 1, 1)
            target = ((first & 0x3F) << 8) | msg[pos + 1]
            if target >= run_start:
                raise WireError("ForwardPointer", offset=pos, target=target)
            hops += 1
            if hops > MAX_HOPS:
                raise WireError("TooManyPointers", offset=offset)
            if end is None:
                end = pos + 2
            run_start = pos = target
        elif kind == 0x40:
            raise WireError("LabelTooLong", offset=pos, len=first)
        else:
            raise WireError("ReservedLabelType", offset=pos, label_type=kind)


def show_name(labels):
    if not labels:
        return "."
    out = []
    for label in labels:
        text = ""
        for b in label:
            c = chr(b)
            if c in ".\\\"();@$ ":
                text += "\\" + c
            elif 0x21 <= b <= 0x7E:
                text += c
            else:
                text += "\\%03d" % b
        out.append(text)
    return ".".join(out) + "."


def show_string(data):
    text = ""
    for b in data:
        if b in (0x22, 0x5C):
            text += "\\" + chr(b)
        elif 0x20 <= b <= 0x7E:
            text += chr(b)
        else:
            text += "\\%03d" % b
    return '"%s"' % text


class Rdata:
    """A cursor over one record's RDATA that names may leave (pointers)."""

    def __init__(self, msg, start, length):
        self.msg, self.pos, self.start, self.end = msg, start, start, start + length

    def take(self, n):
        if self.pos + n > self.end:
            raise Overrun(self.pos + n - self.start)
        data = self.msg[self.pos:self.pos + n]
        self.pos += n
        return data

    def u8(self):
        return self.take(1)[0]

    def u16(self):
        return struct.unpack("!H", self.take(2))[0]

    def u32(self):
        return struct.unpack("!I", self.take(4))[0]

    def name(self):
        labels, end = parse_name(self.msg, self.pos)
        if end > self.end:
            raise Overrun(end - self.start)
        self.pos = end
        return show_name(labels)

    def string(self):
        return show_string(self.take(self.u8()))

    def rest(self):
        return self.take(self.end - self.pos)


class Overrun(Exception):
    """A field ran past RDLENGTH; args[0] is how many bytes the fields took."""


def items(r, names, unnamed):
    """(code, name, value) of each code-length-value item up to RDLENGTH;
    a code missing from names is shown as unnamed % code."""
    while r.pos < r.end:
        code, length = r.u16(), r.u16()
        value = r.take(length)
        yield code, names.get(code, unnamed % code), value


def svc_params(r):
    out = []
    for key, name, value in items(r, SVC_KEYS, "key%d"):
        length = len(value)
        if key == 0:
            shown = ",".join(SVC_KEYS.get(k, "key%d" % k) for k in struct.unpack("!%dH" % (length // 2), value))
        elif key == 1:
            ids, i = [], 0
            while i < len(value):
                ids.append(value[i + 1:i + 1 + value[i]].decode("latin-1"))
                i += 1 + value[i]
            shown = ",".join(ids)
        elif key == 2:
            out.append(name)
            continue
        elif key == 3:
            shown = str(struct.unpack("!H", value)[0])
        elif key == 4:
            shown = ",".join(str(ipaddress.IPv4Address(value[i:i + 4])) for i in range(0, length, 4))
        elif key == 6:
            shown = ",".join(str(ipaddress.IPv6Address(value[i:i + 16])) for i in range(0, length, 16))
        elif key == 5:
            shown = base64.b64encode(value).decode()
        else:
            shown = show_string(value)
        out.append("%s=%s" % (name, shown))
    return " ".join(out)


def edns_options(r):
    out = []
    for code, name, value in items(r, OPTIONS, "OPTION%d"):
        if code == 8:
            family, source, scope = struct.unpack("!HBB", value[:4])
            addr = value[4:] + bytes(16 if family == 2 else 4)
            ip = ipaddress.IPv6Address(addr[:16]) if family == 2 else ipaddress.IPv4Address(addr[:4])
            out.append("ECS %s/%d/%d" % (ip, source, scope))
        elif code == 15:
            out.append("EDE %d %s" % (struct.unpack("!H", value[:2])[0], show_string(value[2:])))
        elif code == 11:
            out.append("KEEPALIVE %s" % (struct.unpack("!H", value)[0] if value else "-"))
        elif code == 12:
            out.append("PADDING %d" % len(value))
        elif code == 3:
            out.append("NSID %s" % (show_string(value) if value else "(request)"))
        else:
            out.append("%s %s" % (name, value.hex()))
    return ", ".join(out)


def rdata_text(msg, rtype, start, length):
    """Decode typed RDATA; return (text, used) or raise RdataLength."""
    r = Rdata(msg, start, length)
    try:
        if rtype == 1:
            text = str(ipaddress.IPv4Address(r.take(4)))
        elif rtype == 28:
            text = str(ipaddress.IPv6Address(r.take(16)))
        elif rtype in (2, 5, 12, 39):
            text = r.name()
        elif rtype == 15:
            text = "%d %s" % (r.u16(), r.name())
        elif rtype == 6:
            text = "%s %s %d %d %d %d %d" % (r.name(), r.name(), r.u32(), r.u32(), r.u32(), r.u32(), r.u32())
        elif rtype == 33:
            text = "%d %d %d %s" % (r.u16(), r.u16(), r.u16(), r.name())
        elif rtype == 16:
            parts = []
            while r.pos < r.end:
                parts.append(r.string())
            text = " ".join(parts)
        elif rtype == 257:
            flags, tag = r.u8(), r.take(r.u8()).decode("latin-1")
            text = "%d %s %s" % (flags, tag, show_string(r.rest()))
        elif rtype == 35:
            text = "%d %d %s %s %s %s" % (r.u16(), r.u16(), r.string(), r.string(), r.string(), r.name())
        elif rtype in (64, 65):
            prio, target = r.u16(), r.name()
            text = ("%d %s %s" % (prio, target, svc_params(r))).rstrip()
        elif rtype == 41:
            text = edns_options(r)
        else:
            text = "\\# %d %s" % (length, r.rest().hex())
    except Overrun as over:
        raise WireError("RdataLength", rtype=tname(rtype), offset=start, rdlength=length, used=over.args[0])
    if r.pos != r.end:
        raise WireError("RdataLength", rtype=tname(rtype), offset=start, rdlength=length, used=r.pos - start)
    return text


def decode(msg):
    """Return (counts, lines) for a valid message; raise WireError otherwise."""
    if len(msg) < 12:
        raise WireError("ShortHeader", len=len(msg))
    ident, flags, qd, an, ns, ar = struct.unpack("!6H", msg[:12])
    counts = (qd, an, ns, ar)
    rcode = flags & 0xF
    lines = ["id=%d opcode=%d rcode=%s flags=%s" % (
        ident, (flags >> 11) & 0xF, RCODES.get(rcode, rcode),
        ",".join(f for bit, f in ((15, "qr"), (10, "aa"), (9, "tc"), (8, "rd"), (7, "ra"), (5, "ad"), (4, "cd"))
                 if flags & (1 << bit)))]
    pos, seen_opt = 12, False
    for index, (section, count) in enumerate(zip(SECTIONS, counts)):
        for found in range(count):
            if pos == len(msg):
                raise WireError("MissingRecords", section=section, expected=count, found=found, offset=len(msg))
            record_start = pos
            labels, pos = parse_name(msg, pos)
            owner = show_name(labels)
            if index == 0:
                need(msg, pos, 4)
                qtype, qclass = struct.unpack("!HH", msg[pos:pos + 4])
                pos += 4
                lines.append("%s: %s %d %s" % (section, owner, qclass, tname(qtype)))
                continue
            need(msg, pos, 10)
            rtype, rclass, ttl, rdlength = struct.unpack("!HHIH", msg[pos:pos + 10])
            pos += 10
            if rtype == 41:
                if index != 3 or labels:
                    raise WireError("MisplacedOpt", offset=record_start)
                if seen_opt:
                    raise WireError("DuplicateOpt", offset=record_start)
                seen_opt = True
            if pos + rdlength > len(msg):
                raise WireError("UnexpectedEnd", offset=pos, needed=pos + rdlength - len(msg))
            text = rdata_text(msg, rtype, pos, rdlength)
            if rtype == 41:
                ext = (ttl >> 24) & 0xFF
                full = (ext << 4) | rcode
                lines.append("%s: OPT udp=%d full-rcode=%s version=%d do=%d rdlen=%d [%s]" % (
                    section, rclass, RCODES.get(full, full), (ttl >> 16) & 0xFF, (ttl >> 15) & 1, rdlength, text))
            else:
                lines.append("%s: %s %d %d %s %s" % (section, owner, ttl, rclass, tname(rtype), text))
            pos += rdlength
    if pos != len(msg):
        raise WireError("TrailingData", offset=pos, len=len(msg) - pos)
    return counts, lines


def expectation(path):
    msg = open(path, "rb").read()
    try:
        counts, _ = decode(msg)
    except WireError as err:
        return err.line()
    return "ok qd=%d an=%d ns=%d ar=%d" % counts


def main(argv):
    files = sorted(f for f in os.listdir(HERE) if f.endswith(".bin"))
    if argv and argv[0] == "--dump":
        for name in argv[1:]:
            path = os.path.join(HERE, name if name.endswith(".bin") else name + ".bin")
            msg = open(path, "rb").read()
            print("== %s (%d bytes)" % (os.path.basename(path), len(msg)))
            try:
                for line in decode(msg)[1]:
                    print("  " + line)
            except WireError as err:
                print("  " + err.line())
        return 0
    if argv and argv[0] == "--emit":
        for name in files:
            print("%s %s" % (name, expectation(os.path.join(HERE, name))))
        return 0
    expected = {}
    for line in open(os.path.join(HERE, "expectations.txt")):
        line = line.split("#", 1)[0].strip()
        if line:
            name, rest = line.split(" ", 1)
            expected[name] = rest.strip()
    bad = 0
    for name in files:
        got = expectation(os.path.join(HERE, name))
        if expected.get(name) != got:
            bad += 1
            print("MISMATCH %s: expected %r, decoded %r" % (name, expected.get(name), got))
    for name in sorted(set(expected) - set(files)):
        bad += 1
        print("MISSING %s" % name)
    print("%d files, %d expectations, %d problems" % (len(files), len(expected), bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
