//! Asking miners over each transport (`net::Transport`), on 127.0.0.1: the echo
//! strategy's miner answers alike over Synapse, streamed Synapse, and btauth/1- and
//! Epistula-signed OpenAI chat streams (asked twice: each attempt signs afresh); a
//! stream that never ends meets its total deadline although chunks keep coming; the
//! completion cap stops reading an endless stream; a quorum returns without waiting
//! for a miner that never answers; `/availability` answers the default of a strategy
//! without the hook. And `neuron local` runs a step over each signed OpenAI transport.

use std::time::Duration;

use neuron::net::{
    AskOptions, Axon, AxonInfo, Dendrite, DendriteOptions, PromptingSynapse, Transport,
};
use neuron::prompting::contract::PromptingContracts;
use neuron::script::{HostConfig, ScriptHost, Services};
use neuron::wallet::Keypair;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::bin::neuron_command;
use crate::support::miners::serve_strategy;

/// //Bob's echo miner (the shipped strategy), accepting every scheme and unregistered
/// callers.
pub async fn echo_miner() -> Axon {
    let scripts = ScriptHost::new(
        HostConfig::new(env!("CARGO_MANIFEST_DIR")),
        Services::standard(),
        PromptingContracts,
    )
    .unwrap();
    serve_strategy(scripts, "echo").await
}

/// What a raw test server does after a request's first bytes.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Never answers.
    Silent,
    /// Answers 200 with an SSE stream of `piece`-long text chunks every `every`,
    /// without end.
    Endless { piece: usize, every: Duration },
}

/// A raw HTTP server on 127.0.0.1 behaving as told; its address as //Bob's axon.
async fn raw_server(behaviour: Behaviour) -> AxonInfo {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let Behaviour::Endless { piece, every } = behaviour else {
                    let _ = conn.read(&mut buf).await;
                    std::future::pending::<()>().await;
                    return;
                };
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                            transfer-encoding: chunked\r\n\r\n";
                if conn.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let text = "x".repeat(piece);
                let event = format!(
                    "data: {{\"choices\": [{{\"delta\": {{\"content\": \"{text}\"}}}}]}}\n\n"
                );
                let chunk = format!("{:x}\r\n{event}\r\n", event.len());
                while conn.write_all(chunk.as_bytes()).await.is_ok() {
                    tokio::time::sleep(every).await;
                }
            });
        }
    });
    AxonInfo::new(
        "127.0.0.1",
        port,
        Keypair::from_uri("//Bob").unwrap().ss58(),
    )
}

fn question(text: &str) -> PromptingSynapse {
    PromptingSynapse {
        roles: vec!["user".into()],
        messages: vec![text.into()],
        completion: String::new(),
    }
}

fn options(transport: Transport, timeout_s: u64, quorum: usize) -> AskOptions {
    AskOptions {
        transport,
        timeout: Duration::from_secs(timeout_s),
        quorum,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transport_asks_within_its_deadline_cap_and_quorum() {
    let miner = echo_miner().await;
    let alice = Dendrite::new(Keypair::from_uri("//Alice").unwrap())
        .unwrap()
        .with_options(DendriteOptions {
            max_completion_bytes: 4096,
            ..DendriteOptions::default()
        });
    let unreachable = AxonInfo::new("127.0.0.1", 1, miner.info().hotkey);
    let hi = question("hi");

    for transport in Transport::ALL {
        // Twice one after the other: each attempt signs afresh, so neither is a replay
        // (the same session asking one axon twice at once could arrive out of order).
        for _ in 0..2 {
            let axons = [miner.info(), unreachable.clone()];
            let answers = alice
                .ask(
                    &axons,
                    &question("Heraclitus was a"),
                    &options(transport, 20, 0),
                )
                .await;
            assert_eq!(answers[0].status_code, 200, "{transport}: {:?}", answers[0]);
            assert_eq!(answers[0].completion, "Heraclitus was a", "{transport}");
            assert_eq!(answers[1].status_code, 503, "{transport}: {:?}", answers[1]);
            assert!(answers[1].completion.is_empty());
        }
    }

    // Signed for someone else: the miner's refusal, its message read from `detail`.
    let charlie = Keypair::from_uri("//Charlie").unwrap().ss58();
    let addr = miner.local_addr();
    let wrong = AxonInfo::new(addr.ip().to_string(), addr.port(), charlie);
    for (transport, code) in [
        (Transport::BtauthOpenai, 401),
        (Transport::EpistulaOpenai, 400),
    ] {
        let answer = alice
            .ask_one(&wrong, &hi, transport, Duration::from_secs(20), |_| {})
            .await;
        assert_eq!(answer.status_code, code, "{transport}: {answer:?}");
        let message = &answer.status_message;
        assert!(
            !message.is_empty() && !message.starts_with('{'),
            "{message}"
        );
    }

    // Chunks every 50 ms never reset the deadline of 1 s: 408, not a hang.
    let trickle = raw_server(Behaviour::Endless {
        piece: 1,
        every: Duration::from_millis(50),
    })
    .await;
    for transport in [Transport::BtauthOpenai, Transport::SynapseStream] {
        let asked = alice.ask_one(&trickle, &hi, transport, Duration::from_secs(1), |_| {});
        let answer = tokio::time::timeout(Duration::from_secs(30), asked)
            .await
            .expect("the total deadline ends an endless stream");
        assert_eq!(answer.status_code, 408, "{transport}: {answer:?}");
    }

    // An endless flood is read up to the completion cap, then dropped: a 200 long
    // before the deadline.
    let flood = raw_server(Behaviour::Endless {
        piece: 1000,
        every: Duration::from_millis(1),
    })
    .await;
    let mut streamed = String::new();
    let answer = alice
        .ask_one(
            &flood,
            &question("hi"),
            Transport::EpistulaOpenai,
            Duration::from_secs(120),
            |text| streamed.push_str(text),
        )
        .await;
    assert_eq!(answer.status_code, 200, "{answer:?}");
    assert_eq!(answer.completion.len(), 4096);
    assert_eq!(streamed, answer.completion, "on_text saw every piece kept");

    // A quorum of one: the silent miner is not awaited.
    let silent = raw_server(Behaviour::Silent).await;
    let (axons, quorum) = (
        [silent, miner.info()],
        options(Transport::EpistulaOpenai, 600, 1),
    );
    let asked = alice.ask(&axons, &hi, &quorum);
    let answers = tokio::time::timeout(Duration::from_secs(30), asked)
        .await
        .expect("a quorum returns without the silent miner");
    assert_eq!(answers[1].status_code, 200, "{:?}", answers[1]);
    assert_eq!(answers[0].status_code, 408, "{:?}", answers[0]);
    assert!(
        answers[0].status_message.contains("quorum of 1"),
        "{:?}",
        answers[0]
    );
    // Without an availability hook: SN1's inference task with the neuron's chat model,
    // unsigned.
    let url = format!("http://{}/availability", miner.local_addr());
    let served: serde_json::Value = reqwest::Client::new()
        .post(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        served,
        serde_json::json!({"task_availabilities": {"InferenceTask": true}, "llm_model_availabilities": {"smollm2-135m-instruct": true}})
    );
    miner.shutdown().await;
}

#[test]
fn local_subnet_runs_over_the_signed_openai_transports() {
    for transport in ["btauth-openai", "epistula-openai"] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("run");
        let mut cmd = neuron_command([
            "local",
            "--miners",
            "2",
            "--strategies",
            "echo,phrase",
            "--validators",
            "1",
            "--steps",
            "1",
            "--block-time",
            "0.2",
            "--neuron.tasks",
            "math",
            "--neuron.transport",
            transport,
            "--data-dir",
        ]);
        cmd.arg(&data);
        let out = cmd.output().expect("run neuron local");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{transport}: {stdout}\n{stderr}");
        let events = std::fs::read_to_string(data.join("validator0/events.jsonl")).unwrap();
        let event: serde_json::Value =
            serde_json::from_str(events.lines().next().expect("one step")).unwrap();
        let responses = event["responses"].as_array().unwrap();
        assert_eq!(responses.len(), 2, "{transport}: {event}");
        for r in responses {
            assert_eq!(r["status_code"], 200, "{transport}: {r}");
            assert!(!r["completion"].as_str().unwrap().is_empty(), "{r}");
        }
    }
}
