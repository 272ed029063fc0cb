//! Property tests over random alloc/free sequences for kmalloc and vmalloc
//! (the buddy's property test lives next to it in src/buddy.rs).
use kmbench_mm::testing::{FakePageTable, HostArena};
use kmbench_mm::vmalloc::LeafSize;
use kmbench_mm::{FlushMode, Kmalloc, Vmalloc, GFP_KERNEL, PAGE_SIZE};
use proptest::prelude::*;
use std::collections::HashSet;

#[derive(Clone, Debug)]
enum KOp {
    Alloc(usize),
    Free(usize),
}

fn kop() -> impl Strategy<Value = KOp> {
    prop_oneof![
        3 => prop_oneof![1usize..=256, 1usize..=8192, 8193usize..=40000].prop_map(KOp::Alloc),
        2 => any::<usize>().prop_map(KOp::Free),
    ]
}

fn pattern(p: *mut u8, len: usize, seed: u8) {
    // SAFETY: callers pass a live allocation of at least len bytes.
    let s = unsafe { std::slice::from_raw_parts_mut(p, len) };
    for (i, b) in s.iter_mut().enumerate() {
        *b = seed.wrapping_add(i as u8);
    }
}

fn check(p: *const u8, len: usize, seed: u8) -> bool {
    // SAFETY: callers pass a live allocation of at least len bytes.
    let s = unsafe { std::slice::from_raw_parts(p, len) };
    s.iter()
        .enumerate()
        .all(|(i, &b)| b == seed.wrapping_add(i as u8))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn kmalloc_random(ops in proptest::collection::vec(kop(), 1..400), debug in any::<bool>()) {
        let mut a = HostArena::new(8 << 20);
        let mut k = Kmalloc::with_debug(debug);
        let initial = a.pa.buddy.nr_free_pages();
        let mut live: Vec<(*mut u8, usize, u8)> = Vec::new();
        for (n, op) in ops.into_iter().enumerate() {
            match op {
                KOp::Alloc(size) => {
                    let p = k.kmalloc(&mut a.pa, size, GFP_KERNEL);
                    if p.is_null() { continue; }
                    let ks = k.ksize(&a.pa, p);
                    prop_assert!(ks >= size);
                    prop_assert!(a.contains(p, ks));
                    let align = if debug || !ks.is_power_of_two() { 8 } else { ks.min(PAGE_SIZE) };
                    prop_assert_eq!(p as usize % align, 0, "alignment of {} bytes", size);
                    for &(q, _, _) in &live {
                        let qk = k.ksize(&a.pa, q);
                        prop_assert!(p as usize + ks <= q as usize || q as usize + qk <= p as usize,
                            "overlap {:p}+{} vs {:p}+{}", p, ks, q, qk);
                    }
                    pattern(p, size, n as u8);
                    live.push((p, size, n as u8));
                }
                KOp::Free(i) => {
                    if live.is_empty() { continue; }
                    let (p, size, seed) = live.swap_remove(i % live.len());
                    prop_assert!(check(p, size, seed), "contents preserved");
                    k.kfree(&mut a.pa, p).unwrap();
                }
            }
            prop_assert_eq!(k.nr_allocated(), live.len() as u64);
        }
        for (p, size, seed) in live.drain(..) {
            prop_assert!(check(p, size, seed));
            k.kfree(&mut a.pa, p).unwrap();
        }
        prop_assert_eq!(k.nr_allocated(), 0);
        prop_assert!(k.take_debug_report().is_none());
        k.shrink(&mut a.pa);
        prop_assert_eq!(a.pa.buddy.nr_free_pages(), initial);
        // All memory is reusable: the arena can be carved into 16 KiB objects again.
        let n = (0..).take_while(|_| !k.kmalloc(&mut a.pa, 16384, GFP_KERNEL).is_null()).count();
        prop_assert_eq!(n as u64, initial / 4);
    }
}

#[derive(Clone, Debug)]
enum VOp {
    Alloc {
        pages: usize,
        huge: bool,
        align_shift: u8,
    },
    Free(usize),
}

fn vop() -> impl Strategy<Value = VOp> {
    prop_oneof![
        3 => (1usize..=1100, any::<bool>(), 12u8..=22)
            .prop_map(|(pages, huge, align_shift)| VOp::Alloc { pages, huge, align_shift }),
        2 => any::<usize>().prop_map(VOp::Free),
    ]
}

const VSTART: u64 = 0xffff_c900_0000_0000;
const VEND: u64 = VSTART + (1 << 30);

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn vmalloc_random(ops in proptest::collection::vec(vop(), 1..60), mode in 0u8..3, lazy_max in 1u64..2000) {
        let mut a = HostArena::new(16 << 20);
        let mut hw = FakePageTable::new();
        let mut vm = Vmalloc::new(VSTART, VEND);
        vm.set_flush_mode([FlushMode::PerPage, FlushMode::Full, FlushMode::Lazy][mode as usize]);
        vm.set_lazy_max_pages(lazy_max);
        let initial = a.pa.buddy.nr_free_pages();
        let mut live: Vec<u64> = Vec::new();
        for op in ops {
            match op {
                VOp::Alloc { pages, huge, align_shift } => {
                    let size = pages * PAGE_SIZE - 7;
                    let p = if huge {
                        vm.vmalloc_huge(&mut a.pa, &mut hw, size, GFP_KERNEL)
                    } else {
                        vm.vmalloc_align(&mut a.pa, &mut hw, size, 1 << align_shift, GFP_KERNEL)
                    } as u64;
                    if p == 0 { continue; }
                    if !huge { prop_assert_eq!(p % (1 << align_shift), 0); }
                    let info = vm.find_area(p).unwrap();
                    prop_assert!(info.size >= size as u64);
                    prop_assert!(p >= VSTART && info.guard + PAGE_SIZE as u64 <= VEND);
                    for &q in &live {
                        let qi = vm.find_area(q).unwrap();
                        // Areas including their guard pages never overlap.
                        prop_assert!(info.guard < qi.start || qi.guard < info.start);
                    }
                    live.push(p);
                }
                VOp::Free(i) => {
                    if live.is_empty() { continue; }
                    let p = live.swap_remove(i % live.len());
                    vm.vfree(&mut a.pa, &mut hw, p as *mut u8).unwrap();
                    prop_assert!(vm.find_area(p).is_none());
                }
            }
            // Page-table invariants: every mapped leaf belongs to a live area at the right
            // frame; guard pages are never mapped; frames are distinct.
            let mut frames = HashSet::new();
            let mut leaves = 0usize;
            for &p in &live {
                let info = vm.find_area(p).unwrap();
                prop_assert!(hw.translate(info.guard).is_none(), "guard mapped");
                leaves += info.nr_leaves;
                let lb = info.leaf.bytes();
                for i in 0..info.nr_leaves as u64 {
                    let phys = hw.translate(p + i * lb).unwrap();
                    prop_assert_eq!(Some(phys), vm.vmalloc_to_page(p + i * lb));
                    if info.leaf == LeafSize::Size2M { prop_assert_eq!(phys % lb, 0); }
                    prop_assert!(frames.insert(phys), "frame shared");
                }
            }
            prop_assert_eq!(hw.nr_mapped(), leaves);
        }
        for p in live.drain(..) {
            vm.vfree(&mut a.pa, &mut hw, p as *mut u8).unwrap();
        }
        vm.purge_lazy(&mut hw);
        prop_assert_eq!(hw.nr_mapped(), 0);
        prop_assert_eq!(a.pa.buddy.nr_free_pages(), initial);
        prop_assert_eq!(vm.free_bytes(), VEND - VSTART);
        let s = vm.stats();
        prop_assert_eq!((s.areas, s.mapped_4k, s.mapped_2m, s.lazy_pages_pending), (0, 0, 0, 0));
    }
}
