//! The one date format Alibaba's APIs use (`yyyy-MM-ddTHH:mm:ssZ`, UTC) and the emulator's
//! clock, which a test can move away from the client's to provoke `InvalidTimeStamp.Expired`.
//!
//! Written out (civil-from-days) instead of pulling in a date crate: the format is fixed and
//! parsing must be strict, which general-purpose parsers are not.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of "now", for tests that need a fixed or foreign clock.
pub type NowFn = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// The server's clock: a base source plus an offset in seconds that can change at run time.
#[derive(Clone)]
pub struct Clock {
    base: Option<NowFn>,
    offset_secs: Arc<AtomicI64>,
}

impl Clock {
    pub fn new(base: Option<NowFn>, offset_secs: i64) -> Self {
        Clock {
            base,
            offset_secs: Arc::new(AtomicI64::new(offset_secs)),
        }
    }

    pub fn now(&self) -> SystemTime {
        let base = match &self.base {
            Some(f) => f(),
            None => SystemTime::now(),
        };
        shift(base, self.offset_secs.load(Ordering::Relaxed))
    }

    pub fn set_offset_secs(&self, secs: i64) {
        self.offset_secs.store(secs, Ordering::Relaxed);
    }
}

/// `t` moved by `secs` seconds (either direction), saturating at the epoch.
pub fn shift(t: SystemTime, secs: i64) -> SystemTime {
    if secs >= 0 {
        t + Duration::from_secs(secs as u64)
    } else {
        t.checked_sub(Duration::from_secs(secs.unsigned_abs()))
            .unwrap_or(UNIX_EPOCH)
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// `2024-01-01T00:00:00Z`; times before the epoch print as the epoch.
pub fn format_iso8601(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (y, m, d) = civil_from_days(secs.div_euclid(86400));
    let rem = secs.rem_euclid(86400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// RFC 7231 IMF-fixdate, `Mon, 01 Jan 2024 00:00:00 GMT`: the `Date` header of every answer,
/// read from the emulator's (possibly offset) clock so clients can measure their skew.
pub fn format_http_date(t: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let days = secs.div_euclid(86400);
    let (y, m, d) = civil_from_days(days);
    let rem = secs.rem_euclid(86400);
    format!(
        "{}, {d:02} {} {y:04} {:02}:{:02}:{:02} GMT",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[m as usize - 1],
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Strict parse of `yyyy-MM-ddTHH:mm:ssZ`: exactly 20 bytes, digits where digits belong,
/// real calendar values. No fractional seconds, no offsets, no lower-case `t`/`z`.
pub fn parse_iso8601(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'Z'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = &b[r];
        if part.iter().all(u8::is_ascii_digit) {
            std::str::from_utf8(part).ok()?.parse().ok()
        } else {
            None
        }
    };
    let (y, mo, d) = (num(0..4)? as i64, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || d == 0 || d > days_in_month(y, mo) || h > 23 || mi > 59 || se > 59
    {
        return None;
    }
    let secs = days_from_civil(y, mo, d) * 86400 + (h * 3600 + mi * 60 + se) as i64;
    if secs < 0 {
        return None;
    }
    Some(UNIX_EPOCH + Duration::from_secs(secs as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates() {
        assert_eq!(
            format_http_date(UNIX_EPOCH + std::time::Duration::from_secs(1_704_067_200)),
            "Mon, 01 Jan 2024 00:00:00 GMT"
        );
        assert_eq!(
            format_http_date(UNIX_EPOCH),
            "Thu, 01 Jan 1970 00:00:00 GMT"
        );
    }

    #[test]
    fn round_trips_known_instants() {
        for (s, secs) in [
            ("1970-01-01T00:00:00Z", 0u64),
            ("2024-01-01T00:00:00Z", 1_704_067_200),
            ("2024-02-29T23:59:59Z", 1_709_251_199),
            ("2026-11-26T05:39:11Z", 1_795_671_551),
        ] {
            let t = parse_iso8601(s).unwrap();
            assert_eq!(t, UNIX_EPOCH + Duration::from_secs(secs), "{s}");
            assert_eq!(format_iso8601(t), s);
        }
    }

    #[test]
    fn rejects_near_misses() {
        for s in [
            "2024-01-01T00:00:00",
            "2024-01-01 00:00:00Z",
            "2024-01-01T00:00:00.000Z",
            "2024-01-01t00:00:00z",
            "2024-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:00:60Z",
            "2024-01-01T00:00:00+00:00",
            "20240101T000000Z",
            "+024-01-01T00:00:00Z",
        ] {
            assert!(parse_iso8601(s).is_none(), "{s}");
        }
    }

    #[test]
    fn clock_offset_moves_now() {
        let fixed = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let c = Clock::new(Some(Arc::new(move || fixed)), 0);
        assert_eq!(c.now(), fixed);
        c.set_offset_secs(-60);
        assert_eq!(c.now(), fixed - Duration::from_secs(60));
        c.set_offset_secs(90);
        assert_eq!(c.now(), fixed + Duration::from_secs(90));
    }
}
