use super::*;

/// Strings whose hashes collide (here all of them) still get one id
/// each, and each is found by its own id and name.
#[test]
fn an_interner_tells_strings_with_one_hash_apart() {
    let mut interner = Interner {
        hash: KeyHash::Constant,
        ..Interner::default()
    };
    let words = ["a", "b", "", "ab", "a", "é", "b", "", "ab"];
    let ids: Vec<u32> = words.iter().map(|s| interner.intern(s)).collect();
    assert_eq!(ids, [0, 1, 2, 3, 0, 4, 1, 2, 3]);
    for (word, id) in words.iter().zip(&ids) {
        assert_eq!(interner.get(word), Some(*id), "{word:?}");
        assert_eq!(interner.name(*id), *word);
    }
    assert_eq!(interner.get("c"), None);
    assert_eq!(interner.len(), 5);
}

#[test]
fn an_interner_gives_each_string_one_id_whatever_came_just_before() {
    let mut interner = Interner::default();
    let ids: Vec<u32> = ["a", "a", "b", "a", "", "c", "b", "b", ""]
        .iter()
        .map(|s| interner.intern(s))
        .collect();
    assert_eq!(ids, [0, 0, 1, 0, 2, 3, 1, 1, 2]);
    assert_eq!(interner.get("c"), Some(3));
    assert_eq!(interner.get("d"), None);
    assert_eq!((interner.name(0), interner.name(3)), ("a", "c"));
}

fn record(seq: u64, ty: &str, lead: Option<&str>, wf: Option<&str>, ts: i64) -> Record {
    Record {
        seq,
        id: crate::store::Short::new(),
        timestamp: ts,
        event_type: ty.into(),
        actor: if seq.is_multiple_of(2) { "even" } else { "odd" }.into(),
        caller: None,
        lead_id: lead.map(Into::into),
        workflow: wf.map(Into::into),
        details: Default::default(),
        idempotency_key: Some(format!("key{seq}").into()),
        batch: None,
        key_id: crate::store::Short::new(),
        prev: crate::store::Short::new(),
        signature: crate::store::Short::new(),
    }
}

fn index() -> Index {
    let mut idx = Index::default();
    for seq in 1..=100u64 {
        let ty = if seq % 10 == 0 { "error" } else { "email_sent" };
        let lead = format!("L{}", seq % 7);
        let wf = if seq % 3 == 0 { Some("sales") } else { None };
        idx.add(
            &record(seq, ty, Some(&lead), wf, seq as i64 * 10),
            0,
            seq * 100,
            100,
        );
    }
    idx
}

fn seqs(metas: &[Meta]) -> Vec<u64> {
    metas.iter().map(|m| m.seq).collect()
}

#[test]
fn a_seq_above_max_seq_is_left_out() {
    let mut idx = index();
    idx.add(&record(u64::MAX, "x", None, None, 2000), 0, 0, 1);
    idx.add(&record(MAX_SEQ + 1, "x", None, None, 2000), 0, 0, 1);
    assert_eq!(idx.last().map(|m| m.seq), Some(100));
    idx.add(&record(MAX_SEQ, "x", None, None, 2000), 0, 0, 1);
    assert_eq!(idx.last().map(|m| m.seq), Some(MAX_SEQ));
}

#[test]
fn select_by_lead_in_both_orders_with_cursor() {
    let idx = index();
    let f = Filter {
        lead_id: Some("L3".into()),
        ..Filter::default()
    };
    let all = seqs(&idx.select(&f, Order::OldestFirst, None, u64::MAX, 1000));
    let reference: Vec<u64> = (1..=100).filter(|s| s % 7 == 3).collect();
    assert_eq!(all, reference);
    let page = seqs(&idx.select(&f, Order::NewestFirst, Some(80), u64::MAX, 3));
    assert_eq!(page, vec![73, 66, 59]);
    let page = seqs(&idx.select(&f, Order::OldestFirst, Some(10), 50, 100));
    assert_eq!(page, vec![17, 24, 31, 38, 45]);
}

#[test]
fn select_combines_every_field_and_time_range() {
    let idx = index();
    let f = Filter {
        event_types: vec!["error".into(), "email_sent".into()],
        workflow: Some("sales".into()),
        actor: Some("even".into()),
        since: Some(300),
        until: Some(600),
        ..Filter::default()
    };
    let got = seqs(&idx.select(&f, Order::OldestFirst, None, u64::MAX, 1000));
    let want: Vec<u64> = (30..60).filter(|s| s % 3 == 0 && s % 2 == 0).collect();
    assert_eq!(got, want);
}

#[test]
fn unknown_values_match_nothing() {
    let idx = index();
    for f in [
        Filter {
            lead_id: Some("nobody".into()),
            ..Filter::default()
        },
        Filter {
            event_types: vec!["nothing".into()],
            ..Filter::default()
        },
    ] {
        assert!(
            idx.select(&f, Order::OldestFirst, None, u64::MAX, 10)
                .is_empty()
        );
    }
}

#[test]
fn stats_whole_and_per_workflow() {
    let idx = index();
    let all = |workflow: Option<&str>| {
        idx.stats(&StatsQuery {
            workflow: workflow.map(String::from),
            ..StatsQuery::default()
        })
        .unwrap()
    };
    let s = all(None);
    assert_eq!(s.total_events, 100);
    assert_eq!(s.error_count, 10);
    assert_eq!(s.leads_processed, 7);
    assert_eq!(s.by_workflow.get("sales"), Some(&33));
    assert_eq!(
        (s.first_timestamp, s.last_timestamp),
        (Some(10), Some(1000))
    );
    assert!(s.timeline.is_empty() && s.leads_by_type.is_empty());
    let s = all(Some("sales"));
    assert_eq!(s.total_events, 33);
    assert_eq!(s.error_count, 3);
    assert_eq!(s.first_timestamp, Some(30));
    assert_eq!(all(Some("none")).total_events, 0);
}

#[test]
fn stats_of_some_event_types() {
    let idx = index();
    let of = |types: &[&str]| {
        idx.stats(&StatsQuery {
            event_types: types.iter().map(|t| (*t).to_owned()).collect(),
            bucket_micros: Some(1000),
            ..StatsQuery::default()
        })
        .unwrap()
    };
    let all = of(&[]);
    let errors = of(&["error"]);
    assert_eq!(errors.total_events, 10);
    assert_eq!(errors.error_count, 10);
    assert_eq!(errors.by_type.len(), 1);
    assert_eq!(errors.timeline.iter().map(|b| b.events).sum::<u64>(), 10);
    let two = of(&["error", "email_sent"]);
    assert_eq!(
        two.total_events,
        all.by_type["error"] + all.by_type["email_sent"]
    );
    assert_eq!(of(&["never_logged"]).total_events, 0);
}

#[test]
fn stats_in_a_time_range_with_a_timeline() {
    let idx = index();
    // seq 10..=49 (timestamps 100..=490), buckets of 100 µs.
    let s = idx
        .stats(&StatsQuery {
            since: Some(100),
            until: Some(500),
            bucket_micros: Some(100),
            leads_by_type: true,
            ..StatsQuery::default()
        })
        .unwrap();
    assert_eq!(s.total_events, 40);
    assert_eq!(s.error_count, 4);
    let buckets: Vec<(i64, u64, u64)> = s
        .timeline
        .iter()
        .map(|b| (b.start, b.events, b.errors))
        .collect();
    assert_eq!(
        buckets,
        [(100, 10, 1), (200, 10, 1), (300, 10, 1), (400, 10, 1)]
    );
    assert_eq!(s.leads_by_type.get("error"), Some(&4));
    assert_eq!(s.leads_by_type.get("email_sent"), Some(&7));
    // Empty buckets are kept; the same range for one workflow.
    let s = idx
        .stats(&StatsQuery {
            workflow: Some("sales".into()),
            since: Some(0),
            until: Some(2000),
            bucket_micros: Some(500),
            ..StatsQuery::default()
        })
        .unwrap();
    assert_eq!(s.total_events, 33);
    let counts: Vec<u64> = s.timeline.iter().map(|b| b.events).collect();
    assert_eq!(counts, [16, 17, 0, 0]);
    assert_eq!(
        idx.stats(&StatsQuery {
            since: Some(0),
            until: Some(20_001),
            bucket_micros: Some(2),
            ..StatsQuery::default()
        }),
        Err(TooManyBuckets(10_001))
    );
}

#[test]
fn out_of_order_records_are_skipped_and_keys_remembered() {
    let mut idx = index();
    idx.add(&record(50, "error", None, None, 0), 0, 0, 1);
    assert_eq!(idx.last().map(|m| m.seq), Some(100));
    assert_eq!(idx.idempotent_seq("key42"), Some(42));
    assert_eq!(idx.get(77).map(|m| m.offset), Some(7700));
}

/// Posting lists hold positions in `metas`, which every purge shifts:
/// whatever was purged, skipped (a gap in seqs) or appended since, a
/// query through any list finds what a scan of the records finds.
#[test]
fn postings_find_what_a_scan_finds_across_purges_gaps_and_appends() {
    // (seq, type, lead, workflow, timestamp) of every record indexed.
    type Row = (u64, &'static str, String, Option<&'static str>, i64);
    let mut model: Vec<Row> = Vec::new();
    let mut idx = Index::default();
    let add = |idx: &mut Index, model: &mut Vec<Row>, seqs: std::ops::RangeInclusive<u64>| {
        for seq in seqs {
            let ty = ["error", "email_sent", "lead_ingested"][(seq % 3) as usize];
            let lead = format!("L{}", seq % 5);
            let wf = (seq % 4 != 0).then_some(["sales", "support"][(seq % 2) as usize]);
            idx.add(
                &record(seq, ty, Some(&lead), wf, seq as i64 * 10),
                0,
                seq,
                1,
            );
            model.push((seq, ty, lead, wf, seq as i64 * 10));
        }
    };
    let check = |idx: &Index, model: &[Row]| {
        for (field, value) in [
            ("type", "error"),
            ("type", "lead_ingested"),
            ("lead", "L2"),
            ("lead", "L0"),
            ("workflow", "sales"),
            ("workflow", "support"),
        ] {
            let mut f = Filter::default();
            match field {
                "type" => f.event_types = vec![value.into()],
                "lead" => f.lead_id = Some(value.into()),
                _ => f.workflow = Some(value.into()),
            }
            let want: Vec<u64> = model
                .iter()
                .filter(|r| match field {
                    "type" => r.1 == value,
                    "lead" => r.2 == value,
                    _ => r.3 == Some(value),
                })
                .map(|r| r.0)
                .collect();
            let got = seqs(&idx.select(&f, Order::OldestFirst, None, u64::MAX, 10_000));
            assert_eq!(got, want, "{field} {value}");
            let mut newest = want.clone();
            newest.reverse();
            let got = seqs(&idx.select(&f, Order::NewestFirst, None, u64::MAX, 10_000));
            assert_eq!(got, newest, "{field} {value}, newest first");
            // A time window in the middle, and a cursor.
            let (since, until) = (model[model.len() / 3].4, model[model.len() / 2].4);
            f.since = Some(since);
            f.until = Some(until);
            let windowed: Vec<u64> = model
                .iter()
                .filter(|r| r.4 >= since && r.4 < until && want.contains(&r.0))
                .map(|r| r.0)
                .collect();
            let got = seqs(&idx.select(&f, Order::OldestFirst, None, u64::MAX, 10_000));
            assert_eq!(got, windowed, "{field} {value} in [{since}, {until})");
            if field == "workflow" {
                let stats = |since, until| {
                    idx.stats(&StatsQuery {
                        workflow: Some(value.into()),
                        since,
                        until,
                        ..StatsQuery::default()
                    })
                    .unwrap()
                    .total_events
                };
                assert_eq!(stats(None, None), want.len() as u64, "stats {value}");
                assert_eq!(stats(Some(since), Some(until)), windowed.len() as u64);
                // A range that ends before it starts holds nothing.
                assert_eq!(stats(Some(until), Some(since)), 0);
            }
        }
    };
    add(&mut idx, &mut model, 1..=60);
    check(&idx, &model);
    idx.purge_through(17);
    model.retain(|r| r.0 > 17);
    check(&idx, &model);
    // A gap (seqs 71 to 79 never indexed), then more, then a purge into
    // the gap and one past everything.
    add(&mut idx, &mut model, 70..=70);
    add(&mut idx, &mut model, 80..=140);
    check(&idx, &model);
    idx.purge_through(75);
    model.retain(|r| r.0 > 75);
    check(&idx, &model);
    add(&mut idx, &mut model, 141..=150);
    check(&idx, &model);
    idx.purge_through(1_000);
    model.clear();
    assert!(
        idx.select(&Filter::default(), Order::OldestFirst, None, u64::MAX, 10)
            .is_empty()
    );
    add(&mut idx, &mut model, 1_001..=1_030);
    check(&idx, &model);
}

/// A seq is not stored but follows from the record's position and the
/// runs of consecutive seqs: every seq present is found with its own
/// record, every seq in a gap is not, and cursors and `max_seq` falling
/// in a gap cut where a binary search over seqs would.
#[test]
fn seqs_follow_positions_across_gaps_and_purges() {
    let mut idx = Index::default();
    let mut present: Vec<u64> = (1..=10).chain([15, 16]).chain(20..=25).collect();
    for &seq in &present {
        idx.add(
            &record(seq, "email_sent", None, None, seq as i64),
            0,
            seq * 100,
            1,
        );
    }
    // Another record at an old seq, and one past MAX_SEQ, change nothing.
    idx.add(&record(16, "error", None, None, 99), 0, 0, 1);
    idx.add(&record(MAX_SEQ + 1, "error", None, None, 99), 0, 0, 1);
    let all = Filter::default();
    let check = |idx: &Index, present: &[u64]| {
        for seq in 0..30 {
            let got = idx.get(seq).map(|m| (m.seq, m.offset));
            let want = present.contains(&seq).then_some((seq, seq * 100));
            assert_eq!(got, want, "seq {seq}");
        }
        assert_eq!(idx.first().map(|m| m.seq), present.first().copied());
        assert_eq!(idx.last().map(|m| m.seq), present.last().copied());
        for cut in 0..30 {
            let after: Vec<u64> = present.iter().copied().filter(|&s| s > cut).collect();
            let got = seqs(&idx.select(&all, Order::OldestFirst, Some(cut), u64::MAX, 100));
            assert_eq!(got, after, "after {cut}");
            let before: Vec<u64> = present.iter().rev().copied().filter(|&s| s < cut).collect();
            let got = seqs(&idx.select(&all, Order::NewestFirst, Some(cut), u64::MAX, 100));
            assert_eq!(got, before, "before {cut}");
            let upto: Vec<u64> = present.iter().copied().filter(|&s| s <= cut).collect();
            let got = seqs(&idx.select(&all, Order::OldestFirst, None, cut, 100));
            assert_eq!(got, upto, "max_seq {cut}");
        }
    };
    check(&idx, &present);
    for through in [0, 3, 12, 15, 19, 24, 25] {
        idx.purge_through(through);
        present.retain(|&s| s > through);
        check(&idx, &present);
    }
    // After everything was purged, the next record starts a run anew.
    idx.add(&record(40, "email_sent", None, None, 40), 0, 4000, 1);
    idx.add(&record(41, "email_sent", None, None, 41), 0, 4100, 1);
    check(&idx, &[40, 41]);
    assert_eq!(idx.get(41).map(|m| m.offset), Some(4100));
    assert_eq!(idx.get(39).map(|m| m.seq), None);
}

#[test]
fn purge_forgets_the_prefix_everywhere() {
    let mut idx = index();
    idx.purge_through(60);
    assert_eq!(idx.first().map(|m| m.seq), Some(61));
    let f = Filter {
        lead_id: Some("L3".into()),
        ..Filter::default()
    };
    let got = seqs(&idx.select(&f, Order::OldestFirst, None, u64::MAX, 1000));
    assert_eq!(got, vec![66, 73, 80, 87, 94]);
    assert_eq!(idx.idempotent_seq("key42"), None);
    assert_eq!(idx.stats(&StatsQuery::default()).unwrap().total_events, 40);
}
