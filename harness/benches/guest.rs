//! In-guest operations as criterion benchmarks: `cargo bench -p kmbench --bench guest`.
//!
//! One serve-mode guest ([`kmbench::session::GuestSession`]) is booted on first use and
//! kept alive for every benchmark. Each criterion sample is one request "run `iters`
//! iterations of op X" on the guest's control channel; `iter_custom` returns the guest's
//! own TSC time for those iterations, so criterion's statistics, baselines
//! (`-- --save-baseline NAME`, `-- --baseline NAME`) and reports are about guest numbers.
//! See docs/criterion.md for when to use this instead of `kmbench compare`.
//!
//! The guest boots on the embedded VMM when /dev/kvm is usable (QEMU otherwise), through
//! the same launch pipeline as everything else (`kmbench::backend::RunningGuest`).
//!
//! Environment: `KMBENCH_ACCEL` (auto|kvm|tcg), `KMBENCH_BACKEND` (auto|kvm|qemu),
//! `KMBENCH_CPL` (auto|0|3), `KMBENCH_MEMORY_MIB`, `KMBENCH_MM_DEBUG`, `KMBENCH_NO_BUILD`,
//! `KMBENCH_QEMU`, `KMBENCH_KERNEL`.
use std::time::Duration;

use criterion::{BenchmarkId, Criterion};
use kmbench::config::Accel;
use kmbench::session::{GuestSession, SessionOptions};

/// The guest, booted on the first measurement (so `--list` or a filter that matches
/// nothing boots nothing).
struct Guest {
    opts: SessionOptions,
    session: Option<GuestSession>,
}

impl Guest {
    fn measure(&mut self, op: &str, arg: u64, iters: u64) -> Duration {
        if self.session.is_none() {
            let s = GuestSession::start(&self.opts).unwrap_or_else(|e| {
                eprintln!("error: cannot start the kmbench guest: {e}");
                std::process::exit(1)
            });
            let i = s.info();
            eprintln!(
                "kmbench guest: backend={} accel={} hypervisor={} cpl={} cpu={} tsc={} Hz ({}), timer overhead {} cycles",
                i.backend,
                i.accel.label(),
                i.hypervisor.label(),
                i.cpl,
                i.cpu_model,
                i.hello.tsc_hz,
                i.hello.tsc_source,
                i.timer_overhead
            );
            self.session = Some(s);
        }
        let s = self.session.as_mut().expect("started above");
        s.measure(op, arg, iters)
            .unwrap_or_else(|e| panic!("guest measurement {op}/{arg} x{iters} failed: {e}"))
    }
}

fn benches(c: &mut Criterion, g: &mut Guest) {
    let mut group = c.benchmark_group("kmalloc/pair");
    for size in [8u64, 64, 4096] {
        group.bench_function(BenchmarkId::from_parameter(size), |b| {
            b.iter_custom(|iters| g.measure("kmalloc_pair", size, iters))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("alloc_pages/pair");
    for order in [0u64, 9] {
        group.bench_function(BenchmarkId::from_parameter(order), |b| {
            b.iter_custom(|iters| g.measure("alloc_pages_pair", order, iters))
        });
    }
    group.finish();

    // `vmalloc/pair/<size>/<flush mode>`, as `kmbench run` names the same pair.
    let mode = g.opts.flush_mode.label();
    let mut group = c.benchmark_group("vmalloc/pair");
    for size in [4096u64, 65536] {
        group.bench_function(BenchmarkId::new(size.to_string(), mode), |b| {
            b.iter_custom(|iters| g.measure("vmalloc_pair", size, iters))
        });
    }
    group.finish();

    c.bench_function("gate/roundtrip", |b| {
        b.iter_custom(|iters| g.measure("gate_roundtrip", 0, iters))
    });
}

fn main() {
    let opts = match SessionOptions::from_env() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let kvm = kmbench::host::kvm_usable();
    // The embedded VMM needs no QEMU; without either there is nothing to boot on.
    if kmbench::host::find_qemu().is_none() && kvm.is_err() {
        eprintln!(
            "skipping the guest benchmarks: qemu-system-x86_64 not found (install it or set KMBENCH_QEMU){}",
            match &kvm {
                Ok(()) => String::new(),
                Err(e) => format!("; /dev/kvm is not usable either ({e})"),
            }
        );
        return;
    }
    if opts.accel == Accel::Kvm {
        if let Err(e) = &kvm {
            eprintln!(
                "skipping the guest benchmarks: KMBENCH_ACCEL=kvm but /dev/kvm is not usable ({e})"
            );
            return;
        }
    }
    let mut guest = Guest {
        opts,
        session: None,
    };
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c, &mut guest);
    c.final_summary();
    if let Some(s) = guest.session.take() {
        if let Err(e) = s.quit() {
            eprintln!("warning: the guest did not end cleanly: {e}");
        }
    }
}
