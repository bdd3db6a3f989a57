//! The period a report covers: one UTC day, one ISO week (Monday to
//! Sunday, UTC), the seven days ending with a day (the old logger's rolling
//! weekly report), or one calendar month; with its bounds, its timeline
//! buckets and its names.

use time::{Date, Duration, OffsetDateTime, Time, Weekday};

/// What a report covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Period {
    /// One UTC day, shown hour by hour.
    Day(Date),
    /// The ISO week starting on this Monday, shown day by day.
    Week(Date),
    /// The seven days starting on this day, shown day by day.
    Last7(Date),
    /// The calendar month starting on this first day, shown day by day.
    Month(Date),
}

impl Period {
    /// The UTC day `date`.
    pub(crate) fn day(date: Date) -> Period {
        Period::Day(date)
    }

    /// The ISO week (Monday to Sunday) that contains `date`.
    pub(crate) fn week_of(date: Date) -> Period {
        let back = i64::from(date.weekday().number_days_from_monday());
        // Only the first days of year -9999 have no Monday before them.
        Period::Week(date.checked_sub(Duration::days(back)).unwrap_or(date))
    }

    /// The seven days that end with `date` (included).
    pub(crate) fn last_7_days(date: Date) -> Period {
        Period::Last7(date.checked_sub(Duration::days(6)).unwrap_or(date))
    }

    /// The calendar month that contains `date`.
    pub(crate) fn month_of(date: Date) -> Period {
        Period::Month(date.replace_day(1).unwrap_or(date))
    }

    /// The first day of the period.
    pub(crate) fn first_day(self) -> Date {
        match self {
            Period::Day(d) | Period::Week(d) | Period::Last7(d) | Period::Month(d) => d,
        }
    }

    /// The last day of the period (included).
    pub(crate) fn last_day(self) -> Date {
        let first = self.first_day();
        first
            .checked_add(Duration::days(self.days() - 1))
            .unwrap_or(first)
    }

    /// The period's first instant (inclusive).
    pub(crate) fn start(self) -> OffsetDateTime {
        self.first_day().with_time(Time::MIDNIGHT).assume_utc()
    }

    /// The instant after the period (exclusive). Saturates at the last
    /// representable day, which [`super::run`] never lets through.
    pub(crate) fn end(self) -> OffsetDateTime {
        let start = self.start();
        start
            .checked_add(Duration::days(self.days()))
            .unwrap_or(start)
    }

    /// How many days it spans.
    pub(crate) fn days(self) -> i64 {
        match self {
            Period::Day(_) => 1,
            Period::Week(_) | Period::Last7(_) => 7,
            Period::Month(first) => i64::from(first.month().length(first.year())),
        }
    }

    /// A timeline bucket in words: `hour` for a day, `day` otherwise.
    pub(crate) fn unit(self) -> &'static str {
        match self {
            Period::Day(_) => "hour",
            _ => "day",
        }
    }

    /// The timeline's bucket width: hours for a day, days otherwise.
    pub(crate) fn bucket_seconds(self) -> u32 {
        match self {
            Period::Day(_) => 3600,
            _ => 86_400,
        }
    }

    /// The kind as file names and `--json` give it: `daily`, `weekly`,
    /// `last-7-days` or `monthly`.
    pub(crate) fn kind(self) -> &'static str {
        match self {
            Period::Day(_) => "daily",
            Period::Week(_) => "weekly",
            Period::Last7(_) => "last-7-days",
            Period::Month(_) => "monthly",
        }
    }

    /// The kind in the page's eyebrow: `Daily activity report`, ...
    pub(crate) fn kind_title(self) -> &'static str {
        match self {
            Period::Day(_) => "Daily activity report",
            Period::Week(_) => "Weekly activity report",
            Period::Last7(_) => "Activity report for the last 7 days",
            Period::Month(_) => "Monthly activity report",
        }
    }

    /// `2026-11-28` for a day, `2026-W48` (the ISO year and week) for a
    /// week, `2026-11-22..2026-11-28` for seven days, `2026-11` for a month.
    pub(crate) fn label(self) -> String {
        match self {
            Period::Day(d) => iso_date(d),
            Period::Week(monday) => {
                let (year, week, _) = monday.to_iso_week_date();
                format!("{year:04}-W{week:02}")
            }
            Period::Last7(first) => format!("{}..{}", iso_date(first), iso_date(self.last_day())),
            Period::Month(first) => format!("{:04}-{:02}", first.year(), u8::from(first.month())),
        }
    }

    /// The report's file name: `auditlog-daily-2026-11-28.html`,
    /// `auditlog-weekly-2026-W48.html`, `auditlog-last-7-days-2026-11-28.html`
    /// (named by its last day), `auditlog-monthly-2026-11.html`.
    pub(crate) fn file_name(self) -> String {
        let label = match self {
            Period::Last7(_) => iso_date(self.last_day()),
            _ => self.label(),
        };
        format!("auditlog-{}-{label}.html", self.kind())
    }

    /// The name of the copy that every run of this kind replaces (for a
    /// dashboard's link): `auditlog-daily-latest.html`, ...
    pub(crate) fn latest_file_name(self) -> String {
        format!("auditlog-{}-latest.html", self.kind())
    }

    /// The heading: `Saturday 28 November 2026`, `Week 48 of 2026`, `7 days
    /// to Saturday 28 November 2026`, `November 2026`.
    pub(crate) fn title(self) -> String {
        match self {
            Period::Day(d) => long_date(d),
            Period::Week(monday) => {
                let (year, week, _) = monday.to_iso_week_date();
                format!("Week {week} of {year}")
            }
            Period::Last7(_) => format!("7 days to {}", long_date(self.last_day())),
            Period::Month(first) => format!("{} {}", first.month(), first.year()),
        }
    }

    /// The span in words: `00:00 to 24:00 UTC`, or `Monday 23 November to
    /// Sunday 29 November 2026 (UTC)` for several days.
    pub(crate) fn span(self) -> String {
        match self {
            Period::Day(_) => "00:00 to 24:00 UTC".to_owned(),
            _ => {
                let (first, last) = (self.first_day(), self.last_day());
                let year = if first.year() == last.year() {
                    String::new()
                } else {
                    format!(" {}", first.year())
                };
                format!(
                    "{} {} {}{year} to {} (UTC)",
                    first.weekday(),
                    first.day(),
                    first.month(),
                    long_date(last)
                )
            }
        }
    }

    /// A timeline bucket's axis label: the hour (`14`) for a day, the
    /// weekday and date (`Mon 23`) for seven days, the date (`23`) for a
    /// month.
    pub(crate) fn bucket_label(self, start: OffsetDateTime) -> String {
        match self {
            Period::Day(_) => format!("{:02}", start.hour()),
            Period::Week(_) | Period::Last7(_) => {
                format!("{} {}", short_weekday(start.weekday()), start.day())
            }
            Period::Month(_) => start.day().to_string(),
        }
    }

    /// A bucket's span for its tooltip: `14:00 to 15:00` or `Monday 23
    /// November 2026`.
    pub(crate) fn bucket_span(self, start: OffsetDateTime) -> String {
        match self {
            Period::Day(_) => format!(
                "{:02}:00 to {:02}:00 UTC",
                start.hour(),
                u16::from(start.hour()) + 1
            ),
            _ => long_date(start.date()),
        }
    }

    /// The timeline's x-axis title.
    pub(crate) fn axis_title(self) -> &'static str {
        match self {
            Period::Day(_) => "Hour of the day (UTC)",
            Period::Week(_) => "Day of the week (UTC)",
            Period::Last7(_) => "Day (UTC)",
            Period::Month(_) => "Day of the month (UTC)",
        }
    }
}

/// `2026-11-28`.
pub(crate) fn iso_date(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// `Saturday 28 November 2026`.
pub(crate) fn long_date(d: Date) -> String {
    format!("{} {} {} {}", d.weekday(), d.day(), d.month(), d.year())
}

/// `2026-11-28 20:15 UTC`.
pub(crate) fn minute_text(t: OffsetDateTime) -> String {
    format!(
        "{} {:02}:{:02} UTC",
        iso_date(t.date()),
        t.hour(),
        t.minute()
    )
}

fn short_weekday(w: Weekday) -> &'static str {
    match w {
        Weekday::Monday => "Mon",
        Weekday::Tuesday => "Tue",
        Weekday::Wednesday => "Wed",
        Weekday::Thursday => "Thu",
        Weekday::Friday => "Fri",
        Weekday::Saturday => "Sat",
        Weekday::Sunday => "Sun",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    #[test]
    fn a_day_is_midnight_to_midnight_in_hours() {
        let p = Period::day(date!(2026 - 11 - 28));
        assert_eq!(p.start(), datetime!(2026-11-28 0:00 UTC));
        assert_eq!(p.end(), datetime!(2026-11-29 0:00 UTC));
        assert_eq!(p.bucket_seconds(), 3600);
        assert_eq!(p.file_name(), "auditlog-daily-2026-11-28.html");
        assert_eq!(p.title(), "Saturday 28 November 2026");
        assert_eq!(p.bucket_label(datetime!(2026-11-28 7:00 UTC)), "07");
        assert_eq!(
            p.bucket_span(datetime!(2026-11-28 23:00 UTC)),
            "23:00 to 24:00 UTC"
        );
    }

    #[test]
    fn a_week_is_the_iso_week_monday_to_sunday() {
        for d in [
            date!(2026 - 11 - 23),
            date!(2026 - 11 - 28),
            date!(2026 - 11 - 29),
        ] {
            let p = Period::week_of(d);
            assert_eq!(p.first_day(), date!(2026 - 11 - 23));
            assert_eq!(p.end(), datetime!(2026-11-30 0:00 UTC));
            assert_eq!(p.file_name(), "auditlog-weekly-2026-W48.html");
        }
        let p = Period::week_of(date!(2026 - 11 - 28));
        assert_eq!(p.bucket_seconds(), 86_400);
        assert_eq!(p.title(), "Week 48 of 2026");
        assert_eq!(
            p.span(),
            "Monday 23 November to Sunday 29 November 2026 (UTC)"
        );
        assert_eq!(p.bucket_label(datetime!(2026-11-25 0:00 UTC)), "Wed 25");
    }

    #[test]
    fn weeks_across_a_new_year_take_the_iso_year() {
        // 1 January 2027 is a Friday: ISO week 53 of 2026.
        let p = Period::week_of(date!(2027 - 01 - 01));
        assert_eq!(p.first_day(), date!(2026 - 12 - 28));
        assert_eq!(p.label(), "2026-W53");
        // 31 December 2024 is a Tuesday: ISO week 1 of 2025.
        assert_eq!(Period::week_of(date!(2024 - 12 - 31)).label(), "2025-W01");
    }

    #[test]
    fn seven_days_end_with_the_day_and_a_month_is_the_calendar_month() {
        let p = Period::last_7_days(date!(2026 - 11 - 28));
        assert_eq!(p.start(), datetime!(2026-11-22 0:00 UTC));
        assert_eq!(p.end(), datetime!(2026-11-29 0:00 UTC));
        assert_eq!(p.bucket_seconds(), 86_400);
        assert_eq!(p.label(), "2026-11-22..2026-11-28");
        assert_eq!(p.file_name(), "auditlog-last-7-days-2026-11-28.html");
        assert_eq!(p.title(), "7 days to Saturday 28 November 2026");
        assert_eq!(
            Period::last_7_days(date!(2027 - 01 - 02)).span(),
            "Sunday 27 December 2026 to Saturday 2 January 2027 (UTC)"
        );
        let m = Period::month_of(date!(2028 - 02 - 11));
        assert_eq!(m.start(), datetime!(2028-02-01 0:00 UTC));
        assert_eq!(m.end(), datetime!(2028-03-01 0:00 UTC));
        assert_eq!(m.days(), 29);
        assert_eq!(m.label(), "2028-02");
        assert_eq!(m.file_name(), "auditlog-monthly-2028-02.html");
        assert_eq!(m.latest_file_name(), "auditlog-monthly-latest.html");
        assert_eq!(m.title(), "February 2028");
        assert_eq!(m.bucket_label(datetime!(2028-02-09 0:00 UTC)), "9");
        assert_eq!(
            Period::month_of(date!(2026 - 12 - 31)).end(),
            datetime!(2027-01-01 0:00 UTC)
        );
    }
}
