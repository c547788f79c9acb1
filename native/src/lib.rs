//! The worker's fast paths in compiled code (docs/benchmark.md, "Compiled fast paths").
//!
//! `FastParser.json_events(value, timestamp_ms)` and `.form_events(value, timestamp_ms)` read
//! a record of the input forms (receipt webhook, CloudEvent or an array of them, REST
//! resource, Messaging status callback or CloudEvent; JSON or form body) whose every event
//! has the common shape, and return its receipt and status events as the Python parser
//! would build them; for any other record they return None and the Python parser
//! (worker/parsing/records.py) reads it, with its exact reasons. So this module only has to
//! agree with Python where it answers; tests/unit/test_parsing_compiled.py compares the two
//! on generated streams, on the edge values of every field and on mutated records.

mod copy_binary;
mod dates;
mod fields;
mod form_doc;
mod json_doc;
mod murmur2;
mod receipt;
mod status;

use dates::Utc;
use fields::{
    Fields, EVENT_TYPE, MESSAGE, MESSAGE_STATUS, PASCAL, RECEIPT, SNAKE, SPECVERSION, TYPE,
};
use form_doc::FormDoc;
use json_doc::JsonDoc;
use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDateTime, PyList, PyString, PyTuple, PyType, PyTzInfo};
use receipt::{common_receipt, Channel, Receipt};
use status::{callback_status, cloudevent_status, StatusUpdate};

// As raw JSON text; a spelling with escapes is left to the Python path.
const CLOUDEVENT_TYPE: &str = "\"com.twilio.conversations.delivery.updated\"";
const MESSAGING_CLOUDEVENT_PREFIX: &str = "\"com.twilio.messaging.message.";
const WEBHOOK_EVENT_TYPE: &str = "onDeliveryUpdated";
const EVENT_FIELDS: usize = 12;
const STATUS_FIELDS: usize = 5;

/// What the parser's methods return: (receipt events, status events) as Python lists.
type PyEvents<'py> = (Bound<'py, PyList>, Bound<'py, PyList>);

/// A record's events: receipt events and Messaging status events, in record order.
#[derive(Default)]
struct Events<'a> {
    receipts: Vec<Receipt<'a>>,
    statuses: Vec<StatusUpdate<'a>>,
}

/// Builds ReceiptEvents and StatusEvents from records of the common shape. Holds the Python
/// objects an event is made of, so that the worker's own classes and constants are the only
/// source of them.
#[pyclass(frozen, module = "receipts_native")]
struct FastParser {
    event_type: Py<PyType>,
    status_event_type: Py<PyType>,
    labels: Vec<String>,
    statuses: Vec<PyObject>,
    messaging_labels: Vec<String>,
    messaging_statuses: Vec<PyObject>,
    utc: Py<PyTzInfo>,
    sms: Py<PyString>,
    whatsapp: Py<PyString>,
    unknown: Py<PyString>,
}

#[pymethods]
impl FastParser {
    /// `event_type`, `status_event_type`: ReceiptEvent and StatusEvent (tuple subclasses of
    /// 12 and 5 fields, no other state); `statuses`: (label, Status) of receipt statuses, the
    /// empty label included; `messaging_statuses`: (label, Status) of the outbound Messaging
    /// statuses; `utc`: UTC.
    #[new]
    fn new(
        py: Python<'_>,
        event_type: Bound<'_, PyType>,
        status_event_type: Bound<'_, PyType>,
        statuses: Vec<(String, PyObject)>,
        messaging_statuses: Vec<(String, PyObject)>,
        utc: Bound<'_, PyTzInfo>,
    ) -> PyResult<Self> {
        check_tuple_type(&event_type, EVENT_FIELDS)?;
        check_tuple_type(&status_event_type, STATUS_FIELDS)?;
        let (labels, statuses) = statuses.into_iter().unzip();
        let (messaging_labels, messaging_statuses) = messaging_statuses.into_iter().unzip();
        Ok(FastParser {
            event_type: event_type.unbind(),
            status_event_type: status_event_type.unbind(),
            labels,
            statuses,
            messaging_labels,
            messaging_statuses,
            utc: utc.unbind(),
            sms: PyString::intern(py, "sms").unbind(),
            whatsapp: PyString::intern(py, "whatsapp").unbind(),
            unknown: PyString::intern(py, "unknown").unbind(),
        })
    }

    /// A JSON record's (receipt events, status events) if every event has the common shape,
    /// else None. `timestamp_ms` is the record's: a status callback's time.
    #[pyo3(signature = (value, timestamp_ms=None))]
    fn json_events<'py>(
        &self,
        py: Python<'py>,
        value: &[u8],
        timestamp_ms: Option<i64>,
    ) -> PyResult<Option<PyEvents<'py>>> {
        let text = std::str::from_utf8(value).ok();
        self.to_python(py, text.and_then(|text| self.read_json(text, timestamp_ms)))
    }

    /// A form body's (receipt events, status events) if it is the receipt webhook or a status
    /// callback of the common shape, else None.
    #[pyo3(signature = (value, timestamp_ms=None))]
    fn form_events<'py>(
        &self,
        py: Python<'py>,
        value: &[u8],
        timestamp_ms: Option<i64>,
    ) -> PyResult<Option<PyEvents<'py>>> {
        let doc = std::str::from_utf8(value).ok().and_then(FormDoc::parse);
        let events = doc.and_then(|doc| self.read_fields(&doc, PASCAL, timestamp_ms));
        self.to_python(py, events)
    }
}

fn check_tuple_type(cls: &Bound<'_, PyType>, fields: usize) -> PyResult<()> {
    let tuple_basic = unsafe { (*std::ptr::addr_of!(ffi::PyTuple_Type)).tp_basicsize };
    let named: Bound<'_, PyTuple> = cls.getattr("_fields")?.downcast_into()?;
    if !cls.is_subclass_of::<PyTuple>()?
        || unsafe { (*cls.as_type_ptr()).tp_basicsize } != tuple_basic
        || named.len() != fields
    {
        return Err(PyTypeError::new_err(format!(
            "expected a NamedTuple of {fields} fields"
        )));
    }
    Ok(())
}

impl FastParser {
    fn read_json<'a>(&self, text: &'a str, timestamp_ms: Option<i64>) -> Option<Events<'a>> {
        if text
            .trim_start_matches([' ', '\t', '\n', '\r'])
            .starts_with('[')
        {
            let docs = json_doc::array_docs(text)?;
            if docs.is_empty() {
                return None;
            }
            let mut events = Events::default();
            for doc in &docs {
                doc.raw(SPECVERSION)?;
                self.cloudevent(doc, &mut events)?;
            }
            return Some(events);
        }
        let doc = JsonDoc::parse(text)?;
        // In the order of worker/parsing/records.py's `_parse_json`.
        if doc.raw(SPECVERSION).is_some() {
            let mut events = Events::default();
            self.cloudevent(&doc, &mut events)?;
            return Some(events);
        }
        let base = if doc.raw(SNAKE + RECEIPT).is_some() && doc.raw(SNAKE + MESSAGE).is_some() {
            SNAKE // `sid` and `message_sid`: the REST resource
        } else {
            PASCAL
        };
        self.read_fields(&doc, base, timestamp_ms)
    }

    /// A webhook, REST resource or status callback: one event.
    fn read_fields<'a>(
        &self,
        doc: &impl Fields<'a>,
        base: usize,
        timestamp_ms: Option<i64>,
    ) -> Option<Events<'a>> {
        let mut events = Events::default();
        if !matches!(doc.value(EVENT_TYPE), fields::Value::Absent) {
            match doc.value(EVENT_TYPE) {
                fields::Value::Str(t) if t == WEBHOOK_EVENT_TYPE => {}
                _ => return None,
            }
            events
                .receipts
                .push(common_receipt(doc, PASCAL, &self.labels)?);
        } else if base == SNAKE {
            events
                .receipts
                .push(common_receipt(doc, SNAKE, &self.labels)?);
        } else if !matches!(doc.value(MESSAGE_STATUS), fields::Value::Absent) {
            let status = callback_status(doc, timestamp_ms, &self.messaging_labels)?;
            events.statuses.push(status);
        } else {
            return None;
        }
        Some(events)
    }

    fn cloudevent<'a>(&self, doc: &JsonDoc<'a>, events: &mut Events<'a>) -> Option<()> {
        let event_type = doc.raw(TYPE)?;
        let data = doc.data.as_deref()?;
        if event_type == CLOUDEVENT_TYPE {
            events
                .receipts
                .push(common_receipt(data, PASCAL, &self.labels)?);
        } else if event_type.starts_with(MESSAGING_CLOUDEVENT_PREFIX) && !event_type.contains('\\')
        {
            events
                .statuses
                .push(cloudevent_status(data, &self.messaging_labels)?);
        } else {
            return None;
        }
        Some(())
    }

    fn to_python<'py>(
        &self,
        py: Python<'py>,
        events: Option<Events<'_>>,
    ) -> PyResult<Option<PyEvents<'py>>> {
        let Some(events) = events else {
            return Ok(None);
        };
        let receipts = events.receipts.iter().map(|r| self.receipt_event(py, r));
        let receipts = PyList::new(py, receipts.collect::<PyResult<Vec<_>>>()?)?;
        let statuses = events.statuses.iter().map(|s| self.status_event(py, s));
        let statuses = PyList::new(py, statuses.collect::<PyResult<Vec<_>>>()?)?;
        Ok(Some((receipts, statuses)))
    }

    fn receipt_event<'py>(&self, py: Python<'py>, r: &Receipt<'_>) -> PyResult<Bound<'py, PyAny>> {
        let channel = match r.channel {
            Channel::Sms => self.sms.bind(py).clone(),
            Channel::WhatsApp => self.whatsapp.bind(py).clone(),
            Channel::Unknown => self.unknown.bind(py).clone(),
            Channel::Named(ref name) => PyString::new(py, name),
        };
        let s = |i: usize| PyString::new(py, &r.sids[i]).into_any();
        let created = self.datetime(py, &r.date_created)?;
        let updated = if r.date_updated == r.date_created {
            created.clone() // one object for both, as when DateUpdated is null
        } else {
            self.datetime(py, &r.date_updated)?
        };
        let items: [Bound<'py, PyAny>; EVENT_FIELDS] = [
            s(0),
            s(1),
            s(2),
            s(3),
            s(4),
            s(5),
            s(6),
            channel.into_any(),
            self.statuses[r.status].bind(py).clone(),
            self.error_code(py, r.error_code)?,
            created,
            updated,
        ];
        new_tuple(py, &self.event_type, items)
    }

    fn status_event<'py>(
        &self,
        py: Python<'py>,
        s: &StatusUpdate<'_>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let items: [Bound<'py, PyAny>; STATUS_FIELDS] = [
            PyString::new(py, &s.account).into_any(),
            PyString::new(py, &s.channel_message).into_any(),
            self.messaging_statuses[s.status].bind(py).clone(),
            self.error_code(py, s.error_code)?,
            self.datetime(py, &s.at)?,
        ];
        new_tuple(py, &self.status_event_type, items)
    }

    fn error_code<'py>(&self, py: Python<'py>, code: Option<u32>) -> PyResult<Bound<'py, PyAny>> {
        Ok(match code {
            Some(code) => code.into_pyobject(py)?.into_any(),
            None => py.None().into_bound(py),
        })
    }

    fn datetime<'py>(&self, py: Python<'py>, t: &Utc) -> PyResult<Bound<'py, PyAny>> {
        let tz = self.utc.bind(py);
        let dt = PyDateTime::new(
            py,
            t.year,
            t.month,
            t.day,
            t.hour,
            t.minute,
            t.second,
            t.micro,
            Some(tz),
        )?;
        Ok(dt.into_any())
    }
}

/// What `tuple.__new__(cls, items)` does for a tuple subclass without state (CPython's
/// tuple_subtype_new), without building the intermediate tuple. `cls` was checked by
/// `check_tuple_type`.
fn new_tuple<'py, const N: usize>(
    py: Python<'py>,
    cls: &Py<PyType>,
    items: [Bound<'py, PyAny>; N],
) -> PyResult<Bound<'py, PyAny>> {
    unsafe {
        let tp = cls.as_ptr().cast::<ffi::PyTypeObject>();
        let alloc = (*tp).tp_alloc.unwrap_or(ffi::PyType_GenericAlloc);
        let obj = alloc(tp, N as ffi::Py_ssize_t);
        if obj.is_null() {
            return Err(PyErr::fetch(py));
        }
        for (i, item) in items.into_iter().enumerate() {
            ffi::PyTuple_SET_ITEM(obj, i as ffi::Py_ssize_t, item.into_ptr());
        }
        Ok(Bound::from_owned_ptr(py, obj))
    }
}

#[pymodule]
fn receipts_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<FastParser>()?;
    m.add_function(wrap_pyfunction!(copy_binary::copy_binary, m)?)?;
    m.add_function(wrap_pyfunction!(murmur2::murmur2, m)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_webhook_of_the_common_shape_is_read() {
        let text = r#"{"EventType":"onDeliveryUpdated","AccountSid":"ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","ChatServiceSid":"ISaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","ConversationSid":"CHaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","MessageSid":"IMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","DeliveryReceiptSid":"DYaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","ChannelMessageSid":"SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","ParticipantSid":"MBaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","Status":"sent","ErrorCode":null,"DateCreated":"2026-03-01T00:00:01Z"}"#;
        let doc = JsonDoc::parse(text).unwrap();
        let labels: Vec<String> = vec!["".into(), "queued".into(), "sent".into()];
        let receipt = common_receipt(&doc, PASCAL, &labels).unwrap();
        assert_eq!(receipt.status, 2);
        assert!(matches!(receipt.channel, Channel::Sms));
        assert!(receipt.date_updated == receipt.date_created && receipt.error_code.is_none());
    }
}
