//! Malformed input over UDP and TCP: answered with FORMERR/NOTIMP (id echoed) or ignored,
//! never forwarded, and the node keeps answering valid queries after each one.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use heimdall_tests::{Node, TcpReply, query_tcp, query_udp, send_raw_tcp, send_raw_udp};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::Setup;

/// The name whose cached answer proves the node still works after each bad input.
const CANARY: &str = "www.example.test.";

/// How long to wait for a reply to a malformed packet (silence is a valid outcome).
const REPLY_WAIT: Duration = Duration::from_millis(400);

/// The FORMERR rcode.
const FORMERR: u8 = 1;

/// The NOTIMP rcode.
const NOTIMP: u8 = 4;

/// What the node may do with a malformed packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// No reply at all (too short for an id, or a response: answering could start a loop).
    Silence,
    /// FORMERR with the id echoed, or silence.
    FormErr,
    /// NOTIMP with the id echoed, or silence.
    NotImp,
}

/// A 12-byte header.
fn header(id: u16, flags: u16, qd: u16, an: u16, ns: u16, ar: u16) -> Vec<u8> {
    [id, flags, qd, an, ns, ar]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect()
}

/// The uncompressed wire form of a dotted name.
fn wire_name(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(u8::try_from(label.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

/// A question for `name` type A class IN.
fn question(name: &str) -> Vec<u8> {
    let mut out = wire_name(name);
    out.extend_from_slice(&[0, 1, 0, 1]);
    out
}

/// An OPT record with the given owner bytes, payload size and rdata.
fn opt_record(owner: &[u8], payload: u16, rdata: &[u8]) -> Vec<u8> {
    let mut out = owner.to_vec();
    out.extend_from_slice(&41u16.to_be_bytes());
    out.extend_from_slice(&payload.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&u16::try_from(rdata.len()).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(rdata);
    out
}

/// A record with owner bytes, type A, class IN, TTL 60, a declared rdlength and actual rdata.
fn a_record(owner: &[u8], rdlength: u16, rdata: &[u8]) -> Vec<u8> {
    let mut out = owner.to_vec();
    out.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 60]);
    out.extend_from_slice(&rdlength.to_be_bytes());
    out.extend_from_slice(rdata);
    out
}

/// Concatenate parts into one packet.
fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// A label of `len` copies of `x`, with its length byte.
fn label(len: u8) -> Vec<u8> {
    let mut out = vec![len];
    out.extend(std::iter::repeat_n(b'x', usize::from(len)));
    out
}

/// The malformed UDP shapes: name, bytes, and what is acceptable; each has its own id.
fn udp_shapes() -> Vec<(&'static str, Vec<u8>, Expect)> {
    use Expect::{FormErr, NotImp, Silence};
    let q = question(CANARY);
    let opt = opt_record(&[0], 1232, &[]);
    let mut next_id = 0x4D00u16;
    let mut h = |flags: u16, qd: u16, an: u16, ns: u16, ar: u16| {
        next_id += 1;
        header(next_id, flags, qd, an, ns, ar)
    };
    vec![
        ("empty datagram", Vec::new(), Silence),
        ("one byte", vec![0x4D], Silence),
        (
            "11-byte header",
            h(0x0100, 1, 0, 0, 0)[..11].to_vec(),
            Silence,
        ),
        (
            "QR=1 with a question",
            cat(&[&h(0x8180, 1, 0, 0, 0), &q]),
            Silence,
        ),
        ("QR=1 header only", h(0x8000, 0, 0, 0, 0), Silence),
        ("512 bytes of 0xFF (QR=1)", vec![0xFF; 512], Silence),
        ("header only, QDCOUNT=1", h(0x0100, 1, 0, 0, 0), FormErr),
        (
            "truncated label",
            cat(&[&h(0x0100, 1, 0, 0, 0), &[7, b'a', b'b', b'c']]),
            FormErr,
        ),
        (
            "name without root label",
            cat(&[&h(0x0100, 1, 0, 0, 0), &[3, b'w', b'w', b'w']]),
            FormErr,
        ),
        (
            "question without type and class",
            cat(&[&h(0x0100, 1, 0, 0, 0), &wire_name(CANARY)]),
            FormErr,
        ),
        (
            "question with half a type",
            cat(&[&h(0x0100, 1, 0, 0, 0), &wire_name(CANARY), &[0]]),
            FormErr,
        ),
        (
            "label length 64 (extended label type)",
            cat(&[&h(0x0100, 1, 0, 0, 0), &label(64), &[0, 0, 1, 0, 1]]),
            FormErr,
        ),
        (
            "reserved label type 0x80",
            cat(&[&h(0x0100, 1, 0, 0, 0), &[0x80, 1, b'x', 0, 0, 1, 0, 1]]),
            FormErr,
        ),
        (
            "name of 321 bytes",
            cat(&[
                &h(0x0100, 1, 0, 0, 0),
                &label(63).repeat(5),
                &[0, 0, 1, 0, 1],
            ]),
            FormErr,
        ),
        (
            "name of 256 bytes",
            cat(&[
                &h(0x0100, 1, 0, 0, 0),
                &label(63).repeat(3),
                &label(62),
                &[0, 0, 1, 0, 1],
            ]),
            FormErr,
        ),
        (
            "pointer to itself",
            cat(&[&h(0x0100, 1, 0, 0, 0), &[0xC0, 12, 0, 1, 0, 1]]),
            FormErr,
        ),
        (
            "pointer loop of two",
            cat(&[
                &h(0x0100, 1, 0, 0, 0),
                &[1, b'a', 0xC0, 18, 0, 1, 0, 1, 1, b'b', 0xC0, 12],
            ]),
            FormErr,
        ),
        (
            "forward pointer",
            cat(&[
                &h(0x0100, 1, 0, 0, 0),
                &[0xC0, 18, 0, 1, 0, 1],
                &wire_name(CANARY),
            ]),
            FormErr,
        ),
        (
            "pointer past the end",
            cat(&[&h(0x0100, 1, 0, 0, 0), &[0xC3, 0xFF, 0, 1, 0, 1]]),
            FormErr,
        ),
        ("QDCOUNT=0", h(0x0100, 0, 0, 0, 0), FormErr),
        (
            "QDCOUNT=0 with an OPT",
            cat(&[&h(0x0100, 0, 0, 0, 1), &opt]),
            FormErr,
        ),
        (
            "QDCOUNT=2",
            cat(&[&h(0x0100, 2, 0, 0, 0), &q, &question("mail.example.test.")]),
            FormErr,
        ),
        (
            "QDCOUNT=2 with one question",
            cat(&[&h(0x0100, 2, 0, 0, 0), &q]),
            FormErr,
        ),
        (
            "QDCOUNT=65535",
            cat(&[&h(0x0100, 0xFFFF, 0, 0, 0), &q]),
            FormErr,
        ),
        (
            "OPT with a non-root owner",
            cat(&[
                &h(0x0100, 1, 0, 0, 1),
                &q,
                &opt_record(&wire_name("x."), 1232, &[]),
            ]),
            FormErr,
        ),
        (
            "two OPT records",
            cat(&[&h(0x0100, 1, 0, 0, 2), &q, &opt, &opt]),
            FormErr,
        ),
        (
            "OPT in the answer section",
            cat(&[&h(0x0100, 1, 1, 0, 0), &q, &opt]),
            FormErr,
        ),
        (
            "OPT option longer than its rdata",
            cat(&[
                &h(0x0100, 1, 0, 0, 1),
                &q,
                &opt_record(&[0], 1232, &[0, 10, 0, 8, 1, 2]),
            ]),
            FormErr,
        ),
        (
            "OPT rdata with 3 stray bytes",
            cat(&[
                &h(0x0100, 1, 0, 0, 1),
                &q,
                &opt_record(&[0], 1232, &[0, 10, 0]),
            ]),
            FormErr,
        ),
        (
            "RDLENGTH past the end",
            cat(&[
                &h(0x0100, 1, 0, 0, 1),
                &q,
                &a_record(&[0xC0, 12], 100, &[1, 2, 3, 4]),
            ]),
            FormErr,
        ),
        (
            "ARCOUNT=1 without a record",
            cat(&[&h(0x0100, 1, 0, 0, 1), &q]),
            FormErr,
        ),
        (
            "answer record cut inside its fixed fields",
            cat(&[&h(0x0100, 1, 1, 0, 0), &q, &[0xC0, 12, 0, 1, 0]]),
            FormErr,
        ),
        (
            "authority owner with a bad pointer",
            cat(&[
                &h(0x0100, 1, 0, 1, 0),
                &q,
                &a_record(&[0xC0, 0xF0], 4, &[1, 2, 3, 4]),
            ]),
            FormErr,
        ),
        (
            "trailing garbage after the question",
            cat(&[&h(0x0100, 1, 0, 0, 0), &q, &[0xDE, 0xAD, 0xBE, 0xEF, 0]]),
            FormErr,
        ),
        (
            "trailing garbage after the OPT",
            cat(&[&h(0x0100, 1, 0, 0, 1), &q, &opt, &[1, 2, 3]]),
            FormErr,
        ),
        ("512 zero bytes", vec![0; 512], FormErr),
        (
            "opcode IQUERY (1)",
            cat(&[&h(0x0900, 1, 0, 0, 0), &q]),
            NotImp,
        ),
        (
            "opcode STATUS (2)",
            cat(&[&h(0x1100, 1, 0, 0, 0), &q]),
            NotImp,
        ),
        (
            "opcode NOTIFY (4)",
            cat(&[&h(0x2000, 1, 0, 0, 0), &q]),
            NotImp,
        ),
        (
            "opcode UPDATE (5)",
            cat(&[&h(0x2800, 1, 0, 0, 0), &q]),
            NotImp,
        ),
        ("opcode 15", cat(&[&h(0x7900, 1, 0, 0, 0), &q]), NotImp),
    ]
}

/// Check a reply to a malformed packet against what is acceptable; returns a description.
fn judge(shape: &str, packet: &[u8], reply: Option<&[u8]>, expect: Expect) -> Result<String> {
    let Some(reply) = reply else {
        return Ok("no answer".into());
    };
    let want_rcode = match expect {
        Expect::Silence => bail!("{shape}: must not be answered, got {reply:02x?}"),
        Expect::FormErr => FORMERR,
        Expect::NotImp => NOTIMP,
    };
    let (Some(id), Some(flags)) = (reply.get(..2), reply.get(2..4)) else {
        bail!("{shape}: reply shorter than a header: {reply:02x?}");
    };
    ensure!(
        reply.len() >= 12,
        "{shape}: reply shorter than a header: {reply:02x?}"
    );
    ensure!(
        packet.get(..2) == Some(id),
        "{shape}: id {id:02x?} not echoed"
    );
    ensure!(flags[0] & 0x80 != 0, "{shape}: reply without QR=1");
    let rcode = flags[1] & 0x0F;
    ensure!(
        rcode == want_rcode,
        "{shape}: rcode {rcode}, want {want_rcode}"
    );
    Ok(format!("rcode {rcode}, id echoed"))
}

/// The canary query still gets its cached answer over UDP (and TCP when `tcp`).
fn canary(node: &Node, tcp: bool) -> Result<()> {
    let reply = query_udp(node.dns_addr(), CANARY, RecordType::A, None, false)?;
    ensure!(
        reply.response_code == ResponseCode::NoError && reply.answers.len() == 2,
        "{reply}"
    );
    if tcp {
        let reply = query_tcp(node.dns_addr(), CANARY, RecordType::A, None, false)?;
        ensure!(
            reply.response_code == ResponseCode::NoError && reply.answers.len() == 2,
            "{reply}"
        );
    }
    Ok(())
}

/// Over 30 malformed UDP shapes each get FORMERR/NOTIMP with the id echoed or no answer
/// (responses and packets without a header: no answer), the node answers a valid query
/// after every one, and none of them reaches the upstream.
#[test]
fn malformed_udp_is_rejected_and_survived() -> Result<()> {
    let setup = Setup::start()?;
    setup.run(|s| {
        canary(&s.node, false)?;
        let baseline = s.auth.queries();
        let shapes = udp_shapes();
        ensure!(shapes.len() >= 30, "only {} shapes", shapes.len());
        let started = Instant::now();
        let mut answered = 0;
        for (shape, packet, expect) in &shapes {
            let reply = send_raw_udp(s.node.dns_addr(), packet, REPLY_WAIT);
            let verdict = judge(shape, packet, reply.as_deref(), *expect)?;
            answered += usize::from(reply.is_some());
            println!("{shape}: {verdict}");
            canary(&s.node, false).map_err(|e| e.context(format!("after {shape}")))?;
        }
        println!(
            "{} shapes ({answered} answered) in {:?}",
            shapes.len(),
            started.elapsed()
        );
        let after = s.auth.queries();
        ensure!(
            after == baseline,
            "malformed input reached the upstream ({baseline} -> {after})"
        );
        Ok(())
    })
}

/// Malformed TCP input (huge or zero length prefix, truncated frames, bad messages) is
/// rejected or ignored, a stalled connection does not block others, and nothing is forwarded.
#[test]
fn malformed_tcp_is_rejected_and_survived() -> Result<()> {
    let setup = Setup::start()?;
    setup.run(|s| {
        canary(&s.node, true)?;
        let baseline = s.auth.queries();
        let formerr_body = cat(&[&header(0x7A01, 0x0100, 1, 0, 0, 0), &[7, b'a']]);
        let response_body = cat(&[&header(0x7A02, 0x8180, 1, 0, 0, 0), &question(CANARY)]);
        let with_prefix = |body: &[u8]| {
            let len = u16::try_from(body.len()).unwrap_or(u16::MAX);
            cat(&[&len.to_be_bytes(), body])
        };
        let shapes: Vec<(&str, Vec<u8>, Expect)> = vec![
            (
                "length 65535, 100 bytes sent",
                cat(&[&[0xFF, 0xFF], &[0u8; 100]]),
                Expect::Silence,
            ),
            ("zero-length message", vec![0, 0], Expect::Silence),
            ("one-byte message", vec![0, 1, 0x7A], Expect::Silence),
            (
                "length 300, 20 bytes sent",
                cat(&[&[1, 44], &[0u8; 20]]),
                Expect::Silence,
            ),
            (
                "framed malformed question",
                with_prefix(&formerr_body),
                Expect::FormErr,
            ),
            (
                "framed response (QR=1)",
                with_prefix(&response_body),
                Expect::Silence,
            ),
        ];
        for (shape, bytes, expect) in &shapes {
            let outcome = send_raw_tcp(s.node.dns_addr(), bytes, REPLY_WAIT)?;
            let verdict = match &outcome {
                TcpReply::Message(reply) => {
                    let body = bytes.get(2..).unwrap_or_default();
                    judge(shape, body, Some(reply), *expect)?
                }
                other => format!("{other:?}"),
            };
            println!("TCP {shape}: {verdict}");
            canary(&s.node, true).map_err(|e| e.context(format!("after TCP {shape}")))?;
        }
        // A client that sent half a frame and went quiet must not block anyone else.
        let mut stalled = TcpStream::connect(s.node.dns_addr())?;
        stalled.write_all(&[0x00, 0x40, 0x12])?;
        let started = Instant::now();
        canary(&s.node, true)?;
        println!(
            "valid TCP query beside a stalled connection answered in {:?}",
            started.elapsed()
        );
        drop(stalled);
        let after = s.auth.queries();
        ensure!(
            after == baseline,
            "malformed TCP input reached the upstream ({baseline} -> {after})"
        );
        Ok(())
    })
}
