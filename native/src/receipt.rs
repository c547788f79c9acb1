//! The common shape of a receipt event, as worker/parsing/fast.py's `common_event` reads
//! it: all seven SIDs canonical, a channel implied or canonical, a lower-case status, an
//! integer or empty error code, RFC 3339 or plain RFC 2822 dates. Anything else is None,
//! and the Python parser decides. No Python object is made here.

use crate::dates::{common_date, Utc};
use crate::fields::{
    Fields, Value, CHANNEL_LOWER, CHANNEL_MESSAGE, CHANNEL_UPPER, DATE_CREATED, DATE_UPDATED,
    ERROR_CODE, STATUS,
};
use std::borrow::Cow;

const MAX_ERROR_CODE: u64 = (1 << 31) - 1;

pub enum Channel<'a> {
    Sms,
    WhatsApp,
    Unknown,
    Named(Cow<'a, str>),
}

pub struct Receipt<'a> {
    /// account, chat service, conversation, message, receipt, channel message, participant.
    pub sids: [Cow<'a, str>; 7],
    pub channel: Channel<'a>,
    /// The index of the status label in the parser's list.
    pub status: usize,
    pub error_code: Option<u32>,
    pub date_created: Utc,
    pub date_updated: Utc,
}

// The SIDs' prefixes, in the order of the receipt fields (account .. participant).
const PREFIXES: [Option<&[u8; 2]>; 7] = [
    Some(b"AC"),
    Some(b"IS"),
    Some(b"CH"),
    Some(b"IM"),
    Some(b"DY"),
    None,
    Some(b"MB"),
];

/// The receipt of `doc`, whose receipt fields start at `base` (PASCAL or SNAKE), if common.
pub fn common_receipt<'a>(
    doc: &impl Fields<'a>,
    base: usize,
    labels: &[String],
) -> Option<Receipt<'a>> {
    let field = |i: usize| doc.value(base + i);
    let sid = |i: usize| match field(i) {
        Value::Str(s) if canonical_sid(&s, PREFIXES[i]) => Some(s),
        _ => None,
    };
    let sids = [
        sid(0)?,
        sid(1)?,
        sid(2)?,
        sid(3)?,
        sid(4)?,
        sid(5)?,
        sid(6)?,
    ];
    let channel = channel(
        doc.value(CHANNEL_UPPER),
        doc.value(CHANNEL_LOWER),
        &sids[CHANNEL_MESSAGE],
    )?;
    let status = match field(STATUS) {
        Value::Absent | Value::Null => 0,
        Value::Str(label) if label.is_empty() => 0,
        Value::Str(label) => labels.iter().position(|l| *l == label)?,
        Value::Other(_) => return None,
    };
    let error_code = error_code(field(ERROR_CODE))?;
    let date_created = match field(DATE_CREATED) {
        Value::Str(text) => common_date(&text)?,
        _ => return None,
    };
    let date_updated = match field(DATE_UPDATED) {
        Value::Absent | Value::Null => date_created,
        Value::Str(text) if text.is_empty() => date_created,
        Value::Str(text) => common_date(&text)?,
        Value::Other(_) => return None,
    };
    Some(Receipt {
        sids,
        channel,
        status,
        error_code,
        date_created,
        date_updated,
    })
}

pub fn canonical_sid(sid: &str, prefix: Option<&[u8; 2]>) -> bool {
    let b = sid.as_bytes();
    b.len() == 34
        && match prefix {
            Some(p) => b[..2] == p[..],
            None => b[0].is_ascii_uppercase() && b[1].is_ascii_uppercase(),
        }
        && b[2..]
            .iter()
            .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// `Channel` or `channel` (not both) in its canonical spelling, not `chat`; if neither is
/// there, the one the channel message SID implies.
fn channel<'a>(upper: Value<'a>, lower: Value<'a>, channel_message: &str) -> Option<Channel<'a>> {
    let explicit = match (upper, lower) {
        (Value::Absent, Value::Absent) => {
            return Some(match &channel_message[..2] {
                "WA" => Channel::WhatsApp,
                "SM" | "MM" => Channel::Sms,
                _ => Channel::Unknown,
            })
        }
        (Value::Str(name), Value::Absent) | (Value::Absent, Value::Str(name)) => name,
        _ => return None,
    };
    let b = explicit.as_bytes();
    let canonical = !b.is_empty()
        && b.len() <= 32
        && b[0].is_ascii_lowercase()
        && b[1..]
            .iter()
            .all(|c| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'));
    (canonical && explicit != "chat").then_some(Channel::Named(explicit))
}

/// None: not the common shape; Some(None): no error (absent, empty or 0); Some(Some(code)).
pub fn error_code(value: Value<'_>) -> Option<Option<u32>> {
    let digits: &str = match &value {
        Value::Absent | Value::Null => return Some(None),
        Value::Str(text) if text.is_empty() => return Some(None),
        Value::Str(text) if text.len() <= 10 => text, // a form body's, or a string in JSON
        Value::Str(_) => return None,
        Value::Other(raw) => raw, // a JSON number: only digits are an integer
    };
    if digits.is_empty() || digits.len() > 19 || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let code: u64 = digits.parse().ok()?;
    if code > MAX_ERROR_CODE {
        return None;
    }
    Some((code != 0).then_some(code as u32))
}
