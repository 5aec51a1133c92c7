//! [`BuiltinBackend`]: the in-process `sotto-engine` model behind the API.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use sotto_engine::{GenerateParams, Model};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::backend::{BoxFuture, ChatEvent, ChatStream, FinishReason, ModelInfo, Usage};
use crate::{ApiError, Backend, ChatMessage, ChatRequest, CompletionRequest, SamplingOptions};

/// Text deltas buffered between the generating thread and the HTTP response. Small on purpose:
/// once the consumer stops reading or goes away, generation blocks or stops within a few tokens.
const DELTA_CHANNEL_CAPACITY: usize = 8;

/// Serves one loaded [`Model`] under a fixed model id.
///
/// * **Prompt rendering.** A GGUF model with a chat template (`tokenizer.chat_template`) gets
///   its messages rendered by that template with the assistant's generation prompt, exactly
///   as the model was trained (special tokens in the result are tokenized as such); the
///   model's end-of-turn tokens end the answer. A template that refuses the conversation
///   (`raise_exception`, e.g. roles not alternating) is a 400 on `messages`.
///   Models without a template (llama2.c checkpoints, base GGUF models) get the text content
///   of all messages, in request order, joined with `"\n"` (roles are not rendered; put the
///   system message first if you want it first). A single user message with empty content
///   therefore yields the empty prompt, exactly like `./run` without `-i`.
///   See [`BuiltinBackend::render_prompt`]. Text completions (`/v1/completions`) continue
///   their prompt as is.
/// * **Sampling.** OpenAI defaults: `temperature` 1, `top_p` 1 (= no nucleus cut; the engine
///   follows llama2.c and treats `top_p >= 1` as plain sampling); `temperature` 0 is greedy.
///   Without `seed` a fresh random seed is drawn per request; with a `seed` the output is
///   deterministic. `max_tokens` defaults to (and is clamped by) the context length.
///   `stop`, `top_k`, `min_p`, `repetition_penalty` (window: the last 64 tokens, prompt
///   included), `presence_penalty` and `frequency_penalty` go to the engine; absent means off.
///   A stop string ends the generation with `finish_reason` `stop`; neither it nor anything
///   after it is returned, and `usage.completion_tokens` counts every token generated,
///   including the one that completed the stop string.
/// * **Concurrency.** At most `max_concurrent` generations run at once (each on a
///   `spawn_blocking` thread); further requests wait in FIFO order instead of failing.
/// * **Cancellation.** Deltas go through a small bounded channel; as soon as the receiving
///   [`ChatStream`] is dropped (HTTP client gone, response body dropped) the engine's `on_text`
///   callback returns `Break` at the next token and the slot is released.
pub struct BuiltinBackend {
    model: Arc<Model>,
    id: String,
    created: u64,
    slots: Arc<Semaphore>,
    stats: Arc<Stats>,
}

#[derive(Default)]
struct Stats {
    active: AtomicUsize,
    finished: AtomicU64,
    cancelled: AtomicU64,
    tokens: AtomicU64,
}

/// Decrements the active-generation gauge however the generating closure exits (incl. panic).
struct ActiveGuard(Arc<Stats>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

impl BuiltinBackend {
    /// Serve `model` as `model_id`, allowing as many concurrent generations as the machine has
    /// cores (see [`with_max_concurrent`](Self::with_max_concurrent)).
    pub fn new(model: Arc<Model>, model_id: impl Into<String>) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        BuiltinBackend {
            model,
            id: model_id.into(),
            created: crate::unix_now(),
            slots: Arc::new(Semaphore::new(cores)),
            stats: Arc::default(),
        }
    }

    /// Limit concurrent generations to `max_concurrent` (at least 1); excess requests queue.
    pub fn with_max_concurrent(mut self, max_concurrent: usize) -> Self {
        self.slots = Arc::new(Semaphore::new(max_concurrent.max(1)));
        self
    }

    /// The served model id.
    pub fn model_id(&self) -> &str {
        &self.id
    }

    /// Generations currently running on the engine (not counting queued requests).
    pub fn active_generations(&self) -> usize {
        self.stats.active.load(Ordering::SeqCst)
    }

    /// Generations that ran to a natural end (stop or length) since construction, whether or
    /// not the client was still there for the final event.
    pub fn finished_generations(&self) -> u64 {
        self.stats.finished.load(Ordering::SeqCst)
    }

    /// Generations stopped early because their consumer went away (including requests
    /// abandoned between admission and the first token), since construction.
    pub fn cancelled_generations(&self) -> u64 {
        self.stats.cancelled.load(Ordering::SeqCst)
    }

    /// Completion tokens generated since construction, including those of cancelled runs.
    pub fn generated_tokens(&self) -> u64 {
        self.stats.tokens.load(Ordering::SeqCst)
    }

    /// Generation slots currently free (`max_concurrent` minus running/admitted generations).
    pub fn free_slots(&self) -> usize {
        self.slots.available_permits()
    }

    /// The prompt for `messages`: the model's chat template when it has one, else
    /// [`BuiltinBackend::render_prompt`].
    fn chat_prompt(model: &Model, messages: &[ChatMessage]) -> Result<String, ApiError> {
        if model.chat_template().is_none() {
            return Ok(Self::render_prompt(messages));
        }
        let msgs: Vec<sotto_engine::ChatMessage> = messages
            .iter()
            .map(|m| sotto_engine::ChatMessage {
                role: m.role.as_str().to_string(),
                content: m.content.clone(),
            })
            .collect();
        match model.render_chat(&msgs) {
            Ok(Some(prompt)) => Ok(prompt),
            Ok(None) => Ok(Self::render_prompt(messages)),
            Err(sotto_engine::EngineError::ChatTemplateException { .. }) => {
                Err(ApiError::InvalidValue {
                    param: "messages",
                    reason: "the model's chat template does not accept this conversation (e.g. roles must alternate).",
                })
            }
            Err(e) => {
                tracing::warn!(code = e.code(), "chat template failed");
                Err(ApiError::Engine {
                    engine_code: e.code(),
                })
            }
        }
    }

    /// The prompt of a model without a chat template: the messages' text contents joined
    /// with `"\n"`.
    pub fn render_prompt(messages: &[ChatMessage]) -> String {
        let mut prompt = String::new();
        for (i, m) in messages.iter().enumerate() {
            if i > 0 {
                prompt.push('\n');
            }
            prompt.push_str(&m.content);
        }
        prompt
    }
}

impl Backend for BuiltinBackend {
    fn list_models(&self) -> BoxFuture<'_, Result<Vec<ModelInfo>, ApiError>> {
        let info = ModelInfo {
            id: self.id.clone(),
            created: self.created,
        };
        Box::pin(async move { Ok(vec![info]) })
    }

    fn chat(&self, request: ChatRequest) -> BoxFuture<'_, Result<ChatStream, ApiError>> {
        Box::pin(async move {
            if request.model != self.id {
                return Err(ApiError::ModelNotFound);
            }
            let sampling = Sampling {
                max_tokens: request.max_tokens,
                temperature: request.temperature,
                top_p: request.top_p,
                seed: request.seed,
                options: request.sampling,
            };
            self.generate(Prompt::Chat(request.messages), sampling)
                .await
        })
    }

    fn complete(&self, request: CompletionRequest) -> BoxFuture<'_, Result<ChatStream, ApiError>> {
        Box::pin(async move {
            if request.model != self.id {
                return Err(ApiError::ModelNotFound);
            }
            let sampling = Sampling {
                max_tokens: Some(request.max_tokens),
                temperature: request.temperature,
                top_p: request.top_p,
                seed: request.seed,
                options: request.sampling,
            };
            self.generate(Prompt::Text(request.prompt), sampling).await
        })
    }
}

/// What the engine continues: a text as is (`/v1/completions`) or chat messages to render.
enum Prompt {
    Text(String),
    Chat(Vec<ChatMessage>),
}

/// What a request asks of the sampler (`None`: the OpenAI default).
struct Sampling {
    max_tokens: Option<u32>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    seed: Option<u64>,
    options: SamplingOptions,
}

impl BuiltinBackend {
    /// Queues for a slot, then continues `prompt` on a blocking thread, streaming deltas.
    async fn generate(&self, prompt: Prompt, sampling: Sampling) -> Result<ChatStream, ApiError> {
        let seed = match sampling.seed {
            Some(seed) => seed,
            None => getrandom::u64().map_err(|_| ApiError::Internal)?,
        };
        let seq_len = self.model.config().seq_len;
        let params = GenerateParams {
            max_tokens: sampling
                .max_tokens
                .unwrap_or(u32::MAX)
                .min(u32::try_from(seq_len).unwrap_or(u32::MAX)),
            temperature: sampling.temperature.unwrap_or(1.0),
            top_p: sampling.top_p.unwrap_or(1.0),
            seed,
            top_k: sampling.options.top_k.unwrap_or(0),
            min_p: sampling.options.min_p.unwrap_or(0.0),
            repetition_penalty: sampling.options.repetition_penalty.unwrap_or(1.0),
            repeat_last_n: sotto_engine::DEFAULT_REPEAT_LAST_N,
            presence_penalty: sampling.options.presence_penalty.unwrap_or(0.0),
            frequency_penalty: sampling.options.frequency_penalty.unwrap_or(0.0),
            stop: sampling.options.stop,
        };

        // Queue for a slot. Dropping this future (client gone) leaves the queue.
        let permit = Arc::clone(&self.slots)
            .acquire_owned()
            .await
            .map_err(|_| ApiError::Internal)?;

        let (admitted_tx, admitted_rx) = oneshot::channel::<Result<(), ApiError>>();
        let (tx, mut rx) = mpsc::channel::<Result<ChatEvent, ApiError>>(DELTA_CHANNEL_CAPACITY);
        let model = Arc::clone(&self.model);
        let stats = Arc::clone(&self.stats);
        stats.active.fetch_add(1, Ordering::SeqCst);
        let guard = ActiveGuard(Arc::clone(&stats));
        tokio::task::spawn_blocking(move || {
            // Both are released explicitly before the final event is sent (below), so a
            // client that has seen the end of its response also sees the slot free.
            let permit = permit;
            let guard = guard;
            // Rendering a chat template is CPU work (bounded by its fuel), so it runs here
            // with the generation rather than on the async runtime.
            let prompt = match prompt {
                Prompt::Text(text) => text,
                Prompt::Chat(messages) => match Self::chat_prompt(&model, &messages) {
                    Ok(text) => text,
                    Err(e) => {
                        let _ = admitted_tx.send(Err(e));
                        return;
                    }
                },
            };
            // Tokenising is CPU work too (quadratic in the worst case), hence here rather
            // than on the async runtime, and only after a cheap length bound: each token
            // covers at most `max_token_length` bytes.
            let max_piece = model.max_token_length().max(1);
            let prompt_tokens = match prompt.len() / max_piece {
                lower_bound if lower_bound > seq_len => lower_bound,
                _ => model.count_tokens(&prompt),
            };
            if prompt_tokens > seq_len {
                let _ = admitted_tx.send(Err(ApiError::ContextLengthExceeded {
                    prompt_tokens,
                    limit: seq_len,
                }));
                return;
            }
            if admitted_tx.send(Ok(())).is_err() {
                stats.cancelled.fetch_add(1, Ordering::SeqCst);
                return;
            }
            let mut on_text = |text: &str| {
                if text.is_empty() {
                    return ControlFlow::Continue(());
                }
                // Blocks while the consumer is slow (backpressure); fails once it is gone.
                match tx.blocking_send(Ok(ChatEvent::Delta(text.to_owned()))) {
                    Ok(()) => ControlFlow::Continue(()),
                    Err(_) => ControlFlow::Break(()),
                }
            };
            let result = model.generate(&prompt, &params, &mut on_text);
            let event = match result {
                Ok(g) => {
                    stats
                        .tokens
                        .fetch_add(u64::from(g.completion_tokens), Ordering::SeqCst);
                    let finish_reason = match g.finish_reason {
                        sotto_engine::FinishReason::Stop => FinishReason::Stop,
                        sotto_engine::FinishReason::Length => FinishReason::Length,
                        sotto_engine::FinishReason::Cancelled => {
                            stats.cancelled.fetch_add(1, Ordering::SeqCst);
                            // Counts only: never text.
                            tracing::info!(
                                completion_tokens = g.completion_tokens,
                                "generation cancelled: the client went away"
                            );
                            return;
                        }
                    };
                    stats.finished.fetch_add(1, Ordering::SeqCst);
                    Ok(ChatEvent::Finish {
                        finish_reason,
                        usage: Some(Usage::new(g.prompt_tokens, g.completion_tokens)),
                    })
                }
                Err(sotto_engine::EngineError::ContextOverflow {
                    prompt_tokens,
                    seq_len,
                }) => Err(ApiError::ContextLengthExceeded {
                    prompt_tokens,
                    limit: seq_len,
                }),
                Err(e) => {
                    tracing::warn!(code = e.code(), "builtin engine generation failed");
                    Err(ApiError::Engine {
                        engine_code: e.code(),
                    })
                }
            };
            drop(guard);
            drop(permit);
            // Nobody may be listening any more; the generation is over either way.
            let _ = tx.blocking_send(event);
        });

        match admitted_rx.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            // The worker died (panicked) before admitting the request.
            Err(_) => return Err(ApiError::Internal),
        }
        let stream: ChatStream =
            Box::pin(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
        Ok(stream)
    }
}
