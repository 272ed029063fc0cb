//! The host's CPU topology for `results.json` (`env.extra.host_topology`): logical CPUs,
//! cores, packages and SMT sibling groups, from `/sys/devices/system/cpu/cpu*/topology`
//! (falling back to `/proc/cpuinfo`'s `processor`/`core id`/`physical id` lines), and which
//! host CPUs a set of threads was seen on (`/proc/<pid>/task/<tid>/stat`, field 39).
//!
//! SMP numbers depend on it: two vCPUs on two SMT siblings of one core share that core's
//! TLB and caches; on two cores they do not.
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Serialize;

/// What the host's CPUs are.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HostTopology {
    /// Online logical CPUs.
    pub logical_cpus: usize,
    /// Distinct (package, core) pairs.
    pub cores: usize,
    pub packages: usize,
    /// Logical CPUs per core (1 = no SMT).
    pub threads_per_core: usize,
    /// Each core's SMT siblings, as the kernel lists them (`0-1`, `0,2`, …), distinct.
    pub smt_siblings: Vec<String>,
    /// Where the facts came from: "sysfs", "cpuinfo" or "none".
    pub source: &'static str,
}

/// One logical CPU: (cpu, package, core, siblings list).
type CpuRow = (usize, u32, u32, String);

fn summarize(rows: &[CpuRow], source: &'static str) -> HostTopology {
    let cores: BTreeSet<(u32, u32)> = rows.iter().map(|r| (r.1, r.2)).collect();
    let packages: BTreeSet<u32> = rows.iter().map(|r| r.1).collect();
    let mut siblings: Vec<String> = Vec::new();
    for r in rows {
        if !r.3.is_empty() && !siblings.contains(&r.3) {
            siblings.push(r.3.clone());
        }
    }
    HostTopology {
        logical_cpus: rows.len(),
        cores: cores.len(),
        packages: packages.len(),
        threads_per_core: if cores.is_empty() {
            0
        } else {
            rows.len() / cores.len()
        },
        smt_siblings: siblings,
        source,
    }
}

fn read_trim(p: &Path) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

/// Topology from a sysfs `cpu` directory (`/sys/devices/system/cpu`).
pub fn from_sysfs(dir: &Path) -> Option<HostTopology> {
    let mut rows = Vec::new();
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(n) = name
            .strip_prefix("cpu")
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        let t = e.path().join("topology");
        let (Some(core), Some(pkg)) = (
            read_trim(&t.join("core_id")).and_then(|s| s.parse().ok()),
            read_trim(&t.join("physical_package_id")).and_then(|s| s.parse().ok()),
        ) else {
            continue; // offline CPUs have no topology directory
        };
        let sib = read_trim(&t.join("thread_siblings_list")).unwrap_or_default();
        rows.push((n, pkg, core, sib));
    }
    rows.sort();
    (!rows.is_empty()).then(|| summarize(&rows, "sysfs"))
}

/// Topology from `/proc/cpuinfo` text (no sibling lists: one group per core is built).
pub fn from_cpuinfo(text: &str) -> Option<HostTopology> {
    let mut rows: Vec<CpuRow> = Vec::new();
    for block in text.split("\n\n") {
        let field = |k: &str| {
            block.lines().find_map(|l| {
                let (a, b) = l.split_once(':')?;
                (a.trim() == k).then(|| b.trim().to_string())
            })
        };
        let Some(cpu) = field("processor").and_then(|v| v.parse().ok()) else {
            continue;
        };
        let pkg = field("physical id")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let core = field("core id")
            .and_then(|v| v.parse().ok())
            .unwrap_or(cpu as u32);
        rows.push((cpu, pkg, core, String::new()));
    }
    let mut groups: BTreeMap<(u32, u32), Vec<usize>> = BTreeMap::new();
    for r in &rows {
        groups.entry((r.1, r.2)).or_default().push(r.0);
    }
    for r in rows.iter_mut() {
        let g = &groups[&(r.1, r.2)];
        r.3 = g
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(",");
    }
    (!rows.is_empty()).then(|| summarize(&rows, "cpuinfo"))
}

/// This host's topology.
pub fn host() -> HostTopology {
    from_sysfs(Path::new("/sys/devices/system/cpu"))
        .or_else(|| from_cpuinfo(&std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default()))
        .unwrap_or(HostTopology {
            source: "none",
            ..Default::default()
        })
}

/// The host CPU a thread last ran on (`/proc/<pid>/task/<tid>/stat` field 39).
pub fn last_cpu_of(pid: u32, tid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(36)?.parse().ok()
}

/// The host CPU the calling thread is running on now.
pub fn current_cpu() -> Option<u32> {
    // SAFETY: sched_getcpu has no preconditions.
    let c = unsafe { libc::sched_getcpu() };
    (c >= 0).then_some(c as u32)
}

/// Pin the calling thread to host CPU `cpu`; Err(errno text) when the kernel refuses.
pub fn pin_current_thread(cpu: usize) -> Result<(), String> {
    // SAFETY: the cpu_set_t is zeroed and filled with CPU_SET before use; 0 = this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error().to_string())
        }
    }
}

/// Online logical CPUs as the scheduler sees them (at least 1).
pub fn online_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuinfo_with_smt_pairs() {
        let text = "processor\t: 0\nphysical id\t: 0\ncore id\t: 0\n\n\
                    processor\t: 1\nphysical id\t: 0\ncore id\t: 0\n\n\
                    processor\t: 2\nphysical id\t: 0\ncore id\t: 1\n\n\
                    processor\t: 3\nphysical id\t: 0\ncore id\t: 1\n";
        let t = from_cpuinfo(text).unwrap();
        assert_eq!((t.logical_cpus, t.cores, t.packages), (4, 2, 1));
        assert_eq!(t.threads_per_core, 2);
        assert_eq!(t.smt_siblings, vec!["0,1", "2,3"]);
    }

    #[test]
    fn cpuinfo_without_core_ids_is_one_core_per_cpu() {
        let t = from_cpuinfo("processor : 0\n\nprocessor : 1\n").unwrap();
        assert_eq!((t.logical_cpus, t.cores, t.threads_per_core), (2, 2, 1));
    }

    #[test]
    fn sysfs_tree() {
        let d = tempfile::tempdir().unwrap();
        for (cpu, core, sib) in [(0, 0, "0-1"), (1, 0, "0-1"), (2, 1, "2")] {
            let t = d.path().join(format!("cpu{cpu}/topology"));
            std::fs::create_dir_all(&t).unwrap();
            std::fs::write(t.join("core_id"), format!("{core}\n")).unwrap();
            std::fs::write(t.join("physical_package_id"), "0\n").unwrap();
            std::fs::write(t.join("thread_siblings_list"), format!("{sib}\n")).unwrap();
        }
        std::fs::create_dir_all(d.path().join("cpufreq")).unwrap();
        let t = from_sysfs(d.path()).unwrap();
        assert_eq!((t.logical_cpus, t.cores, t.source), (3, 2, "sysfs"));
        assert_eq!(t.smt_siblings, vec!["0-1", "2"]);
    }

    #[test]
    fn this_thread_has_a_cpu() {
        let c = current_cpu().unwrap();
        // SAFETY: gettid(2) takes no arguments, touches no memory and cannot fail.
        let tid = unsafe { libc::gettid() } as u32;
        assert!(last_cpu_of(std::process::id(), tid).is_some());
        assert!((c as usize) < 4096);
        assert!(host().logical_cpus >= 1);
    }
}
