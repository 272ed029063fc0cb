//! The SMP suites: allocator fast paths on 1..N CPUs at once, the cross-CPU free path,
//! and TLB shootdowns by target count and range. They run after every single-CPU suite:
//! starting the workers switches mm to SMP mode (its lock) for the rest of the boot.
//!
//! * `smp/kmalloc/pair/<size>/cpus=<n>`: CPUs 0..n each run `ops` kmalloc+kfree pairs
//!   through their own sheaf (`mm::percpu`), released together by a barrier; a sample is
//!   one CPU's mean cost per pair over `ops` pairs (timer overhead subtracted). `extra`:
//!   per-CPU medians, total throughput.
//! * `smp/alloc_pages/pair/0/cpus=<n>`: the same with order-0 pages through the per-CPU
//!   page lists.
//! * `smp/kmalloc/remote_free/<size>/cpus=2`: CPU 0 allocates and hands each object to
//!   CPU 1 through a single-producer ring; CPU 1 frees it (into its own sheaf, which
//!   overflows into the shared slab that CPU 0 refills from). A sample is the producer's
//!   cost per object over `ops` objects.
//! * `tlb_shootdown/<pages>/<leaf>/targets=<t>`: `smp::shootdown` from CPU 0 to CPUs
//!   1..=t over a range the targets have just touched; a sample is one shootdown, `extra`
//!   the medians of its breakdown.
use crate::arch::tsc;
use crate::smp::shootdown;
use crate::smp::worker::{self, Barrier};
use crate::{mm, report, timing};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use kmbench_protocol::limits::MAX_CPUS;
use kmbench_protocol::{BenchStatus, GuestPlan, ShootdownSuite, SmpSuite};

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    KmallocPair,
    PagePair,
    VmallocPair,
    /// The shared vmalloc (one mm lock for the whole vmap area, as Linux before 6.9).
    GlobalVmallocPair,
    /// The control: a dependent add per op, no memory at all. What it does at n CPUs is
    /// the host's doing (SMT siblings, frequency), not the allocators'.
    Alu,
}

/// What one concurrent run shares between its CPUs.
struct Ctx {
    kind: Kind,
    size: usize,
    ops: u32,
    samples: u32,
    n: usize,
    barrier: Barrier,
    /// Per CPU: a buffer of `samples` f64 the job fills.
    out: [AtomicUsize; MAX_CPUS],
}

fn workers(plan: &GuestPlan, suite: &str, name: &str) -> Option<usize> {
    match worker::start(plan.cpus as usize, plan.mm_debug) {
        Ok(()) => Some(worker::cpus()),
        Err(e) => {
            report::Bench::new(suite, name.into()).emit_status(BenchStatus::Error, &e);
            None
        }
    }
}

/// The job of a concurrent pair benchmark (on every participating CPU).
fn pair_job(cpu: usize, arg: u64) -> u64 {
    // SAFETY: `arg` is the address of the `Ctx` the boot CPU keeps alive until every job
    // of this run returned (`concurrent` waits for all of them).
    let ctx = unsafe { &*(arg as *const Ctx) };
    let buf = ctx.out[cpu].load(Ordering::Acquire) as *mut f64;
    let overhead = timing::overhead();
    let op = || match ctx.kind {
        Kind::KmallocPair => {
            let p = mm::percpu::kmalloc_pcpu(ctx.size);
            // SAFETY: a fresh object of `size` ≥ 1 bytes (slab_test: *p = 22).
            unsafe { core::ptr::write_volatile(p, 22) };
            // SAFETY: `p` came from kmalloc_pcpu(size) just now.
            unsafe { mm::percpu::kfree_pcpu(p, ctx.size) };
        }
        Kind::PagePair => {
            let p = mm::percpu::alloc_page_pcpu();
            // SAFETY: a fresh 4 KiB page.
            unsafe { core::ptr::write_volatile(p, 22) };
            mm::percpu::free_page_pcpu(p);
        }
        Kind::VmallocPair => {
            let p = mm::vzone::vmalloc_pcpu(ctx.size);
            if p.is_null() {
                panic!("vmalloc_pcpu({}) failed on CPU {cpu}", ctx.size);
            }
            mm::vzone::vfree_pcpu(p);
        }
        Kind::GlobalVmallocPair => {
            let p = mm::vmalloc(ctx.size, kmbench_mm::GFP_KERNEL);
            if p.is_null() {
                panic!("vmalloc({}) failed on CPU {cpu}", ctx.size);
            }
            mm::vfree(p);
        }
        Kind::Alu => {
            core::hint::black_box(crate::arch::loops::dependent_adds(1));
        }
    };
    for _ in 0..ctx.ops.min(1000) {
        op();
    }
    ctx.barrier.wait(ctx.n);
    let before = lock_trips(cpu);
    for s in 0..ctx.samples as usize {
        let t0 = tsc::start();
        for _ in 0..ctx.ops {
            op();
        }
        let t1 = tsc::stop();
        let per = ((t1 - t0) as f64 - overhead).max(0.0) / ctx.ops as f64;
        // SAFETY: `buf` has room for `samples` values (allocated by the boot CPU for this
        // CPU only).
        unsafe { buf.add(s).write(per) };
    }
    lock_trips(cpu) - before
}

/// How often this CPU's per-CPU front ends have gone to the shared allocators so far
/// (sheaf and page-list refills and flushes, vmap-zone purges): the cross-check that the
/// measured fast path rarely takes the mm lock or shoots anything down.
fn lock_trips(cpu: usize) -> u64 {
    let (sheaves, pages) = mm::percpu::stats();
    sheaves.refills + sheaves.flushes + pages.refills + pages.flushes + mm::vzone::zone_stats(cpu).0
}

fn concurrent(kind: Kind, size: usize, s: &SmpSuite, n: usize) -> (Vec<Vec<f64>>, Vec<u64>) {
    concurrent_on(kind, size, s, &(0..n).collect::<Vec<_>>())
}

/// The run on exactly the CPUs `on`: each CPU's samples and its trips to the shared
/// allocators during them ([`lock_trips`]), in `on`'s order.
fn concurrent_on(kind: Kind, size: usize, s: &SmpSuite, on: &[usize]) -> (Vec<Vec<f64>>, Vec<u64>) {
    let n = on.len();
    let mut bufs: Vec<Vec<f64>> = (0..n)
        .map(|_| alloc::vec![0.0; s.samples as usize])
        .collect();
    let ctx = Ctx {
        kind,
        size,
        ops: s.ops,
        samples: s.samples,
        n,
        barrier: Barrier::new(),
        out: [const { AtomicUsize::new(0) }; MAX_CPUS],
    };
    for (&c, b) in on.iter().zip(bufs.iter_mut()) {
        ctx.out[c].store(b.as_mut_ptr() as usize, Ordering::Release);
    }
    let trips = worker::run_on(on, pair_job, &ctx as *const Ctx as u64);
    (bufs, trips)
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn emit_curve(name: &str, kind: Kind, size: usize, s: &SmpSuite, cpus: usize, what: &str) {
    // Measured: the curve, then each CPU alone. CPUs differ by themselves (this host
    // places their vCPU threads; their stacks and per-CPU slots sit at other addresses),
    // so scaling compares a CPU at n CPUs with the same CPU alone, warm in both.
    let curve: Vec<(Vec<Vec<f64>>, Vec<u64>)> =
        (1..=cpus).map(|n| concurrent(kind, size, s, n)).collect();
    let alone: Vec<f64> = (0..cpus)
        .map(|c| median(&concurrent_on(kind, size, s, &[c]).0[0]))
        .collect();
    let ops_per_cpu = (s.samples as u64 * s.ops as u64).max(1) as f64;
    let hz = timing::tsc_hz().max(1) as f64;
    for (i, (per_cpu, trips)) in curve.into_iter().enumerate() {
        let n = i + 1;
        let trips_per_kop: Vec<f64> = trips
            .iter()
            .map(|&t| t as f64 * 1000.0 / ops_per_cpu)
            .collect();
        let medians: Vec<f64> = per_cpu.iter().map(|v| median(v)).collect();
        let mops: f64 = medians
            .iter()
            .filter(|&&m| m > 0.0)
            .map(|m| hz / m / 1e6)
            .sum();
        let vs_alone: Vec<f64> = medians
            .iter()
            .zip(&alone)
            .map(|(m, a)| if *a > 0.0 { m / a } else { 0.0 })
            .collect();
        let mut all: Vec<f64> = per_cpu.into_iter().flatten().collect();
        report::Bench::new("smp", alloc::format!("{name}/cpus={n}"))
            .param("cpus", n)
            .param("size", size)
            .extra("per_cpu_median", medians)
            .extra("alone_median_by_cpu", alone.clone())
            .extra("per_cpu_vs_alone", vs_alone)
            .extra("throughput_mops", mops)
            .extra("shared_trips_per_1000_ops", trips_per_kop)
            .extra("path", what)
            .extra("sheaves_bypassed", mm::percpu::bypassed())
            .emit_cycles_f64(&mut all);
    }
}

/// The producer/consumer ring of `remote_free` (one slot per object, SPSC).
struct Ring {
    slots: [AtomicU64; 64],
    head: AtomicU64,
    tail: AtomicU64,
    size: usize,
    total: u64,
}

fn consumer_job(_cpu: usize, arg: u64) -> u64 {
    // SAFETY: `arg` is the boot CPU's `Ring`, alive until this job returns.
    let r = unsafe { &*(arg as *const Ring) };
    let mut tail = 0u64;
    while tail < r.total {
        while r.head.load(Ordering::Acquire) == tail {
            core::hint::spin_loop();
        }
        let p = r.slots[(tail % 64) as usize].load(Ordering::Relaxed) as *mut u8;
        // SAFETY: the producer published a live kmalloc_pcpu(size) object in this slot.
        unsafe { mm::percpu::kfree_pcpu(p, r.size) };
        tail += 1;
        r.tail.store(tail, Ordering::Release);
    }
    0
}

fn remote_free(size: usize, s: &SmpSuite) {
    let ops = s.ops as u64;
    let mut samples: Vec<f64> = Vec::with_capacity(s.samples as usize);
    for _ in 0..s.samples {
        let ring = Ring {
            slots: [const { AtomicU64::new(0) }; 64],
            head: AtomicU64::new(0),
            tail: AtomicU64::new(0),
            size,
            total: ops,
        };
        let arg = &ring as *const Ring as u64;
        // The consumer runs on CPU 1 while the boot CPU produces.
        let seq_ring = &ring;
        let t0 = tsc::start();
        let handle = worker::post_async(1, consumer_job, arg);
        for i in 0..ops {
            while i - seq_ring.tail.load(Ordering::Acquire) >= 64 {
                core::hint::spin_loop();
            }
            let p = mm::percpu::kmalloc_pcpu(size);
            // SAFETY: a fresh object.
            unsafe { core::ptr::write_volatile(p, 22) };
            seq_ring.slots[(i % 64) as usize].store(p as u64, Ordering::Relaxed);
            seq_ring.head.store(i + 1, Ordering::Release);
        }
        worker::wait_async(handle);
        let t1 = tsc::stop();
        samples.push((t1 - t0) as f64 / ops as f64);
    }
    report::Bench::new(
        "smp",
        alloc::format!("smp/kmalloc/remote_free/{size}/cpus=2"),
    )
    .param("cpus", 2)
    .param("size", size)
    .extra(
        "path",
        "CPU 0 kmalloc_pcpu → ring → CPU 1 kfree_pcpu (its sheaf, flushed to the shared slab)",
    )
    .emit_cycles_f64(&mut samples);
}

pub fn smp_suite(s: &SmpSuite, plan: &GuestPlan) {
    let Some(cpus) = workers(plan, "smp", "smp/workers") else {
        return;
    };
    for &size in &s.sizes {
        emit_curve(
            &alloc::format!("smp/kmalloc/pair/{size}"),
            Kind::KmallocPair,
            size as usize,
            s,
            cpus,
            "kmalloc_pcpu + kfree_pcpu: the CPU's sheaf, the mm lock only on refill/flush",
        );
    }
    if s.pages {
        emit_curve(
            "smp/alloc_pages/pair/0",
            Kind::PagePair,
            4096,
            s,
            cpus,
            "alloc_page_pcpu + free_page_pcpu: the CPU's page list, the mm lock only on refill/drain",
        );
    }
    if s.remote_free {
        for &size in &s.sizes {
            if cpus >= 2 {
                remote_free(size as usize, s);
            } else {
                report::Bench::new(
                    "smp",
                    alloc::format!("smp/kmalloc/remote_free/{size}/cpus=2"),
                )
                .param("cpus", 2)
                .emit_status(BenchStatus::Unsupported, "needs vcpus >= 2");
            }
        }
    }
    for &size in &s.vmalloc_sizes {
        if size as usize > kmbench_mm::vmalloc::zone::ZONE_MAX_PAGES * 4096 {
            report::Bench::new("smp", alloc::format!("smp/vmalloc/pair/{size}"))
                .param("size", size)
                .emit_status(
                    BenchStatus::Unsupported,
                    "per-CPU vmap zones take at most 16 KiB",
                );
            continue;
        }
        emit_curve(
            &alloc::format!("smp/vmalloc/pair/{size}"),
            Kind::VmallocPair,
            size as usize,
            s,
            cpus,
            "vmalloc_pcpu + vfree_pcpu: the CPU's vmap zone (its own lock), pages from its page \
             list, PTEs written into the zone's tables, lazy purge = one global shootdown \
             per mm::vzone::lazy_max_pages() freed pages (Linux lazy_max_pages share); the pages are not touched",
        );
    }
    for &size in &s.vmalloc_sizes {
        emit_curve(
            &alloc::format!("smp/test_vmalloc/fix_size_alloc_test/{size}"),
            Kind::GlobalVmallocPair,
            size as usize,
            s,
            cpus,
            "Linux test_vmalloc fix_size_alloc_test with nr_threads = cpus: vmalloc + vfree \
             of the shared vmalloc, all CPUs through the one mm lock (Linux before 6.9's \
             vmap nodes); its lazy purge and flushes shoot down every CPU",
        );
    }
    emit_curve(
        "smp/alu/dependent-add",
        Kind::Alu,
        0,
        s,
        cpus,
        "control: one dependent add per op on every CPU, no memory (the host's SMT/frequency effect)",
    );
    worker::run_on(
        &(0..cpus).collect::<Vec<_>>(),
        |_, _| {
            mm::percpu::drain_this_cpu();
            0
        },
        0,
    );
}

/// One `tlb_shootdown` row: `t` targets, the range `(start, pages, stride)`, IPIs only or
/// with PV TLB flush.
fn shootdown_row(
    s: &ShootdownSuite,
    cpus: usize,
    t: usize,
    range: (u64, u64, u64),
    leaf: &str,
    pv: bool,
) {
    let pages = range.1;
    let stride = range.2;
    let targets: Vec<usize> = (1..=t).collect();
    let mut total = Vec::new();
    let mut parts: [Vec<u64>; 5] = Default::default();
    let mut deferred = 0u64;
    let mut lost = None;
    let full0: u64 = targets.iter().map(|&c| shootdown::full_flushes(c)).sum();
    for i in 0..(s.warmup + s.samples) {
        worker::run_on(&targets, touch_job, &range as *const _ as u64);
        match shootdown::flush_range(&targets, range.0, pages, stride, pv) {
            Ok(b) if i >= s.warmup => {
                total.push(b.total);
                deferred += b.deferred;
                for (k, v) in [b.local, b.send, b.delivery, b.remote, b.ack_wait]
                    .into_iter()
                    .enumerate()
                {
                    parts[k].push(v);
                }
            }
            Ok(_) => {}
            Err(cpu) => {
                lost = Some(cpu);
                break;
            }
        }
    }
    let name = alloc::format!(
        "tlb_shootdown/{pages}/{leaf}/targets={t}{}",
        if pv { "/pv" } else { "" }
    );
    let mut b = report::Bench::new("tlb_shootdown", name)
        .param("targets", t)
        .param("pages", pages)
        .param("leaf", leaf)
        .param("cpus", cpus)
        .param("flush", if pv { "pv" } else { "ipi" });
    if let Some(cpu) = lost {
        return b.emit_status(
            BenchStatus::Error,
            &alloc::format!("CPU {cpu} did not acknowledge the flush IPI within 100 ms"),
        );
    }
    let med = |v: &mut Vec<u64>| {
        v.sort_unstable();
        v.get(v.len() / 2).copied().unwrap_or(0)
    };
    for (k, key) in ["local", "send", "delivery", "remote", "ack_wait"]
        .into_iter()
        .enumerate()
    {
        b = b.extra(key, med(&mut parts[k]));
    }
    b.extra("full_flush", pages > shootdown::FLUSH_CEILING)
        .extra("invalidations_per_target", if pages > shootdown::FLUSH_CEILING { 0 } else { pages })
        .extra("deferred_to_host", deferred)
        .extra("shootdowns_incl_warmup", s.warmup + s.samples)
        .extra(
            "target_full_flushes",
            targets.iter().map(|&c| shootdown::full_flushes(c)).sum::<u64>() - full0,
        )
        .extra(
            "note",
            if pv {
                "PV TLB flush: a target the host has preempted gets the flush from the host (no IPI); running targets still get the IPI"
            } else {
                "CPU 0 flushes locally (gate at CPL3), sends one fixed IPI per target, waits for every ack; targets invlpg each page (or reload CR3 above 33 pages) at CPL0"
            },
        )
        .emit_cycles(&mut total);
}

/// Touch every page of the range (so the targets hold TLB entries for it).
fn touch_job(_cpu: usize, arg: u64) -> u64 {
    // SAFETY: `arg` points at (start, pages, stride) the boot CPU keeps alive.
    let &(start, pages, stride) = unsafe { &*(arg as *const (u64, u64, u64)) };
    let mut x = 0u64;
    for i in 0..pages {
        // SAFETY: the range is a mapped buffer of `pages` × `stride` bytes.
        x = x.wrapping_add(
            unsafe { core::ptr::read_volatile((start + i * stride) as *const u8) } as u64,
        );
    }
    x
}

pub fn shootdown_suite(s: &ShootdownSuite, plan: &GuestPlan) {
    let Some(cpus) = workers(plan, "tlb_shootdown", "tlb_shootdown/workers") else {
        return;
    };
    if cpus < 2 {
        report::Bench::new("tlb_shootdown", "tlb_shootdown".into())
            .param("cpus", cpus)
            .emit_status(BenchStatus::Unsupported, "needs vcpus >= 2");
        return;
    }
    pv_flush_record(cpus);
    let mut ranges: Vec<(u64, &'static str)> = s.pages.iter().map(|&p| (p, "4K")).collect();
    if s.huge {
        ranges.push((1, "2M"));
    }
    for (pages, leaf) in ranges {
        let (stride, bytes) = if leaf == "2M" {
            (2u64 << 20, 2usize << 20)
        } else {
            (4096, pages as usize * 4096)
        };
        let p = if leaf == "2M" {
            mm::vmalloc_huge(bytes, kmbench_mm::GFP_KERNEL)
        } else {
            mm::vmalloc(bytes, kmbench_mm::GFP_KERNEL)
        };
        let got = (!p.is_null()).then(|| mm::translate(p as u64)).flatten();
        let want = if leaf == "2M" {
            kmbench_protocol::PageSize::Size2M
        } else {
            kmbench_protocol::PageSize::Size4K
        };
        if got.map(|g| g.1) != Some(want) {
            report::Bench::new(
                "tlb_shootdown",
                alloc::format!("tlb_shootdown/{pages}/{leaf}"),
            )
            .emit_status(
                BenchStatus::Error,
                &alloc::format!(
                    "the range is not mapped by {leaf} leaves (page-table walk: {:?})",
                    got.map(|g| g.1)
                ),
            );
            if !p.is_null() {
                mm::vfree(p);
            }
            continue;
        }
        let range = (p as u64, pages, stride);
        let pv_modes: &[bool] = if crate::arch::kvm_steal::pv_flush_offered() {
            &[false, true]
        } else {
            &[false]
        };
        for t in 1..cpus {
            for &pv in pv_modes {
                shootdown_row(s, cpus, t, range, leaf, pv);
            }
        }
        mm::vfree(p);
    }
}

/// KVM_FEATURE_PV_TLB_FLUSH: with it, a guest skips the IPI to a *preempted* target vCPU
/// (its steal-time record says so) and sets a flag the host honours at the next entry.
/// Report what the hypervisor offers; the IPI path above is the one measured.
fn pv_flush_record(cpus: usize) {
    const STEAL_TIME: u32 = 1 << 5;
    const PV_TLB_FLUSH: u32 = 1 << 9;
    let f = crate::arch::cpuid::kvm_features();
    let b = report::Bench::new("tlb_shootdown", "tlb_shootdown/pv_flush".into())
        .param("cpus", cpus)
        .extra(
            "kvm_features",
            f.map_or(serde_json::Value::Null, |v| v.into()),
        );
    match f {
        None => b.emit_status(
            BenchStatus::Unsupported,
            "no KVM paravirtual leaves in CPUID (not KVM, or a hypervisor that hides them): \
             every shootdown is an IPI per target",
        ),
        Some(v) if v & PV_TLB_FLUSH == 0 || v & STEAL_TIME == 0 => b.emit_status(
            BenchStatus::Unsupported,
            &alloc::format!(
                "CPUID 0x40000001 EAX = {v:#x}: KVM_FEATURE_PV_TLB_FLUSH (bit 9) {} and \
                 KVM_FEATURE_STEAL_TIME (bit 5) {}; without both, every shootdown is an IPI",
                if v & PV_TLB_FLUSH != 0 {
                    "offered"
                } else {
                    "not offered"
                },
                if v & STEAL_TIME != 0 {
                    "offered"
                } else {
                    "not offered"
                },
            ),
        ),
        // Offered: the `…/pv` rows measure it.
        Some(_) => {}
    }
}
