//! A bounded GGUF (v2/v3) reader.
//!
//! candle's `gguf_file::Content::read` allocates whatever a string or array length in the file
//! says (`vec![0u8; len]`), so a 40-byte hostile file can request exabytes. This reader works on
//! the whole file as a byte slice and checks every length against the bytes that remain before
//! allocating, every tensor's type, shape, offset and size against the file, and never panics.

use std::collections::HashMap;

use crate::EngineError;
use crate::gguf_tokenizer::VocabSpec;

/// `GGUF` read as a little-endian u32.
pub(crate) const MAGIC: [u8; 4] = *b"GGUF";
/// Alignment of the tensor data section when `general.alignment` is absent.
const DEFAULT_ALIGNMENT: u64 = 32;
/// Largest accepted `general.alignment` (it must also be a power of two).
const MAX_ALIGNMENT: u64 = 1 << 16;
/// Deepest accepted array nesting (GGUF allows arrays of arrays; real files use none).
const MAX_ARRAY_DEPTH: u32 = 2;
/// GGML tensors have at most four dimensions.
const MAX_DIMS: u32 = 4;

/// A metadata value.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
}

impl Value {
    /// Any integer value that fits in a u64 (GGUF writers disagree on integer widths).
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Any integer value that fits in an i64.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::U64(v) => i64::try_from(v).ok(),
            Value::I8(v) => Some(v.into()),
            Value::I16(v) => Some(v.into()),
            Value::I32(v) => Some(v.into()),
            Value::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }

    /// A float or integer value as f32.
    pub fn as_f32(&self) -> Option<f32> {
        match *self {
            Value::F32(v) => Some(v),
            Value::F64(v) => Some(v as f32),
            _ => self.as_i64().map(|v| v as f32),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(v) => Some(v),
            _ => None,
        }
    }
}

/// GGML tensor data types this engine knows the layout of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
}

impl GgmlType {
    fn from_id(id: u32) -> Option<GgmlType> {
        Some(match id {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            6 => GgmlType::Q5_0,
            7 => GgmlType::Q5_1,
            8 => GgmlType::Q8_0,
            10 => GgmlType::Q2K,
            11 => GgmlType::Q3K,
            12 => GgmlType::Q4K,
            13 => GgmlType::Q5K,
            14 => GgmlType::Q6K,
            _ => return None,
        })
    }

    /// Elements per block.
    pub fn block_size(self) -> u64 {
        match self {
            GgmlType::F32 | GgmlType::F16 => 1,
            GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q8_0 => {
                32
            }
            GgmlType::Q2K | GgmlType::Q3K | GgmlType::Q4K | GgmlType::Q5K | GgmlType::Q6K => 256,
        }
    }

    /// Bytes per block (ggml's `type_size`).
    pub fn type_size(self) -> u64 {
        match self {
            GgmlType::F32 => 4,
            GgmlType::F16 => 2,
            GgmlType::Q4_0 => 18,
            GgmlType::Q4_1 => 20,
            GgmlType::Q5_0 => 22,
            GgmlType::Q5_1 => 24,
            GgmlType::Q8_0 => 34,
            GgmlType::Q2K => 84,
            GgmlType::Q3K => 110,
            GgmlType::Q4K => 144,
            GgmlType::Q5K => 176,
            GgmlType::Q6K => 210,
        }
    }

    /// Human-readable name (used in error messages).
    pub fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "F32",
            GgmlType::F16 => "F16",
            GgmlType::Q4_0 => "Q4_0",
            GgmlType::Q4_1 => "Q4_1",
            GgmlType::Q5_0 => "Q5_0",
            GgmlType::Q5_1 => "Q5_1",
            GgmlType::Q8_0 => "Q8_0",
            GgmlType::Q2K => "Q2_K",
            GgmlType::Q3K => "Q3_K",
            GgmlType::Q4K => "Q4_K",
            GgmlType::Q5K => "Q5_K",
            GgmlType::Q6K => "Q6_K",
        }
    }
}

/// One tensor's header entry, validated against the file.
#[derive(Clone, Debug)]
pub(crate) struct TensorInfo {
    /// GGUF order: `dims[0]` is the innermost (contiguous) dimension.
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Absolute byte offset of the data in the file.
    pub start: usize,
    /// Byte length of the data.
    pub len: usize,
}

/// A parsed GGUF header: metadata and tensor directory. Tensor data is not copied.
#[derive(Debug)]
pub(crate) struct Gguf {
    pub version: u32,
    pub metadata: HashMap<String, Value>,
    pub tensors: HashMap<String, TensorInfo>,
    /// Absolute offset of the tensor data section.
    #[cfg_attr(not(test), allow(dead_code))]
    pub data_offset: usize,
}

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
    /// Metadata array elements read so far: an element takes ~32 bytes in memory but may be
    /// 1 byte in the file, so the file size alone does not bound memory.
    elements: usize,
}

/// Most metadata array elements in one file (a 152k-token vocabulary with its merges, scores
/// and types is ~600k).
const MAX_METADATA_ELEMENTS: usize = 16 << 20;

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    fn truncated(&self, need: usize) -> EngineError {
        EngineError::GgufTruncated {
            expected: (self.pos as u64).saturating_add(need as u64),
            actual: self.data.len() as u64,
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], EngineError> {
        let out = self
            .pos
            .checked_add(n)
            .and_then(|end| self.data.get(self.pos..end))
            .ok_or_else(|| self.truncated(n))?;
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], EngineError> {
        let b = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, EngineError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, EngineError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A u64 count that must describe at least `min_item_bytes` bytes per item still in the file:
    /// checking before allocating is what bounds memory use on hostile files.
    fn count(&mut self, min_item_bytes: usize, what: &str) -> Result<usize, EngineError> {
        let n = self.u64()?;
        let need = n.saturating_mul(min_item_bytes as u64);
        if need > self.remaining() as u64 {
            return Err(EngineError::GgufTruncated {
                expected: (self.pos as u64).saturating_add(need),
                actual: self.data.len() as u64,
            });
        }
        usize::try_from(n)
            .map_err(|_| EngineError::GgufMalformed(format!("{what} count too large")))
    }

    fn string(&mut self) -> Result<String, EngineError> {
        let len = self.count(1, "string length")?;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| {
            EngineError::GgufMalformed(format!("invalid UTF-8 at offset {}", self.pos))
        })
    }

    fn value(&mut self, ty: u32, depth: u32) -> Result<Value, EngineError> {
        Ok(match ty {
            0 => Value::U8(u8::from_le_bytes(self.array()?)),
            1 => Value::I8(i8::from_le_bytes(self.array()?)),
            2 => Value::U16(u16::from_le_bytes(self.array()?)),
            3 => Value::I16(i16::from_le_bytes(self.array()?)),
            4 => Value::U32(self.u32()?),
            5 => Value::I32(i32::from_le_bytes(self.array()?)),
            6 => Value::F32(f32::from_le_bytes(self.array()?)),
            7 => match self.array::<1>()?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(EngineError::GgufMalformed(format!("bool value {b}"))),
            },
            8 => Value::String(self.string()?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(EngineError::GgufMalformed(
                        "arrays nested too deeply".into(),
                    ));
                }
                let elem_ty = self.u32()?;
                let min = min_value_size(elem_ty).ok_or_else(|| {
                    EngineError::GgufMalformed(format!("unknown array element type {elem_ty}"))
                })?;
                let n = self.count(min, "array")?;
                self.elements = self.elements.saturating_add(n);
                if self.elements > MAX_METADATA_ELEMENTS {
                    return Err(EngineError::GgufMalformed(
                        "too many metadata array elements".into(),
                    ));
                }
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(elem_ty, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64()?),
            11 => Value::I64(i64::from_le_bytes(self.array()?)),
            12 => Value::F64(f64::from_le_bytes(self.array()?)),
            t => {
                return Err(EngineError::GgufMalformed(format!(
                    "unknown value type {t}"
                )));
            }
        })
    }
}

/// Smallest encoding of a value of type `ty` (strings and arrays: their 8-byte length).
fn min_value_size(ty: u32) -> Option<usize> {
    Some(match ty {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        8..=12 => 8,
        _ => return None,
    })
}

/// Parses and validates the header of a GGUF file held entirely in `data`.
pub(crate) fn parse(data: &[u8]) -> Result<Gguf, EngineError> {
    let mut c = Cursor {
        data,
        pos: 0,
        elements: 0,
    };
    if c.array::<4>()? != MAGIC {
        return Err(EngineError::GgufMalformed(
            "bad magic (not a GGUF file)".into(),
        ));
    }
    let version = c.u32()?;
    if !(version == 2 || version == 3) {
        return Err(EngineError::GgufUnsupportedVersion(version));
    }
    // Minimal encodings: a tensor info is >= 8+4+8+4+8 bytes, a KV pair >= 8+4+1.
    let n_tensors = c.count(32, "tensor")?;
    let n_kv = c.count(13, "metadata")?;

    let mut metadata = HashMap::with_capacity(n_kv);
    for _ in 0..n_kv {
        let key = c.string()?;
        let ty = c.u32()?;
        let value = c.value(ty, 0)?;
        if metadata.insert(key, value).is_some() {
            return Err(EngineError::GgufMalformed("duplicate metadata key".into()));
        }
    }

    let alignment = match metadata.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(v) => match v.as_u64() {
            Some(a) if a.is_power_of_two() && a <= MAX_ALIGNMENT => a,
            _ => {
                return Err(EngineError::GgufMalformed(
                    "general.alignment must be a power of two <= 65536".into(),
                ));
            }
        },
    };

    struct Raw {
        name: String,
        dims: Vec<u64>,
        ty: GgmlType,
        offset: u64,
    }
    let mut raws = Vec::with_capacity(n_tensors);
    for _ in 0..n_tensors {
        let name = c.string()?;
        let n_dims = c.u32()?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(EngineError::GgufMalformed(format!(
                "tensor {name} has {n_dims} dimensions"
            )));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(c.u64()?);
        }
        let type_id = c.u32()?;
        let ty = GgmlType::from_id(type_id).ok_or_else(|| EngineError::UnsupportedTensorType {
            tensor: name.clone(),
            ggml_type: type_name(type_id),
        })?;
        let offset = c.u64()?;
        raws.push(Raw {
            name,
            dims,
            ty,
            offset,
        });
    }

    let data_offset = (c.pos as u64).next_multiple_of(alignment);
    let file_len = data.len() as u64;
    let mut tensors = HashMap::with_capacity(raws.len());
    for Raw {
        name,
        dims,
        ty,
        offset,
    } in raws
    {
        let malformed = |what: &str| EngineError::GgufMalformed(format!("tensor {name}: {what}"));
        let elems = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&e| e > 0)
            .ok_or_else(|| malformed("zero or overflowing element count"))?;
        // Blocks never straddle rows: the innermost dimension is a whole number of blocks.
        if dims[0] % ty.block_size() != 0 {
            return Err(malformed("row length is not a multiple of the block size"));
        }
        if offset % alignment != 0 {
            return Err(malformed("misaligned data offset"));
        }
        let len = (elems / ty.block_size())
            .checked_mul(ty.type_size())
            .ok_or_else(|| malformed("size overflows"))?;
        let start = data_offset
            .checked_add(offset)
            .ok_or_else(|| malformed("offset overflows"))?;
        let end = start
            .checked_add(len)
            .ok_or_else(|| malformed("offset overflows"))?;
        if end > file_len {
            return Err(EngineError::GgufTruncated {
                expected: end,
                actual: file_len,
            });
        }
        // end <= file_len, which is a usize, so these conversions cannot fail.
        let (Ok(start), Ok(len)) = (usize::try_from(start), usize::try_from(len)) else {
            return Err(malformed("offset does not fit in memory"));
        };
        let info = TensorInfo {
            dims,
            ty,
            start,
            len,
        };
        if tensors.insert(name.clone(), info).is_some() {
            return Err(EngineError::GgufMalformed(format!(
                "duplicate tensor name {name}"
            )));
        }
    }
    let data_offset = usize::try_from(data_offset)
        .ok()
        .filter(|&d| d <= data.len() || tensors.is_empty())
        .ok_or(EngineError::GgufTruncated {
            expected: data_offset,
            actual: file_len,
        })?;
    Ok(Gguf {
        version,
        metadata,
        tensors,
        data_offset,
    })
}

/// Name of a GGML type id for error messages (including the types we cannot compute with).
fn type_name(id: u32) -> String {
    match id {
        9 => "Q8_1".into(),
        15 => "Q8_K".into(),
        30 => "BF16".into(),
        16..=23 => format!("IQ/{id}"),
        _ => format!("type id {id}"),
    }
}

impl Gguf {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    fn invalid(key: &str, what: &str) -> EngineError {
        EngineError::GgufMetadataInvalid(format!("{key}: {what}"))
    }

    /// A required positive integer no larger than `max`.
    pub fn req_usize(&self, key: &str, max: usize) -> Result<usize, EngineError> {
        let v = self.get(key).ok_or_else(|| Self::invalid(key, "missing"))?;
        match v.as_u64() {
            Some(n) if n >= 1 && n <= max as u64 => Ok(n as usize),
            Some(_) => Err(Self::invalid(key, &format!("outside 1..={max}"))),
            None => Err(Self::invalid(key, "not an integer")),
        }
    }

    /// An optional positive integer no larger than `max`.
    pub fn opt_usize(&self, key: &str, max: usize) -> Result<Option<usize>, EngineError> {
        match self.get(key) {
            None => Ok(None),
            Some(_) => self.req_usize(key, max).map(Some),
        }
    }

    /// An optional finite positive float.
    pub fn opt_f32(&self, key: &str) -> Result<Option<f32>, EngineError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.as_f32() {
                Some(f) if f.is_finite() && f > 0.0 => Ok(Some(f)),
                _ => Err(Self::invalid(key, "not a finite positive number")),
            },
        }
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<&str>, EngineError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| Self::invalid(key, "not a string")),
        }
    }

    fn opt_u32(&self, key: &str) -> Result<Option<u32>, EngineError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| Self::invalid(key, "not a u32")),
        }
    }

    fn opt_bool(&self, key: &str) -> Result<Option<bool>, EngineError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| Self::invalid(key, "not a bool")),
        }
    }

    fn opt_array<T>(
        &self,
        key: &str,
        f: impl Fn(&Value) -> Option<T>,
    ) -> Result<Option<Vec<T>>, EngineError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => {
                let items = v
                    .as_array()
                    .ok_or_else(|| Self::invalid(key, "not an array"))?;
                items
                    .iter()
                    .map(|x| f(x).ok_or_else(|| Self::invalid(key, "element of the wrong type")))
                    .collect::<Result<Vec<T>, _>>()
                    .map(Some)
            }
        }
    }
}

/// Extracts the tokenizer description from GGUF metadata (types checked, contents not).
pub(crate) fn vocab_spec_from_metadata(g: &Gguf) -> Result<VocabSpec, EngineError> {
    let model = g
        .opt_str("tokenizer.ggml.model")?
        .ok_or_else(|| Gguf::invalid("tokenizer.ggml.model", "missing"))?
        .to_owned();
    let tokens = g
        .opt_array("tokenizer.ggml.tokens", |v| v.as_str().map(str::to_owned))?
        .ok_or_else(|| Gguf::invalid("tokenizer.ggml.tokens", "missing"))?;
    let scores = g.opt_array("tokenizer.ggml.scores", Value::as_f32)?;
    let token_types = g.opt_array("tokenizer.ggml.token_type", |v| {
        v.as_i64().and_then(|n| i32::try_from(n).ok())
    })?;
    let merges = g.opt_array("tokenizer.ggml.merges", |v| v.as_str().map(str::to_owned))?;
    let per_token = |len: Option<usize>, key: &str| match len {
        Some(n) if n != tokens.len() => Err(Gguf::invalid(key, "length differs from tokens")),
        _ => Ok(()),
    };
    per_token(scores.as_ref().map(Vec::len), "tokenizer.ggml.scores")?;
    per_token(
        token_types.as_ref().map(Vec::len),
        "tokenizer.ggml.token_type",
    )?;
    Ok(VocabSpec {
        model,
        pre: g.opt_str("tokenizer.ggml.pre")?.map(str::to_owned),
        tokens,
        scores,
        token_types,
        merges,
        bos: g.opt_u32("tokenizer.ggml.bos_token_id")?,
        eos: g.opt_u32("tokenizer.ggml.eos_token_id")?,
        eot: g.opt_u32("tokenizer.ggml.eot_token_id")?,
        add_bos: g.opt_bool("tokenizer.ggml.add_bos_token")?,
        chat_template: g.opt_str("tokenizer.chat_template")?.map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::gguf_file;
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};

    fn to_ours(v: &gguf_file::Value) -> Value {
        use gguf_file::Value as C;
        match v {
            C::U8(x) => Value::U8(*x),
            C::I8(x) => Value::I8(*x),
            C::U16(x) => Value::U16(*x),
            C::I16(x) => Value::I16(*x),
            C::U32(x) => Value::U32(*x),
            C::I32(x) => Value::I32(*x),
            C::U64(x) => Value::U64(*x),
            C::I64(x) => Value::I64(*x),
            C::F32(x) => Value::F32(*x),
            C::F64(x) => Value::F64(*x),
            C::Bool(x) => Value::Bool(*x),
            C::String(x) => Value::String(x.clone()),
            C::Array(x) => Value::Array(x.iter().map(to_ours).collect()),
        }
    }

    /// candle's reader is the oracle on a well-formed file with every value type.
    #[test]
    fn agrees_with_candle_reader() {
        use gguf_file::Value as C;
        let meta = [
            ("u8", C::U8(7)),
            ("i8", C::I8(-7)),
            ("u16", C::U16(700)),
            ("i16", C::I16(-700)),
            ("u32", C::U32(70000)),
            ("i32", C::I32(-70000)),
            ("u64", C::U64(1 << 40)),
            ("i64", C::I64(-(1 << 40))),
            ("f32", C::F32(1.5)),
            ("f64", C::F64(-2.25)),
            ("bool", C::Bool(true)),
            ("string", C::String("héllo".into())),
            (
                "array",
                C::Array(vec![C::String("a".into()), C::String("".into())]),
            ),
            (
                "nested",
                C::Array(vec![C::Array(vec![C::U32(1), C::U32(2)])]),
            ),
            // candle's writer always pads to 32, so only 32 is consistent here.
            ("general.alignment", C::U32(32)),
        ];
        let mk = |shape: &[usize], dtype| {
            let n: usize = shape.iter().product();
            let data: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let t = Tensor::from_vec(data, shape, &Device::Cpu).unwrap();
            QTensor::quantize(&t, dtype).unwrap()
        };
        let tensors = [
            ("a", mk(&[3, 256], GgmlDType::Q4K)),
            ("b", mk(&[5], GgmlDType::F32)),
            ("c", mk(&[2, 64], GgmlDType::Q8_0)),
            ("d", mk(&[4, 3], GgmlDType::F16)),
        ];
        let meta_refs: Vec<(&str, &C)> = meta.iter().map(|(k, v)| (*k, v)).collect();
        let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (*k, v)).collect();
        let mut buf = std::io::Cursor::new(Vec::new());
        gguf_file::write(&mut buf, &meta_refs, &t_refs).unwrap();
        let bytes = buf.into_inner();

        let theirs = gguf_file::Content::read(&mut std::io::Cursor::new(&bytes)).unwrap();
        let ours = parse(&bytes).unwrap();
        assert_eq!(ours.version, 2);
        assert_eq!(ours.data_offset as u64, theirs.tensor_data_offset);
        assert_eq!(ours.metadata.len(), theirs.metadata.len());
        for (k, v) in &theirs.metadata {
            assert_eq!(ours.metadata.get(k), Some(&to_ours(v)), "{k}");
        }
        assert_eq!(ours.tensors.len(), theirs.tensor_infos.len());
        for (name, info) in &theirs.tensor_infos {
            let t = &ours.tensors[name];
            let dims: Vec<u64> = info.shape.dims().iter().rev().map(|&d| d as u64).collect();
            assert_eq!(t.dims, dims, "{name}");
            assert_eq!(
                t.start as u64,
                theirs.tensor_data_offset + info.offset,
                "{name}"
            );
            assert_eq!(
                t.ty.name(),
                format!("{:?}", info.ggml_dtype).replace("K", "_K")
            );
            // The bytes we would map are the bytes candle reads.
            let q = theirs
                .tensor(&mut std::io::Cursor::new(&bytes), name, &Device::Cpu)
                .unwrap();
            assert_eq!(
                &bytes[t.start..t.start + t.len],
                &q.data().unwrap()[..],
                "{name}"
            );
        }
    }
}
