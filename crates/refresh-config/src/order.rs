//! The hook order of `LANG=C sort -n`: by leading number, then bytewise by the whole name.

use std::cmp::Ordering;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

/// The numeric key GNU `sort -n` reads at the start of a name in the C locale: optional blanks,
/// an optional `-`, digits, and an optional `.` with more digits. No digits at all reads as 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct NumericKey<'a> {
    negative: bool,
    /// Integer digits without leading zeros (empty for zero).
    integer: &'a [u8],
    /// Fraction digits without trailing zeros.
    fraction: &'a [u8],
}

impl<'a> NumericKey<'a> {
    fn parse(name: &'a [u8]) -> Self {
        let mut rest = name;
        while let [b' ' | b'\t', tail @ ..] = rest {
            rest = tail;
        }
        let negative = rest.first() == Some(&b'-');
        if negative {
            rest = &rest[1..];
        }
        let int_len = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let (integer, after) = rest.split_at(int_len);
        let fraction = match after {
            [b'.', tail @ ..] => {
                let len = tail.iter().take_while(|b| b.is_ascii_digit()).count();
                &tail[..len]
            }
            _ => &[][..],
        };
        let integer = trim_start(integer, b'0');
        let fraction = trim_end(fraction, b'0');
        // `-0`, `-` and `-.0` are all zero, and zero has no sign.
        let negative = negative && !(integer.is_empty() && fraction.is_empty());
        NumericKey {
            negative,
            integer,
            fraction,
        }
    }

    fn cmp_magnitude(&self, other: &Self) -> Ordering {
        self.integer
            .len()
            .cmp(&other.integer.len())
            .then_with(|| self.integer.cmp(other.integer))
            .then_with(|| self.fraction.cmp(other.fraction))
    }
}

impl Ord for NumericKey<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.negative, other.negative) {
            (false, false) => self.cmp_magnitude(other),
            (true, true) => other.cmp_magnitude(self),
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
        }
    }
}

impl PartialOrd for NumericKey<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

fn trim_start(bytes: &[u8], byte: u8) -> &[u8] {
    let skip = bytes.iter().take_while(|&&b| b == byte).count();
    &bytes[skip..]
}

fn trim_end(bytes: &[u8], byte: u8) -> &[u8] {
    let keep = bytes.len() - bytes.iter().rev().take_while(|&&b| b == byte).count();
    &bytes[..keep]
}

/// Compares two hook names the way `LANG=C sort -n` orders them: by leading number, ties broken
/// by the bytes of the whole name. The locale never matters.
pub fn compare_names(a: &OsStr, b: &OsStr) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    NumericKey::parse(a)
        .cmp(&NumericKey::parse(b))
        .then_with(|| a.cmp(b))
}

/// Sorts hook names into run order (see [`compare_names`]).
pub fn order_names<S: AsRef<OsStr>>(names: &mut [S]) {
    names.sort_by(|a, b| compare_names(a.as_ref(), b.as_ref()));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(names: &[&str]) -> Vec<String> {
        let mut names: Vec<&OsStr> = names.iter().map(OsStr::new).collect();
        order_names(&mut names);
        names
            .into_iter()
            .map(|n| n.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn numeric_then_bytewise() {
        let expected = [
            "A-upper", "zz_nonum", "01-x", "5-a", "07-fail", "10-a", "10-b", "30-link", "100-late",
        ];
        let mut shuffled = expected;
        shuffled.reverse();
        assert_eq!(sorted(&shuffled), expected);
    }

    #[test]
    fn negative_zero_and_huge_numbers() {
        let expected = [
            "-5-neg",
            "-x",
            "0-z",
            "Zed",
            "1-x",
            "007-a",
            "7-a",
            "99999999999999999999999-big",
        ];
        let mut shuffled = expected;
        shuffled.rotate_left(3);
        assert_eq!(sorted(&shuffled), expected);
    }

    #[test]
    fn c_order_whatever_the_locale() {
        assert_eq!(
            sorted(&["10-a", "a-y", "_u", "B-z", "A-x"]),
            ["A-x", "B-z", "_u", "a-y", "10-a"]
        );
    }

    #[test]
    fn fractions_blanks_and_minus_zero() {
        assert_eq!(
            sorted(&["1.50", "1.5", "1.05", " 2", "-0", "-0.5", "-1.2x"]),
            ["-1.2x", "-0.5", "-0", "1.05", "1.5", "1.50", " 2"]
        );
    }
}
