//! What must hold before benchmarks are compared at all.
//!
//! * **Broken runs.** A run that is incomplete (`complete: false`) or did not exit with
//!   `success` is broken. A broken *new* run is a regression (exit 1, named); a broken
//!   *base* cannot be compared against (exit 2). Benchmarks the base has and the new run
//!   lacks, or has with a status other than `ok`, are named as broken (exit 1).
//! * **Environments.** Fields that change timings by themselves: backend, accel,
//!   hypervisor, cpl, host CPU model, machine, guest memory, mm_debug, flush mode,
//!   direct-map page, host backing and the config hash. A difference refuses the
//!   comparison (exit 2) unless `--force` (or, in `kmbench ab`, unless that side was
//!   deliberately given another config or backend).
//! * **Host state.** Two separate runs whose noise-guard canaries sat at different levels
//!   (more than the band apart) ran on a host in different states: the refusal names the
//!   canaries (exit 2 unless `--force`). Paired runs (`ab`) don't need this check.
use serde::Serialize;

use crate::noise::NoiseReport;
use crate::results::RunResults;

/// One environment field that differs between two runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EnvDiff {
    pub field: &'static str,
    pub base: String,
    pub new: String,
}

/// The fields compared, in the order they are reported.
pub const ENV_FIELDS: [&str; 12] = [
    "backend",
    "accel",
    "hypervisor",
    "cpl",
    "host_cpu",
    "machine",
    "guest_memory_mib",
    "mm_debug",
    "flush_mode",
    "direct_map_page",
    "host_backing",
    "config_hash",
];

/// Environment fields that make timings incomparable when they differ.
pub fn env_differences(base: &RunResults, new: &RunResults) -> Vec<EnvDiff> {
    let (b, n) = (&base.env, &new.env);
    let value = |e: &crate::results::Env, f: &str| -> String {
        match f {
            "backend" => e.backend.clone(),
            "accel" => e.accel.clone(),
            "hypervisor" => e.hypervisor.clone(),
            "cpl" => e.cpl.to_string(),
            "host_cpu" => e.host_cpu.clone(),
            "machine" => e.machine.clone(),
            "guest_memory_mib" => e.guest_memory_mib.to_string(),
            "mm_debug" => e.mm_debug.to_string(),
            "flush_mode" => e.flush_mode.clone(),
            "direct_map_page" => e.direct_map_page.clone(),
            "host_backing" => e.host_backing.clone(),
            "config_hash" => e.config_hash.clone(),
            _ => String::new(),
        }
    };
    ENV_FIELDS
        .iter()
        .map(|&f| (f, value(b, f), value(n, f)))
        .filter(|(_, x, y)| x != y)
        .map(|(field, base, new)| EnvDiff { field, base, new })
        .collect()
}

/// Why a run cannot be trusted, one line per problem; empty when it is sound.
pub fn run_problems(run: &RunResults) -> Vec<String> {
    let mut v = Vec::new();
    if !run.complete {
        v.push("incomplete (complete: false)".to_string());
    }
    match &run.exit {
        Some(e) if e.status != "success" => {
            v.push(format!("exited with {}: {}", e.status, e.message));
        }
        None => v.push("no exit recorded (the run did not finish)".to_string()),
        _ => {}
    }
    v
}

/// The host-state difference between two separate runs, if their canaries' levels are
/// more than `band` apart.
pub fn host_state_difference(
    base: Option<&NoiseReport>,
    new: Option<&NoiseReport>,
) -> Option<EnvDiff> {
    let (b, n) = (base?, new?);
    let (lb, ln) = (b.kept_level()?, n.kept_level()?);
    let band = b.band.max(n.band);
    let lo = crate::noise::Level {
        compute: lb.compute.min(ln.compute),
        memory: lb.memory.min(ln.memory),
    };
    if lb.excess_over(&lo) <= band && ln.excess_over(&lo) <= band {
        return None;
    }
    let show = |l: &crate::noise::Level| {
        format!(
            "compute {:.2} cycles/iter, memory {:.1} cycles/load",
            l.compute, l.memory
        )
    };
    Some(EnvDiff {
        field: "host_state (canaries)",
        base: show(&lb),
        new: show(&ln),
    })
}
