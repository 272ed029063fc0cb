//! In-guest benchmark suites. Each suite takes its part of the plan, times with the TSC
//! (interrupts are always off), and emits one `bench` record per benchmark — a
//! distribution, never a single average. No logging inside timed regions.
pub mod alloc;
pub mod basic;
pub mod test_vmalloc;
pub mod tlb;
pub mod vmalloc;

use kmbench_protocol::GuestPlan;

pub fn run_all(plan: &GuestPlan) {
    let s = &plan.suites;
    if let Some(t) = &s.timer {
        basic::timer(t);
    } else {
        basic::measure_timer_overhead();
    }
    if let Some(g) = &s.gate {
        basic::gate(g);
    }
    if let Some(a) = &s.alu {
        basic::alu(a);
    }
    if let Some(k) = &s.kmalloc {
        alloc::kmalloc_suite(k, plan);
    }
    if let Some(p) = &s.pages {
        alloc::pages_suite(p);
    }
    if let Some(v) = &s.vmalloc {
        vmalloc::vmalloc_suite(v, plan);
    }
    if let Some(x) = &s.stack_vs_heap {
        alloc::stack_vs_heap_suite(x);
    }
    if let Some(x) = &s.talc_vs_slab {
        alloc::talc_vs_slab_suite(x);
    }
    if let Some(t) = &s.tlb {
        tlb::tlb_suite(t, plan);
    }
    if let Some(t) = &s.tlbflush {
        tlb::tlbflush_suite(t);
    }
    if let Some(m) = &s.map {
        tlb::map_suite(m);
    }
}
