//! Kernel memory management, hardware side: page tables, the direct map, vmalloc's
//! mappings, guarded stacks and the Rust heap. The allocator logic (buddy, slab/kmalloc,
//! vmalloc ranges, misuse checks) lives in the portable `kmbench-mm` crate.
//!
//! Virtual address layout (4-level paging, 48-bit):
//!
//! ```text
//! 0x0000_0000_0000_0000 ┬ null page — never mapped (NULL dereference faults)
//!                       │ unmapped
//! 0x0000_0000_0010_0000 ├ kernel image, identity-placed at 1 MiB, 4K leaves:
//!                       │   .text RX · .rodata R+NX · .data/.bss RW+NX
//! __kernel_end          ├ unmapped (the boot identity map of 0-4 GiB is gone)
//!                       ┆
//! 0xffff_8880_0000_0000 ├ direct map (PAGE_OFFSET): all RAM, virt = phys + PAGE_OFFSET,
//!                       │   leaf size per run: 4K | 2M | 1G   (kmalloc, alloc_pages)
//!                       ┆
//! 0xffff_c900_0000_0000 ├ vmalloc area (VMALLOC_START … +1 TiB): areas of 4K leaves
//!                       │   over scattered frames (2M leaves for vmalloc_huge),
//!                       │   each followed by an unmapped guard page
//!                       ┆
//! 0xffff_d000_0000_0000 ├ benchmark window (BENCH_MAP_START … +1 TiB): buffers mapped
//!                       │   again with a chosen leaf (4K/2M/1G) by the tlb/map suites
//! 0xffff_d100_0000_0000 ├ one 1 GiB probe mapping at boot (do 1G leaves really work?)
//!                       ┆
//! 0xffff_e900_0000_0000 ├ kernel stacks: 16 KiB each, 16 KiB unmapped below each
//!                       ┆
//! 0xffff_ffff_ffff_ffff ┴
//! ```
//!
//! Construction happens at the run's CPL with the boot tables still live: the new tables
//! are written while no hardware (or shadow-paging hypervisor) walks them yet, then one
//! CR3 load switches over. Under kvm_pvm that keeps tens of thousands of PTE writes from
//! trapping. Only later changes (vmalloc, benchmark mappings) write live tables.
pub mod bootmem;
pub mod heap;
pub mod paging;
pub mod stacks;

use crate::arch::privileged;
use crate::arch::pvh::BootInfo;
use crate::fault;
use alloc::format;
use alloc::string::String;
use bootmem::BootMem;
use core::ptr::NonNull;
use kmbench_mm::{
    FlushMode as MmFlushMode, Gfp, Kmalloc, MmError, PageAllocator, PageDesc, Vmalloc, __GFP_ZERO,
};
use kmbench_protocol::{FlushMode, GuestExit, GuestPlan, PageSize};
use paging::{KernelPageTable, Leaf};
use x86_64::structures::paging::{FrameAllocator, PhysFrame, Size4KiB};
use x86_64::PhysAddr;

pub const PAGE_OFFSET: u64 = 0xffff_8880_0000_0000;
pub const VMALLOC_START: u64 = 0xffff_c900_0000_0000;
pub const VMALLOC_END: u64 = VMALLOC_START + (1 << 40);
/// Benchmark mapping window: buffers re-mapped with a chosen leaf size (tlb/map suites).
pub const BENCH_MAP_START: u64 = 0xffff_d000_0000_0000;
pub const BENCH_MAP_END: u64 = BENCH_MAP_START + (1 << 40);
pub const STACKS_START: u64 = 0xffff_e900_0000_0000;
pub const STACKS_END: u64 = STACKS_START + (1 << 30);
/// Low memory kept reserved (real-mode area, PVH start info, loader data).
const LOW_RESERVED: u64 = 1 << 20;

extern "C" {
    static __kernel_start: u8;
    static __text_end: u8;
    static __rodata_end: u8;
    static __kernel_end: u8;
}

fn sym(s: &u8) -> u64 {
    s as *const u8 as u64
}

/// All memory-management state. One CPU, interrupts always off, and no path re-enters
/// it (the Rust heap grows from its own pool, exception handlers only read constants),
/// so plain `&mut` access through [`mm`] is exclusive.
pub struct KernelMm {
    pub pages: PageAllocator,
    pub kmalloc: Kmalloc,
    pub vmalloc: Vmalloc,
    pub pt: KernelPageTable,
    pub direct_map_leaf: PageSize,
    /// Leaves the direct map used: 4K, 2M, 1G.
    pub direct_map_leaves: [u64; 3],
    pub mm_debug: bool,
}

static mut MM: Option<KernelMm> = None;

/// The memory manager. Panics if called before [`init`].
pub fn mm() -> &'static mut KernelMm {
    // SAFETY: see `KernelMm`: single CPU, no interrupts, no re-entry; callers never hold
    // two references across a call into each other.
    unsafe {
        (*core::ptr::addr_of_mut!(MM))
            .as_mut()
            .expect("mm used before mm::init")
    }
}

pub fn is_initialized() -> bool {
    // SAFETY: read of an Option discriminant written once during init.
    unsafe { (*core::ptr::addr_of!(MM)).is_some() }
}

/// Frames for the new tables before the buddy exists.
struct BootFrames<'a>(&'a mut BootMem);

// SAFETY: bootmem hands out each frame once, from RAM nothing else uses.
unsafe impl FrameAllocator<Size4KiB> for BootFrames<'_> {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        self.0
            .alloc(4096, 4096)
            .map(|p| PhysFrame::containing_address(PhysAddr::new(p)))
    }
}

// ---- the Rust heap's pool ---------------------------------------------------------
static mut HEAP_POOL: (u64, u64) = (0, 0); // [next, end) direct-map addresses

/// A block for the Rust heap, carved from the pool reserved at boot. (The heap may grow
/// while `mm` itself is allocating bookkeeping, so it cannot call back into the buddy.)
pub fn alloc_heap_block(order: u8) -> Option<*mut u8> {
    // SAFETY: single CPU; the pool is only touched here and in init.
    unsafe {
        let pool = &mut *core::ptr::addr_of_mut!(HEAP_POOL);
        let size = 4096u64 << order;
        if pool.0 == 0 || pool.0 + size > pool.1 {
            return None;
        }
        let p = pool.0;
        pool.0 += size;
        Some(p as *mut u8)
    }
}

/// What `init` measured, for the `mm/*` info records.
pub struct InitReport {
    pub direct_map_leaves: [u64; 3],
    pub direct_map_table_pages: u64,
    pub image_table_pages: u64,
    pub bootmem_used: u64,
    pub mem_map_bytes: u64,
    pub heap_pool_bytes: u64,
    pub free_pages_after_boot: u64,
    /// CPUID's pdpe1gb, and whether a 1 GiB leaf really works.
    pub page_1g_cpuid: bool,
    pub page_1g_usable: bool,
    /// Top of the guarded stack the run continues on.
    pub run_stack_top: u64,
}

fn config_error(msg: String) -> ! {
    fault::die(
        GuestExit::ConfigError,
        format_args!("{msg}"),
        Default::default(),
    )
}

/// Build the page tables, switch to them, start the buddy, kmalloc and vmalloc.
pub fn init(plan: &GuestPlan, boot: &BootInfo) -> InitReport {
    let features = crate::arch::cpuid::features();
    let leaf = match plan.direct_map_page {
        PageSize::Size4K => Leaf::K4,
        PageSize::Size2M => Leaf::M2,
        PageSize::Size1G if features.page_1g => Leaf::G1,
        PageSize::Size1G => config_error(String::from(
            "direct_map_page = \"1G\" needs 1 GiB pages, but this guest's CPUID 0x80000001 EDX bit 26 (pdpe1gb) is 0; \
             use \"2M\" or \"4K\" (TCG -cpu max offers 1 GiB pages)",
        )),
    };
    // SAFETY: only addresses of linker symbols are taken.
    let (kstart, text_end, rodata_end, kend) = unsafe {
        (
            sym(&__kernel_start),
            sym(&__text_end),
            sym(&__rodata_end),
            sym(&__kernel_end),
        )
    };
    let usable = boot.usable();
    let Some(mut bootmem) = BootMem::new(usable, kend) else {
        config_error(format!(
            "no usable RAM after the kernel image (ends at {kend:#x})"
        ));
    };
    let pml4 = bootmem.alloc(4096, 4096).expect("bootmem: PML4");
    let mut pt = KernelPageTable {
        pml4_phys: pml4,
        phys_offset: 0,
        user: privileged::run_cpl() == 3,
        table_pages: 1,
        frame_cache: alloc::vec::Vec::new(),
    };

    // Kernel image with section permissions (4K leaves). The null page stays unmapped.
    let mut frames = BootFrames(&mut bootmem);
    let text = pt.leaf_flags(false, true);
    let ro = pt.leaf_flags(false, false);
    let rw = pt.leaf_flags(true, false);
    pt.map_range(
        kstart,
        kstart,
        text_end - kstart,
        Leaf::K4,
        text,
        &mut frames,
    )
    .expect("map .text");
    pt.map_range(
        text_end,
        text_end,
        rodata_end - text_end,
        Leaf::K4,
        ro,
        &mut frames,
    )
    .expect("map .rodata");
    pt.map_range(
        rodata_end,
        rodata_end,
        kend - rodata_end,
        Leaf::K4,
        rw,
        &mut frames,
    )
    .expect("map .data/.bss");
    let image_table_pages = pt.table_pages;

    // The direct map of all RAM.
    let mut leaves = [0u64; 3];
    for r in usable {
        let start = r.start & !0xfff;
        let end = r.end & !0xfff;
        if end <= start {
            continue;
        }
        let c = pt
            .map_range(
                PAGE_OFFSET + start,
                start,
                end - start,
                leaf,
                rw,
                &mut frames,
            )
            .expect("map direct map");
        for i in 0..3 {
            leaves[i] += c[i];
        }
    }
    let direct_map_table_pages = pt.table_pages - image_table_pages;

    // Guarded stacks: the kernel entry stack (RSP0), the double-fault IST, the run's stack.
    let stack_set = stacks::build(&mut pt, &mut frames);

    // The buddy's mem_map ("struct page" array) and the Rust heap's pool.
    let max_pfn = usable.iter().map(|r| r.end).max().unwrap_or(0) >> 12;
    let map_bytes = kmbench_mm::mem_map_bytes(max_pfn) as u64;
    let mem_map_phys = frames
        .0
        .alloc(map_bytes, 4096)
        .unwrap_or_else(|| config_error(format!("not enough RAM for mem_map ({map_bytes} bytes)")));
    let total = boot.total_ram();
    let heap_pool = (total / 32).clamp(4 << 20, 64 << 20) & !((2 << 20) - 1);
    let heap_phys = frames
        .0
        .alloc(heap_pool, 2 << 20)
        .unwrap_or_else(|| config_error(String::from("not enough RAM for the heap pool")));

    // Switch. Everything in use (image, stacks, GDT/IDT/TSS) is mapped at the same address.
    // SAFETY: the new PML4 maps the kernel image at its link addresses (code, the current
    // boot stack, descriptor tables) and the direct map; nothing else is used afterwards.
    unsafe { privileged::write_cr3(pml4) };
    pt.phys_offset = PAGE_OFFSET;
    let page_1g_usable = features.page_1g && probe_1g_leaf(&mut pt, &mut bootmem);
    if leaf == Leaf::G1 && !page_1g_usable {
        config_error(String::from(
            "direct_map_page = \"1G\": CPUID reports 1 GiB pages (pdpe1gb), but reading through a 1 GiB leaf \
             faults (reserved-bit #PF): this hypervisor does not honour 1 GiB guest pages (kvm_pvm's shadow \
             paging); use \"2M\"",
        ));
    }

    // SAFETY: mem_map_phys..+map_bytes is RAM reserved from bootmem for this purpose and
    // mapped by the direct map; PageDesc is plain data valid for any bit pattern, and
    // `BuddyAllocator::init` overwrites every entry before use.
    let mem_map: &'static mut [PageDesc] = unsafe {
        core::slice::from_raw_parts_mut(
            (PAGE_OFFSET + mem_map_phys) as *mut PageDesc,
            max_pfn as usize,
        )
    };
    let mut pages = PageAllocator::empty();
    pages.direct_map = kmbench_mm::DirectMap {
        offset: PAGE_OFFSET,
    };
    pages.buddy.init(0, mem_map);
    let reserved_end = bootmem.next;
    for r in usable {
        // Free [r.start, r.end) minus low memory and [kernel image .. bootmem end).
        let free = |pages: &mut PageAllocator, s: u64, e: u64| {
            let (s, e) = ((s + 0xfff) >> 12, e >> 12);
            if e > s {
                pages.buddy.free_range(s, e);
            }
        };
        let s = r.start.max(LOW_RESERVED);
        if s >= r.end {
            continue;
        }
        if r.end <= kstart || s >= reserved_end {
            free(&mut pages, s, r.end);
        } else {
            free(&mut pages, s, kstart.max(s));
            free(&mut pages, reserved_end.min(r.end).max(s), r.end);
        }
    }

    // SAFETY: single CPU; the pool is set once here before any heap growth can use it.
    unsafe {
        *core::ptr::addr_of_mut!(HEAP_POOL) =
            (PAGE_OFFSET + heap_phys, PAGE_OFFSET + heap_phys + heap_pool)
    };

    let mut kmalloc = Kmalloc::new();
    if plan.mm_debug {
        kmalloc
            .set_debug(&mut pages, true)
            .expect("mm_debug before any allocation");
    }
    let mut vmalloc = Vmalloc::new(VMALLOC_START, VMALLOC_END);
    vmalloc.set_flush_mode(to_mm_flush(plan.flush_mode));
    let free_pages_after_boot = pages.buddy.nr_free_pages();

    // SAFETY: single CPU; MM is written once here, before any `mm()` call.
    unsafe {
        *core::ptr::addr_of_mut!(MM) = Some(KernelMm {
            pages,
            kmalloc,
            vmalloc,
            pt,
            direct_map_leaf: plan.direct_map_page,
            direct_map_leaves: leaves,
            mm_debug: plan.mm_debug,
        });
    }
    stacks::activate(&stack_set);
    InitReport {
        direct_map_leaves: leaves,
        direct_map_table_pages,
        image_table_pages,
        bootmem_used: bootmem.used(),
        mem_map_bytes: map_bytes,
        heap_pool_bytes: heap_pool,
        free_pages_after_boot,
        page_1g_cpuid: features.page_1g,
        page_1g_usable,
        run_stack_top: stack_set.run_top,
    }
}

/// Where boot probes whether 1 GiB leaves work (just past the benchmark window, so the
/// table page it leaves behind belongs to no one else's window).
const PROBE_1G: u64 = BENCH_MAP_END;

/// Map one 1 GiB leaf over physical 0 and read through it: some hypervisors advertise
/// pdpe1gb in CPUID yet fault on 1 GiB leaves (kvm_pvm does).
fn probe_1g_leaf(pt: &mut KernelPageTable, bootmem: &mut BootMem) -> bool {
    let flags = pt.leaf_flags(false, false);
    let mut frames = BootFrames(bootmem);
    if pt
        .map_leaf(PROBE_1G, 0, Leaf::G1, flags, &mut frames)
        .is_err()
    {
        return false;
    }
    privileged::flush_tlb_all();
    let ok = crate::arch::idt::probe_read(PROBE_1G + 0x1000).is_ok();
    pt.unmap_leaf(PROBE_1G, Leaf::G1);
    privileged::flush_tlb_all();
    ok
}

pub fn to_mm_flush(m: FlushMode) -> MmFlushMode {
    match m {
        FlushMode::PerPage => MmFlushMode::PerPage,
        FlushMode::Full => MmFlushMode::Full,
        FlushMode::Lazy => MmFlushMode::Lazy,
    }
}

/// Report a misuse the allocators detected and end the run.
pub fn misuse(call: &str, e: MmError) -> ! {
    fault::die(
        GuestExit::MmMisuse,
        format_args!("{call}: {e}"),
        Default::default(),
    )
}

// ---- the kernel's memory API (Linux names) ----------------------------------------

pub fn alloc_pages(order: u8, gfp: Gfp) -> Option<NonNull<u8>> {
    mm().pages.alloc_pages(order, gfp)
}

pub fn free_pages(addr: *mut u8, order: u8) {
    if let Err(e) = mm().pages.free_pages(addr, order) {
        misuse("free_pages", e)
    }
}

#[inline(always)]
pub fn kmalloc(size: usize, gfp: Gfp) -> *mut u8 {
    let m = mm();
    m.kmalloc.kmalloc(&mut m.pages, size, gfp)
}

pub fn kzalloc(size: usize, gfp: Gfp) -> *mut u8 {
    let m = mm();
    m.kmalloc.kzalloc(&mut m.pages, size, gfp)
}

#[inline(always)]
pub fn kfree(ptr: *mut u8) {
    let m = mm();
    if let Err(e) = m.kmalloc.kfree(&mut m.pages, ptr) {
        misuse("kfree", e)
    }
}

pub fn ksize(ptr: *const u8) -> usize {
    let m = mm();
    m.kmalloc.ksize(&m.pages, ptr)
}

/// Top up the page-table frame cache so mapping `size` bytes cannot run out mid-way.
/// A request larger than free memory fails here, before taking anything.
pub fn prepare_vmalloc(size: usize) -> bool {
    let m = mm();
    if (size as u64).div_ceil(4096) > m.pages.buddy.nr_free_pages() {
        return false;
    }
    let need = size / (2 << 20) + 4;
    let pages = &mut m.pages;
    m.pt.refill_frame_cache(need, || {
        pages
            .alloc_pages(0, Gfp(0))
            .map(|p| p.as_ptr() as u64 - PAGE_OFFSET)
    })
}

/// Give page-table frames the last vmalloc did not need back to the buddy.
fn trim_frame_cache() {
    const KEEP: usize = 8;
    let m = mm();
    while m.pt.frame_cache.len() > KEEP {
        let f = m.pt.frame_cache.pop().expect("non-empty");
        if let Err(e) = m.pages.free_pages(phys_to_virt(f), 0) {
            misuse("page-table frame cache", e)
        }
    }
}

pub fn vmalloc(size: usize, gfp: Gfp) -> *mut u8 {
    if !prepare_vmalloc(size) {
        return core::ptr::null_mut();
    }
    let m = mm();
    let p = m.vmalloc.vmalloc(&mut m.pages, &mut m.pt, size, gfp);
    trim_frame_cache();
    p
}

pub fn vzalloc(size: usize) -> *mut u8 {
    vmalloc(size, __GFP_ZERO)
}

pub fn vmalloc_huge(size: usize, gfp: Gfp) -> *mut u8 {
    if !prepare_vmalloc(size) {
        return core::ptr::null_mut();
    }
    let m = mm();
    let p = m.vmalloc.vmalloc_huge(&mut m.pages, &mut m.pt, size, gfp);
    trim_frame_cache();
    p
}

pub fn vfree(ptr: *mut u8) {
    let m = mm();
    if let Err(e) = m.vmalloc.vfree(&mut m.pages, &mut m.pt, ptr) {
        misuse("vfree", e)
    }
}

pub fn virt_to_phys(addr: u64) -> u64 {
    addr - PAGE_OFFSET
}

pub fn phys_to_virt(phys: u64) -> *mut u8 {
    (phys + PAGE_OFFSET) as *mut u8
}

/// What an address is, for fault reports (no allocation, no locks).
pub fn describe_address(addr: u64) -> &'static str {
    if (VMALLOC_START..VMALLOC_END).contains(&addr) {
        if is_initialized() && mm().vmalloc.find_area(addr).is_none() {
            "vmalloc area, not inside any allocation: a guard page or a freed area"
        } else {
            "vmalloc area"
        }
    } else if (STACKS_START..STACKS_END).contains(&addr) {
        "kernel stack area"
    } else if (PAGE_OFFSET..VMALLOC_START).contains(&addr) {
        "direct map"
    } else {
        "not mapped by the kernel"
    }
}

/// Fault injections that need memory management.
pub fn inject_fault(kind: kmbench_protocol::FaultInjection) {
    use kmbench_protocol::FaultInjection as F;
    let gfp = kmbench_mm::GFP_KERNEL;
    match kind {
        F::DoubleFree => {
            let p = kmalloc(64, gfp);
            kfree(p);
            kfree(p);
        }
        F::ForeignFree => {
            let local = [0u8; 64];
            kfree(local.as_ptr() as *mut u8);
        }
        F::Redzone => {
            let p = kmalloc(64, gfp);
            // SAFETY: deliberately writes one byte past a 64-byte object (into its redzone
            // in debug mode; into the next object otherwise) to test overrun detection.
            unsafe { p.add(64).write_volatile(0x41) };
            kfree(p);
            if !mm().mm_debug {
                log::warn!("redzone overrun went undetected: mm_debug is off");
            }
        }
        F::VfreeForeign => {
            let p = vmalloc(3 * 4096, gfp);
            // SAFETY: pointer arithmetic only; the interior pointer is passed to vfree on purpose.
            vfree(unsafe { p.add(4096) });
        }
        F::StackOverflow => {
            stacks::overflow_now();
        }
        F::VmallocGuard => {
            let p = vmalloc(2 * 4096, gfp);
            // SAFETY: deliberately reads the guard page after a 2-page area.
            unsafe { core::ptr::read_volatile(p.add(2 * 4096)) };
        }
        F::NullDeref => {
            // SAFETY: deliberately dereferences a near-NULL pointer.
            unsafe { core::ptr::read_volatile(core::ptr::null::<u64>().wrapping_add(1)) };
        }
        other => panic!("fault injection {other:?} is handled elsewhere"),
    }
}
