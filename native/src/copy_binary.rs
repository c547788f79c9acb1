//! PostgreSQL's binary COPY format for rows of Python values: what asyncpg's
//! `copy_records_to_table` sends, without its per-value codec dispatch (docs/benchmark.md,
//! "Compiled fast path"). The caller names each column's type; a value of another type is a
//! TypeError, as it is in asyncpg.

use crate::dates::days_from_civil;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{
    timezone_utc, PyBytes, PyDateAccess, PyDateTime, PyString, PyTimeAccess, PyTuple,
    PyTzInfoAccess,
};

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
const USEC_PER_DAY: i64 = 86_400_000_000;

/// The rows as one binary COPY stream. `kinds` has one letter per column: t text, h smallint,
/// i integer, q bigint, z timestamptz (an aware datetime), b bytea; None is NULL anywhere.
#[pyfunction]
pub fn copy_binary<'py>(
    py: Python<'py>,
    rows: &Bound<'py, PyAny>,
    kinds: &str,
) -> PyResult<Bound<'py, PyBytes>> {
    let kinds = kinds.as_bytes();
    if let Some(bad) = kinds.iter().find(|k| !b"thiqzb".contains(k)) {
        return Err(PyValueError::new_err(format!(
            "unknown column kind {:?}",
            *bad as char
        )));
    }
    let columns =
        i16::try_from(kinds.len()).map_err(|_| PyValueError::new_err("too many columns"))?;
    let utc = timezone_utc(py);
    let epoch_2000 = days_from_civil(2000, 1, 1);
    let mut buf = Vec::with_capacity(64 * 1024);
    buf.extend_from_slice(SIGNATURE);
    buf.extend_from_slice(&0i32.to_be_bytes()); // flags
    buf.extend_from_slice(&0i32.to_be_bytes()); // header extension length
    for row in rows.try_iter()? {
        let row = row?;
        let row = row.downcast::<PyTuple>()?;
        if row.len() != kinds.len() {
            return Err(PyValueError::new_err(format!(
                "a row of {} values for {} columns",
                row.len(),
                kinds.len()
            )));
        }
        buf.extend_from_slice(&columns.to_be_bytes());
        for (value, kind) in row.iter().zip(kinds) {
            if value.is_none() {
                buf.extend_from_slice(&(-1i32).to_be_bytes());
                continue;
            }
            match kind {
                b't' => put(&mut buf, value.downcast::<PyString>()?.to_str()?.as_bytes()),
                b'h' => put(&mut buf, &value.extract::<i16>()?.to_be_bytes()),
                b'i' => put(&mut buf, &value.extract::<i32>()?.to_be_bytes()),
                b'q' => put(&mut buf, &value.extract::<i64>()?.to_be_bytes()),
                b'b' => put(&mut buf, value.downcast::<PyBytes>()?.as_bytes()),
                _ => {
                    let mut dt = value.downcast::<PyDateTime>()?.clone();
                    match dt.get_tzinfo() {
                        Some(tz) if tz.is(&utc) => {}
                        Some(_) => dt = dt.call_method1("astimezone", (&utc,))?.downcast_into()?,
                        None => {
                            return Err(PyTypeError::new_err("a naive datetime for timestamptz"))
                        }
                    }
                    let days =
                        days_from_civil(dt.get_year(), dt.get_month().into(), dt.get_day().into());
                    let seconds = i64::from(dt.get_hour()) * 3600
                        + i64::from(dt.get_minute()) * 60
                        + i64::from(dt.get_second());
                    let micros = (days - epoch_2000) * USEC_PER_DAY
                        + seconds * 1_000_000
                        + i64::from(dt.get_microsecond());
                    put(&mut buf, &micros.to_be_bytes());
                }
            }
        }
    }
    buf.extend_from_slice(&(-1i16).to_be_bytes());
    Ok(PyBytes::new(py, &buf))
}

fn put(buf: &mut Vec<u8>, value: &[u8]) {
    buf.extend_from_slice(&(value.len() as i32).to_be_bytes());
    buf.extend_from_slice(value);
}
