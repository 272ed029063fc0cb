//! `tlb`, `tlbflush` and `map` suites (being written).
use kmbench_protocol::{GuestPlan, MapSuite, TlbFlushSuite, TlbSuite};

pub fn tlb_suite(_cfg: &TlbSuite, _plan: &GuestPlan) {}
pub fn tlbflush_suite(_cfg: &TlbFlushSuite) {}
pub fn map_suite(_cfg: &MapSuite) {}
