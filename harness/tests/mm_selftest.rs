//! The in-guest mm self-test suite (`configs/selftest.toml`: `selftest = true`,
//! `mm_debug = true`) booted through `kmbench run`: under TCG for every direct-map leaf
//! size at CPL0 and CPL3, under KVM when /dev/kvm is usable, with mm_debug off, and a
//! 1G direct map on a guest without 1 GiB pages (rejected with exit 8). Configs derived
//! from selftest.toml are written into each test's tempdir. No timings asserted.
mod common;

use common::{derive_config, kmbench_run, kvm_usable, Opts, Run};

const SELFTEST: &str = "configs/selftest.toml";

/// selftest.toml with `direct_map_page` (and, for 1G, enough RAM) set.
fn selftest_config(page: &str, mm_debug: bool) -> String {
    let mut set = vec![
        ("guest", "direct_map_page", toml::Value::from(page)),
        ("guest", "mm_debug", toml::Value::from(mm_debug)),
    ];
    if page == "1G" {
        // A 1 GiB leaf needs a whole, 1 GiB-aligned GiB of RAM: below 1 GiB there are
        // holes (legacy area), so with 1024 MiB the guest falls back to 2M leaves.
        set.push(("run", "memory_mib", toml::Value::from(2048)));
    }
    derive_config(SELFTEST, &set)
}

fn boot(page: &str, accel: &str, cpl: Option<u8>, mm_debug: bool) -> Run {
    kmbench_run(
        SELFTEST,
        Opts {
            accel: Some(accel),
            cpl,
            config_text: Some(selftest_config(page, mm_debug)),
            ..Opts::default()
        },
    )
}

fn u64_field(v: &serde_json::Value, key: &str, ctx: &str) -> u64 {
    v.get(key)
        .and_then(|x| x.as_u64())
        .unwrap_or_else(|| panic!("{ctx}: `{key}` missing or not an integer in {v}"))
}

/// Everything a passing self-test boot must show.
fn check_passed(r: &Run, page: &str, accel: &str, cpl: Option<u8>, mm_debug: bool) {
    let label = format!("selftest {page} accel={accel} cpl={cpl:?} mm_debug={mm_debug}");
    let ctx = r.context(&label);
    let res = &r.results;
    assert_eq!(r.code, 0, "{ctx}");
    assert!(res.complete, "{ctx}");
    assert_eq!(
        res.exit.as_ref().expect("exit info").status,
        "success",
        "{ctx}"
    );
    assert_eq!(res.env.accel, accel, "{ctx}");
    assert_eq!(res.env.direct_map_page, page, "{ctx}");
    assert_eq!(res.env.mm_debug, mm_debug, "{ctx}");
    if let Some(cpl) = cpl {
        assert_eq!(res.env.cpl, cpl, "{ctx}");
    }
    let hello = res.env.guest.as_ref().expect("hello record");
    assert_eq!(hello.cpl, res.env.cpl, "{ctx}");

    // Self-tests: enough of them, all passed, the key ones present.
    let failed: Vec<String> = res
        .selftests
        .iter()
        .filter(|s| !s.passed)
        .map(|s| format!("{}: {}", s.name, s.detail))
        .collect();
    assert!(failed.is_empty(), "{label}: failed self-tests: {failed:#?}");
    assert!(
        res.selftests.len() >= 12,
        "{label}: only {} self-tests: {:?}",
        res.selftests.len(),
        res.selftests.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    let names: Vec<&str> = res.selftests.iter().map(|s| s.name.as_str()).collect();
    for want in [
        "kmalloc/physically_contiguous",
        "vmalloc/guard_page_faults",
        "mm/direct_map_leaf",
        "vmalloc_huge/2m_leaves",
        "vmalloc_huge/2m_over_a_freed_4k_range",
    ] {
        assert!(names.contains(&want), "{label}: no `{want}` in {names:?}");
    }
    if mm_debug {
        assert!(
            names.iter().any(|n| n.starts_with("mm_debug/")),
            "{label}: mm_debug on but no mm_debug/ self-test in {names:?}"
        );
    }

    // The direct map the guest built.
    let dm = res.info.get("mm/direct_map").unwrap_or_else(|| {
        panic!(
            "{label}: no mm/direct_map info; info keys {:?}",
            res.info.keys()
        )
    });
    assert_eq!(
        dm.get("leaf").and_then(|l| l.as_str()),
        Some(page),
        "{label}: {dm}"
    );
    match page {
        "2M" => assert!(u64_field(dm, "leaves_2m", &label) > 0, "{label}: {dm}"),
        "1G" => assert!(u64_field(dm, "leaves_1g", &label) > 0, "{label}: {dm}"),
        _ => {
            assert!(u64_field(dm, "leaves_4k", &label) > 0, "{label}: {dm}");
            assert_eq!(u64_field(dm, "leaves_2m", &label), 0, "{label}: {dm}");
            assert_eq!(u64_field(dm, "leaves_1g", &label), 0, "{label}: {dm}");
        }
    }
    let boot = res
        .info
        .get("mm/boot")
        .unwrap_or_else(|| panic!("{label}: no mm/boot info; info keys {:?}", res.info.keys()));
    assert!(
        u64_field(boot, "free_bytes_after_boot", &label) > 0,
        "{label}: {boot}"
    );
}

fn tcg_both_cpls(page: &str) {
    for cpl in [0, 3] {
        let r = boot(page, "tcg", Some(cpl), true);
        check_passed(&r, page, "tcg", Some(cpl), true);
    }
}

#[test]
fn tcg_selftests_pass_with_4k_direct_map() {
    tcg_both_cpls("4K");
}

#[test]
fn tcg_selftests_pass_with_2m_direct_map() {
    tcg_both_cpls("2M");
}

#[test]
fn tcg_selftests_pass_with_1g_direct_map() {
    tcg_both_cpls("1G");
}

#[test]
fn tcg_selftests_pass_without_mm_debug() {
    let r = boot("2M", "tcg", Some(3), false);
    check_passed(&r, "2M", "tcg", Some(3), false);
}

#[test]
fn kvm_selftests_pass_with_4k_and_2m_direct_maps() {
    if !kvm_usable() {
        return;
    }
    for page in ["4K", "2M"] {
        // cpl auto: 3 on kvm_pvm, 0 on hardware KVM.
        let r = boot(page, "kvm", None, true);
        check_passed(&r, page, "kvm", None, true);
    }
}

/// TCG `-cpu max` has 1 GiB pages, so a QEMU wrapper (KMBENCH_QEMU) appends
/// `,pdpe1gb=off` to the `-cpu` value the harness chose.
#[test]
fn direct_map_1g_without_pdpe1gb_is_rejected_by_the_guest() {
    let wrap_dir = tempfile::tempdir().unwrap();
    let qemu = common::qemu_with_cpu_suffix(wrap_dir.path(), ",pdpe1gb=off");
    for cpl in [0, 3] {
        let r = kmbench_run(
            SELFTEST,
            Opts {
                accel: Some("tcg"),
                cpl: Some(cpl),
                config_text: Some(selftest_config("1G", true)),
                env: vec![("KMBENCH_QEMU", qemu.clone().into())],
                ..Opts::default()
            },
        );
        let ctx = r.context(&format!("1G without pdpe1gb, cpl {cpl}"));
        assert_eq!(r.code, 8, "{ctx}");
        let res = &r.results;
        assert!(!res.complete, "{ctx}");
        assert_eq!(res.exit.as_ref().unwrap().status, "config_error", "{ctx}");
        let hello = res.env.guest.as_ref().expect("hello record");
        assert!(
            !hello.features.page_1g,
            "the wrapper did not hide 1 GiB pages; {ctx}"
        );
        let f = res
            .faults
            .last()
            .unwrap_or_else(|| panic!("no fault record; {ctx}"));
        assert_eq!(f.exit, kmbench_protocol::GuestExit::ConfigError, "{ctx}");
        assert!(f.message.contains("pdpe1gb"), "{}", f.message);
        assert!(r.last_stderr_line().contains("pdpe1gb"), "{ctx}");
        assert!(res.selftests.is_empty(), "{ctx}");
    }
}
