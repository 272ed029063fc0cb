//! Run ids and `started_at`: UTC civil time from the system clock (the `jiff` crate).
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// The time in UTC, formatted with `fmt` (jiff's strftime); times before 1970 or out of
/// range read as the epoch.
fn utc(t: SystemTime, fmt: &str) -> String {
    let ts = jiff::Timestamp::try_from(t.max(UNIX_EPOCH)).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    ts.strftime(fmt).to_string()
}

/// `2025-11-25T12:00:00Z`.
pub fn rfc3339(t: SystemTime) -> String {
    utc(t, "%Y-%m-%dT%H:%M:%SZ")
}

/// `20251125-120000-<config stem>` (characters outside `[A-Za-z0-9_-]` become `_`).
pub fn run_id(t: SystemTime, config: &Path) -> String {
    let stem: String = config
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("run")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{}-{stem}", utc(t, "%Y%m%d-%H%M%S"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates() {
        let t = UNIX_EPOCH + Duration::from_secs(1_764_072_000); // 2025-11-25T12:00:00Z
        assert_eq!(rfc3339(t), "2025-11-25T12:00:00Z");
        assert_eq!(
            run_id(t, Path::new("configs/faults/page fault.toml")),
            "20251125-120000-page_fault"
        );
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(&rfc3339(leap)[..10], "2000-02-29");
    }
}
