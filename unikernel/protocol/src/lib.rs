//! The contract between the kmbench guest kernel and the host harness.
//!
//! The harness turns a TOML config into a [`GuestPlan`], serialises it as JSON onto the
//! kernel command line (`kmbench=<json>`), and the kernel answers with framed
//! [`Record`]s on the results channel ([`ports::RESULTS`]): one line per record,
//! `KMB1 <json>\n`. Both sides compile these exact types, so the harness never scrapes
//! log text. The guest ends the run through the exit port with a [`GuestExit`] code.
#![no_std]

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

pub mod channel;
pub mod limits;
pub mod plan;
pub mod request_limits;
pub mod stats;

pub use limits::PlanError;
pub use plan::*;
pub use stats::Summary;

/// Version tag that prefixes every record line on the results channel.
pub const RECORD_PREFIX: &str = "KMB1 ";
/// Schema name of the harness's `results.json`.
pub const RESULTS_SCHEMA: &str = "kmbench.results/1";
/// Kernel command-line key that carries the JSON [`GuestPlan`].
pub const CMDLINE_PLAN_KEY: &str = "kmbench=";
/// The command line when the plan travels as PVH boot module 0 instead (QEMU `-initrd`,
/// the embedded VMM's plan area): plans of any size up to [`PLAN_MAX`].
pub const CMDLINE_PLAN_MODULE: &str = "kmbench=module";
/// The command line that goes with a plan in boot module 0:
/// `kmbench=module cpl=N`, the CPL repeated so the kernel can pick its ring before it
/// parses anything (see the kernel's `peek_cpl`).
pub fn module_cmdline(plan_json: &str) -> String {
    let cpl = serde_json::from_str::<serde_json::Value>(plan_json)
        .ok()
        .and_then(|v| v.get("cpl").and_then(|c| c.as_u64()))
        .unwrap_or(0);
    alloc::format!("{CMDLINE_PLAN_MODULE} cpl={cpl}")
}

/// Largest plan (JSON bytes) the host sends; the boot ABI's plan area holds it.
pub const PLAN_MAX: usize = 512 * 1024;

/// I/O ports shared by the kernel, QEMU's device options and the embedded VMM.
pub mod ports {
    /// 16550 UART (COM1): human-readable log.
    pub const SERIAL_LOG: u16 = 0x3f8;
    /// Bochs/QEMU debugcon: machine-readable records, one per line.
    pub const RESULTS: u16 = 0xe9;
    /// `isa-debug-exit` (iosize 4): writing `code` ends the VM.
    pub const EXIT: u16 = 0xf4;
    /// 16550 UART (COM2): host → guest [`Request`](crate::Request) lines in serve mode
    /// ([`GuestPlan::serve`](crate::GuestPlan::serve)); the guest polls it (LSR bit 0).
    pub const CONTROL: u16 = 0x2f8;
}

/// How a guest run ended, as written to [`ports::EXIT`].
///
/// QEMU's `isa-debug-exit` turns guest code `c` into process status `(c << 1) | 1`, so
/// a clean QEMU exit is 1, never 0; a VMM sees `c` itself. Both map back through
/// [`GuestExit::from_qemu_status`] / [`GuestExit::from_code`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum GuestExit {
    Success = 0,
    /// A benchmark or self-test reported failure.
    Failure = 1,
    /// Rust panic in the kernel.
    Panic = 2,
    /// Unexpected CPU exception.
    Exception = 3,
    /// mm misuse detection fired (double free, foreign pointer, redzone).
    MmMisuse = 4,
    /// A guard page below a stack was hit.
    StackOverflow = 5,
    /// The plan asked for something this guest cannot do (e.g. 1G pages without CPUID support).
    ConfigError = 6,
}

impl GuestExit {
    pub const ALL: [GuestExit; 7] = [
        GuestExit::Success,
        GuestExit::Failure,
        GuestExit::Panic,
        GuestExit::Exception,
        GuestExit::MmMisuse,
        GuestExit::StackOverflow,
        GuestExit::ConfigError,
    ];

    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(code: u32) -> Option<GuestExit> {
        Self::ALL.iter().copied().find(|e| e.code() as u32 == code)
    }

    /// Decode the exit status of a QEMU process that ended through `isa-debug-exit`.
    pub fn from_qemu_status(status: i32) -> Option<GuestExit> {
        if status & 1 == 1 {
            Self::from_code((status >> 1) as u32)
        } else {
            None
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            GuestExit::Success => "success",
            GuestExit::Failure => "benchmark or self-test failure",
            GuestExit::Panic => "kernel panic",
            GuestExit::Exception => "CPU exception",
            GuestExit::MmMisuse => "memory misuse detected",
            GuestExit::StackOverflow => "kernel stack overflow",
            GuestExit::ConfigError => "configuration not supported by the guest",
        }
    }
}

/// Outcome of one benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BenchStatus {
    Ok,
    Oom,
    Error,
    Unsupported,
}

impl BenchStatus {
    /// The serialised (snake_case) name: `ok`, `oom`, `error`, `unsupported`.
    pub fn label(self) -> &'static str {
        match self {
            BenchStatus::Ok => "ok",
            BenchStatus::Oom => "oom",
            BenchStatus::Error => "error",
            BenchStatus::Unsupported => "unsupported",
        }
    }
}

/// One line on the results channel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    /// First record: what the guest found about itself.
    Hello(Hello),
    /// One benchmark's distribution.
    Bench(BenchRecord),
    /// One self-test check.
    Selftest(SelftestRecord),
    /// A named fact worth keeping (free memory, buddyinfo, page-table cost…).
    Info(InfoRecord),
    /// Something went wrong; the guest exits right after with `exit`.
    Fault(FaultRecord),
    /// Last record of a clean run.
    End(EndRecord),
    /// Serve mode: the answer to one [`Request`].
    Measurement(MeasurementRecord),
    /// Noise guard: one reading of the reference workloads, taken between suites.
    Canary(CanaryRecord),
}

/// One noise-guard reading ([`CanaryPlan`]): a fixed compute-bound and a fixed
/// memory-bound workload, timed right after the suite named in `after` (`None`: before
/// the first suite). The host compares readings across the run to flag benchmarks
/// measured while the host was slower than usual.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CanaryRecord {
    /// 0, 1, 2, … within the boot.
    pub seq: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// TSC when the reading started.
    pub tsc: u64,
    /// Median TSC cycles per iteration of the dependent-add chain.
    pub compute: f64,
    /// Median TSC cycles per dependent load of the random pointer chase.
    pub memory: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// Version of this protocol crate the guest was built with.
    pub protocol: u32,
    pub kernel: String,
    /// Privilege level the measured code runs at (0 or 3).
    pub cpl: u8,
    /// The guest's own view: "pvm" (ring-3 CS reads 0x33), "kvm", "tcg" (CPUID hypervisor
    /// signature), "other" (another hypervisor signature), "none" (no hypervisor leaf).
    pub guest_hypervisor: String,
    /// CPUID vendor and brand string as seen by the guest.
    pub cpu_vendor: String,
    pub cpu_brand: String,
    pub tsc_hz: u64,
    /// "cpuid-0x15", "cpuid-0x16", "kvm-leaf", "vmm" (the plan's `tsc_khz`), "pit".
    pub tsc_source: String,
    pub invariant_tsc: bool,
    /// Usable RAM from the PVH memory map, bytes.
    pub mem_bytes: u64,
    pub features: CpuFeatures,
    /// TSC value at kernel entry and when this record was built (cycles).
    pub tsc_at_entry: u64,
    pub tsc_at_hello: u64,
    /// TSC when ring-0 setup (GDT, TSS, IDT) was done, just before the kernel dropped to the
    /// run's CPL. Boot phases (guest side, TSC cycles): entry → `tsc_ring0_done` (ring-0
    /// setup) → `tsc_at_hello` (this first record) → the `mm/boot` info record's
    /// `tsc_mm_init_start` / `tsc_mm_init_done` (memory-management init). Absent from
    /// older guests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tsc_ring0_done: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuFeatures {
    pub page_1g: bool,
    pub pcid: bool,
    pub invpcid: bool,
    /// Architectural or AMD core performance counters are exposed.
    pub pmu: bool,
    pub nx: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchRecord {
    /// Slash-separated, stable: `timer/rdtsc`, `kmalloc/pair/64`.
    pub name: String,
    pub suite: String,
    pub status: BenchStatus,
    /// Unit of the statistics: usually "cycles".
    pub unit: String,
    pub samples: u64,
    pub min: f64,
    pub median: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
    /// The same statistics in nanoseconds (from the TSC frequency), when unit is cycles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ns: Option<Summary>,
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Value>,
    /// Extra measured quantities (e.g. vmalloc decomposition, buddy split/merge counts).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, serde_json::Value>,
    /// Why status is not ok.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SelftestRecord {
    pub name: String,
    pub passed: bool,
    #[serde(default)]
    pub detail: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InfoRecord {
    pub key: String,
    pub value: serde_json::Value,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultRecord {
    pub exit: GuestExit,
    /// One line a user can act on.
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rip: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cr2: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpl: Option<u8>,
    /// The CPU that failed (0 = boot CPU), in runs with several vCPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EndRecord {
    pub exit: GuestExit,
    pub benchmarks: u32,
    pub selftests_failed: u32,
}

/// Serve mode (`GuestPlan::serve`): one host → guest request on [`ports::CONTROL`],
/// a JSON object on one line (see [`encode_request`]); `arg` and `iters` must lie in the
/// ranges of [`request_limits`] (host and guest both check). The guest runs `iters` iterations
/// of `op` back to back, timed as a whole with the TSC, and answers with a
/// [`Record::Measurement`] carrying the same `id`. `op = "quit"` ends the guest cleanly
/// (it answers with the run's `End` record and exits).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub id: u64,
    /// A [`ServeOp`] label: `kmalloc_pair`, `kzalloc_pair` (arg = size),
    /// `alloc_pages_pair` (arg = order), `vmalloc_pair` (arg = size), `gate_roundtrip`,
    /// `alu` (arg = adds per iteration, 0 = 1), `nop` (an empty loop), `quit`. Kept a string
    /// on the wire so a guest can answer an unknown label with an error record.
    pub op: String,
    #[serde(default)]
    pub arg: u64,
    #[serde(default)]
    pub iters: u64,
}

/// A serve-mode operation ([`Request::op`] carries its label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServeOp {
    /// `kmalloc(arg)` + `kfree`.
    KmallocPair,
    /// `kzalloc(arg)` + `kfree`.
    KzallocPair,
    /// `alloc_pages(order = arg)` + `free_pages`.
    AllocPagesPair,
    /// `vmalloc(arg)` + `vfree`.
    VmallocPair,
    /// One no-op trip through the CPL3→CPL0 gate.
    GateRoundtrip,
    /// `arg` dependent adds (0 = 1).
    Alu,
    /// An empty iteration.
    Nop,
    /// End the guest cleanly (answered with the run's `End` record).
    Quit,
}

impl ServeOp {
    /// Every operation that measures something (all but `Quit`).
    pub const MEASURED: [ServeOp; 7] = [
        ServeOp::KmallocPair,
        ServeOp::KzallocPair,
        ServeOp::AllocPagesPair,
        ServeOp::VmallocPair,
        ServeOp::GateRoundtrip,
        ServeOp::Alu,
        ServeOp::Nop,
    ];

    /// The wire label (`kmalloc_pair`, …, `quit`).
    pub fn label(self) -> &'static str {
        match self {
            ServeOp::KmallocPair => "kmalloc_pair",
            ServeOp::KzallocPair => "kzalloc_pair",
            ServeOp::AllocPagesPair => "alloc_pages_pair",
            ServeOp::VmallocPair => "vmalloc_pair",
            ServeOp::GateRoundtrip => "gate_roundtrip",
            ServeOp::Alu => "alu",
            ServeOp::Nop => "nop",
            ServeOp::Quit => "quit",
        }
    }

    /// The operation with this label.
    pub fn from_label(s: &str) -> Option<ServeOp> {
        ServeOp::MEASURED
            .into_iter()
            .chain([ServeOp::Quit])
            .find(|o| o.label() == s)
    }
}

/// The labels of [`ServeOp::MEASURED`], in that order.
pub const SERVE_OPS: [&str; 7] = [
    "kmalloc_pair",
    "kzalloc_pair",
    "alloc_pages_pair",
    "vmalloc_pair",
    "gate_roundtrip",
    "alu",
    "nop",
];

/// The guest's answer to one [`Request`]: `cycles` for all `iters` iterations together
/// (TSC, the empty timer's overhead subtracted once), `ns` the same from the TSC frequency.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MeasurementRecord {
    pub id: u64,
    pub op: String,
    pub arg: u64,
    pub iters: u64,
    pub cycles: u64,
    pub ns: f64,
    /// Why the request could not be served (unknown op, bad argument, out of memory);
    /// `cycles`/`ns` are 0 then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Frame a request as one control-channel line, newline included.
pub fn encode_request(request: &Request) -> String {
    let mut line = serde_json::to_string(request).expect("requests always serialise");
    line.push('\n');
    line
}

/// Protocol version carried in [`Hello::protocol`].
pub const PROTOCOL_VERSION: u32 = 1;

/// Frame a record as one results-channel line (without the trailing newline).
pub fn encode_record(record: &Record) -> String {
    let mut line = String::from(RECORD_PREFIX);
    line.push_str(&serde_json::to_string(record).expect("records always serialise"));
    line
}

/// Parse one results-channel line; `None` for lines that are not records. Strings are
/// sanitized ([`channel::sanitize`]); a stream of lines goes through [`channel::RecordReader`].
pub fn decode_record(line: &str) -> Option<Result<Record, serde_json::Error>> {
    let body = line
        .trim_end_matches(['\r', '\n'])
        .strip_prefix(RECORD_PREFIX)?;
    Some(serde_json::from_str(body).map(|mut r: Record| {
        r.sanitize();
        r
    }))
}

/// Helper for building params maps.
pub fn params<const N: usize>(
    pairs: [(&str, serde_json::Value); N],
) -> BTreeMap<String, serde_json::Value> {
    pairs
        .into_iter()
        .map(|(k, v)| (String::from(k), v))
        .collect()
}

/// Convenience for list-of-records producers.
pub type Records = Vec<Record>;

#[cfg(test)]
mod serve_op_tests {
    use super::*;
    #[test]
    fn serve_op_labels_round_trip_and_match_serde() {
        for (op, label) in ServeOp::MEASURED.iter().zip(SERVE_OPS) {
            assert_eq!(op.label(), label);
            assert_eq!(ServeOp::from_label(label), Some(*op));
            assert_eq!(
                serde_json::to_string(op).unwrap(),
                alloc::format!("\"{label}\"")
            );
        }
        assert_eq!(ServeOp::from_label("quit"), Some(ServeOp::Quit));
        assert_eq!(ServeOp::from_label("bogus"), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn exit_codes_round_trip_through_qemu_status() {
        for e in GuestExit::ALL {
            let status = ((e.code() as i32) << 1) | 1;
            assert_eq!(GuestExit::from_qemu_status(status), Some(e));
        }
        assert_eq!(GuestExit::from_qemu_status(0), None);
        assert_eq!(GuestExit::from_qemu_status(2), None);
    }

    #[test]
    fn record_framing_round_trips() {
        let r = Record::Selftest(SelftestRecord {
            name: "x".to_string(),
            passed: true,
            detail: String::new(),
        });
        let line = encode_record(&r);
        assert!(line.starts_with("KMB1 {"));
        assert_eq!(decode_record(&line).unwrap().unwrap(), r);
        assert!(decode_record("hello world").is_none());
    }

    #[test]
    fn serve_request_and_measurement_round_trip() {
        let q = Request {
            id: 7,
            op: "kmalloc_pair".to_string(),
            arg: 64,
            iters: 1000,
        };
        let line = encode_request(&q);
        assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
        assert_eq!(serde_json::from_str::<Request>(line.trim_end()).unwrap(), q);
        let m = Record::Measurement(MeasurementRecord {
            id: 7,
            op: q.op.clone(),
            arg: 64,
            iters: 1000,
            cycles: 12345,
            ns: 5000.5,
            error: None,
        });
        let enc = encode_record(&m);
        assert!(enc.contains("\"type\":\"measurement\"") && !enc.contains("error"));
        assert_eq!(decode_record(&enc).unwrap().unwrap(), m);
    }
}
