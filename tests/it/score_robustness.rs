//! Property tests: every reward function takes any text without panicking and stays in
//! [0, 1]; the structural identities of ROUGE and difflib hold.

use neuron::score::{self, RewardFn, RewardSpec};
use proptest::prelude::*;

/// Texts built from words, dots, odd whitespace and unicode, the shapes that exercise
/// the tokenisers; plus arbitrary printable strings.
fn text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[a-c]{1,3}",
        Just(".".to_owned()),
        Just(" ".to_owned()),
        Just("\u{1f}".to_owned()),
        Just("\u{a0}".to_owned()),
        Just("東京".to_owned()),
        Just("e\u{301}".to_owned()),
        "[0-9]{1,4}",
        Just("/".to_owned()),
        Just("January ".to_owned()),
        "[-+*/!()eE_,]",
    ];
    prop_oneof![
        prop::collection::vec(piece, 0..40).prop_map(|v| v.concat()),
        "\\PC{0,120}",
    ]
}

fn unit(x: f64) -> bool {
    (0.0..=1.0).contains(&x)
}

proptest! {
    #[test]
    fn rouge_is_bounded_and_consistent(a in text(), b in text()) {
        let ab = score::rouge(&a, &b);
        let ba = score::rouge(&b, &a);
        for prf in [ab.rouge_1, ab.rouge_2, ab.rouge_l] {
            prop_assert!(unit(prf.f) && unit(prf.p) && unit(prf.r), "{prf:?}");
        }
        // ROUGE-N swaps p and r with the arguments; F is symmetric.
        prop_assert_eq!(ab.rouge_1.p, ba.rouge_1.r);
        prop_assert_eq!(ab.rouge_2.r, ba.rouge_2.p);
        prop_assert_eq!(ab.rouge_1.f, ba.rouge_1.f);
    }

    #[test]
    fn sequence_ratio_is_bounded(a in text(), b in text()) {
        prop_assert!(unit(score::sequence_ratio(&a, &b)));
        prop_assert_eq!(score::sequence_ratio(&a, &a), 1.0);
    }

    #[test]
    fn numeric_and_date_rewards_are_bounded(a in text(), b in text(), reference in -1e6f64..1e6) {
        let value = score::float_diff(&reference.to_string(), &b).unwrap();
        prop_assert!(unit(value), "{value}");
        let _ = score::last_number(&a);
        prop_assert!(unit(score::date_score(&a, &b)));
    }

    #[test]
    fn specs_combine_within_bounds(reference in text(), challenge in text(), completion in text()) {
        let spec = RewardSpec::new(
            [("rouge-1", 0.3), ("rouge-l:p", 0.2), ("diff", 0.3), ("date", 0.2)],
            [("rouge-1", 0.5), ("rouge-2:r", 1.0)],
        ).unwrap();
        let out = spec.score(&reference, &challenge, &[completion.as_str()], None).unwrap();
        prop_assert!(unit(out[0].total));
        prop_assert_eq!(out[0].components.len(), 6);
        let f: RewardFn = "float_diff".parse().unwrap();
        prop_assert!(f.score_one(&reference, &completion).is_ok() || reference.trim().parse::<f64>().is_err());
    }
}

#[test]
fn huge_unpunctuated_completion_is_scored() {
    // A miner may send one very long sentence: ROUGE-L's LCS memory is one bit per cell.
    let reference = "alpha beta gamma delta ".repeat(50);
    let completion = "beta gamma alpha delta epsilon ".repeat(20_000);
    let s = score::rouge(&reference, &completion);
    assert!(s.rouge_l.f > 0.0 && s.rouge_l.f <= 1.0);
}
