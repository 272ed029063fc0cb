//! Host tests of vmalloc against `testing::FakePageTable`.
use super::*;
use crate::gfp::GFP_KERNEL;
use crate::testing::{FakePageTable, HostArena};
use std::string::ToString;
use std::vec::Vec;

const VSTART: u64 = 0xffff_c900_0000_0000;
const VEND: u64 = VSTART + (1 << 32);

fn setup() -> (HostArena, FakePageTable, Vmalloc) {
    (
        HostArena::new(16 << 20),
        FakePageTable::new(),
        Vmalloc::new(VSTART, VEND),
    )
}

#[test]
fn alloc_maps_distinct_frames_with_guard() {
    let (mut a, mut hw, mut vm) = setup();
    vm.set_flush_mode(FlushMode::PerPage);
    let free0 = a.pa.buddy.nr_free_pages();
    let p = vm.vmalloc(&mut a.pa, &mut hw, 3 * 4096 + 1, GFP_KERNEL) as u64;
    assert_eq!(p, VSTART);
    let info = vm.find_area(p + 5000).unwrap();
    assert_eq!(
        (info.start, info.size, info.nr_leaves, info.guard),
        (p, 16384, 4, p + 16384)
    );
    assert!(hw.translate(info.guard).is_none(), "guard page unmapped");
    assert!(vm.find_area(info.guard).is_none());
    let mut frames: Vec<u64> = (0..4)
        .map(|i| hw.translate(p + i * 4096).unwrap())
        .collect();
    assert_eq!(vm.vmalloc_to_page(p + 4096 + 7), Some(frames[1] + 7));
    frames.sort();
    frames.dedup();
    assert_eq!(frames.len(), 4);
    assert_eq!(a.pa.buddy.nr_free_pages(), free0 - 4);
    // The next area starts after the guard.
    let q = vm.vmalloc(&mut a.pa, &mut hw, 4096, GFP_KERNEL) as u64;
    assert_eq!(q, p + 16384 + 4096);
    vm.vfree(&mut a.pa, &mut hw, p as *mut u8).unwrap();
    assert_eq!(hw.range_flushes, 1);
    assert_eq!(hw.invlpg_pages, 4);
    vm.vfree(&mut a.pa, &mut hw, q as *mut u8).unwrap();
    assert_eq!(hw.nr_mapped(), 0);
    assert_eq!(a.pa.buddy.nr_free_pages(), free0);
    assert_eq!(vm.free_bytes(), VEND - VSTART, "ranges coalesced");
}

#[test]
fn vzalloc_zeroes_frames() {
    let (mut a, mut hw, mut vm) = setup();
    // Dirty the whole arena first.
    let mut pages = Vec::new();
    while let Some(p) = a.pa.alloc_pages(0, GFP_KERNEL) {
        // SAFETY: p is a page of the host arena owned by this test.
        unsafe { core::ptr::write_bytes(p.as_ptr(), 0xee, 4096) };
        pages.push(p);
    }
    for p in pages {
        a.pa.free_pages(p.as_ptr(), 0).unwrap();
    }
    let v = vm.vzalloc(&mut a.pa, &mut hw, 8192, GFP_KERNEL) as u64;
    for i in 0..2 {
        let phys = vm.vmalloc_to_page(v + i * 4096).unwrap();
        let virt = a.pa.direct_map.phys_to_virt(phys);
        // SAFETY: the frame is a page of the arena, owned by the vmalloc area.
        assert!(unsafe { core::slice::from_raw_parts(virt, 4096) }
            .iter()
            .all(|&b| b == 0));
    }
    vm.vfree(&mut a.pa, &mut hw, v as *mut u8).unwrap();
}

#[test]
fn flush_modes() {
    let (mut a, mut hw, mut vm) = setup();
    vm.set_flush_mode(FlushMode::PerPage);
    let p = vm.vmalloc(&mut a.pa, &mut hw, 33 * 4096, GFP_KERNEL);
    vm.vfree(&mut a.pa, &mut hw, p).unwrap();
    assert_eq!(
        (hw.full_flushes, hw.range_flushes),
        (1, 0),
        "33 pages -> full flush"
    );
    let p = vm.vmalloc(&mut a.pa, &mut hw, 32 * 4096, GFP_KERNEL);
    vm.vfree(&mut a.pa, &mut hw, p).unwrap();
    assert_eq!(
        (hw.full_flushes, hw.range_flushes, hw.invlpg_pages),
        (1, 1, 32)
    );
    vm.set_flush_mode(FlushMode::Full);
    let p = vm.vmalloc(&mut a.pa, &mut hw, 4096, GFP_KERNEL);
    vm.vfree(&mut a.pa, &mut hw, p).unwrap();
    assert_eq!(hw.full_flushes, 2);
}

#[test]
fn lazy_defers_flush_and_reuse() {
    let (mut a, mut hw, mut vm) = setup();
    vm.set_flush_mode(FlushMode::Lazy);
    vm.set_lazy_max_pages(8);
    let free0 = a.pa.buddy.nr_free_pages();
    let p = vm.vmalloc(&mut a.pa, &mut hw, 4 * 4096, GFP_KERNEL);
    vm.vfree(&mut a.pa, &mut hw, p).unwrap();
    assert_eq!(hw.full_flushes + hw.range_flushes, 0, "no flush yet");
    assert_eq!(a.pa.buddy.nr_free_pages(), free0, "frames freed at once");
    assert_eq!(vm.stats().lazy_pages_pending, 4);
    let q = vm.vmalloc(&mut a.pa, &mut hw, 4 * 4096, GFP_KERNEL);
    assert_ne!(p, q, "lazily freed range not reused before the purge");
    vm.vfree(&mut a.pa, &mut hw, q).unwrap();
    assert_eq!(
        hw.full_flushes, 0,
        "8 pages pending is not above the threshold"
    );
    let r = vm.vmalloc(&mut a.pa, &mut hw, 4096, GFP_KERNEL);
    vm.vfree(&mut a.pa, &mut hw, r).unwrap();
    assert_eq!(hw.full_flushes, 1);
    let s = vm.stats();
    assert_eq!((s.purges, s.lazy_pages_pending), (1, 0));
    assert_eq!(vm.free_bytes(), VEND - VSTART);
    let t = vm.vmalloc(&mut a.pa, &mut hw, 4096, GFP_KERNEL);
    assert_eq!(t, p, "range reused after the purge");
    vm.vfree(&mut a.pa, &mut hw, t).unwrap();
    vm.purge_lazy(&mut hw);
    assert_eq!(hw.full_flushes, 2);
    vm.purge_lazy(&mut hw);
    assert_eq!(hw.full_flushes, 2, "nothing pending: no flush");
}

#[test]
fn lazy_purges_on_address_space_exhaustion() {
    let mut a = HostArena::new(4 << 20);
    let mut hw = FakePageTable::new();
    let mut vm = Vmalloc::new(VSTART, VSTART + 4 * 8192);
    let p = vm.vmalloc(&mut a.pa, &mut hw, 4096, GFP_KERNEL);
    vm.vfree(&mut a.pa, &mut hw, p).unwrap();
    let ps: Vec<*mut u8> = (0..4)
        .map(|_| vm.vmalloc(&mut a.pa, &mut hw, 4096, GFP_KERNEL))
        .collect();
    assert!(ps.iter().all(|p| !p.is_null()));
    assert_eq!(vm.stats().purges, 1);
    assert!(vm.vmalloc(&mut a.pa, &mut hw, 4096, GFP_KERNEL).is_null());
}

#[test]
fn huge_and_fallback() {
    let (mut a, mut hw, mut vm) = setup();
    let free0 = a.pa.buddy.nr_free_pages();
    let p = vm.vmalloc_huge(&mut a.pa, &mut hw, (4 << 20) + 1, GFP_KERNEL) as u64;
    assert_eq!(p % (2 << 20), 0);
    let info = vm.find_area(p).unwrap();
    assert_eq!(
        (info.leaf, info.nr_leaves, info.size),
        (LeafSize::Size2M, 3, 6 << 20)
    );
    for (v, ph, s) in hw.leaves() {
        assert_eq!(s, LeafSize::Size2M);
        assert_eq!((v % (2 << 20), ph % (2 << 20)), (0, 0));
    }
    assert_eq!(vm.stats().mapped_2m, 3);
    // Small request: 4K leaves even via vmalloc_huge.
    let q = vm.vmalloc_huge(&mut a.pa, &mut hw, 8192, GFP_KERNEL) as u64;
    assert_eq!(vm.find_area(q).unwrap().leaf, LeafSize::Size4K);
    // Fragment memory so no order-9 block exists: fallback to 4K leaves.
    let mut held = Vec::new();
    while let Some(pfn) = a.pa.buddy.alloc_pages(9) {
        held.push(pfn);
    }
    let before = vm.stats().huge_fallbacks;
    // Free one 2M block as 512 pages, keeping one page so it cannot merge back.
    let pfn = held.pop().unwrap();
    a.pa.buddy.free_pages(pfn, 9).unwrap();
    let mut pins = Vec::new();
    loop {
        let x = a.pa.buddy.alloc_pages(0).unwrap();
        pins.push(x);
        if (pfn..pfn + 512).contains(&x) {
            break;
        }
    }
    let pin = pins.pop().unwrap();
    for x in pins {
        a.pa.buddy.free_pages(x, 0).unwrap();
    }
    let r = vm.vmalloc_huge(&mut a.pa, &mut hw, 2 << 20, GFP_KERNEL);
    assert!(!r.is_null(), "fell back to 4K frames");
    assert_eq!(vm.stats().huge_fallbacks, before + 1);
    let info = vm.find_area(r as u64).unwrap();
    assert_eq!((info.leaf, info.nr_leaves), (LeafSize::Size4K, 512));
    vm.vfree(&mut a.pa, &mut hw, r).unwrap();
    a.pa.buddy.free_pages(pin, 0).unwrap();
    for pfn in held {
        a.pa.buddy.free_pages(pfn, 9).unwrap();
    }
    vm.vfree(&mut a.pa, &mut hw, p as *mut u8).unwrap();
    vm.vfree(&mut a.pa, &mut hw, q as *mut u8).unwrap();
    assert_eq!(a.pa.buddy.nr_free_pages(), free0);
    assert_eq!(hw.nr_mapped(), 0);
}

#[test]
fn alignment() {
    let (mut a, mut hw, mut vm) = setup();
    let _x = vm.vmalloc(&mut a.pa, &mut hw, 4096, GFP_KERNEL);
    for shift in 12..=24 {
        let p = vm.vmalloc_align(&mut a.pa, &mut hw, 4096, 1 << shift, GFP_KERNEL) as u64;
        assert_eq!(p % (1 << shift), 0, "align 2^{shift}");
        vm.vfree(&mut a.pa, &mut hw, p as *mut u8).unwrap();
    }
    assert!(vm
        .vmalloc_align(&mut a.pa, &mut hw, 4096, 3, GFP_KERNEL)
        .is_null());
    assert!(vm.vmalloc(&mut a.pa, &mut hw, 0, GFP_KERNEL).is_null());
}

#[test]
fn alignment_beyond_the_range_fails_cleanly() {
    // Linux's align_shift_alloc_test: every alignment 2^0 … 2^63 for one page.
    let (mut a, mut hw, mut vm) = setup();
    let (start, end) = vm.range();
    for shift in 0..64u32 {
        let p = vm.vmalloc_align(&mut a.pa, &mut hw, 4096, 1u64 << shift, GFP_KERNEL) as u64;
        if p != 0 {
            assert!(
                p >= start && p + 4096 <= end,
                "align 2^{shift}: {p:#x} outside the range"
            );
            assert_eq!(p % (1u64 << shift), 0);
            vm.vfree(&mut a.pa, &mut hw, p as *mut u8).unwrap();
        }
    }
    assert!(vm
        .vmalloc_align(&mut a.pa, &mut hw, 4096, 1u64 << 63, GFP_KERNEL)
        .is_null());
}

#[test]
fn vfree_misuse() {
    let (mut a, mut hw, mut vm) = setup();
    vm.vfree(&mut a.pa, &mut hw, core::ptr::null_mut()).unwrap();
    let p = vm.vmalloc(&mut a.pa, &mut hw, 8192, GFP_KERNEL) as u64;
    let e = vm
        .vfree(&mut a.pa, &mut hw, (p + 4096) as *mut u8)
        .unwrap_err();
    assert_eq!(
        e,
        MmError::VfreeInterior {
            addr: p + 4096,
            area_start: p
        }
    );
    assert!(e.to_string().contains("inside the vmalloc area"), "{e}");
    let e = vm
        .vfree(&mut a.pa, &mut hw, (p + 8192) as *mut u8)
        .unwrap_err(); // guard
    assert_eq!(e, MmError::NotVmallocArea { addr: p + 8192 });
    let e = vm
        .vfree(&mut a.pa, &mut hw, 0x1234_5000 as *mut u8)
        .unwrap_err();
    assert!(
        e.to_string().contains("not the start of any vmalloc area"),
        "{e}"
    );
    assert_eq!(hw.nr_mapped(), 2, "errors change nothing");
    vm.vfree(&mut a.pa, &mut hw, p as *mut u8).unwrap();
    assert!(matches!(
        vm.vfree(&mut a.pa, &mut hw, p as *mut u8),
        Err(MmError::NotVmallocArea { .. })
    ));
    // vmalloc frames refuse kfree/free_pages.
    let q = vm.vmalloc(&mut a.pa, &mut hw, 4096, GFP_KERNEL) as u64;
    let phys = vm.vmalloc_to_page(q).unwrap();
    assert!(matches!(
        a.pa.buddy.free_pages(phys >> 12, 0),
        Err(MmError::PageNotAllocated { .. })
    ));
    vm.vfree(&mut a.pa, &mut hw, q as *mut u8).unwrap();
}

#[test]
fn oom_leaks_nothing() {
    let (mut a, mut hw, mut vm) = setup();
    vm.set_flush_mode(FlushMode::Full);
    let free0 = a.pa.buddy.nr_free_pages();
    let p = vm.vmalloc(&mut a.pa, &mut hw, 64 << 20, GFP_KERNEL);
    assert!(p.is_null());
    assert_eq!(a.pa.buddy.nr_free_pages(), free0);
    assert_eq!(vm.free_bytes(), VEND - VSTART);
    assert_eq!(hw.nr_mapped(), 0);
    assert_eq!(vm.stats().areas, 0);
    // Map failure half-way: everything undone.
    hw.fail_after = Some(3);
    assert!(vm
        .vmalloc(&mut a.pa, &mut hw, 8 * 4096, GFP_KERNEL)
        .is_null());
    hw.fail_after = None;
    assert_eq!(a.pa.buddy.nr_free_pages(), free0);
    assert_eq!(vm.free_bytes(), VEND - VSTART);
    assert_eq!(hw.nr_mapped(), 0);
    // Address space exhaustion.
    let mut small = Vmalloc::new(VSTART, VSTART + 8192);
    assert!(small
        .vmalloc(&mut a.pa, &mut hw, 8192, GFP_KERNEL)
        .is_null());
    assert_eq!(a.pa.buddy.nr_free_pages(), free0);
}

#[test]
fn phases_are_reported_in_order() {
    let (mut a, mut hw, mut vm) = setup();
    let mut seen = Vec::new();
    let p = vm.vmalloc_phased(
        &mut a.pa,
        &mut hw,
        4096,
        4096,
        GFP_KERNEL,
        false,
        &mut |ph| seen.push(ph),
    );
    vm.vfree_phased(&mut a.pa, &mut hw, p, &mut |ph| seen.push(ph))
        .unwrap();
    assert_eq!(seen, Phase::ALL, "every mark once, in order");
    for (i, ph) in Phase::ALL.iter().enumerate() {
        assert_eq!(ph.index(), i);
    }
    // In every flush mode, and for a huge area, each mark comes exactly once in order.
    for mode in [FlushMode::PerPage, FlushMode::Full, FlushMode::Lazy] {
        vm.set_flush_mode(mode);
        for (size, huge) in [(4096, false), (40 * 4096, false), (2 << 20, true)] {
            seen.clear();
            let p = vm.vmalloc_phased(
                &mut a.pa,
                &mut hw,
                size,
                4096,
                GFP_KERNEL,
                huge,
                &mut |ph| seen.push(ph),
            );
            assert!(!p.is_null());
            vm.vfree_phased(&mut a.pa, &mut hw, p, &mut |ph| seen.push(ph))
                .unwrap();
            assert_eq!(seen, Phase::ALL, "{mode:?} size {size}");
        }
    }
}

#[test]
fn huge_over_a_range_once_mapped_with_4k_leaves() {
    // Linux frees an empty PTE table when a huge PMD goes over it (pmd_free_pte_page);
    // without that, the 2M leaf is refused and vmalloc_huge falls back to 4K.
    let (mut a, mut hw, mut vm) = setup();
    for mode in [FlushMode::Lazy, FlushMode::PerPage, FlushMode::Full] {
        vm.set_flush_mode(mode);
        let p = vm.vmalloc_align(&mut a.pa, &mut hw, 2 << 20, 2 << 20, GFP_KERNEL);
        assert_eq!(vm.find_area(p as u64).unwrap().leaf, LeafSize::Size4K);
        vm.vfree(&mut a.pa, &mut hw, p).unwrap();
        vm.purge_lazy(&mut hw);
        let freed = hw.pte_tables_freed;
        let q = vm.vmalloc_huge(&mut a.pa, &mut hw, 2 << 20, GFP_KERNEL);
        assert_eq!(q, p, "{mode:?}: same range reused");
        let info = vm.find_area(q as u64).unwrap();
        assert_eq!(
            (info.leaf, info.nr_leaves),
            (LeafSize::Size2M, 1),
            "{mode:?}"
        );
        assert_eq!(
            hw.pte_tables_freed,
            freed + 1,
            "{mode:?}: the empty PTE table went"
        );
        assert_eq!(vm.stats().huge_fallbacks, 0);
        assert_eq!(vm.stats().last_huge_fallback, None);
        vm.vfree(&mut a.pa, &mut hw, q).unwrap();
        vm.purge_lazy(&mut hw);
    }
}

#[test]
fn huge_fallback_states_its_reason() {
    // A live 4K area inside the only 2 MiB-aligned range below the end: 2M must fail.
    let mut a = HostArena::new(16 << 20);
    let mut hw = FakePageTable::new();
    let mut vm = Vmalloc::new(VSTART, VSTART + (4 << 20));
    let small = vm.vmalloc(&mut a.pa, &mut hw, 4096, GFP_KERNEL);
    let p = vm.vmalloc_huge(&mut a.pa, &mut hw, 2 << 20, GFP_KERNEL);
    // The 2 MiB-aligned candidates are VSTART (taken) and VSTART + 2 MiB (2M + guard
    // does not fit before the end): 4K leaves after `small` instead, and the reason says so.
    let info = vm.find_area(p as u64).expect("fell back to 4K leaves");
    assert_eq!(info.leaf, LeafSize::Size4K);
    assert_eq!(vm.stats().huge_fallbacks, 1);
    assert_eq!(
        vm.stats().last_huge_fallback,
        Some(HugeFallback::NoAlignedRange)
    );
    vm.vfree(&mut a.pa, &mut hw, p).unwrap();
    vm.vfree(&mut a.pa, &mut hw, small).unwrap();
}
