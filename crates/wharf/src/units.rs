//! Parsing of the human units the command line accepts: sizes (`100MiB`) and durations
//! (`30d`).

use std::time::Duration;

/// Splits `"100MiB"` into `(100, "MiB")`; `what` names the kind of value for errors.
fn split_number(text: &str, what: &str) -> Result<(u64, String), String> {
    let text = text.trim();
    let split = text
        .find(|character: char| !character.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number = number
        .parse()
        .map_err(|_| format!("'{text}' is not a {what}"))?;
    Ok((number, unit.trim().to_owned()))
}

/// Parses a byte size: a plain number of bytes, or a number with one of the suffixes
/// `KB MB GB` (powers of 1000) or `KiB MiB GiB` (powers of 1024), case-insensitive.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, unit) = split_number(text, "size")?;
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size unit '{other}' (use KiB, MiB, GiB, KB, MB, GB)"
            ));
        }
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("'{text}' is too large"))
}

/// Parses a duration: a number with one of the units `s m h d w` (`90m`, `30d`).
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = split_number(text, "duration")?;
    let seconds: u64 = match unit.as_str() {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 604_800,
        "" => return Err(format!("'{text}' needs a unit: s, m, h, d or w")),
        other => {
            return Err(format!(
                "unknown duration unit '{other}' (use s, m, h, d or w)"
            ));
        }
    };
    number
        .checked_mul(seconds)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("'{text}' is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("100MiB"), Ok(100 * 1024 * 1024));
        assert_eq!(parse_size("10 GiB"), Ok(10 * 1024 * 1024 * 1024));
        assert_eq!(parse_size("5mb"), Ok(5_000_000));
        assert!(parse_size("5 parsecs").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("99999999999999999999GiB").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_duration("2w"), Ok(Duration::from_secs(14 * 86_400)));
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("3y").is_err());
    }
}
