#!/usr/bin/env python3
"""Write the hand-built vectors (bad_*.bin, ok_*.bin).

    python3 handbuilt.py              # write the .bin files
    python3 handbuilt.py --markdown   # print the byte-by-byte tables for README.md

Every packet is assembled from annotated pieces, so the README tables are
generated from the same data as the bytes. The expected result of each
packet is listed next to it and copied into expectations.txt.
"""

import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


class Packet:
    def __init__(self, name, expect, summary):
        self.name, self.expect, self.summary = name, expect, summary
        self.parts = []  # (offset, bytes, meaning)

    @property
    def here(self):
        return sum(len(p[1]) for p in self.parts)

    def add(self, data, meaning):
        self.parts.append((self.here, bytes(data), meaning))
        return self

    def u16(self, value, meaning):
        return self.add(struct.pack("!H", value), meaning)

    def header(self, qd=0, an=0, ns=0, ar=0, flags=0x0100, ident=0x5350):
        kinds = {0x0100: "query, RD", 0x8180: "response, QR RD RA", 0x8580: "response, QR AA RD RA"}
        self.u16(ident, "ID 0x%04x" % ident)
        self.u16(flags, "flags 0x%04x (%s)" % (flags, kinds.get(flags, "?")))
        for label, count in (("QDCOUNT", qd), ("ANCOUNT", an), ("NSCOUNT", ns), ("ARCOUNT", ar)):
            self.u16(count, "%s %d" % (label, count))
        return self

    def label(self, text, note=""):
        data = text.encode("latin-1") if isinstance(text, str) else bytes(text)
        shown = data.decode("latin-1") if len(data) <= 16 else "%s... (%d octets)" % (data[:8].decode("latin-1"), len(data))
        return self.add(bytes([len(data)]) + data, ("label \"%s\"" % shown) + note)

    def root(self, note=""):
        return self.add(b"\x00", "root label (end of name)" + note)

    def pointer(self, target, note=""):
        return self.add(struct.pack("!H", 0xC000 | target), "compression pointer -> %d%s" % (target, note))

    def dname(self, text):
        for part in text.rstrip(".").split("."):
            if part:
                self.label(part)
        return self.root()

    def qtail(self, qtype=1, tname="A"):
        self.u16(qtype, "QTYPE %s" % tname)
        return self.u16(1, "QCLASS IN")

    def answering(self, name, qtype=1, tname="A", an=1, ar=0):
        """A response (flags 0x8180) to one question name/qtype IN, then the
        first answer's owner: a pointer back to the question name."""
        self.header(qd=1, an=an, ar=ar, flags=0x8180).dname(name).qtail(qtype, tname)
        return self.pointer(12, " (owner %s)" % name)

    def rr_fixed(self, rtype, tname, rdlength, rclass=1, ttl=300, note=""):
        self.u16(rtype, "TYPE %s" % tname)
        self.u16(rclass, ("CLASS IN" if rclass == 1 else "CLASS field = UDP payload size %d" % rclass))
        if rtype == 41:
            assert ttl == 0
            self.add(struct.pack("!I", ttl), "TTL field = ext-rcode 0, version 0, flags 0")
        else:
            self.add(struct.pack("!I", ttl), "TTL %d" % ttl)
        return self.u16(rdlength, "RDLENGTH %d%s" % (rdlength, note))

    def opt(self, note=""):
        self.root(" = OPT owner (root)" + note)
        return self.rr_fixed(41, "OPT", 0, rclass=1232, ttl=0)

    def bytes(self):
        return b"".join(p[1] for p in self.parts)


def packets():
    out = []

    def new(name, expect, summary):
        packet = Packet(name, expect, summary)
        out.append(packet)
        return packet

    # ---- header and counts -------------------------------------------------
    p = new("bad_short_header", "error ShortHeader len=5",
            "Only five bytes: a header cut short after the first byte of QDCOUNT.")
    p.u16(0x5350, "ID 0x5350").u16(0x0100, "flags 0x0100 (query, RD)").add(b"\x00", "first byte of QDCOUNT; the message ends")

    new("bad_empty", "error ShortHeader len=0", "An empty buffer (zero bytes).")

    p = new("bad_counts_question", "error MissingRecords section=question expected=1 found=0 offset=12",
            "A bare header announcing one question; nothing follows.")
    p.header(qd=1)

    p = new("bad_counts_answer", "error MissingRecords section=answer expected=3 found=1 offset=43",
            "ANCOUNT 3 but only one answer record; the message ends after it.")
    p.answering("a.example.", an=3).rr_fixed(1, "A", 4).add(b"\xc0\x00\x02\x01", "RDATA 192.0.2.1 (end of message)")

    p = new("bad_counts_additional", "error MissingRecords section=additional expected=2 found=1 offset=54",
            "ARCOUNT 2 but only the OPT record is present.")
    p.answering("a.example.", ar=2).rr_fixed(1, "A", 4).add(b"\xc0\x00\x02\x01", "RDATA 192.0.2.1")
    p.opt(" (end of message after its fixed part)")

    p = new("bad_trailing", "error TrailingData offset=38 len=4",
            "A complete query (question + OPT) followed by four stray bytes.")
    p.header(qd=1, ar=1).dname("a.example.").qtail().opt()
    p.add(b"\xde\xad\xbe\xef", "garbage after the last announced record")

    # ---- compression pointers ---------------------------------------------
    p = new("bad_ptr_self", "error ForwardPointer offset=12 target=12",
            "The question name is a pointer to itself.")
    p.header(qd=1).pointer(12, " (points at itself)").qtail()

    p = new("bad_ptr_forward", "error ForwardPointer offset=12 target=18",
            "The question name points forward to a (valid) name in the answer.")
    p.header(qd=1, an=1, flags=0x8180).pointer(18, " (forward, into the answer)").qtail()
    p.label("a").root(" (name \"a.\" at 18, the pointer's target)").rr_fixed(1, "A", 4).add(b"\xc0\x00\x02\x01", "RDATA 192.0.2.1")

    p = new("bad_ptr_loop", "error ForwardPointer offset=33 target=35",
            "Two pointers pointing at each other: one hidden in opaque TYPE65280 RDATA at 33 (-> 35), the "
            "other is the second answer's owner at 35 (-> 33). The parser first meets the one at 35, which "
            "is legal (35 -> 33 is backwards); at 33 the run being read starts at 33, so 33 -> 35 is forward.")
    p.header(qd=1, an=2, flags=0x8180).label("foo").root().qtail()
    p.pointer(12, " (owner foo.)").rr_fixed(0xFF00, "TYPE65280", 2).pointer(35, " (opaque RDATA; half of the loop)")
    p.pointer(33, " (owner of answer 2; other half of the loop)").rr_fixed(1, "A", 4).add(b"\xc0\x00\x02\x01", "RDATA 192.0.2.1")

    p = new("bad_ptr_into_own_run", "error ForwardPointer offset=24 target=16",
            "www.example + a pointer back to its own \"example\" label (16): the target is inside the run of "
            "labels being read (which started at 12), so it is not strictly before it.")
    p.header(qd=1).label("www").label("example").pointer(16, " (into its own run)").qtail()

    chain = 200
    p = new("bad_too_many_pointers", "error TooManyPointers offset=%d" % (24 + 2 * chain),
            "A chain of %d pointers, each pointing at the previous one (the first at a root label), stored "
            "in opaque TYPE65280 RDATA; the second answer's owner points at the last, so reading it takes "
            "%d hops, more than any legal name needs (at most 127 labels). Every hop is backwards."
            % (chain, chain + 1))
    p.header(an=2, flags=0x8180).root(" (owner of answer 1)").rr_fixed(0xFF00, "TYPE65280", 1 + 2 * chain)
    p.root(" (RDATA byte 0 at 23: a root label, end of the chain)")
    p.pointer(23, " (chain pointer 1 at 24)")
    for k in range(1, chain):
        p.pointer(24 + 2 * (k - 1), " (chain pointer %d at %d)" % (k + 1, 24 + 2 * k))
    p.pointer(24 + 2 * (chain - 1), " (owner of answer 2, at %d: points at the chain's last pointer)" % (24 + 2 * chain))
    p.rr_fixed(1, "A", 4).add(b"\xc0\x00\x02\x01", "RDATA 192.0.2.1")

    # ---- labels and names ---------------------------------------------------
    p = new("bad_label64", "error LabelTooLong offset=12 len=64",
            "A 64-octet label: its length byte 0x40 has the top bits 01, so on the wire it is the reserved "
            "label type 0x40, not a long label (LabelTooLong cannot come from wire data).")
    p.header(qd=1).add(b"\x40" + b"a" * 64, "length byte 0x40 (64) + 64 octets \"a\"").root().qtail()

    p = new("bad_label_0x80", "error ReservedLabelType offset=16 label_type=128",
            "A normal label, then a label whose first octet 0x80 has the reserved type bits 10.")
    p.header(qd=1).label("www").add(b"\x80\x01\x02", "0x80: reserved label type 10 (then two bytes)").root().qtail()

    p = new("bad_label_0x41", "error LabelTooLong offset=12 len=65",
            "An RFC 2673 bit-string label (first octet 0x41, type bits 01), long obsolete: reserved type 0x40.")
    p.header(qd=1).add(b"\x41\x08\xc0", "0x41 (extended label type 01, bit-string), count 8, bits 0xc0").root().qtail()

    p = new("bad_name_256_flat", "error NameTooLong offset=12",
            "An uncompressed question name of labels 63+63+63+62 plus the root: 256 octets.")
    p.header(qd=1).label("a" * 63).label("b" * 63).label("c" * 63).label("d" * 62).root(" (256 octets in all)").qtail()

    p = new("bad_name_256_pointers", "error NameTooLong offset=209",
            "The question holds a legal 193-octet name (3 x 63-octet labels); the answer owner is a "
            "62-octet label + a pointer to it: 63 + 193 = 256 octets once decompressed.")
    p.header(qd=1, an=1, flags=0x8180).label("a" * 63).label("b" * 63).label("c" * 63).root(" (193 octets)").qtail()
    p.label("e" * 62).pointer(12, " (62-octet label + 193 = 256)").rr_fixed(1, "A", 4).add(b"\xc0\x00\x02\x01", "RDATA 192.0.2.1")

    p = new("ok_name_255_pointers", "ok qd=1 an=1 ns=0 ar=0",
            "Same as bad_name_256_pointers with a 61-octet label: exactly 255 octets, legal.")
    p.header(qd=1, an=1, flags=0x8180).label("a" * 63).label("b" * 63).label("c" * 63).root(" (193 octets)").qtail()
    p.label("e" * 61).pointer(12, " (61-octet label + 193 = 255)").rr_fixed(1, "A", 4).add(b"\xc0\x00\x02\x01", "RDATA 192.0.2.1")

    p = new("bad_name_truncated", "error UnexpectedEnd offset=13 needed=4",
            "The question name's first label announces 7 octets but only 3 remain.")
    p.header(qd=1).add(b"\x07exa", "length 7, then only \"exa\": 4 octets missing; the message ends")

    p = new("ok_ptr_chain", "ok qd=1 an=2 ns=0 ar=0",
            "Legal compression: answer 1's owner points at the question; answer 2's owner is \"foo\" + a "
            "pointer to answer 1's owner, which is itself a pointer (foo.www.example.).")
    p.answering("www.example.", an=2).rr_fixed(1, "A", 4).add(b"\xc0\x00\x02\x01", "RDATA 192.0.2.1")
    p.label("foo").pointer(29, " (answer 1's owner, itself a pointer to 12)").rr_fixed(1, "A", 4).add(b"\xc0\x00\x02\x02", "RDATA 192.0.2.2")

    p = new("ok_header_only", "ok qd=0 an=0 ns=0 ar=0", "A 12-byte header with all four counts zero.")
    p.header()

    # ---- RDATA --------------------------------------------------------------
    p = new("bad_rdata_truncated", "error UnexpectedEnd offset=39 needed=14",
            "A TXT answer with RDLENGTH 20 but only 6 RDATA bytes before the message ends.")
    p.answering("t.example.", 16, "TXT").rr_fixed(16, "TXT", 20, note=" (runs 14 bytes past the end)").add(b"\x05hello", "RDATA: string \"hello\" (6 bytes; end of message)")

    p = new("bad_a_rdlen5", "error RdataLength rtype=A offset=39 rdlength=5 used=4",
            "An A record whose RDLENGTH is 5: the address takes 4.")
    p.answering("a.example.").rr_fixed(1, "A", 5).add(b"\xc0\x00\x02\x01\xff", "RDATA 192.0.2.1 + one extra byte 0xff")

    p = new("bad_mx_rdlen", "error RdataLength rtype=MX offset=37 rdlength=11 used=9",
            "An MX record whose exchange name ends 2 bytes before RDLENGTH.")
    p.answering("example.", 15, "MX").rr_fixed(15, "MX", 11)
    p.u16(10, "RDATA: PREFERENCE 10").label("mail").pointer(12, " (exchange mail.example.; 9 bytes used)").add(b"\x00\x00", "2 bytes left inside RDLENGTH")

    # ---- OPT ----------------------------------------------------------------
    p = new("bad_two_opt", "error DuplicateOpt offset=38",
            "A query with two OPT records in the additional section.")
    p.header(qd=1, ar=2).dname("a.example.").qtail().opt(" (first OPT at 27)").opt(" (second OPT at 38)")

    p = new("bad_opt_in_answer", "error MisplacedOpt offset=27",
            "A response whose only answer record is an OPT.")
    p.header(qd=1, an=1, flags=0x8180).dname("a.example.").qtail().opt(" (in the answer section)")

    p = new("bad_opt_nonroot", "error MisplacedOpt offset=27",
            "An OPT record in the additional section whose owner is \"a.\" instead of the root.")
    p.header(qd=1, ar=1).dname("a.example.").qtail()
    p.label("a").root(" (owner a., not the root)").rr_fixed(41, "OPT", 0, rclass=1232, ttl=0)
    return out


def expected_offsets_are_sane(packets_):
    for packet in packets_:
        assert packet.here == len(packet.bytes())


def markdown(packets_):
    lines = []
    for packet in packets_:
        data = packet.bytes()
        lines.append("### %s.bin (%d bytes)" % (packet.name, len(data)))
        lines.append("")
        lines.append("Hand-built. %s" % packet.summary)
        lines.append("")
        lines.append("Expected: `%s`" % packet.expect)
        lines.append("")
        if not data:
            lines.append("(empty file)")
            lines.append("")
            continue
        lines.append("| offset | bytes | meaning |")
        lines.append("|---:|---|---|")
        parts = packet.parts
        index = 0
        while index < len(parts):
            offset, chunk, meaning = parts[index]
            # Collapse long runs of chain pointers into one row.
            if "chain pointer" in meaning and index + 3 < len(parts) and "chain pointer" in parts[index + 3][2]:
                last = index
                while last + 1 < len(parts) and "chain pointer" in parts[last + 1][2]:
                    last += 1
                end = parts[last][0] + len(parts[last][1])
                lines.append("| %d-%d | `c0 17`, `c0 18`, `c0 1a`, ... `%s` | %d chain pointers: the one at 24 -> 23, every later one -> the one before it |"
                             % (offset, end - 1, parts[last][1].hex(" "), last - index + 1))
                index = last + 1
                continue
            hexed = chunk.hex(" ")
            if len(chunk) > 12:
                hexed = "%s ... %s" % (chunk[:4].hex(" "), chunk[-2:].hex(" "))
            span = str(offset) if len(chunk) == 1 else "%d-%d" % (offset, offset + len(chunk) - 1)
            lines.append("| %s | `%s` | %s |" % (span, hexed, meaning))
            index += 1
        lines.append("")
    return "\n".join(lines)


def main():
    built = packets()
    expected_offsets_are_sane(built)
    if sys.argv[1:] == ["--markdown"]:
        print(markdown(built))
        return
    if sys.argv[1:] == ["--expect"]:
        for packet in built:
            print("%s.bin %s" % (packet.name, packet.expect))
        return
    for packet in built:
        with open(os.path.join(HERE, packet.name + ".bin"), "wb") as out:
            out.write(packet.bytes())


if __name__ == "__main__":
    main()
