//! The noise guard: two fixed reference workloads timed between suites.
//!
//! A shared CI host changes speed under the guest (a busy SMT sibling, frequency or
//! steal): on this project's machine it flips between a fast and a slow state for
//! seconds at a time, and every benchmark moves with it. A canary is a workload that
//! never changes, so its reading says how fast the host was at that moment:
//!
//! * **compute**: a dependent add chain (`basic::dependent_adds`), cycles per iteration;
//!   slowed by core frequency and by a sibling competing for the core's ALUs;
//! * **memory**: a random pointer chase over a fixed L2-sized buffer (256 KiB: in L2 on
//!   every current x86 core, beyond L1), warmed by one full pass before each reading,
//!   cycles per load; slowed by an SMT sibling competing for the core's caches.
//!
//! A busy SMT sibling slows the two differently, hence both. Each reading is one
//! [`CanaryRecord`]: the median of `samples` timed runs of each. The host (`noise.rs` in
//! the harness) compares readings across the run and flags benchmarks measured between
//! readings that left their band. Readings run at the privilege level of the benchmarks.
use crate::arch::tsc;
use crate::report;
use alloc::string::String;
use alloc::vec::Vec;
use kmbench_protocol::{CanaryPlan, CanaryRecord, Record};

/// The canaries of one boot: the plan, the chase buffer and the reading count.
pub struct Canary {
    plan: CanaryPlan,
    /// `chase[i]` is the index of the next 64-byte line to load (one random cycle).
    chase: Vec<u64>,
    seq: u32,
}

/// u64 words per 64-byte cache line.
const LINE_WORDS: usize = 8;

impl Canary {
    /// Build the chase buffer (a random cyclic permutation of its lines, Sattolo's
    /// algorithm, from a fixed seed so every boot chases the same cycle) and take the
    /// first reading. `None` when the plan has no canaries.
    pub fn start(plan: Option<&CanaryPlan>) -> Option<Canary> {
        let plan = plan?.clone();
        let lines = (plan.memory_bytes as usize / 64).max(2);
        let mut chase = alloc::vec![0u64; lines * LINE_WORDS];
        let mut order: Vec<u32> = (0..lines as u32).collect();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in (1..lines).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let j = (x % i as u64) as usize;
            order.swap(i, j);
        }
        for w in 0..lines {
            let from = order[w] as usize;
            let to = order[(w + 1) % lines] as u64;
            chase[from * LINE_WORDS] = to * LINE_WORDS as u64;
        }
        let mut c = Canary {
            plan,
            chase,
            seq: 0,
        };
        c.reading(None);
        Some(c)
    }

    /// Take a reading after the suite `after` and emit it.
    pub fn after(&mut self, after: &str) {
        self.reading(Some(String::from(after)));
    }

    fn reading(&mut self, after: Option<String>) {
        let at = tsc::rdtsc();
        let samples = self.plan.samples.max(1) as usize;
        let iters = self.plan.compute_iterations.max(1) as u64;
        let loads = self.plan.memory_accesses.max(1) as u64;
        // One untimed run of each, the chase over the whole cycle: the exit that emitted
        // the previous record and the suite before left TLB and caches in any state, and
        // the reading must measure the host, not what the last suite left in the cache.
        core::hint::black_box(super::basic::dependent_adds(iters));
        let lines = (self.chase.len() / LINE_WORDS) as u64;
        core::hint::black_box(self.chase_from(0, lines));
        let mut compute: Vec<f64> = (0..samples)
            .map(|_| {
                let a = tsc::start();
                core::hint::black_box(super::basic::dependent_adds(iters));
                let b = tsc::stop();
                b.saturating_sub(a) as f64 / iters as f64
            })
            .collect();
        let mut pos = 0;
        let mut memory: Vec<f64> = (0..samples)
            .map(|_| {
                let a = tsc::start();
                pos = core::hint::black_box(self.chase_from(pos, loads));
                let b = tsc::stop();
                b.saturating_sub(a) as f64 / loads as f64
            })
            .collect();
        report::emit(&Record::Canary(CanaryRecord {
            seq: self.seq,
            after,
            tsc: at,
            compute: median(&mut compute),
            memory: median(&mut memory),
        }));
        self.seq += 1;
    }

    /// `loads` dependent loads along the cycle from word index `pos`; returns the end.
    #[inline(never)]
    fn chase_from(&self, mut pos: u64, loads: u64) -> u64 {
        let base = self.chase.as_ptr();
        for _ in 0..loads {
            // SAFETY: every stored index is `line * LINE_WORDS` for a line of the buffer,
            // so `pos` always stays inside `chase`; the read is of an initialised u64.
            pos = unsafe { core::ptr::read_volatile(base.add(pos as usize)) };
        }
        pos
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_unstable_by(|a, b| a.partial_cmp(b).unwrap_or(core::cmp::Ordering::Equal));
    v[v.len() / 2]
}
