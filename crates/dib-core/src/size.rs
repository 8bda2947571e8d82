//! Size specs as diskimage-builder's block-device configuration writes them: `10MiB`,
//! `1.2TB`, `512`, and for partitions `N%`.

use crate::elements::Error;

/// A parsed size: bytes, or a percentage of the remaining free space.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Size {
    Bytes(u64),
    Percent(f64),
}

/// Parses `spec` (`^([\d.]*) ?([a-zA-Z0-9_]*)$`, an empty number meaning 1, units
/// case-sensitive, values truncated to bytes). `%` is accepted when `percent_ok`.
pub fn parse(spec: &str, percent_ok: bool) -> Result<Size, Error> {
    let invalid = || Error::Size(format!("Invalid size unit spec [{spec}]"));
    if percent_ok {
        if let Some(number) = spec.strip_suffix('%') {
            let value: f64 = number.trim().parse().map_err(|_| invalid())?;
            return Ok(Size::Percent(value));
        }
    }
    let digits = spec
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b'.')
        .count();
    let (number, rest) = spec.split_at(digits);
    let unit = rest.strip_prefix(' ').unwrap_or(rest);
    if !unit.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(invalid());
    }
    let value: f64 = if number.is_empty() {
        1.0
    } else {
        number.parse().map_err(|_| invalid())?
    };
    let factor: u64 = match unit {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "KB" | "K" => 1_000,
        "MB" | "M" => 1_000_000,
        "GB" | "G" => 1_000_000_000,
        "TB" | "T" => 1_000_000_000_000,
        other => return Err(Error::Size(format!("unit_str [{other}] not known"))),
    };
    // Whole numbers stay exact; fractions are truncated as upstream's int(float) does.
    let bytes = match number.parse::<u64>() {
        Ok(n) => n.checked_mul(factor).ok_or_else(invalid)?,
        Err(_) => (value * factor as f64) as u64,
    };
    Ok(Size::Bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normative_sizes() {
        for (spec, bytes) in [
            ("20TiB", 20 * (1u64 << 40)),
            ("1024KiB", 1_048_576),
            ("154MiB", 161_480_704),
            ("1.2TB", 1_200_000_000_000),
            ("2.4T", 2_400_000_000_000),
            ("512B", 512),
            ("364", 364),
            ("198", 198),
            ("MiB", 1 << 20),
            ("10 MiB", 10 << 20),
        ] {
            assert_eq!(parse(spec, false), Ok(Size::Bytes(bytes)), "{spec}");
        }
        assert_eq!(
            parse("747InVaLiDUnIt", false).unwrap_err().to_string(),
            "unit_str [InVaLiDUnIt] not known"
        );
        assert_eq!(
            parse("_+!HuHi+-=", false).unwrap_err().to_string(),
            "Invalid size unit spec [_+!HuHi+-=]"
        );
        assert_eq!(parse("54%", true), Ok(Size::Percent(54.0)));
        assert!(parse("54%", false).is_err());
    }
}
