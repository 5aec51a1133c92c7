//! Pure three-way merges for concurrent edits of one item by two devices. The client's
//! optimistic-concurrency loop (write version v+1; on conflict fetch the store's v+1, merge
//! with the common base v, write v+2) lives in the client; these functions are the merge.
//!
//! Rules (all symmetric: `merge(base, a, b) == merge(base, b, a)`):
//! - Messages: those of `base` still present on both sides keep their order; a message
//!   removed on either side is removed; messages added on either side are all kept, and
//!   appended ordered by `(created_at, device, id)`. A message id on both sides with
//!   different contents (not expected: messages are immutable) resolves like a field.
//! - Fields (title, model, folder, order key, name, instructions): a side that left the
//!   field as in `base` yields to the other; if both changed it, the side with the later
//!   `(updated_at, updated_by)` wins, and for identical stamps the greater value (so the
//!   result never depends on argument order).

use core::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use crate::model::{Conversation, Folder, Message};

fn pick<T: Clone + Ord>(base: Option<&T>, ours: &T, theirs: &T, stamp: Ordering) -> T {
    if ours == theirs || base == Some(theirs) {
        return ours.clone();
    }
    if base == Some(ours) {
        return theirs.clone();
    }
    match stamp {
        Ordering::Greater => ours.clone(),
        Ordering::Less => theirs.clone(),
        Ordering::Equal => ours.max(theirs).clone(),
    }
}

fn index(msgs: &[Message]) -> BTreeMap<&str, &Message> {
    let mut m = BTreeMap::new();
    for msg in msgs {
        m.entry(msg.id.as_str()).or_insert(msg);
    }
    m
}

fn merge_messages(
    base: &[Message],
    ours: &[Message],
    theirs: &[Message],
    stamp: Ordering,
) -> Vec<Message> {
    let o = index(ours);
    let t = index(theirs);
    let mut base_ids = BTreeSet::new();
    let mut out = Vec::with_capacity(ours.len().max(theirs.len()));
    for m in base {
        if !base_ids.insert(m.id.as_str()) {
            continue;
        }
        if let (Some(a), Some(b)) = (o.get(m.id.as_str()), t.get(m.id.as_str())) {
            out.push(pick(Some(m), *a, *b, stamp));
        }
    }
    let mut added: BTreeMap<&str, Message> = BTreeMap::new();
    for (id, a) in &o {
        if !base_ids.contains(id) {
            let m = match t.get(id) {
                Some(b) => pick(None, *a, *b, stamp),
                None => (*a).clone(),
            };
            added.insert(id, m);
        }
    }
    for (id, b) in &t {
        if !base_ids.contains(id) && !o.contains_key(id) {
            added.insert(id, (*b).clone());
        }
    }
    let mut added: Vec<Message> = added.into_values().collect();
    added.sort_by(|x, y| {
        (x.created_at, &x.device, &x.id, x).cmp(&(y.created_at, &y.device, &y.id, y))
    });
    out.extend(added);
    out
}

/// Three-way merge of a conversation edited concurrently; `base` is the last version both
/// sides had (or `None` if there is none). No appended message is lost.
pub fn merge_conversation(
    base: Option<&Conversation>,
    ours: &Conversation,
    theirs: &Conversation,
) -> Conversation {
    let stamp = (ours.updated_at, &ours.updated_by).cmp(&(theirs.updated_at, &theirs.updated_by));
    let (newer_at, newer_by) = match stamp {
        Ordering::Less => (theirs.updated_at, theirs.updated_by.clone()),
        _ => (ours.updated_at, ours.updated_by.clone()),
    };
    Conversation {
        title: pick(base.map(|b| &b.title), &ours.title, &theirs.title, stamp),
        messages: merge_messages(
            base.map(|b| &b.messages[..]).unwrap_or(&[]),
            &ours.messages,
            &theirs.messages,
            stamp,
        ),
        model: pick(base.map(|b| &b.model), &ours.model, &theirs.model, stamp),
        folder_id: pick(
            base.map(|b| &b.folder_id),
            &ours.folder_id,
            &theirs.folder_id,
            stamp,
        ),
        order_key: pick(
            base.map(|b| &b.order_key),
            &ours.order_key,
            &theirs.order_key,
            stamp,
        ),
        created_at: ours.created_at.min(theirs.created_at),
        updated_at: newer_at,
        updated_by: newer_by,
    }
}

/// Three-way merge of a folder: per field, as for conversations.
pub fn merge_folder(base: Option<&Folder>, ours: &Folder, theirs: &Folder) -> Folder {
    let stamp = (ours.updated_at, &ours.updated_by).cmp(&(theirs.updated_at, &theirs.updated_by));
    let newer = if stamp == Ordering::Less {
        theirs
    } else {
        ours
    };
    Folder {
        name: pick(base.map(|b| &b.name), &ours.name, &theirs.name, stamp),
        instructions: pick(
            base.map(|b| &b.instructions),
            &ours.instructions,
            &theirs.instructions,
            stamp,
        ),
        order_key: pick(
            base.map(|b| &b.order_key),
            &ours.order_key,
            &theirs.order_key,
            stamp,
        ),
        updated_at: newer.updated_at,
        updated_by: newer.updated_by.clone(),
    }
}
