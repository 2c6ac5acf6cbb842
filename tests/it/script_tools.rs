//! The tool scripts against a real HTTP server on loopback serving recorded-shape
//! MediaWiki and StackExchange responses (live modes), and over the sample corpus
//! (offline modes); the `http` module's cache and size cap.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use neuron::models::Resolver;
use neuron::prompting::contract::{PromptingContracts, PromptingLookups};
use neuron::prompting::hooks::{PromptingHooks, TaskInstance};
use neuron::script::{HostConfig, Lazy, ModelSettings, ScriptHost, Services};
use neuron::services::{Corpus, HttpConfig};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/script")
}

/// A loopback HTTP/1.1 server answering like MediaWiki and StackExchange from the
/// fixtures; counts requests.
struct Server {
    base: String,
    hits: Arc<AtomicUsize>,
}

fn respond(path: &str, params: &BTreeMap<String, String>) -> (u16, String) {
    let read = |name: &str| std::fs::read_to_string(fixtures().join("http").join(name)).unwrap();
    let months = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    match path {
        "/w/api.php" if params.get("list").map(String::as_str) == Some("random") => {
            (200, read("mediawiki_random.json"))
        }
        "/w/api.php" => {
            let title = params.get("titles").cloned().unwrap_or_default();
            let body = match title.as_str() {
                "Alan Turing" => read("mediawiki_page_alan_turing.json"),
                "Stub article" => read("mediawiki_page_stub.json"),
                t if months.iter().any(|m| t.starts_with(m)) => read("mediawiki_page_day.json"),
                _ => read("mediawiki_missing.json"),
            };
            (200, body.replace("__TITLE__", &title))
        }
        "/2.3/questions" => (200, read("stackexchange_questions.json")),
        p if p.starts_with("/2.3/questions/") && p.ends_with("/answers") => {
            (200, read("stackexchange_answers.json"))
        }
        "/big" => (200, "x".repeat(10_000)),
        _ => (404, "{}".into()),
    }
}

fn serve() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                    break;
                }
            }
            let target = request_line.split(' ').nth(1).unwrap_or("/");
            let url = url::Url::parse(&format!("http://x{target}")).unwrap();
            let params: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
            let (status, body) = respond(url.path(), &params);
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    Server { base, hits }
}

fn host(config: &[(&str, &str)], max_bytes: usize) -> ScriptHost {
    let wiki = fixtures().join("wiki_sample.json");
    let mut services = Services::with_resolver(
        Resolver::default(),
        &ModelSettings::default(),
        HttpConfig {
            allow_hosts: vec!["127.0.0.1".into()],
            max_bytes,
            ..HttpConfig::default()
        },
        vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")],
    );
    services.wiki = Lazy::new(move || Corpus::load(&wiki).map_err(|e| e.to_string()));
    let mut hc = HostConfig::new(env!("CARGO_MANIFEST_DIR"));
    for (k, v) in config {
        hc.config.insert((*k).into(), (*v).into());
    }
    ScriptHost::new(hc, services, PromptingContracts).unwrap()
}

/// Runs `body` (with `ctx` in scope) in a throwaway task file outside the roots (its
/// imports still resolve against the repo's script root).
fn eval(host: &ScriptHost, imports: &str, body: &str, seed: u64) -> rhai::Map {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("probe.rhai");
    std::fs::write(
        &file,
        format!(
            "{imports}\nconst NAME = \"probe\"; const WEIGHT = 0.0; const REWARDS = #{{ diff: 1.0 }}; const PENALTIES = #{{}};\nfn generate(ctx) {{ let out = {{ {body} }}; #{{ query: \"q\", reference: \"r\", out: out }} }}"
        ),
    )
    .unwrap();
    let script = host.compile(&file).unwrap();
    let TaskInstance { fields, .. } = host.generate(&script, &host.ctx(seed, 0)).unwrap();
    fields["out"].clone().cast::<rhai::Map>()
}

#[test]
fn wikipedia_live_picks_a_long_non_excluded_section() {
    let server = serve();
    let api = format!("{}/w/api.php", server.base);
    let host = host(&[("wiki_mode", "live"), ("wikipedia_api", &api)], 1 << 20);
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..6 {
        let c = eval(
            &host,
            "import \"tools/wikipedia\" as wiki;",
            "wiki::section(ctx)",
            seed,
        );
        assert_eq!(c["title"].to_string(), "Alan Turing");
        let section = c["section"].to_string();
        assert!(
            ["Family", "Career and research"].contains(&section.as_str()),
            "{section}"
        );
        assert!(c["content"].to_string().split_whitespace().count() >= 50);
        let tags: Vec<String> = c["tags"]
            .clone()
            .into_array()
            .unwrap()
            .iter()
            .map(|t| t.to_string())
            .collect();
        assert_eq!(tags, ["1912 births", "British cryptographers"]);
        seen.insert(section);
    }
    assert_eq!(seen.len(), 2, "both usable sections get picked over seeds");
}

#[test]
fn wikidate_live_reads_dated_lines_and_builds_valid_dates() {
    let server = serve();
    let api = format!("{}/w/api.php", server.base);
    let host = host(&[("wiki_mode", "live"), ("wikipedia_api", &api)], 1 << 20);
    let date = regex::Regex::new(r"^(January|February|March|April|May|June|July|August|September|October|November|December) (\d{1,2}), (\d{4})$").unwrap();
    let mut sections = std::collections::BTreeSet::new();
    for seed in 0..12 {
        let e = eval(
            &host,
            "import \"tools/wikidate\" as wd;",
            "wd::event(ctx)",
            seed,
        );
        let d = e["date"].to_string();
        let caps = date.captures(&d).unwrap_or_else(|| panic!("{d}"));
        assert!(["1282", "1867", "1853", "1912"].contains(&&caps[3]), "{d}");
        assert!(!e["event"].to_string().contains(" – "));
        sections.insert(e["section"].to_string());
    }
    assert!(
        sections.contains("Events") && sections.len() >= 2,
        "{sections:?}"
    );
}

#[test]
fn date_qa_query_follows_sn1_wording() {
    let server = serve();
    let api = format!("{}/w/api.php", server.base);
    let host = host(&[("wiki_mode", "live"), ("wikipedia_api", &api)], 1 << 20);
    let task = host.task("date_qa").unwrap();
    let mut kinds = std::collections::BTreeSet::new();
    for seed in 0..16 {
        let t = host.generate(&task, &host.ctx(seed, 0)).unwrap();
        assert!(t.query.ends_with("on what exact date?"), "{}", t.query);
        if t.query.contains("Vincent van Gogh") {
            assert!(
                t.query.contains(" was born on what exact date?"),
                "{}",
                t.query
            );
            kinds.insert("birth");
        }
        if t.query.contains("Karl May") {
            assert!(t.query.contains(" died on what exact date?"), "{}", t.query);
            kinds.insert("death");
        }
    }
    assert_eq!(kinds.len(), 2, "{kinds:?}");
}

#[test]
fn stackoverflow_prefers_the_accepted_answer_and_strips_html() {
    let server = serve();
    let api = format!("{}/2.3", server.base);
    let host = host(&[("stackexchange_api", &api)], 1 << 20);
    let q = eval(
        &host,
        "import \"tools/stackoverflow\" as so;",
        "so::question(ctx)",
        1,
    );
    assert_eq!(
        q["title"].to_string(),
        "How do I undo the most recent local commits in Git?"
    );
    assert!(
        q["question"]
            .to_string()
            .starts_with("I accidentally committed the wrong files to Git, but didn't push")
    );
    assert_eq!(
        q["answer"].to_string(),
        "Undo a commit & redo\n$ git commit -m \"Something terribly misguided\"\n$ git reset HEAD~"
    );
    assert_eq!(q["topic"].to_string(), "git");
}

#[test]
fn http_cache_size_cap_and_status_errors() {
    let server = serve();
    let host = host(&[], 4000);
    let url = format!("{}/2.3/questions", server.base);
    let hits_before = server.hits.load(Ordering::SeqCst);
    let out = eval(
        &host,
        "",
        &format!(
            r#"let a = http::get_text("{url}"); let b = http::get_text("{url}"); #{{ same: a == b }}"#
        ),
        0,
    );
    assert_eq!(out["same"].as_bool(), Ok(true));
    assert_eq!(
        server.hits.load(Ordering::SeqCst) - hits_before,
        1,
        "second GET served from cache"
    );
    for (path, want) in [("/big", "byte cap"), ("/nope", "HTTP status 404")] {
        let probe = format!(
            r#"let r = "ok"; try {{ http::get_text("{}{path}"); }} catch (e) {{ r = e; }} #{{ r: r }}"#,
            server.base
        );
        let out = eval(&host, "", &probe, 0);
        assert!(out["r"].to_string().contains(want), "{path}: {}", out["r"]);
    }
}

#[test]
fn offline_wikipedia_and_wikidate_use_the_corpus() {
    let host = host(&[], 1 << 20);
    let c = eval(
        &host,
        "import \"tools/wikipedia\" as wiki;",
        "wiki::section(ctx)",
        3,
    );
    assert_eq!(c["source"].to_string(), "wikipedia-offline");
    assert!(c["content"].to_string().split_whitespace().count() >= 50);
    let t = host.task("date_qa").unwrap();
    let a = host.generate(&t, &host.ctx(5, 0)).unwrap();
    let b = host.generate(&t, &host.ctx(5, 0)).unwrap();
    assert_eq!(
        (a.query.clone(), a.reference.clone()),
        (b.query, b.reference)
    );
    assert!(a.query.ends_with(" on what exact date?"), "{}", a.query);
    assert!(
        regex::Regex::new(r"^[A-Z][a-z]+ \d{1,2}, \d{3,4}$")
            .unwrap()
            .is_match(&a.reference),
        "{}",
        a.reference
    );
}

#[test]
fn debugging_task_corrupts_a_real_snippet_deterministically() {
    let host = host(&[], 1 << 20);
    let t = host.task("debugging").unwrap();
    let a = host.generate(&t, &host.ctx(11, 0)).unwrap();
    let b = host.generate(&t, &host.ctx(11, 0)).unwrap();
    assert_eq!((&a.query, &a.reference), (&b.query, &b.reference));
    let lines = a.reference.lines().count();
    assert!((5..=100).contains(&lines), "{lines}");
    assert_ne!(
        a.query, a.reference,
        "corruption removes at least one chunk"
    );
    let suffix = a.fields["challenge_suffix"].to_string();
    assert_eq!(suffix, format!("\n```{}```", a.query));
    let path = a.fields["subtopic"].to_string();
    assert!(path.starts_with("0:") && path.ends_with(".rs"), "{path}");
}

#[test]
fn cleaners_match_sn1() {
    let host = host(&[], 1 << 20);
    let out = eval(
        &host,
        "import \"tools/cleaners\" as clean;",
        r#"#{
            quotes: clean::remove_quotes("  \"'What is it?'\" "),
            prune: clean::prune_ending("First. Second? Trailing words"),
            prune_none: clean::prune_ending("no punctuation"),
            roles: clean::remove_roles("User: Assistant: what is the capital?"),
            all: clean::all("\"Dear AI, tell me about rust. I mean"),
        }"#,
        0,
    );
    assert_eq!(out["quotes"].to_string(), "What is it?");
    assert_eq!(out["prune"].to_string(), "First. Second?");
    assert_eq!(out["prune_none"].to_string(), "no punctuation");
    assert_eq!(out["roles"].to_string(), "What is the capital?");
    assert_eq!(out["all"].to_string(), "Tell me about rust.");
}

#[test]
fn miner_tools_answer_the_validators_math_and_date_questions() {
    // The wiki_agent miner's tools: every generator's problem, asked the way the
    // persona's fallback challenge asks it, is solved to the generator's answer.
    let host = host(&[], 1 << 20);
    let out = eval(
        &host,
        "import \"tools/mathgenerator\" as mathgen;",
        r#"let bad = []; let solved = 0;
           for round in 0..3 { for id in 0..mathgen::count() {
               let p = mathgen::generate_id(ctx.rng, id);
               let got = mathgen::solve(`I'd like to know: How can I solve the following problem, ${p.problem}?`);
               if got == () || (got - p.solution).abs() > 0.011 { bad.push(`${id}: ${p.problem} = ${p.solution}, solved ${got}`); }
               else { solved += 1; }
           } }
           #{ solved: solved, bad: bad.map(|b| b.to_string()), none: mathgen::solve("What is the capital of France?") == () }"#,
        11,
    );
    assert!(
        out["bad"].clone().cast::<rhai::Array>().is_empty(),
        "{out:?}"
    );
    assert_eq!(out["solved"].as_int().unwrap(), 120);
    assert!(out["none"].as_bool().unwrap(), "no problem, no answer");
    // The date lookup finds the date of the corpus sentence a date question came from.
    let out = eval(
        &host,
        "import \"tools/wikidate\" as wd;",
        r#"let hits = 0; let misses = [];
           for k in 0..10 {
               let e = wd::event(ctx);
               let d = wd::find_date("I'd like to know: " + e.event + " on what exact date?");
               if d == e.date { hits += 1; } else { misses.push(`${e.event}: ${e.date} vs ${d}`); }
           }
           #{ hits: hits, misses: misses.map(|m| m.to_string()) }"#,
        5,
    );
    assert!(out["hits"].as_int().unwrap() >= 7, "{out:?}");
}
