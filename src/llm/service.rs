//! [`LlmService`]: one loaded model serving many callers. Requests wait in a bounded
//! queue (callers block, or await, while it is full: backpressure) and are run by one
//! scheduler thread with continuous batching: a request joins the running batch at a
//! token boundary (its prompt fed in chunks between the others' decode steps), every
//! decode step feeds one token of each live request through the weights together, and a
//! request leaves when it is done, cancelled or past its deadline. Each keeps its own KV
//! cache, sampler, seed, stop strings and budget; its tokens are the same alone or in
//! any batch. A request whose caller gives up (timeout, dropped future) is stopped at
//! the next token; its KV cache is simply dropped.

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, oneshot};

use super::engine::{Control, Decoding, Engine, ModelInfo};
use super::{ChatMessage, Generation, LlmError, LoadOptions, SamplingParams, TokenLosses};

/// Per-request options beyond sampling.
#[derive(Debug, Clone, Default)]
pub struct RequestOptions {
    /// Deadline for the whole request, queue wait included (default: the service's).
    pub timeout: Option<Duration>,
    /// Receives the text as it is generated (pieces concatenate to the final text).
    pub stream: Option<tokio::sync::mpsc::UnboundedSender<String>>,
}

enum Work {
    Chat {
        messages: Vec<ChatMessage>,
        params: SamplingParams,
        stream: Option<tokio::sync::mpsc::UnboundedSender<String>>,
    },
    LogLikelihood {
        prompt: String,
        continuation: String,
    },
}

enum Output {
    Chat(Generation),
    LogLikelihood(TokenLosses),
}

enum ReplyTo {
    Async(oneshot::Sender<Result<Output, LlmError>>),
    Sync(std::sync::mpsc::Sender<Result<Output, LlmError>>),
}

struct Job {
    work: Work,
    control: Control,
    reply: ReplyTo,
}

struct Shared {
    queue: SyncSender<Job>,
    /// Signalled whenever a worker takes a job, so waiting async senders retry.
    space: Arc<Notify>,
    engine: Arc<Engine>,
    timeout: Option<Duration>,
    /// The most requests one decode step has fed.
    peak_batch: Arc<AtomicUsize>,
}

/// How often a blocking caller with a deadline retries a full queue.
const QUEUE_POLL: Duration = Duration::from_millis(5);

/// A loaded model behind a bounded request queue. Cheap to clone; `Send + Sync`.
/// Workers stop when the last clone is dropped.
#[derive(Clone)]
pub struct LlmService {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for LlmService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmService")
            .field("info", self.info())
            .finish()
    }
}

/// Sets the cancel flag when an async request's future is dropped before completion.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl LlmService {
    /// Loads the model at `path` (a `.gguf` file, or a safetensors model directory) and
    /// starts the workers. Blocks for the load (~1 s for the 135M default on CPU).
    pub fn load(path: &Path, options: LoadOptions) -> Result<Self, LlmError> {
        if !path.exists() {
            return Err(LlmError::Open {
                path: path.display().to_string(),
                reason: "no such file or directory".into(),
            });
        }
        let engine = Arc::new(Engine::load(path, &options)?);
        let (queue, jobs) = std::sync::mpsc::sync_channel(options.queue_capacity.max(1));
        let space = Arc::new(Notify::new());
        let max_batch = options.max_batch.max(1);
        let peak_batch = Arc::new(AtomicUsize::new(0));
        {
            let (engine, space, peak) = (engine.clone(), space.clone(), peak_batch.clone());
            std::thread::Builder::new()
                .name("llm-scheduler".into())
                .spawn(move || schedule(&engine, &jobs, &space, max_batch, &peak))
                .map_err(|e| LlmError::BadModel(format!("cannot start scheduler thread: {e}")))?;
        }
        Ok(Self {
            shared: Arc::new(Shared {
                queue,
                space,
                engine,
                timeout: options.timeout,
                peak_batch,
            }),
        })
    }

    /// Facts about the loaded model.
    pub fn info(&self) -> &ModelInfo {
        &self.shared.engine.info
    }

    /// The most requests one decode step has fed so far (continuous batching at work).
    pub fn peak_batch(&self) -> usize {
        self.shared.peak_batch.load(Ordering::Relaxed)
    }

    /// The prompt text the model sees for `messages` (its chat template applied).
    pub fn render_prompt(&self, messages: &[ChatMessage]) -> Result<String, LlmError> {
        self.shared.engine.render(messages)
    }

    fn control(&self, timeout: Option<Duration>) -> Control {
        let budget = timeout.or(self.shared.timeout);
        Control {
            cancelled: Arc::new(AtomicBool::new(false)),
            deadline: budget.map(|b| (Instant::now() + b, b)),
        }
    }

    /// Generates a reply to `messages`.
    pub async fn chat(
        &self,
        messages: Vec<ChatMessage>,
        params: SamplingParams,
    ) -> Result<Generation, LlmError> {
        self.chat_with(messages, params, RequestOptions::default())
            .await
    }

    /// [`LlmService::chat`] with a deadline and/or a token stream.
    pub async fn chat_with(
        &self,
        messages: Vec<ChatMessage>,
        params: SamplingParams,
        options: RequestOptions,
    ) -> Result<Generation, LlmError> {
        let control = self.control(options.timeout);
        let _guard = CancelOnDrop(control.cancelled.clone());
        let (tx, rx) = oneshot::channel();
        let mut job = Job {
            work: Work::Chat {
                messages,
                params,
                stream: options.stream,
            },
            control,
            reply: ReplyTo::Async(tx),
        };
        loop {
            // Register interest before trying, so a slot freed in between is not missed.
            let notified = self.shared.space.notified();
            match self.shared.queue.try_send(job) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) => {
                    job = back;
                    notified.await;
                }
                Err(TrySendError::Disconnected(_)) => return Err(LlmError::WorkerGone),
            }
        }
        match rx.await.map_err(|_| LlmError::WorkerGone)?? {
            Output::Chat(g) => Ok(g),
            Output::LogLikelihood(_) => unreachable!("chat jobs reply with chat output"),
        }
    }

    /// [`LlmService::chat`] for synchronous callers (e.g. script hooks on a blocking
    /// thread). Blocks while the queue is full and until the reply is ready.
    pub fn chat_blocking(
        &self,
        messages: Vec<ChatMessage>,
        params: SamplingParams,
    ) -> Result<Generation, LlmError> {
        self.chat_blocking_with(messages, params, RequestOptions::default())
    }

    /// [`LlmService::chat_blocking`] with a deadline and/or a token stream.
    pub fn chat_blocking_with(
        &self,
        messages: Vec<ChatMessage>,
        params: SamplingParams,
        options: RequestOptions,
    ) -> Result<Generation, LlmError> {
        let work = Work::Chat {
            messages,
            params,
            stream: options.stream,
        };
        match self.run_blocking(work, options.timeout)? {
            Output::Chat(g) => Ok(g),
            Output::LogLikelihood(_) => unreachable!("chat jobs reply with chat output"),
        }
    }

    /// Per-token cross-entropy of `continuation` given `prompt` (raw text, no chat
    /// template; the model's BOS token is prepended when it asks for one). Blocking.
    pub fn log_likelihood(
        &self,
        prompt: &str,
        continuation: &str,
    ) -> Result<TokenLosses, LlmError> {
        let work = Work::LogLikelihood {
            prompt: prompt.into(),
            continuation: continuation.into(),
        };
        match self.run_blocking(work, None)? {
            Output::LogLikelihood(l) => Ok(l),
            Output::Chat(_) => unreachable!("log-likelihood jobs reply with losses"),
        }
    }

    /// Queues `work` and waits for its reply. A request with a deadline waits for a
    /// queue slot only until that deadline (then [`LlmError::Timeout`]); the worker
    /// honours the same deadline once it runs the job.
    fn run_blocking(&self, work: Work, timeout: Option<Duration>) -> Result<Output, LlmError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let control = self.control(timeout);
        let deadline = control.deadline;
        let mut job = Job {
            work,
            control,
            reply: ReplyTo::Sync(tx),
        };
        match deadline {
            None => self
                .shared
                .queue
                .send(job)
                .map_err(|_| LlmError::WorkerGone)?,
            Some((at, budget)) => loop {
                match self.shared.queue.try_send(job) {
                    Ok(()) => break,
                    Err(TrySendError::Full(back)) => {
                        if Instant::now() >= at {
                            return Err(LlmError::Timeout(budget));
                        }
                        job = back;
                        std::thread::sleep(QUEUE_POLL);
                    }
                    Err(TrySendError::Disconnected(_)) => return Err(LlmError::WorkerGone),
                }
            },
        }
        rx.recv().map_err(|_| LlmError::WorkerGone)?
    }
}

/// A chat request in the running batch.
struct Live {
    decoding: Decoding,
    reply: ReplyTo,
}

/// The scheduler: admits waiting requests up to `max_batch` live ones (blocking only
/// when none is live), feeds one prompt chunk of each joining request, then one decode
/// step of all the others together; replies as each one ends. Log-likelihood requests
/// run between steps. Returns when every sender is gone and nothing is live.
fn schedule(
    engine: &Engine,
    jobs: &Receiver<Job>,
    space: &Notify,
    max_batch: usize,
    peak_batch: &AtomicUsize,
) {
    let mut live: Vec<Live> = Vec::new();
    loop {
        while live.len() < max_batch {
            let job = if live.is_empty() {
                match jobs.recv() {
                    Ok(job) => job,
                    Err(_) => return, // every sender dropped: the service is gone
                }
            } else {
                match jobs.try_recv() {
                    Ok(job) => job,
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            };
            space.notify_waiters();
            admit(engine, job, &mut live);
        }
        // Cancelled or late requests leave before any more work is spent on them.
        live = live
            .into_iter()
            .filter_map(|l| match l.decoding.stopped() {
                Some(err) => {
                    l.reply.send(Err(err));
                    None
                }
                None => Some(l),
            })
            .collect();
        let mut decoding = Vec::with_capacity(live.len());
        for mut l in std::mem::take(&mut live) {
            if l.decoding.prefilling() {
                match guarded(|| engine.prefill(&mut l.decoding)) {
                    Ok(None) => live.push(l),
                    done => l.reply.send(done.map(|g| Output::Chat(g.expect("ended")))),
                }
            } else {
                decoding.push(l);
            }
        }
        if decoding.is_empty() {
            continue;
        }
        peak_batch.fetch_max(decoding.len(), Ordering::Relaxed);
        let mut batch: Vec<&mut Decoding> = decoding.iter_mut().map(|l| &mut l.decoding).collect();
        match guarded(|| engine.decode_step(&mut batch)) {
            Ok(outcomes) => {
                for (l, outcome) in decoding.into_iter().zip(outcomes) {
                    match outcome {
                        Ok(None) => live.push(l),
                        done => l.reply.send(done.map(|g| Output::Chat(g.expect("ended")))),
                    }
                }
            }
            Err(err) => {
                let cause = err.to_string();
                for l in decoding {
                    l.reply.send(Err(LlmError::BatchStep(cause.clone())));
                }
            }
        }
    }
}

/// Starts `job`: a chat joins `live`; a log-likelihood request runs now.
fn admit(engine: &Engine, job: Job, live: &mut Vec<Live>) {
    let Job {
        work,
        control,
        reply,
    } = job;
    match work {
        Work::Chat {
            messages,
            params,
            stream,
        } => {
            let on_text = Box::new(move |piece: &str| {
                if let Some(s) = &stream {
                    // A closed stream only means the listener stopped listening.
                    let _ = s.send(piece.to_string());
                }
            });
            match engine.begin(&messages, params, control, on_text) {
                Ok(decoding) => live.push(Live { decoding, reply }),
                Err(err) => reply.send(Err(err)),
            }
        }
        Work::LogLikelihood {
            prompt,
            continuation,
        } => reply.send(
            guarded(|| engine.log_likelihood(&prompt, &continuation, &control))
                .map(Output::LogLikelihood),
        ),
    }
}

impl ReplyTo {
    /// Sends `result`; the caller may have gone away, and then nobody needs it.
    fn send(self, result: Result<Output, LlmError>) {
        let _ = match self {
            ReplyTo::Async(tx) => tx.send(result).map_err(drop),
            ReplyTo::Sync(tx) => tx.send(result).map_err(drop),
        };
    }
}

/// Runs `work`, turning a panic into an error, so one bad request (or model) does not
/// take the scheduler down.
fn guarded<T>(work: impl FnOnce() -> Result<T, LlmError>) -> Result<T, LlmError> {
    std::panic::catch_unwind(AssertUnwindSafe(work)).unwrap_or_else(|panic| {
        let msg = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        tracing::error!(%msg, "inference request panicked");
        Err(LlmError::BadModel(format!(
            "internal error during inference: {msg}"
        )))
    })
}
