//! In-guest self-tests of memory management (`configs/selftest.toml`): each check walks
//! the real page tables or probes real addresses and reports one `selftest` record.
//! Failures make the run exit with `GuestExit::Failure`.
use crate::arch::idt::probe_read;
use crate::mm::{self, PAGE_OFFSET};
use crate::report::selftest;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use kmbench_mm::{kmalloc::KMALLOC_SIZES, Gfp, __GFP_ZERO, GFP_KERNEL, MAX_ORDER};
use kmbench_protocol::PageSize;
use x86_64::structures::paging::PageTableFlags as F;

fn check(name: &str, r: Result<String, String>) {
    match r {
        Ok(detail) => selftest(name, true, detail),
        Err(detail) => selftest(name, false, detail),
    }
}

fn translate(addr: u64) -> Option<(u64, PageSize, F)> {
    mm::translate(addr)
}

pub fn run() {
    log::info!("running memory-management self-tests");
    check("mm/null_page_unmapped", null_page());
    check("mm/kernel_image_permissions", image_permissions());
    check("mm/direct_map_leaf", direct_map_leaf());
    check("buddy/alloc_free_all_orders", buddy_orders());
    check("kmalloc/size_classes", kmalloc_classes());
    check("kmalloc/physically_contiguous", kmalloc_contiguous());
    check("kmalloc/kzalloc_kcalloc_krealloc", kmalloc_variants());
    check("vmalloc/area_mapping_and_lookup", vmalloc_area());
    check("vmalloc/guard_page_faults", vmalloc_guard());
    check("vmalloc/vfree_unmaps", vmalloc_vfree());
    check("vmalloc_huge/2m_leaves", vmalloc_huge());
    check(
        "vmalloc_huge/2m_over_a_freed_4k_range",
        vmalloc_huge_over_freed_4k(),
    );
    check("stacks/guard_below_run_stack", stack_guard());
    check("mm/oom_returns_null", oom());
    if mm::mm_debug() {
        check("mm_debug/double_free_detected", debug_double_free());
    }
}

fn null_page() -> Result<String, String> {
    if translate(0).is_some() {
        return Err("page 0 is mapped".into());
    }
    match probe_read(8) {
        Err(()) => Ok("reading address 0x8 faults".into()),
        Ok(_) => Err("reading address 0x8 did not fault".into()),
    }
}

fn image_permissions() -> Result<String, String> {
    extern "C" {
        static __kernel_start: u8;
        static __text_end: u8;
        static __rodata_end: u8;
    }
    // SAFETY: only addresses of linker symbols are taken.
    let (text, rodata, data) = unsafe {
        (
            &__kernel_start as *const u8 as u64,
            &__text_end as *const u8 as u64,
            &__rodata_end as *const u8 as u64,
        )
    };
    let (_, _, ft) = translate(text).ok_or("text unmapped")?;
    let (_, _, fr) = translate(rodata).ok_or("rodata unmapped")?;
    let (_, _, fd) = translate(data).ok_or("data unmapped")?;
    let ok = !ft.contains(F::WRITABLE)
        && !ft.contains(F::NO_EXECUTE)
        && !fr.contains(F::WRITABLE)
        && fr.contains(F::NO_EXECUTE)
        && fd.contains(F::WRITABLE)
        && fd.contains(F::NO_EXECUTE);
    let d = format!("text {ft:?}; rodata {fr:?}; data {fd:?}");
    if ok {
        Ok(d)
    } else {
        Err(d)
    }
}

fn direct_map_leaf() -> Result<String, String> {
    let want = mm::with(|m| m.direct_map_leaf);
    // Walk the direct map leaf-sized step by step: every mapped address must translate
    // to virt - PAGE_OFFSET, and some step must be mapped by a leaf of the configured size
    // (unless RAM is too small or too holey for one, e.g. 1G leaves under 2 GiB of RAM).
    let max_phys = mm::with(|m| m.pages.buddy.nr_pages()) << 12;
    let step = want.bytes().max(2 << 20);
    let (mut found, mut checked) = (None, 0u64);
    let mut phys = 0;
    while phys < max_phys {
        let virt = PAGE_OFFSET + phys + 0x1000;
        if let Some((p, leaf, _)) = translate(virt) {
            if p != phys + 0x1000 {
                return Err(format!(
                    "virt {virt:#x} maps phys {p:#x}, expected {:#x}",
                    phys + 0x1000
                ));
            }
            checked += 1;
            if leaf == want && found.is_none() {
                found = Some(virt);
            }
        }
        phys += step;
    }
    let biggest = mm::with(|m| m.direct_map_leaves)[match want {
        PageSize::Size4K => 0,
        PageSize::Size2M => 1,
        PageSize::Size1G => 2,
    }];
    if let Some(v) = found {
        if probe_read(v).is_err() {
            return Err(format!(
                "{v:#x} is mapped by a {want:?} leaf but reading it faults"
            ));
        }
    }
    match found {
        Some(v) => Ok(format!("{checked} probes across RAM translate to virt - PAGE_OFFSET; {v:#x} is mapped by a {want:?} leaf and readable ({biggest} such leaves)")),
        None if biggest == 0 => Ok(format!("no RAM range is large and aligned enough for a {want:?} leaf; smaller leaves used ({checked} probes ok)")),
        None => Err(format!("{biggest} {want:?} leaves reported but none found by walking the tables")),
    }
}

fn buddy_orders() -> Result<String, String> {
    let before = mm::nr_free_pages();
    let mut got = Vec::new();
    for order in 0..=10u8 {
        let p = mm::alloc_pages(order, GFP_KERNEL).ok_or(format!("order {order} failed"))?;
        let phys = p.as_ptr() as u64 - PAGE_OFFSET;
        if !phys.is_multiple_of(4096 << order) {
            return Err(format!(
                "order {order} block at {phys:#x} is not aligned to its size"
            ));
        }
        got.push((p, order));
    }
    let big = mm::alloc_pages(MAX_ORDER, GFP_KERNEL);
    for (p, o) in got {
        mm::free_pages(p.as_ptr(), o);
    }
    let big_note = match big {
        Some(p) => {
            mm::free_pages(p.as_ptr(), MAX_ORDER);
            "an order-18 (1 GiB) block was available"
        }
        None => "no free order-18 (1 GiB) block with this much RAM",
    };
    let after = mm::nr_free_pages();
    if before != after {
        return Err(format!(
            "free pages {before} before, {after} after freeing everything"
        ));
    }
    Ok(format!(
        "orders 0..10 aligned and coalesced back ({after} free pages); {big_note}"
    ))
}

fn kmalloc_classes() -> Result<String, String> {
    for &size in KMALLOC_SIZES.iter() {
        let mut ptrs = Vec::new();
        for i in 0..32u8 {
            let p = mm::kmalloc(size, GFP_KERNEL);
            if p.is_null() {
                return Err(format!("kmalloc({size}) returned null"));
            }
            // Power-of-two classes are naturally aligned; debug mode's redzones only keep 8.
            let align = if size.is_power_of_two() && !mm::mm_debug() {
                size.min(4096)
            } else {
                8
            };
            if !(p as usize).is_multiple_of(align) {
                return Err(format!("kmalloc({size}) = {p:p} not {align}-aligned"));
            }
            if mm::ksize(p) < size {
                return Err(format!("ksize({p:p}) = {} < {size}", mm::ksize(p)));
            }
            // SAFETY: p points to at least `size` bytes just allocated.
            unsafe { core::ptr::write_bytes(p, i, size) };
            ptrs.push((p, i));
        }
        for (p, i) in ptrs {
            // SAFETY: p is a live object of `size` bytes written above.
            let ok = unsafe { core::slice::from_raw_parts(p, size) }
                .iter()
                .all(|&b| b == i);
            if !ok {
                return Err(format!(
                    "kmalloc({size}) object {p:p} lost its contents (overlap?)"
                ));
            }
            mm::kfree_checked(p);
        }
    }
    mm::kfree_checked(core::ptr::null_mut());
    Ok(format!(
        "{} classes: aligned, ksize ≥ size, contents kept; kfree(NULL) is a no-op",
        KMALLOC_SIZES.len()
    ))
}

fn phys_contiguous(p: u64, len: u64) -> Result<(), String> {
    let mut page = p & !0xfff;
    while page < p + len {
        let (phys, _, _) = translate(page).ok_or(format!("{page:#x} unmapped"))?;
        if phys != page - PAGE_OFFSET {
            return Err(format!(
                "page {page:#x} maps {phys:#x}, not {:#x}",
                page - PAGE_OFFSET
            ));
        }
        page += 4096;
    }
    Ok(())
}

fn kmalloc_contiguous() -> Result<String, String> {
    let mut out = String::new();
    for size in [8192usize, 64 << 10, 4 << 20] {
        let p = mm::kmalloc(size, GFP_KERNEL);
        if p.is_null() {
            return Err(format!("kmalloc({size}) returned null"));
        }
        phys_contiguous(p as u64, size as u64).map_err(|e| format!("kmalloc({size}): {e}"))?;
        mm::kfree_checked(p);
        out.push_str(&format!("{size} "));
    }
    Ok(format!(
        "page-table walk: kmalloc of {out}bytes is physically contiguous in the direct map"
    ))
}

fn kmalloc_variants() -> Result<String, String> {
    let p = mm::kzalloc(512, GFP_KERNEL);
    // SAFETY: p is a live 512-byte object.
    if p.is_null()
        || unsafe { core::slice::from_raw_parts(p, 512) }
            .iter()
            .any(|&b| b != 0)
    {
        return Err("kzalloc(512) not zeroed".into());
    }
    // SAFETY: as above; dirty it so the next zeroed allocation of the slot is meaningful.
    unsafe { core::ptr::write_bytes(p, 0xee, 512) };
    mm::kfree_checked(p);
    let p = mm::kmalloc(512, GFP_KERNEL | __GFP_ZERO);
    // SAFETY: p is a live 512-byte object.
    if p.is_null()
        || unsafe { core::slice::from_raw_parts(p, 512) }
            .iter()
            .any(|&b| b != 0)
    {
        return Err("kmalloc(512, __GFP_ZERO) not zeroed".into());
    }
    mm::kfree_checked(p);
    if !mm::kcalloc(usize::MAX / 2, 4, GFP_KERNEL).is_null() {
        return Err("kcalloc overflow did not return null".into());
    }
    let p = mm::kcalloc(16, 8, GFP_KERNEL);
    if p.is_null() {
        return Err("kcalloc(16, 8) returned null".into());
    }
    // SAFETY: p is a live 128-byte object.
    unsafe { core::ptr::write_bytes(p, 0x5a, 128) };
    let q = mm::krealloc(p, 4096, GFP_KERNEL);
    // SAFETY: q is a live object of at least 4096 bytes whose first 128 came from p.
    if q.is_null()
        || unsafe { core::slice::from_raw_parts(q, 128) }
            .iter()
            .any(|&b| b != 0x5a)
    {
        return Err("krealloc did not keep the contents".into());
    }
    mm::kfree_checked(q);
    Ok("kzalloc and __GFP_ZERO zero, kcalloc overflow → NULL, krealloc keeps contents".into())
}

fn vmalloc_area() -> Result<String, String> {
    let size = 16 * 4096;
    let p = mm::vmalloc(size, GFP_KERNEL) as u64;
    if p == 0 {
        return Err("vmalloc(64 KiB) returned null".into());
    }
    let mut frames = Vec::new();
    for i in 0..16u64 {
        let (phys, leaf, _) = translate(p + i * 4096).ok_or(format!("page {i} unmapped"))?;
        if leaf != PageSize::Size4K {
            return Err(format!("page {i} mapped with {leaf:?}, expected 4K"));
        }
        let via_lookup = mm::with(|m| m.vmalloc.vmalloc_to_page(p + i * 4096 + 7));
        if via_lookup != Some(phys + 7) {
            return Err(format!(
                "vmalloc_to_page disagrees with the page tables at page {i}"
            ));
        }
        frames.push(phys);
    }
    let inner = mm::with(|m| m.vmalloc.find_area(p + 5 * 4096 + 100))
        .ok_or("interior address not found in any area")?;
    if inner.start != p {
        return Err(format!(
            "find_area(interior) = {:#x}, expected {p:#x}",
            inner.start
        ));
    }
    // SAFETY: the area is 64 KiB of freshly mapped memory.
    unsafe {
        core::ptr::write_bytes(p as *mut u8, 0x77, size);
        if core::slice::from_raw_parts(p as *const u8, size)
            .iter()
            .any(|&b| b != 0x77)
        {
            return Err("area contents not kept".into());
        }
    }
    let contiguous = frames.windows(2).all(|w| w[1] == w[0] + 4096);
    let distinct = {
        let mut f = frames.clone();
        f.sort_unstable();
        f.dedup();
        f.len() == frames.len()
    };
    mm::vfree(p as *mut u8);
    if !distinct {
        return Err("two pages of one area share a frame".into());
    }
    let z = mm::vzalloc(8 * 4096);
    // SAFETY: z is an 8-page area just mapped.
    if z.is_null()
        || unsafe { core::slice::from_raw_parts(z, 8 * 4096) }
            .iter()
            .any(|&b| b != 0)
    {
        return Err("vzalloc not zeroed".into());
    }
    mm::vfree(z);
    Ok(format!(
        "16 pages, 4K leaves, distinct frames (physically {}), vmalloc_to_page and find_area agree with the page tables",
        if contiguous { "contiguous by chance" } else { "scattered" }
    ))
}

fn vmalloc_guard() -> Result<String, String> {
    let p = mm::vmalloc(3 * 4096, GFP_KERNEL) as u64;
    if p == 0 {
        return Err("vmalloc failed".into());
    }
    let guard = p + 3 * 4096;
    let r = match (probe_read(p + 3 * 4096 - 1), probe_read(guard)) {
        (Ok(_), Err(())) => Ok(format!("last byte readable, guard page {guard:#x} faults")),
        (Err(()), _) => Err("last byte of the area faults".into()),
        (_, Ok(_)) => Err(format!("guard page {guard:#x} is readable")),
    };
    mm::vfree(p as *mut u8);
    r
}

fn vmalloc_vfree() -> Result<String, String> {
    let p = mm::vmalloc(4 * 4096, GFP_KERNEL) as u64;
    if p == 0 {
        return Err("vmalloc failed".into());
    }
    let before = mm::nr_free_pages();
    mm::vfree(p as *mut u8);
    for i in 0..4 {
        if translate(p + i * 4096).is_some() {
            return Err(format!("page {i} still mapped after vfree"));
        }
    }
    if mm::with(|m| m.vmalloc.find_area(p).is_some()) {
        return Err("area still registered after vfree".into());
    }
    let after = mm::nr_free_pages();
    if after < before + 4 {
        return Err(format!(
            "vfree returned {} pages, expected ≥ 4",
            after - before
        ));
    }
    Ok("PTEs cleared, area gone, frames back in the buddy".into())
}

fn vmalloc_huge() -> Result<String, String> {
    let size = 4 << 20;
    let p = mm::vmalloc_huge(size, GFP_KERNEL) as u64;
    if p == 0 {
        return Err("vmalloc_huge(4 MiB) returned null".into());
    }
    let (_, l0, _) = translate(p).ok_or("unmapped")?;
    let (_, l1, _) = translate(p + (2 << 20)).ok_or("unmapped")?;
    // SAFETY: 4 MiB just mapped.
    unsafe { core::ptr::write_bytes(p as *mut u8, 1, size) };
    mm::vfree(p as *mut u8);
    if l0 == PageSize::Size2M && l1 == PageSize::Size2M {
        Ok("4 MiB area mapped by two 2 MiB leaves".into())
    } else {
        Err(format!("leaves {l0:?}/{l1:?}, expected 2M"))
    }
}

/// Map a 2 MiB-aligned range with 4K leaves, free it, purge, then ask vmalloc_huge for
/// 2 MiB: first fit hands out the same range, whose emptied PTE table must be freed
/// (Linux's pmd_free_pte_page) for a 2 MiB leaf to go in. The page-table walk decides.
fn vmalloc_huge_over_freed_4k() -> Result<String, String> {
    const M2: usize = 2 << 20;
    if !mm::prepare_vmalloc(M2) {
        return Err("not enough memory for 2 MiB".into());
    }
    let p = mm::with(|m| {
        // Ranges freed lazily by earlier tests return to the pool first, so that first fit
        // sees the same free ranges for both allocations.
        m.vmalloc.purge_lazy(&mut m.pt);
        m.vmalloc
            .vmalloc_align(&mut m.pages, &mut m.pt, M2, M2 as u64, GFP_KERNEL) as u64
    });
    if p == 0 {
        return Err("vmalloc(2 MiB, align 2 MiB) returned null".into());
    }
    match translate(p) {
        Some((_, PageSize::Size4K, _)) => {}
        other => return Err(format!("4K area at {p:#x} walks to {other:?}")),
    }
    mm::vfree(p as *mut u8);
    let (freed_before, fallbacks_before) = mm::with(|m| {
        m.vmalloc.purge_lazy(&mut m.pt);
        (m.pt.pte_tables_freed, m.vmalloc.stats().huge_fallbacks)
    });
    let q = mm::vmalloc_huge(M2, GFP_KERNEL) as u64;
    if q == 0 {
        return Err("vmalloc_huge(2 MiB) returned null".into());
    }
    let walked = translate(q).map(|(_, l, _)| l);
    let (freed, fell_back) = mm::with(|m| {
        (
            m.pt.pte_tables_freed - freed_before,
            m.vmalloc.stats().huge_fallbacks - fallbacks_before,
        )
    });
    // SAFETY: q is a fresh 2 MiB area.
    let kept = unsafe {
        core::ptr::write_bytes(q as *mut u8, 0x5a, M2);
        core::slice::from_raw_parts(q as *const u8, M2)
            .iter()
            .all(|&b| b == 0x5a)
    };
    mm::vfree(q as *mut u8);
    if q != p {
        return Err(format!(
            "vmalloc_huge got {q:#x}, not the freed 4K range {p:#x}: test premise broken"
        ));
    }
    if walked != Some(PageSize::Size2M) || fell_back != 0 {
        let why = mm::with(|m| m.vmalloc.stats().last_huge_fallback)
            .map_or("none recorded", |f| f.describe());
        return Err(format!(
            "the page-table walk says {walked:?}, {fell_back} fallback(s) ({why})"
        ));
    }
    if freed != 1 {
        return Err(format!("{freed} PTE tables freed, expected 1"));
    }
    if !kept {
        return Err("contents through the 2 MiB leaf not kept".into());
    }
    Ok(format!(
        "{p:#x}: 4K leaves, vfree + purge, then vmalloc_huge reused it with one 2 MiB leaf (the emptied PTE table was freed)"
    ))
}

fn stack_guard() -> Result<String, String> {
    let sp = crate::arch::stack_pointer();
    let bottom = sp & !(mm::stacks::STACK_SIZE - 1);
    let guard = bottom - 4096;
    match (translate(guard), probe_read(guard)) {
        (None, Err(())) => Ok(format!(
            "the page below the run stack ({guard:#x}) is unmapped and faults"
        )),
        _ => Err(format!(
            "guard page {guard:#x} below the run stack is accessible"
        )),
    }
}

fn oom() -> Result<String, String> {
    let before = mm::nr_free_pages();
    if !mm::kmalloc(1 << 40, GFP_KERNEL).is_null() {
        return Err("kmalloc(1 TiB) did not return null".into());
    }
    if !mm::vmalloc(64 << 30, GFP_KERNEL).is_null() {
        return Err("vmalloc(64 GiB) did not return null".into());
    }
    // Exhaust the buddy, then check every path returns null, then give it all back.
    let mut held: Vec<(*mut u8, u8)> = Vec::new();
    for order in (0..=10u8).rev() {
        while let Some(p) = mm::alloc_pages(order, Gfp(0)) {
            held.push((p.as_ptr(), order));
        }
    }
    let none_left = mm::nr_free_pages();
    let k = mm::kmalloc(8192, GFP_KERNEL);
    let v = mm::vmalloc(8 * 4096, GFP_KERNEL);
    let pg = mm::alloc_pages(0, GFP_KERNEL);
    for (p, o) in held {
        mm::free_pages(p, o);
    }
    if !k.is_null() {
        mm::kfree_checked(k);
    }
    if !v.is_null() {
        mm::vfree(v);
    }
    mm::with(|m| m.kmalloc.shrink(&mut m.pages));
    let after = mm::nr_free_pages();
    if none_left != 0 || pg.is_some() || !v.is_null() {
        return Err(format!(
            "after exhausting RAM: {none_left} pages left, alloc_pages {:?}, vmalloc {v:p}",
            pg.is_some()
        ));
    }
    if after < before {
        return Err(format!(
            "{} pages not returned after the OOM test",
            before - after
        ));
    }
    Ok(format!(
        "huge requests and exhausted RAM give NULL/None, no panic; kmalloc(8192) under OOM: {}",
        if k.is_null() {
            "NULL"
        } else {
            "served from a partial slab"
        }
    ))
}

fn debug_double_free() -> Result<String, String> {
    mm::with(|m| {
        let p = m.kmalloc.kmalloc(&mut m.pages, 64, GFP_KERNEL);
        m.kmalloc
            .kfree(&mut m.pages, p)
            .map_err(|e| format!("first kfree failed: {e}"))?;
        match m.kmalloc.kfree(&mut m.pages, p) {
            Err(e) => Ok(format!("detected: {e}")),
            Ok(()) => Err("second kfree was accepted".into()),
        }
    })
}
