//! How the CLI shows things: events and reports as JSON, aligned tables,
//! timestamps, and the times it accepts.
//!
//! Text from the log reaches a terminal only through [`printable`]: every
//! table cell and every line of `tail` has its control and bidirectional
//! formatting characters escaped, so no field can forge a row, move the
//! cursor or reorder what is shown. Everything else printed goes through
//! `say!` ([`terminal_safe`]) or, for errors, [`printable`] too: a
//! hostile server's origins, notes, lines and messages included.

use std::io::Write;
use std::time::SystemTime;

use auditlog_client::pb;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A protobuf timestamp as a UTC date-time, if representable.
pub(crate) fn datetime(t: &prost_types::Timestamp) -> Option<OffsetDateTime> {
    let nanos = i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos);
    OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()
}

/// A protobuf timestamp as RFC 3339 UTC with microseconds; empty when unset.
pub(crate) fn timestamp_text(t: Option<&prost_types::Timestamp>) -> String {
    let Some(t) = t else { return String::new() };
    match datetime(t) {
        Some(dt) => {
            let micros = dt.microsecond();
            format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{micros:06}Z",
                dt.year(),
                u8::from(dt.month()),
                dt.day(),
                dt.hour(),
                dt.minute(),
                dt.second()
            )
        }
        None => format!("{}s", t.seconds),
    }
}

/// Parses RFC 3339 (`2026-11-22T08:00:00Z`), a date and time without a
/// zone (`2026-11-22T08:00:00`, or with a space for the `T`), read as UTC,
/// or a date (`2026-11-22`, midnight UTC).
pub(crate) fn parse_time(s: &str) -> Result<SystemTime, String> {
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t.into());
    }
    let zoneless = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute][optional [:[second][optional [.[subsecond]]]]]"
    );
    if let Ok(t) = time::PrimitiveDateTime::parse(&s.replacen(' ', "T", 1), &zoneless) {
        return Ok(t.assume_utc().into());
    }
    if let Some(d) = parse_date(s) {
        return Ok(d.midnight().assume_utc().into());
    }
    Err(format!(
        "{s:?} is not a time; use RFC 3339 (2026-11-22T08:00:00Z), a time read as UTC \
         (2026-11-22T08:00:00) or a date (2026-11-22)"
    ))
}

/// Parses a date, `YYYY-MM-DD`.
pub(crate) fn parse_date(s: &str) -> Option<time::Date> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s, &format).ok()
}

/// The event's details as compact JSON.
pub(crate) fn details_text(e: &pb::Event) -> String {
    details_json(e).to_string()
}

/// The event's details as a JSON object (empty when there are none), from
/// the stored text when the server answered it (`details_json`, which the
/// CLI's queries ask for) or from the `Struct` (a server older than that
/// field): `auditlog_client::details_of`. Text that is not a JSON object,
/// which no server sends, shows as it came rather than as empty details.
pub(crate) fn details_json(e: &pb::Event) -> Value {
    match auditlog_client::details_of(e) {
        Ok(map) => Value::Object(map),
        Err(_) if !e.details_json.is_empty() => Value::String(e.details_json.clone()),
        Err(_) => Value::Object(Default::default()),
    }
}

/// One string field of the details, empty when absent.
pub(crate) fn detail_str(e: &pb::Event, key: &str) -> String {
    match details_json(e).get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// Milliseconds for a table (`12.35`): two decimals, in scientific
/// notation (`1.000e300`) from a billion up (11 days; the server takes
/// tracked durations up to a day, but a `performance` event logged with
/// `Log` carries what it was given), `n/a` when not a number.
pub(crate) fn millis_text(ms: f64) -> String {
    if !ms.is_finite() {
        "n/a".to_owned()
    } else if ms.abs() >= 1e9 {
        format!("{ms:.3e}")
    } else {
        format!("{ms:.2}")
    }
}

/// An event as a JSON object, fields in the log's order.
pub(crate) fn event_json(e: &pb::Event) -> Value {
    let opt = |s: &str| {
        if s.is_empty() {
            Value::Null
        } else {
            Value::String(s.to_owned())
        }
    };
    json!({
        "seq": e.seq,
        "id": e.id,
        "timestamp": timestamp_text(e.timestamp.as_ref()),
        "event_type": e.event_type,
        "actor": e.actor,
        "caller": opt(&e.caller),
        "lead_id": opt(&e.lead_id),
        "workflow": opt(&e.workflow),
        "details": details_json(e),
        "idempotency_key": opt(&e.idempotency_key),
        "key_id": e.key_id,
        "prev": e.prev,
        "signature": e.signature,
    })
}

/// A receipt as JSON.
pub(crate) fn receipt_json(r: &pb::Receipt) -> Value {
    json!({
        "seq": r.seq,
        "id": r.id,
        "timestamp": timestamp_text(r.timestamp.as_ref()),
        "signature": r.signature,
        "duplicate": r.duplicate,
    })
}

/// Statistics as JSON.
pub(crate) fn stats_json(s: &pb::GetStatsResponse) -> Value {
    json!({
        "total_events": s.total_events,
        "by_type": s.by_type,
        "by_workflow": s.by_workflow,
        "leads_processed": s.leads_processed,
        "error_count": s.error_count,
        "first_event": s.first_event.as_ref().map(|t| timestamp_text(Some(t))),
        "last_event": s.last_event.as_ref().map(|t| timestamp_text(Some(t))),
        "head_seq": s.head_seq,
    })
}

/// A map's entries, largest count first, then by name.
pub(crate) fn ranked(map: &std::collections::HashMap<String, u64>) -> Vec<(&str, u64)> {
    let mut rows: Vec<(&str, u64)> = map.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    rows
}

/// `text` with every character a terminal would act on instead of showing
/// escaped as Rust writes it (`\n`, `\u{1b}`): control characters (C0, DEL,
/// C1) and the bidirectional and zero-width formatting characters. With
/// `keep_lines`, newlines and tabs stay (a traceback keeps its layout).
pub(crate) fn printable(text: &str, keep_lines: bool) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| unsafe_char(c) && !(keep_lines && matches!(c, '\n' | '\t'));
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Whether a terminal acts on `c` instead of showing it: a control
/// character (C0, DEL, C1), or a bidirectional or zero-width formatting one.
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

/// What `say!` prints: `text` with each character a terminal would act on,
/// but newlines and tabs, written `\uXXXX` (all are in the BMP). Such a
/// character can only be inside a string in the JSON the CLI prints, where
/// `\uXXXX` is its escape: JSON output reads back the same, and a hostile
/// server's origin, note, line or message cannot drive the terminal.
pub(crate) fn terminal_safe(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| unsafe_char(c) && !matches!(c, '\n' | '\t');
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if unsafe_char(c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A plain-text table with aligned columns; cells are shown through
/// [`printable`].
pub(crate) struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(headers: Vec<&'static str>) -> Table {
        Table {
            headers,
            rows: Vec::new(),
        }
    }

    pub(crate) fn row(&mut self, row: Vec<String>) {
        self.rows.push(
            row.into_iter()
                .map(|cell| match printable(&cell, false) {
                    std::borrow::Cow::Borrowed(_) => cell,
                    std::borrow::Cow::Owned(escaped) => escaped,
                })
                .collect(),
        );
    }

    pub(crate) fn print(&self, out: &mut impl Write) -> std::io::Result<()> {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.len()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: Vec<&str>| {
            let last = cells.len().saturating_sub(1);
            cells
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    if i == last {
                        (*c).to_owned()
                    } else {
                        format!("{c:<w$}", w = widths[i])
                    }
                })
                .collect::<Vec<_>>()
                .join("  ")
        };
        writeln!(out, "{}", line(self.headers.clone()))?;
        for row in &self.rows {
            writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CLI asks for details as JSON text; a server older than that
    /// answers with a `Struct`: both read as the same object.
    #[test]
    fn details_read_the_same_from_text_or_struct() {
        let details = json!({"source": "web", "score": 87, "tags": ["a"], "x": {"y": null}});
        let Value::Object(map) = &details else {
            unreachable!()
        };
        let as_struct = pb::Event {
            details: Some(auditlog_proto::json::json_to_struct(map)),
            ..Default::default()
        };
        let as_text = pb::Event {
            details_json: details.to_string(),
            ..Default::default()
        };
        assert_eq!(details_json(&as_struct), details);
        assert_eq!(details_json(&as_text), details);
        assert_eq!(detail_str(&as_text, "source"), "web");
        assert_eq!(details_json(&pb::Event::default()), json!({}));
        // Text no server sends shows as it came, not as empty details.
        let broken = pb::Event {
            details_json: "{not json".into(),
            ..Default::default()
        };
        assert_eq!(details_json(&broken), json!("{not json"));
    }

    #[test]
    fn times_parse_as_rfc3339_or_dates() {
        let t = parse_time("2026-11-22T08:00:00Z").unwrap();
        let d = parse_time("2026-11-22").unwrap();
        assert_eq!(t.duration_since(d).unwrap().as_secs(), 8 * 3600);
        assert!(parse_time("yesterday").unwrap_err().contains("RFC 3339"));
    }

    #[test]
    fn times_without_a_zone_are_utc() {
        let utc = parse_time("2026-12-02T18:41:56Z").unwrap();
        for s in [
            "2026-12-02T18:41:56",
            "2026-12-02 18:41:56",
            "2026-12-02T18:41:56.000",
        ] {
            assert_eq!(parse_time(s), Ok(utc), "{s}");
        }
        let minute = parse_time("2026-12-02T18:41").unwrap();
        assert_eq!(utc.duration_since(minute).unwrap().as_secs(), 56);
        assert!(parse_time("2026-12-02T25:00:00").is_err());
    }

    #[test]
    fn dates_parse_strictly() {
        assert_eq!(
            parse_date("2026-11-28"),
            Some(time::macros::date!(2026 - 11 - 28))
        );
        for bad in ["2026-13-01", "2026-02-30", "28/11/2026", "yesterday", ""] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn terminal_safe_text_is_json_that_reads_back_the_same() {
        let hostile = "a\u{1b}[2J\u{9b}31m\u{7f}\u{202e}\u{feff}\n\tb";
        let json = serde_json::json!({ "origin": hostile }).to_string();
        let shown = terminal_safe(&json);
        assert!(!shown.chars().any(unsafe_char), "{shown}");
        let back: serde_json::Value = serde_json::from_str(&shown).unwrap();
        assert_eq!(back["origin"], hostile);
        assert_eq!(terminal_safe("OK: Zoë\n\t1"), "OK: Zoë\n\t1");
        assert_eq!(terminal_safe("x\u{1b}]0;t\u{7}"), "x\\u001b]0;t\\u0007");
    }

    #[test]
    fn unprintable_text_is_escaped() {
        assert_eq!(printable("LEAD-1 Zoë", false), "LEAD-1 Zoë");
        assert_eq!(
            printable("a\nb\r\u{1b}[2J\0\u{9b}\u{202e}", false),
            "a\\nb\\r\\u{1b}[2J\\u{0}\\u{9b}\\u{202e}"
        );
        assert_eq!(
            printable("line 1\n\tline 2\u{7}", true),
            "line 1\n\tline 2\\u{7}"
        );
        let mut t = Table::new(vec!["A", "B"]);
        t.row(vec!["x\ny".into(), "z".into()]);
        let mut out = Vec::new();
        t.print(&mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "A     B\nx\\ny  z\n");
    }

    #[test]
    fn milliseconds_stay_short() {
        assert_eq!(millis_text(0.0), "0.00");
        assert_eq!(millis_text(12.345), "12.35");
        assert_eq!(millis_text(86_400_000.0), "86400000.00");
        assert_eq!(millis_text(1e9), "1.000e9");
        assert_eq!(millis_text(1e300), "1.000e300");
        assert_eq!(millis_text(f64::MAX), "1.798e308");
        assert_eq!(millis_text(f64::NAN), "n/a");
        assert_eq!(millis_text(f64::INFINITY), "n/a");
    }

    #[test]
    fn table_aligns_columns() {
        let mut t = Table::new(vec!["A", "BB"]);
        t.row(vec!["long value".into(), "x".into()]);
        let mut out = Vec::new();
        t.print(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "A           BB\nlong value  x\n"
        );
    }
}
