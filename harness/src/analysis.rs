//! The `analysis` section of `results.json` (schema [`ANALYSIS_SCHEMA`]): conclusions the
//! harness draws from a run's records, stored so CI and scripts read them instead of
//! parsing printed text. Only types live here; `report::tlb_analysis` computes them.
//!
//! ```json
//! "analysis": {
//!   "schema": "kmbench.analysis/1",
//!   "tlb": [{ "variant": "", "pattern": "random", "mappings": [{
//!       "mapping": "direct-4K", "page_bytes": 4096, "points": 15,
//!       "levels": [{ "index": 1, "bytes_min": 262144, "bytes_max": 368640,
//!                    "entries_min": 64, "entries_max": 90,
//!                    "bytes_estimate": 286720, "entries_estimate": 70,
//!                    "latency_before_ns": 1.3, "latency_after_ns": 3.5, "extra_ns": 2.2,
//!                    "cpuid": [{"level": "L1", "page_size": "4K", "entries": 64}],
//!                    "matches": "L1" }],
//!       "effective_entry": { "bytes": 4096, "label": "4K", "evidence": "…",
//!                            "hypotheses": [ … ] } }] }]
//! }
//! ```
use serde::{Deserialize, Serialize};

/// Version of the `analysis` section; bumped when a field changes meaning.
pub const ANALYSIS_SCHEMA: &str = "kmbench.analysis/1";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    pub schema: String,
    /// One entry per (variant, pattern) that has a tlb sweep.
    #[serde(default)]
    pub tlb: Vec<TlbAnalysis>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TlbAnalysis {
    /// `[[variants]]` name ("" without variants).
    pub variant: String,
    /// Access pattern of the sweep the geometry comes from (`random`, else `page_stride`).
    pub pattern: String,
    pub mappings: Vec<MappingAnalysis>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MappingAnalysis {
    /// `direct-4K`, `direct-2M`, `direct-1G`, `vmalloc`, `vmalloc_huge`.
    pub mapping: String,
    /// Leaf size the guest mapped the buffer with.
    pub page_bytes: u64,
    /// Working-set points with a latency.
    pub points: usize,
    /// Latency steps, smallest working set first.
    pub levels: Vec<TlbLevel>,
    /// What size of TLB entry the guest's leaves behave as (None: no step to judge by).
    pub effective_entry: Option<EffectiveEntry>,
}

/// One latency step: the working set where accesses start to miss one more structure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TlbLevel {
    /// 1-based, in working-set order.
    pub index: u32,
    /// Last working set on the lower plateau / first one past the step.
    pub bytes_min: u64,
    pub bytes_max: u64,
    /// The same in entries of the mapping's page size (one access per page: pages that fit).
    pub entries_min: u64,
    pub entries_max: u64,
    /// Point estimate within [bytes_min, bytes_max] from the miss fraction at the first
    /// point past the step (misses ≈ 1 − C/N for N pages over C entries), and the same
    /// in entries.
    pub bytes_estimate: u64,
    pub entries_estimate: u64,
    pub latency_before_ns: f64,
    pub latency_after_ns: f64,
    /// Cost the step adds per access.
    pub extra_ns: f64,
    /// CPUID's data-TLB entries for the mapping's page size, every level.
    pub cpuid: Vec<CpuidTlb>,
    /// The CPUID level this step matches (reported entries within a factor of two of
    /// the range); None: not a TLB level of this page size (a cache, or the hypervisor).
    pub matches: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CpuidTlb {
    pub level: String,
    pub page_size: String,
    pub entries: u64,
}

/// The TLB entry size a mapping's leaves act as, judged from its first step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EffectiveEntry {
    pub bytes: u64,
    /// `4K`, `2M`, `1G`, or `undetermined`.
    pub label: String,
    /// Plain-language reasoning with the numbers.
    pub evidence: String,
    pub hypotheses: Vec<EntryHypothesis>,
}

/// "The leaves act as `entry_bytes` entries": then the first step sits at
/// `predicted_step_bytes` (reference entries × entry size).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EntryHypothesis {
    pub entry_bytes: u64,
    pub reference: String,
    pub reference_entries: u64,
    pub predicted_step_bytes: u64,
    /// |log2(measured first step / predicted)|: 0 is a perfect fit, 1 a factor of two.
    pub log2_error: f64,
}
