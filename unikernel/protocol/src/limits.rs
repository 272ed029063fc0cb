//! The documented range of every number in a run plan, and the duplicate-free lists.
//!
//! The host checks a plan with [`GuestPlan::check`] before it boots anything (a config
//! error, exit 2, naming the table and key); the guest checks it again after parsing, so a
//! plan that did not come from the harness cannot drive it into overflow or a huge
//! allocation either. The ranges are listed in the README ("Ranges").
use alloc::format;
use alloc::string::String;
use core::fmt;

use crate::plan::*;

/// An inclusive range of accepted values for one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub min: u64,
    pub max: u64,
}

impl Range {
    pub const fn new(min: u64, max: u64) -> Range {
        Range { min, max }
    }
    pub fn contains(self, v: u64) -> bool {
        (self.min..=self.max).contains(&v)
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..={}", self.min, self.max)
    }
}

/// `samples` of every suite: each sample is kept in guest memory (8 bytes).
pub const SAMPLES: Range = Range::new(1, 1_000_000);
/// `warmup` of every suite.
pub const WARMUP: Range = Range::new(0, 1_000_000);
/// An allocation size in bytes (kmalloc, kzalloc, vmalloc, vmalloc_huge, talc, map,
/// stack_vs_heap buffer): never 0 (a zero-size Layout is undefined behaviour), at most 1 GiB.
/// A size the guest's memory cannot hold is an `oom` row, not an error.
pub const ALLOC_BYTES: Range = Range::new(1, 1 << 30);
/// Objects per `kmalloc/alloc_n` round.
pub const KMALLOC_N: Range = Range::new(1, 1_000_000);
/// Blocks per `alloc_pages/alloc_n` round.
pub const PAGES_N: Range = Range::new(1, 100_000);
/// Buddy orders (`kmbench_mm::MAX_ORDER`).
pub const ORDER: Range = Range::new(0, 18);
/// `kmalloc/mixed` operations (0 = skip).
pub const MIXED_OPS: Range = Range::new(0, 100_000_000);
/// Loops per `test_vmalloc` case.
pub const TEST_LOOPS: Range = Range::new(0, 10_000_000);
/// `test_vmalloc` runs per case (Linux's `test_repeat_count`).
pub const TEST_REPEAT: Range = Range::new(1, 1_000);
/// `test_vmalloc` `nr_pages` for fix_size_alloc_test (0 = 1 page; at most 1 GiB).
pub const TEST_NR_PAGES: Range = Range::new(0, 1 << 18);
/// Purge cycles of `vmalloc/lazy_amortized` (each keeps up to 8,193 samples of 8 bytes).
pub const LAZY_PURGES: Range = Range::new(1, 64);
/// `alu` iterations per sample.
/// Operations per sample in the SMP suites.
pub const SMP_OPS: Range = Range::new(1, 100_000);
/// kmalloc sizes of the SMP suite: the slab classes (up to 8 KiB).
pub const SMP_KMALLOC_BYTES: Range = Range::new(1, 8192);
/// vmalloc sizes of the SMP suite.
pub const SMP_VMALLOC_BYTES: Range = Range::new(1, 1 << 20);
/// Range sizes of a shootdown, in 4K pages (one 2 MiB region at most).
pub const SHOOTDOWN_PAGES: Range = Range::new(1, 512);
pub const ALU_ITERATIONS: Range = Range::new(1, 100_000_000);
/// `tlb` working-set bounds in bytes.
pub const TLB_BYTES: Range = Range::new(4096, 1 << 36);
/// `tlb` points per doubling of the working set.
pub const POINTS_PER_DOUBLING: Range = Range::new(1, 64);
/// `tlb` accesses per sample.
pub const TLB_ACCESSES: Range = Range::new(1, 100_000_000);
/// `tlbflush` pages touched after each flush.
pub const REFILL_PAGES: Range = Range::new(0, 1_000_000);
/// `map` sizes: at least one 4 KiB page.
pub const MAP_BYTES: Range = Range::new(4096, 1 << 30);
/// Entries in one list (sizes, orders, …).
pub const LIST_LEN: usize = 64;
/// `[run] vcpus` / `--vcpus` and the plan's `cpus`: the boot CPU plus up to 63 APs (the
/// guest keeps a static per-CPU area and AP stack for each, `MAX_CPUS`).
pub const CPUS: Range = Range::new(1, 64);
/// The largest CPU count a guest supports ([`CPUS`]`.max`).
pub const MAX_CPUS: usize = 64;

/// What is wrong with a plan: names the table (`suites.kmalloc`) and the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlanError {
    OutOfRange {
        table: &'static str,
        key: &'static str,
        value: u64,
        range: Range,
    },
    Duplicate {
        table: &'static str,
        key: &'static str,
        value: String,
    },
    TooLong {
        table: &'static str,
        key: &'static str,
        len: usize,
    },
    /// Two keys that contradict each other.
    Inconsistent {
        table: &'static str,
        message: String,
    },
}

impl PlanError {
    /// The table the error is in, without brackets (`suites.kmalloc`).
    pub fn table(&self) -> &'static str {
        match self {
            PlanError::OutOfRange { table, .. }
            | PlanError::Duplicate { table, .. }
            | PlanError::TooLong { table, .. }
            | PlanError::Inconsistent { table, .. } => table,
        }
    }
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::OutOfRange {
                table,
                key,
                value,
                range,
            } => write!(
                f,
                "[{table}] {key} = {value} is out of range: expected {range}"
            ),
            PlanError::Duplicate { table, key, value } => write!(
                f,
                "[{table}] {key} lists {value} more than once: each entry is its own benchmark, \
                 use --boots or [run] boots for repetitions"
            ),
            PlanError::TooLong { table, key, len } => write!(
                f,
                "[{table}] {key} has {len} entries: expected at most {LIST_LEN}"
            ),
            PlanError::Inconsistent { table, message } => write!(f, "[{table}] {message}"),
        }
    }
}

fn num(table: &'static str, key: &'static str, value: u64, range: Range) -> Result<(), PlanError> {
    if range.contains(value) {
        Ok(())
    } else {
        Err(PlanError::OutOfRange {
            table,
            key,
            value,
            range,
        })
    }
}

/// Every entry in range, no entry twice, at most [`LIST_LEN`] entries.
fn list<T: PartialEq + fmt::Debug>(
    table: &'static str,
    key: &'static str,
    items: &[T],
    value: impl Fn(&T) -> Option<u64>,
    range: Range,
) -> Result<(), PlanError> {
    if items.len() > LIST_LEN {
        return Err(PlanError::TooLong {
            table,
            key,
            len: items.len(),
        });
    }
    for (i, item) in items.iter().enumerate() {
        if let Some(v) = value(item) {
            num(table, key, v, range)?;
        }
        if items[..i].contains(item) {
            let value = match value(item) {
                Some(v) => format!("{v}"),
                None => format!("{item:?}"),
            };
            return Err(PlanError::Duplicate { table, key, value });
        }
    }
    Ok(())
}

const ANY: Range = Range::new(0, u64::MAX);

impl Suites {
    /// Check every number against its documented range and every list for duplicates.
    pub fn check(&self) -> Result<(), PlanError> {
        if let Some(s) = &self.timer {
            num("suites.timer", "samples", s.samples.into(), SAMPLES)?;
        }
        if let Some(s) = &self.gate {
            num("suites.gate", "samples", s.samples.into(), SAMPLES)?;
        }
        if let Some(s) = &self.ipi {
            num("suites.ipi", "samples", s.samples.into(), SAMPLES)?;
            num("suites.ipi", "warmup", s.warmup.into(), WARMUP)?;
        }
        if let Some(s) = &self.smp {
            let t = "suites.smp";
            num(t, "samples", s.samples.into(), SAMPLES)?;
            num(t, "ops", s.ops.into(), SMP_OPS)?;
            list(t, "sizes", &s.sizes, |v| Some(*v), SMP_KMALLOC_BYTES)?;
            list(
                t,
                "vmalloc_sizes",
                &s.vmalloc_sizes,
                |v| Some(*v),
                SMP_VMALLOC_BYTES,
            )?;
        }
        if let Some(s) = &self.tlb_shootdown {
            let t = "suites.tlb_shootdown";
            num(t, "samples", s.samples.into(), SAMPLES)?;
            num(t, "warmup", s.warmup.into(), WARMUP)?;
            list(t, "pages", &s.pages, |v| Some(*v), SHOOTDOWN_PAGES)?;
        }
        if let Some(s) = &self.alu {
            num("suites.alu", "samples", s.samples.into(), SAMPLES)?;
            num(
                "suites.alu",
                "iterations",
                s.iterations.into(),
                ALU_ITERATIONS,
            )?;
        }
        if let Some(s) = &self.kmalloc {
            let t = "suites.kmalloc";
            list(t, "sizes", &s.sizes, |v| Some(*v), ALLOC_BYTES)?;
            list(t, "n_sizes", &s.n_sizes, |v| Some(*v), ALLOC_BYTES)?;
            list(
                t,
                "kzalloc_sizes",
                &s.kzalloc_sizes,
                |v| Some(*v),
                ALLOC_BYTES,
            )?;
            num(t, "n", s.n.into(), KMALLOC_N)?;
            num(t, "samples", s.samples.into(), SAMPLES)?;
            num(t, "warmup", s.warmup.into(), WARMUP)?;
            num(t, "mixed_ops", s.mixed_ops.into(), MIXED_OPS)?;
        }
        if let Some(s) = &self.pages {
            let t = "suites.pages";
            list(t, "orders", &s.orders, |v| Some(u64::from(*v)), ORDER)?;
            num(t, "n", s.n.into(), PAGES_N)?;
            num(t, "samples", s.samples.into(), SAMPLES)?;
            num(t, "warmup", s.warmup.into(), WARMUP)?;
        }
        if let Some(s) = &self.vmalloc {
            let t = "suites.vmalloc";
            list(t, "sizes", &s.sizes, |v| Some(*v), ALLOC_BYTES)?;
            list(t, "flush_modes", &s.flush_modes, |_| None, ANY)?;
            list(t, "huge_sizes", &s.huge_sizes, |v| Some(*v), ALLOC_BYTES)?;
            num(t, "samples", s.samples.into(), SAMPLES)?;
            num(t, "warmup", s.warmup.into(), WARMUP)?;
            num(t, "test_loops", s.test_loops.into(), TEST_LOOPS)?;
            num(t, "test_repeat", s.test_repeat.into(), TEST_REPEAT)?;
            num(t, "test_nr_pages", s.test_nr_pages.into(), TEST_NR_PAGES)?;
            let kept = u64::from(s.test_loops) * u64::from(s.test_repeat);
            if kept > TEST_LOOPS.max {
                return Err(PlanError::Inconsistent {
                    table: t,
                    message: format!(
                        "test_loops × test_repeat = {kept}: every iteration is one kept sample, at most {}",
                        TEST_LOOPS.max
                    ),
                });
            }
            list(
                t,
                "exit_effect_sizes",
                &s.exit_effect_sizes,
                |v| Some(*v),
                ALLOC_BYTES,
            )?;
            list(
                t,
                "lazy_amortized_sizes",
                &s.lazy_amortized_sizes,
                |v| Some(*v),
                ALLOC_BYTES,
            )?;
            num(t, "lazy_purges", s.lazy_purges.into(), LAZY_PURGES)?;
        }
        if let Some(s) = &self.stack_vs_heap {
            num("suites.stack_vs_heap", "buffer", s.buffer, ALLOC_BYTES)?;
            num("suites.stack_vs_heap", "samples", s.samples.into(), SAMPLES)?;
        }
        if let Some(s) = &self.talc_vs_slab {
            let t = "suites.talc_vs_slab";
            list(t, "sizes", &s.sizes, |v| Some(*v), ALLOC_BYTES)?;
            num(t, "samples", s.samples.into(), SAMPLES)?;
        }
        if let Some(s) = &self.tlb {
            let t = "suites.tlb";
            list(t, "mappings", &s.mappings, |_| None, ANY)?;
            list(t, "patterns", &s.patterns, |_| None, ANY)?;
            num(t, "min_bytes", s.min_bytes, TLB_BYTES)?;
            num(t, "max_bytes", s.max_bytes, TLB_BYTES)?;
            if s.min_bytes > s.max_bytes {
                return Err(PlanError::Inconsistent {
                    table: t,
                    message: format!(
                        "min_bytes = {} is larger than max_bytes = {}",
                        s.min_bytes, s.max_bytes
                    ),
                });
            }
            num(
                t,
                "points_per_doubling",
                s.points_per_doubling.into(),
                POINTS_PER_DOUBLING,
            )?;
            num(t, "accesses", s.accesses.into(), TLB_ACCESSES)?;
            num(t, "samples", s.samples.into(), SAMPLES)?;
        }
        if let Some(s) = &self.tlbflush {
            num("suites.tlbflush", "samples", s.samples.into(), SAMPLES)?;
            num(
                "suites.tlbflush",
                "refill_pages",
                s.refill_pages.into(),
                REFILL_PAGES,
            )?;
        }
        if let Some(s) = &self.map {
            list("suites.map", "sizes", &s.sizes, |v| Some(*v), MAP_BYTES)?;
            num("suites.map", "samples", s.samples.into(), SAMPLES)?;
        }
        Ok(())
    }
}

impl GuestPlan {
    /// The plan's numbers are all in their documented ranges and no list repeats an entry.
    pub fn check(&self) -> Result<(), PlanError> {
        num("run", "vcpus", self.cpus.into(), CPUS)?;
        if self.fault_cpu != 0 {
            num(
                "guest",
                "fault_cpu",
                self.fault_cpu.into(),
                Range::new(0, self.cpus as u64 - 1),
            )?;
            use crate::FaultInjection as F;
            if !matches!(
                self.fault,
                Some(F::Panic | F::PageFault | F::InvalidOpcode | F::Hang | F::StackOverflow)
            ) {
                return Err(PlanError::Inconsistent {
                    table: "guest",
                    message: alloc::format!(
                        "fault_cpu = {} needs fault = \"panic\", \"page_fault\", \"invalid_opcode\", \"hang\" or \"stack_overflow\" (on its guarded worker stack); an AP runs no suites and no other mm path",
                        self.fault_cpu
                    ),
                });
            }
        }
        if self.cpl != 0 && self.cpl != 3 {
            return Err(PlanError::OutOfRange {
                table: "guest",
                key: "cpl",
                value: self.cpl.into(),
                range: Range::new(0, 3),
            });
        }
        self.suites.check()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    fn all_suites() -> Suites {
        Suites {
            timer: Some(Default::default()),
            gate: Some(Default::default()),
            alu: Some(Default::default()),
            kmalloc: Some(Default::default()),
            pages: Some(Default::default()),
            vmalloc: Some(Default::default()),
            stack_vs_heap: Some(Default::default()),
            talc_vs_slab: Some(Default::default()),
            tlb: Some(Default::default()),
            tlbflush: Some(Default::default()),
            map: Some(Default::default()),
            ipi: Some(Default::default()),
            smp: Some(Default::default()),
            tlb_shootdown: Some(Default::default()),
        }
    }

    #[test]
    fn defaults_are_in_range() {
        all_suites().check().unwrap();
    }

    #[test]
    fn edges_of_each_range() {
        let mut s = all_suites();
        s.kmalloc.as_mut().unwrap().samples = u32::MAX;
        let e = s.check().unwrap_err();
        assert_eq!(e.table(), "suites.kmalloc");
        assert!(e.to_string().contains("samples = 4294967295"), "{e}");
        let mut s = all_suites();
        s.kmalloc.as_mut().unwrap().n = u32::MAX;
        assert!(matches!(
            s.check(),
            Err(PlanError::OutOfRange { key: "n", .. })
        ));
        let mut s = all_suites();
        s.timer.as_mut().unwrap().samples = 0;
        assert!(matches!(
            s.check(),
            Err(PlanError::OutOfRange { key: "samples", .. })
        ));
        let mut s = all_suites();
        s.talc_vs_slab.as_mut().unwrap().sizes = vec![0];
        assert!(matches!(
            s.check(),
            Err(PlanError::OutOfRange {
                key: "sizes",
                value: 0,
                ..
            })
        ));
        let mut s = all_suites();
        s.stack_vs_heap.as_mut().unwrap().buffer = u64::MAX;
        assert!(s.check().is_err());
        let mut s = all_suites();
        s.pages.as_mut().unwrap().orders = vec![19];
        assert!(s.check().is_err());
        s.pages.as_mut().unwrap().orders = vec![18];
        s.check().unwrap();
        let mut s = all_suites();
        s.tlb.as_mut().unwrap().min_bytes = 1 << 30;
        s.tlb.as_mut().unwrap().max_bytes = 1 << 20;
        assert!(matches!(s.check(), Err(PlanError::Inconsistent { .. })));
        let mut s = all_suites();
        s.alu.as_mut().unwrap().samples = SAMPLES.max as u32;
        s.check().unwrap();
        s.alu.as_mut().unwrap().samples = SAMPLES.max as u32 + 1;
        assert!(s.check().is_err());
    }

    #[test]
    fn duplicates_and_long_lists_are_refused() {
        let mut s = all_suites();
        s.kmalloc.as_mut().unwrap().sizes = vec![64, 64, 64];
        let e = s.check().unwrap_err();
        assert_eq!(
            e,
            PlanError::Duplicate {
                table: "suites.kmalloc",
                key: "sizes",
                value: "64".to_string()
            }
        );
        let mut s = all_suites();
        s.vmalloc.as_mut().unwrap().flush_modes = vec![FlushMode::Full, FlushMode::Full];
        assert!(matches!(
            s.check(),
            Err(PlanError::Duplicate {
                key: "flush_modes",
                ..
            })
        ));
        let mut s = all_suites();
        s.tlb.as_mut().unwrap().mappings =
            vec![Mapping::Vmalloc, Mapping::Direct4K, Mapping::Vmalloc];
        assert!(matches!(
            s.check(),
            Err(PlanError::Duplicate {
                key: "mappings",
                ..
            })
        ));
        let mut s = all_suites();
        s.pages.as_mut().unwrap().orders = vec![0, 1, 0];
        assert!(matches!(
            s.check(),
            Err(PlanError::Duplicate { key: "orders", .. })
        ));
        let mut s = all_suites();
        s.map.as_mut().unwrap().sizes = (1..=65).map(|i| i << 20).collect();
        assert!(matches!(s.check(), Err(PlanError::TooLong { len: 65, .. })));
    }
}
