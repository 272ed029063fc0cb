//! Host-side cross-check of the SMP suite's `smp/kmalloc/pair/*/cpus=<n>`: the same
//! per-CPU sheaf code (`kmbench_mm::percpu::CpuSheaves`) on 1..=N host threads, each with
//! its own sheaves over one shared pool behind a mutex (the kernel's mm lock), running
//! alloc+free pairs. If the fast path shares no cache line, the per-pair cost of each
//! thread stays flat as threads are added.
//!
//! `cargo run --release -p kmbench-mm --example percpu_scaling [threads] [pairs]`
use kmbench_mm::percpu::{CpuSheaves, SHEAF_BATCH};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let max: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2);
    let pairs: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000_000);
    let pool = Arc::new(Mutex::new(
        (1..=65_536usize).map(|i| i * 64).collect::<Vec<_>>(),
    ));
    for n in 1..=max {
        let barrier = Arc::new(Barrier::new(n));
        let per_thread: Vec<f64> = (0..n)
            .map(|_| {
                let (pool, barrier) = (pool.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let mut c = CpuSheaves::new();
                    barrier.wait();
                    let t0 = Instant::now();
                    for _ in 0..pairs {
                        let p = c
                            .alloc(3, |s| {
                                let mut g = pool.lock().unwrap();
                                s.refill(|| g.pop().map(|a| a as *mut u8));
                            })
                            .expect("pool");
                        // The addresses are plain data here (nothing is dereferenced).
                        std::hint::black_box(p);
                        c.free(3, p, |s| {
                            let mut g = pool.lock().unwrap();
                            s.flush(SHEAF_BATCH, |q| g.push(q as usize));
                        });
                    }
                    let ns = t0.elapsed().as_nanos() as f64 / pairs as f64;
                    c.drain(|_, q| pool.lock().unwrap().push(q as usize));
                    ns
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        println!(
            "threads={n}: ns per pair per thread {:?}",
            per_thread
                .iter()
                .map(|x| (x * 100.0).round() / 100.0)
                .collect::<Vec<_>>()
        );
    }
}
