//! Three-way merges of concurrent edits by two devices.

mod common;

use common::*;
use proptest::prelude::*;
use sotto_vault::*;

fn msg(id: &str, at: u64, device: &str, content: &str) -> Message {
    Message {
        id: id.into(),
        role: Role::User,
        content: content.into(),
        created_at: at,
        device: device.into(),
    }
}

#[test]
fn both_devices_append_turns() {
    let base = conversation("Trip");
    let mut laptop = base.clone();
    laptop
        .messages
        .push(msg("l1", 2_000, "laptop", "question from laptop"));
    laptop
        .messages
        .push(msg("l2", 2_500, "laptop", "answer on laptop"));
    laptop.updated_at = 2_500;
    let mut phone = base.clone();
    phone
        .messages
        .push(msg("p1", 2_200, "phone", "question from phone"));
    phone.updated_at = 2_200;
    phone.updated_by = "phone".into();

    let m = merge_conversation(Some(&base), &laptop, &phone);
    let ids: Vec<&str> = m.messages.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["m1", "l1", "p1", "l2"]);
    assert_eq!(m.updated_at, 2_500);
    assert_eq!(m.updated_by, "laptop");
    assert_eq!(m, merge_conversation(Some(&base), &phone, &laptop));
}

#[test]
fn same_timestamp_orders_by_device() {
    let base = conversation("T");
    let mut a = base.clone();
    a.messages.push(msg("x", 5, "zeta", "z"));
    let mut b = base.clone();
    b.messages.push(msg("y", 5, "alpha", "a"));
    let m = merge_conversation(Some(&base), &a, &b);
    assert_eq!(m.messages[1].device, "alpha");
    assert_eq!(m.messages[2].device, "zeta");
}

#[test]
fn title_rename_and_concurrent_messages() {
    let base = conversation("Old title");
    let mut a = base.clone();
    a.title = "Renamed on laptop".into();
    a.updated_at = 3_000;
    let mut b = base.clone();
    b.messages.push(msg("p1", 2_000, "phone", "new turn"));
    b.updated_at = 4_000; // newer, but did not touch the title
    b.updated_by = "phone".into();
    let m = merge_conversation(Some(&base), &a, &b);
    assert_eq!(m.title, "Renamed on laptop");
    assert_eq!(m.messages.len(), 2);
    assert_eq!(m.updated_at, 4_000);
}

#[test]
fn title_conflict_last_writer_wins() {
    let base = conversation("Old");
    let mut a = base.clone();
    a.title = "A".into();
    a.updated_at = 10;
    let mut b = base.clone();
    b.title = "B".into();
    b.updated_at = 20;
    b.updated_by = "phone".into();
    assert_eq!(merge_conversation(Some(&base), &a, &b).title, "B");
    assert_eq!(merge_conversation(Some(&base), &b, &a).title, "B");
    // Equal stamps: deterministic regardless of argument order.
    b.updated_at = 10;
    b.updated_by = a.updated_by.clone();
    assert_eq!(
        merge_conversation(Some(&base), &a, &b).title,
        merge_conversation(Some(&base), &b, &a).title
    );
}

#[test]
fn folder_move_and_deletion_of_a_message() {
    let mut base = conversation("T");
    base.messages
        .push(msg("m2", 1_500, "laptop", "to be removed"));
    let mut a = base.clone();
    a.messages.retain(|m| m.id != "m2");
    a.updated_at = 2_000;
    let mut b = base.clone();
    b.folder_id = Some("f1".into());
    b.order_key = key_between(None, None).unwrap();
    b.updated_at = 1_900;
    let m = merge_conversation(Some(&base), &a, &b);
    assert_eq!(m.messages.len(), 1);
    assert_eq!(m.folder_id.as_deref(), Some("f1"));
}

#[test]
fn without_base_both_sides_survive() {
    let a = conversation("A");
    let mut b = conversation("B");
    b.messages[0].id = "other".into();
    let m = merge_conversation(None, &a, &b);
    assert_eq!(m.messages.len(), 2);
}

#[test]
fn folder_merge() {
    let base = Folder {
        name: "Work".into(),
        instructions: "Be brief.".into(),
        order_key: "a0".into(),
        updated_at: 1,
        updated_by: "laptop".into(),
    };
    let mut a = base.clone();
    a.name = "Job".into();
    a.updated_at = 2;
    let mut b = base.clone();
    b.instructions = "Be thorough.".into();
    b.updated_at = 3;
    b.updated_by = "phone".into();
    let m = merge_folder(Some(&base), &a, &b);
    assert_eq!(m.name, "Job");
    assert_eq!(m.instructions, "Be thorough.");
    assert_eq!(m.updated_at, 3);
    assert_eq!(m, merge_folder(Some(&base), &b, &a));
}

fn arb_side() -> impl Strategy<Value = (Vec<(u8, u8)>, Option<u8>, u8, bool)> {
    (
        proptest::collection::vec((any::<u8>(), 0u8..3), 0..8),
        proptest::option::of(0u8..4),
        any::<u8>(),
        any::<bool>(),
    )
}

fn apply(
    base: &Conversation,
    side: &str,
    (adds, title, at, drop_first): &(Vec<(u8, u8)>, Option<u8>, u8, bool),
) -> Conversation {
    let mut c = base.clone();
    for (i, (t, dev)) in adds.iter().enumerate() {
        c.messages.push(msg(
            &format!("{side}-{i}"),
            *t as u64,
            &format!("dev{dev}"),
            &format!("{side} says {i}"),
        ));
    }
    if let Some(t) = title {
        c.title = format!("title {t}");
    }
    if *drop_first && c.messages.len() > 1 {
        c.messages.remove(0);
    }
    c.updated_at = *at as u64;
    c.updated_by = side.into();
    c
}

proptest! {
    #[test]
    fn merge_is_symmetric_and_loses_no_appended_turn(a in arb_side(), b in arb_side()) {
        let base = conversation("base");
        let ours = apply(&base, "ours", &a);
        let theirs = apply(&base, "theirs", &b);
        let m1 = merge_conversation(Some(&base), &ours, &theirs);
        let m2 = merge_conversation(Some(&base), &theirs, &ours);
        prop_assert_eq!(&m1, &m2);
        for side in [&ours, &theirs] {
            for msg in &side.messages {
                if msg.id != "m1" {
                    prop_assert!(m1.messages.contains(msg), "lost {}", msg.id);
                }
            }
        }
        // Appended turns are ordered by (created_at, device).
        let added: Vec<_> = m1.messages.iter().filter(|m| m.id != "m1").collect();
        for w in added.windows(2) {
            prop_assert!((w[0].created_at, &w[0].device) <= (w[1].created_at, &w[1].device));
        }
        // Deleting the base message on one side removes it.
        let base_kept = m1.messages.iter().any(|m| m.id == "m1");
        let dropped = (a.3 && ours.messages.len() < base.messages.len() + a.0.len())
            || (b.3 && theirs.messages.len() < base.messages.len() + b.0.len());
        prop_assert_eq!(base_kept, !dropped);
        // The title is one of the candidates.
        prop_assert!([&ours.title, &theirs.title].contains(&&m1.title));
    }
}
