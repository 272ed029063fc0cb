//! Building memory management at boot: the kernel's own page tables (image with section
//! permissions, the direct map, guarded stacks), the switch to them, then the buddy,
//! kmalloc, vmalloc and the Rust heap's pool. See the layout diagram in [`super`].
use super::bootmem::BootMem;
use super::paging::KernelPageTable;
use super::state::{self, KernelMm};
use super::{stacks, BENCH_MAP_END, PAGE_OFFSET, VMALLOC_END, VMALLOC_START};
use crate::arch::privileged;
use crate::arch::pvh::BootInfo;
use crate::arch::tsc::rdtsc;
use crate::fault;
use alloc::format;
use alloc::string::String;
use core::mem::MaybeUninit;
use kmbench_mm::{Kmalloc, PageAllocator, PageDesc, Vmalloc};
use kmbench_protocol::{GuestExit, GuestPlan, PageSize};
use x86_64::structures::paging::{FrameAllocator, PhysFrame, Size4KiB};
use x86_64::PhysAddr;

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
/// `[next, end)` direct-map addresses of the pool reserved at boot; (0, 0) before init.
static HEAP_POOL: spinning_top::Spinlock<(u64, u64)> = spinning_top::Spinlock::new((0, 0));

/// A block for the Rust heap, carved from the pool reserved at boot. (The heap may grow
/// while `mm` itself is allocating bookkeeping, so it cannot call back into the buddy.)
pub fn alloc_heap_block(order: u8) -> Option<*mut u8> {
    let mut pool = HEAP_POOL.lock();
    let size = 4096u64 << order;
    if pool.0 == 0 || pool.0 + size > pool.1 {
        return None;
    }
    let p = pool.0;
    pool.0 += size;
    Some(p as *mut u8)
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
    /// TSC stamps of init's phases (for the boot-time breakdown).
    pub tsc: InitTsc,
}

/// TSC at the start of `init` and at the end of each of its phases.
#[derive(Clone, Copy, Debug, Default)]
pub struct InitTsc {
    pub start: u64,
    /// New page tables written (image, direct map, stacks), not yet live.
    pub tables_built: u64,
    /// CR3 switched to them (and the 1 GiB probe done).
    pub switched: u64,
    /// The buddy took over `mem_map` (lazily: only section state bytes written).
    pub mem_map: u64,
    /// Free RAM handed to the buddy's free lists.
    pub free_lists: u64,
    /// kmalloc, vmalloc and the heap pool ready: init returns.
    pub done: u64,
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
    let mut tsc = InitTsc {
        start: rdtsc(),
        ..InitTsc::default()
    };
    let features = crate::arch::cpuid::features();
    let leaf = match plan.direct_map_page {
        PageSize::Size4K => PageSize::Size4K,
        PageSize::Size2M => PageSize::Size2M,
        PageSize::Size1G if features.page_1g => PageSize::Size1G,
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
        pte_tables_freed: 0,
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
        PageSize::Size4K,
        text,
        &mut frames,
    )
    .expect("map .text");
    pt.map_range(
        text_end,
        text_end,
        rodata_end - text_end,
        PageSize::Size4K,
        ro,
        &mut frames,
    )
    .expect("map .rodata");
    pt.map_range(
        rodata_end,
        rodata_end,
        kend - rodata_end,
        PageSize::Size4K,
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
    let nr_sections = kmbench_mm::mem_map_sections(max_pfn);
    let sections_phys = frames
        .0
        .alloc(nr_sections as u64, 8)
        .unwrap_or_else(|| config_error(String::from("not enough RAM for mem_map's sections")));
    let total = boot.total_ram();
    let heap_pool = (total / 32).clamp(4 << 20, 64 << 20) & !((2 << 20) - 1);
    let heap_phys = frames
        .0
        .alloc(heap_pool, 2 << 20)
        .unwrap_or_else(|| config_error(String::from("not enough RAM for the heap pool")));

    tsc.tables_built = rdtsc();
    // Switch. Everything in use (image, stacks, GDT/IDT/TSS) is mapped at the same address.
    // SAFETY: the new PML4 maps the kernel image at its link addresses (code, the current
    // boot stack, descriptor tables) and the direct map; nothing else is used afterwards.
    unsafe { privileged::write_cr3(pml4) };
    pt.phys_offset = PAGE_OFFSET;
    let page_1g_usable = features.page_1g && probe_1g_leaf(&mut pt, &mut bootmem);
    if leaf == PageSize::Size1G && !page_1g_usable {
        config_error(String::from(
            "direct_map_page = \"1G\": CPUID reports 1 GiB pages (pdpe1gb), but reading through a 1 GiB leaf \
             faults (reserved-bit #PF): this hypervisor does not honour 1 GiB guest pages (kvm_pvm's shadow \
             paging); use \"2M\"",
        ));
    }

    tsc.switched = rdtsc();

    // SAFETY: mem_map_phys..+map_bytes and sections_phys..+nr_sections are RAM reserved
    // from bootmem for these arrays alone and mapped by the (now live) direct map. The
    // descriptors are `MaybeUninit` (the buddy writes each section before reading it) and
    // the section bytes are plain `u8`s `init` overwrites.
    let (mem_map, sections) = unsafe {
        (
            core::slice::from_raw_parts_mut(
                (PAGE_OFFSET + mem_map_phys) as *mut MaybeUninit<PageDesc>,
                max_pfn as usize,
            ),
            core::slice::from_raw_parts_mut((PAGE_OFFSET + sections_phys) as *mut u8, nr_sections),
        )
    };
    let mut pages = PageAllocator::empty();
    pages.direct_map = kmbench_mm::DirectMap {
        offset: PAGE_OFFSET,
    };
    pages.buddy.init(0, mem_map, sections);
    tsc.mem_map = rdtsc();
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

    *HEAP_POOL.lock() = (PAGE_OFFSET + heap_phys, PAGE_OFFSET + heap_phys + heap_pool);

    tsc.free_lists = rdtsc();
    let mut kmalloc = Kmalloc::new();
    if plan.mm_debug {
        kmalloc
            .set_debug(&mut pages, true)
            .expect("mm_debug before any allocation");
    }
    let mut vmalloc = Vmalloc::new(VMALLOC_START, VMALLOC_END);
    vmalloc.set_flush_mode(plan.flush_mode);
    let free_pages_after_boot = pages.buddy.nr_free_pages();

    state::install(KernelMm {
        pages,
        kmalloc,
        vmalloc,
        pt,
        direct_map_leaf: plan.direct_map_page,
        direct_map_leaves: leaves,
        mm_debug: plan.mm_debug,
    });
    stacks::activate(&stack_set);
    tsc.done = rdtsc();
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
        tsc,
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
        .map_leaf(PROBE_1G, 0, PageSize::Size1G, flags, &mut frames)
        .is_err()
    {
        return false;
    }
    privileged::flush_tlb_all();
    let ok = crate::arch::idt::probe_read(PROBE_1G + 0x1000).is_ok();
    pt.unmap_leaf(PROBE_1G, PageSize::Size1G);
    privileged::flush_tlb_all();
    ok
}
