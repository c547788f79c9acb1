//! The common shape of a Messaging status event (worker/parsing/statuses.py): a canonical
//! account SID, an SM or MM channel message SID, a known outbound status in its usual
//! spelling, an integer or empty error code, and its time (an RFC 3339 date in Event
//! Streams' data; the record's timestamp for a callback). Anything else, an inbound status
//! included, is None and the Python parser decides. No Python object is made here.

use crate::dates::{common_date, utc_from_millis, Utc};
use crate::fields::{
    Fields, Value, ACCOUNT, CAMEL_ACCOUNT, CAMEL_DATE_UPDATED, CAMEL_ERROR_CODE, CAMEL_MESSAGE,
    CAMEL_STATUS, CAMEL_TIMESTAMP, ERROR_CODE, MESSAGE, MESSAGE_STATUS, PASCAL,
};
use crate::receipt::{canonical_sid, error_code};
use std::borrow::Cow;

pub struct StatusUpdate<'a> {
    pub account: Cow<'a, str>,
    pub channel_message: Cow<'a, str>,
    /// The index of the status label in the parser's Messaging list.
    pub status: usize,
    pub error_code: Option<u32>,
    pub at: Utc,
}

/// A status callback (form body or JSON): its time is the record's timestamp.
pub fn callback_status<'a>(
    doc: &impl Fields<'a>,
    timestamp_ms: Option<i64>,
    labels: &[String],
) -> Option<StatusUpdate<'a>> {
    status_update(
        doc.value(PASCAL + ACCOUNT),
        doc.value(PASCAL + MESSAGE),
        doc.value(MESSAGE_STATUS),
        doc.value(PASCAL + ERROR_CODE),
        utc_from_millis(timestamp_ms?)?,
        labels,
    )
}

/// Event Streams' Messaging.MessageStatus data: the update's own time (`dateUpdated`, v7),
/// else the event's (`timestamp`).
pub fn cloudevent_status<'a>(
    data: &impl Fields<'a>,
    labels: &[String],
) -> Option<StatusUpdate<'a>> {
    let at = match data.value(CAMEL_DATE_UPDATED) {
        Value::Str(text) if !text.is_empty() => text,
        Value::Absent | Value::Null | Value::Str(_) => match data.value(CAMEL_TIMESTAMP) {
            Value::Str(text) if !text.is_empty() => text,
            _ => return None,
        },
        Value::Other(_) => return None,
    };
    status_update(
        data.value(CAMEL_ACCOUNT),
        data.value(CAMEL_MESSAGE),
        data.value(CAMEL_STATUS),
        data.value(CAMEL_ERROR_CODE),
        common_date(&at)?,
        labels,
    )
}

fn status_update<'a>(
    account: Value<'a>,
    channel_message: Value<'a>,
    status: Value<'a>,
    error: Value<'a>,
    at: Utc,
    labels: &[String],
) -> Option<StatusUpdate<'a>> {
    let account = match account {
        Value::Str(sid) if canonical_sid(&sid, Some(b"AC")) => sid,
        _ => return None,
    };
    let channel_message = match channel_message {
        Value::Str(sid)
            if canonical_sid(&sid, None) && (sid.starts_with("SM") || sid.starts_with("MM")) =>
        {
            sid
        }
        _ => return None,
    };
    // `.strip().lower()` in Python; only ASCII spellings without spaces are taken here.
    let status = match status {
        Value::Str(label)
            if !label.is_empty() && label.bytes().all(|c| c.is_ascii_alphabetic() || c == b'_') =>
        {
            let label = label.to_ascii_lowercase();
            labels.iter().position(|l| *l == label)?
        }
        _ => return None,
    };
    let error_code = error_code(error)?;
    Some(StatusUpdate {
        account,
        channel_message,
        status,
        error_code,
        at,
    })
}
