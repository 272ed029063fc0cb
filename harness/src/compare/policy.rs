//! `[compare]` in a config: the verdict's thresholds, and per-benchmark overrides.
//!
//! ```toml
//! [compare]
//! threshold = 3.0      # minimum effect, percent: smaller significant changes are "unchanged"
//! alpha = 0.05         # family-wise error rate across all benchmarks compared
//! [[compare.benchmark]]
//! name = "vmalloc/*/full"   # a glob over benchmark names (`*`, `?`, `[abc]`)
//! threshold = 10.0          # this benchmark's minimum effect
//! [[compare.benchmark]]
//! name = "timer/*"
//! ignore = true             # never compared (not counted in the family either)
//! ```
//! The first matching entry wins. `kmbench run` records the policy of its config in
//! `results.json` (`env.extra.compare_policy`); `kmbench compare` uses the new run's,
//! and `--threshold` / `--alpha` override the defaults (not the per-benchmark entries).
use serde::{Deserialize, Serialize};

/// Default minimum effect, percent.
pub const DEFAULT_THRESHOLD: f64 = 3.0;
/// Default family-wise error rate.
pub const DEFAULT_ALPHA: f64 = 0.05;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ComparePolicy {
    /// Percent.
    pub threshold: f64,
    pub alpha: f64,
    #[serde(rename = "benchmark", skip_serializing_if = "Vec::is_empty")]
    pub benchmarks: Vec<BenchOverride>,
}

impl Default for ComparePolicy {
    fn default() -> Self {
        ComparePolicy {
            threshold: DEFAULT_THRESHOLD,
            alpha: DEFAULT_ALPHA,
            benchmarks: vec![],
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenchOverride {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignore: bool,
}

/// What the policy says about one benchmark.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BenchRule {
    /// Fraction (0.03 = 3%).
    pub threshold: f64,
    pub ignore: bool,
}

impl ComparePolicy {
    pub fn validate(&self) -> Result<(), String> {
        if !(self.threshold.is_finite() && self.threshold >= 0.0) {
            return Err(format!(
                "[compare] threshold = {} is invalid, expected a percentage ≥ 0",
                self.threshold
            ));
        }
        if !(self.alpha > 0.0 && self.alpha < 1.0) {
            return Err(format!(
                "[compare] alpha = {} is invalid, expected a probability in (0, 1)",
                self.alpha
            ));
        }
        for b in &self.benchmarks {
            glob::Pattern::new(&b.name).map_err(|e| {
                format!(
                    "[[compare.benchmark]] name = {:?} is not a valid glob: {e}",
                    b.name
                )
            })?;
            if let Some(t) = b.threshold {
                if !(t.is_finite() && t >= 0.0) {
                    return Err(format!(
                        "[[compare.benchmark]] {:?}: threshold = {t} is invalid, expected a percentage ≥ 0",
                        b.name
                    ));
                }
            }
        }
        Ok(())
    }

    /// The rule for benchmark `name` (a `@variant` suffix is matched as part of the name).
    pub fn rule(&self, name: &str) -> BenchRule {
        let hit = self.benchmarks.iter().find(|b| {
            glob::Pattern::new(&b.name)
                .map(|p| p.matches(name))
                .unwrap_or(false)
        });
        BenchRule {
            threshold: hit.and_then(|b| b.threshold).unwrap_or(self.threshold) / 100.0,
            ignore: hit.is_some_and(|b| b.ignore),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_match_by_glob_first_wins() {
        let p: ComparePolicy = toml::from_str(
            "threshold = 4.0\n[[benchmark]]\nname = \"vmalloc/*/full\"\nthreshold = 10.0\n[[benchmark]]\nname = \"timer/*\"\nignore = true\n[[benchmark]]\nname = \"vmalloc/*\"\nthreshold = 1.0\n",
        )
        .unwrap();
        p.validate().unwrap();
        assert_eq!(p.rule("vmalloc/pair/4096/full").threshold, 0.10);
        assert_eq!(p.rule("vmalloc/pair/4096/lazy").threshold, 0.01);
        assert!(p.rule("timer/rdtsc").ignore);
        let r = p.rule("kmalloc/pair/64");
        assert_eq!((r.threshold, r.ignore), (0.04, false));
        let bad: ComparePolicy = toml::from_str("[[benchmark]]\nname = \"[\"\n").unwrap();
        assert!(bad.validate().unwrap_err().contains("glob"));
        let bad: ComparePolicy = toml::from_str("alpha = 1.5\n").unwrap();
        assert!(bad.validate().unwrap_err().contains("alpha"));
    }
}
