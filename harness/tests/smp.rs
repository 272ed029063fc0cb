//! Several vCPUs (issue 15's foundation): every CPU comes online on each backend, and a
//! fault raised on an application processor is reported with its CPU number and the same
//! exit statuses as on the boot CPU. TCG runs 4 vCPUs (multi-threaded TCG); KVM runs 2
//! on both the embedded VMM and QEMU (skipped without a usable /dev/kvm). The SMP suites
//! (per-CPU allocator curves, remote free, shootdowns) run on every CPU count and every
//! shootdown is acknowledged (TCG: the workers at CPL0; kvm_pvm: at CPL3). No timings.
mod common;

use common::{kmbench_run, kvm_usable, Opts, Run};
use kmbench_protocol::BenchStatus;

const SMP: &str = "configs/smp.toml";

/// `configs/smp.toml` with the SMP suites cut down to a functional size.
fn small() -> String {
    let text = std::fs::read_to_string(common::root().join(SMP)).unwrap();
    let mut doc: toml::Table = text.parse().unwrap();
    let suites = doc["suites"].as_table_mut().unwrap();
    for (suite, key, v) in [
        ("smp", "samples", 3),
        ("smp", "ops", 50),
        ("tlb_shootdown", "samples", 3),
        ("tlb_shootdown", "warmup", 1),
        ("ipi", "samples", 20),
    ] {
        suites[suite]
            .as_table_mut()
            .unwrap()
            .insert(key.into(), toml::Value::Integer(v));
    }
    toml::to_string(&doc).unwrap()
}

fn run(accel: &str, extra: &[&str], text: Option<String>) -> Run {
    kmbench_run(
        SMP,
        Opts {
            accel: Some(accel),
            extra,
            config_text: Some(text.unwrap_or_else(small)),
            ..Opts::default()
        },
    )
}

/// The SMP suites ran on every CPU count, each record with its `cpus` (or `targets`)
/// param and the per-CPU / breakdown extras; every shootdown was acknowledged.
fn assert_smp_suites(r: &Run, cpus: u64, label: &str) {
    let res = &r.results;
    let get = |name: &str| {
        res.benchmarks
            .iter()
            .find(|b| b.name == name)
            .unwrap_or_else(|| panic!("{label}: no {name}"))
    };
    for family in [
        "smp/kmalloc/pair/64",
        "smp/alloc_pages/pair/0",
        "smp/vmalloc/pair/4096",
        "smp/test_vmalloc/fix_size_alloc_test/4096",
        "smp/alu/dependent-add",
    ] {
        for n in 1..=cpus {
            let b = get(&format!("{family}/cpus={n}"));
            assert_eq!(b.status, BenchStatus::Ok, "{label}: {:?}", b.record);
            assert_eq!(b.params["cpus"], n, "{label}");
            let per = b.extra["per_cpu_median"].as_array().unwrap();
            assert_eq!(per.len() as u64, n, "{label}: {family} at {n}");
            assert_eq!(b.samples as u64, 3 * n, "{label}: 3 samples per CPU");
            let alone = b.extra["alone_median_by_cpu"].as_array().unwrap();
            assert_eq!(alone.len() as u64, cpus, "{label}");
        }
    }
    let rf = get("smp/kmalloc/remote_free/64/cpus=2");
    assert_eq!(rf.status, BenchStatus::Ok, "{label}: {:?}", rf.record);
    for (pages, leaf) in [(1, "4K"), (33, "4K"), (512, "4K"), (1, "2M")] {
        for t in 1..cpus {
            let b = get(&format!("tlb_shootdown/{pages}/{leaf}/targets={t}"));
            assert_eq!(b.status, BenchStatus::Ok, "{label}: {:?}", b.record);
            assert_eq!(b.params["targets"], t, "{label}");
            assert_eq!(b.params["leaf"], leaf, "{label}");
            assert_eq!(
                b.extra["full_flush"],
                pages > 33,
                "{label}: the 33-page ceiling"
            );
            for k in ["local", "send", "delivery", "remote", "ack_wait"] {
                assert!(
                    b.extra[k].as_u64().is_some(),
                    "{label}: {k} in {:?}",
                    b.extra
                );
            }
            assert!(
                b.extra["remote"].as_u64().unwrap() > 0,
                "{label}: the handler ran"
            );
        }
    }
}

/// `configs/smp.toml` with `fault` raised on CPU `cpu`.
fn with_fault(fault: &str, cpu: u32) -> String {
    common::derive_config(
        SMP,
        &[
            ("guest", "fault", toml::Value::String(fault.into())),
            ("guest", "fault_cpu", toml::Value::Integer(cpu.into())),
        ],
    )
}

fn assert_all_online(r: &Run, cpus: u64, label: &str) {
    assert_eq!(r.code, 0, "{}", r.context(label));
    let res = &r.results;
    assert_eq!(res.env.vcpus as u64, cpus, "{label}");
    let smp = res
        .info
        .get("smp")
        .unwrap_or_else(|| panic!("{label}: no smp info"));
    assert_eq!(smp["cpus"], cpus, "{label}: {smp}");
    assert_eq!(smp["online"], cpus, "{label}: {smp}");
    assert_eq!(smp["method"], "init-sipi-sipi", "{label}");
    for cpu in 1..cpus {
        let c = res
            .info
            .get(&format!("smp/cpu/{cpu}"))
            .unwrap_or_else(|| panic!("{label}: CPU {cpu} did not report"));
        assert_eq!(c["cpu"], cpu, "{label}: {c}");
        assert_eq!(c["apic_id"], cpu, "{label}: {c}");
        assert_eq!(c["current_cpu"], cpu, "{label}: the per-CPU lookup agrees");
    }
    let topo = &res.env.extra["host_topology"];
    assert!(
        topo["logical_cpus"].as_u64().unwrap() >= 1,
        "{label}: {topo}"
    );
    let seen = res.env.extra["vcpu_host_cpus"].as_object().unwrap();
    assert!(seen.contains_key("vcpu0"), "{label}: {seen:?}");
    // The single-CPU suites still run beside the parked APs.
    assert!(
        res.benchmarks.iter().any(|b| b.name == "timer/rdtsc"),
        "{label}"
    );
    // The IPI round trip to CPU 1 was acknowledged (its name carries `cpus`).
    let ipi = res
        .benchmarks
        .iter()
        .find(|b| b.name == "ipi/roundtrip")
        .unwrap_or_else(|| panic!("{label}: no ipi/roundtrip"));
    assert_eq!(ipi.status, BenchStatus::Ok, "{label}: {:?}", ipi.record);
    assert_eq!(ipi.params["cpus"], cpus, "{label}");
    assert!(
        ipi.samples > 0 && ipi.median > 0.0,
        "{label}: {:?}",
        ipi.record
    );
}

fn assert_ap_fault(r: &Run, code: i32, status: &str, cpu: u32, label: &str) {
    assert_eq!(r.code, code, "{}", r.context(label));
    assert_eq!(r.results.exit.as_ref().unwrap().status, status, "{label}");
    let f = r.results.faults.first().expect("fault record");
    assert_eq!(f.cpu, Some(cpu), "{label}: {f:?}");
    assert!(
        r.last_stderr_line().contains(&format!("CPU {cpu}")),
        "{label}: the verdict names the CPU: {}",
        r.last_stderr_line()
    );
}

#[test]
fn tcg_four_vcpus_come_online() {
    let r = run("tcg", &["--vcpus", "4"], None);
    assert_all_online(&r, 4, "tcg 4 vCPUs");
    assert_smp_suites(&r, 4, "tcg 4 vCPUs");
    let cmd = r.results.env.extra["qemu_command"].to_string();
    assert!(
        cmd.contains("tcg,thread=multi") && cmd.contains(r#""-smp","4""#),
        "{cmd}"
    );
}

#[test]
fn one_vcpu_runs_as_before_and_the_ipi_row_says_unsupported() {
    let r = run("tcg", &["--vcpus", "1"], None);
    assert_eq!(r.code, 0, "{}", r.context("1 vCPU"));
    assert!(!r.results.info.contains_key("smp"));
    let ipi = r
        .results
        .benchmarks
        .iter()
        .find(|b| b.name == "ipi/roundtrip");
    assert_eq!(ipi.map(|b| b.status), Some(BenchStatus::Unsupported));
}

#[test]
fn tcg_faults_on_an_ap_carry_the_cpu_and_the_usual_exit_codes() {
    let r = run("tcg", &["--vcpus", "4"], Some(with_fault("panic", 3)));
    assert_ap_fault(&r, 4, "panic", 3, "tcg panic on CPU 3");
    let r = run("tcg", &["--vcpus", "4"], Some(with_fault("page_fault", 2)));
    assert_ap_fault(&r, 5, "exception", 2, "tcg #PF on CPU 2");
    assert_eq!(r.results.faults[0].vector, Some(14));
    assert!(r.results.faults[0].cr2.is_some());
    let r = run(
        "tcg",
        &["--vcpus", "2"],
        Some(with_fault("invalid_opcode", 1)),
    );
    assert_ap_fault(&r, 5, "exception", 1, "tcg #UD on CPU 1");
    assert_eq!(r.results.faults[0].vector, Some(6));
    // On its guarded worker stack (CPL0 under TCG: the #PF cannot be pushed, #DF on IST1).
    let r = run(
        "tcg",
        &["--vcpus", "2"],
        Some(with_fault("stack_overflow", 1)),
    );
    assert_ap_fault(&r, 7, "stack_overflow", 1, "tcg stack overflow on CPU 1");
    assert!(
        r.last_stderr_line().contains("CPU 1's worker stack"),
        "{}",
        r.last_stderr_line()
    );
}

#[test]
fn kvm_two_vcpus_on_both_backends() {
    if !kvm_usable() {
        return;
    }
    for backend in ["kvm", "qemu"] {
        let label = format!("kvm 2 vCPUs, --backend {backend}");
        let r = run("kvm", &["--vcpus", "2", "--backend", backend], None);
        assert_all_online(&r, 2, &label);
        assert_smp_suites(&r, 2, &label);
        assert_eq!(r.results.env.backend, backend, "{label}");
        let r = run(
            "kvm",
            &["--backend", backend],
            Some(with_fault("page_fault", 1)),
        );
        assert_ap_fault(&r, 5, "exception", 1, &format!("{label}: #PF on CPU 1"));
        let r = run("kvm", &["--backend", backend], Some(with_fault("panic", 1)));
        assert_ap_fault(&r, 4, "panic", 1, &format!("{label}: panic on CPU 1"));
        let r = run(
            "kvm",
            &["--backend", backend],
            Some(with_fault("stack_overflow", 1)),
        );
        assert_ap_fault(
            &r,
            7,
            "stack_overflow",
            1,
            &format!("{label}: overflow on CPU 1"),
        );
    }
}

#[test]
fn kvm_vmm_pins_vcpu_threads_when_asked() {
    if !kvm_usable() {
        return;
    }
    let mut doc: toml::Table = small().parse().unwrap();
    doc["run"]
        .as_table_mut()
        .unwrap()
        .insert("pin_vcpus".into(), toml::Value::Boolean(true));
    let text = toml::to_string(&doc).unwrap();
    let r = run("kvm", &["--backend", "kvm"], Some(text));
    assert_all_online(&r, 2, "pinned");
    let pins = r.results.env.extra["vcpu_pinning"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(pins.len(), 2, "{pins:?}");
    assert!(
        pins[0].as_str().unwrap().starts_with("vcpu0->cpu"),
        "{pins:?}"
    );
}
