//! The `tlb` suite: cycles per access over working sets swept from `min_bytes` to
//! `max_bytes`, per access pattern and mapping kind, with PMU counts when available.
use super::buffer::build_buffer;
use super::chain::{build_chain, slots};
use super::{pmu_extra, size_label, sweep_sizes, PAGE};
use crate::arch::cpuid_tlb::cpuid_tlb;
use crate::arch::loops::{chase, stream};
use crate::arch::pmu::Pmu;
use crate::arch::privileged::run_cpl;
use crate::arch::{cpuid, tsc};
use crate::report::{self, Bench};
use crate::timing;
use alloc::format;
use alloc::vec::Vec;
use kmbench_protocol::{AccessPattern, BenchStatus, GuestPlan, Mapping, TlbSuite};

pub fn tlb_suite(cfg: &TlbSuite, plan: &GuestPlan) {
    let features = cpuid::features();
    report::info("tlb/cpuid", cpuid_tlb());
    let pmu = Pmu::setup();
    let ovh = timing::overhead();
    let accesses = cfg.accesses.max(1) as u64;
    let samples = cfg.samples.max(1);
    let seed = plan.seed;
    let sizes = sweep_sizes(
        cfg.min_bytes.max(PAGE),
        cfg.max_bytes,
        cfg.points_per_doubling,
        PAGE,
    );
    let cpl = run_cpl();

    for &mapping in &cfg.mappings {
        let name = |p: AccessPattern, s: u64| {
            format!("tlb/{}/{}/{}", p.label(), mapping.label(), size_label(s))
        };
        if mapping == Mapping::Direct1G && !features.page_1g {
            for &p in &cfg.patterns {
                for &s in &sizes {
                    Bench::new("tlb", name(p, s))
                        .param("pattern", p.label())
                        .param("mapping", mapping.label())
                        .param("bytes", s)
                        .emit_status(
                            BenchStatus::Unsupported,
                            "1 GiB pages not offered: CPUID 0x80000001 EDX bit 26 (pdpe1gb) is 0",
                        );
                }
            }
            continue;
        }
        let buf = match build_buffer(mapping, cfg.max_bytes, cfg.scatter_4k, seed) {
            Ok(b) => b,
            Err((status, msg)) => {
                for &p in &cfg.patterns {
                    for &s in &sizes {
                        Bench::new("tlb", name(p, s))
                            .param("pattern", p.label())
                            .param("mapping", mapping.label())
                            .param("bytes", s)
                            .emit_status(status, &msg);
                    }
                }
                continue;
            }
        };
        log::info!(
            "tlb: {} buffer {} at {:#x} ({})",
            mapping.label(),
            size_label(buf.bytes),
            buf.base,
            buf.how
        );
        for &pattern in &cfg.patterns {
            for &ws in &sizes {
                let b = Bench::new("tlb", name(pattern, ws))
                    .param("pattern", pattern.label())
                    .param("mapping", mapping.label())
                    .param("bytes", ws)
                    .param("pages", ws / PAGE)
                    .param("accesses", accesses)
                    .param("cpl", cpl);
                if ws > buf.bytes {
                    b.emit_status(
                        BenchStatus::Oom,
                        &format!(
                            "working set larger than the {} buffer that fit in guest RAM ({})",
                            mapping.label(),
                            size_label(buf.bytes)
                        ),
                    );
                    continue;
                }
                let n = slots(pattern, ws);
                let mut counts: Vec<Vec<f64>> = Vec::new();
                let mut s: Vec<f64> = Vec::with_capacity(samples as usize);
                // One sample: `accesses` accesses timed (and counted, with a PMU).
                let mut sample = |work: &mut dyn FnMut()| {
                    let c0 = pmu.as_ref().map(|p| p.read());
                    let a = tsc::start();
                    work();
                    let z = tsc::stop();
                    if let (Some(pm), Some(c0)) = (pmu.as_ref(), c0) {
                        counts.push(
                            pm.read()
                                .iter()
                                .zip(c0)
                                .map(|(x, y)| x.wrapping_sub(y) as f64 / accesses as f64)
                                .collect(),
                        );
                    }
                    s.push(((z - a) as f64 - ovh).max(0.0) / accesses as f64);
                };
                if pattern == AccessPattern::Sequential {
                    stream(buf.base, ws, n.max(accesses));
                    for _ in 0..samples {
                        sample(&mut || {
                            core::hint::black_box(stream(buf.base, ws, accesses));
                        });
                    }
                } else {
                    let mut p = build_chain(buf.base, pattern, n, seed);
                    p = chase(p, n.min(1 << 20).max(accesses.min(1 << 16)));
                    for _ in 0..samples {
                        sample(&mut || p = chase(p, accesses));
                    }
                    core::hint::black_box(p);
                }
                let b = pmu_extra(b, pmu.as_ref(), &counts)
                    .extra("buffer", buf.how.as_str())
                    .extra("buffer_bytes", buf.bytes)
                    .extra(
                        "unit_note",
                        if pattern == AccessPattern::Sequential {
                            "cycles per 64-byte line read (streaming, not dependent)"
                        } else {
                            "cycles per dependent load"
                        },
                    )
                    .extra("slots", n);
                b.emit_cycles_f64(&mut s);
            }
        }
        buf.free();
    }
}
