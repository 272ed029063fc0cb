//! `timer`, `gate` and `alu`: the clock, the privilege gate and the CPU itself.
use crate::arch::privileged::{self, run_cpl};
use crate::arch::tsc;
use crate::report::Bench;
use crate::timing;
use alloc::string::ToString;
use alloc::vec::Vec;
use core::arch::asm;
use kmbench_protocol::{AluSuite, GateSuite, TimerSuite};

/// Median of the cost of an empty `start()`/`stop()` pair; stored for later subtraction.
pub fn measure_timer_overhead() -> u64 {
    let mut s: Vec<u64> = (0..2000)
        .map(|_| {
            let a = tsc::start();
            let b = tsc::stop();
            b - a
        })
        .collect();
    s.sort_unstable();
    let med = s[s.len() / 2];
    timing::set_timer_overhead(med);
    med
}

pub fn timer(cfg: &TimerSuite) {
    let n = cfg.samples.max(1) as usize;
    let mut raw: Vec<u64> = (0..n)
        .map(|_| {
            let a = tsc::rdtsc();
            let b = tsc::rdtsc();
            b.wrapping_sub(a)
        })
        .collect();
    Bench::new("timer", "timer/rdtsc".to_string())
        .param("samples", n)
        .emit_cycles(&mut raw);

    let mut pair: Vec<u64> = (0..n)
        .map(|_| {
            let a = tsc::start();
            let b = tsc::stop();
            b - a
        })
        .collect();
    let ovh = measure_timer_overhead();
    Bench::new("timer", "timer/serialized".to_string())
        .param("samples", n)
        .extra("note", "lfence;rdtsc;lfence twice with nothing between: the overhead subtracted from per-op samples")
        .extra("subtracted_overhead", ovh)
        .emit_cycles(&mut pair);
}

pub fn gate(cfg: &GateSuite) {
    let n = cfg.samples.max(1) as usize;
    let cpl = run_cpl();
    if cpl == 0 {
        // At CPL0 privileged work runs directly, without the gate; the int3 round trip is
        // not part of any operation (and KVM's emulator, which runs all of CPL0 under a
        // software hypervisor, cannot execute int3).
        Bench::new("gate", "gate/roundtrip".to_string())
            .param("cpl", cpl)
            .emit_status(
                kmbench_protocol::BenchStatus::Unsupported,
                "the run is at CPL0: privileged operations need no gate",
            );
    } else {
        for _ in 0..16 {
            privileged::gate(0, 0, 0);
        }
        let mut s = timing::per_op(n as u32, 0, || {
            privileged::gate(0, 0, 0);
        });
        Bench::new("gate", "gate/roundtrip".to_string())
            .param("cpl", cpl)
            .extra(
                "mechanism",
                "int3 through a DPL-3 IDT gate + iretq, no-op handler",
            )
            .emit_cycles(&mut s);
    }

    let local = 0u64;
    let page = core::ptr::addr_of!(local) as u64 & !0xfff;
    let mut s = timing::per_op(n as u32, 0, || privileged::invlpg(page));
    Bench::new("gate", "gate/invlpg".to_string())
        .param("cpl", cpl)
        .extra(
            "mechanism",
            if cpl == 0 {
                "invlpg instruction"
            } else {
                "gate + invlpg"
            },
        )
        .emit_cycles(&mut s);

    let mut s = timing::per_op(n as u32, 0, privileged::flush_tlb_all);
    Bench::new("gate", "gate/cr3-reload".to_string())
        .param("cpl", cpl)
        .extra(
            "mechanism",
            if cpl == 0 {
                "mov cr3 (reload)"
            } else {
                "gate + mov cr3 (reload)"
            },
        )
        .emit_cycles(&mut s);
}

/// A dependent chain: each `add` needs the previous result, so one iteration costs the
/// add's latency plus loop overhead (~1-1.5 cycles on modern cores).
#[inline(never)]
pub fn dependent_adds(iterations: u64) -> u64 {
    let mut x: u64 = 1;
    // SAFETY: register-only arithmetic loop.
    unsafe {
        asm!("2:", "add {x}, {x}", "add {x}, 1", "dec {n}", "jnz 2b",
             x = inout(reg) x, n = inout(reg) iterations => _, options(nomem, nostack));
    }
    x
}

pub fn alu(cfg: &AluSuite) {
    let iters = cfg.iterations.max(1) as u64;
    let ovh = timing::timer_overhead() as f64;
    let mut s: Vec<f64> = (0..cfg.samples.max(1))
        .map(|_| {
            let a = tsc::start();
            core::hint::black_box(dependent_adds(iters));
            let b = tsc::stop();
            ((b - a) as f64 - ovh).max(0.0) / iters as f64
        })
        .collect();
    Bench::new("alu", "alu/dependent-add".to_string())
        .param("iterations", iters)
        .param("cpl", run_cpl())
        .extra(
            "unit_note",
            "cycles per iteration of a 2-add dependent chain + loop",
        )
        .emit_cycles_f64(&mut s);
}
