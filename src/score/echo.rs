//! The echo defence: how much a completion copies the challenge it answers. Not SN1's
//! (SN1 v1.3 penalises rouge-1 against the challenge); `docs/scoring.md` says why.
//!
//! - [`echo`]: rouge-1 F against the challenge, except that a completion made only of
//!   the challenge's words is a copy whatever its length (1): three words picked from
//!   the question are as much an echo as the whole question.
//! - [`copied_number`]: 1 when the completion's answer (its last number, as
//!   [`super::float_diff`] reads it) is, up to its sign, a number the challenge writes:
//!   a number copied from the question is not an answer to it.

use super::numeric::{last_number, numbers};
use super::rouge::{RougeVariant, rouge_variant};

/// How much `completion` echoes `challenge`, in [0, 1]: 1 when every distinct word of
/// the completion (rouge's words) occurs in the challenge, else rouge-1 F. 0 when either
/// text is empty.
pub fn echo(challenge: &str, completion: &str) -> f64 {
    if challenge.is_empty() || completion.is_empty() {
        return 0.0;
    }
    let s = rouge_variant(RougeVariant::One, completion, challenge);
    // `p`: the share of the completion's distinct words that the challenge has.
    if s.p >= 1.0 { 1.0 } else { s.f }
}

/// 1 when the last number of `completion` equals, up to its sign, a number written in
/// `challenge`, else 0 (also when the completion has no number).
pub fn copied_number(challenge: &str, completion: &str) -> f64 {
    match last_number(completion) {
        Some(answer) if numbers(challenge).any(|n| n == answer.abs()) => 1.0,
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHALLENGE: &str = "I'd like to know: What is the Scottish Great Highland bagpipe?";

    #[test]
    fn a_whole_or_partial_copy_is_an_echo() {
        assert_eq!(echo(CHALLENGE, CHALLENGE), 1.0);
        assert_eq!(echo(CHALLENGE, "is bagpipe? I'd"), 1.0);
        assert_eq!(echo(CHALLENGE, "the the"), 1.0);
    }

    #[test]
    fn an_answer_with_words_of_its_own_is_scored_by_overlap() {
        let answer = "The Scottish Great Highland bagpipe is a traditional instrument.";
        let value = echo(CHALLENGE, answer);
        let f = rouge_variant(RougeVariant::One, answer, CHALLENGE).f;
        assert_eq!(value, f);
        assert!(value > 0.0 && value < 1.0, "{value}");
        assert_eq!(echo(CHALLENGE, "Paris"), 0.0);
        assert_eq!(echo(CHALLENGE, ""), 0.0);
        assert_eq!(echo("", "anything"), 0.0);
    }

    #[test]
    fn a_number_from_the_question_is_a_copied_answer() {
        let challenge = "How can I solve the hypotenuse of a right triangle with legs 17 and 22?";
        assert_eq!(copied_number(challenge, "the the 17"), 1.0);
        assert_eq!(copied_number(challenge, challenge), 1.0);
        assert_eq!(copied_number(challenge, "legs 17 and 22."), 1.0);
        assert_eq!(copied_number(challenge, "The answer is 27.8"), 0.0);
        assert_eq!(copied_number(challenge, "17 and 22 give 27.8"), 0.0);
        assert_eq!(copied_number(challenge, "no number at all"), 0.0);
        assert_eq!(copied_number("no number", "17"), 0.0);
        assert_eq!(copied_number("What is 7% of 1,000.5?", "7"), 1.0);
        assert_eq!(copied_number("What is 7% of 1,000.5?", "1000.5"), 1.0);
        assert_eq!(copied_number("What is 2^5?", "-5"), 1.0);
        assert_eq!(copied_number("What is 2^5?", "32"), 0.0);
    }
}
