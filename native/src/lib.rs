//! The worker's parsing fast path in compiled code (docs/benchmark.md, "Compiled fast path").
//!
//! `FastParser.json_events(value)` and `.form_events(value)` read a record of the receipt forms
//! (webhook, CloudEvent, CloudEvents array, REST resource; JSON or form body) whose every
//! event has the common shape, and return its events as the Python parser would build them;
//! for any other record they return None and the Python parser (worker/parsing/records.py)
//! reads it, with its exact reasons. So this module only has to agree with Python where it
//! answers; the tests compare the two on every record of generated streams and on mutated
//! ones (tests/unit/test_parsing_compiled.py).

mod copy_binary;
mod dates;
mod fields;
mod form_doc;
mod json_doc;
mod murmur2;
mod receipt;

use dates::Utc;
use fields::{Fields, EVENT_TYPE, MESSAGE, PASCAL, RECEIPT, SNAKE, SPECVERSION, TYPE};
use form_doc::FormDoc;
use json_doc::JsonDoc;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDateTime, PyList, PyString, PyTuple, PyType, PyTzInfo};
use receipt::{common_receipt, Channel, Receipt};

// As raw JSON text; a spelling with escapes is left to the Python path.
const CLOUDEVENT_TYPE: &str = "\"com.twilio.conversations.delivery.updated\"";
const WEBHOOK_EVENT_TYPE: &str = "onDeliveryUpdated";
const EVENT_FIELDS: usize = 12;

/// Builds ReceiptEvents from records of the common shape. Holds the Python objects an
/// event is made of, so that the worker's own classes and constants are the only source.
#[pyclass(frozen, module = "receipts_native")]
struct FastParser {
    event_type: Py<PyType>,
    labels: Vec<String>,
    statuses: Vec<PyObject>,
    utc: Py<PyTzInfo>,
    sms: Py<PyString>,
    whatsapp: Py<PyString>,
    unknown: Py<PyString>,
}

#[pymethods]
impl FastParser {
    /// `event_type`: ReceiptEvent (a tuple subclass of 12 fields, no other state);
    /// `statuses`: (label, Status) pairs, the empty label meaning the first; `utc`: UTC.
    #[new]
    fn new(
        py: Python<'_>,
        event_type: Bound<'_, PyType>,
        statuses: Vec<(String, PyObject)>,
        utc: Bound<'_, PyTzInfo>,
    ) -> PyResult<Self> {
        let tuple_basic = unsafe { (*std::ptr::addr_of!(ffi::PyTuple_Type)).tp_basicsize };
        let fields: Bound<'_, PyTuple> = event_type.getattr("_fields")?.downcast_into()?;
        if !event_type.is_subclass_of::<PyTuple>()?
            || unsafe { (*event_type.as_type_ptr()).tp_basicsize } != tuple_basic
            || fields.len() != EVENT_FIELDS
        {
            return Err(pyo3::exceptions::PyTypeError::new_err(
                "event_type must be a NamedTuple of 12 fields",
            ));
        }
        let (labels, statuses) = statuses.into_iter().unzip();
        Ok(FastParser {
            event_type: event_type.unbind(),
            labels,
            statuses,
            utc: utc.unbind(),
            sms: PyString::intern(py, "sms").unbind(),
            whatsapp: PyString::intern(py, "whatsapp").unbind(),
            unknown: PyString::intern(py, "unknown").unbind(),
        })
    }

    /// The events of a JSON record if it is a receipt form (webhook, CloudEvent or an array
    /// of them, REST resource) and every event has the common shape; else None.
    fn json_events<'py>(
        &self,
        py: Python<'py>,
        value: &[u8],
    ) -> PyResult<Option<Bound<'py, PyList>>> {
        let receipts = std::str::from_utf8(value)
            .ok()
            .and_then(|text| self.read_json(text));
        self.events(py, receipts)
    }

    /// The event of a form body if it is the receipt webhook with the common shape; else None.
    fn form_events<'py>(
        &self,
        py: Python<'py>,
        value: &[u8],
    ) -> PyResult<Option<Bound<'py, PyList>>> {
        let receipt = std::str::from_utf8(value)
            .ok()
            .and_then(FormDoc::parse)
            .and_then(|doc| match doc.value(EVENT_TYPE) {
                fields::Value::Str(t) if t == WEBHOOK_EVENT_TYPE => {
                    common_receipt(&doc, PASCAL, &self.labels)
                }
                _ => None,
            });
        self.events(py, receipt.map(|r| vec![r]))
    }
}

impl FastParser {
    fn read_json<'a>(&self, text: &'a str) -> Option<Vec<Receipt<'a>>> {
        if text
            .trim_start_matches([' ', '\t', '\n', '\r'])
            .starts_with('[')
        {
            let docs = json_doc::array_docs(text)?;
            if docs.is_empty() {
                return None;
            }
            return docs
                .iter()
                .map(|doc| {
                    doc.raw(SPECVERSION)?;
                    self.cloudevent(doc)
                })
                .collect();
        }
        let doc = JsonDoc::parse(text)?;
        // In the order of worker/parsing/records.py's `_parse_json`.
        if doc.raw(SPECVERSION).is_some() {
            return Some(vec![self.cloudevent(&doc)?]);
        }
        let base = if doc.raw(EVENT_TYPE).is_some() {
            match doc.value(EVENT_TYPE) {
                fields::Value::Str(t) if t == WEBHOOK_EVENT_TYPE => PASCAL,
                _ => return None,
            }
        } else if doc.raw(SNAKE + RECEIPT).is_some() && doc.raw(SNAKE + MESSAGE).is_some() {
            SNAKE // `sid` and `message_sid`: the REST resource
        } else {
            return None;
        };
        Some(vec![common_receipt(&doc, base, &self.labels)?])
    }

    fn cloudevent<'a>(&self, doc: &JsonDoc<'a>) -> Option<Receipt<'a>> {
        if doc.raw(TYPE)? != CLOUDEVENT_TYPE {
            return None;
        }
        common_receipt(doc.data.as_deref()?, PASCAL, &self.labels)
    }

    fn events<'py>(
        &self,
        py: Python<'py>,
        receipts: Option<Vec<Receipt<'_>>>,
    ) -> PyResult<Option<Bound<'py, PyList>>> {
        let Some(receipts) = receipts else {
            return Ok(None);
        };
        let events = receipts
            .iter()
            .map(|r| self.event(py, r))
            .collect::<PyResult<Vec<_>>>()?;
        Ok(Some(PyList::new(py, events)?))
    }

    fn event<'py>(&self, py: Python<'py>, r: &Receipt<'_>) -> PyResult<Bound<'py, PyAny>> {
        let channel = match r.channel {
            Channel::Sms => self.sms.bind(py).clone(),
            Channel::WhatsApp => self.whatsapp.bind(py).clone(),
            Channel::Unknown => self.unknown.bind(py).clone(),
            Channel::Named(ref name) => PyString::new(py, name),
        };
        let error_code = match r.error_code {
            Some(code) => code.into_pyobject(py)?.into_any(),
            None => py.None().into_bound(py),
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
            error_code,
            created,
            updated,
        ];
        // What tuple.__new__(event_type, items) does for a tuple subclass without state
        // (CPython's tuple_subtype_new), without building the intermediate tuple.
        unsafe {
            let tp = self.event_type.as_ptr().cast::<ffi::PyTypeObject>();
            let alloc = (*tp).tp_alloc.unwrap_or(ffi::PyType_GenericAlloc);
            let obj = alloc(tp, EVENT_FIELDS as ffi::Py_ssize_t);
            if obj.is_null() {
                return Err(PyErr::fetch(py));
            }
            for (i, item) in items.into_iter().enumerate() {
                ffi::PyTuple_SET_ITEM(obj, i as ffi::Py_ssize_t, item.into_ptr());
            }
            Ok(Bound::from_owned_ptr(py, obj))
        }
    }

    fn datetime<'py>(&self, py: Python<'py>, t: &Utc) -> PyResult<Bound<'py, PyAny>> {
        let tz = self.utc.bind(py);
        Ok(PyDateTime::new(
            py,
            t.year,
            t.month,
            t.day,
            t.hour,
            t.minute,
            t.second,
            t.micro,
            Some(tz),
        )?
        .into_any())
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
