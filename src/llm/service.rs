//! [`LlmService`]: one loaded model serving many callers. Requests wait in a bounded
//! queue (callers block, or await, while it is full: backpressure) and are run by worker
//! threads over the shared, immutable weights. A request whose caller gives up (timeout,
//! dropped future) is stopped at the next token; its KV cache is simply dropped.

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, oneshot};

use super::engine::{Control, Engine, ModelInfo};
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
        let workers = if engine.shareable() {
            options.workers.max(1)
        } else {
            1
        };
        let (queue, jobs) = std::sync::mpsc::sync_channel(options.queue_capacity.max(1));
        let jobs = Arc::new(Mutex::new(jobs));
        let space = Arc::new(Notify::new());
        for i in 0..workers {
            let (engine, jobs, space) = (engine.clone(), jobs.clone(), space.clone());
            std::thread::Builder::new()
                .name(format!("llm-worker-{i}"))
                .spawn(move || worker(&engine, &jobs, &space))
                .map_err(|e| LlmError::BadModel(format!("cannot start worker thread: {e}")))?;
        }
        Ok(Self {
            shared: Arc::new(Shared {
                queue,
                space,
                engine,
                timeout: options.timeout,
            }),
        })
    }

    /// Facts about the loaded model.
    pub fn info(&self) -> &ModelInfo {
        &self.shared.engine.info
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

fn worker(engine: &Engine, jobs: &Mutex<Receiver<Job>>, space: &Notify) {
    loop {
        let job = {
            let Ok(jobs) = jobs.lock() else { return };
            match jobs.recv() {
                Ok(job) => job,
                Err(_) => return, // every sender dropped: the service is gone
            }
        };
        space.notify_waiters();
        let Job {
            work,
            control,
            reply,
        } = job;
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| run(engine, work, &control)))
            .unwrap_or_else(|panic| {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                tracing::error!(%msg, "inference request panicked");
                Err(LlmError::BadModel(format!(
                    "internal error during inference: {msg}"
                )))
            });
        // The caller may have gone away; then nobody needs the answer.
        let _ = match reply {
            ReplyTo::Async(tx) => tx.send(result).map_err(drop),
            ReplyTo::Sync(tx) => tx.send(result).map_err(drop),
        };
    }
}

fn run(engine: &Engine, work: Work, control: &Control) -> Result<Output, LlmError> {
    match work {
        Work::Chat {
            messages,
            params,
            stream,
        } => {
            let mut on_text = |piece: &str| {
                if let Some(s) = &stream {
                    // A closed stream only means the listener stopped listening.
                    let _ = s.send(piece.to_string());
                }
            };
            engine
                .generate(&messages, &params, control, &mut on_text)
                .map(Output::Chat)
        }
        Work::LogLikelihood {
            prompt,
            continuation,
        } => engine
            .log_likelihood(&prompt, &continuation, control)
            .map(Output::LogLikelihood),
    }
}
