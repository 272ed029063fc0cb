//! In-guest benchmark suites. Each suite takes its part of the plan, times with the TSC
//! (interrupts are always off), and emits one `bench` record per benchmark — a
//! distribution, never a single average. No logging inside timed regions.
pub mod alloc;
pub mod basic;
pub mod canary;
pub mod smp;
pub mod test_vmalloc;
pub mod tlb;
pub mod vmalloc;

use kmbench_protocol::GuestPlan;

/// Run the plan's suites in a fixed order, with a noise-guard reading (`canary`) before
/// the first and after each one when the plan asks for canaries.
pub fn run_all(plan: &GuestPlan) {
    let mut guard = canary::Canary::start(plan.canary.as_ref());
    let mut done = |suite: &str| {
        if let Some(g) = guard.as_mut() {
            g.after(suite);
        }
    };
    run_suites(plan, &mut done);
}

fn run_suites(plan: &GuestPlan, done: &mut dyn FnMut(&str)) {
    let s = &plan.suites;
    if let Some(t) = &s.timer {
        basic::timer(t);
        done("timer");
    } else {
        basic::measure_timer_overhead();
    }
    if let Some(g) = &s.gate {
        basic::gate(g);
        done("gate");
    }
    if let Some(a) = &s.alu {
        basic::alu(a);
        done("alu");
    }
    if let Some(k) = &s.kmalloc {
        alloc::kmalloc_suite(k, plan);
        done("kmalloc");
    }
    if let Some(p) = &s.pages {
        alloc::pages_suite(p);
        done("pages");
    }
    if let Some(v) = &s.vmalloc {
        vmalloc::vmalloc_suite(v, plan);
        done("vmalloc");
    }
    if let Some(x) = &s.stack_vs_heap {
        alloc::stack_vs_heap_suite(x);
        done("stack_vs_heap");
    }
    if let Some(x) = &s.talc_vs_slab {
        alloc::talc_vs_slab_suite(x);
        done("talc_vs_slab");
    }
    if let Some(t) = &s.tlb {
        tlb::tlb_suite(t, plan);
        done("tlb");
    }
    if let Some(t) = &s.tlbflush {
        tlb::tlbflush_suite(t);
        done("tlbflush");
    }
    if let Some(m) = &s.map {
        tlb::map_suite(m);
        done("map");
    }
    // Last: starting SMP workers puts mm in SMP mode (its lock) for the rest of the boot.
    if let Some(x) = &s.smp {
        smp::smp_suite(x, plan);
        done("smp");
    }
    if let Some(x) = &s.tlb_shootdown {
        smp::shootdown_suite(x, plan);
        done("tlb_shootdown");
    }
}
