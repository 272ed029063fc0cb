//! Number and size formatting shared by every printer (run summary, report, TLB report,
//! plots, compare): a leaf module, so the printers don't import each other for it.
use crate::results::BenchEntry;

/// A number for a table cell: thousands separators for big values, 2 significant decimals for small.
pub fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let a = v.abs();
    if a >= 1000.0 {
        let int = format!("{:.0}", a);
        let mut out = String::new();
        for (i, c) in int.chars().enumerate() {
            if i > 0 && (int.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        if v < 0.0 {
            out.insert(0, '-');
        }
        out
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Human-friendly time: picks ns/µs/ms.
pub fn fmt_ns(ns: f64) -> String {
    let a = ns.abs();
    if a >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if a >= 1e4 {
        format!("{:.2} µs", ns / 1e3)
    } else if a >= 100.0 {
        format!("{ns:.0} ns")
    } else {
        format!("{ns:.1} ns")
    }
}

/// Parse `64`, `4096`, `4K`, `4k`, `2M`, `1G`, `4KiB`, `2MB`… into bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if digits_end == 0 {
        return None;
    }
    let n: u64 = s[..digits_end].parse().ok()?;
    let mult: u64 = match s[digits_end..].to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

fn param_size(v: &serde_json::Value) -> Option<u64> {
    match v {
        serde_json::Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        serde_json::Value::String(s) => parse_size(s),
        _ => None,
    }
}

/// A benchmark's size in bytes: the `size` (or `bytes`) param, else the last name segment.
pub fn bench_size(e: &BenchEntry) -> Option<u64> {
    for key in ["size", "bytes"] {
        if let Some(s) = e.params.get(key).and_then(param_size) {
            return Some(s);
        }
    }
    e.name.rsplit('/').next().and_then(parse_size)
}

/// `64 B`, `4 KiB`, `2 MiB`, `1.5 MiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1 << 40, "TiB"),
        (1 << 30, "GiB"),
        (1 << 20, "MiB"),
        (1 << 10, "KiB"),
    ];
    for (m, u) in UNITS {
        if bytes >= m {
            return if bytes.is_multiple_of(m) {
                format!("{} {u}", bytes / m)
            } else {
                format!("{:.1} {u}", bytes as f64 / m as f64)
            };
        }
    }
    format!("{bytes} B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(fmt_num(1.4), "1.40");
        assert_eq!(fmt_num(15.25), "15.2");
        assert_eq!(fmt_num(150.4), "150");
        assert_eq!(fmt_num(1_234_567.0), "1,234,567");
        assert_eq!(fmt_num(f64::NAN), "-");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64"), Some(64));
        assert_eq!(parse_size("4K"), Some(4096));
        assert_eq!(parse_size("2M"), Some(2 << 20));
        assert_eq!(parse_size("1GiB"), Some(1 << 30));
        assert_eq!(parse_size("rdtsc"), None);
        assert_eq!(parse_size("4x"), None);
        assert_eq!(human_size(64), "64 B");
        assert_eq!(human_size(4096), "4 KiB");
        assert_eq!(human_size(3 << 19), "1.5 MiB");
    }
}
