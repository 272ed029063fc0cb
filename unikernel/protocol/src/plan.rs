//! The run plan: what the guest must do, decided on the host.
//!
//! The harness validates a TOML config into these types (unknown keys are rejected by
//! `deny_unknown_fields`), resolves `cpl = "auto"`, and hands the guest the JSON form on
//! its command line. Every suite is optional; an absent suite does not run.
use alloc::vec;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// Leaf size of a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PageSize {
    #[serde(rename = "4K")]
    Size4K,
    #[serde(rename = "2M")]
    Size2M,
    #[serde(rename = "1G")]
    Size1G,
}

impl PageSize {
    pub const fn bytes(self) -> u64 {
        match self {
            PageSize::Size4K => 4096,
            PageSize::Size2M => 2 << 20,
            PageSize::Size1G => 1 << 30,
        }
    }
    /// Buddy order of the block behind one leaf (0, 9, 18).
    pub const fn order(self) -> u8 {
        match self {
            PageSize::Size4K => 0,
            PageSize::Size2M => 9,
            PageSize::Size1G => 18,
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            PageSize::Size4K => "4K",
            PageSize::Size2M => "2M",
            PageSize::Size1G => "1G",
        }
    }
}

/// How vfree invalidates the TLB.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FlushMode {
    /// INVLPG each page below a threshold (33 pages, like x86 Linux), full flush above.
    PerPage,
    /// Always reload CR3.
    Full,
    /// Defer: collect freed ranges and flush once when enough has accumulated
    /// (Linux's lazy vmap purge); virtual ranges are reused only after the flush.
    Lazy,
}

impl FlushMode {
    pub fn label(self) -> &'static str {
        match self {
            FlushMode::PerPage => "per-page",
            FlushMode::Full => "full",
            FlushMode::Lazy => "lazy",
        }
    }
}

/// Deliberate misbehaviour for the fault configs (`configs/faults/`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultInjection {
    Panic,
    /// Touch an unmapped address (a #PF with CR2 reported).
    PageFault,
    /// Execute `ud2`.
    InvalidOpcode,
    /// Spin forever (the harness timeout must kill it).
    Hang,
    /// Emit one benchmark record, then hang.
    HangAfterRecord,
    DoubleFree,
    ForeignFree,
    Redzone,
    VfreeForeign,
    StackOverflow,
    /// Read a vmalloc area's guard page.
    VmallocGuard,
    NullDeref,
}

/// Everything the guest needs for one boot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestPlan {
    /// Privilege level of the measured code (0 or 3), already resolved from "auto".
    pub cpl: u8,
    #[serde(default = "default_direct_map_page")]
    pub direct_map_page: PageSize,
    #[serde(default)]
    pub mm_debug: bool,
    #[serde(default = "default_flush_mode")]
    pub flush_mode: FlushMode,
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Run the in-guest self-test suite.
    #[serde(default)]
    pub selftest: bool,
    #[serde(default)]
    pub fault: Option<FaultInjection>,
    #[serde(default)]
    pub suites: Suites,
    /// Serve mode: instead of the suites, answer [`Request`](crate::Request)s from the
    /// control channel (COM2) until `quit` (`cargo bench -p kmbench --bench guest`).
    #[serde(default, skip_serializing_if = "core::ops::Not::not")]
    pub serve: bool,
    /// TSC frequency in kHz as the VMM knows it (KVM_GET_TSC_KHZ), for guests whose CPUID
    /// has no frequency leaf; saves the ~50 ms PIT calibration. Source "vmm".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tsc_khz: Option<u64>,
    /// Noise guard: reference workloads between suites ([`crate::CanaryRecord`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryPlan>,
    /// CPUs the VM has (`[run] vcpus`): the boot CPU brings the other `cpus - 1` online.
    /// Omitted when 1, so single-CPU command lines are unchanged.
    #[serde(default = "default_cpus", skip_serializing_if = "is_one")]
    pub cpus: u32,
    /// The CPU on which `fault` fires (0 = the boot CPU; an AP raises panic, page_fault,
    /// invalid_opcode or hang right after it comes online).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub fault_cpu: u32,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

fn default_cpus() -> u32 {
    1
}
fn is_one(v: &u32) -> bool {
    *v == 1
}

/// The noise guard's two reference workloads. Fixed sizes, so readings from different
/// boots and runs of one machine are comparable.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CanaryPlan {
    /// Timed samples of each workload per reading (the median is reported).
    pub samples: u32,
    /// Iterations of the dependent-add chain per sample (compute-bound).
    pub compute_iterations: u32,
    /// Buffer of the random pointer chase (memory-bound: beyond L1, inside L2).
    pub memory_bytes: u64,
    /// Dependent loads per sample.
    pub memory_accesses: u32,
}
impl Default for CanaryPlan {
    fn default() -> Self {
        CanaryPlan {
            samples: 5,
            compute_iterations: 2_000,
            memory_bytes: 256 << 10,
            memory_accesses: 2_000,
        }
    }
}

fn default_direct_map_page() -> PageSize {
    PageSize::Size2M
}
fn default_flush_mode() -> FlushMode {
    FlushMode::Lazy
}
fn default_seed() -> u64 {
    0x6b6d_6265_6e63_6801
}

impl GuestPlan {
    pub fn new(cpl: u8) -> GuestPlan {
        GuestPlan {
            cpl,
            direct_map_page: default_direct_map_page(),
            mm_debug: false,
            flush_mode: default_flush_mode(),
            seed: default_seed(),
            selftest: false,
            fault: None,
            suites: Suites::default(),
            serve: false,
            tsc_khz: None,
            canary: None,
            cpus: 1,
            fault_cpu: 0,
        }
    }
}

/// The benchmark suites of a run; `None` means "do not run".
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suites {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timer: Option<TimerSuite>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<GateSuite>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alu: Option<AluSuite>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kmalloc: Option<KmallocSuite>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pages: Option<PagesSuite>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmalloc: Option<VmallocSuite>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack_vs_heap: Option<StackVsHeapSuite>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub talc_vs_slab: Option<TalcVsSlabSuite>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tlb: Option<TlbSuite>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tlbflush: Option<TlbFlushSuite>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map: Option<MapSuite>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipi: Option<IpiSuite>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smp: Option<SmpSuite>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tlb_shootdown: Option<ShootdownSuite>,
}

/// The SMP allocator suites (vcpus ≥ 1; each benchmark runs at 1..=vcpus CPUs, named
/// `…/cpus=<n>` with param `cpus`): `smp/kmalloc/pair/<size>` (every CPU runs
/// kmalloc+kfree pairs through its per-CPU sheaf), `smp/kmalloc/remote_free/<size>`
/// (CPU 0 allocates, CPU 1 frees: the cross-CPU path), `smp/alloc_pages/pair/0` (order-0
/// pages through the per-CPU page lists) and `smp/vmalloc/pair/<size>`. A sample is the
/// mean cost per operation over `ops` operations on one CPU.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmpSuite {
    pub samples: u32,
    pub ops: u32,
    /// kmalloc sizes (slab classes only).
    pub sizes: Vec<u64>,
    /// vmalloc sizes (bytes) for `smp/vmalloc/pair`.
    pub vmalloc_sizes: Vec<u64>,
    pub pages: bool,
    pub remote_free: bool,
}
impl Default for SmpSuite {
    fn default() -> Self {
        SmpSuite {
            samples: 200,
            ops: 1000,
            sizes: vec![64],
            vmalloc_sizes: vec![4096],
            pages: true,
            remote_free: true,
        }
    }
}

/// `tlb_shootdown/<pages>/<leaf>/targets=<t>` (vcpus ≥ 2): CPU 0 asks `t` other CPUs to
/// invalidate a range they have touched (`pages` 4K leaves, or one 2M leaf with
/// `huge`), by IPI, and waits for every ack; above 33 pages a target flushes everything,
/// as Linux's `tlb_single_page_flush_ceiling`. Each sample is one shootdown; `extra`
/// has the breakdown (send, remote handler, ack wait).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShootdownSuite {
    pub samples: u32,
    pub warmup: u32,
    /// Range sizes in 4K pages (each ≤ 512).
    pub pages: Vec<u64>,
    /// Also one 2 MiB range mapped by a single 2M leaf.
    pub huge: bool,
}
impl Default for ShootdownSuite {
    fn default() -> Self {
        ShootdownSuite {
            samples: 200,
            warmup: 10,
            pages: vec![1, 33, 512],
            huge: true,
        }
    }
}

/// `ipi/roundtrip` (vcpus ≥ 2): the boot CPU sends a fixed IPI to CPU 1, whose handler
/// counts it in memory; timed from before the ICR write until the boot CPU sees the count
/// change. Runs during SMP bring-up (before `mm::init`, while the xAPIC is mapped).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IpiSuite {
    pub samples: u32,
    pub warmup: u32,
}
impl Default for IpiSuite {
    fn default() -> Self {
        IpiSuite {
            samples: 1000,
            warmup: 50,
        }
    }
}

/// `timer/rdtsc` (two plain `rdtsc` back to back) and `timer/serialized` (the
/// `lfence;rdtsc;lfence` pair every timed region uses, whose median is the subtracted
/// overhead). No `rdtscp`: KVM's instruction emulator (all of CPL0 under kvm_pvm) lacks it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimerSuite {
    pub samples: u32,
}
impl Default for TimerSuite {
    fn default() -> Self {
        TimerSuite { samples: 10_000 }
    }
}

/// `gate/roundtrip` (no-op), `gate/invlpg`, `gate/cr3-reload`: CPL3→CPL0→CPL3 through the
/// gate (at CPL0 only the operations themselves, without a round trip).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GateSuite {
    pub samples: u32,
}
impl Default for GateSuite {
    fn default() -> Self {
        GateSuite { samples: 2_000 }
    }
}

/// `alu/dependent-add`: a dependent ALU chain, cycles per iteration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AluSuite {
    pub samples: u32,
    pub iterations: u32,
}
impl Default for AluSuite {
    fn default() -> Self {
        AluSuite {
            samples: 1_000,
            iterations: 1_000,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KmallocSuite {
    /// Sizes for `kmalloc/pair/<size>` (slab classes and the page path).
    pub sizes: Vec<u64>,
    /// Sizes for the slab_test pattern `kmalloc/alloc_n` / `kmalloc/free_n`.
    pub n_sizes: Vec<u64>,
    /// Objects per alloc_n/free_n round (slab_test uses 10,000).
    pub n: u32,
    /// Sizes for `kzalloc/pair/<size>`.
    pub kzalloc_sizes: Vec<u64>,
    /// Timed samples per benchmark.
    pub samples: u32,
    pub warmup: u32,
    /// Operations in the random-size `kmalloc/mixed` workload (0 = skip).
    pub mixed_ops: u32,
    /// Also record slab_test's single cold run per `n_sizes` entry
    /// (`kmalloc/alloc_n|free_n/<size>/cold`: one round, the first use of the size class).
    pub cold: bool,
}
impl Default for KmallocSuite {
    fn default() -> Self {
        KmallocSuite {
            sizes: vec![8, 64, 256, 1024, 4096, 8192, 16384, 65536, 1 << 20],
            n_sizes: vec![8, 64, 256, 4096],
            n: 10_000,
            kzalloc_sizes: vec![64, 4096],
            samples: 2_000,
            warmup: 200,
            mixed_ops: 100_000,
            cold: true,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PagesSuite {
    pub orders: Vec<u8>,
    /// Blocks per alloc_n/free_n round.
    pub n: u32,
    pub samples: u32,
    pub warmup: u32,
}
impl Default for PagesSuite {
    fn default() -> Self {
        PagesSuite {
            orders: vec![0, 1, 2, 3, 9, 10],
            n: 1_000,
            samples: 2_000,
            warmup: 100,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VmallocSuite {
    pub sizes: Vec<u64>,
    /// Each flush mode runs as its own benchmark set.
    pub flush_modes: Vec<FlushMode>,
    pub samples: u32,
    pub warmup: u32,
    /// Run the `lib/test_vmalloc.c` cases.
    pub test_vmalloc: bool,
    /// Loops per test_vmalloc case (Linux's `test_loop_count`, default 1,000,000; smaller here).
    pub test_loops: u32,
    /// Linux's `test_repeat_count`: runs of each case (passed/failed count runs).
    pub test_repeat: u32,
    /// Linux's `run_test_mask`: bit i selects case id 2^i (1 fix_size, 2 full_fit,
    /// 4 long_busy_list, 8 random_size, 16 fix_align, 32 random_size_align,
    /// 64 align_shift, 128 pcpu, 256/512 kvfree_rcu, 1024 vm_map_ram,
    /// 2048 no_block_alloc, 4096 vrealloc).
    pub test_mask: u32,
    /// Linux's `nr_pages` for fix_size_alloc_test (0 means 1, as in Linux).
    pub test_nr_pages: u32,
    /// Linux's `use_huge`: fix_size_alloc_test calls vmalloc_huge.
    pub test_use_huge: bool,
    /// Sizes for `vmalloc_huge/pair/<size>`.
    pub huge_sizes: Vec<u64>,
    /// Sizes whose pair is also timed with no exit in the loop (`vmalloc/warm/...`): the
    /// default pair touches the new page between vmalloc and vfree (a first-touch fault,
    /// an exit under shadow paging), the warm one does not.
    pub exit_effect_sizes: Vec<u64>,
    /// Sizes for `vmalloc/lazy_amortized/<size>/…`: lazy mode run across the purge
    /// threshold `lazy_purges` times (pairs include their share of the purges).
    pub lazy_amortized_sizes: Vec<u64>,
    pub lazy_purges: u32,
}
impl Default for VmallocSuite {
    fn default() -> Self {
        VmallocSuite {
            sizes: vec![4096, 16384, 65536, 1 << 20],
            flush_modes: vec![FlushMode::Lazy, FlushMode::PerPage, FlushMode::Full],
            samples: 500,
            warmup: 50,
            test_vmalloc: true,
            test_loops: 2_000,
            test_repeat: 1,
            test_mask: u32::MAX,
            test_nr_pages: 0,
            test_use_huge: false,
            huge_sizes: vec![2 << 20],
            exit_effect_sizes: vec![4096],
            lazy_amortized_sizes: vec![4096, 65536],
            lazy_purges: 8,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StackVsHeapSuite {
    pub buffer: u64,
    pub samples: u32,
}
impl Default for StackVsHeapSuite {
    fn default() -> Self {
        StackVsHeapSuite {
            buffer: 2048,
            samples: 5_000,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TalcVsSlabSuite {
    pub sizes: Vec<u64>,
    pub samples: u32,
}
impl Default for TalcVsSlabSuite {
    fn default() -> Self {
        TalcVsSlabSuite {
            sizes: vec![8, 64, 512, 4096],
            samples: 5_000,
        }
    }
}

/// A kind of mapping an access benchmark's buffer can come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mapping {
    #[serde(rename = "direct-4K")]
    Direct4K,
    #[serde(rename = "direct-2M")]
    Direct2M,
    #[serde(rename = "direct-1G")]
    Direct1G,
    Vmalloc,
    /// Spelled like its label (`vmalloc_huge`); `vmalloc-huge` is accepted too.
    #[serde(rename = "vmalloc_huge", alias = "vmalloc-huge")]
    VmallocHuge,
}

impl Mapping {
    pub fn label(self) -> &'static str {
        match self {
            Mapping::Direct4K => "direct-4K",
            Mapping::Direct2M => "direct-2M",
            Mapping::Direct1G => "direct-1G",
            Mapping::Vmalloc => "vmalloc",
            Mapping::VmallocHuge => "vmalloc_huge",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessPattern {
    /// Dependent pointer chase, one line per page, random cyclic order.
    Random,
    /// Dependent pointer chase over every cache line, random cyclic order.
    RandomLine,
    PageStride,
    Sequential,
}

impl AccessPattern {
    pub fn label(self) -> &'static str {
        match self {
            AccessPattern::Random => "random",
            AccessPattern::RandomLine => "random_line",
            AccessPattern::PageStride => "page_stride",
            AccessPattern::Sequential => "sequential",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlbSuite {
    pub mappings: Vec<Mapping>,
    pub patterns: Vec<AccessPattern>,
    pub min_bytes: u64,
    pub max_bytes: u64,
    /// Log-spaced working-set points per doubling.
    pub points_per_doubling: u32,
    /// Accesses per sample.
    pub accesses: u32,
    pub samples: u32,
    /// Back 4K mappings with physically scattered frames (defeats Zen's 4K coalescing).
    pub scatter_4k: bool,
}
impl Default for TlbSuite {
    fn default() -> Self {
        TlbSuite {
            mappings: vec![Mapping::Direct4K, Mapping::Direct2M],
            patterns: vec![AccessPattern::Random],
            min_bytes: 4096,
            max_bytes: 256 << 20,
            points_per_doubling: 1,
            accesses: 100_000,
            samples: 5,
            scatter_4k: true,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlbFlushSuite {
    pub samples: u32,
    /// Pages touched after each flush to measure the refill cost.
    pub refill_pages: u32,
}
impl Default for TlbFlushSuite {
    fn default() -> Self {
        TlbFlushSuite {
            samples: 500,
            refill_pages: 512,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MapSuite {
    pub sizes: Vec<u64>,
    pub samples: u32,
}
impl Default for MapSuite {
    fn default() -> Self {
        MapSuite {
            sizes: vec![2 << 20, 64 << 20],
            samples: 20,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_json_round_trips_and_rejects_unknown_keys() {
        let mut plan = GuestPlan::new(3);
        plan.suites.timer = Some(TimerSuite::default());
        let json = serde_json::to_string(&plan).unwrap();
        let back: GuestPlan = serde_json::from_str(&json).unwrap();
        assert_eq!(back, plan);
        let bad = r#"{"cpl":3,"suites":{"timer":{"sampels":5}}}"#;
        assert!(serde_json::from_str::<GuestPlan>(bad).is_err());
    }

    #[test]
    fn page_size_names() {
        let p: PageSize = serde_json::from_str("\"2M\"").unwrap();
        assert_eq!(p, PageSize::Size2M);
        let m: Mapping = serde_json::from_str("\"direct-4K\"").unwrap();
        assert_eq!(m, Mapping::Direct4K);
    }
}
