//! `results.json` (schema `kmbench.results/1`): what a run leaves behind.
//!
//! Fields are only ever added, never renamed. `benchmarks[*]` carries the guest's
//! statistics in `unit` (cycles) and, under `ns`, in nanoseconds. With `--boots N`,
//! `boot_medians` holds one median per boot (the replication unit for statistics).
use std::collections::BTreeMap;

use kmbench_protocol::{BenchRecord, FaultRecord, Hello, SelftestRecord};
use serde::{Deserialize, Serialize};

pub use kmbench_protocol::RESULTS_SCHEMA;

/// `Default` is an empty run (no schema, no records): for building one field by field.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunResults {
    pub schema: String,
    /// False when the guest hung, crashed or the harness was interrupted: what arrived is kept.
    pub complete: bool,
    pub run_id: String,
    /// RFC 3339 UTC.
    pub started_at: String,
    pub env: Env,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<ExitInfo>,
    pub benchmarks: Vec<BenchEntry>,
    #[serde(default)]
    pub selftests: Vec<SelftestRecord>,
    /// Named facts from the guest (free memory, buddyinfo, page-table cost, …).
    #[serde(default)]
    pub info: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub faults: Vec<FaultRecord>,
    /// Lines from the guest that looked like records but were refused (too long, too many,
    /// undecodable); any entry makes the run incomplete and fail (exit 1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected_records: Vec<RejectedRecord>,
    /// The noise guard's readings and verdict (`crate::noise`); absent without canaries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise: Option<crate::noise::NoiseReport>,
    /// What the harness concluded from the records (schema `kmbench.analysis/1`): the TLB
    /// geometry per mapping and level. Absent when there is nothing to analyse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<crate::analysis::Analysis>,
}

/// One refused results-channel line: why, and its start (sanitized, truncated).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RejectedRecord {
    /// 0-based boot number in the run.
    pub boot: u32,
    pub error: String,
    pub line: String,
}

fn one_vcpu() -> u32 {
    1
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Env {
    /// "kvm" or "tcg".
    pub accel: String,
    /// "hardware", "pvm", "tcg", "none".
    pub hypervisor: String,
    /// "qemu" or "kvm" (embedded VMM).
    #[serde(default)]
    pub backend: String,
    pub cpl: u8,
    /// How cpl was chosen: "auto" or "config".
    #[serde(default)]
    pub cpl_source: String,
    /// QEMU `-cpu` value (or the VMM's CPUID description).
    pub cpu_model: String,
    #[serde(default)]
    pub machine: String,
    pub host_cpu: String,
    pub host_kernel: String,
    #[serde(default)]
    pub qemu_version: String,
    pub guest_memory_mib: u64,
    pub tsc_hz: u64,
    pub tsc_source: String,
    /// Wall time from launching the VM to the guest's first record.
    pub boot_ms: f64,
    pub kmbench_commit: String,
    pub config_file: String,
    /// SHA-256 of the config file's bytes, hex.
    pub config_hash: String,
    pub direct_map_page: String,
    #[serde(default)]
    pub host_backing: String,
    #[serde(default)]
    pub mm_debug: bool,
    #[serde(default)]
    pub flush_mode: String,
    #[serde(default)]
    pub boots: u32,
    /// CPUs of the VM (`[run] vcpus`); the host's topology and where the vCPU threads ran
    /// are in `extra` (`host_topology`, `vcpu_host_cpus`).
    #[serde(default = "one_vcpu")]
    pub vcpus: u32,
    /// The guest's own Hello record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest: Option<Hello>,
    /// Backend-specific facts (VMM exit counts, RSS, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, serde_json::Value>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExitInfo {
    /// success, failure, panic, exception, mm_misuse, stack_overflow, config_error,
    /// timeout, interrupted, launch_error, unknown.
    pub status: String,
    /// Raw process status / guest code when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    pub message: String,
}

/// A benchmark in `results.json`: the guest's record (its fields at top level) plus the
/// per-boot medians.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchEntry {
    #[serde(flatten)]
    pub record: BenchRecord,
    /// One median per boot, in `unit` (absent or length 1 for single-boot runs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub boot_medians: Vec<f64>,
    /// Indices into `boot_medians` measured while a noise-guard canary was outside its
    /// band (`crate::noise`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unstable_boots: Vec<usize>,
}

impl From<BenchRecord> for BenchEntry {
    fn from(record: BenchRecord) -> Self {
        BenchEntry {
            boot_medians: vec![record.median],
            unstable_boots: vec![],
            record,
        }
    }
}

impl std::ops::Deref for BenchEntry {
    type Target = BenchRecord;
    fn deref(&self) -> &BenchRecord {
        &self.record
    }
}

impl std::ops::DerefMut for BenchEntry {
    fn deref_mut(&mut self) -> &mut BenchRecord {
        &mut self.record
    }
}
