//! Loss evaluation of candidate models on batches, and one round's scores.
//!
//! A candidate's model is a file from a party the validator does not trust. Its losses
//! can be computed in a child process ([`WorkerCommand`], `neuron finetune eval-worker`)
//! so that even a fault nothing checks for (an abort, a crash in a kernel, memory
//! exhaustion) costs that candidate +∞ and never the round.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::llm::{ChatMessage, LlmService, LoadOptions};

use super::data::Batch;
use super::policy::Policy;
use super::{FinetuneError, ModelId};

/// A model to evaluate: who committed it, when, and where it was retrieved to (or
/// why it could not be).
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Uid of the committing miner.
    pub uid: u16,
    /// The committed model.
    pub id: ModelId,
    /// Block of the commitment.
    pub block: u64,
    /// Loadable path, or the retrieval error.
    pub path: Result<PathBuf, String>,
}

/// One model's result in a round.
#[derive(Debug, Clone, Serialize)]
pub struct ModelScore {
    /// Uid.
    pub uid: u16,
    /// Model id (display form).
    pub model: String,
    /// Commitment block.
    pub block: u64,
    /// Mean response-token loss per batch (`inf` where it failed).
    pub losses: Vec<f64>,
    /// Mean of `losses` (`inf` when any failed).
    pub mean_loss: f64,
    /// Batches won against the other models.
    pub wins: u64,
    /// Wins / matches.
    pub win_rate: f64,
    /// This round's weight (softmax of win rates within the competition).
    pub weight: f64,
    /// Why the model failed to load or evaluate, if it did.
    pub error: Option<String>,
}

/// The scores of a round and the work done.
#[derive(Debug, Clone, Serialize)]
pub struct EvalOutcome {
    /// One entry per candidate, in candidate order.
    pub scores: Vec<ModelScore>,
    /// Response tokens scored, over all models.
    pub tokens: usize,
    /// Seconds spent computing losses (model loads included).
    pub secs: f64,
}

/// The losses of one (prompt, response) pair.
#[derive(Debug, Clone, Serialize)]
pub struct PairLoss {
    /// The prompt as the model saw it (chat template applied).
    pub prompt: String,
    /// The response scored.
    pub response: String,
    /// Response token ids.
    pub tokens: Vec<u32>,
    /// `-ln p(token | before)` per response token.
    pub losses: Vec<f32>,
}

/// The command that evaluates one candidate in a child process: it reads a
/// [`WorkerRequest`] (JSON) on stdin and writes a [`WorkerReply`] (JSON) on stdout, as
/// [`Evaluator::serve_worker`] does (`neuron finetune eval-worker`).
#[derive(Debug, Clone)]
pub struct WorkerCommand {
    /// The program (usually this executable).
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Wall-time limit of one model's evaluation: past it the process is killed and
    /// the model scores +∞, so a model that hangs cannot stall the round.
    pub deadline: Duration,
}

/// The largest reply read from a worker (a loss per batch is a few bytes).
const MAX_WORKER_REPLY: u64 = 16 << 20;

/// What a worker is asked: the losses of one model on the round's batches.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerRequest {
    /// The model to load.
    pub model: PathBuf,
    /// The round's batches.
    pub batches: Vec<Batch>,
}

/// What a worker answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerReply {
    /// Mean loss per batch (`None` for +∞, which JSON cannot hold) and tokens scored.
    Losses {
        /// One per batch.
        losses: Vec<Option<f64>>,
        /// Response tokens scored.
        tokens: usize,
    },
    /// The model could not be loaded or evaluated.
    Failed(String),
}

/// Computes losses with the inference core.
#[derive(Debug, Clone)]
pub struct Evaluator {
    options: LoadOptions,
    worker: Option<WorkerCommand>,
}

impl Evaluator {
    /// An evaluator loading models with `options` in this process.
    pub fn new(options: LoadOptions) -> Self {
        Self {
            options,
            worker: None,
        }
    }

    /// The same evaluator, computing each candidate's losses in a child process run
    /// with `worker` instead of in this one.
    pub fn isolated(self, worker: WorkerCommand) -> Self {
        Self {
            worker: Some(worker),
            ..self
        }
    }

    /// Answers one [`WorkerRequest`] read from `input` with a [`WorkerReply`] on
    /// `output`, computing the losses in this process: the body of a worker process.
    pub fn serve_worker(
        &self,
        input: &mut dyn Read,
        output: &mut dyn Write,
    ) -> Result<(), FinetuneError> {
        let bad = |reason: String| FinetuneError::Data {
            path: "worker request".into(),
            reason,
        };
        let request: WorkerRequest =
            serde_json::from_reader(input).map_err(|e| bad(e.to_string()))?;
        let reply = match self.local_batch_losses(&request.model, &request.batches) {
            Ok((losses, tokens)) => WorkerReply::Losses {
                losses: losses
                    .into_iter()
                    .map(|l| l.is_finite().then_some(l))
                    .collect(),
                tokens,
            },
            Err(e) => WorkerReply::Failed(e.to_string()),
        };
        serde_json::to_writer(&mut *output, &reply).map_err(|e| bad(e.to_string()))?;
        output.flush().map_err(|e| bad(e.to_string()))
    }

    /// Runs the worker on one model; any way it can fail (it cannot start, dies on a
    /// signal, exits non-zero, answers garbage or reports a failure) is an `Err`.
    fn child_batch_losses(
        worker: &WorkerCommand,
        path: &Path,
        batches: &[Batch],
    ) -> Result<(Vec<f64>, usize), String> {
        let request = serde_json::to_vec(&WorkerRequest {
            model: path.to_path_buf(),
            batches: batches.to_vec(),
        })
        .map_err(|e| e.to_string())?;
        let mut child = Command::new(&worker.program)
            .args(&worker.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", worker.program.display()))?;
        // The worker reads its whole request before writing anything, so writing all of
        // it first cannot deadlock; a worker that died early shows in its status below.
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(&request);
        }
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let reader = std::thread::spawn(move || {
            let mut reply = Vec::new();
            let _ = (&mut stdout).take(MAX_WORKER_REPLY).read_to_end(&mut reply);
            reply
        });
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                break status;
            }
            if started.elapsed() >= worker.deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "evaluation process ran past its limit of {:?} and was killed",
                    worker.deadline
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if !status.success() {
            return Err(format!("evaluation process died ({status})"));
        }
        let reply = reader.join().unwrap_or_default();
        match serde_json::from_slice(&reply) {
            Ok(WorkerReply::Losses { losses, tokens }) => Ok((
                losses
                    .into_iter()
                    .map(|l| l.unwrap_or(f64::INFINITY))
                    .collect(),
                tokens,
            )),
            Ok(WorkerReply::Failed(reason)) => Err(reason),
            Err(e) => Err(format!("evaluation process answered badly: {e}")),
        }
    }

    /// Loads the model at `path` with the evaluator's options.
    pub fn load(&self, path: &Path) -> Result<LlmService, FinetuneError> {
        Ok(LlmService::load(path, self.options.clone())?)
    }

    /// Per-pair response-token losses for every batch: the prompt is rendered as a
    /// user turn with the model's chat template. A pair that fails (context overflow,
    /// tokenizer) is an `Err` with the reason.
    pub fn pair_losses(
        &self,
        service: &LlmService,
        batches: &[Batch],
    ) -> Vec<Vec<Result<PairLoss, String>>> {
        batches
            .iter()
            .map(|batch| {
                batch
                    .iter()
                    .map(|pair| {
                        let prompt = service
                            .render_prompt(&[ChatMessage::new("user", pair.prompt.as_str())])
                            .map_err(|e| e.to_string())?;
                        let scored = service
                            .log_likelihood(&prompt, &pair.response)
                            .map_err(|e| e.to_string())?;
                        Ok(PairLoss {
                            prompt,
                            response: pair.response.clone(),
                            tokens: scored.tokens,
                            losses: scored.losses,
                        })
                    })
                    .collect()
            })
            .collect()
    }

    /// The mean loss over all response tokens of each batch (`inf` for a batch with a
    /// failed pair, as the reference does), and the number of tokens scored; in a child
    /// process when the evaluator is [`isolated`](Self::isolated). The error says why
    /// the model could not be evaluated.
    pub fn batch_losses(
        &self,
        path: &Path,
        batches: &[Batch],
    ) -> Result<(Vec<f64>, usize), String> {
        match &self.worker {
            Some(worker) => Self::child_batch_losses(worker, path, batches),
            None => self
                .local_batch_losses(path, batches)
                .map_err(|e| e.to_string()),
        }
    }

    /// [`batch_losses`](Self::batch_losses) in this process.
    fn local_batch_losses(
        &self,
        path: &Path,
        batches: &[Batch],
    ) -> Result<(Vec<f64>, usize), FinetuneError> {
        let mut tokens = 0;
        let service = self.load(path)?;
        let losses = self
            .pair_losses(&service, batches)
            .into_iter()
            .map(|pairs| {
                let mut sum = 0.0f64;
                let mut count = 0usize;
                for pair in pairs {
                    match pair {
                        Ok(p) => {
                            sum += p.losses.iter().map(|&x| f64::from(x)).sum::<f64>();
                            count += p.losses.len();
                        }
                        Err(e) => {
                            tracing::warn!(model = %path.display(), error = %e, "batch failed");
                            return f64::INFINITY;
                        }
                    }
                }
                tokens += count;
                if count == 0 {
                    f64::INFINITY
                } else {
                    sum / count as f64
                }
            })
            .collect();
        Ok((losses, tokens))
    }

    /// Losses of every candidate on the same batches, then wins, win rates and this
    /// round's weights from `policy`. Failing models get `inf` losses (and so no wins
    /// and weight 0); they never stop the round.
    pub fn evaluate(
        &self,
        candidates: &[Candidate],
        batches: &[Batch],
        policy: &dyn Policy,
        current_block: u64,
    ) -> Result<EvalOutcome, FinetuneError> {
        let start = Instant::now();
        let mut tokens = 0;
        let mut rows = Vec::with_capacity(candidates.len());
        for c in candidates {
            let result = c.path.clone().and_then(|p| self.batch_losses(&p, batches));
            let (losses, error) = match result {
                Ok((losses, n)) => {
                    tokens += n;
                    (losses, None)
                }
                Err(e) => {
                    tracing::warn!(uid = c.uid, model = %c.id, error = %e, "model scores zero");
                    (vec![f64::INFINITY; batches.len()], Some(e))
                }
            };
            rows.push((losses, error));
        }
        let secs = start.elapsed().as_secs_f64();
        let blocks: Vec<u64> = candidates.iter().map(|c| c.block).collect();
        let losses: Vec<Vec<f64>> = rows.iter().map(|(l, _)| l.clone()).collect();
        let wins = policy.compute_wins(current_block, &blocks, &losses)?;
        let alive: Vec<bool> = losses
            .iter()
            .map(|l| l.iter().any(|x| x.is_finite()))
            .collect();
        let weights = policy.step_weights(&wins.win_rate, &alive)?;
        let scores = candidates
            .iter()
            .zip(rows)
            .enumerate()
            .map(|(i, (c, (losses, error)))| ModelScore {
                uid: c.uid,
                model: c.id.to_string(),
                block: c.block,
                mean_loss: if losses.is_empty() {
                    f64::INFINITY
                } else {
                    losses.iter().sum::<f64>() / losses.len() as f64
                },
                losses,
                wins: wins.wins[i],
                win_rate: wins.win_rate[i],
                weight: weights[i],
                error,
            })
            .collect();
        Ok(EvalOutcome {
            scores,
            tokens,
            secs,
        })
    }
}
