//! Parity of `neuron::score` with the Python implementations SN1 v1.3 uses, on fixtures
//! generated once by `tests/fixtures/score/make_fixtures.py` (rouge 1.0.1, difflib,
//! SN1's float_diff and date rules over sympy/pandas). No Python at run time.

use neuron::score::{self, Prf, RewardFn};
use serde::Deserialize;

const TOLERANCE: f64 = 1e-6;

#[derive(Deserialize)]
struct Fixtures {
    text_pairs: Vec<TextPair>,
    float_diff: Vec<Case>,
    date: Vec<DateCase>,
}

#[derive(Deserialize)]
struct TextPair {
    reference: String,
    completion: String,
    /// `Rouge().get_scores(reference, completion)[0]`, or null where the package raises.
    rouge: Option<PyRouge>,
    diff: f64,
}

#[derive(Deserialize)]
struct PyRouge {
    #[serde(rename = "rouge-1")]
    rouge_1: PyPrf,
    #[serde(rename = "rouge-2")]
    rouge_2: PyPrf,
    #[serde(rename = "rouge-l")]
    rouge_l: PyPrf,
}

#[derive(Deserialize)]
struct PyPrf {
    f: f64,
    p: f64,
    r: f64,
}

#[derive(Deserialize)]
struct Case {
    reference: String,
    completion: String,
    score: f64,
}

#[derive(Deserialize)]
struct DateCase {
    reference: String,
    completion: String,
    score: f64,
    difference: i64,
}

/// Picks one F score out of the package's result.
type PickF = fn(&PyRouge) -> f64;

fn fixtures() -> Fixtures {
    serde_json::from_str(include_str!("../fixtures/score/parity.json")).expect("parity.json parses")
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= TOLERANCE
}

fn prf_matches(ours: Prf, py: &PyPrf) -> bool {
    close(ours.f, py.f) && close(ours.p, py.p) && close(ours.r, py.r)
}

#[test]
fn fixture_set_is_large_enough() {
    let f = fixtures();
    assert!(
        f.text_pairs.len() >= 200,
        "{} text pairs",
        f.text_pairs.len()
    );
    assert!(f.float_diff.len() + f.date.len() >= 200);
    let unicode = f
        .text_pairs
        .iter()
        .filter(|p| !p.reference.is_ascii())
        .count();
    let empty = f
        .text_pairs
        .iter()
        .filter(|p| p.reference.is_empty() || p.completion.is_empty())
        .count();
    let long = f
        .text_pairs
        .iter()
        .filter(|p| p.reference.chars().count() >= 2000)
        .count();
    assert!(
        unicode >= 20 && empty >= 3 && long >= 10,
        "unicode {unicode}, empty {empty}, long {long}"
    );
}

#[test]
fn rouge_matches_python_rouge_package() {
    let mut failures = Vec::new();
    for (i, p) in fixtures().text_pairs.iter().enumerate() {
        let ours = score::rouge(&p.reference, &p.completion);
        let ok = match &p.rouge {
            Some(py) => {
                prf_matches(ours.rouge_1, &py.rouge_1)
                    && prf_matches(ours.rouge_2, &py.rouge_2)
                    && prf_matches(ours.rouge_l, &py.rouge_l)
            }
            None => ours == score::RougeScores::default(),
        };
        if !ok {
            failures.push(format!(
                "#{i} {:?} / {:?}: ours {ours:?}",
                p.reference, p.completion
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn rouge_rewards_follow_sn1() {
    // SN1: 0 if either text is empty, else get_scores(reference, completion)[ngram]["f"].
    for p in fixtures().text_pairs {
        let variants: [(&str, PickF); 3] = [
            ("rouge-1", |r| r.rouge_1.f),
            ("rouge-2", |r| r.rouge_2.f),
            ("rouge", |r| r.rouge_l.f),
        ];
        for (name, py) in variants {
            let f: RewardFn = name.parse().unwrap();
            let ours = f.score_one(&p.reference, &p.completion).unwrap();
            let want = match &p.rouge {
                Some(r) if !p.reference.is_empty() && !p.completion.is_empty() => py(r),
                _ => 0.0,
            };
            assert!(
                close(ours, want),
                "{name} {:?} / {:?}: {ours} vs {want}",
                p.reference,
                p.completion
            );
        }
        // Precision of the completion is the package's recall under SN1's argument order.
        if let Some(r) = &p.rouge {
            let precision = "rouge-1:p"
                .parse::<RewardFn>()
                .unwrap()
                .score_one(&p.reference, &p.completion)
                .unwrap();
            assert!(
                p.reference.is_empty() || p.completion.is_empty() || close(precision, r.rouge_1.r)
            );
        }
    }
}

#[test]
fn sequence_ratio_matches_difflib() {
    let mut failures = Vec::new();
    for (i, p) in fixtures().text_pairs.iter().enumerate() {
        let ours = score::sequence_ratio(&p.reference, &p.completion);
        if !close(ours, p.diff) {
            failures.push(format!(
                "#{i} {:?} / {:?}: ours {ours}, difflib {}",
                p.reference, p.completion, p.diff
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn float_diff_matches_sn1() {
    let mut failures = Vec::new();
    for c in fixtures().float_diff {
        let ours =
            score::float_diff(&c.reference, &c.completion).expect("fixture references are numbers");
        if !close(ours, c.score) {
            failures.push(format!(
                "{:?} / {:?}: ours {ours}, SN1 {}",
                c.reference, c.completion, c.score
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn date_matches_sn1() {
    let mut failures = Vec::new();
    for c in fixtures().date {
        let ours = score::date_score(&c.reference, &c.completion);
        let diff = score::date_difference(&c.reference, &c.completion);
        if !close(ours, c.score) || diff != c.difference {
            failures.push(format!(
                "{:?} / {:?}: ours {ours} (Δ {diff}), SN1 {} (Δ {})",
                c.reference, c.completion, c.score, c.difference
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
