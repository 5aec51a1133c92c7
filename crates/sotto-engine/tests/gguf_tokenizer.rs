//! GGUF vocabulary tokenizers: SentencePiece checked against the llama2.c tokenizer on the real
//! tok512 vocabulary, byte-level BPE on a small handmade vocabulary, and spec validation.

mod common;

use common::*;
use proptest::prelude::*;
use sotto_engine::{EngineError, GgufTokenizer, Tokenizer, VocabSpec};

/// tok512.bin re-expressed as GGUF metadata would hold it: SentencePiece `▁` instead of the
/// spaces llama2.c's export wrote, `<s>`/`</s>` as control tokens, `<0xNN>` as byte tokens.
fn tok512_spec() -> VocabSpec {
    let data = tokenizer_bytes();
    let word = |o: usize| <[u8; 4]>::try_from(&data[o..o + 4]).expect("4 bytes");
    let mut off = 4;
    let (mut tokens, mut scores, mut types) = (Vec::new(), Vec::new(), Vec::new());
    for id in 0..512 {
        let score = f32::from_le_bytes(word(off));
        let len = i32::from_le_bytes(word(off + 4)) as usize;
        let piece = String::from_utf8(data[off + 8..off + 8 + len].to_vec()).expect("utf8 piece");
        off += 8 + len;
        let (text, ty) = match id {
            0 => ("<unk>".to_string(), 2),
            1 => ("<s>".to_string(), 3),
            2 => ("</s>".to_string(), 3),
            3..=258 => (piece, 6),
            _ => (piece.replace(' ', "\u{2581}"), 1),
        };
        tokens.push(text);
        scores.push(score);
        types.push(ty);
    }
    assert_eq!(off, data.len(), "tok512 holds exactly 512 tokens");
    VocabSpec {
        model: "llama".into(),
        tokens,
        scores: Some(scores),
        token_types: Some(types),
        bos: Some(1),
        eos: Some(2),
        ..VocabSpec::default()
    }
}

fn spm() -> &'static GgufTokenizer {
    static T: std::sync::OnceLock<GgufTokenizer> = std::sync::OnceLock::new();
    T.get_or_init(|| GgufTokenizer::from_spec(tok512_spec()).expect("tok512 spec"))
}

fn llama2c() -> &'static Tokenizer {
    model().tokenizer().expect("a llama2.c model")
}

fn decode(t: &GgufTokenizer, ids: &[u32]) -> Vec<u8> {
    ids.iter()
        .flat_map(|&id| t.token_bytes(id).expect("id in range"))
        .collect()
}

#[test]
fn spm_matches_llama2c_on_fixed_strings() {
    for s in [
        "",
        "Once upon a time, there was a little girl named Lily.",
        "  leading and trailing  ",
        "a\nb\n\n",
        "€ héllo 中文 🙂",
        "Lily",
    ] {
        assert_eq!(
            spm().encode(s, true).expect("encode"),
            llama2c().encode(s, true, false),
            "{s:?}"
        );
    }
    assert_eq!(spm().vocab_size(), 512);
    assert_eq!(spm().bos(), Some(1));
    assert!(spm().add_bos_default());
}

#[test]
fn spm_special_text_and_stops() {
    // "<s>" written in text is BOS; the text after it gets a fresh dummy prefix.
    let ids = spm().encode("<s>Lily", false).expect("encode");
    assert_eq!(ids[0], 1);
    assert_eq!(ids[1..], llama2c().encode("Lily", false, false)[..]);
    assert!(spm().is_stop(2));
    assert!(!spm().is_stop(1));
    assert_eq!(spm().token_bytes(1), Some(Vec::new()));
    assert_eq!(spm().token_bytes(3 + 0x41), Some(vec![0x41]));
    assert_eq!(spm().token_bytes(512), None);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn spm_matches_llama2c(s in "[a-zA-Z0-9 ,.!?'\n<>/€é中🙂]{0,60}") {
        prop_assume!(!s.contains("<s>") && !s.contains("</s>") && !s.contains("<unk>"));
        prop_assert_eq!(spm().encode(&s, true).expect("encode"), llama2c().encode(&s, true, false));
    }

    #[test]
    fn spm_decodes_back(s in "\\PC{0,40}") {
        prop_assume!(!s.contains("<s>") && !s.contains("</s>") && !s.contains("<unk>"));
        let ids = spm().encode(&s, false).expect("encode");
        let expected = if s.is_empty() { String::new() } else { format!(" {s}") };
        prop_assert_eq!(decode(spm(), &ids), expected.into_bytes());
    }
}

// ---- byte-level BPE ----

/// GPT-2's byte-level character for byte `b`.
fn byte_char(b: u8) -> char {
    let printable = (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
    if printable {
        char::from(b)
    } else {
        let n = (0..b)
            .filter(|&x| !((33..=126).contains(&x) || (161..=172).contains(&x) || x >= 174))
            .count() as u32;
        char::from_u32(256 + n).expect("valid")
    }
}

const MERGES: &[&str] = &[
    "h e", "l l", "he ll", "hell o", "Ġ w", "Ġw o", "r l", "Ġwo rl", "Ġworl d", "a b", "b c",
];
const SPECIALS: &[&str] = &["<|im_start|>", "<|im_end|>", "<|endoftext|>"];

/// 256 byte tokens (id = byte), the merge results, "xyz" (reachable by no merge), the
/// specials (control) and "<think>" (user-defined).
fn bpe_spec(pre: &str, merges: &[&str]) -> VocabSpec {
    let mut tokens: Vec<String> = (0..=255u8).map(|b| byte_char(b).to_string()).collect();
    for m in MERGES {
        tokens.push(m.replace(' ', ""));
    }
    tokens.push("xyz".into());
    let mut types = vec![1; tokens.len()];
    for s in SPECIALS {
        tokens.push((*s).into());
        types.push(3);
    }
    tokens.push("<think>".into());
    types.push(4);
    VocabSpec {
        model: "gpt2".into(),
        pre: Some(pre.into()),
        merges: Some(merges.iter().map(|s| s.to_string()).collect()),
        token_types: Some(types),
        tokens,
        eos: Some(id_of_special("<|endoftext|>")),
        ..VocabSpec::default()
    }
}

fn id_of_special(s: &str) -> u32 {
    let i = SPECIALS.iter().position(|x| *x == s).expect("special");
    (256 + MERGES.len() + 1 + i) as u32
}

fn merged(text: &str) -> u32 {
    let i = MERGES
        .iter()
        .position(|m| m.replace(' ', "") == text)
        .expect("merge result");
    (256 + i) as u32
}

fn bpe(pre: &str) -> GgufTokenizer {
    GgufTokenizer::from_spec(bpe_spec(pre, MERGES)).expect("bpe spec")
}

#[test]
fn bpe_exact_ids() {
    let t = bpe("qwen2");
    assert_eq!(
        t.encode("hello world", false).expect("encode"),
        vec![merged("hello"), merged("Ġworld")]
    );
    // Specials in text are single ids; "user\n" splits into letters and a newline piece.
    let b = |c: u8| u32::from(c);
    assert_eq!(
        t.encode("<|im_start|>user\nhello<|im_end|>", false)
            .expect("encode"),
        vec![
            id_of_special("<|im_start|>"),
            b(b'u'),
            b(b's'),
            b(b'e'),
            b(b'r'),
            b(b'\n'),
            merged("hello"),
            id_of_special("<|im_end|>"),
        ]
    );
    // Lower rank first: "a b" (rank 9) beats "b c" (rank 10) ...
    assert_eq!(
        t.encode("abc", false).expect("encode"),
        vec![merged("ab"), b(b'c')]
    );
    // ... and swapping the ranks swaps the result.
    let mut swapped: Vec<&str> = MERGES.to_vec();
    swapped.swap(9, 10);
    let t2 = GgufTokenizer::from_spec(bpe_spec("qwen2", &swapped)).expect("spec");
    assert_eq!(
        t2.encode("abc", false).expect("encode"),
        vec![b(b'a'), merged("bc")]
    );
    // No add_bos key and no BOS: llama.cpp's default for qwen2 is no BOS.
    assert!(!t.add_bos_default());
    assert!(matches!(
        t.encode("x", true),
        Err(EngineError::TokenizerEncode(_))
    ));
}

#[test]
fn bpe_ignore_merges_only_for_llama3() {
    // "xyz" is a token no merge builds: Llama 3 takes whole-token pre-tokens as they are.
    let xyz = (256 + MERGES.len()) as u32;
    assert_eq!(
        bpe("llama-bpe").encode("xyz", false).expect("encode"),
        vec![xyz]
    );
    assert!(bpe("llama-bpe").add_bos_default());
    assert_eq!(
        bpe("qwen2").encode("xyz", false).expect("encode"),
        vec![u32::from(b'x'), u32::from(b'y'), u32::from(b'z')]
    );
}

#[test]
fn bpe_pre_tokenizers_differ_on_digits() {
    // qwen2 splits digits one by one; llama3 keeps groups of three; both are plain bytes here.
    assert_eq!(bpe("qwen2").encode("1234", false).expect("encode").len(), 4);
    assert_eq!(
        bpe("llama3").encode("1234", false).expect("encode").len(),
        4
    );
    for pre in ["gpt-2", "smollm", "default", "llama3", "qwen2"] {
        let t = bpe(pre);
        assert_eq!(
            decode(
                &t,
                &t.encode("it's 1234 hello  world\n\n", false)
                    .expect("encode")
            ),
            b"it's 1234 hello  world\n\n"
        );
    }
}

#[test]
fn bpe_token_bytes_and_stops() {
    let t = bpe("qwen2");
    assert_eq!(t.token_bytes(merged("Ġworld")), Some(b" world".to_vec()));
    assert_eq!(t.token_bytes(u32::from(b'\n')), Some(b"\n".to_vec()));
    assert_eq!(t.token_bytes(id_of_special("<|im_end|>")), Some(Vec::new()));
    let think = (256 + MERGES.len() + 1 + SPECIALS.len()) as u32;
    assert_eq!(t.token_bytes(think), Some(b"<think>".to_vec()));
    assert_eq!(t.token_bytes(think + 1), None);
    assert!(t.is_stop(id_of_special("<|im_end|>")));
    assert!(t.is_stop(id_of_special("<|endoftext|>")));
    assert!(!t.is_stop(id_of_special("<|im_start|>")));
    assert!(!t.is_stop(merged("hello")));
    assert_eq!(t.vocab_size(), 256 + MERGES.len() + 1 + SPECIALS.len() + 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn bpe_decodes_back(s in "\\PC{0,60}", pre in prop::sample::select(vec!["qwen2", "llama-bpe", "smollm", "gpt-2", "default"])) {
        prop_assume!(!s.contains("<|") && !s.contains("<think>"));
        let t = bpe(pre);
        let ids = t.encode(&s, false).expect("encode");
        prop_assert_eq!(decode(&t, &ids), s.as_bytes().to_vec());
    }

    #[test]
    fn bpe_specials_survive_any_surroundings(a in "\\PC{0,20}", b in "\\PC{0,20}") {
        prop_assume!(!a.contains('<') && !b.contains('<'));
        let t = bpe("qwen2");
        let ids = t.encode(&format!("{a}<|im_end|>{b}"), false).expect("encode");
        let count = ids.iter().filter(|&&i| i == id_of_special("<|im_end|>")).count();
        prop_assert_eq!(count, 1);
    }
}

// ---- spec validation ----

fn err(spec: VocabSpec) -> EngineError {
    GgufTokenizer::from_spec(spec).expect_err("spec must be rejected")
}

#[test]
fn bad_specs_are_rejected() {
    let base = || bpe_spec("qwen2", MERGES);
    let invalid = |spec: VocabSpec, what: &str| {
        let e = err(spec);
        assert_eq!(e.code(), "TOKENIZER_INVALID", "{what}: {e}");
    };
    invalid(
        VocabSpec {
            tokens: Vec::new(),
            ..base()
        },
        "empty vocab",
    );
    invalid(
        VocabSpec {
            merges: None,
            ..base()
        },
        "missing merges",
    );
    invalid(
        VocabSpec {
            merges: Some(vec!["nospace".into()]),
            ..base()
        },
        "merge without space",
    );
    invalid(
        VocabSpec {
            bos: Some(100_000),
            ..base()
        },
        "bos out of range",
    );
    invalid(
        VocabSpec {
            eos: Some(u32::MAX),
            ..base()
        },
        "eos out of range",
    );
    invalid(
        VocabSpec {
            eot: Some(300_000),
            ..base()
        },
        "eot out of range",
    );
    invalid(
        VocabSpec {
            scores: Some(vec![0.0; 3]),
            ..base()
        },
        "scores length",
    );
    let n = base().tokens.len();
    let mut scores = vec![0.0; n];
    scores[5] = f32::NAN;
    invalid(
        VocabSpec {
            scores: Some(scores),
            ..base()
        },
        "NaN score",
    );
    invalid(
        VocabSpec {
            token_types: Some(vec![1; 2]),
            ..base()
        },
        "types length",
    );
    invalid(
        VocabSpec {
            token_types: Some(vec![9; n]),
            ..base()
        },
        "unknown type",
    );
    let mut missing_byte = base();
    missing_byte.tokens[0x41] = "not a byte".into();
    invalid(missing_byte, "byte-level symbol missing");

    for (spec, what) in [
        (
            VocabSpec {
                model: "bert".into(),
                ..base()
            },
            "unknown model",
        ),
        (
            VocabSpec {
                pre: Some("klingon".into()),
                ..base()
            },
            "unknown pre",
        ),
    ] {
        let e = err(spec);
        assert_eq!(e.code(), "TOKENIZER_UNSUPPORTED", "{what}: {e}");
    }
}

#[test]
fn spm_without_fallback_reports_unencodable_text() {
    let spec = VocabSpec {
        model: "llama".into(),
        tokens: vec!["\u{2581}".into(), "a".into()],
        ..VocabSpec::default()
    };
    let t = GgufTokenizer::from_spec(spec).expect("spec");
    assert_eq!(t.encode("a a", false).expect("encode"), vec![0, 1, 0, 1]);
    let e = t.encode("secret é", false).expect_err("é has no token");
    assert_eq!(e.code(), "TOKENIZER_ENCODE");
    assert!(!e.to_string().contains("secret"));
    // With an <unk> token the same text encodes, é becoming <unk>.
    let spec = VocabSpec {
        model: "llama".into(),
        tokens: vec!["\u{2581}".into(), "a".into(), "<unk>".into()],
        token_types: Some(vec![1, 1, 2]),
        ..VocabSpec::default()
    };
    let t = GgufTokenizer::from_spec(spec).expect("spec");
    assert_eq!(t.encode("a é", false).expect("encode"), vec![0, 1, 0, 2]);
}

#[test]
fn tokenizer_is_send_sync() {
    // Shared in an Arc across generation threads, like `Model`.
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<GgufTokenizer>();
}
