//! Snapshot and rollback, property-tested: applying a patch's operations to the snapshot
//! gives the new state, the restore operations bring it back, and nothing mutates the
//! snapshot on the way — also through real patch runs.

use std::collections::BTreeMap;

use host::ops::{apply, restore_operations};
use host::{Operation, Severity, State};
use proptest::prelude::*;
use serde_json::{json, Value};

use crate::common::{host, shipped};

fn ident() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "a",
        "b",
        "c",
        "d",
        "merchant_fee",
        "memory_limit",
        "debug",
    ])
    .prop_map(String::from)
}

fn table() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["wp_orders", "wp_refunds", "wp_logs"]).prop_map(String::from)
}

fn sql_type() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "INT",
        "BIGINT UNSIGNED",
        "DECIMAL(10,2)",
        "VARCHAR(191) NOT NULL",
        "TEXT",
    ])
    .prop_map(String::from)
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        "[a-zA-Z0-9 ]{0,12}".prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
    ]
}

fn state() -> impl Strategy<Value = State> {
    (
        prop::collection::btree_map(ident(), scalar(), 0..5),
        prop::collection::btree_map(
            table(),
            prop::collection::btree_map(ident(), sql_type(), 0..4),
            0..3,
        ),
        prop::sample::select(vec!["woocommerce", "shopify", "magento"]),
    )
        .prop_map(|(config, tables, platform)| {
            let mut facts = BTreeMap::new();
            facts.insert("platform".to_string(), json!(platform));
            State {
                config,
                tables,
                facts,
            }
        })
}

fn operation() -> impl Strategy<Value = Operation> {
    prop_oneof![
        (table(), ident(), sql_type()).prop_map(|(table, column, column_type)| {
            Operation::AddColumn {
                table,
                column,
                column_type,
            }
        }),
        (table(), ident()).prop_map(|(table, column)| Operation::DropColumn { table, column }),
        (ident(), scalar()).prop_map(|(key, value)| Operation::SetConfig { key, value }),
        ident().prop_map(|key| Operation::UnsetConfig { key }),
        Just(Operation::NotifyMerchant {
            template: "php_upgrade".into(),
            severity: Severity::Info,
            message: "hello".into(),
            data: None,
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever operation list applies cleanly, its restore list takes the new state back to
    /// the snapshot; a list that does not apply is refused without touching anything.
    #[test]
    fn restore_operations_bring_the_snapshot_back(snapshot in state(), ops in prop::collection::vec(operation(), 0..8)) {
        let before = snapshot.clone();
        match apply(&snapshot, &ops) {
            Ok(next) => {
                let restore = restore_operations(&snapshot, &ops).unwrap();
                prop_assert_eq!(apply(&next, &restore).unwrap(), snapshot.clone());
                // And the restore of the restore re-applies the change.
                let again = restore_operations(&next, &restore).unwrap();
                prop_assert_eq!(apply(&snapshot, &again).unwrap(), next);
            }
            Err(_) => prop_assert!(restore_operations(&snapshot, &ops).is_err()),
        }
        prop_assert_eq!(snapshot, before);
    }

    /// Real runs of the shipped patches: the returned state is the snapshot with the
    /// returned operations applied, the restore list brings it back, the snapshot is unchanged.
    #[test]
    fn shipped_patches_return_the_state_their_operations_give(
        snapshot in state(),
        t in table(),
        column in ident(),
        ty in sql_type(),
        limit in prop::sample::select(vec!["64M", "128M", "256M", "1G", "-1", "512K"]),
        php in prop::sample::select(vec!["5.6", "7.4.33", "8.0", "8.1.2", "8.3"]),
    ) {
        let mut snapshot = snapshot;
        snapshot.facts.insert("php_version".into(), json!(php));
        let runs = [
            ("add_missing_column", json!({"table": t, "column": column, "column_type": ty})),
            ("update_memory_limit", json!({"memory_limit": limit})),
            ("php_upgrade_notice", json!({"required_php": "8.1"})),
            ("api_key_refresh_notice", json!({})),
        ];
        for (patch, params) in runs {
            let before = snapshot.clone();
            match host().dry_run(&bundle(patch), &snapshot, &params) {
                Ok(run) => {
                    prop_assert_eq!(&apply(&snapshot, &run.operations).unwrap(), &run.state);
                    prop_assert_eq!(&apply(&run.state, &run.restore).unwrap(), &snapshot);
                }
                Err(host::RunError::PatchRefused(_)) => prop_assert!(!snapshot.tables.contains_key(&t)),
                Err(e) => prop_assert!(false, "{patch}: {e}"),
            }
            prop_assert_eq!(&snapshot, &before);
        }
    }
}

fn bundle(name: &str) -> host::VerifiedBundle {
    use std::sync::{Mutex, OnceLock};
    static CACHE: OnceLock<Mutex<BTreeMap<String, host::VerifiedBundle>>> = OnceLock::new();
    CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap()
        .entry(name.into())
        .or_insert_with(|| shipped(name))
        .clone()
}
