#!/usr/bin/env python3
"""Regenerate the checked-in seed corpora (fuzz/corpus/<target>/) from hand-built DNS messages.

Real shapes (queries with and without EDNS, answers with compression, CNAME chains, referrals,
negative answers, name-bearing rdata) plus malformed ones (truncations, long labels and names,
pointer loops and forward pointers, bad counts, bad OPT, bad RDLENGTH, trailing bytes).
For config_loader: the repository's example configurations (node/config/example.toml, the
README's TOML blocks, the deploy environment) and invalid ones.
Run from anywhere: python3 fuzz/seeds.py
"""

import hashlib
import os
import re
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
CORPUS = os.path.join(HERE, "corpus")

A, NS, CNAME, SOA, PTR, MX, TXT, AAAA, SRV, OPT, RP, NAPTR = 1, 2, 5, 6, 12, 15, 16, 28, 33, 41, 17, 35


def name(text):
    """Uncompressed wire form of a dotted name."""
    out = b""
    for label in text.strip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\x00"


def ptr(offset):
    """A compression pointer to `offset`."""
    return struct.pack(">H", 0xC000 | offset)


def header(qid, flags, qd=1, an=0, ns=0, ar=0):
    return struct.pack(">HHHHHH", qid, flags, qd, an, ns, ar)


def question(owner, qtype=A, qclass=1):
    return owner + struct.pack(">HH", qtype, qclass)


def record(owner, rtype, rdata, ttl=300, rclass=1):
    return owner + struct.pack(">HHIH", rtype, rclass, ttl, len(rdata)) + rdata


def opt(payload=1232, flags=0, options=b"", version=0):
    return record(b"\x00", OPT, options, ttl=(version << 16) | flags, rclass=payload)


def edns_option(code, value):
    return struct.pack(">HH", code, len(value)) + value


# Offset of the question name in every message below (just after the header).
Q = 12


def queries():
    """Queries as a stub resolver sends them."""
    out = []
    for i, (text, qtype) in enumerate([
        ("example.com", A), ("www.example.org", AAAA), ("Mixed.CaSe.Example", MX),
        (".", NS), ("_sip._tcp.example.net", SRV), ("4.3.2.1.in-addr.arpa", PTR),
        ("a" * 63 + ".example", TXT), ("x.y.z.w.v.u.example", 255),
    ]):
        out.append(header(0x1000 + i, 0x0100) + question(name(text), qtype))
    cookie = edns_option(10, bytes(range(8)))
    out.append(header(0x2001, 0x0100, ar=1) + question(name("example.com")) + opt())
    out.append(header(0x2002, 0x0110, ar=1) + question(name("example.com"), AAAA) + opt(4096, 0x8000))
    out.append(header(0x2003, 0x0100, ar=1) + question(name("cookie.test")) + opt(options=cookie))
    out.append(header(0x2004, 0x0100, ar=1) + question(name("pad.test")) + opt(options=edns_option(12, b"\x00" * 16)))
    out.append(header(0x2005, 0x0100, ar=1) + question(name("v1.test")) + opt(version=1))
    out.append(header(0x2006, 0x2100) + question(name("notify.test"), SOA))  # opcode NOTIFY (4 << 11)
    # A question name that points back into the header (ARCOUNT 0 reads as the root).
    out.append(struct.pack(">HHHHHH", 0x0100, 0x0000, 1, 0, 0, 0)[:10] + b"\x00\x00" + ptr(10) + struct.pack(">HH", A, 1))
    return out


def responses():
    """Replies as an upstream sends them, compressed like real servers do."""
    out = []
    qn = name("www.example.com")
    # A answer with owner compressed to the question.
    out.append(header(1, 0x8180, an=2) + question(qn) + record(ptr(Q), A, bytes([192, 0, 2, 1]))
               + record(ptr(Q), A, bytes([192, 0, 2, 2])))
    # CNAME chain: www -> web.example.com -> cdn.example.net.
    body = question(qn)
    cname_rdata = b"\x03web" + ptr(Q + 4)
    first = record(ptr(Q), CNAME, cname_rdata)
    web_at = Q + len(body) + 2 + 10
    second = record(ptr(web_at), CNAME, b"\x03cdn\x07example\x03net\x00")
    cdn_at = web_at + len(cname_rdata) + 10
    third = record(ptr(cdn_at), A, bytes([198, 51, 100, 7]), ttl=60)
    out.append(header(2, 0x8180, an=3, ar=1) + body + first + second + third + opt())
    # NXDOMAIN with SOA in authority.
    soa = ptr(Q + 4) + b"\x05admin" + ptr(Q + 4) + struct.pack(">IIIII", 2024010101, 7200, 3600, 1209600, 300)
    out.append(header(3, 0x8183, ns=1) + question(name("nope.example.com")) + record(ptr(Q + 5), SOA, soa, ttl=300))
    # NODATA for AAAA.
    out.append(header(4, 0x8180, ns=1) + question(qn, AAAA) + record(ptr(Q + 4), SOA, soa))
    # Referral with glue.
    ref = question(name("deep.sub.example.org"))
    ns1 = record(ptr(Q + 5), NS, b"\x03ns1" + ptr(Q + 5))
    ns1_at = Q + len(ref) + 2 + 10
    ns2 = record(ptr(Q + 5), NS, b"\x03ns2" + ptr(Q + 5))
    ns2_at = ns1_at + 6 + 12
    glue = record(ptr(ns1_at), A, bytes([203, 0, 113, 1])) + record(ptr(ns2_at), AAAA, bytes(16))
    out.append(header(5, 0x8000, ns=2, ar=2) + ref + ns1 + ns2 + glue)
    # MX, TXT, SRV, PTR, RP, NAPTR.
    mq = name("example.net")
    out.append(header(6, 0x8180, an=2) + question(mq, MX) + record(ptr(Q), MX, b"\x00\x0a\x04mail" + ptr(Q))
               + record(ptr(Q), MX, b"\x00\x14\x05mail2" + ptr(Q)))
    out.append(header(7, 0x8180, an=1) + question(mq, TXT) + record(ptr(Q), TXT, b"\x0bhello world\x05v=spf"))
    sq = name("_sip._tcp.example.net")
    out.append(header(8, 0x8180, an=1) + question(sq, SRV) + record(ptr(Q), SRV, struct.pack(">HHH", 10, 60, 5060) + b"\x03sip" + ptr(Q + 10)))
    pq = name("1.2.0.192.in-addr.arpa")
    out.append(header(9, 0x8180, an=1) + question(pq, PTR) + record(ptr(Q), PTR, name("host.example.com")))
    out.append(header(10, 0x8180, an=1) + question(mq, RP) + record(ptr(Q), RP, b"\x05admin" + ptr(Q) + b"\x04info" + ptr(Q)))
    naptr = struct.pack(">HH", 100, 10) + b"\x01u\x07E2U+sip\x00" + ptr(Q)
    out.append(header(11, 0x8180, an=1) + question(mq, NAPTR) + record(ptr(Q), NAPTR, naptr))
    # Many answers sharing one owner, TC set, and an empty answer.
    many = b"".join(record(ptr(Q), A, bytes([10, 0, 0, i])) for i in range(20))
    out.append(header(12, 0x8180, an=20) + question(qn) + many)
    out.append(header(13, 0x8380) + question(qn))
    out.append(header(14, 0x8182) + question(qn))
    # Unknown type and an empty rdata (RFC 2136 style).
    out.append(header(15, 0x8180, an=2) + question(qn, 65280) + record(ptr(Q), 65280, b"\xde\xad\xbe\xef")
               + record(ptr(Q), NS, b""))
    # Maximum-length name, uncompressed.
    long = name(".".join(["x" * 63] * 3 + ["y" * 61]))
    out.append(header(16, 0x8180, an=1) + question(long) + record(ptr(Q), A, bytes(4)))
    return out


def malformed():
    """Broken shapes from the node's malformed-input suite."""
    q = question(name("example.com"))
    out = [
        b"", b"\x12", header(1, 0x0100)[:11],                               # runts
        header(1, 0x0100) + name("example.com")[:5],                        # truncated name
        header(1, 0x0100) + q[:-2],                                         # truncated qclass
        header(1, 0x0100) + b"\x40" + b"a" * 64 + b"\x00\x00\x01\x00\x01",  # label > 63
        header(1, 0x0100) + question(name(".".join(["a" * 63] * 4))),      # name > 255
        header(1, 0x0100) + ptr(12) + b"\x00\x01\x00\x01",                  # pointer to itself
        header(1, 0x0100) + b"\x01a" + ptr(12) + b"\x00\x01\x00\x01",      # loop back
        header(1, 0x0100) + ptr(20) + b"\x00\x01\x00\x01\x01a\x00",       # forward pointer
        header(1, 0x0100) + b"\x80abc\x00\x00\x01\x00\x01",                # bad label type
        header(1, 0x0100, qd=0),                                            # QDCOUNT 0
        header(1, 0x0100, qd=2) + q + q,                                    # QDCOUNT 2
        header(1, 0x0100, ar=2) + q + opt() + opt(),                        # two OPTs
        header(1, 0x0100, an=1) + q + opt(),                                # OPT in answer
        header(1, 0x0100, ar=1) + q + record(b"\x01a\x00", OPT, b""),      # OPT owner not root
        header(1, 0x0100, ar=1) + q + opt(options=b"\x00\x0a\x00\x08\x01"),  # truncated option
        header(1, 0x0100, an=1) + q + b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x40\x01\x02",  # RDLENGTH past end
        header(1, 0x0100) + q + b"garbage",                                 # trailing bytes
        header(1, 0x0100, an=5) + q,                                        # counts past the end
        header(1, 0x1100) + q,                                              # IQUERY: NOTIMP
        header(1, 0x8100) + q,                                              # a response
        header(1, 0x8180, an=1) + q + record(ptr(12), CNAME, b"\x03abc" + ptr(40)),  # rdata pointer past rdata
        header(1, 0x8180, an=1) + q + record(ptr(12), MX, b"\x00"),         # MX rdata too short
        header(1, 0x8180, an=1) + q + record(ptr(12), SOA, name("a") + name("b") + b"\x00" * 19),  # SOA short
        header(0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF) + b"\xff" * 32,
    ]
    # A chain of backwards pointers, each to the previous one.
    chain = header(1, 0x8180, an=0, qd=1) + b"\x01a\x00"
    for _ in range(40):
        chain += ptr(len(chain) - 2 if len(chain) > 15 else 12)
    out.append(chain + b"\x00\x01\x00\x01")
    return out


def gossip_body(kind, entries, sender=7, boot=0xDEADBEEF, ts=1_700_000_000_000, seq=42):
    """A gossip datagram without its tag (the gossip_decoder target signs what it gets)."""
    out = b"HMDG" + bytes([1, kind]) + struct.pack(">QQQQH", sender, boot, ts, seq, len(entries))
    for key, epoch, ttl_ms, message in entries:
        out += struct.pack(">H", len(key)) + key + struct.pack(">QIH", epoch, ttl_ms, len(message)) + message
    return out


def gossip(rs):
    """Gossip bodies: a SWIM message, empty, one and several entries carrying real responses,
    and inconsistent ones (counts, lengths, kinds)."""
    key = name("www.example.com") + struct.pack(">HHB", A, 1, 0)
    root = b"\x00" + struct.pack(">HHB", NS, 1, 2)
    one = gossip_body(0, [(key, 3, 299_500, rs[0])])
    many = gossip_body(0, [(key, 0, 1000, m) for m in rs[:5]] + [(root, 9, 1, rs[1])])
    return [
        gossip_body(1, []) + b"\x01\x02swim-message",
        gossip_body(1, []),
        gossip_body(0, []),
        one,
        many,
        one[:-1],
        one + b"\x00",
        gossip_body(1, [(key, 0, 1, rs[0])]),
        gossip_body(2, []),
        one[:38] + struct.pack(">H", 2) + one[40:],
        one[:40] + struct.pack(">H", 1000) + one[42:],
    ]


def config_input(toml, env=()):
    """A config_loader input: the TOML file, then after a NUL one NAME=VALUE line a variable."""
    data = toml.encode()
    if env:
        data += b"\x00" + "".join(f"{name}={value}\n" for name, value in env).encode()
    return data


def read(path):
    with open(os.path.join(REPO, path), encoding="utf-8") as f:
        return f.read()


SECRET = "a-cluster-secret-of-some-length"


def configs():
    """Example configurations from the repository, then invalid ones (one error each)."""
    example = read("node/config/example.toml")
    readme = re.findall(r"```toml\n(.*?)```", read("README.md"), re.S)
    # The deploy nodes' environment: the shared anchor plus node 1's own variables.
    compose = read("deploy/docker-compose.yml")
    shared = compose.split("x-node-env:")[1].split("x-node:")[0]
    env = re.findall(r'^\s+(HEIMDALL_\w+): "(.*)"$', shared, re.M)
    env += [("HEIMDALL_NODE__NODE_ID", "1"), ("HEIMDALL_NODE__GOSSIP_LISTEN", "10.89.1.11:7946")]
    inline = [(k, v) for k, v in env if not k.endswith("_FILE")]
    inline += [("HEIMDALL_CLUSTER__SECRET", SECRET), ("HEIMDALL_ADMIN__TOKEN", SECRET)]
    valid = [
        config_input(example),
        *(config_input(block) for block in readme),
        # README's cluster example with the secret inline (its secret file does not exist here).
        config_input(readme[0].replace('secret_file = "/tmp/readme-cluster/secret"', f'secret = "{SECRET}"')),
        config_input("", env),
        config_input("", inline),
        config_input("", [("HEIMDALL_DNS__LISTEN", "0.0.0.0:53"), ("HEIMDALL_AUTHORITY__ZONE_FILE", "/etc/heimdall/demo.zone")]),
        config_input(""),
        config_input('[dns]\nlisten = "[::1]:5353"\nworkers = 3\nio_backend = "Epoll"\n'
                     '[upstream]\nservers = ["10.0.0.1", "10.0.0.2:5300", "::1", "[2001:db8::1]:853"]\n'
                     '[log]\nformat = "json"\nlevel = "info,heimdall_node=debug"\n'),
        config_input("", [("HEIMDALL_UPSTREAM__SERVERS", "::1"), ("HEIMDALL_CACHE__PREFETCH", "false"),
                          ("HEIMDALL_LOG__LEVEL", "debug"), ("HEIMDALL_NODE__DATA_DIR", "1234")]),
        config_input('[cache]\nmax_ttl = 600\nprefetch = false\n',
                     [("HEIMDALL_DNS__WORKERS", "5"), ("HEIMDALL_UPSTREAM__SERVERS", "127.0.0.1:5300,10.0.0.2")]),
        config_input(f'[node]\nnode_id = 2\n[cluster]\nsecret = "{SECRET}"\n'
                     f'previous_secret = "an-older-secret-being-rotated"\nprevious_secret_grace_s = 60\n'
                     '[cluster.initial_members]\n1 = "127.0.0.1:50051"\n2 = "node2.example:50051"\n'),
        config_input(f'[cluster]\nsecret = "{SECRET}"\njoin = true\n[admin]\ntoken = "{SECRET}"\n'
                     'require_token_for_reads = true\n'),
        config_input('[tls]\ncert_file = "/c.pem"\nkey_file = "/k.pem"\nclient_ca_file = "/ca.pem"\n'
                     'ca_file = "/peer-ca.pem"\nrequire_client_cert = true\n'),
    ]
    invalid = [
        "[dns]\nbogus = 1\n",
        "[bogus]\nx = 1\n",
        "dns = 5\n",
        "[dns\n",
        '[cache]\nmax_ttl = "abc"\n',
        "[cache]\nmax_ttl = 1.5\n",
        "[cache]\nmax_ttl = -1\n",
        "[cache]\nmax_ttl = 5000000000\n",
        "[cache]\nprefetch = 1\n",
        "[cache]\nmin_ttl = 10\nmax_ttl = 5\n",
        '[log]\nformat = "xml"\nlevel = "info,[="\n',
        '[dns]\nlisten = "localhost"\nmax_udp_payload = 511\n',
        '[upstream]\nservers = ["10.0.0.1", "dns.google"]\n',
        '[upstream]\nservers = ["127.0.0.1:5353"]\ntimeout_ms = 2000\nresolve_timeout_ms = 1000\n',
        '[cluster.initial_members]\n1 = "no-port"\nx = "127.0.0.1:1"\n',
        '[cluster]\nsecret = "short"\nsecret_file = "/nonexistent/secret"\n',
        '[node]\ngossip_listen = "127.0.0.1:5353"\nnode_id = 0\n',
        '[tls]\ncert_file = "/c.pem"\n',
        "[tls]\nrequire_client_cert = true\n",
    ]
    bad_env = [
        config_input("", [("HEIMDALL_CACHE__MAX_TLL", "5")]),
        config_input("", [("HEIMDALL_CACHE__MAX_TTL", "abc"), ("HEIMDALL_BOGUS", "5")]),
        config_input("", [("HEIMDALL_UPSTREAM__SERVERS", "10.0.0.1,nope"), ("HEIMDALL_CLUSTER__JOIN", "true")]),
        config_input("", [("HEIMDALL_CLUSTER__INITIAL_MEMBERS", "1=127.0.0.1:50051,2")]),
    ]
    return valid + [config_input(t) for t in invalid] + bad_env


def write(target, messages):
    folder = os.path.join(CORPUS, target)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    for msg in messages:
        digest = hashlib.sha1(msg).hexdigest()[:16]
        with open(os.path.join(folder, digest), "wb") as f:
            f.write(msg)


def main():
    qs, rs, bad = queries(), responses(), malformed()
    write("query_parser", qs + bad)
    write("response_parser", rs + bad + qs)
    write("writer_roundtrip", rs + qs)
    # Name decoding: the first byte is the offset of the name in the rest.
    names = [bytes([Q]) + m for m in rs + bad] + [bytes([0]) + name("www.example.com"), b"\x00\x00"]
    write("name_decode", names)
    # Structured input: any bytes are a valid `arbitrary` input; real messages give variety.
    write("writer_build", rs[:8] + [bytes(range(256))])
    write("gossip_decoder", gossip(rs))
    write("config_loader", configs())


if __name__ == "__main__":
    main()
