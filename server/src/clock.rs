//! Time as the log writes it: microseconds since the Unix epoch, shown as
//! RFC 3339 UTC with six fractional digits (`2026-02-04T20:30:45.123456Z`).
//! The ground floor: nothing here knows the store.
//!
//! Invariant: [`format_timestamp`] and [`parse_timestamp`] are inverses on
//! every timestamp the writer stamps, so a record's `timestamp` field reads
//! back as the microseconds it was written from.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Formats microseconds since the Unix epoch as `2026-02-04T20:30:45.123456Z`.
/// The last result is kept per thread: the writer stamps a whole group with
/// one timestamp and formats it once.
pub(crate) fn format_timestamp(micros: i64) -> String {
    with_timestamp(micros, str::to_owned)
}

/// Appends `micros` formatted as [`format_timestamp`] does, without a
/// string of its own.
pub(crate) fn push_timestamp(micros: i64, out: &mut Vec<u8>) {
    with_timestamp(micros, |s| out.extend_from_slice(s.as_bytes()));
}

fn with_timestamp<T>(micros: i64, f: impl FnOnce(&str) -> T) -> T {
    thread_local! {
        static LAST: std::cell::RefCell<(i64, String)> = const { std::cell::RefCell::new((i64::MIN, String::new())) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if last.0 != micros {
            *last = (micros, format_timestamp_uncached(micros));
        }
        f(&last.1)
    })
}

fn format_timestamp_uncached(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    match OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            frac
        ),
        Err(_) => "1970-01-01T00:00:00.000000Z".to_owned(),
    }
}

/// Parses an RFC 3339 timestamp into microseconds since the Unix epoch.
pub(crate) fn parse_timestamp(s: &str) -> Option<i64> {
    let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1000).ok()
}

/// The current time in microseconds since the Unix epoch.
pub(crate) fn now_micros() -> i64 {
    i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_format_and_parse() {
        assert_eq!(format_timestamp(0), "1970-01-01T00:00:00.000000Z");
        let t = 1_770_237_045_123_456;
        assert_eq!(parse_timestamp(&format_timestamp(t)), Some(t));
        assert_eq!(
            parse_timestamp("2026-02-04T21:30:45.5+01:00"),
            Some(1_770_237_045_500_000)
        );
    }
}
