//! Hostile files: GGUF models with overflowing dims, corrupt or special keyfiles, event logs
//! with non-finite values, damaged chain files, and property tests of the GGUF header and
//! keyfile parsers (no panic, allocation within a stated bound).
//!
//! Every case that starts `neuron` runs it under a deadline ([`run_bounded`]): a hang is a
//! failure, not a stuck suite.

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use neuron::finetune::{Batch, Candidate, Evaluator, ModelId, Pair, ScriptPolicy, WorkerCommand};
use neuron::llm::{LlmError, LlmService, LoadOptions, read_gguf_header};
use neuron::memory::peak_growth_of;
use neuron::models::Resolver;
use neuron::prompting::events::{EventLog, ResponseEvent, StepEvent};
use neuron::wallet::{
    DEV_PHRASE, Keypair, MAX_KEYFILE_BYTES, Password, Wallet, WalletError, nacl_damage,
    parse_keyfile,
};
use proptest::prelude::*;

use crate::support::bin::neuron_command;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// How long any `neuron` started here may run before it counts as hung.
const DEADLINE: Duration = Duration::from_secs(120);

/// Runs `cmd` (stdin closed unless set) to completion; panics if it is still running
/// after [`DEADLINE`] (and kills it).
fn run_bounded(mut cmd: Command) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start neuron");
    let start = Instant::now();
    while child.try_wait().expect("poll neuron").is_none() {
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let out = child.wait_with_output().expect("reap neuron");
            panic!(
                "neuron hung for {DEADLINE:?}: {cmd:?}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("collect neuron output")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

// ---------------------------------------------------------------------------------------
// H7: GGUF dims whose product wraps past 2^64.

/// A copy of the default model in `dir` whose `token_embd.weight` claims dims
/// (32, 2^59): 2^64 elements, which wrap to 0 in 64-bit arithmetic, so the tensor
/// "needs" 0 bytes and every unchecked size and parameter count passes.
fn overflowing_model(dir: &Path) -> PathBuf {
    let real = Resolver::default()
        .resolve("smollm2-135m-instruct")
        .unwrap();
    let mut bytes = std::fs::read(real).unwrap();
    let name = b"token_embd.weight";
    let mut entry = (name.len() as u64).to_le_bytes().to_vec();
    entry.extend_from_slice(name);
    let at = bytes
        .windows(entry.len())
        .position(|w| w == entry.as_slice())
        .expect("token_embd.weight in the tensor table")
        + entry.len();
    assert_eq!(bytes[at..at + 4], 2u32.to_le_bytes(), "a 2-d tensor");
    bytes[at + 4..at + 12].copy_from_slice(&32u64.to_le_bytes());
    bytes[at + 12..at + 20].copy_from_slice(&(1u64 << 59).to_le_bytes());
    let path = dir.join("overflow.gguf");
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn overflowing_gguf_dims_are_a_clean_error_in_generate_and_the_library() {
    let dir = tempfile::tempdir().unwrap();
    let model = overflowing_model(dir.path());
    let err = LlmService::load(&model, LoadOptions::default()).expect_err("must not load");
    assert!(matches!(err, LlmError::BadModel(_)), "{err}");
    assert!(err.to_string().contains("2^64"), "{err}");

    let out = run_bounded(neuron_command([
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--prompt",
        "hi",
    ]));
    // An error exit (1), not a panic (101) or a signal (abort on the allocation).
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("more elements than 2^64"),
        "{}",
        stderr(&out)
    );
}

fn pairs_file(dir: &Path) -> PathBuf {
    let path = dir.join("pairs.jsonl");
    std::fs::write(
        &path,
        "{\"prompt\": \"What is the capital of France?\", \"response\": \"Paris.\"}\n",
    )
    .unwrap();
    path
}

#[test]
fn finetune_eval_scores_an_overflowing_model_inf_and_finishes_the_round() {
    let dir = tempfile::tempdir().unwrap();
    let hostile = overflowing_model(dir.path());
    let good = Resolver::default()
        .resolve("smollm2-135m-instruct")
        .unwrap();
    let models = format!("{},{}", good.display(), hostile.display());
    let pairs = pairs_file(dir.path());
    let policy = Path::new(REPO).join("scripts/finetune/validator.rhai");
    let out = run_bounded(neuron_command([
        "finetune",
        "eval",
        "--models",
        &models,
        "--data",
        pairs.to_str().unwrap(),
        "--batches",
        "1",
        "--batch-size",
        "1",
        "--policy",
        policy.to_str().unwrap(),
        "--json",
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
    let outcome: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let scores = outcome["scores"].as_array().unwrap();
    assert!(scores[0]["losses"][0].is_f64(), "{outcome}");
    assert!(scores[0]["error"].is_null(), "{outcome}");
    // +inf is JSON null in the report.
    assert!(scores[1]["losses"][0].is_null(), "{outcome}");
    let error = scores[1]["error"].as_str().unwrap();
    assert!(error.contains("2^64"), "{error}");
}

/// An isolated evaluator whose worker is `sh -c SCRIPT`, killed past `deadline`.
fn shell_worker(script: String, deadline: Duration) -> Evaluator {
    Evaluator::new(LoadOptions::default()).isolated(WorkerCommand {
        program: "/bin/sh".into(),
        args: vec!["-c".into(), script.into()],
        deadline,
    })
}

/// Evaluates the models at `paths` (uids 1, 2, …) on one question with the shipped
/// policy; the round must finish.
fn evaluate(evaluator: &Evaluator, paths: &[&Path]) -> neuron::finetune::EvalOutcome {
    let candidates: Vec<Candidate> = paths
        .iter()
        .zip(1u16..)
        .map(|(path, uid)| Candidate {
            uid,
            id: ModelId {
                namespace: "local".into(),
                name: format!("m{uid}"),
                commit: None,
                hash: None,
                competition_id: None,
            },
            block: u64::from(uid),
            path: Ok(path.to_path_buf()),
        })
        .collect();
    let batches: Vec<Batch> = vec![vec![Pair {
        prompt: "What is the capital of France?".into(),
        response: "Paris.".into(),
    }]];
    let policy =
        ScriptPolicy::load(&Path::new(REPO).join("scripts/finetune/validator.rhai")).unwrap();
    evaluator
        .evaluate(&candidates, &batches, &policy, paths.len() as u64)
        .expect("the round finishes")
}

/// Even a fault nothing checks for cannot take the round down: a worker that aborts on
/// one model (a real SIGABRT, as an unforeseen allocation failure would give) costs that
/// model +inf while the real worker scores the other.
#[test]
fn a_worker_that_aborts_costs_its_model_inf_not_the_round() {
    let dir = tempfile::tempdir().unwrap();
    let good = Resolver::default()
        .resolve("smollm2-135m-instruct")
        .unwrap();
    let doomed = dir.path().join("doomed.gguf");
    std::fs::copy(&good, &doomed).unwrap();
    let script = format!(
        r#"req=$(mktemp); cat > "$req"
if grep -q doomed "$req"; then rm -f "$req"; kill -ABRT $$; fi
'{}' finetune eval-worker < "$req"; status=$?; rm -f "$req"; exit $status"#,
        env!("CARGO_BIN_EXE_neuron")
    );
    let outcome = evaluate(
        &shell_worker(script, DEADLINE),
        &[good.as_path(), doomed.as_path()],
    );
    let (good, doomed) = (&outcome.scores[0], &outcome.scores[1]);
    assert!(
        good.losses[0].is_finite() && good.error.is_none(),
        "{good:?}"
    );
    assert!(doomed.losses[0].is_infinite(), "{doomed:?}");
    let error = doomed.error.as_deref().unwrap();
    assert!(error.contains("died") && error.contains("6"), "{error}");
    assert!(good.weight > doomed.weight);
}

/// A model that makes its evaluation hang costs that model +inf once the worker's
/// deadline passes; the round does not wait for it.
#[test]
fn a_worker_that_hangs_is_killed_at_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("stuck.gguf");
    std::fs::write(&model, b"never read").unwrap();
    let started = Instant::now();
    let outcome = evaluate(
        &shell_worker(
            "cat > /dev/null; exec sleep 600".into(),
            Duration::from_secs(2),
        ),
        &[model.as_path()],
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the round waited"
    );
    let stuck = &outcome.scores[0];
    assert!(stuck.losses[0].is_infinite(), "{stuck:?}");
    let error = stuck.error.as_deref().unwrap();
    assert!(
        error.contains("limit") && error.contains("killed"),
        "{error}"
    );
}

// ---------------------------------------------------------------------------------------
// M5: non-finite rewards in the validator's own event log.

#[test]
fn replay_accepts_a_log_with_non_finite_rewards() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("tasks")).unwrap();
    std::fs::write(
        root.join("tasks/odd.rhai"),
        r#"const NAME = "odd";
const WEIGHT = 1.0;
const REWARDS = #{ "diff": 1.0 };
const PENALTIES = #{};
fn generate(ctx) { #{ query: "q", reference: "r" } }
fn reward(ctx, task, completions) {
    [parse_float("NaN"), parse_float("inf"), parse_float("-inf"), 0.5]
}
"#,
    )
    .unwrap();
    let response = |uid: u16, reward: f64| ResponseEvent {
        uid,
        hotkey: format!("hotkey{uid}"),
        completion: format!("answer {uid}"),
        status_code: 200,
        status_message: "Success".into(),
        latency_s: 0.01,
        logprobs: Vec::new(),
        reward,
        components: Vec::new(),
    };
    let event = StepEvent {
        step: 1,
        block: 5,
        seed: 7,
        task: "odd".into(),
        persona: serde_json::json!({}),
        query: "q".into(),
        challenge: "q".into(),
        reference: "r".into(),
        task_fields: serde_json::json!({ "query": "q", "reference": "r" }),
        responses: vec![
            response(1, f64::NAN),
            response(2, f64::INFINITY),
            response(3, f64::NEG_INFINITY),
            response(4, 0.5),
        ],
        generate_s: 0.0,
        query_s: 0.0,
        score_s: 0.0,
        weights_set_at: None,
    };
    // Written by the validator's own writer.
    let state = dir.path().join("state");
    let mut log = EventLog::open(&state, 1 << 20, 2).unwrap();
    log.append(&event).unwrap();
    let events = log.path().to_path_buf();
    let mut cmd = neuron_command([
        "replay",
        events.to_str().unwrap(),
        "--scripts",
        root.to_str().unwrap(),
    ]);
    cmd.stdin(Stdio::null());
    let out = run_bounded(cmd);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("odd"), "{stdout}");
}

// ---------------------------------------------------------------------------------------
// L5, L6: keyfiles that are damaged or not files at all.

fn wallet_args(wallets: &Path) -> Vec<String> {
    [
        "--wallet.path",
        wallets.to_str().unwrap(),
        "--wallet.name",
        "w",
        "--wallet.hotkey",
        "h",
    ]
    .map(String::from)
    .to_vec()
}

/// Caps the address space of the process `cmd` starts at `bytes` (`RLIMIT_AS`).
#[cfg(unix)]
fn limit_address_space(cmd: &mut Command, bytes: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec this only calls `setrlimit`, which is
    // async-signal-safe, on a stack value.
    unsafe {
        cmd.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}

#[cfg(unix)]
#[test]
fn a_keyfile_that_is_dev_zero_or_a_fifo_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let wallets = dir.path().join("wallets");
    let coldkey = wallets.join("w/coldkey");
    std::fs::create_dir_all(coldkey.parent().unwrap()).unwrap();
    let fifo = dir.path().join("fifo");
    let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    for target in [Path::new("/dev/zero"), fifo.as_path()] {
        let _ = std::fs::remove_file(&coldkey);
        std::os::unix::fs::symlink(target, &coldkey).unwrap();
        let mut args = vec!["wallet".to_string()];
        args.extend(wallet_args(&wallets));
        args.extend(["sign", "--message", "m"].map(String::from));
        let mut cmd = neuron_command(&args);
        cmd.stdin(Stdio::null());
        // Reading /dev/zero without a bound would fill memory until the deadline.
        limit_address_space(&mut cmd, 4 << 30);
        let out = run_bounded(cmd);
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains("not a regular file"),
            "{target:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn a_damaged_nacl_keyfile_is_not_called_a_wrong_password() {
    let dir = tempfile::tempdir().unwrap();
    let wallet = Wallet::new(dir.path(), "w", "h");
    let key = Keypair::from_mnemonic(DEV_PHRASE, None).unwrap();
    wallet.set_coldkey(&key, Some("pw"), false).unwrap();
    let path = wallet.coldkey_file().path().to_path_buf();
    let sealed = std::fs::read(&path).unwrap();
    let right = Password::given("pw");

    let load = |bytes: &[u8]| {
        std::fs::write(&path, bytes).unwrap();
        wallet.coldkey(&right)
    };
    // A zero-filled block (a crash on a delayed-allocation file system).
    let mut zeroed = sealed.clone();
    zeroed[60..92].fill(0);
    // Re-encoded as text (copied through a tool that replaced invalid UTF-8).
    let text = String::from_utf8_lossy(&sealed).into_owned().into_bytes();
    // Cut short.
    let cut = sealed[..30].to_vec();
    for (what, bytes) in [("zeroed", zeroed), ("text", text), ("cut", cut)] {
        let err = load(&bytes).expect_err(what);
        assert!(matches!(err, WalletError::Damaged(_)), "{what}: {err}");
        assert!(err.to_string().contains(path.to_str().unwrap()), "{err}");
    }
    // Damage that authenticated encryption alone sees is indistinguishable from a wrong
    // password; the message says both.
    let mut flipped = sealed.clone();
    flipped[100] ^= 1;
    let err = load(&flipped).unwrap_err();
    assert!(matches!(err, WalletError::WrongPassword), "{err}");
    assert!(err.to_string().contains("altered"), "{err}");
    // The intact file still opens.
    assert_eq!(load(&sealed).unwrap().public(), key.public());
}

// ---------------------------------------------------------------------------------------
// M4: regenerating keys without the mnemonic on the command line.

#[test]
fn regen_reads_the_mnemonic_from_stdin_or_a_file_and_still_from_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let expected = Keypair::from_mnemonic(DEV_PHRASE, None).unwrap().ss58();
    let words = dir.path().join("words.txt");
    std::fs::write(&words, format!("{DEV_PHRASE}\n")).unwrap();
    let cases: [(&str, Vec<String>); 3] = [
        ("stdin", vec![]),
        (
            "file",
            vec!["--mnemonic-file".into(), words.to_str().unwrap().into()],
        ),
        ("flag", vec!["--mnemonic".into(), DEV_PHRASE.into()]),
    ];
    for (how, extra) in cases {
        let wallets = dir.path().join(how);
        for command in ["regen-coldkey", "regen-hotkey"] {
            let mut args = vec!["wallet".to_string()];
            args.extend(wallet_args(&wallets));
            args.extend([command.to_string(), "--no-password".to_string()]);
            args.extend(extra.iter().cloned());
            let mut cmd = neuron_command(&args);
            cmd.stdin(Stdio::piped());
            let mut child = cmd
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdin = child.stdin.take().unwrap();
            stdin
                .write_all(format!("{DEV_PHRASE}\n").as_bytes())
                .unwrap();
            drop(stdin);
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "{how} {command}: {}", stderr(&out));
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(stdout.contains(&expected), "{how} {command}: {stdout}");
        }
        let wallet = Wallet::new(&wallets, "w", "h");
        assert_eq!(wallet.coldkeypub().unwrap().ss58(), expected, "{how}");
        assert_eq!(wallet.hotkeypub().unwrap().ss58(), expected, "{how}");
    }
}

// ---------------------------------------------------------------------------------------
// L7: storage and tokenizer errors name the file and the cause.

#[test]
fn a_damaged_chain_file_is_named_with_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chain.sqlite");
    std::fs::write(&path, vec![0x5a; 8192]).unwrap();
    let err = neuron::chain::sim::SimChain::open(&path)
        .err()
        .expect("garbage is not a chain");
    let text = err.to_string();
    assert!(
        text.contains(path.to_str().unwrap()) && text.contains("not a database"),
        "{text}"
    );
}

#[test]
fn a_broken_embedder_tokenizer_is_named() {
    let real = Resolver::default().resolve("all-minilm-l6-v2").unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(real.join("config.json"), dir.path().join("config.json")).unwrap();
    std::fs::write(dir.path().join("model.safetensors"), b"").unwrap();
    let tokenizer = dir.path().join("tokenizer.json");
    std::fs::write(&tokenizer, "{ not json").unwrap();
    let err = neuron::embed::Embedder::load(dir.path(), &candle_core::Device::Cpu)
        .err()
        .expect("a broken tokenizer");
    assert!(
        err.to_string().contains(tokenizer.to_str().unwrap()),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------
// Property tests: the GGUF header reader and the keyfile parser never panic and allocate
// within a bound linear in their input.

/// Reading a GGUF header of `n` bytes allocates at most this much in total: candle keeps
/// each array element as a 32-byte value (a one-byte `u8` on disk) in a vector grown by
/// doubling, which asks for 64 bytes per element in all ([`a_header_of_one_byte_array_stays_within_the_bound`]).
fn gguf_allocation_bound(n: usize) -> usize {
    96 * n + (256 << 10)
}

/// The costliest header per byte: one metadata array of `u8`s filling the file.
#[test]
fn a_header_of_one_byte_array_stays_within_the_bound() {
    let elements = 1 << 20;
    let mut kv = 1u64.to_le_bytes().to_vec();
    kv.push(b'k');
    kv.extend_from_slice(&9u32.to_le_bytes()); // array
    kv.extend_from_slice(&0u32.to_le_bytes()); // of u8
    kv.extend_from_slice(&(elements as u64).to_le_bytes());
    kv.resize(kv.len() + elements, 7);
    let bytes = gguf_bytes(3, 0, 1, &kv);
    let (result, allocated) = peak_growth_of(|| read_gguf_header(&mut Cursor::new(&bytes)));
    assert!(result.is_ok());
    assert!(
        allocated >= 32 * elements,
        "{allocated}: the array was not read"
    );
    assert!(
        allocated <= gguf_allocation_bound(bytes.len()),
        "{allocated} bytes for {} bytes of header",
        bytes.len()
    );
}

/// Parsing `n` keyfile bytes (at most [`MAX_KEYFILE_BYTES`]) allocates at most this much.
fn keyfile_allocation_bound(n: usize) -> usize {
    16 * n + (256 << 10)
}

/// A GGUF prefix (magic, `version`, the two counts) followed by `tail`.
fn gguf_bytes(version: u32, tensors: u64, kvs: u64, tail: &[u8]) -> Vec<u8> {
    let mut out = b"GGUF".to_vec();
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&tensors.to_le_bytes());
    out.extend_from_slice(&kvs.to_le_bytes());
    out.extend_from_slice(tail);
    out
}

/// One tensor entry (GGUF v3) named `w`.
fn tensor_entry(dims: &[u64], dtype: u32, offset: u64) -> Vec<u8> {
    let mut out = 1u64.to_le_bytes().to_vec();
    out.push(b'w');
    out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
    for d in dims {
        out.extend_from_slice(&d.to_le_bytes());
    }
    out.extend_from_slice(&dtype.to_le_bytes());
    out.extend_from_slice(&offset.to_le_bytes());
    out
}

fn dim() -> impl Strategy<Value = u64> {
    prop_oneof![
        1u64..64,
        Just(0u64),
        Just(1u64 << 32),
        Just(1u64 << 59),
        any::<u64>()
    ]
}

fn count_field() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..4, any::<u64>()]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn gguf_headers_of_any_bytes_are_read_or_refused_within_bounds(
        version in 0u32..5,
        tensors in count_field(),
        kvs in count_field(),
        tail in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let bytes = gguf_bytes(version, tensors, kvs, &tail);
        let (_, allocated) = peak_growth_of(|| read_gguf_header(&mut Cursor::new(&bytes)));
        prop_assert!(allocated <= gguf_allocation_bound(bytes.len()), "{allocated} bytes");
    }

    #[test]
    fn gguf_tensor_tables_are_accepted_only_when_every_count_fits(
        dims in proptest::collection::vec(dim(), 0..6),
        dtype in 0u32..40,
        offset in prop_oneof![Just(0u64), 0u64..4096, any::<u64>()],
        data in 0usize..4096,
    ) {
        let mut bytes = gguf_bytes(3, 1, 0, &tensor_entry(&dims, dtype, offset));
        bytes.resize(bytes.len().div_ceil(32) * 32 + data, 0);
        let (result, allocated) = peak_growth_of(|| read_gguf_header(&mut Cursor::new(&bytes)));
        prop_assert!(allocated <= gguf_allocation_bound(bytes.len()), "{allocated} bytes");
        if let Ok(header) = result {
            // Accepted: the element count is the exact product, and the data fits.
            let elements = dims.iter().try_fold(1u64, |n, &d| n.checked_mul(d));
            prop_assert_eq!(Some(header.parameters), elements);
            prop_assert!((1..=4).contains(&dims.len()) && !dims.contains(&0));
            prop_assert!(header.tensor_bytes <= header.file_len);
        }
    }

    #[test]
    fn keyfiles_of_any_bytes_parse_or_fail_within_bounds(
        raw in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..4096),
            keyfile_json().prop_map(String::into_bytes),
        ],
    ) {
        // Fernet's 10^7-round key derivation is too slow for a property test; `$NACL`
        // bodies reach only the damage check here (Argon2 takes 512 MiB per try).
        prop_assume!(!raw.starts_with(b"gAAAAA"));
        prop_assume!(raw.len() as u64 <= MAX_KEYFILE_BYTES);
        let path = Path::new("prop/keyfile");
        let (_, allocated) = peak_growth_of(|| {
            if raw.starts_with(b"$NACL") {
                let _ = nacl_damage(&raw[5..]);
            } else {
                let _ = parse_keyfile(&raw, path, &Password::given("pw"));
            }
        });
        prop_assert!(allocated <= keyfile_allocation_bound(raw.len()), "{allocated} bytes");
    }
}

/// JSON objects with the keyfile's fields holding plausible and implausible values.
fn keyfile_json() -> impl Strategy<Value = String> {
    let value = prop_oneof![
        Just(serde_json::json!(null)),
        Just(serde_json::json!(DEV_PHRASE)),
        "0x[0-9a-f]{0,130}".prop_map(serde_json::Value::from),
        "[ -~]{0,64}".prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
    ];
    let fields = [
        "accountId",
        "publicKey",
        "privateKey",
        "secretPhrase",
        "secretSeed",
        "ss58Address",
        "cryptoType",
    ];
    proptest::collection::vec((0..fields.len(), value), 0..8).prop_map(move |entries| {
        let map: serde_json::Map<String, serde_json::Value> = entries
            .into_iter()
            .map(|(i, v)| (fields[i].to_string(), v))
            .collect();
        serde_json::Value::Object(map).to_string()
    })
}
