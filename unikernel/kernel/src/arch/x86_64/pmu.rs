//! Core performance counters programmed to count data-TLB misses (AMD PerfEvtSel0/1 with
//! ls_l1_d_tlb_miss and L2 DTLB misses; Intel IA32_PERFEVTSEL0 with
//! DTLB_LOAD_MISSES.WALK_COMPLETED), read with RDMSR (through the gate at CPL3).
//! Hypervisors may hide the counters (CPUID says so) or ignore the MSR writes.
use super::cpuid;
use super::privileged::{rdmsr, wrmsr};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// Core counters programmed for data-TLB misses.
pub struct Pmu {
    /// (name, counter MSR)
    pub counters: Vec<(&'static str, u32)>,
    /// What is counted, for records.
    pub desc: String,
}

/// Why records carry no counts when CPUID reports no core counters.
pub const PMU_ABSENT: &str = "unavailable: CPUID reports no core performance counters";

impl Pmu {
    /// Program the counters, or `None` when CPUID reports none.
    pub fn setup() -> Option<Pmu> {
        if !cpuid::features().pmu {
            return None;
        }
        // Event select: event[7:0] | umask<<8 | USR(16) | OS(17) | EN(22); AMD event[11:8] at 35:32.
        let sel = |event: u64, umask: u64| {
            (event & 0xff) | (umask << 8) | (1 << 16) | (1 << 17) | (1 << 22) | ((event >> 8) << 32)
        };
        let mut counters = Vec::new();
        let desc;
        if cpuid::is_amd() {
            // PerfEvtSel0/1 (legacy MSRs, present on every AMD core with counters).
            let events = [
                ("l1_dtlb_miss", 0x45u64, 0xffu64),
                ("l2_dtlb_miss", 0x45, 0xf0),
            ];
            for (i, (name, ev, um)) in events.iter().enumerate() {
                // SAFETY: PerfCtr0/1 and PerfEvtSel0/1 exist on every AMD core that reports
                // counters (checked above); counting affects no memory.
                unsafe {
                    wrmsr(0xc001_0004 + i as u32, 0);
                    wrmsr(0xc001_0000 + i as u32, sel(*ev, *um));
                }
                counters.push((*name, 0xc001_0004 + i as u32));
            }
            desc = "AMD ls_l1_d_tlb_miss (0x45/0xff) and L2 DTLB misses (0x45/0xf0), PerfEvtSel0/1"
                .to_string();
        } else {
            let l1 = cpuid::cpuid(1, 0).eax;
            let model = ((l1 >> 4) & 0xf) | (((l1 >> 16) & 0xf) << 4);
            // Ice Lake and later client/server cores use 0x12; older ones 0x08.
            let newer = matches!(
                model,
                0x6a | 0x6c
                    | 0x7d
                    | 0x7e
                    | 0x8c
                    | 0x8d
                    | 0x8f
                    | 0x97
                    | 0x9a
                    | 0xa7
                    | 0xaa
                    | 0xac
                    | 0xb7
                    | 0xba
                    | 0xbd
                    | 0xbf
                    | 0xcf
                    | 0xad
                    | 0xae
            );
            let ev = if newer { 0x12 } else { 0x08 };
            // SAFETY: IA32_PMC0 and IA32_PERFEVTSEL0 exist when CPUID reports architectural
            // counters (checked above); counting affects no memory.
            unsafe {
                wrmsr(0xc1, 0);
                wrmsr(0x186, sel(ev, 0x0e));
            }
            counters.push(("dtlb_walks", 0xc1));
            desc = format!("Intel DTLB_LOAD_MISSES.WALK_COMPLETED (event {ev:#x} umask 0x0e), IA32_PERFEVTSEL0");
        }
        Some(Pmu { counters, desc })
    }

    /// Current counts, in `counters` order.
    pub fn read(&self) -> Vec<u64> {
        self.counters.iter().map(|&(_, msr)| rdmsr(msr)).collect()
    }
}
