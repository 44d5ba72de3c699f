//! The llama forward pass of the local model: candle-transformers' `quantized_llama`
//! (Apache-2.0/MIT, the Hugging Face candle authors), cut down to dense llama models and
//! changed in one place: a projection over many rows (the prompt, evaluated in one pass)
//! is computed in f32 with the weight dequantized for the call, through candle's f32
//! matrix multiplication (`gemm`, which picks AVX2/FMA kernels at run time), instead of
//! candle's quantized kernel, which computes one dot product per row and column and does
//! not reuse what it loads. Measured on the reference model with a 290-token prompt: first
//! token about 5× sooner. Generation (one row per step) stays on the quantized weights,
//! where reading less memory is what counts.
use std::sync::Arc;

use candle_core::quantized::{ggml_file, gguf_file, QMatMul, QTensor};
use candle_core::{DType, Device, IndexOp, Module, Result, Tensor, D};

pub const MAX_SEQ_LEN: usize = 4096;

/// From this many rows on, a projection runs in f32 (see the module docs).
const F32_ROWS: usize = 32;

struct Linear {
    weight: Arc<QTensor>,
    quantized: QMatMul,
}

impl Linear {
    fn new(weight: QTensor) -> Result<Self> {
        Self::shared(Arc::new(weight))
    }

    fn shared(weight: Arc<QTensor>) -> Result<Self> {
        Ok(Self { quantized: QMatMul::from_arc(weight.clone())?, weight })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let rows = xs.elem_count() / xs.dim(D::Minus1)?;
        if rows < F32_ROWS || !matches!(self.quantized, QMatMul::QTensor(_)) {
            return self.quantized.forward(xs);
        }
        let w = self.weight.dequantize(xs.device())?;
        let w = match *xs.dims() {
            [b1, b2, _, _] => w.broadcast_left((b1, b2))?.t()?,
            [b, _, _] => w.broadcast_left(b)?.t()?,
            _ => w.t()?,
        };
        xs.matmul(&w)
    }
}

struct RmsNorm {
    weight: Tensor,
    eps: f32,
}

impl RmsNorm {
    fn new(weight: QTensor, eps: f32) -> Result<Self> {
        Ok(Self { weight: weight.dequantize(&weight.device())?, eps })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        candle_nn::ops::rms_norm(x, &self.weight, self.eps)
    }
}

struct Layer {
    wq: Linear,
    wk: Linear,
    wv: Linear,
    wo: Linear,
    attention_norm: RmsNorm,
    w1: Linear,
    w2: Linear,
    w3: Linear,
    ffn_norm: RmsNorm,
    n_head: usize,
    n_kv_head: usize,
    head_dim: usize,
    rope_is_neox: bool,
    cos: Tensor,
    sin: Tensor,
    neg_inf: Tensor,
    kv_cache: candle_nn::kv_cache::KvCache,
}

impl Layer {
    fn rotary(&self, x: &Tensor, index_pos: usize) -> Result<Tensor> {
        let (_b, _h, seq_len, _d) = x.dims4()?;
        let cos = self.cos.narrow(0, index_pos, seq_len)?;
        let sin = self.sin.narrow(0, index_pos, seq_len)?;
        let x = x.contiguous()?;
        if self.rope_is_neox {
            candle_nn::rotary_emb::rope(&x, &cos, &sin)
        } else {
            candle_nn::rotary_emb::rope_i(&x, &cos, &sin)
        }
    }

    fn attention(&mut self, x: &Tensor, mask: Option<&Tensor>, index_pos: usize) -> Result<Tensor> {
        let (b, seq_len, n_embd) = x.dims3()?;
        let q = self.wq.forward(x)?.reshape((b, seq_len, self.n_head, self.head_dim))?.transpose(1, 2)?;
        let k = self.wk.forward(x)?.reshape((b, seq_len, self.n_kv_head, self.head_dim))?.transpose(1, 2)?;
        let v = self.wv.forward(x)?.reshape((b, seq_len, self.n_kv_head, self.head_dim))?.transpose(1, 2)?.contiguous()?;
        let q = self.rotary(&q, index_pos)?;
        let k = self.rotary(&k, index_pos)?;
        if index_pos == 0 {
            self.kv_cache.reset();
        }
        // Appended in place (grown 512 positions at a time), not copied whole every step.
        let (k, v) = self.kv_cache.append(&k.contiguous()?, &v)?;
        let n_rep = self.n_head / self.n_kv_head;
        let scale = (self.head_dim as f64).sqrt();
        let y = if seq_len == 1 {
            // One position: the query heads that share a key/value head are rows of one
            // matrix, instead of the keys and values being copied once per query head.
            let q = q.reshape((b, self.n_kv_head, n_rep, self.head_dim))?;
            let att = (q.matmul(&k.t()?)? / scale)?;
            let att = candle_nn::ops::softmax_last_dim(&att)?;
            att.matmul(&v)?.reshape((b, self.n_head, 1, self.head_dim))?
        } else {
            let k = candle_transformers::utils::repeat_kv(k.contiguous()?, n_rep)?;
            let v = candle_transformers::utils::repeat_kv(v.contiguous()?, n_rep)?;
            let att = (q.matmul(&k.t()?)? / scale)?;
            let att = match mask {
                None => att,
                Some(mask) => mask.broadcast_as(att.shape())?.where_cond(&self.neg_inf.broadcast_as(att.shape())?, &att)?,
            };
            let att = candle_nn::ops::softmax_last_dim(&att)?;
            att.matmul(&v)?
        };
        let y = y.transpose(1, 2)?.reshape((b, seq_len, n_embd))?;
        self.wo.forward(&y)
    }

    fn mlp(&self, x: &Tensor) -> Result<Tensor> {
        let gate = self.w1.forward(x)?;
        let up = self.w3.forward(x)?;
        self.w2.forward(&(candle_nn::ops::silu(&gate)? * up)?)
    }
}

/// The token embeddings, kept quantized (the output projection shares them in models with
/// tied embeddings); only the rows looked up are dequantized. An f32 copy of the table
/// would be 113 MB for the reference model.
struct Embeddings {
    table: Arc<QTensor>,
    hidden: usize,
}

impl Embeddings {
    fn forward(&self, ids: &[u32]) -> Result<Tensor> {
        let dtype = self.table.dtype();
        let row = self.hidden / dtype.block_size() * dtype.type_size();
        let data = self.table.data()?;
        let mut rows = Vec::with_capacity(ids.len() * row);
        for &id in ids {
            let start = id as usize * row;
            match data.get(start..start + row) {
                Some(bytes) => rows.extend_from_slice(bytes),
                None => candle_core::bail!("token id {id} is outside the vocabulary"),
            }
        }
        ggml_file::qtensor_from_ggml(dtype, &rows, vec![ids.len(), self.hidden], &Device::Cpu)?.dequantize(&Device::Cpu)
    }
}

pub struct Model {
    tok_embeddings: Embeddings,
    layers: Vec<Layer>,
    norm: RmsNorm,
    output: Linear,
}

impl Model {
    pub fn from_gguf<R: std::io::Seek + std::io::Read>(ct: gguf_file::Content, reader: &mut R, device: &Device) -> Result<Self> {
        let md = |s: &str| match ct.metadata.get(s) {
            None => candle_core::bail!("cannot find {s} in metadata"),
            Some(v) => Ok(v),
        };
        if md("llama.expert_count").and_then(|v| v.to_u32()).unwrap_or(0) > 1 {
            candle_core::bail!("mixture-of-experts models are not supported");
        }
        let head_count = md("llama.attention.head_count")?.to_u32()? as usize;
        let head_count_kv = md("llama.attention.head_count_kv")?.to_u32()? as usize;
        let block_count = md("llama.block_count")?.to_u32()? as usize;
        let embedding_length = md("llama.embedding_length")?.to_u32()? as usize;
        let rope_dim = md("llama.rope.dimension_count")?.to_u32()? as usize;
        let eps = md("llama.attention.layer_norm_rms_epsilon")?.to_f32()?;
        let rope_freq_base = md("llama.rope.freq_base").and_then(|m| m.to_f32()).unwrap_or(10000f32);
        let arch = ct.metadata.get("general.architecture").and_then(|v| v.to_string().ok()).cloned().unwrap_or_default();
        // llama.cpp's rope type by architecture; llama itself is interleaved.
        let rope_is_neox = matches!(
            arch.as_str(),
            "qwen" | "qwen2" | "qwen3" | "falcon" | "phi2" | "phi3" | "stablelm" | "starcoder2" | "olmo2"
        );
        let (cos, sin) = rope_tables(rope_dim, rope_freq_base, device)?;
        let neg_inf = Tensor::new(f32::NEG_INFINITY, device)?;

        if !device.is_cpu() {
            candle_core::bail!("the local model runs on the CPU");
        }
        let table = Arc::new(ct.tensor(reader, "token_embd.weight", device)?);
        let tok_embeddings = Embeddings { table: table.clone(), hidden: embedding_length };
        let norm = RmsNorm::new(ct.tensor(reader, "output_norm.weight", device)?, eps)?;
        let output = match ct.tensor(reader, "output.weight", device) {
            Ok(tensor) => Arc::new(tensor),
            Err(_) => table,
        };
        let mut layers = Vec::with_capacity(block_count);
        for i in 0..block_count {
            let mut t = |name: &str| ct.tensor(reader, &format!("blk.{i}.{name}.weight"), device);
            layers.push(Layer {
                wq: Linear::new(t("attn_q")?)?,
                wk: Linear::new(t("attn_k")?)?,
                wv: Linear::new(t("attn_v")?)?,
                wo: Linear::new(t("attn_output")?)?,
                w1: Linear::new(t("ffn_gate")?)?,
                w2: Linear::new(t("ffn_down")?)?,
                w3: Linear::new(t("ffn_up")?)?,
                attention_norm: RmsNorm::new(t("attn_norm")?, eps)?,
                ffn_norm: RmsNorm::new(t("ffn_norm")?, eps)?,
                n_head: head_count,
                n_kv_head: head_count_kv,
                head_dim: embedding_length / head_count,
                rope_is_neox,
                cos: cos.clone(),
                sin: sin.clone(),
                neg_inf: neg_inf.clone(),
                kv_cache: candle_nn::kv_cache::KvCache::new(2, 512),
            });
        }
        Ok(Self { tok_embeddings, layers, norm, output: Linear::shared(output)? })
    }

    pub fn clear_kv_cache(&mut self) {
        for layer in &mut self.layers {
            layer.kv_cache.reset();
        }
    }

    /// The logits of the last position of `x` (batch, seq_len), after the `index_pos`
    /// positions already in the cache.
    pub fn forward(&mut self, x: &Tensor, index_pos: usize) -> Result<Tensor> {
        let (b, seq_len) = x.dims2()?;
        let mask = if seq_len == 1 {
            None
        } else {
            Some(candle_transformers::utils::build_causal_mask(seq_len, index_pos, x.device())?)
        };
        let ids = x.flatten_all()?.to_vec1::<u32>()?;
        let mut h = self.tok_embeddings.forward(&ids)?.reshape((b, seq_len, self.tok_embeddings.hidden))?;
        for layer in &mut self.layers {
            let residual = h.clone();
            let x = layer.attention_norm.forward(&h)?;
            let x = (layer.attention(&x, mask.as_ref(), index_pos)? + residual)?;
            let residual = &x;
            let y = layer.mlp(&layer.ffn_norm.forward(&x)?)?;
            h = (y + residual)?;
        }
        let x = self.norm.forward(&h)?;
        let x = x.i((.., seq_len - 1, ..))?;
        self.output.forward(&x)
    }
}

fn rope_tables(head_dim: usize, freq_base: f32, device: &Device) -> Result<(Tensor, Tensor)> {
    let theta: Vec<_> = (0..head_dim).step_by(2).map(|i| 1f32 / freq_base.powf(i as f32 / head_dim as f32)).collect();
    let theta = Tensor::new(theta.as_slice(), device)?;
    let idx_theta = Tensor::arange(0, MAX_SEQ_LEN as u32, device)?
        .to_dtype(DType::F32)?
        .reshape((MAX_SEQ_LEN, 1))?
        .matmul(&theta.reshape((1, theta.elem_count()))?)?;
    Ok((idx_theta.cos()?, idx_theta.sin()?))
}
