//! SN1's `relevance` reward: embedding similarity to the reference above the
//! similarity an empty completion gets.

use super::ScoreError;
use crate::embed::{Embedder, cosine};

/// The boxed error an [`Embed`] implementation reports.
pub type EmbedFailure = Box<dyn std::error::Error + Send + Sync>;

/// Anything that turns texts into sentence embeddings, one vector per text.
///
/// Implemented for [`neuron::embed::Embedder`](crate::embed::Embedder) and for closures
/// `Fn(&[&str]) -> Result<Vec<Vec<f32>>, E>`.
pub trait Embed: Send + Sync {
    /// Embeds `texts`, returning one vector per text, in order.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedFailure>;
}

impl<F, E> Embed for F
where
    F: Fn(&[&str]) -> Result<Vec<Vec<f32>>, E> + Send + Sync,
    E: std::error::Error + Send + Sync + 'static,
{
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedFailure> {
        self(texts).map_err(Into::into)
    }
}

impl Embed for Embedder {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedFailure> {
        Embedder::embed(self, texts).map_err(Into::into)
    }
}

/// Relevance of each completion: `cos(e(ref), e(completion)) − cos(e(ref), e(""))`,
/// clipped to [0, 1]. Embeds the reference, the empty string and every completion in
/// one call.
pub fn relevance(
    embedder: &dyn Embed,
    reference: &str,
    completions: &[&str],
) -> Result<Vec<f64>, ScoreError> {
    let mut texts = Vec::with_capacity(completions.len() + 2);
    texts.extend([reference, ""]);
    texts.extend_from_slice(completions);
    let vectors = embedder.embed(&texts).map_err(ScoreError::Embedding)?;
    if vectors.len() != texts.len() {
        return Err(ScoreError::EmbeddingCount {
            expected: texts.len(),
            got: vectors.len(),
        });
    }
    let reference = &vectors[0];
    if let Some(bad) = vectors.iter().find(|v| v.len() != reference.len()) {
        return Err(ScoreError::EmbeddingDimension {
            expected: reference.len(),
            got: bad.len(),
        });
    }
    let similarity = |v: &[f32]| f64::from(cosine(reference, v));
    let baseline = similarity(&vectors[1]);
    Ok(vectors[2..]
        .iter()
        .map(|v| (similarity(v) - baseline).clamp(0.0, 1.0))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("embedder down")]
    struct Down;

    /// A bag-of-letters embedding: real enough to order similar texts.
    fn letters(texts: &[&str]) -> Result<Vec<Vec<f32>>, Down> {
        Ok(texts
            .iter()
            .map(|t| {
                let mut v = vec![0.1f32; 26];
                for c in t
                    .to_ascii_lowercase()
                    .bytes()
                    .filter(u8::is_ascii_lowercase)
                {
                    v[usize::from(c - b'a')] += 1.0;
                }
                v
            })
            .collect())
    }

    #[test]
    fn empty_completion_scores_zero_and_copy_scores_most() {
        let r = relevance(
            &letters,
            "the quick brown fox",
            &["", "the quick brown fox", "zzz"],
        )
        .unwrap();
        assert_eq!(r[0], 0.0);
        assert!(r[1] > 0.2 && r[1] <= 1.0, "{r:?}");
        assert!(r[2] < r[1]);
    }

    #[test]
    fn embedder_failures_are_errors() {
        let down = |_: &[&str]| -> Result<Vec<Vec<f32>>, Down> { Err(Down) };
        assert!(matches!(
            relevance(&down, "a", &["b"]),
            Err(ScoreError::Embedding(_))
        ));
        let short = |_: &[&str]| -> Result<Vec<Vec<f32>>, Down> { Ok(vec![vec![1.0]]) };
        assert!(matches!(
            relevance(&short, "a", &["b"]),
            Err(ScoreError::EmbeddingCount {
                expected: 3,
                got: 1
            })
        ));
        let ragged = |t: &[&str]| -> Result<Vec<Vec<f32>>, Down> {
            Ok(t.iter()
                .enumerate()
                .map(|(i, _)| vec![1.0; i + 1])
                .collect())
        };
        assert!(matches!(
            relevance(&ragged, "a", &["b"]),
            Err(ScoreError::EmbeddingDimension { .. })
        ));
    }
}
