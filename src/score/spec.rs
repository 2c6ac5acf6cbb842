//! Reward functions by name, a task's reward spec (weights and penalties) and SN1's
//! combination of them into one reward per completion.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::relevance::{Embed, relevance};
use super::rouge::{RougeVariant, rouge_variant};
use super::{ScoreError, copied_number, date_score, echo, float_diff, sequence_ratio};

/// Which of a ROUGE variant's statistics a reward uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RougeMetric {
    /// F1.
    F,
    /// Precision of the completion: overlap over the completion's count.
    P,
    /// Recall of the reference: overlap over the reference's count.
    R,
}

/// One reward function, as a task script names it.
///
/// Names: `rouge` (= `rouge-l`, SN1's default), `rouge-1`, `rouge-2`, `rouge-l`, each
/// optionally with `:f` (default), `:p` or `:r`; `relevance`; `diff`; `float_diff`;
/// `date`; and the echo defence's `echo` and `copied_number` (meant as penalties).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RewardFn {
    /// ROUGE of the completion against the reference.
    Rouge {
        /// ROUGE-1, -2 or -L.
        variant: RougeVariant,
        /// F, precision or recall.
        metric: RougeMetric,
    },
    /// Embedding similarity above the empty-completion baseline (needs an embedder).
    Relevance,
    /// `difflib.SequenceMatcher(None, reference, completion).ratio()`.
    Diff,
    /// Numeric closeness of the completion's last number.
    FloatDiff,
    /// Closeness of the first date in each text.
    Date,
    /// How much the completion copies the text (as a penalty: the challenge), see
    /// [`echo`].
    Echo,
    /// Whether the completion's last number is one the text states, see
    /// [`copied_number`].
    CopiedNumber,
}

impl RewardFn {
    /// The names [`RewardFn::from_str`] accepts (without the `:metric` suffixes).
    pub const NAMES: [&'static str; 10] = [
        "rouge",
        "rouge-1",
        "rouge-2",
        "rouge-l",
        "relevance",
        "diff",
        "float_diff",
        "date",
        "echo",
        "copied_number",
    ];

    /// Whether scoring needs an embedder.
    pub fn needs_embedder(self) -> bool {
        self == RewardFn::Relevance
    }

    /// Scores every completion against `reference` (for a penalty: the challenge).
    /// `embedder` is required by [`RewardFn::Relevance`] only.
    pub fn score(
        self,
        reference: &str,
        completions: &[&str],
        embedder: Option<&dyn Embed>,
    ) -> Result<Vec<f64>, ScoreError> {
        match self {
            RewardFn::Relevance => {
                let embedder = embedder.ok_or(ScoreError::EmbedderRequired { function: self })?;
                relevance(embedder, reference, completions)
            }
            _ => completions
                .iter()
                .map(|c| self.score_one(reference, c))
                .collect(),
        }
    }

    /// Scores one completion with a function that needs no embedder; relevance gives
    /// [`ScoreError::EmbedderRequired`] (use [`RewardFn::score`]).
    pub fn score_one(self, reference: &str, completion: &str) -> Result<f64, ScoreError> {
        Ok(match self {
            RewardFn::Rouge { variant, metric } => {
                if reference.is_empty() || completion.is_empty() {
                    return Ok(0.0);
                }
                // SN1 calls get_scores(reference, completion): the reference is the
                // package's hypothesis. F is the same either way for ROUGE-1/2 and is
                // SN1's for ROUGE-L; p and r are named from the completion's side.
                let s = rouge_variant(variant, reference, completion);
                match metric {
                    RougeMetric::F => s.f,
                    RougeMetric::P => s.r,
                    RougeMetric::R => s.p,
                }
            }
            RewardFn::Relevance => return Err(ScoreError::EmbedderRequired { function: self }),
            RewardFn::Diff => sequence_ratio(reference, completion),
            RewardFn::FloatDiff => float_diff(reference, completion)?,
            RewardFn::Date => date_score(reference, completion),
            RewardFn::Echo => echo(reference, completion),
            RewardFn::CopiedNumber => copied_number(reference, completion),
        })
    }
}

impl FromStr for RewardFn {
    type Err = ScoreError;

    fn from_str(name: &str) -> Result<Self, ScoreError> {
        let unknown = || ScoreError::UnknownFunction {
            name: name.to_owned(),
        };
        let (base, metric) = match name.split_once(':') {
            Some((base, m)) if base.starts_with("rouge") => {
                let metric = match m {
                    "f" => RougeMetric::F,
                    "p" => RougeMetric::P,
                    "r" => RougeMetric::R,
                    _ => return Err(unknown()),
                };
                (base, metric)
            }
            Some(_) => return Err(unknown()),
            None => (name, RougeMetric::F),
        };
        let variant = |variant| RewardFn::Rouge { variant, metric };
        Ok(match base {
            "rouge" | "rouge-l" => variant(RougeVariant::L),
            "rouge-1" => variant(RougeVariant::One),
            "rouge-2" => variant(RougeVariant::Two),
            "relevance" => RewardFn::Relevance,
            "diff" => RewardFn::Diff,
            "float_diff" => RewardFn::FloatDiff,
            "date" => RewardFn::Date,
            "echo" => RewardFn::Echo,
            "copied_number" => RewardFn::CopiedNumber,
            _ => return Err(unknown()),
        })
    }
}

impl fmt::Display for RewardFn {
    /// The canonical name (`rouge-l`, `rouge-1:p`, `diff`, …); it parses back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RewardFn::Rouge { variant, metric } => {
                f.write_str(variant.key())?;
                match metric {
                    RougeMetric::F => Ok(()),
                    RougeMetric::P => f.write_str(":p"),
                    RougeMetric::R => f.write_str(":r"),
                }
            }
            RewardFn::Relevance => f.write_str("relevance"),
            RewardFn::Diff => f.write_str("diff"),
            RewardFn::FloatDiff => f.write_str("float_diff"),
            RewardFn::Date => f.write_str("date"),
            RewardFn::Echo => f.write_str("echo"),
            RewardFn::CopiedNumber => f.write_str("copied_number"),
        }
    }
}

impl Serialize for RewardFn {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RewardFn {
    /// Parses the names [`RewardFn::from_str`] accepts (what serialising writes).
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<str>::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// A reward function with its weight in a [`RewardSpec`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Weighted {
    /// The function.
    pub function: RewardFn,
    /// Its weight, in [0, 1].
    pub weight: f64,
}

/// Tolerance on "reward weights sum to 1" (SN1 compares floats exactly, which rejects
/// e.g. 0.1 + 0.2 + 0.7).
pub const WEIGHT_SUM_TOLERANCE: f64 = 1e-9;

/// A task's rewards and penalties, validated: reward weights in [0, 1] summing to 1,
/// penalty weights in [0, 1], every name known, no reward listed twice.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RewardSpec {
    rewards: Vec<Weighted>,
    penalties: Vec<Weighted>,
}

impl RewardSpec {
    /// Builds a spec from (name, weight) pairs, e.g. a task script's `REWARDS` map and
    /// `PENALTIES`.
    pub fn new<N, R, P>(rewards: R, penalties: P) -> Result<Self, ScoreError>
    where
        N: AsRef<str>,
        R: IntoIterator<Item = (N, f64)>,
        P: IntoIterator<Item = (N, f64)>,
    {
        let parse = |(name, weight): (N, f64), penalty: bool| -> Result<Weighted, ScoreError> {
            let name = name.as_ref();
            let function: RewardFn = name.parse()?;
            if !(0.0..=1.0).contains(&weight) {
                return Err(ScoreError::WeightOutOfRange {
                    name: name.to_owned(),
                    weight,
                    penalty,
                });
            }
            Ok(Weighted { function, weight })
        };
        let rewards = rewards
            .into_iter()
            .map(|r| parse(r, false))
            .collect::<Result<Vec<_>, _>>()?;
        let penalties = penalties
            .into_iter()
            .map(|p| parse(p, true))
            .collect::<Result<Vec<_>, _>>()?;
        if rewards.is_empty() {
            return Err(ScoreError::NoRewards);
        }
        for (i, r) in rewards.iter().enumerate() {
            if rewards[..i].iter().any(|o| o.function == r.function) {
                return Err(ScoreError::DuplicateReward {
                    function: r.function,
                });
            }
        }
        let sum: f64 = rewards.iter().map(|r| r.weight).sum();
        if (sum - 1.0).abs() > WEIGHT_SUM_TOLERANCE {
            return Err(ScoreError::WeightsDoNotSumToOne { sum });
        }
        Ok(RewardSpec { rewards, penalties })
    }

    /// The weighted reward functions, applied to (reference, completion).
    pub fn rewards(&self) -> &[Weighted] {
        &self.rewards
    }

    /// The weighted penalties, applied to (challenge, completion).
    pub fn penalties(&self) -> &[Weighted] {
        &self.penalties
    }

    /// Whether scoring needs an embedder (some function is `relevance`).
    pub fn needs_embedder(&self) -> bool {
        self.rewards
            .iter()
            .chain(&self.penalties)
            .any(|w| w.function.needs_embedder())
    }

    /// SN1's total reward for each completion: `R = Σ wᵢ·rᵢ(reference, completion)`, then
    /// `R ×= 1 − w_p·p(challenge, completion)` for each penalty; with every component.
    pub fn score(
        &self,
        reference: &str,
        challenge: &str,
        completions: &[&str],
        embedder: Option<&dyn Embed>,
    ) -> Result<Vec<Breakdown>, ScoreError> {
        let mut out: Vec<Breakdown> = completions
            .iter()
            .map(|_| Breakdown {
                total: 0.0,
                components: Vec::with_capacity(self.rewards.len() + self.penalties.len()),
            })
            .collect();
        for (role, list, against) in [
            (Role::Reward, &self.rewards, reference),
            (Role::Penalty, &self.penalties, challenge),
        ] {
            for w in list {
                let values = w.function.score(against, completions, embedder)?;
                for (b, value) in out.iter_mut().zip(values) {
                    match role {
                        Role::Reward => b.total += w.weight * value,
                        Role::Penalty => b.total *= 1.0 - w.weight * value,
                    }
                    b.components.push(Component {
                        function: w.function,
                        role,
                        weight: w.weight,
                        value,
                    });
                }
            }
        }
        Ok(out)
    }
}

/// Whether a component added to the reward or scaled it down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Added as `weight·value` (against the reference).
    Reward,
    /// Multiplied in as `1 − weight·value` (against the challenge).
    Penalty,
}

/// One reward function's raw value for one completion.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Component {
    /// The function (serialised by its canonical name).
    pub function: RewardFn,
    /// Reward or penalty.
    pub role: Role,
    /// Its weight in the spec.
    pub weight: f64,
    /// Its raw value, in [0, 1].
    pub value: f64,
}

/// A completion's total reward and the components it came from, for event logging.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Breakdown {
    /// The combined reward.
    pub total: f64,
    /// Rewards first, then penalties, in spec order.
    pub components: Vec<Component>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(rewards: &[(&str, f64)], penalties: &[(&str, f64)]) -> Result<RewardSpec, ScoreError> {
        RewardSpec::new(rewards.iter().copied(), penalties.iter().copied())
    }

    #[test]
    fn names_round_trip() {
        for name in [
            "rouge-1",
            "rouge-2",
            "rouge-l",
            "rouge-1:p",
            "rouge-l:r",
            "relevance",
            "diff",
            "float_diff",
            "date",
            "echo",
            "copied_number",
        ] {
            assert_eq!(name.parse::<RewardFn>().unwrap().to_string(), name);
        }
        assert_eq!("rouge".parse::<RewardFn>().unwrap().to_string(), "rouge-l");
        assert_eq!(
            "rouge-1:f".parse::<RewardFn>().unwrap().to_string(),
            "rouge-1"
        );
        for bad in ["rouge-3", "rouge-1:x", "diff:p", "Rouge", ""] {
            assert!(
                matches!(
                    bad.parse::<RewardFn>(),
                    Err(ScoreError::UnknownFunction { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn components_round_trip_through_json() {
        let component = Component {
            function: "rouge-1:p".parse().unwrap(),
            role: Role::Penalty,
            weight: 0.5,
            value: 0.1 + 0.2,
        };
        let json = serde_json::to_string(&component).unwrap();
        assert!(json.contains(r#""function":"rouge-1:p""#), "{json}");
        assert!(json.contains(r#""role":"penalty""#), "{json}");
        assert_eq!(serde_json::from_str::<Component>(&json).unwrap(), component);
        let bad = json.replace("rouge-1:p", "rouge-9");
        let err = serde_json::from_str::<Component>(&bad).unwrap_err();
        assert!(err.to_string().contains("rouge-9"), "{err}");
    }

    #[test]
    fn validation_errors() {
        assert!(matches!(spec(&[], &[]), Err(ScoreError::NoRewards)));
        assert!(matches!(
            spec(&[("diff", 0.5)], &[]),
            Err(ScoreError::WeightsDoNotSumToOne { .. })
        ));
        assert!(matches!(
            spec(&[("diff", 1.5), ("date", -0.5)], &[]),
            Err(ScoreError::WeightOutOfRange { penalty: false, .. })
        ));
        assert!(matches!(
            spec(&[("diff", f64::NAN)], &[]),
            Err(ScoreError::WeightOutOfRange { .. })
        ));
        assert!(matches!(
            spec(&[("diff", 1.0)], &[("rouge-1", 2.0)]),
            Err(ScoreError::WeightOutOfRange { penalty: true, .. })
        ));
        assert!(matches!(
            spec(&[("rouge", 0.5), ("rouge-l", 0.5)], &[]),
            Err(ScoreError::DuplicateReward { .. })
        ));
        assert!(matches!(
            spec(&[("bleu", 1.0)], &[]),
            Err(ScoreError::UnknownFunction { .. })
        ));
        spec(&[("rouge-1", 0.1), ("diff", 0.2), ("date", 0.7)], &[])
            .expect("0.1 + 0.2 + 0.7 is accepted");
    }

    #[test]
    fn sn1_combination() {
        // QA-like without relevance: rouge-1 0.5 + diff 0.5, rouge-1 penalty 0.5.
        let s = spec(&[("rouge-1", 0.5), ("diff", 0.5)], &[("rouge-1", 0.5)]).unwrap();
        let (reference, challenge) = ("the cat sat on the mat", "where did the cat sit");
        let completions = ["the cat sat on the mat", "", "where did the cat sit"];
        let out = s.score(reference, challenge, &completions, None).unwrap();
        for (b, c) in out.iter().zip(completions) {
            let r1 = RewardFn::Rouge {
                variant: RougeVariant::One,
                metric: RougeMetric::F,
            };
            let want = (0.5 * r1.score_one(reference, c).unwrap()
                + 0.5 * sequence_ratio(reference, c))
                * (1.0 - 0.5 * r1.score_one(challenge, c).unwrap());
            assert_eq!(b.total, want);
            assert_eq!(b.components.len(), 3);
            assert_eq!(b.components[2].role, Role::Penalty);
        }
        assert_eq!(out[1].total, 0.0);
        let json = serde_json::to_value(&out[0]).unwrap();
        assert_eq!(json["components"][0]["function"], "rouge-1");
        assert_eq!(json["components"][2]["role"], "penalty");
    }

    #[test]
    fn relevance_without_embedder_is_an_error() {
        let s = spec(&[("relevance", 1.0)], &[]).unwrap();
        assert!(s.needs_embedder());
        assert!(matches!(
            s.score("a", "b", &["c"], None),
            Err(ScoreError::EmbedderRequired { .. })
        ));
    }
}
