//! UTC dates from Unix seconds. Written here rather than taking a date crate: reports need only
//! "seconds → calendar date and time of day", which is one well-known formula (days to civil
//! date, proleptic Gregorian).

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// (year, month, day) of a day number counted from 1970-01-01.
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `2026-11-27`.
pub fn date(unix: i64) -> String {
    let (y, m, d) = civil(unix.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

/// `2026-11-27 03:51 UTC`.
pub(crate) fn datetime(unix: i64) -> String {
    let s = unix.rem_euclid(86_400);
    format!("{} {:02}:{:02} UTC", date(unix), s / 3600, s % 3600 / 60)
}

/// A short axis label for `unix`, given the span the axis covers.
pub(crate) fn tick(unix: i64, span_secs: i64) -> String {
    let s = unix.rem_euclid(86_400);
    let (_, m, d) = civil(unix.div_euclid(86_400));
    if span_secs > 3 * 86_400 {
        format!("{m:02}-{d:02}")
    } else if span_secs > 86_400 {
        format!("{m:02}-{d:02} {:02}h", s / 3600)
    } else if span_secs > 600 {
        format!("{:02}:{:02}", s / 3600, s % 3600 / 60)
    } else {
        format!("{:02}:{:02}:{:02}", s / 3600, s % 3600 / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_match_the_calendar() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(951_782_400), "2000-02-29");
        assert_eq!(datetime(1_795_751_467), "2026-11-27 03:51 UTC");
        assert_eq!(date(-86_400), "1969-12-31");
        assert_eq!(tick(1_795_751_467, 100), "03:51:07");
        assert_eq!(tick(1_795_751_467, 10 * 86_400), "11-27");
    }
}
