//! The one form timestamps take on the wire: RFC 3339 in UTC with
//! milliseconds.
//!
//! The filter writes it in memory events (Weaviate's `date` reads it, and so
//! does the companion service's `/mem/ingest`); the companion service and
//! the example agents write it in the A2A protocol's `timestamp` fields.
//! Unlike a fallible `Display`, [`rfc3339_millis`] writes any instant.

use crate::limits::MAX_UNIX_MS;

/// `2026-11-25T23:49:44.123Z`: RFC 3339 in UTC with milliseconds, the form
/// Weaviate's `date` and the companion service both read. Instants past
/// year 9999 are clamped, since the format has four-digit years.
pub fn rfc3339_millis(unix_ms: u64) -> String {
    let ms = unix_ms.min(MAX_UNIX_MS);
    let (year, month, day) = civil_from_days(ms / 86_400_000);
    let in_day = ms % 86_400_000;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1_000 % 60,
        in_day % 1_000
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01. Counting from
/// 0000-03-01 puts the leap day at the end of each year and makes every
/// 400-year era the same 146 097 days, so the date follows by division.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    const DAYS_0000_03_01_TO_EPOCH: u64 = 719_468;
    const ERA: u64 = 146_097;
    let from_march_0 = days + DAYS_0000_03_01_TO_EPOCH;
    let era = from_march_0 / ERA;
    let day_of_era = from_march_0 % ERA;
    // Leap days come every 4 years (1460 days) except every 100 (36524)
    // except every 400 (the era's last day, 146096).
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    // Months from March have 31,30,31,30,31 days in a repeating 153-day
    // run of five, so (5d + 2) / 153 counts them.
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let (month, year_shift) = if month_from_march < 10 {
        (month_from_march + 3, 0)
    } else {
        (month_from_march - 9, 1)
    };
    (era * 400 + year_of_era + year_shift, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_on_known_instants() {
        for (ms, want) in [
            (0, "1970-01-01T00:00:00.000Z"),
            (1, "1970-01-01T00:00:00.001Z"),
            (951_782_400_000, "2000-02-29T00:00:00.000Z"),
            (1_709_164_800_000, "2024-02-29T00:00:00.000Z"),
            (1_709_251_199_999, "2024-02-29T23:59:59.999Z"),
            (1_709_251_200_000, "2024-03-01T00:00:00.000Z"),
            (1_735_689_599_999, "2024-12-31T23:59:59.999Z"),
            (1_795_650_584_123, "2026-11-25T23:49:44.123Z"),
            (2_147_483_647_000, "2038-01-19T03:14:07.000Z"),
            (2_147_483_648_500, "2038-01-19T03:14:08.500Z"),
            (4_107_542_400_000, "2100-03-01T00:00:00.000Z"),
            (MAX_UNIX_MS, "9999-12-31T23:59:59.999Z"),
            (u64::MAX, "9999-12-31T23:59:59.999Z"),
        ] {
            assert_eq!(rfc3339_millis(ms), want, "{ms}");
        }
    }

    /// Every day from 1970 to 9999 against a calendar counted one day at a time.
    #[test]
    fn civil_dates_follow_the_gregorian_calendar() {
        let (mut y, mut m, mut d) = (1970, 1, 1);
        for days in 0..=MAX_UNIX_MS / 86_400_000 {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
            let month_len = match m {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            d += 1;
            if d > month_len {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
        assert_eq!((y, m, d), (10000, 1, 1));
    }
}
