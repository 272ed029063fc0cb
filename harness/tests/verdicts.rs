//! The verdict statistics on seeded synthetic per-boot data with known effects and known
//! noise, including a bimodal host (fast and slow states that last several boots and move
//! every benchmark together, by a different factor each). Deterministic: fixed seeds.
use std::collections::BTreeMap;
use std::path::Path;

use kmbench::compare::{compare_runs, ComparePolicy, Comparison, Options, Verdict};
use kmbench::results::{BenchEntry, Env, ExitInfo, RunResults, RESULTS_SCHEMA};
use kmbench::stats::{shift, signed_rank, SplitMix64};
use kmbench_protocol::{BenchRecord, BenchStatus};

fn uniform(r: &mut SplitMix64) -> f64 {
    (r.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

fn normal(r: &mut SplitMix64) -> f64 {
    let (u1, u2) = (uniform(r).max(1e-300), uniform(r));
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// One synthetic benchmark: base cost, how much the slow host state slows it, per-boot
/// noise (relative sd), and whether it is bimodal by itself (a boot-dependent layout).
#[derive(Clone)]
struct Spec {
    name: String,
    cycles: f64,
    slow_factor: f64,
    sd: f64,
    own_modes: bool,
}

fn specs() -> Vec<Spec> {
    (0..40)
        .map(|k| Spec {
            name: format!("suite{}/bench/{k}", k % 5),
            cycles: 15.0 * (1.0 + k as f64 * 3.0),
            // 1.3x … 2.3x in the slow state, as measured on the project's host.
            slow_factor: 1.3 + (k % 11) as f64 * 0.1,
            sd: 0.01 + (k % 3) as f64 * 0.01,
            own_modes: k % 13 == 4,
        })
        .collect()
}

/// A host that flips between a fast and a slow state, staying in one for several boots.
struct Host {
    rng: SplitMix64,
    slow: bool,
    flip: f64,
}

impl Host {
    fn new(seed: u64, flip: f64) -> Host {
        Host {
            rng: SplitMix64::new(seed),
            slow: false,
            flip,
        }
    }

    /// One boot's median per benchmark; `effect` multiplies benchmark `k` when set.
    fn boot(&mut self, specs: &[Spec], effect: Option<(usize, f64)>) -> Vec<f64> {
        self.boot_state(specs, effect).0
    }

    /// The same, and whether the host was in its slow state (what the canaries see).
    fn boot_state(&mut self, specs: &[Spec], effect: Option<(usize, f64)>) -> (Vec<f64>, bool) {
        if uniform(&mut self.rng) < self.flip {
            self.slow = !self.slow;
        }
        let slow = self.slow;
        let values = specs
            .iter()
            .enumerate()
            .map(|(k, s)| {
                let mut v = s.cycles * (1.0 + s.sd * normal(&mut self.rng));
                if slow {
                    v *= s.slow_factor;
                }
                if s.own_modes && uniform(&mut self.rng) < 0.5 {
                    v *= 2.6;
                }
                if let Some((i, f)) = effect {
                    if i == k {
                        v *= f;
                    }
                }
                // TSC granularity: per-op values of batched timings come in 1/16 steps.
                (v * 16.0).round() / 16.0
            })
            .collect();
        (values, slow)
    }
}

fn entry(spec: &Spec, boots: Vec<f64>) -> BenchEntry {
    let mut e = BenchEntry::from(BenchRecord {
        name: spec.name.clone(),
        suite: spec.name.split('/').next().unwrap().into(),
        status: BenchStatus::Ok,
        unit: "cycles".into(),
        samples: 1000,
        min: 0.0,
        median: kmbench::stats::median(&boots).unwrap(),
        p99: 0.0,
        max: 0.0,
        mean: 0.0,
        ns: None,
        params: BTreeMap::new(),
        extra: BTreeMap::new(),
        message: None,
    });
    e.boot_medians = boots;
    e
}

fn run(id: &str, specs: &[Spec], per_boot: &[Vec<f64>]) -> RunResults {
    RunResults {
        schema: RESULTS_SCHEMA.into(),
        complete: true,
        run_id: id.into(),
        started_at: "2026-01-01T00:00:00Z".into(),
        env: Env {
            tsc_hz: 2_445_000_000,
            ..Env::default()
        },
        exit: Some(ExitInfo {
            status: "success".into(),
            code: Some(1),
            message: "success".into(),
        }),
        benchmarks: specs
            .iter()
            .enumerate()
            .map(|(k, s)| entry(s, per_boot.iter().map(|b| b[k]).collect()))
            .collect(),
        ..Default::default()
    }
}

/// Per-boot probability that the host changes state (states last ~10 boots, ~1 s).
const FLIP: f64 = 0.1;

/// One `ab` job: `pairs` ABBA blocks on one host; the new side gets `effect`. Pairs whose
/// two boots saw different host states are left out, as the canaries make `ab` do.
fn ab_job(seed: u64, pairs: usize, effect: Option<(usize, f64)>) -> Comparison {
    let specs = specs();
    let mut host = Host::new(seed, FLIP);
    let (mut a, mut b, mut agree) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..pairs {
        // ABBA: A B, then B A.
        let ((x, sx), (y, sy)) = if i % 2 == 0 {
            let x = host.boot_state(&specs, None);
            (x, host.boot_state(&specs, effect))
        } else {
            let y = host.boot_state(&specs, effect);
            (host.boot_state(&specs, None), y)
        };
        a.push(x);
        b.push(y);
        if sx == sy {
            agree.push((i, i));
        }
    }
    let opts = Options {
        policy: ComparePolicy::default(),
        pairs: Some(agree),
        ..Options::default()
    };
    compare_runs(
        &run("a", &specs, &a),
        Path::new("a"),
        &run("b", &specs, &b),
        Path::new("b"),
        &opts,
    )
}

/// Two separate jobs of `boots` each, the second after the host had time to move.
fn separate_jobs(seed: u64, boots: usize) -> Comparison {
    let specs = specs();
    let mut host = Host::new(seed, FLIP);
    let a: Vec<Vec<f64>> = (0..boots).map(|_| host.boot(&specs, None)).collect();
    for _ in 0..10 {
        host.boot(&specs, None); // the time between two CI jobs
    }
    let b: Vec<Vec<f64>> = (0..boots).map(|_| host.boot(&specs, None)).collect();
    compare_runs(
        &run("a", &specs, &a),
        Path::new("a"),
        &run("b", &specs, &b),
        Path::new("b"),
        &Options::default(),
    )
}

fn flags(c: &Comparison) -> Vec<&str> {
    c.benchmarks
        .iter()
        .filter(|b| matches!(b.verdict, Verdict::Regressed | Verdict::Improved))
        .map(|b| b.name.as_str())
        .collect()
}

/// The one significance rule holds on every row: the verdict, the adjusted p and the
/// interval never disagree.
fn assert_one_rule(c: &Comparison) {
    for b in &c.benchmarks {
        let (Some(p), Some(level)) = (b.p_adjusted, b.ci_level) else {
            continue;
        };
        let significant = p < c.alpha;
        if b.verdict == Verdict::InsufficientBoots {
            continue;
        }
        assert_eq!(
            significant,
            matches!(
                b.verdict,
                Verdict::Regressed | Verdict::Improved | Verdict::BelowThreshold
            ),
            "{}: p_adj {p} vs verdict {:?}",
            b.name,
            b.verdict
        );
        assert!((level - (1.0 - c.level)).abs() < 1e-12);
        if let Some((lo, hi)) = b.ci {
            assert_eq!(
                significant,
                lo > 0.0 || hi < 0.0,
                "{}: ci ({lo}, {hi}) vs p_adj {p}",
                b.name
            );
        }
    }
}

#[test]
fn aa_ab_jobs_on_a_bimodal_host_rarely_flag_anything() {
    // 100 HEAD-vs-HEAD ab jobs of 16 pairs, 40 benchmarks, a host that flips state.
    let mut flagged_jobs = 0;
    for seed in 0..100 {
        let c = ab_job(1000 + seed, 16, None);
        assert_one_rule(&c);
        assert_eq!(c.design, "paired");
        assert_eq!(c.tests, 40);
        if !flags(&c).is_empty() {
            flagged_jobs += 1;
        }
    }
    // Family-wise alpha 0.05: about 5 in 100 at most (Bonferroni is conservative).
    assert!(
        flagged_jobs <= 5,
        "{flagged_jobs} of 100 A/A jobs flagged something"
    );
}

#[test]
fn ab_detects_a_five_percent_slowdown_of_one_benchmark() {
    let mut detected = 0;
    for seed in 0..10 {
        // Benchmark 6: 1% noise, slowed 5% on the new side.
        let c = ab_job(2000 + seed, 16, Some((6, 1.05)));
        assert_one_rule(&c);
        let f = flags(&c);
        if f == ["suite1/bench/6"] {
            detected += 1;
            let b = c
                .benchmarks
                .iter()
                .find(|b| b.name == "suite1/bench/6")
                .unwrap();
            assert_eq!(b.verdict, Verdict::Regressed);
            let (lo, hi) = b.ci.unwrap();
            assert!(lo > 0.0 && lo < 0.05 && hi > 0.05 * 0.5, "({lo}, {hi})");
            assert!((b.change.unwrap() - 0.05).abs() < 0.02, "{:?}", b.change);
        }
    }
    assert!(detected >= 9, "detected in {detected} of 10 jobs");
}

#[test]
fn ab_flags_a_large_slowdown_everywhere_it_happens() {
    // Like mm_debug on the new side: every benchmark 30% slower or more.
    let specs = specs();
    let mut host = Host::new(7, FLIP);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..16 {
        a.push(host.boot(&specs, None));
        b.push(host.boot(&specs, None).iter().map(|v| v * 1.3).collect());
    }
    let opts = Options {
        policy: ComparePolicy::default(),
        pairs: Some((0..16).map(|i| (i, i)).collect()),
        ..Options::default()
    };
    let c = compare_runs(
        &run("a", &specs, &a),
        Path::new("a"),
        &run("b", &specs, &b),
        Path::new("b"),
        &opts,
    );
    assert_one_rule(&c);
    // The benchmarks that are bimodal by themselves are too noisy for 16 pairs; every
    // other one is flagged.
    let expected = specs.iter().filter(|s| !s.own_modes).count();
    assert!(c.summary.regressed >= expected, "{:?}", c.summary);
    assert!(c.has_regression());
}

#[test]
fn separate_jobs_measure_the_host_not_the_change() {
    // Why `ab` exists: with the same statistics, separate jobs of 10 boots on this host
    // flag changes that don't exist (the host moved between the jobs).
    let mut flagged = 0;
    for seed in 0..20 {
        let c = separate_jobs(3000 + seed, 10);
        assert_one_rule(&c);
        if !flags(&c).is_empty() {
            flagged += 1;
        }
    }
    assert!(flagged >= 3, "{flagged}");
}

#[test]
fn too_few_pairs_say_so_instead_of_guessing() {
    // 5 pairs: the smallest signed-rank p is 1/16, never below 0.05/40.
    let c = ab_job(11, 5, Some((6, 1.5)));
    let b = c
        .benchmarks
        .iter()
        .find(|b| b.name == "suite1/bench/6")
        .unwrap();
    assert_eq!(b.verdict, Verdict::InsufficientBoots);
    assert!(b.note.as_deref().unwrap().contains("cannot reach"));
    assert!(!c.has_regression());
}

#[test]
fn interval_and_test_are_duals_without_ties() {
    let mut r = SplitMix64::new(99);
    for trial in 0..300 {
        let n = 6 + trial % 15;
        let shift_by = (trial % 7) as f64 * 0.3 - 0.9;
        let d: Vec<f64> = (0..n).map(|_| normal(&mut r) + shift_by).collect();
        for level in [0.05, 0.01, 0.00125] {
            let t = signed_rank::signed_rank(&d, level).unwrap();
            if let Some((lo, hi)) = t.ci {
                assert_eq!(
                    t.p_value < level,
                    lo > 0.0 || hi < 0.0,
                    "paired n={n} {d:?}"
                );
            } else {
                assert!(t.min_p >= level);
            }
            let x: Vec<f64> = (0..n).map(|_| normal(&mut r)).collect();
            let y: Vec<f64> = (0..n + 1).map(|_| normal(&mut r) + shift_by).collect();
            let t = shift::rank_sum(&x, &y, level).unwrap();
            if let Some((lo, hi)) = t.ci {
                assert_eq!(t.p_value < level, lo > 0.0 || hi < 0.0, "unpaired n={n}");
            }
        }
    }
}
