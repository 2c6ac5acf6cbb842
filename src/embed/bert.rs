//! A BERT encoder over packed (unpadded) sentences.
//!
//! sentence-transformers, and candle's `BertModel`, pad every batch to its longest
//! sentence. On real text that is most of the work: the first sentences of Wikipedia
//! articles run from 6 to 107 tokens (mean 36), so a padded batch of 64 is two thirds
//! padding. Here the sentences' tokens are laid end to end: the linear layers, which hold
//! nearly all the FLOPs, see only real tokens, and on the CPU attention runs sentence by
//! sentence, which needs no mask. On a GPU, where each operation is a kernel launch,
//! attention pads the sentences and masks the padding instead. Weight names and
//! arithmetic follow Hugging Face's `BertModel`, so outputs match sentence-transformers.

use std::sync::{Mutex, PoisonError};

use candle_core::{D, Result, Tensor};
use candle_nn::{LayerNorm, Module, VarBuilder};
use candle_transformers::models::bert::{Config, HiddenAct};

use super::dense::{Dense, KernelsInUse, Then};

/// Most attention scores (sentences × heads × longest²) a GPU holds at once: about
/// 256 MiB of f32.
const PADDED_SCORES_BUDGET: usize = 64 << 20;

/// Sentences laid end to end: token ids, positions within their sentence, and lengths.
#[derive(Debug, Default)]
pub(crate) struct Packed {
    /// Token ids of every sentence, one after another.
    pub ids: Vec<u32>,
    /// Each token's position in its own sentence (0-based).
    pub positions: Vec<u32>,
    /// Token count of each sentence, in order.
    pub lengths: Vec<usize>,
}

impl Packed {
    /// Appends one sentence's token ids.
    pub fn push(&mut self, ids: &[u32]) {
        self.ids.extend_from_slice(ids);
        self.positions.extend(0..ids.len() as u32);
        self.lengths.push(ids.len());
    }
}

/// The BERT encoder: embeddings and transformer layers, no pooler.
pub(crate) struct PackedBert {
    embeddings: Embeddings,
    layers: Vec<Layer>,
    heads: usize,
    head_dim: usize,
    hidden: usize,
}

struct Embeddings {
    words: Tensor,
    positions: Tensor,
    /// Row 0 of the token-type table: every token here is of type 0.
    token_type: Tensor,
    norm: LayerNorm,
}

struct Layer {
    /// Query, key and value stacked into one projection.
    qkv: Dense,
    attention_out: Dense,
    attention_norm: LayerNorm,
    intermediate: Dense,
    activation: HiddenAct,
    output: Dense,
    output_norm: LayerNorm,
}

impl Layer {
    fn load(vb: VarBuilder, config: &Config, kernels: KernelsInUse) -> Result<Self> {
        let (h, inner) = (config.hidden_size, config.intermediate_size);
        let dense = |vb: VarBuilder, inputs: usize, outputs: usize| -> Result<Dense> {
            Dense::new(
                vb.get((outputs, inputs), "weight")?,
                vb.get(outputs, "bias")?,
                kernels,
            )
        };
        let attention = vb.pp("attention");
        let projection = |name: &str| -> Result<(Tensor, Tensor)> {
            let vb = attention.pp("self").pp(name);
            Ok((vb.get((h, h), "weight")?, vb.get(h, "bias")?))
        };
        let (qw, qb) = projection("query")?;
        let (kw, kb) = projection("key")?;
        let (vw, vb_) = projection("value")?;
        let qkv = Dense::new(
            Tensor::cat(&[qw, kw, vw], 0)?,
            Tensor::cat(&[qb, kb, vb_], 0)?,
            kernels,
        )?;
        let eps = config.layer_norm_eps;
        Ok(Self {
            qkv,
            attention_out: dense(attention.pp("output").pp("dense"), h, h)?,
            attention_norm: candle_nn::layer_norm(h, eps, attention.pp("output").pp("LayerNorm"))?,
            intermediate: dense(vb.pp("intermediate").pp("dense"), h, inner)?,
            activation: config.hidden_act,
            output: dense(vb.pp("output").pp("dense"), inner, h)?,
            output_norm: candle_nn::layer_norm(h, eps, vb.pp("output").pp("LayerNorm"))?,
        })
    }
}

impl PackedBert {
    /// Loads the encoder from a Hugging Face BERT checkpoint (with or without the
    /// `bert.` / `<model_type>.` prefix), its linear layers on `kernels`.
    pub fn load(vb: VarBuilder, config: &Config, kernels: KernelsInUse) -> Result<Self> {
        let vb = if vb.contains_tensor("embeddings.word_embeddings.weight") {
            vb
        } else if vb.contains_tensor("bert.embeddings.word_embeddings.weight") {
            vb.pp("bert")
        } else {
            vb.pp(config.model_type.as_deref().unwrap_or("bert"))
        };
        let h = config.hidden_size;
        if h == 0
            || config.num_attention_heads == 0
            || !h.is_multiple_of(config.num_attention_heads)
        {
            candle_core::bail!(
                "hidden_size {h} is not a positive multiple of num_attention_heads {}",
                config.num_attention_heads
            );
        }
        let head_dim = h / config.num_attention_heads;
        let e = vb.pp("embeddings");
        let embeddings = Embeddings {
            words: e.get((config.vocab_size, h), "word_embeddings.weight")?,
            positions: e.get(
                (config.max_position_embeddings, h),
                "position_embeddings.weight",
            )?,
            token_type: e
                .get((config.type_vocab_size, h), "token_type_embeddings.weight")?
                .get(0)?,
            norm: candle_nn::layer_norm(h, config.layer_norm_eps, e.pp("LayerNorm"))?,
        };
        let layers = (0..config.num_hidden_layers)
            .map(|i| Layer::load(vb.pp(format!("encoder.layer.{i}")), config, kernels))
            .collect::<Result<_>>()?;
        Ok(Self {
            embeddings,
            layers,
            heads: config.num_attention_heads,
            head_dim,
            hidden: h,
        })
    }

    /// Runs the encoder; returns the last hidden state of every packed token,
    /// `(total tokens, hidden)`.
    pub fn forward(&self, packed: &Packed) -> Result<Tensor> {
        let device = self.embeddings.words.device();
        let ids = Tensor::new(packed.ids.as_slice(), device)?;
        let positions = Tensor::new(packed.positions.as_slice(), device)?;
        let e = &self.embeddings;
        let x = e
            .words
            .index_select(&ids, 0)?
            .add(&e.positions.index_select(&positions, 0)?)?
            .broadcast_add(&e.token_type)?;
        let mut x = e.norm.forward(&x)?;
        for layer in &self.layers {
            let qkv = layer.qkv.forward(&x, Then::Nothing)?;
            let context = self.attention(&qkv, &packed.lengths)?;
            let attended = layer.attention_out.forward(&context, Then::Add(&x))?;
            x = layer.attention_norm.forward(&attended)?;
            let inner = match layer.activation {
                HiddenAct::Gelu => layer.intermediate.forward(&x, Then::Gelu)?,
                HiddenAct::GeluApproximate => {
                    layer.intermediate.forward(&x, Then::Nothing)?.gelu()?
                }
                HiddenAct::Relu => layer.intermediate.forward(&x, Then::Nothing)?.relu()?,
            };
            let out = layer.output.forward(&inner, Then::Add(&x))?;
            x = layer.output_norm.forward(&out)?;
        }
        Ok(x)
    }

    /// Multi-head self-attention of each sentence over its own tokens: `qkv` is
    /// `(total tokens, 3 * hidden)`, the result `(total tokens, hidden)`.
    fn attention(&self, qkv: &Tensor, lengths: &[usize]) -> Result<Tensor> {
        if qkv.device().is_cpu() {
            return self.attention_on_cpu(qkv, lengths);
        }
        self.attention_padded_in_groups(qkv, lengths, PADDED_SCORES_BUDGET)
    }

    /// [`PackedBert::attention_padded`] over groups of consecutive sentences whose
    /// padded scores fit in `budget` values (a sentence alone when one does not fit).
    fn attention_padded_in_groups(
        &self,
        qkv: &Tensor,
        lengths: &[usize],
        budget: usize,
    ) -> Result<Tensor> {
        let longest = lengths.iter().copied().max().unwrap_or(0).max(1);
        let per_group = (budget / (self.heads * longest * longest)).max(1);
        let (mut start, mut contexts) = (0, Vec::new());
        for group in lengths.chunks(per_group) {
            let tokens = group.iter().sum::<usize>();
            contexts.push(self.attention_padded(&qkv.narrow(0, start, tokens)?, group)?);
            start += tokens;
        }
        if contexts.is_empty() {
            return Tensor::zeros((0, self.hidden), qkv.dtype(), qkv.device());
        }
        Tensor::cat(&contexts, 0)
    }

    /// [`PackedBert::attention`] by tensor operations, for a GPU: the sentences padded to
    /// the longest, the padded keys masked out, so that a layer's attention is a few
    /// kernel launches however many sentences there are.
    fn attention_padded(&self, qkv: &Tensor, lengths: &[usize]) -> Result<Tensor> {
        let device = qkv.device();
        let (n, longest) = (lengths.len(), lengths.iter().copied().max().unwrap_or(0));
        if longest == 0 {
            return Tensor::zeros((0, self.hidden), qkv.dtype(), device);
        }
        // The packed row at each padded position (padding repeats a sentence's first row,
        // masked out of the keys and dropped from the output), the padded position of each
        // packed token, and the mask added to the scores.
        let (mut gather, mut scatter, mut mask) = (Vec::new(), Vec::new(), Vec::new());
        let mut start = 0;
        for (s, &len) in lengths.iter().enumerate() {
            let padding_row = if len > 0 { start } else { 0 };
            for t in 0..longest {
                gather.push(if t < len { start + t } else { padding_row } as u32);
                mask.push(if t < len { 0f32 } else { f32::NEG_INFINITY });
            }
            scatter.extend((0..len).map(|t| (s * longest + t) as u32));
            start += len;
        }
        let heads = qkv
            .index_select(&Tensor::new(gather, device)?, 0)?
            .reshape((n, longest, 3, self.heads, self.head_dim))?
            .permute((2, 0, 3, 1, 4))?
            .contiguous()?; // (q|k|v, sentence, head, token, head_dim)
        let (q, k, v) = (heads.get(0)?, heads.get(1)?, heads.get(2)?);
        let mask = Tensor::from_vec(mask, (n, 1, 1, longest), device)?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(&mask)?;
        let context = candle_nn::ops::softmax_last_dim(&scores)?
            .matmul(&v)? // (sentence, head, token, head_dim)
            .transpose(1, 2)?
            .reshape((n * longest, self.hidden))?;
        context.index_select(&Tensor::new(scatter, device)?, 0)
    }

    /// [`PackedBert::attention`] on the CPU, without tensor operations: a sentence per
    /// unit of the pool, each head's queries and values gathered into rows and its keys
    /// transposed for [`crate::attention::attend_each`].
    fn attention_on_cpu(&self, qkv: &Tensor, lengths: &[usize]) -> Result<Tensor> {
        let (hidden, d) = (self.hidden, self.head_dim);
        let (storage, layout) = qkv.storage_and_layout();
        let Some(qkv) = crate::cpu_tensor::f32_values(&storage, layout) else {
            candle_core::bail!("attention wants q/k/v as contiguous f32 on the CPU");
        };
        let tokens = lengths.iter().sum::<usize>();
        if qkv.len() != tokens * 3 * hidden {
            candle_core::bail!("{} q/k/v values for {tokens} tokens", qkv.len());
        }
        let mut context = vec![0f32; tokens * hidden];
        let mut sentences = Vec::with_capacity(lengths.len());
        let (mut rest, mut start) = (&mut context[..], 0);
        for &len in lengths {
            let out;
            (out, rest) = std::mem::take(&mut rest).split_at_mut(len * hidden);
            sentences.push(Mutex::new((start, out)));
            start += len;
        }
        crate::cpu_pool::parallel_for(sentences.len(), &|range| {
            let (mut queries, mut keys_t, mut values) = (Vec::new(), Vec::new(), Vec::new());
            let (mut scores, mut head_out) = (Vec::new(), Vec::new());
            for sentence in &sentences[range] {
                let mut sentence = sentence.lock().unwrap_or_else(PoisonError::into_inner);
                let (start, ref mut out) = *sentence;
                let rows = &qkv[start * 3 * hidden..start * 3 * hidden + out.len() * 3];
                let len = rows.len() / (3 * hidden);
                let padded = len.next_multiple_of(crate::attention::KEYS_T_MULTIPLE);
                for head in 0..self.heads {
                    let at = head * d;
                    queries.clear();
                    values.clear();
                    keys_t.clear();
                    keys_t.resize(d * padded, 0.0);
                    for (t, row) in rows.chunks_exact(3 * hidden).enumerate() {
                        queries.extend_from_slice(&row[at..at + d]);
                        values.extend_from_slice(&row[2 * hidden + at..2 * hidden + at + d]);
                        for (i, k) in row[hidden + at..hidden + at + d].iter().enumerate() {
                            keys_t[i * padded + t] = *k;
                        }
                    }
                    head_out.resize(len * d, 0.0);
                    crate::attention::attend_each(
                        d,
                        &queries,
                        &keys_t,
                        &values,
                        &mut scores,
                        &mut head_out,
                    );
                    for (out, context) in out.chunks_exact_mut(hidden).zip(head_out.chunks_exact(d))
                    {
                        out[at..at + d].copy_from_slice(context);
                    }
                }
            }
        });
        drop(sentences);
        Tensor::from_vec(context, (tokens, hidden), &candle_core::Device::Cpu)
    }
}

/// Mean (or first-token) pooling of each packed sentence, then L2 normalisation.
pub(crate) fn pool(hidden: &Tensor, lengths: &[usize], mean: bool) -> Result<Vec<Vec<f32>>> {
    let rows = hidden.to_vec2::<f32>()?;
    let width = hidden.dim(D::Minus1)?;
    let mut start = 0;
    let mut out = Vec::with_capacity(lengths.len());
    for &len in lengths {
        let tokens = &rows[start..start + len];
        start += len;
        let mut v = if mean {
            let mut sum = vec![0f32; width];
            for row in tokens {
                for (s, x) in sum.iter_mut().zip(row) {
                    *s += x;
                }
            }
            sum.iter_mut().for_each(|s| *s /= len as f32);
            sum
        } else {
            tokens[0].clone()
        };
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        v.iter_mut().for_each(|x| *x /= norm);
        out.push(v);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};

    use super::*;

    /// A one-layer BERT of zero weights with `heads` heads over `hidden` features.
    fn tiny_bert(hidden: usize, heads: usize) -> Result<PackedBert> {
        let config: Config = serde_json::from_value(serde_json::json!({
            "vocab_size": 10, "hidden_size": hidden, "num_hidden_layers": 1,
            "num_attention_heads": heads, "intermediate_size": 4, "hidden_act": "gelu",
            "hidden_dropout_prob": 0.0, "max_position_embeddings": 8,
            "type_vocab_size": 1, "initializer_range": 0.02, "layer_norm_eps": 1e-12,
            "pad_token_id": 0
        }))
        .unwrap();
        let vb = VarBuilder::zeros(DType::F32, &Device::Cpu);
        PackedBert::load(vb, &config, KernelsInUse::F32)
    }

    /// The GPU's padded and masked attention (run here on CPU tensors) gives each
    /// sentence what the CPU's per-sentence attention gives it, in one group or in
    /// many (down to one sentence per group), with one-token and equal-length sentences.
    #[test]
    fn padded_attention_matches_attention_sentence_by_sentence() {
        let bert = tiny_bert(32, 4).unwrap();
        let lengths = [5, 1, 17, 17, 3, 9];
        let tokens: usize = lengths.iter().sum();
        let qkv = Tensor::randn(0f32, 1.0, (tokens, 3 * 32), &Device::Cpu).unwrap();
        let expected = bert.attention_on_cpu(&qkv, &lengths).unwrap();
        for budget in [usize::MAX / 2, 4 * 17 * 17 * 2, 1] {
            let padded = bert
                .attention_padded_in_groups(&qkv, &lengths, budget)
                .unwrap();
            assert_eq!(padded.dims(), expected.dims());
            let diff = crate::cpu_tensor::max_abs_diff(&padded, &expected);
            assert!(diff < 1e-5, "budget {budget}: max diff {diff}");
        }
        let none = bert.attention_padded_in_groups(&qkv.narrow(0, 0, 0).unwrap(), &[], 1);
        assert_eq!(none.unwrap().dims(), &[0, 32]);
    }

    /// A config with heads of no values is refused at load (attention would divide by
    /// the head size), as are zero heads and a hidden size they do not divide.
    #[test]
    fn empty_or_uneven_heads_are_load_errors() {
        for (hidden, heads) in [(0, 1), (8, 0), (8, 3)] {
            let err = tiny_bert(hidden, heads).err();
            let err = err.expect("loaded").to_string();
            assert!(
                err.contains("num_attention_heads"),
                "{hidden}/{heads}: {err}"
            );
        }
    }
}
