//! Shared test helpers: deterministic "randomness" and fixtures.
#![allow(dead_code)]

use sotto_vault::*;

/// Deterministic byte source for tests (SHA-256 in counter mode over a label). Tests only:
/// real callers pass OS / WebCrypto randomness.
pub struct TestRng {
    label: Vec<u8>,
    counter: u64,
}

impl TestRng {
    pub fn new(label: &str) -> Self {
        TestRng {
            label: label.as_bytes().to_vec(),
            counter: 0,
        }
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        use sha2::{Digest, Sha256};
        for chunk in buf.chunks_mut(32) {
            let mut h = Sha256::new();
            h.update(&self.label);
            h.update(self.counter.to_be_bytes());
            self.counter += 1;
            let d = h.finalize();
            chunk.copy_from_slice(&d[..chunk.len()]);
        }
    }

    pub fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut a = [0u8; N];
        self.fill(&mut a);
        a
    }

    pub fn filler(&mut self) -> impl FnMut(&mut [u8]) + '_ {
        move |b: &mut [u8]| self.fill(b)
    }
}

pub const ACCOUNT: &[u8] = b"account-1";

pub fn credential(name: &str, account: &[u8]) -> CredentialKeys {
    let mut rng = TestRng::new(name);
    CredentialKeys::derive(
        &RootSecret::from_bytes(rng.bytes()),
        account,
        name.as_bytes(),
    )
    .unwrap()
}

pub fn conversation(title: &str) -> Conversation {
    Conversation {
        title: title.into(),
        messages: vec![Message {
            id: "m1".into(),
            role: Role::User,
            content: format!("hello from {title}"),
            created_at: 1_000,
            device: "laptop".into(),
        }],
        model: "stories260K".into(),
        folder_id: None,
        order_key: "a0".into(),
        created_at: 1_000,
        updated_at: 1_000,
        updated_by: "laptop".into(),
    }
}
