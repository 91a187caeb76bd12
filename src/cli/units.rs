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
    Ok(Duration::from_secs_f64(seconds))
}

/// `<number><unit>` with unit `B`, `kB`, `MB`, `GB` (powers of 1024, as PostgreSQL reads
/// them); a bare number is bytes.
pub fn bytes(text: &str) -> Result<i64, String> {
    let (number, unit) = split(text);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (e.g. 1MB, 64kB)"))?;
    let factor = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1024.0,
        "mb" | "m" => 1024.0 * 1024.0,
        "gb" | "g" => 1024.0 * 1024.0 * 1024.0,
        _ => {
            return Err(format!(
                "unknown size unit {unit:?} in {text:?} (B, kB, MB, GB)"
            ))
        }
    };
    let b = value * factor;
    if !(b.is_finite() && b >= 0.0) {
        return Err(format!("{text:?} is not a size"));
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
    fn sizes_use_powers_of_1024() {
        assert_eq!(bytes("1MB"), Ok(1 << 20));
        assert_eq!(bytes("64kB"), Ok(64 << 10));
        assert_eq!(bytes("100"), Ok(100));
        assert!(bytes("1XB").is_err());
    }
}
