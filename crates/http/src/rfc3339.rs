//! RFC 3339 UTC timestamps for the wire, computed from Unix seconds without reading any clock.

use authgate_domain::Timestamp;

/// Formats `timestamp` as `YYYY-MM-DDTHH:MM:SSZ`.
///
/// Total over every `i64`: the civil-date conversion (Howard Hinnant's `civil_from_days`)
/// works before 1970 too, where `SystemTime`-based formatters panic.
pub(crate) fn format(timestamp: Timestamp) -> String {
    let seconds = timestamp.unix();
    let days = seconds.div_euclid(86_400);
    let second_of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3_600,
        second_of_day % 3_600 / 60,
        second_of_day % 60
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants_format_as_rfc3339_utc() {
        for (seconds, expected) in [
            (0, "1970-01-01T00:00:00Z"),
            (1_700_000_000, "2023-11-14T22:13:20Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (4_107_542_399, "2100-02-28T23:59:59Z"),
            (-1, "1969-12-31T23:59:59Z"),
        ] {
            assert_eq!(format(Timestamp::from_unix(seconds)), expected, "{seconds}");
        }
    }

    #[test]
    fn extreme_instants_do_not_panic() {
        let _ = format(Timestamp::from_unix(i64::MAX));
        let _ = format(Timestamp::from_unix(i64::MIN));
    }
}
