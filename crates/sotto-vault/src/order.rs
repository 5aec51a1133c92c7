//! Fractional indexing: order keys that sort as plain byte strings, so moving an item
//! rewrites only that item. This is David Greenspan's algorithm ("Implementing Fractional
//! Indexing", 2020) over base-62 digits `0-9A-Za-z`, producing exactly the keys of the
//! widely used JavaScript `fractional-indexing` package (and its Python port), so a browser
//! client may use either.
//!
//! A key is an *integer part* — a head letter giving its length (`a`..`z`: 2..27 chars,
//! `A`..`Z`: 27..2 chars) and that many minus one digits — then an optional *fraction* that
//! never ends in `0`. Appending or prepending repeatedly grows keys logarithmically; a
//! first key is `"a0"`.

use crate::error::{Result, VaultError};

/// The base-62 digits, in ASCII (and so sort) order.
pub const DIGITS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const BASE: usize = 62;
/// Longest key accepted (defensive bound; real keys are a few characters).
pub const MAX_KEY_LEN: usize = 1024;
const SMALLEST_INTEGER: &[u8; 27] = b"A00000000000000000000000000";

fn digit(c: u8) -> Result<usize> {
    match c {
        b'0'..=b'9' => Ok((c - b'0') as usize),
        b'A'..=b'Z' => Ok((c - b'A') as usize + 10),
        b'a'..=b'z' => Ok((c - b'a') as usize + 36),
        _ => Err(VaultError::OrderKeyInvalid),
    }
}

fn integer_len(head: u8) -> Result<usize> {
    match head {
        b'a'..=b'z' => Ok((head - b'a') as usize + 2),
        b'A'..=b'Z' => Ok((b'Z' - head) as usize + 2),
        _ => Err(VaultError::OrderKeyInvalid),
    }
}

fn integer_part(key: &[u8]) -> Result<&[u8]> {
    let n = integer_len(*key.first().ok_or(VaultError::OrderKeyInvalid)?)?;
    key.get(..n).ok_or(VaultError::OrderKeyInvalid)
}

fn validate(key: &[u8]) -> Result<()> {
    if key.is_empty() || key.len() > MAX_KEY_LEN || key == SMALLEST_INTEGER {
        return Err(VaultError::OrderKeyInvalid);
    }
    for &c in key {
        digit(c)?;
    }
    let i = integer_part(key)?;
    if key.len() > i.len() && key.last() == Some(&b'0') {
        return Err(VaultError::OrderKeyInvalid);
    }
    Ok(())
}

/// Checks that `key` is a valid order key.
pub fn validate_order_key(key: &str) -> Result<()> {
    validate(key.as_bytes())
}

/// A fraction strictly between fractions `a` and `b` (`None` = 1), neither ending in `0`.
fn midpoint(a: &[u8], b: Option<&[u8]>) -> Result<Vec<u8>> {
    if let Some(b) = b
        && a >= b
    {
        return Err(VaultError::OrderKeysOutOfOrder);
    }
    if a.last() == Some(&b'0') || b.and_then(|b| b.last()) == Some(&b'0') {
        return Err(VaultError::OrderKeyInvalid);
    }
    if let Some(b) = b {
        // Strip the longest common prefix, reading `a` as padded with zeros.
        let mut n = 0;
        while n < b.len() && a.get(n).copied().unwrap_or(b'0') == b[n] {
            n += 1;
        }
        if n > 0 {
            let mut out = b[..n].to_vec();
            out.extend(midpoint(a.get(n..).unwrap_or(&[]), Some(&b[n..]))?);
            return Ok(out);
        }
    }
    let da = match a.first() {
        Some(&c) => digit(c)?,
        None => 0,
    };
    let db = match b {
        Some(b) => digit(*b.first().ok_or(VaultError::OrderKeyInvalid)?)?,
        None => BASE,
    };
    if db > da + 1 {
        // Round half up, as the reference implementation's Math.round.
        return Ok(vec![DIGITS[(da + db).div_ceil(2)]]);
    }
    if let Some(b) = b
        && b.len() > 1
    {
        return Ok(vec![b[0]]);
    }
    let mut out = vec![DIGITS[da]];
    out.extend(midpoint(a.get(1..).unwrap_or(&[]), None)?);
    Ok(out)
}

fn increment_integer(x: &[u8]) -> Result<Option<Vec<u8>>> {
    let (&head, digits) = x.split_first().ok_or(VaultError::OrderKeyInvalid)?;
    let mut digs = digits.to_vec();
    let mut carry = true;
    for d in digs.iter_mut().rev() {
        let v = digit(*d)? + 1;
        if v == BASE {
            *d = b'0';
        } else {
            *d = DIGITS[v];
            carry = false;
            break;
        }
    }
    if !carry {
        let mut out = vec![head];
        out.extend(digs);
        return Ok(Some(out));
    }
    match head {
        b'Z' => Ok(Some(b"a0".to_vec())),
        b'z' => Ok(None),
        _ => {
            let h = head + 1;
            if h > b'a' {
                digs.push(b'0');
            } else {
                digs.pop();
            }
            let mut out = vec![h];
            out.extend(digs);
            Ok(Some(out))
        }
    }
}

fn decrement_integer(x: &[u8]) -> Result<Option<Vec<u8>>> {
    let (&head, digits) = x.split_first().ok_or(VaultError::OrderKeyInvalid)?;
    let mut digs = digits.to_vec();
    let mut borrow = true;
    for d in digs.iter_mut().rev() {
        let v = digit(*d)?;
        if v == 0 {
            *d = DIGITS[BASE - 1];
        } else {
            *d = DIGITS[v - 1];
            borrow = false;
            break;
        }
    }
    if !borrow {
        let mut out = vec![head];
        out.extend(digs);
        return Ok(Some(out));
    }
    match head {
        b'a' => Ok(Some(b"Zz".to_vec())),
        b'A' => Ok(None),
        _ => {
            let h = head - 1;
            if h < b'Z' {
                digs.push(DIGITS[BASE - 1]);
            } else {
                digs.pop();
            }
            let mut out = vec![h];
            out.extend(digs);
            Ok(Some(out))
        }
    }
}

fn string(v: Vec<u8>) -> String {
    String::from_utf8(v).expect("base-62 digits are ASCII")
}

/// A key strictly between `a` and `b` (`None`: before the first / after the last; both
/// `None`: the first key, `"a0"`).
pub fn key_between(a: Option<&str>, b: Option<&str>) -> Result<String> {
    let a = a.map(str::as_bytes);
    let b = b.map(str::as_bytes);
    if let Some(a) = a {
        validate(a)?;
    }
    if let Some(b) = b {
        validate(b)?;
    }
    if let (Some(a), Some(b)) = (a, b)
        && a >= b
    {
        return Err(VaultError::OrderKeysOutOfOrder);
    }
    match (a, b) {
        (None, None) => Ok("a0".into()),
        (None, Some(b)) => {
            let ib = integer_part(b)?;
            let fb = &b[ib.len()..];
            if ib == SMALLEST_INTEGER {
                let mut out = ib.to_vec();
                out.extend(midpoint(&[], Some(fb))?);
                return Ok(string(out));
            }
            if ib.len() < b.len() {
                return Ok(string(ib.to_vec()));
            }
            decrement_integer(ib)?
                .map(string)
                .ok_or(VaultError::OrderKeyExhausted)
        }
        (Some(a), None) => {
            let ia = integer_part(a)?;
            let fa = &a[ia.len()..];
            match increment_integer(ia)? {
                Some(i) => Ok(string(i)),
                None => {
                    let mut out = ia.to_vec();
                    out.extend(midpoint(fa, None)?);
                    Ok(string(out))
                }
            }
        }
        (Some(a), Some(b)) => {
            let ia = integer_part(a)?;
            let fa = &a[ia.len()..];
            let ib = integer_part(b)?;
            let fb = &b[ib.len()..];
            if ia == ib {
                let mut out = ia.to_vec();
                out.extend(midpoint(fa, Some(fb))?);
                return Ok(string(out));
            }
            let i = increment_integer(ia)?.ok_or(VaultError::OrderKeyExhausted)?;
            if i.as_slice() < b {
                return Ok(string(i));
            }
            let mut out = ia.to_vec();
            out.extend(midpoint(fa, None)?);
            Ok(string(out))
        }
    }
}

/// `n` keys in order strictly between `a` and `b` (e.g. to order a batch of new items).
pub fn keys_between(a: Option<&str>, b: Option<&str>, n: usize) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::with_capacity(n);
    for _ in 0..n {
        let k = key_between(out.last().map(String::as_str).or(a), b)?;
        out.push(k);
    }
    Ok(out)
}
