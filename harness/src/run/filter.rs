//! `kmbench run --filter PATTERN`: run part of a config.
//!
//! PATTERN is a comma-separated list of globs (`*`, `?`, `[..]`, as in the `glob` crate)
//! over benchmark names. A suite runs when one glob's first segment (before `/`) matches the
//! suite's name (`vmalloc`, `tlb*`, `k*`); within the run, benchmark records are kept when
//! their name matches one glob, or when the glob names a whole suite (no `/`). Examples:
//! `--filter vmalloc`, `--filter 'kmalloc/pair/*,vmalloc/pair/*'`, `--filter 'tlb/random/*'`.
//! A pattern that selects no suite is refused, naming the config's suites.
use glob::Pattern;

use kmbench_protocol::plan::Suites;

use crate::error::{HarnessError, Result};

#[derive(Clone, Debug)]
pub struct Filter {
    text: String,
    globs: Vec<(Pattern, Pattern)>,
}

impl Filter {
    pub fn parse(text: &str) -> Result<Filter> {
        let mut globs = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let bad = |e: glob::PatternError| HarnessError::Filter {
                pattern: part.to_string(),
                reason: format!("not a glob: {e}"),
            };
            let suite = part.split('/').next().unwrap_or(part);
            globs.push((
                Pattern::new(suite).map_err(bad)?,
                Pattern::new(part).map_err(bad)?,
            ));
        }
        if globs.is_empty() {
            return Err(HarnessError::Filter {
                pattern: text.to_string(),
                reason: "empty pattern".into(),
            });
        }
        Ok(Filter {
            text: text.to_string(),
            globs,
        })
    }

    /// Does a suite of this name run?
    pub fn runs_suite(&self, suite: &str) -> bool {
        self.globs.iter().any(|(s, _)| s.matches(suite))
    }

    /// Is a benchmark record of this name (from suite `suite`) kept?
    pub fn keeps(&self, suite: &str, name: &str) -> bool {
        let base = name.split('@').next().unwrap_or(name);
        self.globs.iter().any(|(s, full)| {
            if full.as_str().contains('/') {
                full.matches(base)
            } else {
                s.matches(suite)
            }
        })
    }

    /// `suites` without the suites no glob selects.
    pub fn suites(&self, suites: &Suites) -> Result<Suites> {
        let serde_json::Value::Object(all) = serde_json::to_value(suites).unwrap_or_default()
        else {
            return Err(HarnessError::Filter {
                pattern: self.text.clone(),
                reason: "the config's suites are not a table".into(),
            });
        };
        let names: Vec<String> = all.keys().cloned().collect();
        let kept: serde_json::Map<String, serde_json::Value> = all
            .into_iter()
            .filter(|(k, _)| self.runs_suite(k))
            .collect();
        if kept.is_empty() {
            return Err(HarnessError::Filter {
                pattern: self.text.clone(),
                reason: format!(
                    "selects none of this config's suites ({})",
                    names.join(", ")
                ),
            });
        }
        serde_json::from_value(serde_json::Value::Object(kept)).map_err(|e| HarnessError::Filter {
            pattern: self.text.clone(),
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suites_and_names() {
        let f = Filter::parse("kmalloc/pair/*, vmalloc").unwrap();
        assert!(f.runs_suite("kmalloc") && f.runs_suite("vmalloc") && !f.runs_suite("tlb"));
        assert!(f.keeps("kmalloc", "kmalloc/pair/64"));
        assert!(!f.keeps("kmalloc", "kmalloc/alloc_n/8"));
        assert!(
            f.keeps("vmalloc", "test_vmalloc/fix_size_alloc_test"),
            "whole suite"
        );
        let t = Filter::parse("tlb/random/*").unwrap();
        assert!(t.keeps("tlb", "tlb/random/direct-4K/4KiB@thp"));
        assert!(!t.keeps("tlb", "tlb/page_stride/direct-4K/4KiB"));
        assert!(Filter::parse(" , ").is_err());
        assert!(Filter::parse("[").is_err());
    }

    #[test]
    fn drops_unselected_suites_and_refuses_an_empty_selection() {
        let s: Suites = serde_json::from_value(serde_json::json!({
            "timer": {"samples": 10}, "tlbflush": {"samples": 10, "refill_pages": 8}
        }))
        .unwrap();
        let kept = Filter::parse("tlb*").unwrap().suites(&s).unwrap();
        assert!(kept.timer.is_none() && kept.tlbflush.is_some());
        let e = Filter::parse("vmalloc")
            .unwrap()
            .suites(&s)
            .unwrap_err()
            .to_string();
        assert!(e.contains("timer, tlbflush"), "{e}");
    }
}
