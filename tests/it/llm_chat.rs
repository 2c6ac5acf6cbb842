//! Text generation, sampling, serving and log-likelihood on the real default model
//! (SmolLM2-135M-Instruct GGUF, fetched through the resolver and cached).

use std::sync::OnceLock;
use std::time::Duration;

use neuron::llm::{
    ChatMessage, FinishReason, LlmError, LlmService, LoadOptions, RequestOptions, SamplingParams,
};
use neuron::models::Resolver;

use crate::support::llm_options;

fn service() -> &'static LlmService {
    static S: OnceLock<LlmService> = OnceLock::new();
    S.get_or_init(|| {
        load(LoadOptions {
            queue_capacity: 2,
            max_batch: 4,
            ..llm_options()
        })
    })
}

/// The default model (fetched through the resolver) loaded with `options`.
fn load(options: LoadOptions) -> LlmService {
    let path = Resolver::default()
        .resolve("smollm2-135m-instruct")
        .expect("fetch model");
    LlmService::load(&path, options).expect("load model")
}

fn france() -> Vec<ChatMessage> {
    vec![
        ChatMessage::new("system", "You are a helpful assistant."),
        ChatMessage::new("user", "What is the capital of France?"),
    ]
}

fn greedy(max_tokens: usize) -> SamplingParams {
    SamplingParams {
        max_tokens,
        ..SamplingParams::default()
    }
}

#[test]
fn answers_the_capital_of_france() {
    let g = service().chat_blocking(france(), greedy(32)).unwrap();
    assert!(g.text.contains("Paris"), "{:?}", g.text);
    assert_eq!(g.finish_reason, FinishReason::Eos, "{g:?}");
    assert!(g.prompt_tokens > 10 && g.completion_tokens > 3, "{g:?}");
}

#[test]
fn greedy_is_deterministic() {
    let messages = vec![ChatMessage::new("user", "Name three colours.")];
    let a = service()
        .chat_blocking(messages.clone(), greedy(24))
        .unwrap();
    let b = service().chat_blocking(messages, greedy(24)).unwrap();
    assert_eq!(a.text, b.text);
    assert!(!a.text.is_empty());
}

#[test]
fn seeded_sampling_is_reproducible() {
    let messages = vec![ChatMessage::new(
        "user",
        "Write one sentence about the sea.",
    )];
    let params = |seed| SamplingParams {
        temperature: 0.9,
        top_k: Some(50),
        top_p: Some(0.95),
        repeat_penalty: 1.1,
        seed,
        max_tokens: 24,
        stop: Vec::new(),
        logprobs: None,
    };
    let a = service()
        .chat_blocking(messages.clone(), params(7))
        .unwrap();
    let b = service()
        .chat_blocking(messages.clone(), params(7))
        .unwrap();
    assert_eq!(a.text, b.text);
    let others: Vec<String> = (8..11)
        .map(|seed| {
            service()
                .chat_blocking(messages.clone(), params(seed))
                .unwrap()
                .text
        })
        .collect();
    assert!(
        others.iter().any(|t| *t != a.text),
        "every seed gave the same text"
    );
}

#[test]
fn stop_strings_and_max_tokens_hold() {
    let full = service().chat_blocking(france(), greedy(32)).unwrap();
    let cut = full
        .text
        .find("Paris")
        .expect("reference answer names Paris");
    let stopped = service()
        .chat_blocking(
            france(),
            SamplingParams {
                stop: vec!["Paris".into()],
                ..greedy(32)
            },
        )
        .unwrap();
    assert_eq!(stopped.finish_reason, FinishReason::Stop);
    assert_eq!(stopped.text, full.text[..cut]);

    let short = service().chat_blocking(france(), greedy(3)).unwrap();
    assert_eq!(short.completion_tokens, 3);
    assert_eq!(short.finish_reason, FinishReason::Length);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_and_serves_concurrent_callers() {
    let svc = service().clone();
    let reference = svc.chat(france(), greedy(16)).await.unwrap();

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let streamed = svc
        .chat_with(
            france(),
            greedy(16),
            RequestOptions {
                stream: Some(tx),
                ..RequestOptions::default()
            },
        )
        .await
        .unwrap();
    let mut pieces = String::new();
    while let Some(p) = rx.recv().await {
        pieces.push_str(&p);
    }
    assert_eq!(pieces, streamed.text);
    assert_eq!(streamed.text, reference.text);

    // More callers than queue slots: all wait their turn and get the same answer.
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move { svc.chat(france(), greedy(16)).await })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap().text, reference.text);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_and_timed_out_requests_do_not_poison_the_model() {
    let svc = service().clone();
    let reference = svc.chat(france(), greedy(16)).await.unwrap();
    let long = SamplingParams {
        temperature: 0.0,
        max_tokens: 400,
        ..SamplingParams::default()
    };
    let story = vec![ChatMessage::new("user", "Tell me a very long story.")];

    let err = svc
        .chat_with(
            story.clone(),
            long.clone(),
            RequestOptions {
                timeout: Some(Duration::from_millis(200)),
                ..RequestOptions::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, LlmError::Timeout(_)), "{err}");

    // The caller gives up (its future is dropped): the worker stops at the next token.
    let gave_up = tokio::time::timeout(Duration::from_millis(200), svc.chat(story, long)).await;
    assert!(gave_up.is_err(), "a 400-token story finished in 200 ms");

    let after = svc.chat(france(), greedy(16)).await.unwrap();
    assert_eq!(after.text, reference.text);
}

#[test]
fn log_likelihood_scores_the_continuation_only() {
    let prompt = "The capital of France is";
    let paris = service().log_likelihood(prompt, " Paris").unwrap();
    let london = service().log_likelihood(prompt, " London").unwrap();
    assert_eq!(paris.tokens.len(), paris.losses.len());
    assert!(paris.losses.iter().all(|l| l.is_finite() && *l >= 0.0));
    assert!(
        paris.total() < london.total(),
        "Paris {} vs London {}",
        paris.total(),
        london.total()
    );

    // Scoring is per token: extending the continuation keeps the shared prefix's losses.
    let longer = service()
        .log_likelihood(prompt, " Paris, a city on the Seine.")
        .unwrap();
    assert_eq!(longer.tokens[..paris.tokens.len()], paris.tokens[..]);
    for (a, b) in paris.losses.iter().zip(&longer.losses) {
        assert!((a - b).abs() < 1e-3, "{a} vs {b}");
    }
}

#[test]
fn bad_requests_are_clear_errors() {
    let err = service().chat_blocking(Vec::new(), greedy(8)).unwrap_err();
    assert!(matches!(err, LlmError::EmptyPrompt(_)), "{err}");
    let err = service()
        .chat_blocking(vec![ChatMessage::new("user", "   ")], greedy(8))
        .unwrap_err();
    assert!(matches!(err, LlmError::EmptyPrompt(_)), "{err}");
    let err = service().log_likelihood("", "Paris").unwrap_err();
    assert!(matches!(err, LlmError::EmptyPrompt(_)), "{err}");
    let err = service().log_likelihood("The capital", "").unwrap_err();
    assert!(matches!(err, LlmError::EmptyPrompt(_)), "{err}");
    let err = service()
        .chat_blocking(
            france(),
            SamplingParams {
                top_p: Some(2.0),
                temperature: 1.0,
                ..greedy(8)
            },
        )
        .unwrap_err();
    assert!(matches!(err, LlmError::InvalidParams(_)), "{err}");
}

#[test]
fn prompts_longer_than_the_context_are_rejected() {
    let small = load(LoadOptions {
        max_context: Some(64),
        ..llm_options()
    });
    assert_eq!(small.info().context, 64);
    let long = "Tell me about the history of Rome. ".repeat(20);
    let err = small
        .chat_blocking(vec![ChatMessage::new("user", long.clone())], greedy(8))
        .unwrap_err();
    assert!(
        matches!(err, LlmError::ContextOverflow { context: 64, .. }),
        "{err}"
    );
    let err = small.log_likelihood(&long, " Rome").unwrap_err();
    assert!(matches!(err, LlmError::ContextOverflow { .. }), "{err}");
    // Generation near the limit stops at the window instead of failing.
    let g = small
        .chat_blocking(
            vec![ChatMessage::new("user", "Count from one to one hundred.")],
            greedy(500),
        )
        .unwrap();
    assert!(g.prompt_tokens + g.completion_tokens <= 64, "{g:?}");
}

/// A blocking request with a deadline waits for a slot in a full queue only until its
/// deadline: it fails with `Timeout` while the requests ahead of it are still running,
/// instead of waiting for them (a script hook's time limit bounds its model calls).
#[test]
fn a_deadline_bounds_the_wait_for_a_full_queue() {
    let service = load(LoadOptions {
        queue_capacity: 1,
        max_batch: 1,
        ..llm_options()
    });
    let long = || {
        let service = service.clone();
        std::thread::spawn(move || {
            let count = vec![ChatMessage::new(
                "user",
                "Count from 1 to 500, one per line.",
            )];
            service.chat_blocking(count, greedy(300))
        })
    };
    let running = long();
    std::thread::sleep(Duration::from_millis(300));
    let queued = long();
    std::thread::sleep(Duration::from_millis(100));
    let err = service
        .chat_blocking_with(
            france(),
            greedy(8),
            RequestOptions {
                timeout: Some(Duration::from_millis(200)),
                ..RequestOptions::default()
            },
        )
        .unwrap_err();
    assert!(matches!(err, LlmError::Timeout(_)), "{err:?}");
    assert!(
        !running.is_finished(),
        "the deadline was only noticed after the running request finished"
    );
    running.join().unwrap().unwrap();
    queued.join().unwrap().unwrap();
}

#[test]
fn greedy_tokens_come_with_their_logprobs_and_alternatives() {
    let params = SamplingParams {
        logprobs: Some(3),
        ..greedy(12)
    };
    let g = service().chat_blocking(france(), params).unwrap();
    assert_eq!(g.logprobs.len(), g.completion_tokens, "{g:?}");
    for t in &g.logprobs {
        // Greedy picks the most likely token: it heads its own top list.
        assert_eq!(t.top.len(), 3);
        assert_eq!((&t.top[0].0, t.top[0].1), (&t.token, t.logprob), "{t:?}");
        assert!(t.logprob <= 0.0 && t.top[1].1 <= t.top[0].1 && t.top[2].1 <= t.top[1].1);
    }
    let joined: String = g.logprobs.iter().map(|t| t.token.as_str()).collect();
    assert!(joined.contains("Paris"), "{joined:?}");
    let plain = service().chat_blocking(france(), greedy(12)).unwrap();
    assert!(plain.logprobs.is_empty());
    assert_eq!(plain.text, g.text);
}

/// Continuous batching changes nothing a request gets: each of several seeded, sampled
/// requests yields the same tokens and the same log-probabilities (bit for bit) alone
/// and when decoded in batches that others join and leave at token boundaries. Six
/// requests, so batches run past four rows (where a GPU's kernels change how they sum).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_decodes_the_same_alone_and_in_any_batch() {
    let svc = load(LoadOptions {
        max_batch: 8,
        ..llm_options()
    });
    let prompts = [
        "Name three rivers of Europe.",
        "Write a haiku about autumn.",
        "What is 17 times 3? Explain.",
        "Describe a cat in one sentence.",
        "List two prime numbers.",
        "Why is the sky blue?",
    ];
    let request = |i: usize| {
        let messages = vec![ChatMessage::new("user", prompts[i])];
        let params = SamplingParams {
            temperature: 0.9,
            seed: 11 + i as u64,
            logprobs: Some(2),
            // Different lengths, so requests leave the batch at different steps.
            max_tokens: 12 + 6 * i,
            ..SamplingParams::default()
        };
        (messages, params)
    };
    let mut alone = Vec::new();
    for i in 0..prompts.len() {
        let (messages, params) = request(i);
        alone.push(svc.chat(messages, params).await.unwrap());
    }
    // All at once, then staggered so that requests join a batch already decoding.
    for stagger in [Duration::ZERO, Duration::from_millis(40)] {
        let calls: Vec<_> = (0..prompts.len())
            .map(|i| {
                let svc = svc.clone();
                let (messages, params) = request(i);
                tokio::spawn(async move {
                    tokio::time::sleep(stagger * i as u32).await;
                    svc.chat(messages, params).await
                })
            })
            .collect();
        for (i, call) in calls.into_iter().enumerate() {
            let batched = call.await.unwrap().unwrap();
            assert_eq!(
                batched.text, alone[i].text,
                "request {i}, stagger {stagger:?}"
            );
            assert_eq!(batched.logprobs, alone[i].logprobs, "request {i}");
        }
    }
    assert!(
        svc.peak_batch() > 4,
        "the requests were never decoded more than four together (peak {})",
        svc.peak_batch()
    );
}

/// The load driver of `neuron bench llm --concurrency`: requests started together are
/// each timed from the client's side, and the engine decodes them together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_load_is_timed_per_request() {
    let svc = service().clone();
    let level = neuron::llm::load::run_level(3, |i| {
        neuron::llm::load::engine_request(
            svc.clone(),
            neuron::llm::load::request_messages("Say hello.", i),
            greedy(8),
        )
    })
    .await
    .unwrap();
    assert_eq!(level.requests.len(), 3);
    for r in &level.requests {
        assert!(r.tokens > 0 && r.first_token_s <= r.total_s, "{r:?}");
        assert!(r.total_s <= level.wall_s, "{r:?} in {level:?}");
    }
    assert!(level.aggregate_tok_s() > 0.0);
}
