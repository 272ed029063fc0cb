//! Host-native microbenchmarks of the allocators against the host arena (no page walks,
//! no real TLB: vmalloc numbers measure bookkeeping plus the fake page table).
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use kmbench_mm::testing::{FakePageTable, HostArena};
use kmbench_mm::{FlushMode, Kmalloc, Vmalloc, GFP_KERNEL};
use std::hint::black_box;

fn kmalloc_pair(c: &mut Criterion) {
    let mut g = c.benchmark_group("kmalloc_kfree_pair");
    for size in [8usize, 64, 512, 4096, 16384] {
        let mut a = HostArena::new(64 << 20);
        let mut k = Kmalloc::new();
        g.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, &size| {
            b.iter(|| {
                let p = k.kmalloc(&mut a.pa, black_box(size), GFP_KERNEL);
                // SAFETY: p was just returned by kmalloc and is freed once.
                unsafe { k.kfree_unchecked(&mut a.pa, black_box(p)) }.unwrap();
            })
        });
    }
    g.finish();
}

fn kmalloc_alloc_n_free_n(c: &mut Criterion) {
    const N: usize = 10_000;
    let mut g = c.benchmark_group("kmalloc_10000_then_kfree_10000");
    for size in [8usize, 64] {
        let mut a = HostArena::new(64 << 20);
        let mut k = Kmalloc::new();
        let mut v = Vec::with_capacity(N);
        g.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, &size| {
            b.iter(|| {
                for _ in 0..N {
                    v.push(k.kmalloc(&mut a.pa, black_box(size), GFP_KERNEL));
                }
                for p in v.drain(..) {
                    // SAFETY: each p was returned by kmalloc above and is freed once.
                    unsafe { k.kfree_unchecked(&mut a.pa, p) }.unwrap();
                }
            })
        });
    }
    g.finish();
}

fn pages_pair(c: &mut Criterion) {
    let mut g = c.benchmark_group("alloc_pages_free_pages_pair");
    for order in [0u8, 3, 9] {
        let mut a = HostArena::new(64 << 20);
        // Fragment a little so splits/merges happen as in a used system.
        let hold = a.pa.alloc_pages(0, GFP_KERNEL).unwrap();
        g.bench_with_input(BenchmarkId::from_parameter(order), &order, |b, &order| {
            b.iter(|| {
                let p = a.pa.alloc_pages(black_box(order), GFP_KERNEL).unwrap();
                a.pa.free_pages(black_box(p.as_ptr()), order).unwrap();
            })
        });
        a.pa.free_pages(hold.as_ptr(), 0).unwrap();
    }
    g.finish();
}

fn vmalloc_pair(c: &mut Criterion) {
    let mut g = c.benchmark_group("vmalloc_vfree_pair");
    for mode in [FlushMode::PerPage, FlushMode::Full, FlushMode::Lazy] {
        for size in [4096usize, 65536] {
            let mut a = HostArena::new(64 << 20);
            let mut hw = FakePageTable::new();
            let mut vm = Vmalloc::new(0xffff_c900_0000_0000, 0xffff_e900_0000_0000);
            vm.set_flush_mode(mode);
            let id = BenchmarkId::new(format!("{mode:?}"), size);
            g.bench_with_input(id, &size, |b, &size| {
                b.iter(|| {
                    let p = vm.vmalloc(&mut a.pa, &mut hw, black_box(size), GFP_KERNEL);
                    vm.vfree(&mut a.pa, &mut hw, black_box(p)).unwrap();
                })
            });
        }
    }
    g.finish();
}

criterion_group!(
    benches,
    kmalloc_pair,
    kmalloc_alloc_n_free_n,
    pages_pair,
    vmalloc_pair
);
criterion_main!(benches);
