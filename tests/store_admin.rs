//! `ledger verify` and `ledger export` over a real data directory, including
//! tampered files that verify must catch precisely.

use std::path::Path;

use jecp_hub::ledger::Transfer;
use jecp_hub::ledger::{AccountId, ChargeMemo, ChargeMethod};
use jecp_hub::money::Micros;
use jecp_hub::records::{AgentRecord, IdempotencyRecord};
use jecp_hub::store::admin::{self, ExportFormat};
use jecp_hub::store::records::{AccountRecord, BookingRecord, decode, encode};
use jecp_hub::store::{Command, DATABASE_FILE, Reply, Store, StoreError, StoreOptions};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

const ACCOUNTS: TableDefinition<u64, &[u8]> = TableDefinition::new("accounts");
const BOOKINGS: TableDefinition<u128, &[u8]> = TableDefinition::new("booking_bundles");
const WALLET_RUNS: TableDefinition<(u64, u128), &[u8]> =
    TableDefinition::new("wallet_booking_runs");
const IDEMPOTENCY_BUNDLES: TableDefinition<u128, &[u8]> =
    TableDefinition::new("idempotency_bundles");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
// Schema 2's tables: one row per booking, per wallet-index entry and per
// idempotency record.
const BOOKINGS_V2: TableDefinition<u128, &[u8]> = TableDefinition::new("bookings");
const WALLET_BOOKINGS_V2: TableDefinition<(u64, u128), ()> =
    TableDefinition::new("wallet_bookings");
const IDEMPOTENCY_V2: TableDefinition<u128, &[u8]> = TableDefinition::new("idempotency_log");
// Schema 1's tables: one row per transfer.
const TRANSFERS_V1: TableDefinition<u128, &[u8]> = TableDefinition::new("transfers");
const WALLET_TRANSFERS_V1: TableDefinition<(u64, u128), ()> =
    TableDefinition::new("wallet_transfers");
mod common;

const WALLET: AccountId = AccountId(AccountId::FIRST_WALLET);

/// The entries of a bundled log row, by the format documented in
/// `src/store/bundles.rs`: (key u128 | len u32 | bytes)*, little-endian.
type Entries = Vec<(u128, Vec<u8>)>;

fn bundle_entries(mut value: &[u8]) -> Entries {
    let mut entries = Vec::new();
    while !value.is_empty() {
        let key = u128::from_le_bytes(value[..16].try_into().unwrap());
        let len = u32::from_le_bytes(value[16..20].try_into().unwrap()) as usize;
        entries.push((key, value[20..20 + len].to_vec()));
        value = &value[20 + len..];
    }
    entries
}

fn bundle_of(entries: &[(u128, Vec<u8>)]) -> Vec<u8> {
    let mut value = Vec::new();
    for (key, bytes) in entries {
        value.extend_from_slice(&key.to_le_bytes());
        value.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        value.extend_from_slice(bytes);
    }
    value
}
const PROVIDER_WALLET_FREE: u64 = 3;

fn agent(wallet: AccountId) -> AgentRecord {
    AgentRecord::new(
        format!("jecp_ag_{}", wallet.0),
        wallet.0,
        "admin".into(),
        [0; 32],
        0,
    )
}

fn memo(request: &str, method: ChargeMethod) -> ChargeMemo {
    ChargeMemo {
        agent_id: "jecp_ag_1000".into(),
        capability: "pdf, \"quoted\"".into(),
        action: "render".into(),
        request_id: request.into(),
        method,
    }
}

/// One top-up of 2 USDC, two paid charges (0.005 and 0.000007), one free call.
async fn populate(dir: &Path) {
    let (store, _) = Store::open(dir, StoreOptions::default()).unwrap();
    common::open_funded_wallet(
        &store,
        WALLET,
        agent(WALLET),
        Micros::from_usdc(2),
        "stripe:pi_1",
    )
    .await;
    for (index, micros) in [5_000u64, 7].into_iter().enumerate() {
        let Ok(Reply::Held(hold)) = store
            .execute(Command::Hold {
                wallet: WALLET,
                amount: Micros::new(micros).unwrap(),
            })
            .await
        else {
            panic!("hold refused")
        };
        let posted = store
            .execute(Command::Post {
                hold,
                provider: AccountId::HUB_PROVIDER,
                memo: memo(&format!("r{index}"), ChargeMethod::Wallet),
                idempotency: None,
            })
            .await;
        assert!(matches!(posted, Ok(Reply::Posted(_))));
    }
    let free = store
        .execute(Command::ChargeFree {
            wallet: WALLET,
            cost: Micros::new(1_000).unwrap(),
            provider: AccountId::HUB_PROVIDER,
            free_allowance: PROVIDER_WALLET_FREE,
            memo: memo("free", ChargeMethod::FreeCall),
            idempotency: None,
        })
        .await;
    assert!(matches!(free, Ok(Reply::Posted(_))));
    store.shutdown().await;
}

// 1 credit + 3 legs (0.005) + 2 legs (7 µ: 5 / 0 / 2, the zero hub leg omitted) + 3 legs (free).
const TRANSFERS_WRITTEN: u64 = 1 + 3 + 2 + 3;

#[tokio::test]
async fn verify_passes_on_a_healthy_store() {
    let dir = tempfile::tempdir().unwrap();
    populate(dir.path()).await;
    let report = admin::verify(dir.path()).unwrap();
    assert!(report.is_ok(), "{report}");
    assert_eq!(
        (report.transfers, report.wallets, report.balance_sum),
        (TRANSFERS_WRITTEN, 1, 0)
    );
    assert!(
        report.to_string().starts_with("ledger verify: OK"),
        "{report}"
    );
}

#[tokio::test]
async fn verify_reports_a_tampered_balance_and_a_broken_split() {
    let dir = tempfile::tempdir().unwrap();
    populate(dir.path()).await;
    let path = dir.path().join(DATABASE_FILE);
    {
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            // Give the wallet 1 USDC out of thin air in its row only.
            let mut accounts = txn.open_table(ACCOUNTS).unwrap();
            let mut row: AccountRecord = decode(
                "accounts",
                &WALLET.0,
                accounts.get(WALLET.0).unwrap().unwrap().value(),
            )
            .unwrap();
            row.credits_posted += 1_000_000;
            accounts
                .insert(WALLET.0, encode(&row).unwrap().as_slice())
                .unwrap();
            // Skim 1 µ from the first charge's hub leg into its provider leg.
            let mut bookings = txn.open_table(BOOKINGS).unwrap();
            let rows: Vec<(u128, Entries)> = bookings
                .iter()
                .unwrap()
                .map(|row| {
                    let (key, value) = row.unwrap();
                    (key.value(), bundle_entries(value.value()))
                })
                .collect();
            let (bundle_key, mut entries, index, mut booking) = rows
                .into_iter()
                .find_map(|(bundle_key, entries)| {
                    let found = entries
                        .iter()
                        .enumerate()
                        .find_map(|(index, (key, bytes))| {
                            let booking: BookingRecord = decode("bookings", key, bytes).unwrap();
                            booking.transfers[0]
                                .charge
                                .is_some()
                                .then_some((index, booking))
                        });
                    found.map(|(index, booking)| (bundle_key, entries, index, booking))
                })
                .unwrap();
            for leg in &mut booking.transfers[..2] {
                leg.amount = if leg.kind == 2 {
                    leg.amount + 1
                } else {
                    leg.amount - 1
                };
            }
            entries[index].1 = encode(&booking).unwrap();
            bookings
                .insert(bundle_key, bundle_of(&entries).as_slice())
                .unwrap();
        }
        txn.commit().unwrap();
    }
    let report = admin::verify(dir.path()).unwrap();
    assert!(!report.is_ok());
    let text = report.to_string();
    assert!(text.starts_with("ledger verify: FAILED"), "{text}");
    assert!(
        text.contains(
            "account 1000: stored credits_posted 3 USDC, recomputed from transfers 2 USDC"
        ),
        "{text}"
    );
    assert!(
        text.contains("not the 85/10/5 split of 0.005 USDC (expected 0.00425 / 0.0005 / 0.00025)"),
        "{text}"
    );
    // The Hub refuses to start on the same file, pointing at `ledger verify`.
    let error = Store::open(dir.path(), StoreOptions::default()).unwrap_err();
    assert!(
        matches!(&error, StoreError::Corrupt(m) if m.contains("invariant violation") && m.contains("ledger verify")),
        "{error}"
    );
}

#[tokio::test]
async fn export_writes_every_transfer_in_order_as_jsonl_and_csv() {
    let dir = tempfile::tempdir().unwrap();
    populate(dir.path()).await;

    let mut jsonl = Vec::new();
    assert_eq!(
        admin::export(dir.path(), ExportFormat::Jsonl, &mut jsonl).unwrap(),
        TRANSFERS_WRITTEN
    );
    let rows: Vec<serde_json::Value> = String::from_utf8(jsonl)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(rows.len() as u64, TRANSFERS_WRITTEN);
    assert_eq!(rows[0]["kind"], "credit");
    assert_eq!(rows[0]["reference"], "stripe:pi_1");
    assert_eq!(rows[0]["amount"].to_string(), "2");
    assert_eq!(rows[1]["kind"], "provider_share");
    assert_eq!(rows[1]["amount"].to_string(), "0.00425");
    assert_eq!(rows[1]["request_id"], "r0");
    assert_eq!(rows[2]["amount_micros"], 500);
    assert!(
        rows[2]["request_id"].is_null(),
        "only the first leg carries the memo"
    );
    assert_eq!(rows.last().unwrap()["debit"], AccountId::PROMOTIONS.0);
    assert_eq!(rows.last().unwrap()["method"], serde_json::Value::Null);
    let ids: Vec<&str> = rows.iter().map(|row| row["id"].as_str().unwrap()).collect();
    assert!(
        ids.windows(2).all(|pair| pair[0] < pair[1]),
        "ids in time order"
    );

    let mut csv_bytes = Vec::new();
    assert_eq!(
        admin::export(dir.path(), ExportFormat::Csv, &mut csv_bytes).unwrap(),
        TRANSFERS_WRITTEN
    );
    let mut reader = csv::Reader::from_reader(csv_bytes.as_slice());
    assert_eq!(reader.headers().unwrap().get(5), Some("amount"));
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len() as u64, TRANSFERS_WRITTEN);
    assert_eq!(&records[1][5], "0.00425");
    assert_eq!(
        &records[1][10], "pdf, \"quoted\"",
        "CSV quoting round-trips"
    );
    assert_eq!(&records[1][0], ids[1]);
}

#[test]
fn admin_tools_refuse_a_missing_store() {
    let dir = tempfile::tempdir().unwrap();
    let error = admin::verify(dir.path()).unwrap_err();
    assert!(
        matches!(&error, StoreError::Io(m) if m.contains("no store at")),
        "{error}"
    );
    let mut sink = Vec::new();
    assert!(admin::export(dir.path(), ExportFormat::Csv, &mut sink).is_err());
    assert!(
        !dir.path().join(DATABASE_FILE).exists(),
        "the admin tools never create a store"
    );
}

async fn history(store: &Store, before: Option<u128>, limit: usize) -> Vec<Transfer> {
    match store
        .execute(Command::History {
            wallet: WALLET,
            before,
            limit,
        })
        .await
    {
        Ok(Reply::History(transfers)) => transfers,
        other => panic!("history read failed: {other:?}"),
    }
}

#[tokio::test]
async fn history_reads_newest_first_and_a_cursor_may_fall_inside_a_charge() {
    let dir = tempfile::tempdir().unwrap();
    populate(dir.path()).await;
    let (store, _) = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let all = history(&store, None, 100).await;
    // The wallet's rows: the credit and both paid charges' legs (3 + 2); the
    // free call is paid by promotions and never touches the wallet.
    assert_eq!(all.len(), 6, "{all:?}");
    assert!(all.windows(2).all(|pair| pair[0].id.0 > pair[1].id.0));
    assert!(all.last().unwrap().reference.as_deref() == Some("stripe:pi_1"));
    // A cursor at the second leg of the newest charge returns its first leg, then older rows.
    let newest_charge: Vec<&Transfer> = all
        .iter()
        .take_while(|t| t.charge == all[0].charge)
        .collect();
    assert_eq!(newest_charge.len(), 2);
    let cursor = newest_charge[0].id.0;
    let page = history(&store, Some(cursor), 2).await;
    assert_eq!(
        page.iter().map(|t| t.id.0).collect::<Vec<_>>(),
        all[1..3].iter().map(|t| t.id.0).collect::<Vec<_>>()
    );
    store.shutdown().await;
}

fn schema_version(path: &Path) -> u64 {
    let db = redb::Database::open(path).unwrap();
    let txn = db.begin_read().unwrap();
    txn.open_table(META)
        .unwrap()
        .get("schema_version")
        .unwrap()
        .unwrap()
        .value()
}

/// Rewrites a schema-3 file the way a schema-2 build laid it out: one
/// `wallet_bookings` row per (wallet, booking) and one `idempotency_log` row
/// per record. Reads the runs and bundles by their documented formats
/// (`src/store/wallet_runs.rs`, `src/store/idempotency_bundles.rs`).
fn downgrade_to_schema_2(path: &Path) {
    let db = redb::Database::open(path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let runs = txn.open_table(WALLET_RUNS).unwrap();
        let mut index = txn.open_table(WALLET_BOOKINGS_V2).unwrap();
        for entry in runs.iter().unwrap() {
            let (key, value) = entry.unwrap();
            let (wallet, first) = key.value();
            let keys: Vec<u128> = value
                .value()
                .chunks_exact(16)
                .map(|chunk| u128::from_le_bytes(chunk.try_into().unwrap()))
                .collect();
            assert_eq!(keys[0], first);
            for booking in keys {
                index.insert((wallet, booking), ()).unwrap();
            }
        }
        for (bundled, rows) in [
            (BOOKINGS, BOOKINGS_V2),
            (IDEMPOTENCY_BUNDLES, IDEMPOTENCY_V2),
        ] {
            let bundled = txn.open_table(bundled).unwrap();
            let mut rows = txn.open_table(rows).unwrap();
            for entry in bundled.iter().unwrap() {
                let (bundle_key, value) = entry.unwrap();
                let entries = bundle_entries(value.value());
                assert_eq!(entries[0].0, bundle_key.value());
                for (key, bytes) in entries {
                    rows.insert(key, bytes.as_slice()).unwrap();
                }
            }
        }
        txn.open_table(META)
            .unwrap()
            .insert("schema_version", 2)
            .unwrap();
    }
    for table in [BOOKINGS, IDEMPOTENCY_BUNDLES] {
        txn.delete_table(table).unwrap();
    }
    txn.delete_table(WALLET_RUNS).unwrap();
    txn.commit().unwrap();
}

/// Rewrites a schema-3 file the way a schema-1 build laid it out: one row per
/// transfer in `transfers`, `(wallet, transfer id)` in `wallet_transfers`.
fn downgrade_to_schema_1(path: &Path) {
    downgrade_to_schema_2(path);
    let db = redb::Database::open(path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let bookings = txn.open_table(BOOKINGS_V2).unwrap();
        let mut transfers = txn.open_table(TRANSFERS_V1).unwrap();
        let mut index = txn.open_table(WALLET_TRANSFERS_V1).unwrap();
        for entry in bookings.iter().unwrap() {
            let (key, value) = entry.unwrap();
            let booking: BookingRecord = decode("bookings", &key.value(), value.value()).unwrap();
            for leg in booking.transfers {
                for account in [leg.debit, leg.credit] {
                    if account >= AccountId::FIRST_WALLET {
                        index.insert((account, leg.id), ()).unwrap();
                    }
                }
                transfers
                    .insert(leg.id, encode(&leg).unwrap().as_slice())
                    .unwrap();
            }
        }
        txn.open_table(META)
            .unwrap()
            .insert("schema_version", 1)
            .unwrap();
    }
    txn.delete_table(BOOKINGS_V2).unwrap();
    txn.delete_table(WALLET_BOOKINGS_V2).unwrap();
    txn.commit().unwrap();
}

fn stored_answer(request_key: &str, expires_at_s: i64) -> IdempotencyRecord {
    IdempotencyRecord {
        agent_id: "jecp_ag_1000".into(),
        request_key: request_key.into(),
        fingerprint: [3; 32],
        http_status: 200,
        body: format!("{{\"id\":\"{request_key}\"}}").into_bytes(),
        headers: vec![("x-request-id".into(), request_key.into())],
        created_at_s: 1,
        expires_at_s,
    }
}

async fn read_answer(store: &Store, request_key: &str) -> Option<IdempotencyRecord> {
    match store
        .execute(Command::ReadIdempotency {
            agent_id: "jecp_ag_1000".into(),
            request_key: request_key.into(),
        })
        .await
    {
        Ok(Reply::Stored(record)) => record,
        other => panic!("idempotency read failed: {other:?}"),
    }
}

#[tokio::test]
async fn a_schema_2_store_is_upgraded_in_place_with_nothing_lost() {
    let dir = tempfile::tempdir().unwrap();
    populate(dir.path()).await;
    let answers: Vec<IdempotencyRecord> = (0..5)
        .map(|index| stored_answer(&format!("req-{index}"), i64::MAX - index))
        .collect();
    let before = {
        let (store, _) = Store::open(dir.path(), StoreOptions::default()).unwrap();
        for answer in &answers {
            assert_eq!(
                store.execute(Command::PutIdempotency(answer.clone())).await,
                Ok(Reply::Done)
            );
        }
        let rows = history(&store, None, 100).await;
        store.shutdown().await;
        rows
    };
    let path = dir.path().join(DATABASE_FILE);
    downgrade_to_schema_2(&path);
    assert_eq!(schema_version(&path), 2);

    let (store, loaded) = Store::open(dir.path(), StoreOptions::default()).unwrap();
    assert_eq!(loaded.idempotency, answers);
    assert_eq!(history(&store, None, 100).await, before);
    for answer in &answers {
        assert_eq!(
            read_answer(&store, &answer.request_key).await.as_ref(),
            Some(answer)
        );
    }
    assert_eq!(read_answer(&store, "req-none").await, None);
    store.shutdown().await;
    assert_eq!(schema_version(&path), 3);
    let report = admin::verify(dir.path()).unwrap();
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.transfers, TRANSFERS_WRITTEN);
    let db = redb::Database::open(&path).unwrap();
    let txn = db.begin_read().unwrap();
    assert!(
        txn.open_table(BOOKINGS_V2).is_err(),
        "schema 2's bookings are gone"
    );
    assert!(
        txn.open_table(WALLET_BOOKINGS_V2).is_err(),
        "schema 2's index is gone"
    );
    assert!(
        txn.open_table(IDEMPOTENCY_V2).is_err(),
        "schema 2's log is gone"
    );
}

#[tokio::test]
async fn a_schema_1_store_is_upgraded_in_place_with_nothing_lost() {
    let dir = tempfile::tempdir().unwrap();
    populate(dir.path()).await;
    let mut exported = Vec::new();
    admin::export(dir.path(), ExportFormat::Jsonl, &mut exported).unwrap();
    let before = {
        let (store, _) = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let rows = history(&store, None, 100).await;
        store.shutdown().await;
        rows
    };
    let path = dir.path().join(DATABASE_FILE);
    downgrade_to_schema_1(&path);

    // The admin tools upgrade first, then read exactly what was there.
    let report = admin::verify(dir.path()).unwrap();
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.transfers, TRANSFERS_WRITTEN);
    let mut again = Vec::new();
    admin::export(dir.path(), ExportFormat::Jsonl, &mut again).unwrap();
    assert_eq!(
        String::from_utf8(again).unwrap(),
        String::from_utf8(exported).unwrap()
    );
    assert_eq!(schema_version(&path), 3);
    {
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_read().unwrap();
        assert!(
            txn.open_table(TRANSFERS_V1).is_err(),
            "the schema-1 table is gone"
        );
    }

    // The Hub opens the upgraded file with the same history, and books on.
    downgrade_to_schema_1(&path);
    let (store, _) = Store::open(dir.path(), StoreOptions::default()).unwrap();
    assert_eq!(history(&store, None, 100).await, before);
    common::open_funded_wallet(
        &store,
        AccountId(AccountId::FIRST_WALLET + 1),
        agent(AccountId(AccountId::FIRST_WALLET + 1)),
        Micros::from_usdc(1),
        "stripe:pi_2",
    )
    .await;
    store.shutdown().await;
    let report = admin::verify(dir.path()).unwrap();
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.transfers, TRANSFERS_WRITTEN + 1);
}
