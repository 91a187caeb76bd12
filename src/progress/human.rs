//! Numbers as a person reads them at a glance: `73.6k rows/s`, `4.7 MB`, `1m12s`. Every display
//! formats through here, so no rate prints with twelve decimals and no size in raw bytes. Three
//! significant digits at most: an operator compares magnitudes and trends, not the last row.

use std::time::Duration;

/// A count: `950`, `7.4k`, `73.6k`, `1.2M`, `3.0G`.
pub fn count(n: f64) -> String {
    if !n.is_finite() {
        return "?".to_owned();
    }
    let abs = n.abs();
    let (scaled, suffix) = if abs < 1_000.0 {
        (n, "")
    } else if abs < 999_950.0 {
        (n / 1e3, "k")
    } else if abs < 999_950_000.0 {
        (n / 1e6, "M")
    } else {
        (n / 1e9, "G")
    };
    if suffix.is_empty() {
        format!("{scaled:.0}")
    } else if scaled.abs() < 100.0 {
        format!("{scaled:.1}{suffix}")
    } else {
        format!("{scaled:.0}{suffix}")
    }
}

/// A rate per second: `73.6k rows/s`.
pub fn rate(per_second: f64, unit: &str) -> String {
    format!("{} {unit}/s", count(per_second))
}

/// A size in bytes, in binary multiples as PostgreSQL's `pg_size_pretty` counts them but with
/// one decimal below 100: `512 B`, `4.7 MB`, `1.2 GB`. Negative means unknown: `?`.
pub fn bytes(bytes: i64) -> String {
    if bytes < 0 {
        return "?".to_owned();
    }
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1023.95 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value < 100.0 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

/// A span of time, to the second above a minute and to a tenth below ten seconds:
/// `0.4s`, `12s`, `1m12s`, `2h05m`, `3d04h`.
pub fn duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 9.95 {
        return format!("{s:.1}s");
    }
    let whole = d.as_secs() + u64::from(d.subsec_millis() >= 500);
    match whole {
        0..60 => format!("{whole}s"),
        60..3_600 => format!("{}m{:02}s", whole / 60, whole % 60),
        3_600..86_400 => format!("{}h{:02}m", whole / 3_600, whole % 3_600 / 60),
        _ => format!("{}d{:02}h", whole / 86_400, whole % 86_400 / 3_600),
    }
}

/// Seconds as a duration; negative, NaN or unknown as `?`.
pub fn seconds(s: f64) -> String {
    if s.is_finite() && s >= 0.0 {
        duration(Duration::from_secs_f64(s.min(1e12)))
    } else {
        "?".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_keep_three_significant_digits_at_most() {
        assert_eq!(count(0.0), "0");
        assert_eq!(count(7.4), "7");
        assert_eq!(count(999.4), "999");
        assert_eq!(count(7_356.018159923259), "7.4k");
        assert_eq!(count(73_564.073_739_061_48), "73.6k");
        assert_eq!(count(182_400.0), "182k");
        assert_eq!(count(999_999.0), "1.0M");
        assert_eq!(count(1_234_567.0), "1.2M");
        assert_eq!(count(3.2e9), "3.2G");
        assert_eq!(count(f64::NAN), "?");
    }

    #[test]
    fn rates_name_their_unit() {
        assert_eq!(rate(73_564.07, "rows"), "73.6k rows/s");
        assert_eq!(rate(0.3, "changes"), "0 changes/s");
    }

    #[test]
    fn sizes_use_binary_multiples_with_one_decimal() {
        assert_eq!(bytes(-1), "?");
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1024), "1.0 kB");
        assert_eq!(bytes(4_928_307), "4.7 MB");
        assert_eq!(bytes(150 << 20), "150 MB");
        assert_eq!(bytes((1 << 30) - 1), "1.0 GB");
        assert_eq!(bytes(5 << 40), "5.0 TB");
    }

    #[test]
    fn durations_read_like_a_clock() {
        assert_eq!(duration(Duration::from_millis(400)), "0.4s");
        assert_eq!(duration(Duration::from_millis(9_940)), "9.9s");
        assert_eq!(duration(Duration::from_secs(12)), "12s");
        assert_eq!(duration(Duration::from_secs(72)), "1m12s");
        assert_eq!(duration(Duration::from_millis(59_600)), "1m00s");
        assert_eq!(
            duration(Duration::from_secs(2 * 3600 + 5 * 60 + 9)),
            "2h05m"
        );
        assert_eq!(
            duration(Duration::from_secs(3 * 86_400 + 4 * 3600)),
            "3d04h"
        );
        assert_eq!(seconds(-1.0), "?");
        assert_eq!(seconds(0.0), "0.0s");
    }
}
