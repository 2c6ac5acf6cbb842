//! Hostile peers: slow bodies, idle connections, oversized responses, stale or unbounded
//! freshness headers, a `NaN` timeout, cancelled requests, and arbitrary header values
//! sent to a live axon (the parsers' own property tests are in `net_golden`).
//! Every case runs over real HTTP on loopback; attackers connect from 127.0.0.2 so that
//! the per-address limits they hit are not the legitimate caller's (127.0.0.1).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use neuron::net::{
    Axon, AxonInfo, Dendrite, PromptingSynapse, StreamPromptingSynapse, Synapse, TerminalInfo,
    now_ns, signing_message,
};
use neuron::wallet::Keypair;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use crate::net_axon::{prompt, serve};
use crate::net_golden::header_value;

/// The address attackers connect from.
const ATTACKER: [u8; 4] = [127, 0, 0, 2];

fn alice() -> Dendrite {
    Dendrite::new(Keypair::from_uri("//Alice").unwrap()).unwrap()
}

/// A TCP connection to `to` from 127.0.0.2.
async fn connect_as_attacker(to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((ATTACKER, 0)))?;
    socket.connect(to).await
}

/// The axon's `/metrics` page.
async fn metrics(axon: &Axon) -> String {
    reqwest::get(format!("http://{}/metrics", axon.local_addr()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// A gauge's value on a `/metrics` page.
fn gauge(page: &str, name: &str) -> usize {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {page}"))
}

/// Polls `/metrics` until `done` holds, for at most `bound`; returns the last page.
async fn metrics_until(axon: &Axon, bound: Duration, done: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        let page = metrics(axon).await;
        if done(&page) || tokio::time::Instant::now() >= deadline {
            return page;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The raw HTTP/1.1 request head and body `dendrite` sends for `synapse`, signed.
fn raw_request(
    dendrite: &Dendrite,
    axon: &AxonInfo,
    synapse: &Synapse,
    timeout: Duration,
) -> (String, Vec<u8>) {
    let signed = dendrite.sign(axon, synapse, timeout);
    let (_, headers, body) = Dendrite::request_parts(axon, &signed);
    let mut head = format!(
        "POST /{} HTTP/1.1\r\nhost: {}:{}\r\ncontent-length: {}\r\n",
        signed.name(),
        axon.ip,
        axon.port,
        body.len()
    );
    for (k, v) in &headers {
        head.push_str(&format!("{k}: {}\r\n", v.to_str().unwrap()));
    }
    head.push_str("\r\n");
    (head, body)
}

/// Reads from `stream` until the peer closes it or `bound` passes; returns what was read
/// and whether the peer closed (EOF or reset) within the bound.
async fn read_until_closed(stream: &mut TcpStream, bound: Duration) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return (got, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (got, true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// H4: 64 signed requests that never finish their body hold no forward slot (a caller
/// gets its answer meanwhile), and each gets 408 at the body-read deadline instead of
/// holding its connection for as long as the sender likes.
#[tokio::test]
async fn unfinished_bodies_take_no_forward_slot_and_time_out() {
    let (axon, _) = serve(Duration::ZERO, |_| {}).await;
    let info = axon.info();
    let attacker = alice();
    let mut slow = Vec::new();
    for i in 0..64 {
        // A session each: concurrent requests of one session would refuse each other as replays.
        let session = attacker.session();
        let synapse = prompt(PromptingSynapse::schema(), &format!("slow {i}"));
        let (head, body) = raw_request(&session, &info, &synapse, Duration::from_secs(60));
        let mut stream = connect_as_attacker(axon.local_addr()).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&body[..body.len() / 2]).await.unwrap();
        slow.push(stream);
    }
    let page = metrics_until(&axon, Duration::from_secs(20), |p| {
        gauge(p, "axon_requests_in_flight") >= 64
    })
    .await;
    assert_eq!(gauge(&page, "axon_requests_in_flight"), 64, "{page}");

    let answer = alice()
        .call(
            &info,
            &prompt(PromptingSynapse::schema(), "legit"),
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(answer.status_code, 200, "{}", answer.status_message);

    let answers = futures::future::join_all(
        slow.iter_mut()
            .map(|s| read_until_closed(s, Duration::from_secs(40))),
    )
    .await;
    for (bytes, closed) in answers {
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            text.starts_with("HTTP/1.1 408"),
            "closed {closed}, got {text:?}"
        );
        assert!(text.contains("reading the request body"), "{text}");
    }
    axon.shutdown().await;
}

/// Raises the soft open-files limit to the hard one; returns the soft limit.
fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    lim.rlim_cur
}

/// H5: thousands of idle TCP connections from one address (sending nothing) neither
/// fill the axon's connection slots nor stay open: a legitimate caller is answered
/// meanwhile, and every idle one is closed (first-byte timeout or per-address limit).
/// A kept-alive connection that goes idle after a request is closed as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_from_one_address_leave_room_and_are_closed() {
    // 4,200 idle sockets (the probe's figure) when the open-files limit allows both
    // ends of them, else as many as fit, against a connection cap of half their number
    // (so that, without the per-address limit, they would fill every slot).
    let limit = raise_fd_limit();
    let idle = 4200.min((limit.saturating_sub(600) / 2) as usize);
    assert!(
        idle >= 400,
        "open-files limit {limit} is too low for this test"
    );
    let (axon, _) = serve(Duration::ZERO, |o| o.max_connections = idle / 2).await;
    let addr = axon.local_addr();
    // In batches smaller than the kernel's accept queue (128 where `somaxconn` is
    // low): a connection dropped there looks open to its client without the axon
    // ever seeing it, until the kernel retries its handshake. For 10 s at most, so
    // that none is closed for idleness (keep-alive timeout) before the caller comes.
    let started = tokio::time::Instant::now();
    let mut sockets: Vec<TcpStream> = Vec::with_capacity(idle);
    for batch in 0..idle.div_ceil(64) {
        if started.elapsed() > Duration::from_secs(10) {
            break;
        }
        let n = 64.min(idle - batch * 64);
        let opened = futures::future::join_all((0..n).map(|_| async move {
            tokio::time::timeout(Duration::from_secs(1), connect_as_attacker(addr))
                .await
                .ok()
                .and_then(Result::ok)
        }))
        .await;
        sockets.extend(opened.into_iter().flatten());
    }
    assert!(
        sockets.len() > idle / 2 + 64,
        "only {} connected",
        sockets.len()
    );

    let answer = alice()
        .call(
            &axon.info(),
            &prompt(PromptingSynapse::schema(), "legit"),
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(answer.status_code, 200, "{}", answer.status_message);

    // A kept-alive connection from the caller's address, idle after one request.
    let mut kept = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr))
        .await
        .expect("the axon accepts a connection")
        .unwrap();
    kept.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();

    let bound = Duration::from_secs(25);
    let ((kept_read, kept_closed), closed) = tokio::join!(
        read_until_closed(&mut kept, bound),
        futures::future::join_all(
            sockets
                .iter_mut()
                .map(|s| async move { read_until_closed(s, bound).await.1 }),
        )
    );
    assert!(
        String::from_utf8_lossy(&kept_read).starts_with("HTTP/1.1 200"),
        "{kept_read:?}"
    );
    assert!(
        kept_closed,
        "an idle kept-alive connection stayed open {bound:?}"
    );
    let open = closed.iter().filter(|c| !**c).count();
    assert_eq!(
        open, 0,
        "{open} idle connections still open after {bound:?}"
    );
    axon.shutdown().await;
}

/// A miner on 127.0.0.1 that answers every request with `200` and `body` (no
/// `Content-Length`, closed at the end), and counts the bytes it managed to send.
async fn raw_miner(body: Arc<Vec<u8>>) -> (AxonInfo, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (body, counter) = (body.clone(), counter.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 1 << 16];
                let _ = stream.read(&mut buf).await;
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n";
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                for chunk in body.chunks(1 << 16) {
                    if stream.write_all(chunk).await.is_err() {
                        return;
                    }
                    counter.fetch_add(chunk.len(), Ordering::Relaxed);
                }
            });
        }
    });
    let hotkey = Keypair::from_uri("//Bob").unwrap().ss58();
    (
        AxonInfo::new(addr.ip().to_string(), addr.port(), hotkey),
        sent,
    )
}

/// A `PromptingSynapse` response body whose completion is `completion`.
fn answer_body(completion: &str) -> Arc<Vec<u8>> {
    let json = serde_json::json!({
        "name": "PromptingSynapse",
        "roles": ["user"],
        "messages": ["hi"],
        "completion": completion,
    });
    Arc::new(serde_json::to_vec(&json).unwrap())
}

/// H6: a miner's oversized answer is cut off while it streams in (the dendrite stops
/// reading and fails the answer with 413), for plain and streaming synapses; a long
/// completion within the response cap is cut to the completion cap before scoring.
#[tokio::test]
async fn dendrite_caps_responses_and_completions() {
    let offered = 64 << 20;
    let (huge, sent) = raw_miner(answer_body(&"x".repeat(offered))).await;
    let d = alice();
    let hi = PromptingSynapse {
        roles: vec!["user".into()],
        messages: vec!["hi".into()],
        completion: String::new(),
    };
    let answers = d
        .prompt(std::slice::from_ref(&huge), &hi, Duration::from_secs(30))
        .await
        .unwrap();
    let (response, completion) = &answers[0];
    assert_eq!(response.status_code, 413, "{}", response.status_message);
    assert!(completion.is_empty());
    // The miner could push no more than the cap plus what socket buffers hold.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pushed = sent.load(Ordering::Relaxed);
    assert!(pushed < 32 << 20, "the dendrite read {pushed} bytes");

    let stream = d
        .stream(
            &huge,
            &prompt(StreamPromptingSynapse::schema(), "hi"),
            Duration::from_secs(30),
        )
        .await
        .unwrap_or_else(|e| panic!("{}", e.status_message));
    let items: Vec<_> = stream.chunks.collect().await;
    let received: usize = items
        .iter()
        .filter_map(|i| i.as_ref().ok())
        .map(|b| b.len())
        .sum();
    assert!(received <= 1 << 20, "streamed {received} bytes");
    match items.last() {
        Some(Err((413, message))) => assert!(message.contains("exceeds"), "{message}"),
        other => panic!("stream ended with {other:?}"),
    }

    // Within the response cap but over the completion cap: cut at a char boundary.
    let (long, _) = raw_miner(answer_body(&"é".repeat(200_000))).await;
    let answers = d
        .prompt(&[long], &hi, Duration::from_secs(30))
        .await
        .unwrap();
    let (response, completion) = &answers[0];
    assert_eq!(response.status_code, 200, "{}", response.status_message);
    assert!(
        (1..=64 << 10).contains(&completion.len()),
        "completion of {} bytes",
        completion.len()
    );
    assert!(completion.chars().all(|c| c == 'é'));
}

/// `synapse` signed by `key` for `axon` with nonce `nonce`, as an SDK 10.5 dendrite
/// sends it (the signature covers nonce, hotkeys, uuid and body hash, nothing else).
fn signed_at(key: &Keypair, axon: &AxonInfo, synapse: &Synapse, nonce: i64) -> Synapse {
    let mut s = synapse.clone();
    let uuid = uuid::Uuid::new_v4().to_string();
    let message = signing_message(nonce, &key.ss58(), &axon.hotkey, &uuid, &s.body_hash());
    s.dendrite = TerminalInfo {
        ip: Some("127.0.0.1".into()),
        version: Some(10_005_000),
        nonce: Some(nonce),
        uuid: Some(uuid),
        hotkey: Some(key.ss58()),
        signature: Some(format!("0x{}", hex::encode(key.sign(message.as_bytes())))),
        ..TerminalInfo::default()
    };
    s.axon = TerminalInfo {
        ip: Some(axon.ip.clone()),
        port: Some(i64::from(axon.port)),
        hotkey: Some(axon.hotkey.clone()),
        ..TerminalInfo::default()
    };
    s
}

/// Posts `signed` to `axon` with the header `edits` applied (`None` removes one);
/// returns the status and the `message`, or the transport error.
async fn post(
    axon: &AxonInfo,
    signed: &Synapse,
    edits: &[(&str, Option<&str>)],
) -> Result<(u16, String), reqwest::Error> {
    let (url, mut headers, body) = Dendrite::request_parts(axon, signed);
    for (name, value) in edits {
        let name = reqwest::header::HeaderName::from_bytes(name.as_bytes()).unwrap();
        match value {
            Some(v) => {
                headers.insert(name, v.parse().unwrap());
            }
            None => {
                headers.remove(name);
            }
        }
    }
    let resp = reqwest::Client::new()
        .post(url)
        .headers(headers)
        .body(body)
        .timeout(Duration::from_secs(20))
        .send()
        .await?;
    let status = resp.status().as_u16();
    let json: serde_json::Value = resp.json().await.unwrap_or_default();
    Ok((
        status,
        json["message"].as_str().unwrap_or_default().to_string(),
    ))
}

/// M3: a request signed an hour ago does not replay on a fresh axon (an empty nonce
/// record, as after a restart), whatever it claims in the unsigned `timeout` and
/// `bt_header_dendrite_version` headers.
#[tokio::test]
async fn stale_requests_do_not_replay_whatever_their_unsigned_headers_claim() {
    let (axon, _) = serve(Duration::ZERO, |_| {}).await;
    let info = axon.info();
    let key = Keypair::from_uri("//Alice").unwrap();
    let synapse = prompt(PromptingSynapse::schema(), "an hour ago");
    let hour_ago = now_ns() - 3_600_000_000_000;
    let cases: [&[(&str, Option<&str>)]; 4] = [
        &[("timeout", Some("1000000000000.0"))],
        &[("bt_header_dendrite_version", Some("6006000"))],
        &[("bt_header_dendrite_version", None)],
        &[
            ("timeout", Some("3600.0")),
            ("bt_header_dendrite_version", Some("100")),
        ],
    ];
    for edits in cases {
        let signed = signed_at(&key, &info, &synapse, hour_ago);
        let (status, message) = post(&info, &signed, edits).await.unwrap();
        assert_eq!(status, 401, "{edits:?}: {message}");
        assert!(message.contains("Nonce is too old"), "{edits:?}: {message}");
    }
    // A fresh request with a long claimed timeout still passes.
    let signed = signed_at(&key, &info, &synapse, now_ns());
    let (status, message) = post(&info, &signed, &[("timeout", Some("1e12"))])
        .await
        .unwrap();
    assert_eq!(status, 200, "{message}");
    axon.shutdown().await;
}

/// L1 and L2: a `timeout: NaN` header gets an answer (no worker panic), and requests
/// cancelled by their caller leave the in-flight and open-connection gauges at rest.
#[tokio::test]
async fn nan_timeout_and_cancelled_requests_leave_gauges_at_rest() {
    let (axon, _) = serve(Duration::from_secs(2), |_| {}).await;
    let info = axon.info();
    let key = Keypair::from_uri("//Alice").unwrap();
    for nan in ["NaN", "nan", "inf", "-inf"] {
        let signed = signed_at(
            &key,
            &info,
            &prompt(PromptingSynapse::schema(), "nan"),
            now_ns(),
        );
        let answer = post(&info, &signed, &[("timeout", Some(nan))]).await;
        let (status, _) = answer.unwrap_or_else(|e| panic!("timeout {nan}: no answer: {e}"));
        assert!((400..600).contains(&status), "timeout {nan}: {status}");
    }
    let d = alice();
    let cancelled = d
        .query(
            &vec![info.clone(); 3],
            &prompt(PromptingSynapse::schema(), "cancel me"),
            Duration::from_millis(200),
        )
        .await;
    assert!(cancelled.iter().all(|r| r.status_code == 408));
    drop(d);
    let page = metrics_until(&axon, Duration::from_secs(15), |p| {
        gauge(p, "axon_requests_in_flight") == 0 && gauge(p, "axon_open_connections") <= 1
    })
    .await;
    assert_eq!(gauge(&page, "axon_requests_in_flight"), 0, "{page}");
    assert!(gauge(&page, "axon_open_connections") <= 1, "{page}");
    axon.shutdown().await;
}

/// Arbitrary values in every header the axon parses, sent over real HTTP: each request
/// gets an HTTP answer (no worker panic, no dropped connection), and the gauges come
/// back to rest.
#[test]
fn axon_header_parsers_answer_arbitrary_values() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    use std::io::{Read, Write};

    let rt = tokio::runtime::Runtime::new().unwrap();
    let axon = rt.block_on(serve(Duration::ZERO, |_| {})).0;
    let addr = axon.local_addr();
    let info = axon.info();
    let keys = [
        "timeout",
        "computed_body_hash",
        "header_size",
        "total_size",
        "bt_header_dendrite_nonce",
        "bt_header_dendrite_version",
        "bt_header_dendrite_hotkey",
        "bt_header_dendrite_signature",
        "bt_header_dendrite_uuid",
        "bt_header_dendrite_port",
        "bt_header_dendrite_process_time",
        "bt_header_axon_status_code",
        "bt_header_input_obj_roles",
        "bt_header_input_obj_messages",
    ];
    // Every case sets `timeout` (which the signature does not cover, so it reaches the
    // queue) and up to four other headers.
    let strategy = (
        header_value(),
        proptest::collection::vec((1..keys.len(), header_value()), 0..5),
    )
        .prop_map(|(timeout, mut edits)| {
            edits.insert(0, (0, timeout));
            edits
        });
    let mut runner = TestRunner::new(Config {
        cases: 96,
        ..Config::default()
    });
    let d = alice();
    runner
        .run(&strategy, |edits| {
            let (head, body) = raw_request(
                &d,
                &info,
                &prompt(PromptingSynapse::schema(), "x"),
                Duration::from_secs(5),
            );
            let mut lines: Vec<String> = head.trim_end().lines().map(str::to_string).collect();
            for (k, v) in &edits {
                let key = keys[*k];
                lines.retain(|l| !l.to_ascii_lowercase().starts_with(&format!("{key}:")));
                lines.push(format!("{key}: {v}"));
            }
            lines.push("connection: close".into());
            let request = format!("{}\r\n\r\n", lines.join("\r\n"));
            let mut stream = std::net::TcpStream::connect(addr).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            stream.write_all(request.as_bytes()).unwrap();
            let _ = stream.write_all(&body);
            let mut answer = Vec::new();
            let _ = stream.read_to_end(&mut answer);
            let text = String::from_utf8_lossy(&answer);
            prop_assert!(text.starts_with("HTTP/1.1 "), "{edits:?}: {text:?}");
            Ok(())
        })
        .unwrap();
    let page = rt.block_on(metrics_until(&axon, Duration::from_secs(15), |p| {
        gauge(p, "axon_requests_in_flight") == 0
    }));
    assert_eq!(gauge(&page, "axon_requests_in_flight"), 0, "{page}");
    rt.block_on(axon.shutdown());
}
