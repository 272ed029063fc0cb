//! kmbench's hand-written statistics against scipy (fixtures computed by
//! `scripts/stats_fixtures.py`, scipy version recorded in the file): Mann-Whitney U and p
//! (exact method to 1e-12; the normal approximation to 1e-6, the precision of the erfc used), the percentile bootstrap CI of a ratio of medians within Monte Carlo
//! error (kmbench's RNG and resample count differ from scipy's).
use kmbench::stats::{
    bootstrap_ratio_ci, mann_whitney_u, MwMethod, BOOTSTRAP_ITERS, BOOTSTRAP_SEED,
};
use serde_json::Value;

fn fixtures() -> Value {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/stats_reference.json"
    );
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn mann_whitney_matches_scipy() {
    let f = fixtures();
    for c in f["mann_whitney"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let r = mann_whitney_u(&floats(&c["a"]), &floats(&c["b"])).unwrap();
        let want_method = match c["method"].as_str().unwrap() {
            "exact" => MwMethod::Exact,
            _ => MwMethod::Normal,
        };
        assert_eq!(r.method, want_method, "{name}");
        assert_eq!(r.u1, c["u1"].as_f64().unwrap(), "{name}: U1");
        let p = c["p_value"].as_f64().unwrap();
        let tol = if r.method == MwMethod::Exact {
            1e-12
        } else {
            1e-6
        };
        assert!(
            (r.p_value - p).abs() < tol,
            "{name}: p {} vs scipy {p}",
            r.p_value
        );
    }
}

#[test]
fn bootstrap_ci_matches_scipy_within_monte_carlo_error() {
    let f = fixtures();
    for c in f["bootstrap"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let (base, new) = (floats(&c["base"]), floats(&c["new"]));
        let (lo, hi) = bootstrap_ratio_ci(
            &base,
            &new,
            c["alpha"].as_f64().unwrap(),
            BOOTSTRAP_ITERS,
            BOOTSTRAP_SEED,
        )
        .unwrap();
        let (wlo, whi) = (c["lower"].as_f64().unwrap(), c["upper"].as_f64().unwrap());
        // Within 10% of scipy's CI width (or 0.5% of the ratio) at either end.
        let tol = ((whi - wlo) * 0.10).max(0.005 * whi);
        assert!(
            (lo - wlo).abs() <= tol && (hi - whi).abs() <= tol,
            "{name}: kmbench [{lo:.5}, {hi:.5}] vs scipy [{wlo:.5}, {whi:.5}] (tol {tol:.5})"
        );
    }
}
