//! The dates of the common shape, as worker/parsing/fast.py's `common_date` reads them:
//! RFC 3339 (`datetime.fromisoformat`, then UTC) and the plain RFC 2822 of form bodies.
//! Spellings Python accepts and these do not are None: the Python parser reads them.

/// A UTC time, already checked to be one Python's datetime can hold.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Utc {
    pub year: i32,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub micro: u32,
}

/// `common_date`: RFC 3339 if it starts with four digits, else RFC 2822.
pub fn common_date(text: &str) -> Option<Utc> {
    let b = text.as_bytes();
    if b.len() >= 4 && b[..4].iter().all(u8::is_ascii_digit) {
        iso_date(b)
    } else {
        rfc2822_date(b)
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.f{1,6}][Z|±HH:MM]` (no offset: UTC).
fn iso_date(b: &[u8]) -> Option<Utc> {
    if b.len() < 19
        || !punctuated(
            b,
            &[(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')],
        )
    {
        return None;
    }
    let (year, month, day) = (digits(&b[0..4])?, digits(&b[5..7])?, digits(&b[8..10])?);
    let (hour, minute, second) = (
        digits(&b[11..13])?,
        digits(&b[14..16])?,
        digits(&b[17..19])?,
    );
    let mut rest = &b[19..];
    let mut micro = 0u32;
    if let Some((b'.', after)) = rest.split_first() {
        let n = after.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 || n > 6 {
            return None;
        }
        micro = digits(&after[..n])? * 10u32.pow(6 - n as u32);
        rest = &after[n..];
    }
    let offset_s = match rest {
        [] | [b'Z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (h, m) = (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?);
            if h > 23 || m > 59 {
                return None;
            }
            signed(*sign, h * 3600 + m * 60)
        }
        _ => return None,
    };
    utc(year, month, day, hour, minute, second, offset_s).map(|t| Utc { micro, ..t })
}

const WEEKDAYS: [&[u8]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];
const MONTHS: [&[u8]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// `Sun, 1 Mar 2026 00:00:12 +0000` (fast.py's `_RFC2822`): the weekday is not checked, an
/// offset under 24 hours is taken whatever its minutes.
fn rfc2822_date(b: &[u8]) -> Option<Utc> {
    if b.len() < 5 || !WEEKDAYS.contains(&&b[..3]) || &b[3..5] != b", " {
        return None;
    }
    let b = &b[5..];
    let day_len = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if !(1..=2).contains(&day_len) {
        return None;
    }
    let day = digits(&b[..day_len])?;
    let b = &b[day_len..];
    // " Mon YYYY HH:MM:SS +HHMM"
    let separators = [
        (0, b' '),
        (4, b' '),
        (9, b' '),
        (12, b':'),
        (15, b':'),
        (18, b' '),
    ];
    if b.len() != 24 || !punctuated(b, &separators) {
        return None;
    }
    let month = MONTHS.iter().position(|m| *m == &b[1..4])? as u32 + 1;
    if b[5] == b'0' {
        return None;
    }
    let year = digits(&b[5..9])?;
    let (hour, minute, second) = (
        digits(&b[10..12])?,
        digits(&b[13..15])?,
        digits(&b[16..18])?,
    );
    let sign = b[19];
    if sign != b'+' && sign != b'-' {
        return None;
    }
    let offset = digits(&b[20..22])? * 3600 + digits(&b[22..24])? * 60;
    if offset >= 86_400 {
        return None;
    }
    utc(year, month, day, hour, minute, second, signed(sign, offset))
}

/// `datetime.fromtimestamp(ms / 1000, UTC)` for a Kafka record timestamp: exact to the
/// millisecond while the float's rounding error stays far below a microsecond (until 2096).
pub fn utc_from_millis(ms: i64) -> Option<Utc> {
    if !(0..=4_000_000_000_000).contains(&ms) {
        return None;
    }
    from_unix_seconds(ms.div_euclid(1000), (ms.rem_euclid(1000) * 1000) as u32)
}

fn signed(sign: u8, seconds: u32) -> i64 {
    if sign == b'+' {
        i64::from(seconds)
    } else {
        -i64::from(seconds)
    }
}

/// A local time at `offset_s` east of UTC, in UTC; None where Python's datetime refuses the
/// local time (ValueError) or the UTC one (OverflowError).
fn utc(
    year: u32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    offset_s: i64,
) -> Option<Utc> {
    let year = year as i32;
    if year < 1 || !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let local =
        days_from_civil(year, month, day) * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    from_unix_seconds(local - offset_s, 0)
}

/// The UTC time `seconds` after 1970-01-01, if Python's datetime can hold it (years
/// 1..=9999; beyond: OverflowError in Python).
fn from_unix_seconds(seconds: i64, micro: u32) -> Option<Utc> {
    let (days, secs) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    if !(1..=9999).contains(&year) {
        return None;
    }
    Some(Utc {
        year,
        month,
        day,
        hour: (secs / 3600) as u8,
        minute: (secs % 3600 / 60) as u8,
        second: (secs % 60) as u8,
        micro,
    })
}

/// Every `(index, byte)` is at its place (`b` is long enough).
fn punctuated(b: &[u8], separators: &[(usize, u8)]) -> bool {
    separators.iter().all(|&(i, c)| b[i] == c)
}

fn digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |acc, c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's days_from_civil / civil_from_days (proleptic Gregorian, day 0 = 1970-01-01).
pub fn days_from_civil(year: i32, month: u32, day: u32) -> i64 {
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i32, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year as i32, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_round_trip_over_python_s_calendar() {
        for days in (-719_162..2_932_896).step_by(97) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, u32::from(m), u32::from(d)), days);
        }
    }

    #[test]
    fn offsets_move_the_day() {
        let t = common_date("2026-03-01T01:00:00+05:30").unwrap();
        assert_eq!(
            (t.year, t.month, t.day, t.hour, t.minute),
            (2026, 2, 28, 19, 30)
        );
        let t = common_date("Sun, 1 Mar 2026 01:00:00 -0130").unwrap();
        assert_eq!((t.day, t.hour, t.minute), (1, 2, 30));
        assert!(common_date("0001-01-01T00:00:00+00:01").is_none());
        assert!(common_date("2026-02-29T00:00:00Z").is_none());
        assert_eq!(
            common_date("2026-03-01T00:00:01.5Z").unwrap().micro,
            500_000
        );
    }
}
