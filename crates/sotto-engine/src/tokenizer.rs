//! llama2.c tokenizer: file parsing, BPE-style encoding and piece decoding.

use std::collections::HashMap;

use crate::EngineError;

/// Beginning-of-sequence token id (hard-coded by llama2.c).
pub const BOS: u32 = 1;
/// End-of-sequence token id (hard-coded by llama2.c).
pub const EOS: u32 = 2;
/// Byte-fallback pieces `<0x00>`..`<0xFF>` occupy ids 3..=258.
const BYTE_OFFSET: u32 = 3;
/// Longest piece we accept; bounds per-piece allocations on hostile files.
const MAX_TOKEN_LENGTH: usize = 1 << 16;

/// One static byte per value so byte pieces can be returned as `&[u8]` without allocation.
static BYTE_PIECES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = i as u8;
        i += 1;
    }
    table
};

/// A llama2.c vocabulary: pieces, merge scores and a reverse lookup table.
pub struct Tokenizer {
    pieces: Vec<Vec<u8>>,
    scores: Vec<f32>,
    /// Piece bytes -> id. On duplicates the lowest id wins.
    lookup: HashMap<Vec<u8>, u32>,
    max_token_length: usize,
}

/// Little-endian cursor that reports truncation as a tokenizer error.
struct Cursor<'a> {
    data: &'a [u8],
    offset: usize,
}

impl<'a> Cursor<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], EngineError> {
        let out = self
            .offset
            .checked_add(n)
            .and_then(|end| self.data.get(self.offset..end))
            .ok_or_else(|| {
                EngineError::TokenizerInvalid(format!("truncated at byte offset {}", self.offset))
            })?;
        self.offset += n;
        Ok(out)
    }

    fn word(&mut self) -> Result<[u8; 4], EngineError> {
        let b = self.bytes(4)?;
        Ok([b[0], b[1], b[2], b[3]])
    }
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.pieces.len())
            .field("max_token_length", &self.max_token_length)
            .finish_non_exhaustive()
    }
}

impl Tokenizer {
    /// Parses a llama2.c `tokenizer.bin` holding exactly `vocab_size` tokens.
    ///
    /// Layout: i32 `max_token_length`, then per token f32 score, i32 length, bytes.
    /// Rejects truncated files, trailing data, negative or over-long pieces, non-finite scores,
    /// and vocabularies too small for the byte-fallback ids (3..=258).
    pub fn from_bytes(data: &[u8], vocab_size: usize) -> Result<Tokenizer, EngineError> {
        let invalid = |msg: String| Err(EngineError::TokenizerInvalid(msg));
        if vocab_size < (BYTE_OFFSET as usize + 256) {
            return invalid(format!(
                "vocabulary of {vocab_size} tokens is too small for byte fallback (needs 259)"
            ));
        }
        if vocab_size > u32::MAX as usize {
            return invalid(format!("vocabulary of {vocab_size} tokens is too large"));
        }
        let mut cur = Cursor { data, offset: 0 };
        let max_len = i32::from_le_bytes(cur.word()?);
        if max_len <= 0 || max_len as usize > MAX_TOKEN_LENGTH {
            return invalid(format!(
                "max_token_length {max_len} is outside 1..={MAX_TOKEN_LENGTH}"
            ));
        }
        let max_token_length = max_len as usize;
        // Every token needs at least 8 bytes, so this cannot over-allocate on hostile input.
        let capacity = vocab_size.min(data.len() / 8);
        let mut pieces = Vec::with_capacity(capacity);
        let mut scores = Vec::with_capacity(capacity);
        let mut lookup = HashMap::with_capacity(capacity);
        for id in 0..vocab_size {
            let score = f32::from_le_bytes(cur.word()?);
            if !score.is_finite() {
                return invalid(format!("token {id} has a non-finite score"));
            }
            let len = i32::from_le_bytes(cur.word()?);
            if len < 0 || len as usize > max_token_length {
                return invalid(format!(
                    "token {id} has length {len}, outside 0..={max_token_length}"
                ));
            }
            let piece = cur.bytes(len as usize)?.to_vec();
            lookup.entry(piece.clone()).or_insert(id as u32);
            pieces.push(piece);
            scores.push(score);
        }
        if cur.offset != data.len() {
            return invalid(format!(
                "{} trailing bytes after {vocab_size} tokens",
                data.len() - cur.offset
            ));
        }
        Ok(Tokenizer {
            pieces,
            scores,
            lookup,
            max_token_length,
        })
    }

    /// Builds a SentencePiece-style vocabulary from pieces and merge scores (e.g. a GGUF
    /// `tokenizer.ggml.model = "llama"` vocabulary, with `▁` already replaced by a space).
    ///
    /// Like llama2.c, encoding assumes ids 1 and 2 are BOS/EOS and ids 3..=258 are the byte
    /// pieces `<0x00>`..`<0xFF>`; this is checked. Rejects mismatched lengths, non-finite
    /// scores, over-long pieces and vocabularies outside 259..=u32::MAX.
    pub fn from_vocab(pieces: Vec<Vec<u8>>, scores: Vec<f32>) -> Result<Tokenizer, EngineError> {
        let invalid = |msg: String| Err(EngineError::TokenizerInvalid(msg));
        if pieces.len() != scores.len() {
            return invalid(format!(
                "{} pieces but {} scores",
                pieces.len(),
                scores.len()
            ));
        }
        if pieces.len() < (BYTE_OFFSET as usize + 256) || pieces.len() > u32::MAX as usize {
            return invalid(format!(
                "vocabulary of {} tokens is outside 259..=2^32-1",
                pieces.len()
            ));
        }
        for b in 0..=255u8 {
            if parse_byte_piece(&pieces[BYTE_OFFSET as usize + b as usize]) != Some(b) {
                return invalid(format!(
                    "token {} is not the byte piece <0x{b:02X}>",
                    b as u32 + BYTE_OFFSET
                ));
            }
        }
        if let Some(id) = scores.iter().position(|s| !s.is_finite()) {
            return invalid(format!("token {id} has a non-finite score"));
        }
        let max_token_length = pieces.iter().map(Vec::len).max().unwrap_or(1).max(1);
        if max_token_length > MAX_TOKEN_LENGTH {
            return invalid(format!("a piece is longer than {MAX_TOKEN_LENGTH} bytes"));
        }
        let mut lookup = HashMap::with_capacity(pieces.len());
        for (id, p) in pieces.iter().enumerate() {
            lookup.entry(p.clone()).or_insert(id as u32);
        }
        Ok(Tokenizer {
            pieces,
            scores,
            lookup,
            max_token_length,
        })
    }

    /// Number of tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.pieces.len()
    }

    /// Longest piece, in bytes, as declared by the file.
    pub fn max_token_length(&self) -> usize {
        self.max_token_length
    }

    /// Raw bytes of a token's piece (`None` for an out-of-range id).
    pub fn piece(&self, id: u32) -> Option<&[u8]> {
        self.pieces.get(id as usize).map(Vec::as_slice)
    }

    /// Encodes `text` exactly like llama2.c's `encode(t, text, bos, eos, ...)`.
    ///
    /// Optional BOS, then a dummy-prefix `" "` token when `text` is non-empty (SentencePiece's
    /// `add_dummy_prefix`), then one token per UTF-8 codepoint (byte fallback `<0xXX>` = byte + 3
    /// when the codepoint is not a piece), then repeatedly merge the adjacent pair whose
    /// concatenation is the best-scoring piece (leftmost on ties), then optional EOS.
    pub fn encode(&self, text: &str, bos: bool, eos: bool) -> Vec<u32> {
        let mut tokens = Vec::with_capacity(text.len() + 3);
        if bos {
            tokens.push(BOS);
        }
        self.push_unmerged(text, &mut tokens);
        self.merge(&mut tokens);
        if eos {
            tokens.push(EOS);
        }
        tokens
    }

    /// Appends the dummy prefix plus one token per codepoint (or per byte, as fallback),
    /// before merges.
    fn push_unmerged(&self, text: &str, tokens: &mut Vec<u32>) {
        if !text.is_empty() {
            // llama2.c would push -1 if " " were missing; we just skip the prefix then.
            if let Some(&id) = self.lookup.get(&b" "[..]) {
                tokens.push(id);
            }
        }
        let mut utf8 = [0u8; 4];
        for c in text.chars() {
            let bytes = c.encode_utf8(&mut utf8).as_bytes();
            match self.lookup.get(bytes) {
                Some(&id) => tokens.push(id),
                None => tokens.extend(bytes.iter().map(|&b| u32::from(b) + BYTE_OFFSET)),
            }
        }
    }

    /// Id and score of the piece `a ++ b`, if that piece exists and llama2.c would merge it
    /// (llama2.c starts its search from -1e10 with a strict `>`, so lower scores never merge).
    fn pair(&self, a: u32, b: u32, buf: &mut Vec<u8>) -> Option<(f32, u32)> {
        let (pa, pb) = (self.piece(a)?, self.piece(b)?);
        buf.clear();
        buf.extend_from_slice(pa);
        buf.extend_from_slice(pb);
        let id = *self.lookup.get(&buf[..])?;
        let score = self.scores[id as usize];
        (score > -1e10).then_some((score, id))
    }

    /// Applies llama2.c's greedy merges: repeatedly replace the adjacent pair whose
    /// concatenation is the highest-scoring piece, the leftmost pair on ties. Like llama2.c it
    /// runs over the whole vector, BOS included.
    ///
    /// llama2.c rescans every pair after each merge (O(n^2)); this gives the same result in
    /// O(n log n) with a heap of candidate pairs ordered by (score, leftmost) and a linked list,
    /// so a long prompt cannot stall the engine. Heap entries made stale by a merge are detected
    /// with per-node versions and skipped.
    fn merge(&self, tokens: &mut Vec<u32>) {
        #[derive(PartialEq)]
        struct Cand {
            score: f32,
            left: usize,
            right: usize,
            id: u32,
            left_version: u32,
            right_version: u32,
        }
        impl Eq for Cand {}
        impl Ord for Cand {
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                // Max-heap: higher score first, then the smaller (leftmost) position. Original
                // indices preserve sequence order, so "smallest index" is "leftmost now".
                self.score
                    .total_cmp(&other.score)
                    .then_with(|| other.left.cmp(&self.left))
            }
        }
        impl PartialOrd for Cand {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }

        let n = tokens.len();
        if n < 2 {
            return;
        }
        const NONE: usize = usize::MAX;
        let mut next: Vec<usize> = (1..=n).map(|i| if i < n { i } else { NONE }).collect();
        let mut prev: Vec<usize> = (0..n).map(|i| i.checked_sub(1).unwrap_or(NONE)).collect();
        let mut alive = vec![true; n];
        let mut version = vec![0u32; n];
        let mut buf = Vec::with_capacity(self.max_token_length * 2);
        let mut heap = std::collections::BinaryHeap::with_capacity(n);
        let mut push = |heap: &mut std::collections::BinaryHeap<Cand>,
                        tokens: &[u32],
                        version: &[u32],
                        left: usize,
                        right: usize| {
            if let Some((score, id)) = self.pair(tokens[left], tokens[right], &mut buf) {
                heap.push(Cand {
                    score,
                    left,
                    right,
                    id,
                    left_version: version[left],
                    right_version: version[right],
                });
            }
        };
        for i in 0..n - 1 {
            push(&mut heap, tokens, &version, i, i + 1);
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
            // Merge right into left.
            tokens[c.left] = c.id;
            version[c.left] += 1;
            alive[c.right] = false;
            let after = next[c.right];
            next[c.left] = after;
            if after != NONE {
                prev[after] = c.left;
                push(&mut heap, tokens, &version, c.left, after);
            }
            let before = prev[c.left];
            if before != NONE {
                push(&mut heap, tokens, &version, before, c.left);
            }
        }
        let mut w = 0;
        for r in 0..n {
            if alive[r] {
                tokens[w] = tokens[r];
                w += 1;
            }
        }
        tokens.truncate(w);
    }

    /// Bytes to print for `token` following `prev`, like llama2.c's `decode`: the leading
    /// space of the first piece after BOS is dropped, and `<0xXX>` pieces become the raw byte.
    pub fn decode(&self, prev: u32, token: u32) -> &[u8] {
        let Some(mut piece) = self.piece(token) else {
            return &[];
        };
        if prev == BOS && piece.first() == Some(&b' ') {
            piece = &piece[1..];
        }
        match parse_byte_piece(piece) {
            Some(b) => &BYTE_PIECES[b as usize..b as usize + 1],
            None => piece,
        }
    }
}

/// Recognises `<0xHH>` (two hex digits, either case).
fn parse_byte_piece(piece: &[u8]) -> Option<u8> {
    match piece {
        [b'<', b'0', b'x', hi, lo, b'>'] => {
            let hex = |c: u8| (c as char).to_digit(16);
            Some((hex(*hi)? * 16 + hex(*lo)?) as u8)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a tokenizer file from (score, piece) pairs, padded with byte pieces.
    pub(crate) fn build(extra: &[(f32, &str)]) -> Vec<u8> {
        let mut toks: Vec<(f32, Vec<u8>)> = vec![
            (0.0, b"<unk>".to_vec()),
            (0.0, b"\n<s>\n".to_vec()),
            (0.0, b"\n</s>\n".to_vec()),
        ];
        for b in 0..=255u8 {
            toks.push((0.0, format!("<0x{b:02X}>").into_bytes()));
        }
        toks.extend(extra.iter().map(|(s, p)| (*s, p.as_bytes().to_vec())));
        let max = toks.iter().map(|t| t.1.len()).max().unwrap_or(1) as i32;
        let mut out = max.to_le_bytes().to_vec();
        for (s, p) in toks {
            out.extend_from_slice(&s.to_le_bytes());
            out.extend_from_slice(&(p.len() as i32).to_le_bytes());
            out.extend_from_slice(&p);
        }
        out
    }

    /// llama2.c's literal O(n^2) merge loop, kept to check the heap version against.
    fn merge_naive(t: &Tokenizer, tokens: &mut Vec<u32>) {
        let mut buf = Vec::new();
        loop {
            let mut best: Option<(f32, usize, u32)> = None;
            for (i, w) in tokens.windows(2).enumerate() {
                if let Some((score, id)) = t.pair(w[0], w[1], &mut buf)
                    && best.is_none_or(|b| score > b.0)
                {
                    best = Some((score, i, id));
                }
            }
            let Some((_, i, id)) = best else { break };
            tokens[i] = id;
            tokens.remove(i + 1);
        }
    }

    #[test]
    fn heap_merge_matches_naive_merge() {
        // A vocabulary full of ties and overlapping merges over a 3-letter alphabet.
        let mut extra: Vec<(f32, String)> = vec![(0.0, " ".into())];
        let letters = ["a", "b", "c"];
        for x in letters {
            extra.push((0.0, x.into()));
            for y in letters {
                let score = if x == y { 1.0 } else { 2.0 };
                extra.push((score, format!("{x}{y}")));
                for z in letters {
                    extra.push((score + 1.0, format!("{x}{y}{z}")));
                }
            }
        }
        extra.push((5.0, "abab".into()));
        extra.push((5.0, " ab".into()));
        extra.push((-2e10, "cccc".into()));
        let refs: Vec<(f32, &str)> = extra.iter().map(|(s, p)| (*s, p.as_str())).collect();
        let t = Tokenizer::from_bytes(&build(&refs), 259 + refs.len()).expect("valid");
        // Every string over {a, b, c, é} up to length 7, plus some long ones.
        let alphabet = ['a', 'b', 'c', 'é'];
        let mut inputs = vec![String::new()];
        let mut frontier = vec![String::new()];
        for _ in 0..7 {
            frontier = frontier
                .iter()
                .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                .collect();
            inputs.extend(frontier.iter().cloned());
        }
        inputs.push("abcabcabccbaaabbbcccababab".repeat(20));
        for s in &inputs {
            let mut naive = vec![BOS];
            t.push_unmerged(s, &mut naive);
            merge_naive(&t, &mut naive);
            assert_eq!(t.encode(s, true, false), naive, "{s:?}");
        }
    }

    #[test]
    fn byte_piece_parsing() {
        assert_eq!(parse_byte_piece(b"<0x0A>"), Some(10));
        assert_eq!(parse_byte_piece(b"<0xff>"), Some(255));
        assert_eq!(parse_byte_piece(b"<0xG0>"), None);
        assert_eq!(parse_byte_piece(b"<0x0A"), None);
    }

    #[test]
    fn merges_best_score_first_leftmost_on_ties() {
        // "ab" (score 1) beats "bc" (score 0.5); then "abc" (score 2) from "ab"+"c".
        let data = build(&[
            (0.0, " "),
            (0.0, "a"),
            (0.0, "b"),
            (0.0, "c"),
            (1.0, "ab"),
            (0.5, "bc"),
            (2.0, "abc"),
        ]);
        let t = Tokenizer::from_bytes(&data, 259 + 7).expect("valid");
        let id = |s: &str| t.lookup[s.as_bytes()];
        assert_eq!(t.encode("abc", false, false), vec![id(" "), id("abc")]);
        // Tie: "aa" appears twice in "aaa"; the leftmost pair merges.
        let data = build(&[(0.0, " "), (0.0, "a"), (1.0, "aa")]);
        let t = Tokenizer::from_bytes(&data, 262).expect("valid");
        let id = |s: &str| t.lookup[s.as_bytes()];
        assert_eq!(
            t.encode("aaa", true, true),
            vec![BOS, id(" "), id("aa"), id("a"), EOS]
        );
    }

    #[test]
    fn very_low_scores_never_merge() {
        let data = build(&[(0.0, " "), (0.0, "a"), (-1e11, "aa")]);
        let t = Tokenizer::from_bytes(&data, 262).expect("valid");
        assert_eq!(t.encode("aa", false, false).len(), 3);
    }

    #[test]
    fn byte_fallback_and_missing_space() {
        let data = build(&[]);
        let t = Tokenizer::from_bytes(&data, 259).expect("valid");
        // No " " piece: no dummy prefix; every byte falls back to id byte+3.
        assert_eq!(t.encode("é", false, false), vec![0xC3 + 3, 0xA9 + 3]);
        assert_eq!(t.decode(BOS, 0xC3 + 3), &[0xC3]);
    }
}
