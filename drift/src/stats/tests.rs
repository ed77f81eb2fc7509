//! Every statistic against the results Evidently 0.7 and scipy computed for the same inputs
//! (`tests/data/drift_vectors.json`, written by `tests/data/make_vectors.py`), and the errors,
//! edge cases and verdict rules.

use super::binning::sturges_edges;
use super::ks::{ks_exact, outer_prob_inside, prob_outside_square};
use super::kstwo::smirnov_sf;
use super::sample::{prepare, std_population};
use super::*;
use serde::Deserialize;

const VECTORS: &str = include_str!("../../tests/data/drift_vectors.json");
const TOL: f64 = 1e-6;

/// A JSON number, or "nan" / "inf" / "-inf" (JSON has no non-finite numbers). Read through
/// `serde_json::Value` rather than an untagged enum, so it works whatever serde_json
/// features the workspace enables.
#[derive(Deserialize, Clone, Debug)]
#[serde(from = "serde_json::Value")]
struct Num(f64);

impl From<serde_json::Value> for Num {
    fn from(v: serde_json::Value) -> Self {
        Num(match &v {
            serde_json::Value::Number(n) => n.as_f64().expect("f64"),
            serde_json::Value::String(s) if s == "nan" => f64::NAN,
            serde_json::Value::String(s) if s == "inf" => f64::INFINITY,
            serde_json::Value::String(s) if s == "-inf" => f64::NEG_INFINITY,
            other => panic!("bad number {other}"),
        })
    }
}

impl Num {
    fn get(&self) -> f64 {
        self.0
    }
}

#[derive(Deserialize)]
struct Vectors {
    evidently: String,
    cases: Vec<Case>,
    kstwo: Vec<(u64, f64, Num)>,
    smirnov: Vec<(u64, f64, Num)>,
    ks_exact: Vec<(u64, u64, f64, bool, Num)>,
}

#[derive(Deserialize, Clone)]
struct Case {
    name: String,
    dtype: String,
    method: Option<String>,
    threshold: Option<f64>,
    reference: Vec<f64>,
    current: Vec<f64>,
    expected: Expected,
    scipy: Option<Scipy>,
}

#[derive(Deserialize, Clone)]
struct Expected {
    kind: String,
    method: Option<String>,
    statistic: Option<Num>,
    threshold: Option<f64>,
    drifted: Option<bool>,
    psi: Option<Num>,
    error: Option<String>,
}

#[derive(Deserialize, Clone)]
struct Scipy {
    ks_statistic: Num,
    ks_pvalue: Num,
    wasserstein: Num,
    std_reference: Num,
    binning: String,
    ref_percents: Vec<f64>,
    cur_percents: Vec<f64>,
    ref_percents_filled: Vec<f64>,
    cur_percents_filled: Vec<f64>,
    /// Edges as IEEE-754 bit patterns: serde_json's default float parser can be one ulp
    /// off for 16-17 digit numbers, and the edges must match bit for bit.
    bin_edges_bits: Option<Vec<u64>>,
    jensenshannon: Num,
    chisquare_f_obs: Vec<f64>,
    chisquare_f_exp: Vec<f64>,
    chisquare_statistic: Num,
    chisquare_pvalue: Num,
}

fn vectors() -> Vectors {
    serde_json::from_str(VECTORS).expect("drift_vectors.json parses")
}

/// Agreement within 1e-6, absolute below 1 and relative above; NaN and infinities must match.
fn close(got: f64, want: f64) -> bool {
    if want.is_nan() || got.is_nan() {
        return want.is_nan() && got.is_nan();
    }
    if want.is_infinite() || got.is_infinite() {
        return got == want;
    }
    (got - want).abs() <= TOL * want.abs().max(1.0)
}

fn check_num(what: &str, got: f64, want: f64) -> Result<(), String> {
    if close(got, want) {
        Ok(())
    } else {
        Err(format!("{what}: got {got:e}, want {want:e}"))
    }
}

fn check_vec(what: &str, got: &[f64], want: &[f64]) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!("{what}: {} values, want {}", got.len(), want.len()));
    }
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        check_num(&format!("{what}[{i}]"), g, w)?;
    }
    Ok(())
}

fn value_type(dtype: &str) -> ValueType {
    match dtype {
        "float" => ValueType::Float,
        "int" => ValueType::Integer,
        "bool" => ValueType::Boolean,
        other => panic!("unknown dtype {other}"),
    }
}

/// Checks one Evidently case: kind, method, statistic, threshold, verdict, PSI.
fn check_case(case: &Case) -> Result<(), String> {
    let kind = infer_kind_typed(value_type(&case.dtype), &case.current);
    if kind.name() != case.expected.kind {
        return Err(format!("kind {kind}, want {}", case.expected.kind));
    }
    // The dtype-free proxy must agree unless a float column holds only whole numbers.
    let integral = case
        .reference
        .iter()
        .chain(&case.current)
        .all(|x| x.fract() == 0.0);
    if !(case.dtype == "float" && integral) {
        let proxy = infer_kind(&case.reference, &case.current);
        if proxy != kind {
            return Err(format!("infer_kind gave {proxy}, want {kind}"));
        }
    }
    let method = case
        .method
        .as_deref()
        .map(Method::parse)
        .transpose()
        .map_err(|e| e.to_string())?;
    let result =
        test_column_with_kind(&case.reference, &case.current, kind, method, case.threshold);
    let e = &case.expected;
    if let Some(err) = &e.error {
        return match result {
            Err(StatsError::MethodNotApplicable { .. }) => Ok(()),
            other => Err(format!("want error `{err}`, got {other:?}")),
        };
    }
    let t = result.map_err(|e| format!("unexpected error: {e}"))?;
    let want_method = e.method.as_deref().unwrap_or_default();
    if t.method.name() != want_method {
        return Err(format!("method {}, want {want_method}", t.method));
    }
    if method.is_none() && default_method(kind, &case.reference, &case.current) != t.method {
        return Err("default_method disagrees with test_column".into());
    }
    check_num(
        "statistic",
        t.statistic,
        e.statistic.as_ref().map_or(f64::NAN, Num::get),
    )?;
    check_num("threshold", t.threshold, e.threshold.unwrap_or(f64::NAN))?;
    if Some(t.drifted) != e.drifted {
        return Err(format!("drifted {}, want {:?}", t.drifted, e.drifted));
    }
    let want_psi = e.psi.as_ref().map_or(f64::NAN, Num::get);
    check_num("psi", t.psi, want_psi)?;
    // The per-statistic entry points agree with test_column.
    let (r, c) = (&case.reference, &case.current);
    check_num("psi()", psi(r, c, kind), want_psi)?;
    let direct = match t.method {
        Method::Ks => ks_2samp_pvalue(r, c),
        Method::Wasserstein => wasserstein_distance_norm(r, c),
        Method::ChiSquare => chisquare_pvalue(r, c),
        Method::ZTest => z_test_pvalue(r, c),
        Method::JensenShannon => jensenshannon_distance(r, c, kind),
        Method::Psi => psi(r, c, kind),
    };
    check_num("direct statistic", direct, t.statistic)?;
    Ok(())
}

/// Checks the scipy building blocks on one case.
fn check_scipy(case: &Case) -> Result<(), String> {
    let Some(s) = &case.scipy else {
        return Ok(());
    };
    let (r, c) = (&case.reference, &case.current);
    let ks = ks_2samp(r, c);
    check_num("ks_2samp statistic", ks.statistic, s.ks_statistic.get())?;
    check_num("ks_2samp pvalue", ks.pvalue, s.ks_pvalue.get())?;
    check_num("ks_2samp_pvalue", ks_2samp_pvalue(r, c), s.ks_pvalue.get())?;
    check_num(
        "wasserstein_distance",
        wasserstein_distance(r, c),
        s.wasserstein.get(),
    )?;
    let rs = prepare(r, Sample::Reference).map_err(|e| e.to_string())?;
    check_num("std(reference)", std_population(&rs), s.std_reference.get())?;
    let kind = infer_kind_typed(value_type(&case.dtype), c);
    let b = binned_percents(r, c, kind, false).map_err(|e| e.to_string())?;
    match (&b.bins, s.binning.as_str(), &s.bin_edges_bits) {
        (Bins::Histogram(edges), "histogram", Some(want)) => {
            // Edges must be bit-identical: values on an edge change bins otherwise.
            let want: Vec<f64> = want.iter().map(|&b| f64::from_bits(b)).collect();
            if *edges != want {
                return Err(format!("bin edges {edges:?}, want {want:?}"));
            }
        }
        (Bins::Values(_), "values", None) => {}
        (bins, path, _) => return Err(format!("binning {bins:?}, want {path}")),
    }
    check_vec("reference shares", &b.reference, &s.ref_percents)?;
    check_vec("current shares", &b.current, &s.cur_percents)?;
    let f = binned_percents(r, c, kind, true).map_err(|e| e.to_string())?;
    check_vec(
        "filled reference shares",
        &f.reference,
        &s.ref_percents_filled,
    )?;
    check_vec("filled current shares", &f.current, &s.cur_percents_filled)?;
    check_num(
        "jensenshannon",
        jensenshannon(&s.ref_percents, &s.cur_percents),
        s.jensenshannon.get(),
    )?;
    check_num(
        "jensenshannon_distance",
        jensenshannon_distance(r, c, kind),
        s.jensenshannon.get(),
    )?;
    let chi = chisquare(&s.chisquare_f_obs, &s.chisquare_f_exp);
    check_num(
        "chisquare statistic",
        chi.statistic,
        s.chisquare_statistic.get(),
    )?;
    check_num("chisquare pvalue", chi.pvalue, s.chisquare_pvalue.get())?;
    check_num(
        "chisquare_pvalue",
        chisquare_pvalue(r, c),
        s.chisquare_pvalue.get(),
    )?;
    Ok(())
}

#[test]
fn vectors_come_from_evidently_0_7() {
    let v = vectors();
    assert!(v.evidently.starts_with("0.7"), "{}", v.evidently);
    assert!(v.cases.len() >= 40);
    // Every method and both kinds are covered, for small and large references.
    for m in Method::ALL {
        assert!(
            v.cases
                .iter()
                .any(|c| c.expected.method.as_deref() == Some(m.name())),
            "no case for {m}"
        );
    }
    assert!(v.cases.iter().any(|c| c.reference.len() == 1000));
    assert!(v.cases.iter().any(|c| c.reference.len() == 1001));
}

#[test]
fn columns_match_evidently() {
    let v = vectors();
    let failures: Vec<String> = v
        .cases
        .iter()
        .filter_map(|c| check_case(c).err().map(|e| format!("{}: {e}", c.name)))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn building_blocks_match_scipy() {
    let v = vectors();
    let failures: Vec<String> = v
        .cases
        .iter()
        .filter_map(|c| check_scipy(c).err().map(|e| format!("{}: {e}", c.name)))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn kstwo_matches_scipy() {
    let v = vectors();
    let mut worst = 0.0_f64;
    for (n, x, want) in &v.kstwo {
        let (n, x) = (*n, *x);
        let (got, want) = (kstwo_sf(n, x), want.get());
        assert!(
            close(got, want),
            "kstwo.sf({x}, {n}): got {got:e}, want {want:e}"
        );
        worst = worst.max((got - want).abs());
    }
    println!("kstwo: {} points, max abs error {worst:e}", v.kstwo.len());
}

#[test]
fn smirnov_matches_scipy() {
    let v = vectors();
    let mut worst = 0.0_f64;
    for (n, x, want) in &v.smirnov {
        let (n, x) = (*n, *x);
        let (got, want) = (smirnov_sf(n, x), want.get());
        assert!(
            close(got, want),
            "smirnov({n}, {x}): got {got:e}, want {want:e}"
        );
        worst = worst.max((got - want).abs());
    }
    println!(
        "smirnov: {} points, max abs error {worst:e}",
        v.smirnov.len()
    );
}

#[test]
fn exact_two_sample_p_matches_scipy() {
    let v = vectors();
    for (n1, n2, d, ok, want) in &v.ks_exact {
        let (n1, n2, d, ok) = (*n1, *n2, *d, *ok);
        let (got_ok, _, got) = ks_exact(n1, n2, d);
        assert_eq!(got_ok, ok, "exact({n1}, {n2}, {d}) success");
        assert!(
            close(got, want.get()),
            "exact({n1}, {n2}, {d}): got {got:e}, want {:e}",
            want.get()
        );
    }
}

#[test]
fn comparator_catches_wrong_results() {
    let v = vectors();
    let base = v
        .cases
        .iter()
        .find(|c| c.name == "ks_shifted")
        .expect("case")
        .clone();
    assert!(check_case(&base).is_ok());

    let stat = base.expected.statistic.clone().expect("statistic").get();
    let mut wrong = base.clone();
    wrong.expected.statistic = Some(Num(stat + 2e-6));
    assert!(
        check_case(&wrong).is_err(),
        "statistic off by 2e-6 must fail"
    );

    let mut wrong = base.clone();
    wrong.expected.drifted = Some(!base.expected.drifted.expect("drifted"));
    assert!(check_case(&wrong).is_err(), "flipped verdict must fail");

    let mut wrong = base.clone();
    wrong.expected.method = Some("wasserstein".into());
    assert!(check_case(&wrong).is_err(), "other method must fail");

    let mut wrong = base.clone();
    wrong.expected.psi = Some(Num(base.expected.psi.clone().expect("psi").get() * 1.001));
    assert!(check_case(&wrong).is_err(), "psi off by 0.1% must fail");

    // Perturbing the data (one value moved) must change the answer too.
    let mut wrong = base.clone();
    wrong.current[0] += 50.0;
    assert!(check_case(&wrong).is_err(), "perturbed data must fail");

    assert!(!close(f64::NAN, 0.0) && !close(0.0, f64::NAN) && close(f64::NAN, f64::NAN));
    assert!(!close(f64::INFINITY, 1e300) && close(1e9 + 1e2, 1e9));
}

#[test]
fn errors() {
    let ok = [1.0, 2.0, 3.0];
    assert_eq!(
        test_column(&[], &ok, None, None),
        Err(StatsError::Empty(Sample::Reference))
    );
    assert_eq!(
        test_column(&ok, &[], None, None),
        Err(StatsError::Empty(Sample::Current))
    );
    assert_eq!(
        test_column(&ok, &[f64::INFINITY, f64::NEG_INFINITY], None, None),
        Err(StatsError::Empty(Sample::Current))
    );
    assert_eq!(
        test_column(&[1.0, f64::NAN], &ok, None, None),
        Err(StatsError::NaN {
            sample: Sample::Reference,
            index: 1
        })
    );
    assert_eq!(
        test_column(&ok, &[f64::NAN], None, None),
        Err(StatsError::NaN {
            sample: Sample::Current,
            index: 0
        })
    );
    let e = Method::parse("kolmogorov").unwrap_err();
    assert_eq!(e, StatsError::UnknownMethod("kolmogorov".into()));
    let msg = e.to_string();
    for m in Method::ALL {
        assert!(msg.contains(m.name()), "{msg}");
    }
    let e = test_column(&[0.0, 1.0, 1.0], &[1.0, 0.0], Some(Method::Ks), None).unwrap_err();
    assert!(matches!(
        e,
        StatsError::MethodNotApplicable {
            method: Method::Ks,
            kind: ColumnKind::Categorical,
            ..
        }
    ));
    assert!(e.to_string().contains("numerical"), "{e}");
    assert!(matches!(
        test_column(&ok, &ok, None, Some(f64::NAN)),
        Err(StatsError::InvalidThreshold(t)) if t.is_nan()
    ));
    assert!(matches!(
        test_column(&ok, &ok, None, Some(f64::INFINITY)),
        Err(StatsError::InvalidThreshold(_))
    ));
    // Raw statistics report invalid input as NaN instead of panicking.
    assert!(ks_2samp_pvalue(&[], &ok).is_nan());
    assert!(ks_2samp_pvalue(&ok, &[f64::NAN]).is_nan());
    assert!(wasserstein_distance(&[], &ok).is_nan());
    assert!(psi(&ok, &[], ColumnKind::Numerical).is_nan());
    assert!(chisquare(&[1.0, 2.0], &[1.0]).pvalue.is_nan());
    assert!(chisquare(&[1.0, 2.0], &[10.0, 20.0]).pvalue.is_nan());
    assert!(jensenshannon(&[], &[]).is_nan());
    assert!(kstwo_sf(0, 0.5).is_nan());
    // numpy cannot bin a range that overflows.
    let huge = [-1.7e308, 1.7e308];
    let many: Vec<f64> = (0..30).map(|i| i as f64 * 1e306).chain(huge).collect();
    assert!(matches!(
        binned_percents(&many, &huge, ColumnKind::Numerical, true),
        Err(StatsError::Binning(_))
    ));
}

#[test]
fn infinities_are_dropped_like_evidently() {
    let r: Vec<f64> = (0..50).map(|i| (i as f64 * 0.37).sin()).collect();
    let c: Vec<f64> = (0..60).map(|i| (i as f64 * 0.41).cos() * 1.1).collect();
    let mut r_inf = r.clone();
    r_inf.push(f64::INFINITY);
    let mut c_inf = c.clone();
    c_inf.insert(3, f64::NEG_INFINITY);
    assert_eq!(
        test_column(&r, &c, None, None),
        test_column(&r_inf, &c_inf, None, None)
    );
}

#[test]
fn method_names_thresholds_and_verdicts() {
    for m in Method::ALL {
        assert_eq!(Method::parse(m.name()), Ok(m));
        assert_eq!(m.name().parse::<Method>(), Ok(m));
        assert_eq!(
            Method::parse(&format!(" {} ", m.name().to_uppercase())),
            Ok(m)
        );
        let json = serde_json::to_string(&m).expect("serialize");
        assert_eq!(json, format!("\"{}\"", m.name()));
        assert_eq!(
            serde_json::from_str::<Method>(&json).expect("deserialize"),
            m
        );
        assert_eq!(m.to_string(), m.name());
    }
    assert_eq!(Method::ZTest.name(), "z");
    assert_eq!(Method::Ks.default_threshold(), 0.05);
    assert_eq!(Method::ChiSquare.default_threshold(), 0.05);
    assert_eq!(Method::ZTest.default_threshold(), 0.05);
    assert_eq!(Method::Wasserstein.default_threshold(), 0.1);
    assert_eq!(Method::JensenShannon.default_threshold(), 0.1);
    assert_eq!(Method::Psi.default_threshold(), 0.1);
    assert!(
        Method::Ks.is_p_value() && Method::ChiSquare.is_p_value() && Method::ZTest.is_p_value()
    );
    assert!(!Method::Wasserstein.is_p_value() && !Method::Psi.is_p_value());
    // Boundaries exactly as Evidently compares.
    assert!(Method::Ks.is_drifted(0.05, 0.05));
    assert!(!Method::ChiSquare.is_drifted(0.05, 0.05));
    assert!(!Method::ZTest.is_drifted(0.05, 0.05));
    assert!(Method::Wasserstein.is_drifted(0.1, 0.1));
    assert!(Method::JensenShannon.is_drifted(0.1, 0.1));
    assert!(Method::Psi.is_drifted(0.1, 0.1));
    assert!(!Method::Ks.is_drifted(f64::NAN, 0.05) && !Method::Psi.is_drifted(f64::NAN, 0.1));
    let t = ColumnTest {
        kind: ColumnKind::Categorical,
        method: Method::JensenShannon,
        statistic: 0.2,
        threshold: 0.1,
        drifted: true,
        psi: 0.1,
    };
    let json = serde_json::to_value(t).expect("serialize");
    assert_eq!(json["kind"], "categorical");
    assert_eq!(json["method"], "jensenshannon");
    assert!(t.psi_drifted());
}

#[test]
fn dataset_drift_share() {
    assert_eq!(DATASET_DRIFT_SHARE, 0.5);
    assert!(dataset_drift(5, 10, DATASET_DRIFT_SHARE));
    assert!(!dataset_drift(4, 10, DATASET_DRIFT_SHARE));
    assert!(dataset_drift(8, 15, DATASET_DRIFT_SHARE));
    assert!(!dataset_drift(7, 15, DATASET_DRIFT_SHARE));
    assert!(!dataset_drift(0, 0, DATASET_DRIFT_SHARE));
    assert_eq!(drift_share(3, 12), 0.25);
}

#[test]
fn kind_inference_and_method_choice() {
    let ints: Vec<f64> = (0..100).map(|i| (i % 7) as f64).collect();
    assert_eq!(infer_kind(&ints, &ints), ColumnKind::Categorical);
    let many: Vec<f64> = (0..100).map(|i| (i % 11) as f64).collect();
    assert_eq!(infer_kind(&many, &many), ColumnKind::Numerical);
    // Only the current sample's cardinality counts.
    assert_eq!(infer_kind(&many, &ints), ColumnKind::Categorical);
    let floats: Vec<f64> = ints.iter().map(|x| x + 0.5).collect();
    assert_eq!(infer_kind(&floats, &floats), ColumnKind::Numerical);
    assert_eq!(
        infer_kind_typed(ValueType::Float, &ints),
        ColumnKind::Numerical
    );
    assert_eq!(
        infer_kind_typed(ValueType::Boolean, &many),
        ColumnKind::Categorical
    );
    assert_eq!(
        infer_kind_typed(ValueType::Integer, &many),
        ColumnKind::Numerical
    );

    let small: Vec<f64> = (0..1000).map(|i| i as f64 * 0.5).collect();
    let large: Vec<f64> = (0..1001).map(|i| i as f64 * 0.5).collect();
    let num = ColumnKind::Numerical;
    let cat = ColumnKind::Categorical;
    assert_eq!(default_method(num, &small, &small), Method::Ks);
    assert_eq!(default_method(num, &large, &small), Method::Wasserstein);
    assert_eq!(default_method(cat, &small, &small), Method::ChiSquare);
    assert_eq!(default_method(cat, &large, &small), Method::JensenShannon);
    let five = [1.0, 2.0, 3.0, 4.0, 5.0];
    assert_eq!(default_method(num, &five, &five), Method::ChiSquare);
    assert_eq!(default_method(num, &five, &[6.0]), Method::Ks);
    assert_eq!(default_method(num, &[1.0, 2.0], &[2.0]), Method::ZTest);
    assert_eq!(default_method(cat, &[1.0], &[1.0]), Method::ZTest);
    // NaN and infinities do not count as values or rows.
    assert_eq!(
        default_method(num, &[1.0, f64::NAN, f64::INFINITY], &[2.0]),
        Method::ZTest
    );
}

#[test]
fn integer_histogram_bins_are_at_least_one_wide() {
    // numpy widens Sturges bins of integer data to 1; only reachable past 2^19 values
    // (checked against np.histogram_bin_edges on the same data, int64 and float64).
    let mut ints: Vec<f64> = (0..300_000).map(|i| (i % 21) as f64).collect();
    ints.sort_by(f64::total_cmp); // sturges_edges takes sorted samples
    let want: Vec<f64> = (0..=20).map(f64::from).collect();
    assert_eq!(sturges_edges(&ints, &ints, true), Ok(want));
    let float_edges = sturges_edges(&ints, &ints, false).expect("edges");
    assert_eq!(float_edges.len(), 22);
    assert_eq!(float_edges[1], 0.9523809523809523);
    assert_eq!(float_edges[11], 10.476190476190476);
}

#[test]
fn ks_algorithms_agree_where_they_overlap() {
    // The square path and the general path give the same exact p-value.
    for (n, h) in [(10, 3), (50, 7), (200, 31)] {
        let a = prob_outside_square(n, h);
        let b = outer_prob_inside(n, n, n, h);
        assert!((a - b).abs() < 1e-12, "n={n} h={h}: {a} vs {b}");
    }
    // Identical samples: statistic 0, p-value 1.
    let x = [3.0, 1.0, 2.0, 2.0];
    assert_eq!(
        ks_2samp(&x, &x),
        KsResult {
            statistic: 0.0,
            pvalue: 1.0
        }
    );
}
