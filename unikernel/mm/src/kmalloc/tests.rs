//! Unit tests of kmalloc/kfree against the host arena.
use super::*;
use crate::gfp::{GFP_ATOMIC, GFP_KERNEL};
use crate::testing::HostArena;
use std::string::ToString;
use std::vec::Vec;

fn setup(debug: bool) -> (HostArena, Kmalloc) {
    (HostArena::new(8 << 20), Kmalloc::with_debug(debug))
}

#[test]
fn index_table_matches_linux() {
    let cases = [
        (1, 8),
        (8, 8),
        (9, 16),
        (16, 16),
        (17, 32),
        (32, 32),
        (33, 64),
        (64, 64),
        (65, 96),
        (96, 96),
        (97, 128),
        (128, 128),
        (129, 192),
        (192, 192),
        (193, 256),
        (256, 256),
        (257, 512),
        (1000, 1024),
        (1025, 2048),
        (4096, 4096),
        (4097, 8192),
        (8192, 8192),
    ];
    for (size, class) in cases {
        assert_eq!(
            KMALLOC_SIZES[kmalloc_index(size).unwrap()],
            class,
            "size {size}"
        );
    }
    assert_eq!(kmalloc_index(0), None);
    assert_eq!(kmalloc_index(8193), None);
}

#[test]
fn slab_layouts() {
    let k = Kmalloc::new();
    for s in k.cache_stats() {
        assert!(s.objects_per_slab >= 4, "{}", s.name);
        assert!(s.slab_order <= 3);
    }
    let d = Kmalloc::with_debug(true);
    for s in d.cache_stats() {
        assert_eq!(s.stride, s.object_size + 16);
        assert!(s.objects_per_slab >= 3);
    }
}

#[test]
fn basic_alloc_free_and_reuse() {
    for debug in [false, true] {
        let (mut a, mut k) = setup(debug);
        let initial = a.pa.buddy.nr_free_pages();
        let p = k.kmalloc(&mut a.pa, 64, GFP_KERNEL);
        assert!(!p.is_null() && a.contains(p, 64));
        assert_eq!(p as usize % if debug { 8 } else { 64 }, 0);
        assert_eq!(k.ksize(&a.pa, p), 64);
        assert_eq!(k.nr_allocated(), 1);
        k.kfree(&mut a.pa, p).unwrap();
        let q = k.kmalloc(&mut a.pa, 50, GFP_ATOMIC);
        assert_eq!(p, q, "LIFO reuse of the freed object");
        k.kfree(&mut a.pa, q).unwrap();
        assert_eq!(k.nr_allocated(), 0);
        k.shrink(&mut a.pa);
        assert_eq!(a.pa.buddy.nr_free_pages(), initial);
        assert!(k.take_debug_report().is_none());
    }
}

#[test]
fn zero_size_and_null() {
    let (mut a, mut k) = setup(false);
    let z = k.kmalloc(&mut a.pa, 0, GFP_KERNEL);
    assert_eq!(z, ZERO_SIZE_PTR);
    assert_eq!(k.ksize(&a.pa, z), 0);
    k.kfree(&mut a.pa, z).unwrap();
    k.kfree(&mut a.pa, core::ptr::null_mut()).unwrap();
    assert_eq!(k.nr_allocated(), 0);
}

#[test]
fn kzalloc_kcalloc_krealloc() {
    let (mut a, mut k) = setup(true);
    // Dirty an object, free it, then kzalloc must hand back zeroes.
    let p = k.kmalloc(&mut a.pa, 128, GFP_KERNEL);
    // SAFETY: p is a live 128-byte object.
    unsafe { core::ptr::write_bytes(p, 0x5a, 128) };
    k.kfree(&mut a.pa, p).unwrap();
    let z = k.kzalloc(&mut a.pa, 100, GFP_KERNEL);
    // SAFETY: z is a live 128-byte object.
    assert!(unsafe { core::slice::from_raw_parts(z, 128) }
        .iter()
        .all(|&b| b == 0));
    let c = k.kcalloc(&mut a.pa, 10, 30, GFP_KERNEL);
    assert_eq!(k.ksize(&a.pa, c), 512);
    assert!(k
        .kcalloc(&mut a.pa, usize::MAX / 2, 3, GFP_KERNEL)
        .is_null());
    // krealloc grows and keeps contents.
    // SAFETY: z is live with 128 bytes.
    unsafe { core::ptr::write_bytes(z, 0x11, 100) };
    let same = k.krealloc(&mut a.pa, z, 120, GFP_KERNEL);
    assert_eq!(same, z);
    let g = k.krealloc(&mut a.pa, z, 5000, GFP_KERNEL);
    assert_ne!(g, z);
    assert_eq!(k.ksize(&a.pa, g), 8192);
    // SAFETY: g is live with 8192 bytes.
    assert!(unsafe { core::slice::from_raw_parts(g, 100) }
        .iter()
        .all(|&b| b == 0x11));
    let big = k.krealloc(&mut a.pa, g, 100_000, GFP_KERNEL);
    assert_eq!(k.ksize(&a.pa, big), 32 << 12);
    // SAFETY: big is live with 128 KiB.
    assert!(unsafe { core::slice::from_raw_parts(big, 100) }
        .iter()
        .all(|&b| b == 0x11));
    assert_eq!(k.krealloc(&mut a.pa, big, 0, GFP_KERNEL), ZERO_SIZE_PTR);
    k.kfree(&mut a.pa, c).unwrap();
    assert_eq!(k.nr_allocated(), 0);
    assert!(k.take_debug_report().is_none());
}

#[test]
fn large_kmalloc() {
    let (mut a, mut k) = setup(false);
    let before = a.pa.buddy.nr_free_pages();
    let p = k.kmalloc(&mut a.pa, 16384, GFP_KERNEL);
    assert_eq!(p as usize % PAGE_SIZE, 0);
    assert_eq!(k.ksize(&a.pa, p), 16384);
    assert_eq!(k.large_stats(), (1, 4));
    // SAFETY: pointer arithmetic inside the allocation.
    let mid = unsafe { p.add(4096) };
    assert!(matches!(
        k.kfree(&mut a.pa, mid),
        Err(MmError::ForeignPointer { .. })
    ));
    // SAFETY: as above.
    let mid = unsafe { p.add(8) };
    assert!(matches!(
        k.kfree(&mut a.pa, mid),
        Err(MmError::ForeignPointer { .. })
    ));
    k.kfree(&mut a.pa, p).unwrap();
    assert_eq!(a.pa.buddy.nr_free_pages(), before);
    assert!(k.kmalloc(&mut a.pa, 1 << 40, GFP_KERNEL).is_null());
}

#[test]
fn double_free_detected() {
    let (mut a, mut k) = setup(true);
    let p = k.kmalloc(&mut a.pa, 64, GFP_KERNEL);
    let q = k.kmalloc(&mut a.pa, 64, GFP_KERNEL);
    k.kfree(&mut a.pa, p).unwrap();
    k.kfree(&mut a.pa, q).unwrap();
    let e = k.kfree(&mut a.pa, p).unwrap_err(); // not the freelist head: needs debug
    assert_eq!(
        e,
        MmError::DoubleFree {
            addr: p as u64,
            cache: "kmalloc-64"
        }
    );
    let msg = e.to_string();
    assert!(
        msg.contains("double kfree") && msg.contains("kmalloc-64"),
        "{msg}"
    );
    assert!(msg.contains(&std::format!("{:#x}", p as u64)));
    // Non-debug mode still catches the immediate double free.
    let (mut a, mut k) = setup(false);
    let p = k.kmalloc(&mut a.pa, 32, GFP_KERNEL);
    k.kfree(&mut a.pa, p).unwrap();
    assert!(matches!(
        k.kfree(&mut a.pa, p),
        Err(MmError::DoubleFree {
            cache: "kmalloc-32",
            ..
        })
    ));
}

#[test]
fn foreign_pointers_detected() {
    let (mut a, mut k) = setup(true);
    let stack = 0u64;
    let e = k
        .kfree(&mut a.pa, &stack as *const u64 as *mut u8)
        .unwrap_err();
    assert!(matches!(e, MmError::ForeignPointer { .. }));
    assert!(e.to_string().contains("not in the direct map"), "{e}");
    let p = k.kmalloc(&mut a.pa, 96, GFP_KERNEL);
    // SAFETY: pointer arithmetic inside the object.
    let mid = unsafe { p.add(8) };
    let e = k.kfree(&mut a.pa, mid).unwrap_err();
    assert!(e.to_string().contains("inside a slab object"), "{e}");
    let page = a.pa.alloc_pages(0, GFP_KERNEL).unwrap().as_ptr();
    let e = k.kfree(&mut a.pa, page).unwrap_err();
    assert!(e.to_string().contains("alloc_pages"), "{e}");
    a.pa.free_pages(page, 0).unwrap();
    let e = k.kfree(&mut a.pa, page).unwrap_err();
    assert!(e.to_string().contains("free in the buddy"), "{e}");
    // Slab pages refuse free_pages.
    let e =
        a.pa.free_pages(((p as usize) & !(PAGE_SIZE - 1)) as *mut u8, 0)
            .unwrap_err();
    assert!(matches!(e, MmError::PageNotAllocated { .. }));
    k.kfree(&mut a.pa, p).unwrap();
    assert_eq!(k.nr_allocated(), 0);
}

#[test]
fn foreign_pointer_non_debug_power_of_two() {
    let (mut a, mut k) = setup(false);
    let p = k.kmalloc(&mut a.pa, 64, GFP_KERNEL);
    // SAFETY: pointer arithmetic inside the object.
    let mid = unsafe { p.add(16) };
    assert!(matches!(
        k.kfree(&mut a.pa, mid),
        Err(MmError::ForeignPointer { .. })
    ));
    k.kfree(&mut a.pa, p).unwrap();
}

#[test]
fn redzone_overrun_detected() {
    let (mut a, mut k) = setup(true);
    let p = k.kmalloc(&mut a.pa, 30, GFP_KERNEL); // kmalloc-32
                                                  // SAFETY: deliberately writes one byte past the 32-byte object into its redzone,
                                                  // which is memory of the same slab (debug layout).
    unsafe { p.add(32).write(0) };
    let e = k.kfree(&mut a.pa, p).unwrap_err();
    assert_eq!(
        e,
        MmError::Redzone {
            addr: p as u64,
            cache: "kmalloc-32",
            offset: 32
        }
    );
    assert!(e.to_string().contains("past the end"), "{e}");
    assert_eq!(k.ksize(&a.pa, p), 32);
}

#[test]
fn use_after_free_write_detected() {
    let (mut a, mut k) = setup(true);
    let p = k.kmalloc(&mut a.pa, 16, GFP_KERNEL);
    k.kfree(&mut a.pa, p).unwrap();
    // SAFETY: deliberately writes into a freed object (still slab memory).
    unsafe { p.add(3).write(1) };
    let q = k.kmalloc(&mut a.pa, 16, GFP_KERNEL);
    assert_eq!(p, q);
    let e = k.take_debug_report().unwrap();
    assert_eq!(
        e,
        MmError::UseAfterFree {
            addr: p as u64,
            cache: "kmalloc-16",
            offset: 3
        }
    );
    assert!(e.to_string().contains("use after free"));
}

#[test]
fn set_debug_rules() {
    let (mut a, mut k) = setup(false);
    let p = k.kmalloc(&mut a.pa, 8, GFP_KERNEL);
    assert_eq!(
        k.set_debug(&mut a.pa, true),
        Err(MmError::DebugModeBusy { live_objects: 1 })
    );
    k.kfree(&mut a.pa, p).unwrap();
    k.set_debug(&mut a.pa, true).unwrap();
    assert!(k.debug());
    assert_eq!(k.cache_for(8).unwrap().stride, 24);
    let p = k.kmalloc(&mut a.pa, 8, GFP_KERNEL);
    k.kfree(&mut a.pa, p).unwrap();
    assert!(k.take_debug_report().is_none());
}

#[test]
fn spare_slab_policy_and_stats() {
    let (mut a, mut k) = setup(false);
    let initial = a.pa.buddy.nr_free_pages();
    let v: Vec<*mut u8> = (0..2000)
        .map(|_| k.kmalloc(&mut a.pa, 64, GFP_KERNEL))
        .collect();
    let st = &k.cache_stats()[3];
    assert_eq!(st.name, "kmalloc-64");
    assert_eq!(st.active_objects, 2000);
    assert_eq!(st.slabs, 2000u64.div_ceil(64));
    for p in v {
        k.kfree(&mut a.pa, p).unwrap();
    }
    let st = &k.cache_stats()[3];
    assert_eq!((st.active_objects, st.slabs), (0, 1), "one spare slab kept");
    k.shrink(&mut a.pa);
    assert_eq!(k.cache_stats()[3].slabs, 0);
    assert_eq!(a.pa.buddy.nr_free_pages(), initial);
}

#[test]
fn oom_returns_null() {
    for debug in [false, true] {
        let mut a = HostArena::new(2 << 20);
        let mut k = Kmalloc::with_debug(debug);
        let initial = a.pa.buddy.nr_free_pages();
        let mut v = Vec::new();
        loop {
            let p = k.kmalloc(&mut a.pa, 1024, GFP_KERNEL);
            if p.is_null() {
                break;
            }
            v.push(p);
        }
        assert!(v.len() >= 1500);
        assert!(k.kmalloc(&mut a.pa, 20000, GFP_KERNEL).is_null());
        assert!(k.kmalloc(&mut a.pa, 4096, GFP_KERNEL).is_null());
        for p in v {
            k.kfree(&mut a.pa, p).unwrap();
        }
        k.shrink(&mut a.pa);
        assert_eq!(k.nr_allocated(), 0);
        assert_eq!(a.pa.buddy.nr_free_pages(), initial);
    }
}
