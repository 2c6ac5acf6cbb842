//! Evaluation data: (prompt, response) pairs from JSONL files, grouped into batches.
//!
//! A line is a JSON object. Pairs are read from `prompt`/`response` fields, or else
//! from a validator event (see [`pair_from_event`]); lines that are neither (other
//! event kinds, blank lines) are skipped, malformed JSON is an error naming the line.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::FinetuneError;

/// One evaluation example: the loss is taken over `response` given `prompt`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pair {
    /// What the model is conditioned on.
    pub prompt: String,
    /// What the model is scored on.
    pub response: String,
}

/// A group of pairs scored together (one loss per batch per model).
pub type Batch = Vec<Pair>;

/// The pair in one validator event: the prompt is `challenge` (else `query`); the
/// response is the best-rewarded non-empty completion, read from our own events
/// (`events.jsonl` of `neuron validator`: `responses[]` with `completion` and `reward`)
/// or from SN1's Python event format (`best_completion`, else parallel `completions`
/// and `rewards` arrays). Events without a prompt or a non-empty completion give `None`.
pub fn pair_from_event(event: &Value) -> Option<Pair> {
    let prompt = event
        .get("challenge")
        .or_else(|| event.get("query"))?
        .as_str()?
        .trim();
    let response = match event.get("best_completion").and_then(Value::as_str) {
        Some(best) => best.to_string(),
        None => {
            let scored: Vec<(&str, f64)> = match event.get("responses") {
                Some(responses) => responses
                    .as_array()?
                    .iter()
                    .filter_map(|r| {
                        Some((r.get("completion")?.as_str()?, r.get("reward")?.as_f64()?))
                    })
                    .collect(),
                None => event
                    .get("completions")?
                    .as_array()?
                    .iter()
                    .zip(event.get("rewards")?.as_array()?)
                    .filter_map(|(c, r)| Some((c.as_str()?, r.as_f64()?)))
                    .collect(),
            };
            scored
                .into_iter()
                .filter(|(c, r)| !c.trim().is_empty() && r.is_finite())
                .max_by(|a, b| a.1.total_cmp(&b.1))?
                .0
                .to_string()
        }
    };
    (!prompt.is_empty() && !response.trim().is_empty()).then(|| Pair {
        prompt: prompt.to_string(),
        response,
    })
}

fn pair_from_line(value: &Value) -> Option<Pair> {
    match (
        value.get("prompt").and_then(Value::as_str),
        value.get("response").and_then(Value::as_str),
    ) {
        (Some(p), Some(r)) if !p.trim().is_empty() && !r.trim().is_empty() => Some(Pair {
            prompt: p.to_string(),
            response: r.to_string(),
        }),
        _ => pair_from_event(value),
    }
}

/// Reads every pair from `path`: a `.jsonl` file, or a directory whose `*.jsonl` files
/// (recursively, in name order) are read in turn. Fails when nothing usable is found.
pub fn load_pairs(path: &Path) -> Result<Vec<Pair>, FinetuneError> {
    let files: Vec<PathBuf> = if path.is_dir() {
        walkdir::WalkDir::new(path)
            .sort_by_file_name()
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| {
                e.file_type().is_file() && e.path().extension().is_some_and(|x| x == "jsonl")
            })
            .map(|e| e.into_path())
            .collect()
    } else {
        vec![path.to_path_buf()]
    };
    let mut pairs = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).map_err(|source| FinetuneError::Io {
            path: file.clone(),
            source,
        })?;
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let value: Value = serde_json::from_str(line).map_err(|e| FinetuneError::Data {
                path: format!("{}:{}", file.display(), n + 1),
                reason: e.to_string(),
            })?;
            pairs.extend(pair_from_line(&value));
        }
    }
    if pairs.is_empty() {
        return Err(FinetuneError::Data {
            path: path.display().to_string(),
            reason: "no (prompt, response) pairs found (expected `prompt`/`response` \
                     fields or validator events with `challenge` and completions)"
                .into(),
        });
    }
    Ok(pairs)
}

/// Up to `count` batches of `size` pairs, taken in order starting at pair `offset`
/// (wrapping around), so successive rounds see different data.
pub fn batches(pairs: &[Pair], count: usize, size: usize, offset: usize) -> Vec<Batch> {
    if pairs.is_empty() || size == 0 {
        return Vec::new();
    }
    let count = count.min(pairs.len().div_ceil(size));
    (0..count)
        .map(|b| {
            (0..size)
                .map(|k| pairs[(offset + b * size + k) % pairs.len()].clone())
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_give_their_best_completion() {
        let event = json!({"challenge": "Q?", "completions": ["bad", "good", ""],
                           "rewards": [0.1, 0.9, 1.0]});
        assert_eq!(
            pair_from_event(&event),
            Some(Pair {
                prompt: "Q?".into(),
                response: "good".into()
            })
        );
        let best = json!({"query": "Q", "best_completion": "A"});
        assert_eq!(pair_from_event(&best).unwrap().response, "A");
        assert_eq!(pair_from_event(&json!({"kind": "weights"})), None);
        assert_eq!(
            pair_from_event(&json!({"challenge": "Q", "completions": [""], "rewards": [1]})),
            None
        );
    }

    #[test]
    fn our_validator_events_give_their_best_response() {
        let response = |completion: &str, reward: f64| {
            json!({"uid": 1, "hotkey": "5X",
            "completion": completion, "status_code": 200, "status_message": "Success",
            "latency_s": 0.1, "reward": reward, "components": []})
        };
        let event = json!({"step": 3, "challenge": "Who?", "query": "q",
            "responses": [response("meh", 0.2), response("best", 0.9), response("", 1.0)]});
        assert_eq!(
            pair_from_event(&event),
            Some(Pair {
                prompt: "Who?".into(),
                response: "best".into()
            })
        );
        let failed = json!({"challenge": "Who?", "responses": [response("", 0.0)]});
        assert_eq!(pair_from_event(&failed), None);
    }

    #[test]
    fn jsonl_files_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.jsonl"),
            "{\"prompt\":\"p1\",\"response\":\"r1\"}\n\n{\"step\":3}\n",
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(
            dir.path().join("sub/events.jsonl"),
            "{\"challenge\":\"c\",\"best_completion\":\"b\"}\n",
        )
        .unwrap();
        let pairs = load_pairs(dir.path()).unwrap();
        assert_eq!(pairs.len(), 2);
        assert_eq!(pairs[1].prompt, "c");

        std::fs::write(dir.path().join("bad.jsonl"), "{not json\n").unwrap();
        let err = load_pairs(&dir.path().join("bad.jsonl")).unwrap_err();
        assert!(err.to_string().contains("bad.jsonl:1"), "{err}");
        std::fs::write(dir.path().join("empty.jsonl"), "{\"x\":1}\n").unwrap();
        assert!(load_pairs(&dir.path().join("empty.jsonl")).is_err());
        assert!(load_pairs(&dir.path().join("missing.jsonl")).is_err());
    }

    #[test]
    fn batches_wrap_and_cap() {
        let pairs: Vec<Pair> = (0..5)
            .map(|i| Pair {
                prompt: format!("p{i}"),
                response: format!("r{i}"),
            })
            .collect();
        let b = batches(&pairs, 10, 2, 4);
        assert_eq!(b.len(), 3);
        assert_eq!(b[0][0].prompt, "p4");
        assert_eq!(b[0][1].prompt, "p0");
        assert!(batches(&pairs, 3, 0, 0).is_empty());
    }
}
