//! Durations and sizes as operators write them: `5s`, `500ms`, `2m`; `1MB`, `64kB`, `1048576`.

use std::time::Duration;

/// `<number><unit>` with unit `ms`, `s`, `m` or `h` (a bare number is seconds).
pub fn duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = split(text);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 500ms, 5s, 2m)"))?;
    let seconds = match unit {
        "ms" => value / 1e3,
        "" | "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} in {text:?} (ms, s, m, h)"
            ))
        }
    };
    if !(seconds.is_finite() && seconds >= 0.0) {
        return Err(format!("{text:?} is not a duration"));
    }
    if seconds * 1e3 > LONGEST_MS as f64 {
        return Err(format!(
            "duration {text:?} is too long: the longest is {LONGEST_MS}ms (about 24 days), the \
             longest timeout PostgreSQL takes"
        ));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Every duration the tool takes is a timeout, and the cutover's reach PostgreSQL as
/// `statement_timeout`/`lock_timeout`, which are `int` milliseconds (their maximum is
/// `INT_MAX` in `guc_tables.c`); anything longer would also overflow a deadline taken from
/// `Instant::now()` long before it could matter.
pub const LONGEST_MS: u64 = i32::MAX as u64;

/// `<number><unit>` with unit `B`, `kB`, `MB`, `GB` (powers of 1024, as PostgreSQL reads
/// them); a bare number is bytes. A fraction of a byte is dropped (`0.1kB` is 102 bytes); a
/// size over `i64::MAX` bytes (PostgreSQL's `bigint`, in which sizes are compared) is refused.
pub fn bytes(text: &str) -> Result<i64, String> {
    let (number, unit) = split(text);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (e.g. 1MB, 64kB)"))?;
    let factor: i64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1 << 10,
        "mb" | "m" => 1 << 20,
        "gb" | "g" => 1 << 30,
        _ => {
            return Err(format!(
                "unknown size unit {unit:?} in {text:?} (B, kB, MB, GB)"
            ))
        }
    };
    let too_large = || {
        format!(
            "size {text:?} is too large: the largest is {} bytes",
            i64::MAX
        )
    };
    // Whole numbers (digits only, see `split`) are multiplied exactly, where f64 would round
    // those past 2^53; their parse can fail only by overflow.
    if !number.contains('.') {
        return number
            .parse::<i64>()
            .ok()
            .and_then(|whole| whole.checked_mul(factor))
            .ok_or_else(too_large);
    }
    let b = (value * factor as f64).trunc();
    if !(b.is_finite() && b >= 0.0) {
        return Err(format!("{text:?} is not a size"));
    }
    // i64::MAX as f64 rounds up to 2^63, the first value that does not fit.
    if b >= i64::MAX as f64 {
        return Err(too_large());
    }
    Ok(b as i64)
}

fn split(text: &str) -> (&str, &str) {
    let text = text.trim();
    let at = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    (&text[..at], text[at..].trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_operators_write_them() {
        assert_eq!(duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(duration("3"), Ok(Duration::from_secs(3)));
        assert!(duration("5 parsecs").is_err());
        assert!(duration("fast").is_err());
    }

    #[test]
    fn refuses_durations_it_cannot_represent() {
        let err = duration("99999999999999999999999h").unwrap_err();
        assert!(err.contains("\"99999999999999999999999h\""), "{err}");
        assert!(err.contains("2147483647ms"), "{err}");
        for too_long in [
            "18446744073709551616s",
            "10000000000000000000s",
            "1000000h",
            "2147484s",
        ] {
            assert!(duration(too_long).is_err(), "{too_long}");
        }
        assert_eq!(
            duration("2147483647ms"),
            Ok(Duration::from_millis(2_147_483_647))
        );
        assert_eq!(duration("596h"), Ok(Duration::from_secs(596 * 3600)));
    }

    #[test]
    fn refuses_sizes_it_cannot_represent() {
        assert_eq!(bytes("9223372036854775807"), Ok(i64::MAX));
        assert_eq!(bytes("8589934591GB"), Ok(8_589_934_591 << 30));
        for too_large in [
            "9223372036854775808",
            "8589934592GB",
            "99999999999999999999999999kB",
            "8589934592.0GB",
            "9223372036854775808.5",
        ] {
            let err = bytes(too_large).unwrap_err();
            assert!(err.contains(&format!("{too_large:?}")), "{err}");
            assert!(err.contains(&i64::MAX.to_string()), "{err}");
        }
        // Past 2^53 whole numbers stay exact.
        assert_eq!(bytes("9007199254740993"), Ok(9_007_199_254_740_993));
        assert_eq!(bytes("0.1kB"), Ok(102));
        assert_eq!(bytes("1.5kB"), Ok(1536));
        assert!(bytes("").is_err());
        assert!(bytes("1.2.3").is_err());
    }

    #[test]
    fn sizes_use_powers_of_1024() {
        assert_eq!(bytes("1MB"), Ok(1 << 20));
        assert_eq!(bytes("64kB"), Ok(64 << 10));
        assert_eq!(bytes("100"), Ok(100));
        assert!(bytes("1XB").is_err());
    }
}
