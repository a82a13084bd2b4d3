//! Durations as people write them on the command line: `90s`, `10m`, `1h`, `2d`, or bare seconds.

/// Why a duration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration {0:?}: write a whole number followed by s, m, h or d (e.g. 90s, 10m, 1h)"
)]
pub struct DurationError(pub String);

/// Parses a duration into seconds.
pub fn parse_duration(s: &str) -> Result<i64, DurationError> {
    let err = || DurationError(s.to_string());
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, 's')) => (&t[..i], 1),
        Some((i, 'm')) => (&t[..i], 60),
        Some((i, 'h')) => (&t[..i], 3600),
        Some((i, 'd')) => (&t[..i], 86_400),
        Some(_) => (t, 1),
        None => return Err(err()),
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err());
    }
    let n: i64 = num.parse().map_err(|_| err())?;
    n.checked_mul(mult).filter(|&v| v > 0).ok_or_else(err)
}

/// Formats seconds the way [`parse_duration`] reads them, choosing the largest exact unit.
pub fn format_duration(secs: i64) -> String {
    match secs {
        s if s > 0 && s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s > 0 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s > 0 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_units() {
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("10m"), Ok(600));
        assert_eq!(parse_duration("1h"), Ok(3600));
        assert_eq!(parse_duration("2d"), Ok(172_800));
        assert_eq!(parse_duration("45"), Ok(45));
        for bad in ["", "m", "-1m", "1.5h", "0s", "10x", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(format_duration(3600), "1h");
        assert_eq!(format_duration(90), "90s");
    }
}
