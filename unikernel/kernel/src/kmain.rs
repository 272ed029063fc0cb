//! Boot order and the run: `kmain` (entered from `arch::boot` at CPL0) sets up the CPU
//! tables and drops to the run's CPL; `run_main` reads the plan, reports the `hello`
//! record, builds memory management (`mm::init`), moves to the guarded run stack and
//! runs the plan (self-tests, fault injection, the suites or serve mode), then reports
//! the `end` record and exits.
use crate::arch::{cpuid, gdt, idt, privileged, pvh, tsc, usermode};
use crate::{arch, bench, console, fault, mm, report, selftest, serve, smp, timing};
use alloc::string::{String, ToString};
use core::sync::atomic::{AtomicU64, Ordering};
use kmbench_protocol::{
    FaultInjection, GuestExit, GuestPlan, Hello, Record, CMDLINE_PLAN_KEY, CMDLINE_PLAN_MODULE,
    PROTOCOL_VERSION,
};

/// TSC at kernel entry and when ring-0 setup was done (written once in `kmain`, at CPL0,
/// before anything reads them).
static ENTRY_TSC: AtomicU64 = AtomicU64::new(0);
static RING0_DONE_TSC: AtomicU64 = AtomicU64::new(0);

/// The requested CPL, peeked from the command line without parsing JSON: the plan
/// starts with `{"cpl":N` (serde writes fields in order). Ring 0 may be emulated, so
/// this does as little as possible.
fn peek_cpl(start_info: u64) -> u8 {
    // SAFETY: start_info was validated by the loader contract (PVH); the command line
    // lies in identity-mapped low memory. Only a few bytes are read.
    unsafe {
        let info = start_info as *const u64;
        let cmdline = *info.add(3) as *const u8; // hvm_start_info.cmdline_paddr
        if cmdline.is_null() {
            return 0;
        }
        // Inline plan `kmbench={"cpl":N…`, or plan in module 0: `kmbench=module cpl=N`.
        for pat in [&b"kmbench={\"cpl\":"[..], &b"kmbench=module cpl="[..]] {
            if pat.iter().enumerate().all(|(i, &c)| *cmdline.add(i) == c) {
                return if *cmdline.add(pat.len()) == b'3' {
                    3
                } else {
                    0
                };
            }
        }
        0
    }
}

/// Rust entry from `arch::boot`, at CPL0 with the boot page tables.
#[no_mangle]
pub extern "C" fn kmain(start_info: u64) -> ! {
    ENTRY_TSC.store(tsc::rdtsc(), Ordering::Relaxed);
    gdt::init();
    idt::init();
    // Mask both 8259 PICs: nothing is wired to them, and an SMP boot CPU later runs with
    // interrupts on (its pins would otherwise deliver legacy IRQs on vectors 8–15).
    arch::port::outb(0x21, 0xff);
    arch::port::outb(0xa1, 0xff);
    let cpl = peek_cpl(start_info);
    privileged::set_run_cpl(cpl);
    RING0_DONE_TSC.store(tsc::rdtsc(), Ordering::Relaxed);
    if cpl == 3 {
        let (_, top) = arch::boot::boot_stack();
        // SAFETY: the boot page tables map everything user-accessible; run_main never returns.
        unsafe { usermode::enter(run_main, top, start_info) }
    }
    run_main(start_info)
}

fn guest_hypervisor() -> &'static str {
    if privileged::current_cpl() == 3 && privileged::current_cs() == 0x33 {
        return "pvm";
    }
    match cpuid::hypervisor_signature() {
        Some(sig) if &sig == b"KVMKVMKVM\0\0\0" => "kvm",
        Some(sig) if &sig == b"TCGTCGTCGTCG" => "tcg",
        Some(_) => "other",
        None => "none",
    }
}

fn parse_plan(boot: &pvh::BootInfo) -> GuestPlan {
    let cmdline = boot.cmdline();
    let Some(pos) = cmdline.find(CMDLINE_PLAN_KEY) else {
        log::warn!("no kmbench= plan on the command line; running the basic suites");
        let mut plan = GuestPlan::new(privileged::run_cpl());
        plan.suites.timer = Some(Default::default());
        plan.suites.gate = Some(Default::default());
        plan.suites.alu = Some(Default::default());
        return plan;
    };
    let module;
    let json: &str = if cmdline[pos..].starts_with(CMDLINE_PLAN_MODULE) {
        module = match boot.module0(kmbench_protocol::PLAN_MAX) {
            Some(Ok(bytes)) => bytes,
            Some(Err(size)) => fault::die(
                GuestExit::ConfigError,
                format_args!(
                    "the plan module is {size} bytes, more than {}",
                    kmbench_protocol::PLAN_MAX
                ),
                Default::default(),
            ),
            None => fault::die(
                GuestExit::ConfigError,
                format_args!("the command line says kmbench=module but there is no boot module"),
                Default::default(),
            ),
        };
        // A module may be padded with NULs or end with a newline.
        let end = module
            .iter()
            .rposition(|&b| b != 0 && b != b'\n')
            .map_or(0, |i| i + 1);
        match core::str::from_utf8(&module[..end]) {
            Ok(s) => s,
            Err(_) => fault::die(
                GuestExit::ConfigError,
                format_args!("the plan module is not UTF-8"),
                Default::default(),
            ),
        }
    } else {
        &cmdline[pos + CMDLINE_PLAN_KEY.len()..]
    };
    match serde_json::from_str::<GuestPlan>(json) {
        Ok(p) => match p.check() {
            Ok(()) => p,
            Err(e) => fault::die(
                GuestExit::ConfigError,
                format_args!("the run plan is out of bounds: {e}"),
                Default::default(),
            ),
        },
        Err(e) => fault::die(
            GuestExit::ConfigError,
            format_args!("cannot parse the run plan on the command line: {e}"),
            Default::default(),
        ),
    }
}

/// The rest of the boot and the run, at the run's CPL.
extern "C" fn run_main(start_info: u64) -> ! {
    console::init();
    log::info!(
        "kmbench kernel {} at CPL{}",
        env!("CARGO_PKG_VERSION"),
        privileged::current_cpl()
    );
    let boot = match pvh::BootInfo::parse(start_info) {
        Ok(b) => b,
        Err(e) => fault::die(
            GuestExit::ConfigError,
            format_args!("bad PVH start info: {e:?}"),
            Default::default(),
        ),
    };
    let plan = parse_plan(&boot);
    let (tsc_hz, tsc_source) = tsc::frequency(plan.tsc_khz);
    timing::set_tsc_hz(tsc_hz);
    log::info!(
        "TSC {} Hz ({}), invariant: {}",
        tsc_hz,
        tsc_source,
        cpuid::invariant_tsc()
    );
    let hello = Hello {
        protocol: PROTOCOL_VERSION,
        kernel: env!("CARGO_PKG_VERSION").to_string(),
        cpl: privileged::current_cpl(),
        guest_hypervisor: guest_hypervisor().to_string(),
        cpu_vendor: String::from(cpuid::bytes_to_str(&cpuid::vendor())),
        cpu_brand: String::from(cpuid::bytes_to_str(&cpuid::brand())),
        tsc_hz,
        tsc_source: tsc_source.to_string(),
        invariant_tsc: cpuid::invariant_tsc(),
        mem_bytes: boot.total_ram(),
        features: cpuid::features(),
        tsc_at_entry: ENTRY_TSC.load(Ordering::Relaxed),
        tsc_at_hello: tsc::rdtsc(),
        tsc_ring0_done: Some(RING0_DONE_TSC.load(Ordering::Relaxed)),
    };
    report::emit(&Record::Hello(hello));
    smp::start(&plan);
    let mm_report = mm::init(&plan, &boot);
    report_mm(&mm_report, &plan);
    let plan = alloc::boxed::Box::leak(alloc::boxed::Box::new(plan));
    // SAFETY: the run stack was just mapped (with its guard) and is user-accessible when
    // the run is at CPL3; nothing on the boot stack is used after the switch.
    unsafe {
        usermode::switch_stack(
            run_on_guarded_stack,
            mm_report.run_stack_top,
            plan as *const GuestPlan as u64,
        )
    }
}

extern "C" fn run_on_guarded_stack(plan: u64) -> ! {
    // SAFETY: `plan` is the leaked Box passed by run_main; it lives forever.
    let plan = unsafe { &*(plan as *const GuestPlan) };
    run_plan(plan)
}

fn report_mm(r: &mm::InitReport, plan: &GuestPlan) {
    use serde_json::json;
    let (free, buddyinfo, live_sections) = mm::with(|m| {
        (
            m.pages.buddy.nr_free_pages(),
            m.pages.buddy.free_counts().to_vec(),
            m.pages.buddy.live_sections(),
        )
    });
    log::info!(
        "mm: direct map {} leaves (4K {}, 2M {}, 1G {}), {} table pages; {} MiB free",
        plan.direct_map_page.label(),
        r.direct_map_leaves[0],
        r.direct_map_leaves[1],
        r.direct_map_leaves[2],
        r.direct_map_table_pages,
        (free * 4096) >> 20
    );
    report::info(
        "mm/direct_map",
        json!({
            "leaf": plan.direct_map_page.label(),
            "leaves_4k": r.direct_map_leaves[0], "leaves_2m": r.direct_map_leaves[1], "leaves_1g": r.direct_map_leaves[2],
            "table_pages": r.direct_map_table_pages, "table_bytes": r.direct_map_table_pages * 4096,
        }),
    );
    report::info(
        "mm/boot",
        json!({
            "free_pages_after_boot": r.free_pages_after_boot,
            "free_bytes_after_boot": r.free_pages_after_boot * 4096,
            "bootmem_used_bytes": r.bootmem_used,
            "mem_map_bytes": r.mem_map_bytes,
            "mem_map_sections_written": live_sections,
            "heap_pool_bytes": r.heap_pool_bytes,
            "image_table_pages": r.image_table_pages,
            "page_1g_cpuid": r.page_1g_cpuid,
            "page_1g_usable": r.page_1g_usable,
            "tsc_mm_init_start": r.tsc.start,
            "tsc_mm_init_done": r.tsc.done,
            "tsc_mm_init_phases": {
                "tables_built": r.tsc.tables_built,
                "switched": r.tsc.switched,
                "mem_map": r.tsc.mem_map,
                "free_lists": r.tsc.free_lists,
                "done": r.tsc.done,
            },
            "buddyinfo": buddyinfo,
        }),
    );
}

fn inject_fault(kind: FaultInjection) {
    log::warn!("injecting fault: {kind:?}");
    match kind {
        FaultInjection::Panic => panic!("injected panic (fault = \"panic\")"),
        FaultInjection::PageFault => {
            // SAFETY: deliberately reads an unmapped address to raise #PF.
            unsafe { core::ptr::read_volatile(0x0000_7fff_dead_0000 as *const u64) };
        }
        FaultInjection::InvalidOpcode => {
            arch::invalid_opcode();
        }
        FaultInjection::Hang => loop {
            core::hint::spin_loop();
        },
        FaultInjection::HangAfterRecord => {
            bench::basic::timer(&kmbench_protocol::TimerSuite { samples: 100 });
            loop {
                core::hint::spin_loop();
            }
        }
        other => mm::inject_fault(other),
    }
}

fn run_plan(plan: &GuestPlan) -> ! {
    if plan.selftest {
        selftest::run();
    }
    if let Some(kind) = plan.fault.filter(|_| plan.fault_cpu == 0) {
        inject_fault(kind);
    }
    smp::fault_on_worker(plan);
    if plan.serve {
        serve::run();
    } else {
        bench::run_all(plan);
    }
    let failed = report::selftests_failed();
    let exit = if failed == 0 {
        GuestExit::Success
    } else {
        GuestExit::Failure
    };
    report::emit(&Record::End(kmbench_protocol::EndRecord {
        exit,
        benchmarks: report::benchmarks_emitted(),
        selftests_failed: failed,
    }));
    log::info!(
        "done: {} benchmarks, {} self-test failures",
        report::benchmarks_emitted(),
        failed
    );
    arch::exit(exit)
}
