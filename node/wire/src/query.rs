//! The server's fast path: parse and validate an incoming query in one pass, no allocation.

use crate::header::{HEADER_LEN, Header, opcode};
use crate::message::{Message, Opt, Question};

/// A validated query: exactly one question, every record well-formed, at most one OPT.
#[derive(Clone, Copy, Debug)]
pub struct Query<'a> {
    /// The query's header.
    pub header: Header,
    /// The single question.
    pub question: Question<'a>,
    /// The EDNS OPT record, if present (its version is reported, not checked).
    pub opt: Option<Opt<'a>>,
}

/// Why a datagram is not a query the server can answer normally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryError {
    /// Drop silently: shorter than a header, or QR=1 (a response sent to us).
    Drop,
    /// Answer FORMERR with this id and flags (QDCOUNT != 1, malformed question or record, a bad,
    /// duplicate or misplaced OPT, or bytes after the last record).
    FormErr {
        /// The query's id.
        id: u16,
        /// The query's flags word.
        flags: u16,
    },
    /// Opcode other than QUERY (0): answer NOTIMP.
    NotImp {
        /// The query's id.
        id: u16,
        /// The query's flags word.
        flags: u16,
    },
}

/// Parse a query the way the server needs it: drop responses and runts, NOTIMP for other
/// opcodes, FORMERR for anything malformed; else the question and OPT.
pub fn parse_query(bytes: &[u8]) -> core::result::Result<Query<'_>, QueryError> {
    if bytes.len() < HEADER_LEN {
        return Err(QueryError::Drop);
    }
    let header = Header::parse(bytes).map_err(|_| QueryError::Drop)?;
    if header.qr() {
        return Err(QueryError::Drop);
    }
    let (id, flags) = (header.id, header.flags);
    if header.opcode() != opcode::QUERY {
        return Err(QueryError::NotImp { id, flags });
    }
    let form_err = QueryError::FormErr { id, flags };
    if header.qdcount != 1 {
        return Err(form_err);
    }
    let message = Message::parse(bytes).map_err(|_| form_err)?;
    let question = message.question().ok_or(form_err)?;
    let opt = message.validate().map_err(|_| form_err)?;
    Ok(Query {
        header,
        question,
        opt,
    })
}
