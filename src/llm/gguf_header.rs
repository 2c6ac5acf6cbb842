//! Reading a GGUF header from a file nobody vouches for (a miner's committed model, a
//! download): candle's parser, kept from panicking, then a check of the tensor table
//! with checked arithmetic, so that no element or byte count can wrap and every tensor
//! lies inside the file before anything is allocated for it.
//!
//! Every path that opens a GGUF file (`generate`, the LLM service, `finetune eval`'s
//! parameter check, `models export`) goes through [`read_gguf_header`].

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use candle_core::quantized::gguf_file;

use super::LlmError;

/// Most dimensions a GGUF tensor may have (ggml's `GGML_MAX_DIMS`).
pub const MAX_TENSOR_RANK: usize = 4;

/// A GGUF header whose tensor table has been checked against the file it came from.
#[derive(Debug)]
pub struct GgufHeader {
    /// The parsed header (metadata and tensor table).
    pub content: gguf_file::Content,
    /// Total number of weights over all tensors.
    pub parameters: u64,
    /// Bytes of tensor data the table describes (padding excluded).
    pub tensor_bytes: u64,
    /// Length of the file in bytes.
    pub file_len: u64,
}

impl GgufHeader {
    /// `general.architecture`, or the empty string when absent.
    pub fn architecture(&self) -> String {
        self.content
            .metadata
            .get("general.architecture")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .unwrap_or_default()
    }
}

/// Opens the GGUF file at `path` and reads and checks its header ([`read_gguf_header`]).
/// The file must be a regular file (not a FIFO or a device, which could block forever).
pub fn open_gguf(path: &Path) -> Result<(File, GgufHeader), LlmError> {
    let open_err = |reason: String| LlmError::Open {
        path: path.display().to_string(),
        reason,
    };
    let mut file = crate::fsutil::open_regular(path).map_err(|e| open_err(e.to_string()))?;
    let header = read_gguf_header(&mut file)
        .map_err(|e| LlmError::BadModel(format!("{}: {}", path.display(), bad_reason(e))))?;
    Ok((file, header))
}

fn bad_reason(e: LlmError) -> String {
    match e {
        LlmError::BadModel(reason) => reason,
        other => other.to_string(),
    }
}

/// Reads the GGUF header at the reader's start and checks its tensor table:
///
/// - every tensor has 1 to [`MAX_TENSOR_RANK`] dimensions, none of them zero;
/// - its element count and byte count are computed with checked arithmetic (dims whose
///   product wraps past 2^64 are an error, not a small number), the element count is a
///   whole number of quantisation blocks and each row starts a block;
/// - its data (`tensor_data_offset + offset + bytes`, checked) ends inside the file: a
///   file cut short is reported as truncated.
///
/// Candle's parser already bounds string, array and count lengths by the bytes left in
/// the file, so what this allocates is proportional to the header's size; a panic inside
/// it (a `general.alignment` of 0 divides by zero) is caught and reported as a bad file.
pub fn read_gguf_header<R: Read + Seek>(reader: &mut R) -> Result<GgufHeader, LlmError> {
    let file_len = reader
        .seek(SeekFrom::End(0))
        .and_then(|len| reader.seek(SeekFrom::Start(0)).map(|_| len))
        .map_err(|e| LlmError::BadModel(format!("cannot read: {e}")))?;
    let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        gguf_file::Content::read(reader)
    }));
    let content = match parsed {
        Ok(Ok(content)) => content,
        Ok(Err(e)) => {
            // Without the backtrace candle attaches under RUST_BACKTRACE: resolving it
            // loads this binary's debug info (tens of MB) for a one-line reason.
            let reason = match e {
                candle_core::Error::WithBacktrace { inner, .. } => inner.to_string(),
                other => other.to_string(),
            };
            return Err(LlmError::BadModel(format!(
                "not a readable GGUF file: {reason}"
            )));
        }
        Err(_) => {
            return Err(LlmError::BadModel(
                "not a readable GGUF file: its header is malformed".into(),
            ));
        }
    };
    let mut parameters = 0u64;
    let mut tensor_bytes = 0u64;
    let mut needed = 0u64;
    for (name, info) in &content.tensor_infos {
        let layout = tensor_layout(info).map_err(|reason| {
            LlmError::BadModel(format!("tensor `{name}` {:?}: {reason}", info.shape.dims()))
        })?;
        let end = content
            .tensor_data_offset
            .checked_add(info.offset)
            .and_then(|start| start.checked_add(layout.bytes))
            .ok_or_else(|| {
                LlmError::BadModel(format!(
                    "tensor `{name}`: offset {} overflows the file",
                    info.offset
                ))
            })?;
        needed = needed.max(end);
        parameters = parameters.saturating_add(layout.elements);
        tensor_bytes = tensor_bytes.saturating_add(layout.bytes);
    }
    if needed > file_len {
        return Err(LlmError::BadModel(format!(
            "truncated GGUF: the file has {file_len} bytes but its tensors need {needed}; \
             delete it and fetch it again"
        )));
    }
    Ok(GgufHeader {
        content,
        parameters,
        tensor_bytes,
        file_len,
    })
}

/// Element and byte count of one tensor.
struct TensorLayout {
    elements: u64,
    bytes: u64,
}

fn tensor_layout(info: &gguf_file::TensorInfo) -> Result<TensorLayout, String> {
    let dims = info.shape.dims();
    if dims.is_empty() || dims.len() > MAX_TENSOR_RANK {
        return Err(format!(
            "has {} dimensions (1 to {MAX_TENSOR_RANK} allowed)",
            dims.len()
        ));
    }
    if dims.contains(&0) {
        return Err("has a zero dimension".into());
    }
    let elements = dims
        .iter()
        .try_fold(1u64, |n, &d| n.checked_mul(d as u64))
        .ok_or("has more elements than 2^64")?;
    let block = info.ggml_dtype.block_size() as u64;
    let row = *dims.last().expect("rank checked above") as u64;
    if !row.is_multiple_of(block) {
        return Err(format!(
            "rows of {row} elements are not whole {:?} blocks of {block}",
            info.ggml_dtype
        ));
    }
    let bytes = (elements / block)
        .checked_mul(info.ggml_dtype.type_size() as u64)
        .ok_or("needs more bytes than 2^64")?;
    Ok(TensorLayout { elements, bytes })
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use candle_core::quantized::GgmlDType;

    use super::*;

    /// A GGUF v3 file with one tensor of `dims` (GGUF order: innermost first) and
    /// `dtype`, at data offset 0, followed by `data` bytes of tensor data.
    fn one_tensor(dims: &[u64], dtype: u32, data: usize) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(b"GGUF");
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&1u64.to_le_bytes()); // tensors
        out.extend_from_slice(&0u64.to_le_bytes()); // metadata
        out.extend_from_slice(&1u64.to_le_bytes());
        out.push(b'w');
        out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
        for d in dims {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.extend_from_slice(&dtype.to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes()); // offset
        out.resize(out.len().div_ceil(32) * 32 + data, 0);
        out
    }

    fn read(bytes: Vec<u8>) -> Result<GgufHeader, LlmError> {
        read_gguf_header(&mut Cursor::new(bytes))
    }

    #[test]
    fn a_well_formed_table_is_counted() {
        // F32 (type 0): 8 x 4 = 32 elements, 128 bytes.
        let header = read(one_tensor(&[8, 4], 0, 128)).unwrap();
        assert_eq!((header.parameters, header.tensor_bytes), (32, 128));
    }

    #[test]
    fn dims_whose_product_wraps_are_rejected() {
        // 2^32 * 2^32 * 2^2 wraps to 0 in 64 bits; Q4_0 (type 2) counts would too.
        for dtype in [0, 2] {
            let err = read(one_tensor(&[1 << 32, 1 << 32, 4], dtype, 64)).unwrap_err();
            assert!(err.to_string().contains("2^64"), "{err}");
        }
    }

    #[test]
    fn a_tensor_past_the_end_of_the_file_is_truncation() {
        let err = read(one_tensor(&[1 << 20, 1 << 20], 0, 64)).unwrap_err();
        assert!(err.to_string().contains("truncated GGUF"), "{err}");
    }

    #[test]
    fn rows_must_be_whole_blocks() {
        let q4_0 = GgmlDType::Q4_0.block_size() as u64;
        let err = read(one_tensor(&[q4_0 + 1, 2], 2, 4096)).unwrap_err();
        assert!(err.to_string().contains("blocks"), "{err}");
    }

    #[test]
    fn zero_dims_and_alignment_zero_are_errors_not_panics() {
        let err = read(one_tensor(&[0, 4], 0, 0)).unwrap_err();
        assert!(err.to_string().contains("zero dimension"), "{err}");

        // general.alignment = 0 (u32): candle divides by it.
        let mut bytes = Vec::new();
        bytes.extend_from_slice(b"GGUF");
        bytes.extend_from_slice(&3u32.to_le_bytes());
        bytes.extend_from_slice(&0u64.to_le_bytes());
        bytes.extend_from_slice(&1u64.to_le_bytes());
        let key = b"general.alignment";
        bytes.extend_from_slice(&(key.len() as u64).to_le_bytes());
        bytes.extend_from_slice(key);
        bytes.extend_from_slice(&4u32.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        let err = read(bytes).unwrap_err();
        assert!(matches!(err, LlmError::BadModel(_)), "{err}");
    }
}
