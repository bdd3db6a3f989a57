use std::ops::ControlFlow;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::keys::Keyring;
use crate::store::{Filter, NewEvent, Order, Page, Record, Store, StoreConfig};

/// A store of `n` events, lead `L<seq % 3>`, rotated after the first half
/// so that reads cross a compressed segment (and its lead copy) and the
/// active file.
async fn store(n: u64) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig::for_test(dir.path(), true);
    let store = Store::open(config, Keyring::new("k1", vec![7; 32])).unwrap();
    for seq in 1..=n {
        let details = json!({"n": seq, "tags": ["a", seq]});
        let event = NewEvent::for_test(Some(format!("L{}", seq % 3)), details);
        store.append(vec![event]).await.unwrap();
        if seq == n / 2 {
            store.rotate(true).await.unwrap();
        }
    }
    (dir, store)
}

fn seqs<D>(records: &[Record<D>]) -> Vec<u64> {
    records.iter().map(|r| r.seq).collect()
}

/// Pages follow one another by their `next` cursor, in both orders and
/// through the lead copies, and together are the whole selection.
#[tokio::test]
async fn pages_chain_by_their_cursor_to_the_whole_selection() {
    let (_dir, store) = store(40).await;
    for (filter, want) in [
        (Filter::default(), (1..=40).collect::<Vec<u64>>()),
        (
            Filter {
                lead_id: Some("L1".into()),
                ..Filter::default()
            },
            (1..=40).filter(|s| s % 3 == 1).collect(),
        ),
    ] {
        for order in [Order::OldestFirst, Order::NewestFirst] {
            let mut got = Vec::new();
            let mut cursor = None;
            loop {
                let page: Page = store.page(&filter, order, cursor, u64::MAX, 7).unwrap();
                assert!(page.records.len() <= 7);
                got.extend(seqs(&page.records));
                match page.next {
                    Some(next) => {
                        assert_eq!(Some(next), got.last().copied());
                        cursor = Some(next);
                    }
                    None => break,
                }
            }
            let mut want = want.clone();
            if order == Order::NewestFirst {
                want.reverse();
            }
            assert_eq!(got, want, "{filter:?} {order:?}");
        }
    }
    let last: Page = store
        .page(
            &Filter::default(),
            Order::OldestFirst,
            Some(33),
            u64::MAX,
            7,
        )
        .unwrap();
    assert_eq!(
        (seqs(&last.records), last.next),
        ((34..=40).collect(), None)
    );
    store.shutdown();
}

/// Records of 150 KiB: a page stops before [`super::PAGE_LINE_BYTES`] of
/// lines, whatever its `limit`, and its cursor chains to the next as a
/// page cut by `limit` does, in both orders and through lead copies.
#[tokio::test]
async fn a_page_of_large_records_stops_at_its_byte_budget() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig::for_test(dir.path(), true);
    let store = Store::open(config, Keyring::new("k1", vec![7; 32])).unwrap();
    let n = 60;
    for seq in 1..=n {
        let details = json!({"n": seq, "blob": "x".repeat(150 << 10)});
        let event = NewEvent::for_test(Some(format!("L{}", seq % 2)), details);
        store.append(vec![event]).await.unwrap();
        if seq == n / 2 {
            store.rotate(true).await.unwrap();
        }
    }
    let most = (super::PAGE_LINE_BYTES / (150 << 10)) as usize;
    for (filter, want) in [
        (Filter::default(), (1..=n).collect::<Vec<u64>>()),
        (
            Filter {
                lead_id: Some("L1".into()),
                ..Filter::default()
            },
            (1..=n).filter(|s| s % 2 == 1).collect(),
        ),
    ] {
        for order in [Order::OldestFirst, Order::NewestFirst] {
            let mut got = Vec::new();
            let mut cursor = None;
            let mut pages = 0;
            loop {
                let page: Page = store.page(&filter, order, cursor, u64::MAX, 1000).unwrap();
                assert!(
                    (1..=most).contains(&page.records.len()),
                    "{}",
                    page.records.len()
                );
                pages += 1;
                got.extend(seqs(&page.records));
                match page.next {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            assert!(pages > 1, "{filter:?} {order:?}");
            let mut want = want.clone();
            if order == Order::NewestFirst {
                want.reverse();
            }
            assert_eq!(got, want, "{filter:?} {order:?}");
        }
    }
    store.shutdown();
}

/// `details` in another form, decoded straight from the line, with every
/// other field as the default form reads it.
#[tokio::test]
async fn details_decode_into_the_form_the_reader_chooses() {
    #[derive(Debug, Clone, PartialEq, Deserialize)]
    struct Counted {
        n: u64,
        tags: Vec<Value>,
    }
    let (_dir, store) = store(12).await;
    let filter = Filter::default();
    let plain: Page = store
        .page(&filter, Order::OldestFirst, None, u64::MAX, 100)
        .unwrap();
    let counted: Page<Record<Counted>> = store
        .page(&filter, Order::OldestFirst, None, u64::MAX, 100)
        .unwrap();
    assert_eq!(plain.records.len(), 12);
    for (p, c) in plain.records.iter().zip(&counted.records) {
        assert_eq!(c.details.n, p.seq);
        assert_eq!(
            Value::Array(c.details.tags.clone()),
            p.details.to_map()["tags"]
        );
        assert_eq!(
            (&c.id, c.timestamp, &c.lead_id, &c.prev, &c.signature),
            (&p.id, p.timestamp, &p.lead_id, &p.prev, &p.signature)
        );
    }
    store.shutdown();
}

/// A scan hands over pages until the caller breaks, and `max_seq` bounds
/// it.
#[tokio::test]
async fn a_scan_stops_where_the_caller_or_max_seq_says() {
    let (_dir, store) = store(30).await;
    let mut seen = Vec::new();
    let all = Filter::default();
    store
        .scan(
            &all,
            Order::OldestFirst,
            Some(5),
            25,
            |records: Vec<Record>| {
                seen.extend(seqs(&records));
                ControlFlow::Continue(())
            },
        )
        .unwrap();
    assert_eq!(seen, (6..=25).collect::<Vec<_>>());
    let mut pages = 0;
    store
        .scan(
            &all,
            Order::NewestFirst,
            None,
            u64::MAX,
            |_: Vec<Record>| {
                pages += 1;
                ControlFlow::Break(())
            },
        )
        .unwrap();
    assert_eq!(pages, 1);
    store.shutdown();
}

/// A record changed on disk is refused by seq, saying what is wrong and
/// what to do once (the reason says what, the error adds what to do).
#[tokio::test]
async fn a_record_changed_on_disk_is_refused_saying_so_once() {
    let (dir, store) = store(4).await;
    let path = dir.path().join(crate::store::LOG_FILE);
    let log = std::fs::read(&path).unwrap();
    let changed: Vec<u8> = String::from_utf8(log)
        .unwrap()
        .replacen("{\"n\":4,", "{\"n\":5,", 1)
        .into_bytes();
    std::fs::write(&path, &changed).unwrap();
    let read: Result<Page, _> =
        store.page(&Filter::default(), Order::NewestFirst, None, u64::MAX, 1);
    let err = read.map(|_| ()).unwrap_err().to_string();
    assert!(
        err.contains("damaged at seq 4: it fails its MAC check"),
        "{err}"
    );
    assert_eq!(err.matches("VerifyIntegrity").count(), 1, "{err}");
}
