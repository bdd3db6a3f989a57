//! The period a report covers: one UTC day, or one ISO week (Monday to
//! Sunday, UTC), with its bounds, its timeline buckets and its names.

use time::{Date, Duration, OffsetDateTime, Time, Weekday};

/// What a report covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Period {
    /// One UTC day, shown hour by hour.
    Day(Date),
    /// The ISO week starting on this Monday, shown day by day.
    Week(Date),
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

    /// The first day of the period.
    pub(crate) fn first_day(self) -> Date {
        match self {
            Period::Day(d) | Period::Week(d) => d,
        }
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
            Period::Week(_) => 7,
        }
    }

    /// A timeline bucket in words: `hour` for a day, `day` for a week.
    pub(crate) fn unit(self) -> &'static str {
        match self {
            Period::Day(_) => "hour",
            Period::Week(_) => "day",
        }
    }

    /// The timeline's bucket width: hours for a day, days for a week.
    pub(crate) fn bucket_seconds(self) -> u32 {
        match self {
            Period::Day(_) => 3600,
            Period::Week(_) => 86_400,
        }
    }

    /// `daily` or `weekly`.
    pub(crate) fn kind(self) -> &'static str {
        match self {
            Period::Day(_) => "daily",
            Period::Week(_) => "weekly",
        }
    }

    /// `2026-11-28` for a day, `2026-W48` (the ISO year and week) for a week.
    pub(crate) fn label(self) -> String {
        match self {
            Period::Day(d) => iso_date(d),
            Period::Week(monday) => {
                let (year, week, _) = monday.to_iso_week_date();
                format!("{year:04}-W{week:02}")
            }
        }
    }

    /// The report's file name: `auditlog-daily-2026-11-28.html`,
    /// `auditlog-weekly-2026-W48.html`.
    pub(crate) fn file_name(self) -> String {
        format!("auditlog-{}-{}.html", self.kind(), self.label())
    }

    /// The heading: `Saturday 28 November 2026` or `Week 48 of 2026`.
    pub(crate) fn title(self) -> String {
        match self {
            Period::Day(d) => long_date(d),
            Period::Week(monday) => {
                let (year, week, _) = monday.to_iso_week_date();
                format!("Week {week} of {year}")
            }
        }
    }

    /// The span in words: `00:00 to 24:00 UTC` or `Monday 23 November to
    /// Sunday 29 November 2026 (UTC)`.
    pub(crate) fn span(self) -> String {
        match self {
            Period::Day(_) => "00:00 to 24:00 UTC".to_owned(),
            Period::Week(monday) => {
                let sunday = monday.checked_add(Duration::days(6)).unwrap_or(monday);
                format!(
                    "{} {} {} to {} (UTC)",
                    monday.weekday(),
                    monday.day(),
                    monday.month(),
                    long_date(sunday)
                )
            }
        }
    }

    /// A timeline bucket's axis label: the hour (`14`) for a day, the
    /// weekday and date (`Mon 23`) for a week.
    pub(crate) fn bucket_label(self, start: OffsetDateTime) -> String {
        match self {
            Period::Day(_) => format!("{:02}", start.hour()),
            Period::Week(_) => format!("{} {}", short_weekday(start.weekday()), start.day()),
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
            Period::Week(_) => long_date(start.date()),
        }
    }

    /// The timeline's x-axis title.
    pub(crate) fn axis_title(self) -> &'static str {
        match self {
            Period::Day(_) => "Hour of the day (UTC)",
            Period::Week(_) => "Day of the week (UTC)",
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
}
