//! In-guest benchmark suites. Each suite takes its part of the plan, times with the TSC
//! (interrupts are always off), and emits one `bench` record per benchmark — a
//! distribution, never a single average. No logging inside timed regions.
pub mod basic;

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
}
