//! Tokenizers described by GGUF vocabulary metadata (`tokenizer.ggml.*`), following llama.cpp.
//!
//! Two models are implemented:
//! - `"llama"`: SentencePiece BPE by scores (llama.cpp `llm_tokenizer_spm`): spaces become `▁`,
//!   a dummy-prefix space is added at the start and after every special token, adjacent symbols
//!   are merged best-score-first (leftmost on ties) while their concatenation is a token, and
//!   symbols that are not tokens fall back to `<0xNN>` byte tokens (or `<unk>`). On vocabularies
//!   exported from SentencePiece this gives the same ids as llama2.c's `encode`.
//! - `"gpt2"`: byte-level BPE with ranked merges (llama.cpp `llm_tokenizer_bpe`): the text is
//!   split by the pre-tokenizer regexes llama.cpp uses for `tokenizer.ggml.pre`, each piece is
//!   mapped to GPT-2's byte-level alphabet, and the lowest-rank merge is applied first.
//!
//! Rank-based BPE is implemented here (with `fancy-regex` for the look-ahead in the split
//! patterns) rather than through the HF `tokenizers` crate so both models share one
//! special-token partition and one heap merge, token bytes are available per id for streaming,
//! and hostile vocabularies surface as [`EngineError`]s instead of panics deep in a dependency.
//!
//! Special tokens (control, user-defined and unknown types) written literally in the text are
//! encoded as their ids, as llama.cpp does with `parse_special = true`: chat templates emit them
//! as text. A consequence shared with llama.cpp and HF is that user-written `<|im_start|>` is a
//! control token too; callers that need otherwise must escape message contents first.

use std::collections::{BinaryHeap, HashMap};

use fancy_regex::Regex;

use crate::EngineError;

/// `tokenizer.ggml.token_type` values (llama.cpp `llama_token_type`).
const TYPE_NORMAL: i32 = 1;
const TYPE_UNKNOWN: i32 = 2;
const TYPE_CONTROL: i32 = 3;
const TYPE_USER_DEFINED: i32 = 4;
const TYPE_UNUSED: i32 = 5;
const TYPE_BYTE: i32 = 6;

/// Texts of end-of-turn / end-of-text specials that stop generation when present in the vocab.
const STOP_TEXTS: &[&str] = &[
    "<|im_end|>",
    "<|eot_id|>",
    "<|end_of_text|>",
    "<|endoftext|>",
    "<|eom_id|>",
    "</s>",
    "<|end|>",
    "<end_of_turn>",
];

/// What llama.cpp prints for an unknown token (U+2585).
const UNKNOWN_PIECE: &str = "\u{2585}";

/// Vocabulary metadata as read from a GGUF file (`tokenizer.ggml.*` and `tokenizer.chat_template`).
#[derive(Clone, Debug, Default)]
pub struct VocabSpec {
    /// `tokenizer.ggml.model`: `"llama"` (SentencePiece) or `"gpt2"` (byte-level BPE).
    pub model: String,
    /// `tokenizer.ggml.pre`: pre-tokenizer name for `"gpt2"` (ignored for `"llama"`).
    pub pre: Option<String>,
    /// `tokenizer.ggml.tokens`, indexed by id.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.scores` (SentencePiece merge priorities; 0 when absent).
    pub scores: Option<Vec<f32>>,
    /// `tokenizer.ggml.token_type` (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused,
    /// 6 byte); all normal when absent.
    pub token_types: Option<Vec<i32>>,
    /// `tokenizer.ggml.merges` (`"left right"`, highest priority first); required for `"gpt2"`.
    pub merges: Option<Vec<String>>,
    /// `tokenizer.ggml.bos_token_id`.
    pub bos: Option<u32>,
    /// `tokenizer.ggml.eos_token_id`.
    pub eos: Option<u32>,
    /// `tokenizer.ggml.eot_token_id`.
    pub eot: Option<u32>,
    /// `tokenizer.ggml.add_bos_token`.
    pub add_bos: Option<bool>,
    /// `tokenizer.chat_template`.
    pub chat_template: Option<String>,
}

/// Pre-tokenizer of a byte-level BPE vocabulary.
struct Bpe {
    /// Applied in sequence: each regex splits every piece produced by the previous one
    /// (matches and the gaps between them both become pieces, as in llama.cpp).
    regexes: Vec<Regex>,
    /// (left id, right id) -> (rank, merged id).
    merges: HashMap<(u32, u32), (u32, u32)>,
    /// A whole pre-token that is itself a token is emitted without merging (Llama 3).
    ignore_merges: bool,
}

enum Model {
    Spm,
    Bpe(Bpe),
}

/// A tokenizer built from GGUF vocabulary metadata. Immutable, `Send + Sync`.
pub struct GgufTokenizer {
    model: Model,
    tokens: Vec<String>,
    types: Vec<i32>,
    scores: Vec<f32>,
    /// Token text -> id; on duplicates the lowest id wins.
    lookup: HashMap<String, u32>,
    /// Ids of the specials parsed out of text, longest text first (llama.cpp order).
    specials: Vec<u32>,
    /// Byte value -> id: `<0xNN>` tokens (SPM) or the byte-level alphabet (BPE).
    byte_ids: [Option<u32>; 256],
    unk: Option<u32>,
    bos: Option<u32>,
    eos: Option<u32>,
    stops: Vec<u32>,
    add_bos: bool,
    chat_template: Option<String>,
    /// The spec had no token types: `<0xNN>` pieces are byte tokens by their text alone.
    untyped: bool,
}

impl std::fmt::Debug for GgufTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufTokenizer")
            .field(
                "model",
                &match self.model {
                    Model::Spm => "llama",
                    Model::Bpe(_) => "gpt2",
                },
            )
            .field("vocab_size", &self.tokens.len())
            .finish_non_exhaustive()
    }
}

fn invalid<T>(msg: String) -> Result<T, EngineError> {
    Err(EngineError::TokenizerInvalid(msg))
}

/// GPT-2's `bytes_to_unicode`: printable bytes map to themselves, the other 68 to U+0100...
fn byte_to_char_table() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for (b, slot) in table.iter_mut().enumerate() {
        let printable =
            (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
        let cp = if printable {
            b as u32
        } else {
            next += 1;
            next - 1
        };
        // All values are below 0x200, hence valid scalar values.
        *slot = char::from_u32(cp).unwrap_or('\0');
    }
    table
}

/// Inverse of [`byte_to_char_table`].
fn char_to_byte(c: char) -> Option<u8> {
    let cp = c as u32;
    match cp {
        33..=126 | 161..=172 | 174..=255 => Some(cp as u8),
        256..=323 => {
            // The n-th non-printable byte, in increasing byte order.
            let n = (cp - 256) as usize;
            (0u8..=255)
                .filter(|&b| !((33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174))
                .nth(n)
        }
        _ => None,
    }
}

/// llama.cpp's pre-tokenizer regexes (src/llama-vocab.cpp, `llm_tokenizer_bpe`), by
/// `tokenizer.ggml.pre`. Returns the patterns and whether merges are skipped for whole-token
/// pre-tokens.
fn pre_patterns(pre: Option<&str>) -> Result<(&'static [&'static str], bool), EngineError> {
    const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
    const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    Ok(match pre {
        None | Some("default") => (
            &[r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"],
            false,
        ),
        Some("llama3" | "llama-v3" | "llama-bpe") => (&[LLAMA3], true),
        Some("dbrx" | "smaug-bpe") => (&[LLAMA3], false),
        Some("qwen2" | "deepseek-r1-qwen" | "stablelm2" | "megrez") => (&[QWEN2], false),
        Some("smollm" | "starcoder" | "refact" | "command-r" | "codeshell") => {
            (&[r"\p{N}", GPT2], false)
        }
        Some("gpt2" | "gpt-2" | "phi-2" | "mpt" | "olmo") => (&[GPT2], false),
        Some(_) => {
            return Err(EngineError::TokenizerUnsupported(
                "unknown pre-tokenizer (tokenizer.ggml.pre)".into(),
            ));
        }
    })
}

/// Parses `<0xHH>`.
fn parse_byte_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

impl GgufTokenizer {
    /// Validates `spec` and builds the tokenizer.
    ///
    /// Errors: [`EngineError::TokenizerInvalid`] for an empty vocabulary, array lengths that do
    /// not match it, non-finite scores, unknown token types, special ids out of range, missing
    /// or malformed merges, or a byte-level vocabulary lacking one of the 256 byte symbols;
    /// [`EngineError::TokenizerUnsupported`] for an unknown model or pre-tokenizer.
    pub fn from_spec(spec: VocabSpec) -> Result<Self, EngineError> {
        let n = spec.tokens.len();
        if n == 0 {
            return invalid("empty vocabulary".into());
        }
        if u32::try_from(n).is_err() {
            return invalid(format!("vocabulary of {n} tokens is too large"));
        }
        let scores = match spec.scores {
            Some(s) if s.len() != n => {
                return invalid(format!("{} scores for {n} tokens", s.len()));
            }
            Some(s) => {
                if let Some(i) = s.iter().position(|x| !x.is_finite()) {
                    return invalid(format!("token {i} has a non-finite score"));
                }
                s
            }
            None => vec![0.0; n],
        };
        let types = match spec.token_types {
            Some(t) if t.len() != n => {
                return invalid(format!("{} token types for {n} tokens", t.len()));
            }
            Some(t) => {
                if let Some(i) = t.iter().position(|x| !(0..=TYPE_BYTE).contains(x)) {
                    return invalid(format!("token {i} has unknown type {}", t[i]));
                }
                t
            }
            None => vec![TYPE_NORMAL; n],
        };
        for (name, id) in [("bos", spec.bos), ("eos", spec.eos), ("eot", spec.eot)] {
            if let Some(id) = id
                && id as usize >= n
            {
                return invalid(format!(
                    "{name} token id {id} is outside the vocabulary of {n}"
                ));
            }
        }
        let mut lookup = HashMap::with_capacity(n);
        for (id, t) in spec.tokens.iter().enumerate() {
            lookup.entry(t.clone()).or_insert(id as u32);
        }

        let untyped = spec_untyped(&types);
        let mut byte_ids = [None; 256];
        let model = match spec.model.as_str() {
            "llama" => {
                for (id, t) in spec.tokens.iter().enumerate() {
                    // Without types, `<0xNN>` pieces are still byte tokens (llama2.c vocabularies).
                    let is_byte = types[id] == TYPE_BYTE || untyped;
                    if is_byte
                        && let Some(b) = parse_byte_token(t)
                        && byte_ids[b as usize].is_none()
                    {
                        byte_ids[b as usize] = Some(id as u32);
                    }
                }
                Model::Spm
            }
            "gpt2" => {
                let (patterns, ignore_merges) = pre_patterns(spec.pre.as_deref())?;
                let regexes = patterns
                    .iter()
                    .map(|p| Regex::new(p))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| EngineError::TokenizerUnsupported("pre-tokenizer regex".into()))?;
                let table = byte_to_char_table();
                for (b, c) in table.iter().enumerate() {
                    match lookup.get(c.to_string().as_str()) {
                        Some(&id) => byte_ids[b] = Some(id),
                        None => {
                            return invalid(format!("byte-level vocabulary lacks byte 0x{b:02X}"));
                        }
                    }
                }
                let Some(lines) = spec.merges.as_ref() else {
                    return invalid("gpt2 vocabulary without merges".into());
                };
                let mut merges = HashMap::with_capacity(lines.len());
                for (rank, line) in lines.iter().enumerate() {
                    // llama.cpp splits at the first space after the first character.
                    let split = line
                        .char_indices()
                        .skip(1)
                        .find(|&(_, c)| c == ' ')
                        .map(|(i, _)| i);
                    let Some(i) = split else {
                        return invalid(format!("merge {rank} has no separating space"));
                    };
                    let (left, right) = (&line[..i], &line[i + 1..]);
                    let ids = (
                        lookup.get(left),
                        lookup.get(right),
                        lookup.get(format!("{left}{right}").as_str()),
                    );
                    // Merges over texts missing from the vocabulary can never apply; skip them.
                    if let (Some(&l), Some(&r), Some(&m)) = ids {
                        merges.entry((l, r)).or_insert((rank as u32, m));
                    }
                }
                Model::Bpe(Bpe {
                    regexes,
                    merges,
                    ignore_merges,
                })
            }
            _ => {
                return Err(EngineError::TokenizerUnsupported(
                    "unknown tokenizer model (tokenizer.ggml.model)".into(),
                ));
            }
        };

        let mut specials: Vec<u32> = (0..n as u32)
            .filter(|&id| {
                matches!(
                    types[id as usize],
                    TYPE_CONTROL | TYPE_USER_DEFINED | TYPE_UNKNOWN
                ) && !spec.tokens[id as usize].is_empty()
            })
            .collect();
        specials.sort_by_key(|&id| std::cmp::Reverse(spec.tokens[id as usize].len()));

        let unk = types
            .iter()
            .position(|&t| t == TYPE_UNKNOWN)
            .map(|i| i as u32)
            .or_else(|| lookup.get("<unk>").copied());

        let mut stops: Vec<u32> = [spec.eos, spec.eot].into_iter().flatten().collect();
        for text in STOP_TEXTS {
            if let Some(&id) = lookup.get(*text)
                && types[id as usize] != TYPE_NORMAL
            {
                stops.push(id);
            }
        }
        stops.sort_unstable();
        stops.dedup();

        let add_bos = spec.add_bos.unwrap_or(match &model {
            Model::Spm => true,
            Model::Bpe(b) => b.ignore_merges, // llama.cpp sets add_bos for the Llama 3 pre-tokenizer
        });
        Ok(GgufTokenizer {
            model,
            tokens: spec.tokens,
            types,
            scores,
            lookup,
            specials,
            byte_ids,
            unk,
            bos: spec.bos,
            eos: spec.eos,
            stops,
            add_bos,
            chat_template: spec.chat_template,
            untyped,
        })
    }

    /// Encodes `text`, preceded by BOS when `add_bos` is set.
    ///
    /// Special/control tokens (e.g. `<|im_start|>`, `<|eot_id|>`) written literally in `text`
    /// are encoded as their single ids, longest special first, as llama.cpp does; the rest is
    /// tokenized as normal text.
    ///
    /// Errors ([`EngineError::TokenizerEncode`]): `add_bos` without a BOS token, a regex that
    /// hits its backtracking limit, or a character with neither a token, a byte token nor
    /// `<unk>`.
    pub fn encode(&self, text: &str, add_bos: bool) -> Result<Vec<u32>, EngineError> {
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_bos {
            out.push(self.bos.ok_or(EngineError::TokenizerEncode(
                "the vocabulary has no BOS token",
            ))?);
        }
        let mut prev_special = true;
        for frag in self.partition(text) {
            match frag {
                Fragment::Special(id) => {
                    out.push(id);
                    prev_special = true;
                }
                Fragment::Text(t) => {
                    match &self.model {
                        Model::Spm => {
                            // Dummy prefix at the start and after each special (llama.cpp).
                            let mut s = String::with_capacity(t.len() + 3);
                            if prev_special {
                                s.push('\u{2581}');
                            }
                            for c in t.chars() {
                                s.push(if c == ' ' { '\u{2581}' } else { c });
                            }
                            self.spm_tokenize(&s, &mut out)?;
                        }
                        Model::Bpe(bpe) => self.bpe_tokenize(bpe, t, &mut out)?,
                    }
                    prev_special = false;
                }
            }
        }
        Ok(out)
    }

    /// Splits `text` at literal occurrences of special tokens, longest special first.
    fn partition<'a>(&self, text: &'a str) -> Vec<Fragment<'a>> {
        let mut frags = vec![Fragment::Text(text)];
        if text.is_empty() {
            return Vec::new();
        }
        for &id in &self.specials {
            let needle = self.tokens[id as usize].as_str();
            if !frags
                .iter()
                .any(|f| matches!(f, Fragment::Text(t) if t.contains(needle)))
            {
                continue;
            }
            let mut next = Vec::with_capacity(frags.len() + 2);
            for f in frags {
                let Fragment::Text(mut t) = f else {
                    next.push(f);
                    continue;
                };
                while let Some(pos) = t.find(needle) {
                    if pos > 0 {
                        next.push(Fragment::Text(&t[..pos]));
                    }
                    next.push(Fragment::Special(id));
                    t = &t[pos + needle.len()..];
                }
                if !t.is_empty() {
                    next.push(Fragment::Text(t));
                }
            }
            frags = next;
        }
        frags
    }

    /// SentencePiece BPE on whitespace-escaped text (llama.cpp `llm_tokenizer_spm_session`).
    fn spm_tokenize(&self, s: &str, out: &mut Vec<u32>) -> Result<(), EngineError> {
        let mut syms: Vec<Sym> = s
            .char_indices()
            .map(|(i, c)| {
                let end = i + c.len_utf8();
                Sym {
                    start: i,
                    end,
                    id: self.lookup.get(&s[i..end]).copied(),
                }
            })
            .collect();
        merge_symbols(&mut syms, |l, r| {
            let id = *self.lookup.get(s.get(l.start..r.end)?)?;
            Some((f64::from(self.scores[id as usize]), id))
        });
        for sym in syms {
            if let Some(id) = sym.id {
                out.push(id);
                continue;
            }
            // Byte fallback, then <unk>, as llama.cpp's resegment does for unknown symbols.
            for &b in s.as_bytes()[sym.start..sym.end].iter() {
                match (self.byte_ids[b as usize], self.unk) {
                    (Some(id), _) => out.push(id),
                    (None, Some(unk)) => {
                        out.push(unk);
                        break;
                    }
                    (None, None) => {
                        return Err(EngineError::TokenizerEncode(
                            "character without token, byte token or <unk>",
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Byte-level BPE of one special-free fragment (llama.cpp `llm_tokenizer_bpe_session`).
    fn bpe_tokenize(&self, bpe: &Bpe, text: &str, out: &mut Vec<u32>) -> Result<(), EngineError> {
        let mut pieces = vec![(0usize, text.len())];
        for re in &bpe.regexes {
            let mut next = Vec::with_capacity(pieces.len() * 2);
            for (start, end) in pieces {
                let sub = &text[start..end];
                let mut last = 0;
                for m in re.find_iter(sub) {
                    let m = m.map_err(|_| {
                        EngineError::TokenizerEncode("pre-tokenizer regex backtracking limit")
                    })?;
                    if m.start() > last {
                        next.push((start + last, start + m.start()));
                    }
                    if m.end() > m.start() {
                        next.push((start + m.start(), start + m.end()));
                    }
                    last = m.end();
                }
                if last < sub.len() {
                    next.push((start + last, end));
                }
            }
            pieces = next;
        }
        let table = byte_to_char_table();
        for (start, end) in pieces {
            let word = &text.as_bytes()[start..end];
            if bpe.ignore_merges {
                let mapped: String = word.iter().map(|&b| table[b as usize]).collect();
                if let Some(&id) = self.lookup.get(&mapped) {
                    out.push(id);
                    continue;
                }
            }
            let mut syms: Vec<Sym> = word
                .iter()
                .enumerate()
                .map(|(i, &b)| Sym {
                    start: i,
                    end: i + 1,
                    id: self.byte_ids[b as usize],
                })
                .collect();
            merge_symbols(&mut syms, |l, r| {
                let &(rank, id) = bpe.merges.get(&(l.id?, r.id?))?;
                Some((-f64::from(rank), id))
            });
            for sym in syms {
                // Every byte has an id (checked at load) and merges always produce one.
                out.extend(sym.id);
            }
        }
        Ok(())
    }

    /// Raw bytes `id` contributes to the output text: byte-fallback `<0xNN>` tokens give that
    /// byte, SentencePiece `▁` gives a space, GPT-2 byte-level characters give their bytes,
    /// user-defined tokens give their text, and control/unused tokens give nothing. `None` for
    /// an id outside the vocabulary.
    ///
    /// The SentencePiece dummy-prefix space is kept (the first token of a generation after BOS
    /// may start with a space the caller wants to strip).
    pub fn token_bytes(&self, id: u32) -> Option<Vec<u8>> {
        let text = self.tokens.get(id as usize)?;
        let ty = self.types[id as usize];
        Some(match ty {
            TYPE_CONTROL | TYPE_UNUSED => Vec::new(),
            TYPE_UNKNOWN => UNKNOWN_PIECE.as_bytes().to_vec(),
            TYPE_USER_DEFINED => text.as_bytes().to_vec(),
            _ => match self.model {
                Model::Spm => match parse_byte_token(text) {
                    Some(b) if ty == TYPE_BYTE || self.untyped => vec![b],
                    _ => text.replace('\u{2581}', " ").into_bytes(),
                },
                Model::Bpe(_) => {
                    let mut out = Vec::with_capacity(text.len());
                    for c in text.chars() {
                        match char_to_byte(c) {
                            Some(b) => out.push(b),
                            // Not in the byte-level alphabet: keep the character itself.
                            None => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
                        }
                    }
                    out
                }
            },
        })
    }

    /// Whether `id` ends generation: EOS, EOT, or an end-of-turn special present in the vocab
    /// (`<|im_end|>`, `<|eot_id|>`, `<|end_of_text|>`, `<|endoftext|>`, `<|eom_id|>`, `</s>`,
    /// `<|end|>`, `<end_of_turn>`) that is not a normal token.
    pub fn is_stop(&self, id: u32) -> bool {
        self.stops.binary_search(&id).is_ok()
    }

    /// Number of tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// The BOS token id, if any.
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    /// The EOS token id, if any.
    pub fn eos(&self) -> Option<u32> {
        self.eos
    }

    /// Whether this is a SentencePiece-style ("llama") vocabulary, whose pieces carry a
    /// leading space that the first piece after BOS drops (as llama.cpp and llama2.c do).
    pub fn is_sentencepiece(&self) -> bool {
        matches!(self.model, Model::Spm)
    }

    /// Longest byte sequence one token decodes to (bounds how short a text's encoding can
    /// be, so overlong prompts are refused before encoding).
    pub fn max_token_bytes(&self) -> usize {
        (0..self.tokens.len() as u32)
            .filter_map(|id| self.token_bytes(id).map(|b| b.len()))
            .max()
            .unwrap_or(1)
    }

    /// Whether prompts start with BOS by default (`tokenizer.ggml.add_bos_token`, else
    /// llama.cpp's default: yes for SentencePiece and Llama 3, no for other BPE vocabularies).
    pub fn add_bos_default(&self) -> bool {
        self.add_bos
    }

    /// The GGUF chat template, if the file has one.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// Text of token `id` as stored in the vocabulary (for special tokens such as BOS/EOS that
    /// chat templates print literally).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }
}

/// True when the spec carried no token types (every token defaulted to normal).
fn spec_untyped(types: &[i32]) -> bool {
    types.iter().all(|&t| t == TYPE_NORMAL)
}

enum Fragment<'a> {
    Text(&'a str),
    Special(u32),
}

/// A run of input bytes `start..end` and its token id, if that run is a token.
#[derive(Clone, Copy, Debug)]
struct Sym {
    start: usize,
    end: usize,
    id: Option<u32>,
}

/// Greedy pairwise merging shared by both models: repeatedly merge the adjacent pair with the
/// highest priority (`pair` returns the priority and merged id, or `None` when the pair cannot
/// merge), the leftmost pair on ties. A heap of candidates with per-symbol versions keeps it
/// O(n log n) (same scheme as the llama2.c tokenizer in `tokenizer.rs`).
fn merge_symbols(syms: &mut Vec<Sym>, pair: impl Fn(&Sym, &Sym) -> Option<(f64, u32)>) {
    struct Cand {
        priority: f64,
        left: usize,
        right: usize,
        id: u32,
        left_version: u32,
        right_version: u32,
    }
    impl PartialEq for Cand {
        fn eq(&self, other: &Self) -> bool {
            self.cmp(other).is_eq()
        }
    }
    impl Eq for Cand {}
    impl Ord for Cand {
        fn cmp(&self, other: &Self) -> std::cmp::Ordering {
            self.priority
                .total_cmp(&other.priority)
                .then_with(|| other.left.cmp(&self.left))
        }
    }
    impl PartialOrd for Cand {
        fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
            Some(self.cmp(other))
        }
    }
    const NONE: usize = usize::MAX;
    let n = syms.len();
    if n < 2 {
        return;
    }
    let mut next: Vec<usize> = (1..=n).map(|i| if i < n { i } else { NONE }).collect();
    let mut prev: Vec<usize> = (0..n).map(|i| i.checked_sub(1).unwrap_or(NONE)).collect();
    let mut alive = vec![true; n];
    let mut version = vec![0u32; n];
    let mut heap = BinaryHeap::with_capacity(n);
    let candidate = |syms: &[Sym], version: &[u32], left: usize, right: usize| {
        pair(&syms[left], &syms[right]).map(|(priority, id)| Cand {
            priority,
            left,
            right,
            id,
            left_version: version[left],
            right_version: version[right],
        })
    };
    for i in 0..n - 1 {
        heap.extend(candidate(syms, &version, i, i + 1));
    }
    while let Some(c) = heap.pop() {
        let current = alive[c.left]
            && alive[c.right]
            && next[c.left] == c.right
            && version[c.left] == c.left_version
            && version[c.right] == c.right_version;
        if !current {
            continue;
        }
        syms[c.left].end = syms[c.right].end;
        syms[c.left].id = Some(c.id);
        version[c.left] += 1;
        alive[c.right] = false;
        let after = next[c.right];
        next[c.left] = after;
        if after != NONE {
            prev[after] = c.left;
            heap.extend(candidate(syms, &version, c.left, after));
        }
        let before = prev[c.left];
        if before != NONE {
            heap.extend(candidate(syms, &version, before, c.left));
        }
    }
    let mut w = 0;
    for r in 0..n {
        if alive[r] {
            syms[w] = syms[r];
            w += 1;
        }
    }
    syms.truncate(w);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_table_round_trips() {
        let table = byte_to_char_table();
        for b in 0..=255u8 {
            assert_eq!(char_to_byte(table[b as usize]), Some(b));
        }
        assert_eq!(table[b' ' as usize], '\u{120}'); // 'Ġ'
        assert_eq!(table[b'\n' as usize], '\u{10A}'); // 'Ċ'
        assert_eq!(char_to_byte('\u{2581}'), None);
    }

    #[test]
    fn byte_token_parsing() {
        assert_eq!(parse_byte_token("<0x0A>"), Some(10));
        assert_eq!(parse_byte_token("<0xff>"), Some(255));
        assert_eq!(parse_byte_token("<0x0A"), None);
        assert_eq!(parse_byte_token("<0x0AB>"), None);
    }

    /// llama.cpp's qwen2 and llama3 patterns split as their tokenizer.json originals do.
    #[test]
    fn pre_tokenizer_splits() {
        let split = |pre: &str, text: &str| -> Vec<String> {
            let (pats, _) = pre_patterns(Some(pre)).expect("known pre");
            let mut pieces = vec![text.to_string()];
            for p in pats {
                let re = Regex::new(p).expect("regex");
                let mut next = Vec::new();
                for piece in &pieces {
                    let mut last = 0;
                    for m in re.find_iter(piece) {
                        let m = m.expect("match");
                        if m.start() > last {
                            next.push(piece[last..m.start()].to_string());
                        }
                        next.push(m.as_str().to_string());
                        last = m.end();
                    }
                    if last < piece.len() {
                        next.push(piece[last..].to_string());
                    }
                }
                pieces = next;
            }
            pieces
        };
        assert_eq!(
            split("llama-bpe", "Hello world! 12345 I'M  ok\n\n"),
            [
                "Hello", " world", "!", " ", "123", "45", " I", "'M", " ", " ok", "\n\n"
            ]
        );
        assert_eq!(split("qwen2", "abc 123"), ["abc", " ", "1", "2", "3"]);
        assert_eq!(split("gpt-2", "it's  a"), ["it", "'s", " ", " a"]);
        assert_eq!(split("smollm", "x12"), ["x", "1", "2"]);
    }
}
