//! `kmbench run`'s command line: the flags, and the exit-status table its `--help` prints.
use std::path::PathBuf;

use crate::backend::BackendChoice;
use crate::config::{Accel, CplSetting};

const AFTER_HELP: &str = "\
Exit status:
  0    success
  1    the guest reported a benchmark or self-test failure
  2    harness or config error (bad config, missing QEMU, build failure, QEMU did not start)
  3    guest timed out (results kept with complete=false)
  4    guest kernel panic
  5    guest CPU exception (vector, RIP, CR2 in results.json `faults`)
  6    guest memory misuse detected
  7    guest stack overflow
  8    the guest rejected the configuration
  9    the VM ended unexpectedly (QEMU crash, KVM internal error, triple fault)
  130  interrupted (Ctrl-C); results kept with complete=false

With --boots N, each benchmark keeps one median per boot (`boot_medians`); the reported
median is the median of boot medians, min = min of mins, max = max of maxes,
p99 = median of p99s, mean = mean of means, samples = sum.

Environment: KMBENCH_KERNEL=<elf> boots that kernel (no build); KMBENCH_QEMU=<path>
uses another QEMU binary.";

#[derive(clap::Args, Debug, Clone, Default)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// Config file [default: configs/default.toml in the workspace root].
    pub config: Option<PathBuf>,
    /// Accelerator: auto = KVM when /dev/kvm opens read-write, else TCG (emulated: not hardware numbers).
    #[arg(long, value_enum)]
    pub accel: Option<Accel>,
    /// Run directory [default: results/<run-id>/ in the workspace root].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Show the guest log (and QEMU's stderr) live.
    #[arg(short, long)]
    pub verbose: bool,
    /// Print only errors and the results path.
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Kill a guest that runs longer than SECS per boot (overrides [run] timeout_s).
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64)
        .range(crate::config::TIMEOUT_S.min..=crate::config::TIMEOUT_S.max))]
    pub timeout: Option<u64>,
    /// Privilege level of the measured code: auto (3 on pvm, 0 on hardware KVM and TCG), 0 or 3.
    #[arg(long, value_parser = CplSetting::parse, value_name = "auto|0|3")]
    pub cpl: Option<CplSetting>,
    /// Boot N fresh guests and pool their statistics (overrides [run] boots).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32)
        .range(crate::config::BOOTS.min as i64..=crate::config::BOOTS.max as i64))]
    pub boots: Option<u32>,
    /// Run part of the config: comma-separated globs over benchmark names
    /// (`vmalloc`, `kmalloc/pair/*,tlb/random/*`); a suite runs when a glob's first segment
    /// matches its name, and only matching benchmarks are kept.
    #[arg(long, value_name = "PATTERN")]
    pub filter: Option<String>,
    /// CPUs of the VM (overrides [run] vcpus); the guest brings the others online.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32)
        .range(crate::config::VCPUS.min as i64..=crate::config::VCPUS.max as i64))]
    pub vcpus: Option<u32>,
    /// Do not build the kernel; boot the existing ELF.
    #[arg(long)]
    pub no_build: bool,
    /// Who boots the guest: auto = the embedded KVM VMM when accel is KVM (microvm), else QEMU.
    #[arg(long, value_enum)]
    pub backend: Option<BackendChoice>,
    /// Boot this kernel ELF instead of building the working tree's (`kmbench ab` uses it).
    #[arg(long, value_name = "ELF")]
    pub kernel: Option<PathBuf>,
    /// Retry boots until N of them are stable by the noise guard's canaries (bounded by
    /// `[noise] max_boots`, default 3 × N); the others are discarded and counted.
    #[arg(long)]
    pub stable: bool,
}
