//! Serve mode (`GuestPlan::serve`): the guest stays up and answers measurement requests,
//! so a host-side benchmark framework (criterion's `iter_custom`, see
//! `harness/benches/guest.rs`) can ask for "N iterations of op X" as often as it likes
//! from one boot.
//!
//! Requests arrive as JSON lines on COM2 ([`ports::CONTROL`]), polled (interrupts stay
//! off): LSR bit 0 says a byte is waiting in RBR. Each answer is a
//! [`Record::Measurement`] on the results channel. Port reads happen only between
//! measurements, never inside a timed region.
use crate::arch::privileged;
use crate::arch::{port, tsc};
use crate::bench::basic;
use crate::{mm, report, timing};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::hint::black_box;
use kmbench_mm::{Gfp, GFP_KERNEL, MAX_ORDER};
use kmbench_protocol::{
    ports, request_limits, MeasurementRecord, Record, Request, ServeOp, SERVE_OPS,
};

const RBR: u16 = ports::CONTROL;
const FCR: u16 = ports::CONTROL + 2;
const LSR: u16 = ports::CONTROL + 5;
const LSR_DATA_READY: u8 = 1;
/// Longest request line accepted; longer ones are answered with an error.
const MAX_LINE: usize = 1024;

/// Serve requests until `quit`; the caller then ends the run as usual (End record, exit).
pub fn run() {
    // FIFO on (16 bytes): QEMU hands the guest more than one byte per chardev read.
    port::outb(FCR, 0x07);
    let ovh = basic::measure_timer_overhead();
    report::info(
        "serve/ready",
        serde_json::json!({
            "ops": SERVE_OPS.to_vec(),
            "timer_overhead": ovh,
            "tsc_hz": timing::tsc_hz(),
            "cpl": privileged::run_cpl(),
        }),
    );
    log::info!(
        "serve: ready on COM2 ({:#x}); timer overhead {} cycles",
        ports::CONTROL,
        ovh
    );
    let mut line: Vec<u8> = Vec::with_capacity(256);
    let mut served: u64 = 0;
    loop {
        let overlong = read_line(&mut line);
        if overlong {
            answer_error(0, "", 0, 0, format!("request longer than {MAX_LINE} bytes"));
            continue;
        }
        let text = match core::str::from_utf8(&line) {
            Ok(t) => t.trim(),
            Err(_) => {
                answer_error(0, "", 0, 0, "request is not UTF-8".to_string());
                continue;
            }
        };
        if text.is_empty() {
            continue;
        }
        let req: Request = match serde_json::from_str(text) {
            Ok(r) => r,
            Err(e) => {
                answer_error(0, "", 0, 0, format!("cannot parse request: {e}"));
                continue;
            }
        };
        if ServeOp::from_label(&req.op) == Some(ServeOp::Quit) {
            log::info!("serve: quit after {served} requests");
            return;
        }
        served += 1;
        match measure(&req.op, req.arg, req.iters) {
            Ok(cycles) => {
                let ns = cycles as f64 * timing::cycles_to_ns_factor();
                report::emit(&Record::Measurement(MeasurementRecord {
                    id: req.id,
                    op: req.op,
                    arg: req.arg,
                    iters: req.iters,
                    cycles,
                    ns,
                    error: None,
                }));
            }
            Err(msg) => answer_error(req.id, &req.op, req.arg, req.iters, msg),
        }
    }
}

fn answer_error(id: u64, op: &str, arg: u64, iters: u64, error: String) {
    log::warn!("serve: request {id} ({op}): {error}");
    report::emit(&Record::Measurement(MeasurementRecord {
        id,
        op: op.to_string(),
        arg,
        iters,
        cycles: 0,
        ns: 0.0,
        error: Some(error),
    }));
}

/// Poll COM2 for one `\n`-terminated line into `line` (without the newline). Returns
/// true when the line was longer than [`MAX_LINE`] (the rest is discarded).
fn read_line(line: &mut Vec<u8>) -> bool {
    line.clear();
    let mut overlong = false;
    loop {
        if port::inb(LSR) & LSR_DATA_READY == 0 {
            core::hint::spin_loop();
            continue;
        }
        let c = port::inb(RBR);
        if c == b'\n' {
            return overlong;
        }
        if line.len() < MAX_LINE {
            line.push(c);
        } else {
            overlong = true;
        }
    }
}

/// Time `iters` back-to-back calls of `f` as one region; cycles with the empty timer's
/// cost subtracted once. `f` returns false on allocation failure. Generic, so `f` is
/// inlined into the loop (no indirect call per iteration).
#[inline(always)]
fn timed(iters: u64, mut f: impl FnMut() -> bool) -> Result<u64, String> {
    let ovh = timing::timer_overhead();
    let mut ok = true;
    let a = tsc::start();
    for _ in 0..iters {
        ok &= f();
    }
    let b = tsc::stop();
    if ok {
        Ok((b - a).saturating_sub(ovh))
    } else {
        Err("out of memory".to_string())
    }
}

/// Run one request's `iters` iterations of `op`.
/// Refused, before anything runs, when outside [`request_limits`]: the same check as
/// the host's, so a request from any client is bounded.
fn measure(label: &str, arg: u64, iters: u64) -> Result<u64, String> {
    request_limits::check_request(label, arg, iters).map_err(|e| e.to_string())?;
    let Some(op) = ServeOp::from_label(label) else {
        return Err(format!(
            "unknown op `{label}` (known: {}, quit)",
            SERVE_OPS.join(", ")
        ));
    };
    match op {
        ServeOp::Nop => timed(iters, || {
            black_box(());
            true
        }),
        ServeOp::KmallocPair | ServeOp::KzallocPair => {
            let size = arg as usize;
            let zero = op == ServeOp::KzallocPair;
            timed(iters, || {
                let p = if zero {
                    mm::kzalloc(size, GFP_KERNEL)
                } else {
                    mm::kmalloc(size, GFP_KERNEL)
                };
                if p.is_null() {
                    return false;
                }
                // SAFETY: kmalloc returned this pointer (or null) above; it is freed once.
                unsafe { mm::kfree(black_box(p)) };
                true
            })
        }
        ServeOp::AllocPagesPair => {
            debug_assert!(arg <= MAX_ORDER as u64, "request_limits::PAGES_ORDER");
            let order = arg as u8;
            timed(iters, || match mm::alloc_pages(order, Gfp(0)) {
                Some(p) => {
                    mm::free_pages(black_box(p.as_ptr()), order);
                    true
                }
                None => false,
            })
        }
        ServeOp::VmallocPair => {
            let size = arg as usize;
            timed(iters, || {
                let p = mm::vmalloc(size, GFP_KERNEL);
                if p.is_null() {
                    return false;
                }
                mm::vfree(black_box(p));
                true
            })
        }
        ServeOp::GateRoundtrip => timed(iters, || {
            privileged::gate_nop();
            true
        }),
        ServeOp::Alu => {
            let n = arg.max(1);
            timed(iters, || {
                black_box(basic::dependent_adds(n));
                true
            })
        }
        ServeOp::Quit => Err(String::from("quit is handled before measuring")),
    }
}
