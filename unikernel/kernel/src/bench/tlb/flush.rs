//! The `tlbflush` suite: the cost of one INVLPG / CR3 reload / INVPCID (through the gate at
//! CPL3), and the refill cost a flush leaves behind for a chase over `refill_pages` pages.
use super::buffer::build_buffer;
use super::chain::build_chain;
use super::{is_pvm, PAGE};
use crate::arch::loops::chase;
use crate::arch::privileged::{self, run_cpl};
use crate::arch::{cpuid, tsc};
use crate::report::Bench;
use crate::timing;
use alloc::format;
use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;
use kmbench_protocol::{AccessPattern, BenchStatus, Mapping, TlbFlushSuite};

/// The median exactly as the records' summaries compute it.
fn median(v: &[f64]) -> f64 {
    kmbench_protocol::Summary::from_f64(&mut v.to_vec()).map_or(0.0, |s| s.median)
}

pub fn tlbflush_suite(cfg: &TlbFlushSuite) {
    let features = cpuid::features();
    let cpl = run_cpl();
    let via = if cpl == 0 {
        "the instruction at CPL0"
    } else {
        "CPL3: includes the int3 gate round trip (see gate/roundtrip)"
    };
    let pages = (cfg.refill_pages.max(1) as u64).min(1 << 18);
    let buf = match build_buffer(Mapping::Direct4K, pages * PAGE, true, 0x7f1b) {
        Ok(b) => b,
        Err((status, msg)) => {
            for k in ["invlpg", "cr3", "invpcid"] {
                Bench::new("tlbflush", format!("tlbflush/{k}")).emit_status(status, &msg);
            }
            return;
        }
    };
    let pages = buf.bytes / PAGE;
    let page_addrs: Vec<u64> = (0..pages).map(|i| buf.base + i * PAGE).collect();
    let start = build_chain(buf.base, AccessPattern::Random, pages, 0x7f1b);
    let mut p = chase(start, pages * 4);
    let ovh = timing::overhead();

    // (name, op cost fn, refill flush fn, op description, refill flush description)
    type Op<'a> = (
        &'static str,
        &'a dyn Fn(),
        &'a dyn Fn(),
        &'static str,
        &'static str,
    );
    let target = buf.base;
    let op_invlpg = || privileged::invlpg(target);
    let fl_invlpg = || privileged::invlpg_batch(&page_addrs);
    let op_cr3 = privileged::flush_tlb_all;
    let op_invpcid = || privileged::invpcid(0, 0, target);
    let fl_invpcid = || privileged::invpcid(3, 0, 0);
    let mut ops: Vec<Op> = vec![
        (
            "invlpg",
            &op_invlpg,
            &fl_invlpg,
            "INVLPG of one mapped page",
            "INVLPG of every page of the chase (one gate call at CPL3)",
        ),
        (
            "cr3",
            &op_cr3,
            &op_cr3,
            "CR3 reload with its own value",
            "CR3 reload",
        ),
    ];
    let invpcid_skip = if !features.invpcid {
        Some("INVPCID not offered: CPUID 7.0 EBX bit 10 is 0")
    } else if is_pvm() {
        Some("CPUID offers INVPCID, but under kvm_pvm CPL0 instructions are emulated and its emulator does not implement INVPCID (KVM internal error, emulation failure): skipped")
    } else {
        None
    };
    if invpcid_skip.is_none() {
        ops.push((
            "invpcid",
            &op_invpcid,
            &fl_invpcid,
            "INVPCID type 0 (one address, PCID 0)",
            "INVPCID type 3 (all contexts, non-global)",
        ));
    } else if let Some(why) = invpcid_skip {
        for n in ["tlbflush/invpcid", "tlbflush/invpcid/refill"] {
            Bench::new("tlbflush", n.to_string())
                .param("cpl", cpl)
                .emit_status(BenchStatus::Unsupported, why);
        }
    }
    for (name, op, flush, what, flush_what) in ops {
        let (mut s, how) = timing::auto(cfg.samples, 8, op);
        Bench::new("tlbflush", format!("tlbflush/{name}"))
            .param("cpl", cpl)
            .extra("timing", how.describe())
            .extra("operation", what)
            .extra("mechanism", via)
            .emit_cycles_f64(&mut s);

        // Refill: the chase right after the flush against a warm chase (the one just
        // before, with no exit in between). Two measured distributions; the refill is
        // their difference of medians, so it cannot go below what the medians say.
        // At CPL3 a third chase right after a no-op gate call shows what the exit alone
        // does (under kvm_pvm every exit leaves the TLB cold).
        let n = cfg.samples.max(1) as usize;
        let (mut warm, mut flushed, mut exited) =
            (Vec::with_capacity(n), Vec::with_capacity(n), Vec::new());
        let timed = |p: &mut u64| {
            let a = tsc::start();
            *p = chase(*p, pages);
            let z = tsc::stop();
            ((z - a) as f64 - ovh) / pages as f64
        };
        for _ in 0..n {
            p = chase(p, pages);
            warm.push(timed(&mut p));
            if cpl != 0 {
                privileged::gate_nop();
                exited.push(timed(&mut p));
                p = chase(p, pages);
            }
            flush();
            flushed.push(timed(&mut p));
        }
        let (mw, mf) = (median(&warm), median(&flushed));
        let mut refill: Vec<f64> = flushed.iter().map(|f| f - mw).collect();
        let b = Bench::new("tlbflush", format!("tlbflush/{name}/refill"))
            .param("cpl", cpl)
            .param("pages", pages)
            .extra("flush", flush_what)
            .extra("unit_note", "extra cycles per page of a random one-line-per-page chase over a 4K-mapped (scattered) buffer: each chase right after the flush minus the median warm chase (taken just before, no exit in between); the median is the difference of the two medians")
            .extra("chase_after_flush_median", mf)
            .extra("chase_warm_median", mw)
            .extra("refill_median", mf - mw);
        let b = if exited.is_empty() {
            b
        } else {
            let me = median(&exited);
            b.extra("chase_after_noop_exit_median", me).extra(
                "exit_share_of_refill",
                if mf > mw { (me - mw) / (mf - mw) } else { 0.0 },
            )
        };
        b.emit_cycles_f64(&mut refill);
        if name == "cr3" {
            // The exit effect on the same chase: warm, and right after a no-op exit.
            let chase = |kind: &str| {
                Bench::new("tlbflush", format!("tlbflush/chase/{kind}"))
                    .param("cpl", cpl)
                    .param("pages", pages)
                    .extra("unit_note", "cycles per page of the same random chase")
            };
            chase("warm")
                .extra("before", "the same chase, nothing in between")
                .emit_cycles_f64(&mut warm);
            if !exited.is_empty() {
                chase("after_exit")
                    .extra("before", "a no-op int3 gate call (an exit under kvm_pvm)")
                    .emit_cycles_f64(&mut exited);
            }
        }
    }
    core::hint::black_box(p);
    drop(page_addrs);
    buf.free();
}
