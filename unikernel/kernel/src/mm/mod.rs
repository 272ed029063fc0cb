//! Kernel memory management (hardware side). Placeholder until the page allocator lands.
pub mod heap;

/// Blocks for the Rust heap once the buddy allocator is up.
pub fn alloc_heap_block(_order: u8) -> Option<*mut u8> {
    None
}

/// What an address is, for fault reports.
pub fn describe_address(_addr: u64) -> &'static str {
    "unmapped"
}

/// Fault injections that need memory management.
pub fn inject_fault(kind: kmbench_protocol::FaultInjection) {
    panic!("fault injection {kind:?} needs memory management, not available yet");
}
