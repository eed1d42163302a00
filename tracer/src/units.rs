//! Sizes as people write them in check files and diff thresholds: `4096`, `132KiB`, `64 MiB`,
//! `1.5GiB`, `10MB`. Binary units (KiB, MiB, GiB, TiB) are powers of 1024, decimal ones (kB,
//! KB, MB, GB, TB) powers of 1000; units are case-sensitive so that a typo is an error, not a
//! guess. `human_bytes` writes sizes back the way the summary and messages show them.

const UNITS: &[(&str, u64)] = &[
    ("B", 1),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
    ("kB", 1_000),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("TB", 1_000_000_000_000),
];

/// Parses a size; the error says what is wrong and what is accepted.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let number_end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(number_end);
    let unit = unit.trim();
    if number.is_empty() {
        return Err(format!(
            "`{text}` is not a size: it must start with a number"
        ));
    }
    let Some(&(_, factor)) = UNITS
        .iter()
        .find(|(name, _)| *name == unit)
        .or(if unit.is_empty() {
            Some(&("", 1))
        } else {
            None
        })
    else {
        let hint = UNITS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(unit))
            .map(|(name, _)| format!("; did you mean `{name}`?"))
            .unwrap_or_default();
        return Err(format!(
            "unknown unit `{unit}` in `{text}`{hint} (units: B, KiB, MiB, GiB, TiB, kB, MB, GB, \
             TB)"
        ));
    };
    // Exact decimal arithmetic: "2.01MB" is 2010000 bytes, not what a float makes of it.
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && frac.is_empty() || frac.contains('.') {
        return Err(format!("`{text}` is not a size"));
    }
    let too_large = || format!("`{text}` is too large");
    let scale = 10u128
        .checked_pow(frac.len() as u32)
        .ok_or_else(too_large)?;
    let digits: u128 = format!("{whole}{frac}").parse().map_err(|_| too_large())?;
    let scaled = digits
        .checked_mul(u128::from(factor))
        .ok_or_else(too_large)?;
    if scaled % scale != 0 {
        return Err(format!("`{text}` is not a whole number of bytes"));
    }
    let bytes = u64::try_from(scaled / scale).map_err(|_| too_large())?;
    Ok(bytes)
}

/// `1.5 MiB`-style sizes.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// An address or bit pattern the way `/proc` and the reports write it: `0x7f00`.
pub fn hex(value: u64) -> String {
    format!("{value:#x}")
}

/// Parses sizes like `4096`, `256K`, `8M`, `8MiB`; must be a power of two of at least 4 KiB.
pub fn parse_ring_size(text: &str) -> Result<u32, String> {
    let t = text.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits_end);
    let num: u64 = num.parse().map_err(|_| format!("`{text}` is not a size"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("unknown size unit `{other}` (use K, M or G)")),
    };
    let bytes = num.checked_mul(factor).ok_or("size too large")?;
    if bytes < 4096 || !bytes.is_power_of_two() || bytes > (1 << 30) {
        return Err(format!(
            "{bytes} bytes: must be a power of two between 4K and 1G"
        ));
    }
    Ok(bytes as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_with_units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("132KiB"), Ok(132 * 1024));
        assert_eq!(parse_size("64 MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("2.01MB"), Ok(2_010_000));
        assert_eq!(parse_size(".5KiB"), Ok(512));
    }

    #[test]
    fn typos_are_errors_that_say_what_is_accepted() {
        let err = parse_size("64Mib").unwrap_err();
        assert!(err.contains("unknown unit `Mib`"), "{err}");
        assert!(err.contains("did you mean `MiB`"), "{err}");
        let err = parse_size("64MiBB").unwrap_err();
        assert!(err.contains("units: B, KiB"), "{err}");
        assert!(
            parse_size("MiB")
                .unwrap_err()
                .contains("must start with a number")
        );
        assert!(parse_size("1.5B").unwrap_err().contains("whole number"));
        assert!(parse_size("99999999TiB").unwrap_err().contains("too large"));
        assert!(
            parse_size("99999999999.5TiB")
                .unwrap_err()
                .contains("too large")
        );
        assert!(parse_size(".").unwrap_err().contains("not a size"));
        assert!(parse_size("1.2.3").unwrap_err().contains("not a size"));
    }
}
