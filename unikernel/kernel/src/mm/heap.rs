//! The Rust heap (`alloc`): a talc allocator that starts on a static arena and grows in
//! blocks of at least 2 MiB (order 9) from the heap pool `mm::init` reserves from bootmem
//! (RAM the buddy never sees), so heap growth never re-enters the page allocator.
use core::alloc::Layout;
use talc::base::binning::Binning;
use talc::base::Talc;
use talc::source::Source;
use talc::TalcLock;

const INITIAL_HEAP: usize = 4 << 20;
/// The heap's first arena. Only its address is taken (no reference is ever formed): it is
/// handed to talc once, by the single `KernelHeapSource` (the global allocator's) on its
/// first `acquire`, and from then on talc alone owns the memory.
static mut INITIAL_ARENA: [u8; INITIAL_HEAP] = [0; INITIAL_HEAP];

#[derive(Debug)]
pub struct KernelHeapSource {
    initial_claimed: bool,
}

// SAFETY: acquire() never touches the TalcLock that owns it: it claims the static arena
// once, then takes fresh blocks from the heap pool (which does not use the Rust heap).
unsafe impl Source for KernelHeapSource {
    fn acquire<B: Binning>(talc: &mut Talc<Self, B>, layout: Layout) -> Result<(), ()> {
        if !talc.source.initial_claimed {
            talc.source.initial_claimed = true;
            // SAFETY: the arena is a static used by nothing else (only its address is
            // taken), claimed exactly once: there is one KernelHeapSource (the global
            // allocator's) and `initial_claimed` is set before the claim, under its lock.
            return unsafe {
                talc.claim(core::ptr::addr_of_mut!(INITIAL_ARENA).cast(), INITIAL_HEAP)
            }
            .map(|_| ())
            .ok_or(());
        }
        let need = layout.size() + layout.align() + 4096;
        let mut order = 9u8;
        while (4096usize << order) < need {
            order += 1;
        }
        let block = super::init::alloc_heap_block(order).ok_or(())?;
        // SAFETY: the block was just carved from the heap pool (RAM reserved from bootmem at
        // boot, mapped by the direct map, used by nothing else) and is never given back.
        unsafe { talc.claim(block, 4096usize << order) }
            .map(|_| ())
            .ok_or(())
    }
}

#[global_allocator]
static HEAP: TalcLock<spinning_top::RawSpinlock, KernelHeapSource> =
    TalcLock::new(KernelHeapSource {
        initial_claimed: false,
    });
