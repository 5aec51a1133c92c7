//! Fractional indexing: reference vectors and ordering/length properties.

mod common;

use common::TestRng;
use proptest::prelude::*;
use sotto_vault::order::{key_between, keys_between, validate_order_key};

/// Vectors of the reference JavaScript implementation (`fractional-indexing`), which a
/// browser client may use interchangeably.
#[test]
fn reference_vectors() {
    let ok: &[(Option<&str>, Option<&str>, &str)] = &[
        (None, None, "a0"),
        (None, Some("a0"), "Zz"),
        (None, Some("Zz"), "Zy"),
        (Some("a0"), None, "a1"),
        (Some("a1"), None, "a2"),
        (Some("a0"), Some("a1"), "a0V"),
        (Some("a1"), Some("a2"), "a1V"),
        (Some("a0V"), Some("a1"), "a0l"),
        (Some("Zz"), Some("a0"), "ZzV"),
        (Some("Zz"), Some("a1"), "a0"),
        (None, Some("Y00"), "Xzzz"),
        (Some("bzz"), None, "c000"),
        (Some("a0"), Some("a0V"), "a0G"),
        (Some("a0"), Some("a0G"), "a08"),
        (Some("b125"), Some("b129"), "b127"),
        (Some("a0"), Some("a1V"), "a1"),
        (Some("Zz"), Some("a01"), "a0"),
        (None, Some("a0V"), "a0"),
        (None, Some("b999"), "b99"),
        (
            None,
            Some("A000000000000000000000000001"),
            "A000000000000000000000000000V",
        ),
        (
            Some("zzzzzzzzzzzzzzzzzzzzzzzzzzy"),
            None,
            "zzzzzzzzzzzzzzzzzzzzzzzzzzz",
        ),
        (
            Some("zzzzzzzzzzzzzzzzzzzzzzzzzzz"),
            None,
            "zzzzzzzzzzzzzzzzzzzzzzzzzzzV",
        ),
    ];
    for (a, b, want) in ok {
        assert_eq!(&key_between(*a, *b).unwrap(), want, "{a:?} {b:?}");
    }
    let bad: &[(Option<&str>, Option<&str>, &str)] = &[
        (
            None,
            Some("A00000000000000000000000000"),
            "ORDER_KEY_INVALID",
        ),
        (Some("a00"), None, "ORDER_KEY_INVALID"),
        (Some("a00"), Some("a1"), "ORDER_KEY_INVALID"),
        (Some("0"), Some("1"), "ORDER_KEY_INVALID"),
        (Some("a1"), Some("a0"), "ORDER_KEYS_OUT_OF_ORDER"),
        (Some("a1"), Some("a1"), "ORDER_KEYS_OUT_OF_ORDER"),
        (Some("a"), None, "ORDER_KEY_INVALID"),
        (Some(""), None, "ORDER_KEY_INVALID"),
        (Some("a0-"), None, "ORDER_KEY_INVALID"),
    ];
    for (a, b, want) in bad {
        assert_eq!(
            key_between(*a, *b).unwrap_err().code(),
            *want,
            "{a:?} {b:?}"
        );
    }
    assert_eq!(keys_between(None, None, 3).unwrap(), vec!["a0", "a1", "a2"]);
    assert_eq!(
        keys_between(Some("a0"), None, 3).unwrap(),
        vec!["a1", "a2", "a3"]
    );
}

fn check_sorted(keys: &[String]) {
    for w in keys.windows(2) {
        assert!(w[0] < w[1], "{} !< {}", w[0], w[1]);
    }
    for k in keys {
        validate_order_key(k).unwrap();
    }
}

#[test]
fn appends_and_prepends_stay_short() {
    let mut keys: Vec<String> = Vec::new();
    for _ in 0..10_000 {
        let k = key_between(keys.last().map(String::as_str), None).unwrap();
        keys.push(k);
    }
    check_sorted(&keys);
    assert!(
        keys.iter().all(|k| k.len() <= 4),
        "appends grew past 4 chars"
    );

    let mut keys: Vec<String> = Vec::new();
    for _ in 0..10_000 {
        let k = key_between(None, keys.first().map(String::as_str)).unwrap();
        keys.insert(0, k);
    }
    check_sorted(&keys);
    assert!(
        keys.iter().all(|k| k.len() <= 4),
        "prepends grew past 4 chars"
    );
}

#[test]
fn random_inserts_stay_ordered_and_short() {
    let mut rng = TestRng::new("order");
    let mut keys: Vec<String> = Vec::new();
    for _ in 0..5_000 {
        let pos = if keys.is_empty() {
            0
        } else {
            (u32::from_be_bytes(rng.bytes()) as usize) % (keys.len() + 1)
        };
        let a = pos.checked_sub(1).map(|i| keys[i].as_str());
        let b = keys.get(pos).map(String::as_str);
        let k = key_between(a, b).unwrap();
        if let Some(a) = a {
            assert!(a < k.as_str());
        }
        if let Some(b) = b {
            assert!(k.as_str() < b);
        }
        keys.insert(pos, k);
    }
    check_sorted(&keys);
    let max = keys.iter().map(String::len).max().unwrap();
    let mean = keys.iter().map(String::len).sum::<usize>() as f64 / keys.len() as f64;
    assert!(max <= 12, "max key length {max}");
    assert!(mean <= 6.0, "mean key length {mean}");
}

#[test]
fn moving_one_item_rewrites_only_its_key() {
    // A move is a new key between the neighbours at the destination; no other key changes.
    let keys = keys_between(None, None, 5).unwrap();
    let moved = key_between(Some(&keys[0]), Some(&keys[1])).unwrap();
    let mut order: Vec<&str> = keys
        .iter()
        .map(String::as_str)
        .filter(|k| *k != keys[4])
        .collect();
    order.push(&moved);
    order.sort();
    assert_eq!(
        order,
        vec![keys[0].as_str(), &moved, &keys[1], &keys[2], &keys[3]]
    );
}

#[test]
fn repeated_inserts_in_one_gap() {
    let mut lo = key_between(None, None).unwrap();
    let hi = key_between(Some(&lo), None).unwrap();
    for _ in 0..200 {
        let k = key_between(Some(&lo), Some(&hi)).unwrap();
        assert!(lo < k && k < hi);
        lo = k;
    }
    // The adversarial pattern for midpoint schemes: each insert halves the same gap, so
    // keys grow by about one base-62 digit per five inserts (here 42 characters).
    assert!(lo.len() <= 45, "{}", lo.len());
}

proptest! {
    #[test]
    fn between_any_two_generated_keys(ops in proptest::collection::vec(any::<u16>(), 1..200)) {
        let mut keys: Vec<String> = Vec::new();
        for op in ops {
            let pos = op as usize % (keys.len() + 1);
            let a = pos.checked_sub(1).map(|i| keys[i].clone());
            let b = keys.get(pos).cloned();
            let k = key_between(a.as_deref(), b.as_deref()).unwrap();
            prop_assert!(a.as_deref().is_none_or(|a| a < k.as_str()));
            prop_assert!(b.as_deref().is_none_or(|b| k.as_str() < b));
            keys.insert(pos, k);
        }
    }

    #[test]
    fn arbitrary_strings_never_panic(a in ".{0,40}", b in ".{0,40}") {
        let _ = key_between(Some(&a), Some(&b));
        let _ = key_between(Some(&a), None);
        let _ = key_between(None, Some(&b));
        let _ = validate_order_key(&a);
    }

    #[test]
    fn alphabet_strings_never_panic(a in "[0-9A-Za-z]{0,30}", b in "[0-9A-Za-z]{0,30}") {
        if let Ok(k) = key_between(Some(&a), Some(&b)) {
            prop_assert!(a.as_str() < k.as_str() && k.as_str() < b.as_str());
        }
        if let Ok(k) = key_between(Some(&a), None) {
            prop_assert!(a.as_str() < k.as_str());
        }
        if let Ok(k) = key_between(None, Some(&b)) {
            prop_assert!(k.as_str() < b.as_str());
        }
    }
}
