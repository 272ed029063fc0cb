//! Per-CPU caches in front of the shared allocators, Linux-shaped.
//!
//! * [`Sheaf`]: a fixed array of free objects (or pages) owned by one CPU — Linux 6.18's
//!   per-CPU *sheaves* in front of SLUB (`mm/slub.c`, `struct slab_sheaf`), and the same
//!   shape as the per-CPU page lists in front of the buddy allocator (`struct
//!   per_cpu_pages`: `count`, `batch`, `high`). The owning CPU pushes and pops without
//!   any lock or atomic instruction; only when a sheaf runs empty (refill) or full
//!   (flush) does it take the shared allocator's lock, and then for [`SHEAF_BATCH`]
//!   objects at once.
//! * **Remote free.** An object allocated on CPU A and freed on CPU B goes into B's
//!   sheaf, like any free on B: objects migrate between CPUs through the shared slab when
//!   B's sheaf overflows and A's runs dry (SLAB's array caches and Linux's sheaves behave
//!   so; SLUB's per-slab lockless freelist is the other design). The cost of the cross-CPU
//!   path is therefore the flush/refill traffic on the shared lock, which the SMP suite's
//!   `smp/kmalloc/remote_free` measures.
//! * [`CpuSheaves`] holds one sheaf per kmalloc cache for one CPU, plus counters.
//!
//! The kernel keeps one [`CpuSheaves`] and one page [`Sheaf`] per CPU in a per-CPU slot
//! that only that CPU touches; the host tests below run the same code on threads.
use crate::kmalloc::NR_KMALLOC_CACHES;

/// Objects a sheaf holds.
pub const SHEAF_CAPACITY: usize = 32;
/// Objects moved between a sheaf and the shared allocator at a time (refill: to half
/// full; flush: down to half full), so a CPU alternating alloc and free at the boundary
/// does not take the lock on every operation.
pub const SHEAF_BATCH: usize = SHEAF_CAPACITY / 2;

/// A CPU-local stack of free objects.
pub struct Sheaf {
    len: usize,
    objs: [*mut u8; SHEAF_CAPACITY],
}

// SAFETY: a sheaf holds addresses of free objects, not references; the kernel hands one
// sheaf to exactly one CPU at a time (the per-CPU slot contract), and the host tests move
// whole sheaves between threads, which is sound for plain addresses.
unsafe impl Send for Sheaf {}

impl Default for Sheaf {
    fn default() -> Self {
        Self::new()
    }
}

impl Sheaf {
    pub const fn new() -> Self {
        Sheaf {
            len: 0,
            objs: [core::ptr::null_mut(); SHEAF_CAPACITY],
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn is_full(&self) -> bool {
        self.len == SHEAF_CAPACITY
    }

    /// The most recently pushed object (LIFO: the one most likely still in cache).
    #[inline(always)]
    pub fn pop(&mut self) -> Option<*mut u8> {
        if self.len == 0 {
            return None;
        }
        self.len -= 1;
        Some(self.objs[self.len])
    }

    /// Keep `p`; `Err(p)` when the sheaf is full.
    #[inline(always)]
    pub fn push(&mut self, p: *mut u8) -> Result<(), *mut u8> {
        if self.len == SHEAF_CAPACITY {
            return Err(p);
        }
        self.objs[self.len] = p;
        self.len += 1;
        Ok(())
    }

    /// Fill up to `SHEAF_BATCH` objects from `alloc` (the shared allocator, under its
    /// lock); stops early when `alloc` fails. Returns how many were added.
    pub fn refill(&mut self, mut alloc: impl FnMut() -> Option<*mut u8>) -> usize {
        let mut n = 0;
        while self.len < SHEAF_BATCH.max(1) {
            match alloc() {
                Some(p) => {
                    self.objs[self.len] = p;
                    self.len += 1;
                    n += 1;
                }
                None => break,
            }
        }
        n
    }

    /// Hand the oldest objects back to `free` (the shared allocator, under its lock)
    /// until `keep` remain. Returns how many were freed.
    pub fn flush(&mut self, keep: usize, mut free: impl FnMut(*mut u8)) -> usize {
        let keep = keep.min(self.len);
        let n = self.len - keep;
        for &p in &self.objs[..n] {
            free(p);
        }
        self.objs.copy_within(n..self.len, 0);
        self.len = keep;
        n
    }
}

/// Counters of one CPU's sheaves (Linux's `SHEAF_*` / `ALLOC_PCS` stats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SheafStats {
    /// Served from the sheaf, no lock.
    pub alloc_fast: u64,
    /// Sheaf empty: refilled under the shared lock.
    pub refills: u64,
    pub free_fast: u64,
    /// Sheaf full: flushed under the shared lock.
    pub flushes: u64,
}

/// One CPU's sheaves, one per kmalloc cache.
pub struct CpuSheaves {
    sheaves: [Sheaf; NR_KMALLOC_CACHES],
    pub stats: SheafStats,
}

impl Default for CpuSheaves {
    fn default() -> Self {
        Self::new()
    }
}

impl CpuSheaves {
    pub const fn new() -> Self {
        CpuSheaves {
            sheaves: [const { Sheaf::new() }; NR_KMALLOC_CACHES],
            stats: SheafStats {
                alloc_fast: 0,
                refills: 0,
                free_fast: 0,
                flushes: 0,
            },
        }
    }

    /// An object of cache `idx`: from the sheaf, else after `refill` (which takes the
    /// shared lock and fills the sheaf it is given). `None` when the shared allocator is
    /// out of memory.
    #[inline(always)]
    pub fn alloc(&mut self, idx: usize, refill: impl FnOnce(&mut Sheaf)) -> Option<*mut u8> {
        let s = &mut self.sheaves[idx];
        if let Some(p) = s.pop() {
            self.stats.alloc_fast += 1;
            return Some(p);
        }
        self.stats.refills += 1;
        refill(s);
        s.pop()
    }

    /// Free `p` of cache `idx` into the sheaf; when it is full, `flush` (under the shared
    /// lock) makes room first.
    #[inline(always)]
    pub fn free(&mut self, idx: usize, p: *mut u8, flush: impl FnOnce(&mut Sheaf)) {
        let s = &mut self.sheaves[idx];
        if s.push(p).is_ok() {
            self.stats.free_fast += 1;
            return;
        }
        self.stats.flushes += 1;
        flush(s);
        s.push(p).expect("a flushed sheaf has room");
    }

    /// Every cached object back to `free` (cache index, object), e.g. before a shrink.
    pub fn drain(&mut self, mut free: impl FnMut(usize, *mut u8)) {
        for (i, s) in self.sheaves.iter_mut().enumerate() {
            s.flush(0, |p| free(i, p));
        }
    }

    /// Objects currently cached.
    pub fn cached(&self) -> usize {
        self.sheaves.iter().map(Sheaf::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;
    use std::sync::{mpsc, Arc, Mutex};

    /// The shared allocator of the tests: a pool of distinct addresses under a lock.
    struct Shared {
        free: Vec<usize>,
        locks: u64,
    }

    fn pool(n: usize) -> Arc<Mutex<Shared>> {
        Arc::new(Mutex::new(Shared {
            free: (1..=n).map(|i| i * 64).collect(),
            locks: 0,
        }))
    }

    fn refill(sh: &Arc<Mutex<Shared>>) -> impl FnOnce(&mut Sheaf) + '_ {
        move |s: &mut Sheaf| {
            let mut g = sh.lock().unwrap();
            g.locks += 1;
            s.refill(|| g.free.pop().map(|a| a as *mut u8));
        }
    }

    fn flush(sh: &Arc<Mutex<Shared>>) -> impl FnOnce(&mut Sheaf) + '_ {
        move |s: &mut Sheaf| {
            let mut g = sh.lock().unwrap();
            g.locks += 1;
            s.flush(SHEAF_BATCH, |p| g.free.push(p as usize));
        }
    }

    #[test]
    fn pairs_stay_on_the_fast_path() {
        let sh = pool(1000);
        let mut c = CpuSheaves::new();
        for _ in 0..10_000 {
            let p = c.alloc(3, refill(&sh)).unwrap();
            c.free(3, p, flush(&sh));
        }
        // One refill at the start, then every pair is served from the sheaf.
        assert_eq!(c.stats.refills, 1);
        assert_eq!(c.stats.flushes, 0);
        assert_eq!(sh.lock().unwrap().locks, 1);
        assert_eq!(c.stats.alloc_fast, 9_999);
    }

    #[test]
    fn refill_and_flush_move_batches() {
        let sh = pool(1000);
        let mut c = CpuSheaves::new();
        let got: Vec<*mut u8> = (0..100).map(|_| c.alloc(0, refill(&sh)).unwrap()).collect();
        // 100 allocations from empty sheaves: one refill per SHEAF_BATCH objects.
        assert_eq!(c.stats.refills as usize, 100usize.div_ceil(SHEAF_BATCH));
        for p in got {
            c.free(0, p, flush(&sh));
        }
        assert!(c.cached() <= SHEAF_CAPACITY);
        let mut rest = 0;
        c.drain(|_, p| {
            rest += 1;
            sh.lock().unwrap().free.push(p as usize);
        });
        let g = sh.lock().unwrap();
        let set: BTreeSet<usize> = g.free.iter().copied().collect();
        assert_eq!(set.len(), 1000, "every object back, none twice");
        assert!(rest > 0);
    }

    #[test]
    fn out_of_memory_is_none() {
        let sh = pool(3);
        let mut c = CpuSheaves::new();
        for _ in 0..3 {
            assert!(c.alloc(1, refill(&sh)).is_some());
        }
        assert!(c.alloc(1, refill(&sh)).is_none());
    }

    /// Producer/consumer across threads: objects allocated on one "CPU" are freed on
    /// another (the remote-free path); nothing is lost or handed out twice.
    #[test]
    fn remote_frees_across_threads_conserve_objects() {
        const N: usize = 4096;
        let sh = pool(N);
        let (tx, rx) = mpsc::sync_channel::<usize>(64);
        let live = Arc::new(Mutex::new(BTreeSet::new()));
        let (sh1, live1) = (sh.clone(), live.clone());
        let producer = std::thread::spawn(move || {
            let mut c = CpuSheaves::new();
            for _ in 0..50_000 {
                let p = loop {
                    if let Some(p) = c.alloc(2, refill(&sh1)) {
                        break p;
                    }
                    std::thread::yield_now();
                };
                assert!(live1.lock().unwrap().insert(p as usize), "handed out twice");
                tx.send(p as usize).unwrap();
            }
            c.drain(|_, p| sh1.lock().unwrap().free.push(p as usize));
        });
        let (sh2, live2) = (sh.clone(), live.clone());
        let consumer = std::thread::spawn(move || {
            let mut c = CpuSheaves::new();
            for p in rx {
                assert!(live2.lock().unwrap().remove(&p));
                c.free(2, p as *mut u8, flush(&sh2));
            }
            c.drain(|_, p| sh2.lock().unwrap().free.push(p as usize));
            c.stats
        });
        producer.join().unwrap();
        let stats = consumer.join().unwrap();
        assert!(
            stats.flushes > 0,
            "the consumer's sheaf overflowed into the shared pool"
        );
        let g = sh.lock().unwrap();
        let set: BTreeSet<usize> = g.free.iter().copied().collect();
        assert_eq!((set.len(), g.free.len()), (N, N));
        assert!(live.lock().unwrap().is_empty());
    }

    /// Several CPUs with their own sheaves over one shared pool, each running random
    /// alloc/free sequences on threads: the set of addresses is conserved.
    #[test]
    fn concurrent_cpus_conserve_objects() {
        const N: usize = 2048;
        let sh = pool(N);
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let sh = sh.clone();
                std::thread::spawn(move || {
                    let mut c = CpuSheaves::new();
                    let mut held: Vec<*mut u8> = Vec::new();
                    let mut x = t * 7919 + 1;
                    for _ in 0..40_000 {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        if x % 3 != 0 && held.len() < 200 {
                            if let Some(p) = c.alloc(4, refill(&sh)) {
                                held.push(p);
                            }
                        } else if let Some(p) = held.pop() {
                            c.free(4, p, flush(&sh));
                        }
                    }
                    for p in held {
                        c.free(4, p, flush(&sh));
                    }
                    c.drain(|_, p| sh.lock().unwrap().free.push(p as usize));
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let g = sh.lock().unwrap();
        let set: BTreeSet<usize> = g.free.iter().copied().collect();
        assert_eq!((set.len(), g.free.len()), (N, N));
    }

    proptest! {
        /// Any sequence of pushes, pops, refills and flushes keeps the sheaf a LIFO of
        /// at most SHEAF_CAPACITY objects, equal to a model Vec.
        #[test]
        fn sheaf_matches_a_vec(ops in proptest::collection::vec(0u8..4, 0..300)) {
            let mut s = Sheaf::new();
            let mut model: Vec<usize> = Vec::new();
            let mut next = 1usize;
            for op in ops {
                match op {
                    0 => {
                        let r = s.push(next as *mut u8);
                        if model.len() < SHEAF_CAPACITY {
                            prop_assert!(r.is_ok());
                            model.push(next);
                        } else {
                            prop_assert!(r.is_err());
                        }
                        next += 1;
                    }
                    1 => prop_assert_eq!(s.pop().map(|p| p as usize), model.pop()),
                    2 => {
                        let before = model.len();
                        let mut added = Vec::new();
                        s.refill(|| {
                            let v = next;
                            next += 1;
                            added.push(v);
                            Some(v as *mut u8)
                        });
                        prop_assert_eq!(added.len(), SHEAF_BATCH.saturating_sub(before));
                        model.extend(added);
                    }
                    _ => {
                        let mut freed = Vec::new();
                        s.flush(SHEAF_BATCH, |p| freed.push(p as usize));
                        let keep = SHEAF_BATCH.min(model.len());
                        let n = model.len() - keep;
                        prop_assert_eq!(&freed[..], &model[..n]);
                        model.drain(..n);
                    }
                }
                prop_assert_eq!(s.len(), model.len());
            }
        }
    }
}
