//! `add_missing_column` as an Extism plug-in: the same input JSON as the autoheal patch ABI
//! (`{"params":{…},"snapshot":{…}}`) and the same output JSON as `patches/add_missing_column`
//! (`{"operations":[…],"state":{…}}`, or `{"error":"…"}`), so the benchmark can compare the
//! two hosts on equivalent guests. Unlike the WAT patch it does not log.

use extism_pdk::{plugin_fn, FnResult};
use serde_json::{json, Map, Value};

fn refuse(why: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({ "error": why })).unwrap()
}

fn add_missing_column(input: &[u8]) -> Vec<u8> {
    let mut input: Value = match serde_json::from_slice(input) {
        Ok(v) => v,
        Err(_) => return refuse("input is not JSON"),
    };
    let params = input.get("params").and_then(Value::as_object);
    let param = |k: &str| params.and_then(|p| p.get(k)).and_then(Value::as_str);
    let (Some(table), Some(column), Some(column_type)) =
        (param("table"), param("column"), param("column_type"))
    else {
        return refuse("missing parameter table, column or column_type");
    };
    let (table, column, column_type) =
        (table.to_owned(), column.to_owned(), column_type.to_owned());

    let mut snapshot = match input.get_mut("snapshot").map(Value::take) {
        Some(Value::Object(s)) => s,
        _ => return refuse("snapshot has no tables"),
    };
    let Some(Value::Object(tables)) = snapshot.get_mut("tables") else {
        return refuse("snapshot has no tables");
    };
    let Some(Value::Object(columns)) = tables.get_mut(&table) else {
        return refuse("table does not exist in the snapshot");
    };

    let mut operations = Vec::new();
    if !columns.contains_key(&column) {
        columns.insert(column.clone(), Value::String(column_type.clone()));
        operations.push(json!({
            "op": "add_column",
            "table": table,
            "column": column,
            "column_type": column_type,
        }));
    }
    let mut out = Map::new();
    out.insert("operations".into(), Value::Array(operations));
    out.insert("state".into(), Value::Object(snapshot));
    serde_json::to_vec(&Value::Object(out)).unwrap()
}

/// The one exported function: input bytes in, output bytes out.
#[plugin_fn]
pub fn run(input: Vec<u8>) -> FnResult<Vec<u8>> {
    Ok(add_missing_column(&input))
}
