//! The one way tfmirror shows a size to a person: decimal units, as
//! `du -h --si` and the config file's `10GB` read. Every message, table,
//! progress line and error uses it, so `1.2 MB` in `cache list` and in an
//! error about a limit mean the same thing.

/// `1.2 GB`, `310 MB`, `12 kB`, `4.0 kB`, `900 B`: one decimal below 10 of
/// a unit, none above.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1000.0;
    let mut unit = 0;
    // Rounding decides the unit: 999_999 bytes read `1.0 MB`, not `1000 kB`.
    while value >= 999.5 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if value < 9.95 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_du_si() {
        let cases = [
            (0, "0 B"),
            (900, "900 B"),
            (999, "999 B"),
            (1000, "1.0 kB"),
            (4000, "4.0 kB"),
            (9_960, "10 kB"),
            (12_345, "12 kB"),
            (999_999, "1.0 MB"),
            (1_234_567, "1.2 MB"),
            (310_000_000, "310 MB"),
            (1_000_000_000, "1.0 GB"),
            (2_500_000_000_000, "2.5 TB"),
            (u64::MAX, "18447 PB"),
        ];
        for (bytes, text) in cases {
            assert_eq!(human_bytes(bytes), text, "{bytes}");
        }
    }
}
