//! Tokenizer behaviour with the real tok512 vocabulary (llama2.c semantics).

mod common;

use common::*;
use sotto_engine::{BOS, EOS, Tokenizer};

fn tok() -> &'static Tokenizer {
    model().tokenizer().expect("a llama2.c model")
}

fn id(piece: &str) -> u32 {
    (0..tok().vocab_size() as u32)
        .find(|&i| tok().piece(i) == Some(piece.as_bytes()))
        .expect("piece in vocab")
}

/// Decodes like llama2.c prints: each token's piece given its predecessor.
fn decode_all(tokens: &[u32]) -> Vec<u8> {
    tokens
        .windows(2)
        .flat_map(|w| tok().decode(w[0], w[1]).to_vec())
        .collect()
}

#[test]
fn empty_prompt_is_just_bos() {
    assert_eq!(tok().encode("", true, false), vec![BOS]);
    assert_eq!(tok().encode("", false, false), Vec::<u32>::new());
    assert_eq!(tok().encode("", true, true), vec![BOS, EOS]);
    assert_eq!(model().count_tokens(""), 1);
}

#[test]
fn dummy_prefix_and_merges() {
    // " Lily" is a single piece in tok512 thanks to the dummy-prefix space.
    let t = tok().encode("Lily", true, false);
    assert_eq!(t[0], BOS);
    assert_eq!(tok().piece(t[1]).map(|p| p[0]), Some(b' '));
    assert_eq!(decode_all(&t), b"Lily");
    // Merging makes the sequence much shorter than one token per character.
    let text = "Once upon a time, there was a little girl named Lily.";
    let t = tok().encode(text, true, false);
    assert!(t.len() < text.len() / 2, "{} tokens", t.len());
    assert_eq!(decode_all(&t), text.as_bytes());
}

#[test]
fn known_encoding_of_once_upon_a_time() {
    let t = tok().encode("Once upon a time", true, false);
    let pieces: Vec<String> = t[1..]
        .iter()
        .map(|&i| String::from_utf8_lossy(tok().piece(i).expect("piece")).into_owned())
        .collect();
    // Concatenated pieces are the text with the dummy-prefix space.
    assert_eq!(pieces.concat(), " Once upon a time");
}

#[test]
fn byte_fallback_for_unknown_codepoints() {
    // '€' is a whole piece in tok512, looked up as one codepoint.
    assert_eq!(tok().encode("€", false, false), vec![id(" "), id("€")]);
    // '🦀' (F0 9F A6 80) is not: four byte tokens, id = byte + 3.
    let t = tok().encode("🦀", false, false);
    assert_eq!(t, vec![id(" "), 0xF0 + 3, 0x9F + 3, 0xA6 + 3, 0x80 + 3]);
    assert_eq!(tok().decode(0xF0 + 3, 0x9F + 3), &[0x9F]);
}

#[test]
fn decode_strips_space_only_after_bos() {
    let lily = id(" Lily");
    assert_eq!(tok().decode(BOS, lily), b"Lily");
    assert_eq!(tok().decode(lily, lily), b" Lily");
}

#[test]
fn raw_byte_pieces_decode_to_bytes() {
    assert_eq!(tok().piece(13), Some(&b"<0x0A>"[..]));
    assert_eq!(tok().decode(BOS, 13), b"\n");
    assert_eq!(tok().decode(100, 0xFF + 3), &[0xFF]);
}

#[test]
fn out_of_range_ids_decode_to_nothing() {
    assert_eq!(tok().decode(BOS, 512), b"");
    assert_eq!(tok().piece(u32::MAX), None);
}

#[test]
fn round_trips() {
    for text in [
        "a",
        " leading space",
        "two  spaces\nand a newline",
        "Unicode: é, ß, 日本語, 🦀",
        "\0nul and \x1b escape",
        "Tom's \"quote\" - dash.",
    ] {
        let t = tok().encode(text, true, false);
        assert_eq!(decode_all(&t), text.as_bytes(), "{text:?}");
        assert_eq!(model().count_tokens(text), t.len());
    }
}

#[test]
fn long_inputs_encode_fast_and_round_trip() {
    // Merging is O(n log n) (llama2.c's rescan is quadratic); 60 KB must be quick even in debug.
    let text = "Once upon a time, Lily saw a big red ball. ".repeat(1400);
    let start = std::time::Instant::now();
    let t = tok().encode(&text, true, false);
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(decode_all(&t), text.as_bytes());
    // Merges are local: the repeated sentence always encodes the same way.
    let one = tok().encode("Once upon a time, Lily saw a big red ball.", true, false);
    assert!(t.len() <= 1400 * one.len());
}
