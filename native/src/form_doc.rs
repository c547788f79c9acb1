//! A form body (application/x-www-form-urlencoded) of an input form, read as
//! worker/parsing/fast.py's `form_pairs` and records.py's `_parse_form` read it. Only plain
//! ASCII bodies are read here; anything else (and anything Python would refuse) is None.

use crate::fields::{field_index, Fields, Value, N_FIELDS};
use std::borrow::Cow;

const MAX_FORM_FIELDS: usize = 200;

pub struct FormDoc<'a> {
    fields: [Option<Cow<'a, str>>; N_FIELDS],
}

impl<'a> FormDoc<'a> {
    pub fn parse(text: &'a str) -> Option<FormDoc<'a>> {
        let b = text.as_bytes();
        // Python strips the body (of any Unicode whitespace) first; bodies that would be
        // stripped, or are not ASCII, are left to it.
        if !b.iter().all(u8::is_ascii)
            || !b.first()?.is_ascii_graphic()
            || !b.last()?.is_ascii_graphic()
        {
            return None;
        }
        let mut fields: [Option<Cow<'a, str>>; N_FIELDS] = std::array::from_fn(|_| None);
        let mut keys: Vec<Cow<'a, str>> = Vec::with_capacity(16);
        for item in text.split('&') {
            let (name, value) = item.split_once('=')?;
            let (name, value) = (unquote(name)?, unquote(value)?);
            if keys.len() == MAX_FORM_FIELDS || keys.contains(&name) {
                return None; // Python: too many fields, or a field twice
            }
            if let Some(index) = field_index(&name) {
                fields[index] = Some(value);
            }
            keys.push(name);
        }
        Some(FormDoc { fields })
    }
}

impl<'a> Fields<'a> for FormDoc<'a> {
    fn value(&self, index: usize) -> Value<'a> {
        match &self.fields[index] {
            None => Value::Absent,
            Some(text) => Value::Str(text.clone()),
        }
    }
}

/// `unquote(text.replace("+", " "), errors="strict")` for ASCII text: %XX decoded (a `%` not
/// followed by two hex digits stays as it is), the result UTF-8 or None.
fn unquote(text: &str) -> Option<Cow<'_, str>> {
    if !text.contains(['%', '+']) {
        return Some(Cow::Borrowed(text));
    }
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() && hex(b[i + 1]).is_some() && hex(b[i + 2]).is_some() => {
                out.push(hex(b[i + 1])? * 16 + hex(b[i + 2])?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}
