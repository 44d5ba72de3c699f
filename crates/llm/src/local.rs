//! A local GGUF model run in-process with candle (quantized llama), for `APEX_LLM=local`:
//! no network, no account.
//!
//! Inference runs on a dedicated thread, off the async runtime, fed by a bounded queue.
//! A request that has to wait is told how many are ahead of it (`StreamEvent::Queued`);
//! a full queue answers `Busy`. Generation checks for cancellation before every token:
//! dropping the stream stops it within one token.
//!
//! The tokenizer is built from the GGUF metadata: byte-level BPE from the vocabulary and
//! merges, digits split one by one before the byte-level step (no prefix space), and the
//! control tokens (`<|im_start|>`, `<|im_end|>`, …) as special tokens. That reproduces
//! llama.cpp's token ids for SmolLM2; no BOS token is added. Prompts use ChatML.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};

use std::io::{Read, Seek, SeekFrom};

use candle_core::quantized::{ggml_file, gguf_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use candle_transformers::generation::LogitsProcessor;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, Tokenizer};

use crate::llama::{Model as ModelWeights, MAX_SEQ_LEN};
use crate::{channel, ChatMessage, ChatRequest, ChatStream, LlmError, LlmProvider, Role, StreamEvent, StreamSender, Usage};

/// Requests waiting for the model beyond the one it is generating.
pub const QUEUE: usize = 8;
/// Tokens among the last `REPEAT_LAST_N` of the conversation are made less likely by this
/// factor (llama.cpp's long-standing defaults): a small model decoding greedily otherwise
/// falls into repeating one sentence until its token limit. Deterministic still.
pub const REPEAT_PENALTY: f32 = 1.1;
pub const REPEAT_LAST_N: usize = 64;
/// The penalty only makes a loop less likely, and how likely depends on the CPU's
/// floating-point path. What the reader is promised holds on every machine: a sentence of
/// at least this many bytes is never stated twice in one answer. A token that would
/// complete such a repeat is refused and the next most likely one taken.
pub const GUARDED_SENTENCE_BYTES: usize = 30;
/// Candidates refused for one token before the answer ends there instead.
const MAX_REFUSED_CANDIDATES: usize = 16;

struct Job {
    request: ChatRequest,
    tx: StreamSender,
}

pub struct LocalModel {
    name: String,
    jobs: std_mpsc::SyncSender<Job>,
    /// Requests queued or being generated.
    pending: Arc<AtomicUsize>,
    tokens: Arc<AtomicU64>,
}

impl LocalModel {
    /// Loads the model and its tokenizer and starts the inference thread. Blocking: call
    /// it from a blocking context (it reads ~100 MB).
    pub fn load(path: &Path) -> Result<Self, LlmError> {
        Self::load_with(path, Weights::Fast)
    }

    /// [`LocalModel::load`], choosing how the weights are kept (for benchmarks).
    pub fn load_with(path: &Path, weights: Weights) -> Result<Self, LlmError> {
        let (model, tokenizer, stops) = load(path, weights)?;
        let name = path.file_stem().map_or_else(|| "local".into(), |s| s.to_string_lossy().into_owned());
        let (jobs, rx) = std_mpsc::sync_channel::<Job>(QUEUE);
        let pending = Arc::new(AtomicUsize::new(0));
        let tokens = Arc::new(AtomicU64::new(0));
        let worker = Worker { model, tokenizer, stops, pending: pending.clone(), tokens: tokens.clone() };
        std::thread::Builder::new()
            .name("apex-llm-local".into())
            .spawn(move || worker.run(rx))
            .map_err(|e| LlmError::Model(format!("cannot start the inference thread: {e}")))?;
        Ok(Self { name, jobs, pending, tokens })
    }

    /// Tokens generated since the model was loaded (for tests and metrics).
    pub fn tokens_generated(&self) -> u64 {
        self.tokens.load(Ordering::Relaxed)
    }
}

#[async_trait::async_trait]
impl LlmProvider for LocalModel {
    fn system(&self) -> &str {
        "local"
    }

    fn model(&self) -> &str {
        &self.name
    }

    async fn chat(&self, request: ChatRequest) -> Result<ChatStream, LlmError> {
        let (tx, stream) = channel(64);
        let ahead = self.pending.fetch_add(1, Ordering::AcqRel);
        if ahead > 0 {
            tx.send(Ok(StreamEvent::Queued { ahead })).await;
        }
        match self.jobs.try_send(Job { request, tx }) {
            Ok(()) => Ok(stream),
            Err(e) => {
                self.pending.fetch_sub(1, Ordering::AcqRel);
                Err(match e {
                    std_mpsc::TrySendError::Full(_) => LlmError::Busy,
                    std_mpsc::TrySendError::Disconnected(_) => LlmError::Model("the inference thread stopped".into()),
                })
            }
        }
    }
}

struct Worker {
    model: ModelWeights,
    tokenizer: Tokenizer,
    stops: Vec<u32>,
    pending: Arc<AtomicUsize>,
    tokens: Arc<AtomicU64>,
}

impl Worker {
    fn run(mut self, jobs: std_mpsc::Receiver<Job>) {
        for job in jobs {
            let last = if job.tx.is_cancelled() { None } else { self.generate(&job).transpose() };
            // Free before the last event goes out: whoever reads it and asks again is not queued.
            self.pending.fetch_sub(1, Ordering::AcqRel);
            if let Some(last) = last {
                job.tx.blocking_send(last);
            }
        }
    }

    /// Streams the answer; returns its final event (`None` when the reader left).
    fn generate(&mut self, job: &Job) -> Result<Option<StreamEvent>, LlmError> {
        let prompt = chatml(&job.request.messages);
        let ids = self.tokenizer.encode(prompt, false).map_err(model_error)?.get_ids().to_vec();
        if ids.len() >= MAX_SEQ_LEN {
            return Err(LlmError::Model(format!("the prompt has {} tokens; the model takes at most {MAX_SEQ_LEN}", ids.len())));
        }
        let max_new = (job.request.max_tokens as usize).min(MAX_SEQ_LEN - ids.len());
        let temperature = (job.request.temperature > 0.0).then_some(job.request.temperature as f64);
        let mut sampler = LogitsProcessor::new(0x5EED, temperature, None);
        self.model.clear_kv_cache();
        let device = Device::Cpu;
        let input = Tensor::new(ids.as_slice(), &device).and_then(|t| t.unsqueeze(0)).map_err(model_error)?;
        let mut logits = self.model.forward(&input, 0).map_err(model_error)?;
        let mut generated: Vec<u32> = Vec::new();
        let mut sent = 0usize;
        let mut finish = "length";
        let mut sentences = SentenceGuard::default();
        for i in 0..max_new {
            if job.tx.is_cancelled() {
                return Ok(None);
            }
            let skip = (ids.len() + generated.len()).saturating_sub(REPEAT_LAST_N);
            let recent: Vec<u32> = ids.iter().chain(&generated).skip(skip).copied().collect();
            let logits_now = logits.squeeze(0).map_err(model_error)?;
            let mut logits_now =
                candle_transformers::utils::apply_repeat_penalty(&logits_now, REPEAT_PENALTY, &recent).map_err(model_error)?;
            // The token to add and the answer with it, or `None`: the answer ends here.
            let mut refused = 0;
            let chosen = loop {
                let next = sampler.sample(&logits_now).map_err(model_error)?;
                if self.stops.contains(&next) || refused == MAX_REFUSED_CANDIDATES {
                    break None;
                }
                generated.push(next);
                // Decoding the whole answer keeps multi-byte characters split across tokens whole.
                let text = self.tokenizer.decode(&generated, true).map_err(model_error)?;
                generated.pop();
                if sentences.accepts(&text) {
                    break Some((next, text));
                }
                refused += 1;
                let mut scores = logits_now.to_vec1::<f32>().map_err(model_error)?;
                scores[next as usize] = f32::NEG_INFINITY;
                logits_now = Tensor::new(scores, &device).map_err(model_error)?;
            };
            self.tokens.fetch_add(1, Ordering::Relaxed);
            let Some((next, text)) = chosen else {
                finish = "stop";
                break;
            };
            generated.push(next);
            sentences.commit(&text);
            if text.len() > sent && text.is_char_boundary(sent) && !text.ends_with('\u{FFFD}') {
                if !job.tx.blocking_send(Ok(StreamEvent::Text(text[sent..].to_owned()))) {
                    return Ok(None);
                }
                sent = text.len();
            }
            if i + 1 < max_new {
                let input = Tensor::new(&[next], &device).and_then(|t| t.unsqueeze(0)).map_err(model_error)?;
                logits = self.model.forward(&input, ids.len() + i).map_err(model_error)?;
            }
        }
        let usage = Usage { input_tokens: ids.len() as u64, output_tokens: generated.len() as u64 };
        Ok(Some(StreamEvent::Done { usage, finish_reason: finish.into() }))
    }
}

/// The sentences an answer has completed, so that a token completing one of them again is
/// refused. Sentences end at `.`, `!`, `?` or a line break; they are compared trimmed, and
/// only those of at least [`GUARDED_SENTENCE_BYTES`] (short ones, like a list marker or a
/// heading, may well recur).
#[derive(Default)]
struct SentenceGuard {
    seen: std::collections::HashSet<String>,
    /// Where in the answer the sentence being written starts.
    open_at: usize,
}

impl SentenceGuard {
    fn is_end(c: char) -> bool {
        matches!(c, '.' | '!' | '?' | '\n')
    }

    /// The sentences `text` (the whole answer so far) completes beyond the committed ones,
    /// and where the next one starts.
    fn completed<'t>(&self, text: &'t str) -> (Vec<&'t str>, usize) {
        let Some(rest) = text.get(self.open_at..) else { return (Vec::new(), self.open_at) };
        let mut done = Vec::new();
        let mut start = 0;
        for (i, c) in rest.char_indices() {
            if Self::is_end(c) {
                done.push(rest[start..i].trim());
                start = i + c.len_utf8();
            }
        }
        (done.into_iter().filter(|s| s.len() >= GUARDED_SENTENCE_BYTES).collect(), self.open_at + start)
    }

    /// Whether `text` may be the answer so far: it repeats no guarded sentence.
    fn accepts(&self, text: &str) -> bool {
        let (done, _) = self.completed(text);
        done.iter().enumerate().all(|(i, s)| !self.seen.contains(*s) && !done[..i].contains(s))
    }

    fn commit(&mut self, text: &str) {
        let (done, open_at) = self.completed(text);
        self.seen.extend(done.into_iter().map(str::to_owned));
        self.open_at = open_at;
    }
}

fn model_error(e: impl std::fmt::Display) -> LlmError {
    LlmError::Model(e.to_string())
}

/// The ChatML prompt of a conversation, ready for the assistant's turn.
pub fn chatml(messages: &[ChatMessage]) -> String {
    let mut prompt = String::new();
    for m in messages {
        let role = match m.role {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        };
        prompt.push_str(&format!("<|im_start|>{role}\n{}<|im_end|>\n", m.content));
    }
    prompt.push_str("<|im_start|>assistant\n");
    prompt
}

/// How the weights of a GGUF are kept in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Weights {
    /// Weights of a type candle has no SIMD kernel for (Q4_1, Q5_0, Q5_1) are converted to
    /// Q8_0 at load, which has one (AVX2 on x86-64, chosen at run time). Measured on the
    /// reference Q4_1 model: several times faster, for about 60 MB more memory.
    Fast,
    /// Every tensor as the file stores it.
    AsStored,
}

fn load(path: &Path, weights: Weights) -> Result<(ModelWeights, Tokenizer, Vec<u32>), LlmError> {
    let open = |e: std::io::Error| LlmError::Model(format!("cannot open {}: {e}", path.display()));
    let mut file = std::fs::File::open(path).map_err(open)?;
    let content = gguf_file::Content::read(&mut file).map_err(|e| LlmError::Model(format!("{}: {e}", path.display())))?;
    let (tokenizer, stops) = tokenizer_from_gguf(&content)?;
    let model = match weights {
        Weights::AsStored => ModelWeights::from_gguf(content, &mut file, &Device::Cpu),
        Weights::Fast => {
            let (content, mut reader) = Requantizing::new(content, file);
            ModelWeights::from_gguf(content, &mut reader, &Device::Cpu)
        }
    }
    .map_err(model_error)?;
    Ok((model, tokenizer, stops))
}

/// The type a stored weight type is converted to at load, if any.
fn faster_type(dtype: GgmlDType) -> Option<GgmlDType> {
    matches!(dtype, GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1).then_some(GgmlDType::Q8_0)
}

/// A GGUF's tensor data as if the file stored the slow weight types as Q8_0: the model
/// loader reads it like the file, and each tensor is converted when the loader reaches it,
/// a few rows at a time, so that loading never holds more than one converted tensor.
struct Requantizing {
    file: std::fs::File,
    data_offset: u64,
    /// In the order of the new layout.
    slots: Vec<Slot>,
    len: u64,
    pos: u64,
    /// The converted bytes of one slot.
    current: Option<(usize, Vec<u8>)>,
}

struct Slot {
    start: u64,
    len: u64,
    stored: gguf_file::TensorInfo,
    convert_to: Option<GgmlDType>,
}

impl Requantizing {
    fn new(content: gguf_file::Content, file: std::fs::File) -> (gguf_file::Content, Self) {
        let gguf_file::Content { magic, metadata, tensor_infos, tensor_data_offset } = content;
        let mut stored: Vec<(String, gguf_file::TensorInfo)> = tensor_infos.into_iter().collect();
        stored.sort_by_key(|(_, info)| info.offset);
        let mut infos = std::collections::HashMap::new();
        let mut slots = Vec::with_capacity(stored.len());
        let mut start = 0u64;
        for (name, info) in stored {
            let elems = info.shape.elem_count();
            let convert_to =
                faster_type(info.ggml_dtype).filter(|t| info.shape.dims().last().is_some_and(|d| d % t.block_size() == 0));
            let dtype = convert_to.unwrap_or(info.ggml_dtype);
            let len = (elems / dtype.block_size() * dtype.type_size()) as u64;
            infos.insert(name, gguf_file::TensorInfo { ggml_dtype: dtype, shape: info.shape.clone(), offset: start });
            slots.push(Slot { start, len, stored: info, convert_to });
            start += len;
        }
        let content = gguf_file::Content { magic, metadata, tensor_infos: infos, tensor_data_offset: 0 };
        (content, Self { file, data_offset: tensor_data_offset, slots, len: start, pos: 0, current: None })
    }

    /// The bytes of a slot in its new type.
    fn convert(&mut self, index: usize) -> std::io::Result<Vec<u8>> {
        let slot = &self.slots[index];
        let info = &slot.stored;
        let stored_len = info.shape.elem_count() / info.ggml_dtype.block_size() * info.ggml_dtype.type_size();
        let mut raw = vec![0u8; stored_len];
        self.file.seek(SeekFrom::Start(self.data_offset + info.offset))?;
        self.file.read_exact(&mut raw)?;
        let Some(target) = slot.convert_to else { return Ok(raw) };
        let cols = *info.shape.dims().last().unwrap_or(&1);
        let row_len = cols / info.ggml_dtype.block_size() * info.ggml_dtype.type_size();
        let mut out = Vec::with_capacity(slot.len as usize);
        // 256 rows at a time: a few hundred KB of f32 instead of the whole tensor.
        for rows in raw.chunks(row_len * 256) {
            let n = rows.len() / row_len;
            let q = ggml_file::qtensor_from_ggml(info.ggml_dtype, rows, vec![n, cols], &Device::Cpu)
                .map_err(std::io::Error::other)?;
            let f = q.dequantize(&Device::Cpu).map_err(std::io::Error::other)?;
            let converted = QTensor::quantize(&f, target).map_err(std::io::Error::other)?;
            out.extend_from_slice(&converted.data().map_err(std::io::Error::other)?);
        }
        Ok(out)
    }
}

impl Read for Requantizing {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let index = self.slots.partition_point(|s| s.start + s.len <= self.pos);
        let Some(slot) = self.slots.get(index) else { return Ok(0) };
        let start = slot.start;
        if self.current.as_ref().is_none_or(|(i, _)| *i != index) {
            self.current = None;
            self.current = Some((index, self.convert(index)?));
        }
        let bytes = &self.current.as_ref().map_or(&[][..], |(_, b)| b.as_slice())[(self.pos - start) as usize..];
        let n = bytes.len().min(buf.len());
        buf[..n].copy_from_slice(&bytes[..n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for Requantizing {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = pos.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.pos)
    }
}

/// The tokenizer described by the GGUF metadata, and the ids that end an answer
/// (`<|im_end|>` and the end-of-sequence token).
pub fn tokenizer_from_gguf(content: &gguf_file::Content) -> Result<(Tokenizer, Vec<u32>), LlmError> {
    let md = |key: &str| content.metadata.get(key).ok_or_else(|| LlmError::Model(format!("the GGUF has no {key}")));
    let strings = |key: &str| -> Result<Vec<String>, LlmError> {
        md(key)?.to_vec().map_err(model_error)?.iter().map(|v| v.to_string().cloned().map_err(model_error)).collect()
    };
    let tokens = strings("tokenizer.ggml.tokens")?;
    let merges = strings("tokenizer.ggml.merges")?;
    let types: Vec<i32> = md("tokenizer.ggml.token_type")?
        .to_vec()
        .map_err(model_error)?
        .iter()
        .map(|v| v.to_i32().map_err(model_error))
        .collect::<Result<_, _>>()?;
    let mut vocab = Vocab::default();
    for (id, token) in tokens.iter().enumerate() {
        vocab.insert(token.clone(), id as u32);
    }
    let merges: Vec<(String, String)> =
        merges.iter().filter_map(|m| m.split_once(' ').map(|(a, b)| (a.to_owned(), b.to_owned()))).collect();
    let bpe = BPE::builder().vocab_and_merges(vocab, merges).build().map_err(model_error)?;
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(Sequence::new(vec![Digits::new(true).into(), ByteLevel::new(false, true, true).into()])));
    tokenizer.with_decoder(Some(ByteLevel::default()));
    // Control (3) and user-defined (4) tokens are matched whole, never split into bytes.
    let special: Vec<AddedToken> =
        tokens.iter().zip(&types).filter(|(_, t)| matches!(t, 3 | 4)).map(|(s, _)| AddedToken::from(s.clone(), true)).collect();
    tokenizer.add_special_tokens(special).map_err(model_error)?;
    let mut stops = Vec::new();
    if let Some(id) = tokens.iter().position(|t| t == "<|im_end|>") {
        stops.push(id as u32);
    }
    if let Some(eos) = content.metadata.get("tokenizer.ggml.eos_token_id").and_then(|v| v.to_u32().ok()) {
        stops.push(eos);
    }
    Ok((tokenizer, stops))
}

/// Where `apex models pull smollm2` puts the reference model under a data dir.
pub fn default_model_path(data_dir: &Path) -> PathBuf {
    data_dir.join("models").join("SmolLM2-135M-Instruct.Q4_1.gguf")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_sentence_is_never_completed_twice() {
        let mut guard = SentenceGuard::default();
        let first = "1. The funds are used to support AI development and research.";
        assert!(guard.accepts(first));
        guard.commit(first);
        let partial = format!("{first}\n2. The funds are used to support AI development and research");
        assert!(guard.accepts(&partial), "an open sentence is not judged yet");
        guard.commit(&partial);
        assert!(!guard.accepts(&format!("{partial}.")), "completing it again is refused");
        assert!(guard.accepts(&format!("{partial} and more.")), "a different sentence is fine");
        // Short sentences (list markers, headings) may recur.
        assert!(guard.accepts(&format!("{first}\n1.\n1.")));
        // Two copies completed by one token are caught too.
        let fresh = SentenceGuard::default();
        assert!(!fresh.accepts("A sentence that is long enough to count.A sentence that is long enough to count."));
    }
}
