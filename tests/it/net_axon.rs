//! Our dendrite against our axon on 127.0.0.1: fan-out, streaming, the limits beyond the
//! SDK (413 body limit, 429 per-IP), `/metrics`, and graceful shutdown.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use neuron::net::{
    Axon, AxonHandler, AxonInfo, AxonOptions, Dendrite, Forwarded, HandlerError, PromptingSynapse,
    StreamPromptingSynapse, Synapse, SynapseSchema,
};
use neuron::wallet::Keypair;

/// Echoes (after `delay`), streams the words of the last message for the streaming synapse.
struct Echo {
    delay: Duration,
}

#[async_trait::async_trait]
impl AxonHandler for Echo {
    fn synapses(&self) -> Vec<SynapseSchema> {
        vec![PromptingSynapse::schema(), StreamPromptingSynapse::schema()]
    }
    async fn forward(&self, mut synapse: Synapse) -> Result<Forwarded, HandlerError> {
        tokio::time::sleep(self.delay).await;
        let p =
            PromptingSynapse::from_synapse(&synapse).map_err(|e| HandlerError(e.to_string()))?;
        let last = p.messages.last().cloned().unwrap_or_default();
        if synapse.schema().streaming {
            let words: Vec<Result<Bytes, HandlerError>> = last
                .split(' ')
                .map(|w| Ok(Bytes::from(format!("{w} "))))
                .collect();
            return Ok(Forwarded::Stream {
                headers_from: synapse,
                chunks: futures::stream::iter(words).boxed(),
            });
        }
        synapse
            .set("completion", format!("echo: {last}").into())
            .map_err(|e| HandlerError(e.to_string()))?;
        Ok(Forwarded::Synapse(synapse))
    }
}

/// An `Echo` axon on 127.0.0.1 (a free port) as `//Bob`, with `tweak`ed options.
pub(crate) async fn serve(
    delay: Duration,
    tweak: impl FnOnce(&mut AxonOptions),
) -> (Axon, Keypair) {
    let bob = Keypair::from_uri("//Bob").unwrap();
    let mut config = AxonOptions {
        bind: "127.0.0.1:0".parse().unwrap(),
        ..AxonOptions::default()
    };
    tweak(&mut config);
    (
        Axon::serve(config, bob.clone(), Arc::new(Echo { delay }))
            .await
            .unwrap(),
        bob,
    )
}

/// A one-message prompt of `schema` (a `PromptingSynapse`-shaped schema).
pub(crate) fn prompt(schema: SynapseSchema, text: &str) -> Synapse {
    PromptingSynapse {
        roles: vec!["user".into()],
        messages: vec![text.into()],
        completion: String::new(),
    }
    .to_synapse(Arc::new(schema))
    .unwrap()
}

#[tokio::test]
async fn fan_out_stream_limits_metrics() {
    let (axon, _) = serve(Duration::ZERO, |c| c.max_body_bytes = 4096).await;
    let d = Dendrite::new(Keypair::from_uri("//Alice").unwrap()).unwrap();
    let axons = vec![axon.info(); 8];
    let answers = d
        .query(
            &axons,
            &prompt(PromptingSynapse::schema(), "hi there"),
            Duration::from_secs(5),
        )
        .await;
    assert!(
        answers.iter().all(|a| a.status_code == 200),
        "{:?}",
        answers
            .iter()
            .map(|a| &a.status_message)
            .collect::<Vec<_>>()
    );
    assert!(
        answers
            .iter()
            .all(|a| a.synapse.get("completion").unwrap() == "echo: hi there")
    );

    // Streaming: chunk by chunk.
    let s = d
        .stream(
            &axon.info(),
            &prompt(StreamPromptingSynapse::schema(), "a b c"),
            Duration::from_secs(5),
        )
        .await;
    let stream = s.unwrap_or_else(|e| panic!("{}", e.status_message));
    assert_eq!(stream.synapse.dendrite.status_code, Some(200));
    let chunks: Vec<Bytes> = stream.chunks.map(|c| c.unwrap()).collect().await;
    assert_eq!(chunks.concat(), b"a b c ");

    // Body over the limit: 413.
    let big = "x".repeat(10_000);
    let r = d
        .call(
            &axon.info(),
            &prompt(PromptingSynapse::schema(), &big),
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(r.status_code, 413, "{}", r.status_message);

    // Wrong receiver hotkey: 401.
    let mut wrong = axon.info();
    wrong.hotkey = Keypair::from_uri("//Charlie").unwrap().ss58();
    let r = d
        .call(
            &wrong,
            &prompt(PromptingSynapse::schema(), "x"),
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(r.status_code, 401);

    // Unreachable: 503.
    let dead = AxonInfo::new("127.0.0.1", 1, axon.info().hotkey);
    let r = d
        .call(
            &dead,
            &prompt(PromptingSynapse::schema(), "x"),
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(r.status_code, 503);

    let metrics = reqwest::get(format!("http://{}/metrics", axon.local_addr()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("axon_requests_total{synapse=\"PromptingSynapse\",status=\"200\"} 8"),
        "{metrics}"
    );
    assert!(
        metrics.contains("axon_requests_total{synapse=\"PromptingSynapse\",status=\"413\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics
            .contains("axon_request_duration_seconds_count{synapse=\"StreamPromptingSynapse\"} 1")
    );
    axon.shutdown().await;
}

#[tokio::test]
async fn timeout_per_ip_limit_and_graceful_shutdown() {
    let (axon, _) = serve(Duration::from_millis(600), |c| c.max_in_flight_per_ip = 2).await;
    let d = Dendrite::new(Keypair::from_uri("//Alice").unwrap()).unwrap();
    // Per-request timeout: 408 from the dendrite.
    let r = d
        .call(
            &axon.info(),
            &prompt(PromptingSynapse::schema(), "slow"),
            Duration::from_millis(100),
        )
        .await;
    assert_eq!(r.status_code, 408);
    assert_eq!(r.status_message, "Request timeout after 0.1 seconds");
    tokio::time::sleep(Duration::from_millis(700)).await;
    // Three at once from one IP with a limit of two: one 429.
    let answers = d
        .query(
            &vec![axon.info(); 3],
            &prompt(PromptingSynapse::schema(), "x"),
            Duration::from_secs(5),
        )
        .await;
    let mut codes: Vec<u16> = answers.iter().map(|a| a.status_code).collect();
    codes.sort();
    assert_eq!(codes, vec![200, 200, 429]);
    // Shutdown drains a request already in flight.
    let info = axon.info();
    let d2 = d.clone();
    let inflight = tokio::spawn(async move {
        d2.call(
            &info,
            &prompt(PromptingSynapse::schema(), "drain"),
            Duration::from_secs(5),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    axon.shutdown().await;
    let r = inflight.await.unwrap();
    assert_eq!(r.status_code, 200, "{}", r.status_message);
    let after = d
        .call(
            &r.axon,
            &prompt(PromptingSynapse::schema(), "x"),
            Duration::from_secs(1),
        )
        .await;
    assert_eq!(after.status_code, 503, "closed after shutdown");
}
