//! Reward functions for SN1-style validation, matching the Python implementations SN1
//! v1.3 uses (see `docs/scoring.md` for the exact rules and every deviation):
//!
//! - [`rouge`] / [`rouge_variant`]: ROUGE-1/2/L (f, p, r) of the Python `rouge` package;
//! - [`sequence_ratio`]: `difflib.SequenceMatcher(None, a, b).ratio()`;
//! - [`relevance`]: embedding cosine above the empty-string baseline, clipped to [0, 1];
//! - [`float_diff`]: SN1's numeric answer reward;
//! - [`date_score`]: SN1's date reward;
//! - [`echo`] and [`copied_number`]: the echo defence (penalties against the challenge;
//!   ours, not SN1's);
//! - [`inference`]: SN1 v2's verified inference (tokens and top-k logprobs against a
//!   regeneration);
//! - [`RewardFn`] (a function by name) and [`RewardSpec`] (a task's weighted rewards and
//!   penalties, combined as SN1 does into a [`Breakdown`] per completion).
//!
//! Every function is pure and panic-free on any input text.

/// Longest completion a validator keeps for scoring by default, in bytes
/// (`dendrite.max_completion_bytes`), and the longest text a script may score
/// (`score::reward`): ROUGE-L and `diff` cost grows with the product of the lengths,
/// and within this one call stays well under a second.
pub const MAX_SCORED_BYTES: usize = 64 * 1024;

mod date;
mod diff;
mod echo;
pub mod inference;
mod numeric;
mod relevance;
mod rouge;
mod spec;
mod text;

pub use date::{DayAndYear, date_difference, date_score, parse_date};
pub use diff::sequence_ratio;
pub use echo::{copied_number, echo};
pub use numeric::{float_diff, last_number};
pub use relevance::{Embed, EmbedFailure, relevance};
pub use rouge::{Prf, RougeScores, RougeVariant, rouge, rouge_variant};
pub use spec::{
    Breakdown, Component, RewardFn, RewardSpec, Role, RougeMetric, WEIGHT_SUM_TOLERANCE, Weighted,
};

/// Errors from scoring and from building a [`RewardSpec`].
#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    /// A reward function name that is not one of [`RewardFn::NAMES`] (with an optional
    /// `:f`/`:p`/`:r` suffix for the rouge ones).
    #[error("unknown reward function {name:?}; known: {}, rouge ones optionally with :f, :p or :r", RewardFn::NAMES.join(", "))]
    UnknownFunction {
        /// The name as given.
        name: String,
    },
    /// A weight outside [0, 1] (or NaN).
    #[error("{} {name:?} has weight {weight}, which is not in [0, 1]", if *penalty { "penalty" } else { "reward" })]
    WeightOutOfRange {
        /// The function's name as given.
        name: String,
        /// The weight.
        weight: f64,
        /// Whether it was a penalty.
        penalty: bool,
    },
    /// Reward weights whose sum is not 1.
    #[error("reward weights sum to {sum}, not 1")]
    WeightsDoNotSumToOne {
        /// Their sum.
        sum: f64,
    },
    /// A spec without any reward function.
    #[error("a reward spec needs at least one reward function")]
    NoRewards,
    /// The same reward function listed twice.
    #[error("reward function {function} is listed twice")]
    DuplicateReward {
        /// The function.
        function: RewardFn,
    },
    /// A float_diff reference that is not a number.
    #[error("float_diff reference {reference:?} is not a number")]
    NotANumber {
        /// The reference as given.
        reference: String,
    },
    /// Relevance scoring without an embedder.
    #[error("reward function {function} needs an embedder")]
    EmbedderRequired {
        /// The function.
        function: RewardFn,
    },
    /// The embedder failed.
    #[error("embedding failed: {0}")]
    Embedding(#[source] EmbedFailure),
    /// The embedder returned the wrong number of vectors.
    #[error("embedder returned {got} vectors for {expected} texts")]
    EmbeddingCount {
        /// Texts given.
        expected: usize,
        /// Vectors returned.
        got: usize,
    },
    /// The embedder returned vectors of different lengths.
    #[error("embedder returned vectors of length {expected} and {got}")]
    EmbeddingDimension {
        /// Length of the reference's vector.
        expected: usize,
        /// A different length.
        got: usize,
    },
}
