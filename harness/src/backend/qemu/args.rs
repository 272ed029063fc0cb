//! The QEMU command line: machine, accelerator, memory backing, the guest's channels
//! (log, results, exit device, serve-mode control socket) and the boot plan, built with
//! xshell's `cmd!` (one argument per value, so nothing is split by a shell); file paths
//! inside `-chardev`/`-object` options are escaped with `safe_fs::qemu_opt_value`.
use kmbench_protocol::{ports, CMDLINE_PLAN_KEY};
use xshell::cmd;

use super::{control_socket, plan_file, Qemu};
use crate::backend::LaunchSpec;
use crate::config::{HostBacking, Machine};

impl Qemu {
    /// `-M` value.
    pub(super) fn machine_arg(spec: &LaunchSpec) -> String {
        let mut m = match spec.machine {
            Machine::Microvm => "microvm,x-option-roms=off,rtc=off".to_string(),
            Machine::Q35 => "q35".to_string(),
        };
        if spec.host_backing != HostBacking::Default {
            m.push_str(",memory-backend=mem");
        }
        m
    }

    /// `-object` for the host backing, if any.
    pub(super) fn backing_args(spec: &LaunchSpec) -> Vec<String> {
        let size = format!("size={}M", spec.memory_mib);
        let obj = match spec.host_backing {
            HostBacking::Default => return vec![],
            // A shared-memory file: shmem THP is off by default, so 4 KiB host pages.
            HostBacking::Small => {
                format!("memory-backend-file,id=mem,{size},mem-path=/dev/shm,share=on,prealloc=off")
            }
            // Anonymous RAM: QEMU madvises it MADV_HUGEPAGE.
            HostBacking::Thp => format!("memory-backend-ram,id=mem,{size}"),
            HostBacking::Hugetlbfs => {
                format!("memory-backend-memfd,id=mem,{size},hugetlb=on,hugetlbsize=2M,prealloc=on")
            }
        };
        vec!["-object".into(), obj]
    }

    /// Serve mode: COM2 on a Unix socket QEMU connects to ([`control_socket`]).
    pub(super) fn control_args(spec: &LaunchSpec) -> Vec<String> {
        if spec.control.is_none() {
            return vec![];
        }
        vec![
            "-chardev".into(),
            format!(
                "socket,id=ctl,path={}",
                crate::safe_fs::qemu_opt_value(&control_socket(spec).display().to_string())
            ),
            "-device".into(),
            format!("isa-serial,chardev=ctl,iobase={:#x},irq=3", ports::CONTROL),
        ]
    }

    pub(super) fn command(&self, spec: &LaunchSpec) -> xshell::Cmd<'_> {
        let qemu = &self.binary;
        let machine = Self::machine_arg(spec);
        // Several vCPUs under TCG: one host thread per vCPU (MTTCG), not round-robin.
        let accel = match (spec.accel, spec.vcpus) {
            (crate::backend::AccelKind::Tcg, n) if n > 1 => "tcg,thread=multi".to_string(),
            (a, _) => a.label().to_string(),
        };
        let cpu = &spec.cpu_model;
        let mem = spec.memory_mib.to_string();
        let smp = spec.vcpus.to_string();
        // Named vCPU threads, so the host CPUs they ran on can be recorded.
        let names: Vec<&str> = if spec.vcpus > 1 {
            vec!["-name", "kmbench,debug-threads=on"]
        } else {
            vec![]
        };
        let kernel = &spec.kernel;
        // The plan travels as boot module 0 (`-initrd`, see [`write_plan_file`]), so its
        // size is not bounded by QEMU's 4 KiB command line.
        let (plan, cmdline): (Vec<String>, String) = match plan_file(spec) {
            Some(f) => (
                vec!["-initrd".into(), f.display().to_string()],
                kmbench_protocol::module_cmdline(&spec.cmdline[CMDLINE_PLAN_KEY.len()..]),
            ),
            None => (vec![], spec.cmdline.clone()),
        };
        let backing = Self::backing_args(spec);
        let exit_dev = format!("isa-debug-exit,iobase={:#x},iosize=0x04", ports::EXIT);
        let log = format!(
            "file,id=log,path={}",
            crate::safe_fs::qemu_opt_value(&spec.log_path.display().to_string())
        );
        let debugcon = format!("isa-debugcon,iobase={:#x},chardev=res", ports::RESULTS);
        let control = Self::control_args(spec);
        cmd!(
            self.sh,
            "{qemu} -M {machine} -accel {accel} -cpu {cpu} -m {mem} -smp {smp} {names...} {backing...}
             -nodefaults -no-user-config -display none -no-reboot
             -kernel {kernel} {plan...} -append {cmdline}
             -device {exit_dev}
             -chardev {log} -serial chardev:log
             -chardev stdio,id=res -device {debugcon} {control...}"
        )
        .quiet()
    }
}
