//! A human-readable summary of a GGUF file (`sotto model info`), from the same bounded
//! reader the loader uses, so inspecting an untrusted download cannot allocate without bound.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::error::EngineError;
use crate::gguf::{self, Value};

/// Whether the file at `path` starts with the GGUF magic (false for shorter files).
pub fn is_gguf_file(path: &Path) -> Result<bool, EngineError> {
    use std::io::Read;
    let mut magic = [0u8; 4];
    let mut f = std::fs::File::open(path).map_err(EngineError::ModelIo)?;
    match f.read_exact(&mut magic) {
        Ok(()) => Ok(magic == gguf::MAGIC),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(EngineError::ModelIo(e)),
    }
}

/// Describes the GGUF file at `path` (memory-mapped): format, architecture, hyper-parameters,
/// tokenizer, tensor types and parameter count, one `key: value` per line.
pub fn describe_gguf_file(path: &Path) -> Result<String, EngineError> {
    let map = crate::map_file(path)?;
    describe_gguf(&map)
}

/// [`describe_gguf_file`] for a file held in memory.
pub fn describe_gguf(data: &[u8]) -> Result<String, EngineError> {
    let g = gguf::parse(data)?;
    let text = |k: &str| match g.metadata.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(_) => "?".into(),
        None => "-".into(),
    };
    let num = |k: &str| match g.metadata.get(k) {
        Some(v) => v
            .as_u64()
            .map(|n| n.to_string())
            .or_else(|| v.as_f32().map(|x| x.to_string()))
            .unwrap_or_else(|| "?".into()),
        None => "-".into(),
    };
    let arch = text("general.architecture");
    let mut s = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(s, "format: GGUF v{}, {} bytes", g.version, data.len());
    let _ = writeln!(s, "architecture: {arch}");
    let _ = writeln!(s, "name: {}", text("general.name"));
    for key in [
        "context_length",
        "embedding_length",
        "block_count",
        "feed_forward_length",
        "attention.head_count",
        "attention.head_count_kv",
        "rope.dimension_count",
        "rope.freq_base",
        "attention.layer_norm_rms_epsilon",
    ] {
        let _ = writeln!(s, "{key}: {}", num(&format!("{arch}.{key}")));
    }
    let vocab = match g.metadata.get("tokenizer.ggml.tokens") {
        Some(Value::Array(a)) => a.len().to_string(),
        _ => "-".into(),
    };
    let template = if g.metadata.contains_key("tokenizer.chat_template") {
        "yes"
    } else {
        "no"
    };
    let _ = writeln!(
        s,
        "tokenizer: {} ({vocab} tokens), chat template: {template}",
        text("tokenizer.ggml.model"),
    );
    let mut types: BTreeMap<&str, usize> = BTreeMap::new();
    let mut params: u64 = 0;
    for t in g.tensors.values() {
        *types.entry(t.ty.name()).or_default() += 1;
        params = params.saturating_add(t.dims.iter().fold(1u64, |a, &d| a.saturating_mul(d)));
    }
    let types: Vec<String> = types.iter().map(|(k, n)| format!("{k} x{n}")).collect();
    let _ = writeln!(
        s,
        "tensors: {} ({}), {params} parameters",
        g.tensors.len(),
        types.join(", ")
    );
    Ok(s)
}
