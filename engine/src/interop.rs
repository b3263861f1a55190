//! Interop mappings: a platform's event → one normalized event vocabulary,
//! emitted as a CloudEvents 1.0 envelope.
//!
//! Order of work for one event: map fields (source path → target path, nested
//! paths with `.`, array indexes as numbers) → optional Rhai `transform(data,
//! payload)` → amounts to integer minor units (ISO 4217 exponent of the event's
//! currency) → envelope.

use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::error::{LoadError, LoadErrorKind, NormalizeError};
use crate::healing::Platform;
use crate::sandbox::{self, Script};
use crate::source::{Meta, Origin};

/// The normalized event types (seed 001) and their category.
pub const EVENT_TYPES: &[&str] = &[
    "checkout.created",
    "payment.succeeded",
    "payment.failed",
    "refund.issued",
    "subscription.created",
    "subscription.cancelled",
    "plugin.error",
];

/// `checkout.created` → `checkout`.
pub fn category_of(event_type: &str) -> &str {
    event_type.split('.').next().unwrap_or(event_type)
}

/// ISO 4217 minor-unit exponent of a currency code (upper case), if known.
pub fn currency_exponent(code: &str) -> Option<u32> {
    // A `match` compiles to a jump table on the bytes: this is on the hot path.
    Some(match code {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "AED" | "AFN" | "ALL" | "AMD" | "ANG" | "AOA" | "ARS" | "AUD" | "AWG" | "AZN" | "BAM"
        | "BBD" | "BDT" | "BGN" | "BMD" | "BND" | "BOB" | "BRL" | "BSD" | "BTN" | "BWP" | "BYN"
        | "BZD" | "CAD" | "CDF" | "CHF" | "CNY" | "COP" | "CRC" | "CUP" | "CVE" | "CZK" | "DKK"
        | "DOP" | "DZD" | "EGP" | "ERN" | "ETB" | "EUR" | "FJD" | "FKP" | "GBP" | "GEL" | "GHS"
        | "GIP" | "GMD" | "GTQ" | "GYD" | "HKD" | "HNL" | "HTG" | "HUF" | "IDR" | "ILS" | "INR"
        | "IRR" | "JMD" | "KES" | "KGS" | "KHR" | "KPW" | "KYD" | "KZT" | "LAK" | "LBP" | "LKR"
        | "LRD" | "LSL" | "MAD" | "MDL" | "MGA" | "MKD" | "MMK" | "MNT" | "MOP" | "MRU" | "MUR"
        | "MVR" | "MWK" | "MXN" | "MYR" | "MZN" | "NAD" | "NGN" | "NIO" | "NOK" | "NPR" | "NZD"
        | "PAB" | "PEN" | "PGK" | "PHP" | "PKR" | "PLN" | "QAR" | "RON" | "RSD" | "RUB" | "SAR"
        | "SBD" | "SCR" | "SDG" | "SEK" | "SGD" | "SHP" | "SLE" | "SOS" | "SRD" | "SSP" | "STN"
        | "SVC" | "SYP" | "SZL" | "THB" | "TJS" | "TMT" | "TOP" | "TRY" | "TTD" | "TWD" | "TZS"
        | "UAH" | "USD" | "UYU" | "UZS" | "VES" | "WST" | "XCD" | "YER" | "ZAR" | "ZMW" | "ZWL" => {
            2
        }
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        "CLF" | "UYW" => 4,
        _ => return None,
    })
}

/// A mapping as data: the seed's `interop_event_mappings` JSON shape plus the
/// optional knobs. The Rhai file's `let mapping = #{...}` uses the same keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingSpec {
    /// Unique name; defaults to `{source_platform}:{source_event_type}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub source_platform: String,
    pub source_event_type: String,
    pub normalized_event_type: String,
    /// Source path → target path, like the seed's table (`id` → `order_id`).
    pub field_mappings: std::collections::BTreeMap<String, String>,
    /// Source paths that may be absent (otherwise a missing field is an error).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub optional: Vec<String>,
    /// Target fields holding amounts; default `["amount"]` when mapped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_fields: Option<Vec<String>>,
    /// Used when the event has no `currency` field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_currency: Option<String>,
    /// Target field used as the CloudEvents `subject`; default `order_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_field: Option<String>,
}

const MAPPING_FIELDS: &[&str] = &[
    "name",
    "source_platform",
    "source_event_type",
    "normalized_event_type",
    "field_mappings",
    "optional",
    "amount_fields",
    "default_currency",
    "subject_field",
];

/// A validated mapping, ready to normalize events.
#[derive(Debug, Clone)]
pub struct Mapping {
    pub name: String,
    pub source_platform: Platform,
    pub source_event_type: String,
    pub normalized_event_type: String,
    /// (source path, target path), sorted by source path.
    pub fields: Vec<(String, String)>,
    pub optional: Vec<String>,
    pub amount_fields: Vec<String>,
    pub default_currency: Option<String>,
    pub subject_field: String,
    pub file: String,
    source_paths: Vec<Vec<PathSeg>>,
    target_paths: Vec<Vec<String>>,
    transform: Option<Script>,
}

#[derive(Debug, Clone)]
enum PathSeg {
    Key(String),
    /// A numeric segment: array index, or an object key of the same digits.
    Index(usize, String),
}

fn parse_path(path: &str) -> Option<Vec<PathSeg>> {
    if path.is_empty() {
        return None;
    }
    path.split('.')
        .map(|s| {
            if s.is_empty() {
                None
            } else if let Ok(i) = s.parse::<usize>() {
                Some(PathSeg::Index(i, s.to_string()))
            } else {
                Some(PathSeg::Key(s.to_string()))
            }
        })
        .collect()
}

fn lookup<'v>(root: &'v Value, path: &[PathSeg]) -> Option<&'v Value> {
    let mut cur = root;
    for seg in path {
        cur = match (seg, cur) {
            (PathSeg::Key(k), Value::Object(m)) => m.get(k)?,
            (PathSeg::Index(_, k), Value::Object(m)) => m.get(k)?,
            (PathSeg::Index(i, _), Value::Array(a)) => a.get(*i)?,
            _ => return None,
        };
    }
    (!cur.is_null()).then_some(cur)
}

fn insert(root: &mut Map<String, Value>, path: &[String], value: Value) {
    let (last, parents) = path.split_last().expect("target paths are non-empty");
    let mut cur = root;
    for p in parents {
        let slot = cur
            .entry(p.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        cur = slot.as_object_mut().expect("just made an object");
    }
    cur.insert(last.clone(), value);
}

impl Mapping {
    /// Build a mapping from data (e.g. a mapping Ops created through the API),
    /// with the same validation as a Rhai file. `label` names it in errors.
    pub fn from_spec(label: &str, spec: &MappingSpec) -> Result<Mapping, Vec<LoadError>> {
        let value = serde_json::to_value(spec).unwrap_or(Value::Null);
        Mapping::from_json(label, &value)
    }

    /// Build a mapping from a JSON object with [`MappingSpec`]'s keys. Unlike
    /// deserializing a `MappingSpec`, every problem is reported, each typed.
    pub fn from_json(label: &str, value: &Value) -> Result<Mapping, Vec<LoadError>> {
        let origin = Origin::data(label);
        match value {
            Value::Object(map) => Mapping::from_meta(map, &origin, None),
            other => Err(vec![origin.err(
                (0, 0),
                LoadErrorKind::WrongType {
                    field: "mapping".into(),
                    expected: "a map".into(),
                    found: crate::source::type_name(other).into(),
                },
            )]),
        }
    }

    pub(crate) fn from_meta(
        map: &Map<String, Value>,
        origin: &Origin,
        script: Option<Script>,
    ) -> Result<Mapping, Vec<LoadError>> {
        let mut m = Meta::new(map, origin);
        m.check_known(MAPPING_FIELDS);
        let name = m.string("name", false);
        let platform_raw = m.string("source_platform", true);
        let source_event_type = m.string("source_event_type", true);
        let normalized = m.string("normalized_event_type", true);
        let fields = m.string_map("field_mappings", true);
        let optional = m.strings("optional", false).unwrap_or_default();
        let amount_fields = m.strings("amount_fields", false);
        let default_currency = m.string("default_currency", false);
        let subject_field = m.string("subject_field", false);

        let platform = platform_raw.as_deref().and_then(|p| {
            let parsed = Platform::parse(p).filter(|q| q.as_str() == p);
            if parsed.is_none() {
                let at = origin.value_pos("source_platform", p);
                m.error_at(at, LoadErrorKind::UnknownPlatform { platform: p.into() });
            }
            parsed
        });
        if let Some(t) = &normalized {
            if !EVENT_TYPES.contains(&t.as_str()) {
                m.error(
                    "normalized_event_type",
                    LoadErrorKind::UnknownEventType {
                        event_type: t.clone(),
                        known: EVENT_TYPES.join(", "),
                    },
                );
            }
        }
        if let Some(c) = &default_currency {
            if currency_exponent(c).is_none() {
                m.error(
                    "default_currency",
                    LoadErrorKind::UnknownCurrency { code: c.clone() },
                );
            }
        }
        let mut source_paths = Vec::new();
        let mut target_paths = Vec::new();
        let mut targets_seen: Vec<&str> = Vec::new();
        if let Some(fields) = &fields {
            if fields.is_empty() {
                m.error(
                    "field_mappings",
                    LoadErrorKind::InvalidValue {
                        field: "field_mappings".into(),
                        message: "must map at least one field".into(),
                    },
                );
            }
            for (src, dst) in fields {
                match (parse_path(src), parse_path(dst)) {
                    (Some(s), Some(_)) => {
                        source_paths.push(s);
                        target_paths.push(dst.split('.').map(str::to_string).collect());
                    }
                    _ => m.error(
                        src,
                        LoadErrorKind::InvalidValue {
                            field: format!("field_mappings.{src}"),
                            message: "paths are names separated by single dots".into(),
                        },
                    ),
                }
                if targets_seen.contains(&dst.as_str()) {
                    m.error(
                        src,
                        LoadErrorKind::Duplicate {
                            what: "target field".into(),
                            name: dst.clone(),
                            first_file: origin.file.to_string(),
                        },
                    );
                }
                targets_seen.push(dst);
            }
        }
        let amount_fields = amount_fields.unwrap_or_else(|| {
            if targets_seen.contains(&"amount") {
                vec!["amount".to_string()]
            } else {
                Vec::new()
            }
        });
        if let Some(s) = &script {
            for f in s.ast.iter_functions() {
                if f.name == "transform" && f.params.len() != 2 {
                    let at = origin.decl;
                    m.error_at(
                        at,
                        LoadErrorKind::WrongArity {
                            function: "transform".into(),
                            expected: 2,
                            found: f.params.len(),
                        },
                    );
                }
            }
        }
        let errors = m.errors;
        match (platform, source_event_type, normalized, fields) {
            (Some(platform), Some(source_event_type), Some(normalized), Some(fields))
                if errors.is_empty() =>
            {
                Ok(Mapping {
                    name: name.unwrap_or_else(|| format!("{platform}:{source_event_type}")),
                    source_platform: platform,
                    source_event_type,
                    normalized_event_type: normalized,
                    fields,
                    optional,
                    amount_fields,
                    default_currency,
                    subject_field: subject_field.unwrap_or_else(|| "order_id".into()),
                    file: origin.file.to_string(),
                    source_paths,
                    target_paths,
                    transform: script.filter(|s| s.has_fn("transform")),
                })
            }
            _ => Err(errors),
        }
    }

    /// The mapping as data (the API's JSON shape).
    pub fn spec(&self) -> MappingSpec {
        MappingSpec {
            name: Some(self.name.clone()),
            source_platform: self.source_platform.to_string(),
            source_event_type: self.source_event_type.clone(),
            normalized_event_type: self.normalized_event_type.clone(),
            field_mappings: self.fields.iter().cloned().collect(),
            optional: self.optional.clone(),
            amount_fields: Some(self.amount_fields.clone()),
            default_currency: self.default_currency.clone(),
            subject_field: Some(self.subject_field.clone()),
        }
    }

    pub fn has_transform(&self) -> bool {
        self.transform.is_some()
    }

    /// Normalize one event with this mapping (the caller picked it).
    pub fn normalize(&self, input: &InteropEvent) -> Result<NormalizedEvent, NormalizeError> {
        self.normalize_with_deadline(input, None)
    }

    pub fn normalize_with_deadline(
        &self,
        input: &InteropEvent,
        deadline: Option<Instant>,
    ) -> Result<NormalizedEvent, NormalizeError> {
        if !input.payload.is_object() {
            return Err(NormalizeError::PayloadNotObject);
        }
        let mut data = Map::new();
        for (i, (src, _)) in self.fields.iter().enumerate() {
            match lookup(&input.payload, &self.source_paths[i]) {
                Some(v) => insert(&mut data, &self.target_paths[i], v.clone()),
                None if self.optional.iter().any(|o| o == src) => {}
                None => {
                    return Err(NormalizeError::MissingField {
                        mapping: self.name.clone(),
                        path: src.clone(),
                    })
                }
            }
        }
        if let Some(script) = &self.transform {
            let out = script
                .call(
                    "transform",
                    (
                        sandbox::to_dynamic(&Value::Object(data)),
                        sandbox::to_dynamic(&input.payload),
                    ),
                    deadline,
                )
                .map_err(|error| NormalizeError::Transform {
                    mapping: self.name.clone(),
                    error,
                })?;
            data = match sandbox::from_dynamic(&out) {
                Some(Value::Object(m)) => m,
                _ => {
                    return Err(NormalizeError::Transform {
                        mapping: self.name.clone(),
                        error: script.wrong_return("a map", &out),
                    })
                }
            };
        }
        self.convert_amounts(&mut data)?;
        Ok(cloud_event(
            self.source_platform.as_str(),
            &self.normalized_event_type,
            &self.source_event_type,
            &self.subject_field,
            input,
            data,
        ))
    }

    fn convert_amounts(&self, data: &mut Map<String, Value>) -> Result<(), NormalizeError> {
        if self.amount_fields.is_empty() {
            return Ok(());
        }
        let (currency, normalized) = match data.get("currency") {
            Some(Value::String(c)) if c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()) => {
                (Some(c.clone()), true)
            }
            Some(Value::String(c)) => (Some(c.trim().to_ascii_uppercase()), false),
            _ => (self.default_currency.clone(), false),
        };
        let mut currency_written = normalized;
        for field in &self.amount_fields {
            let Some(raw) = data.get(field) else {
                continue;
            };
            let Some(code) = &currency else {
                return Err(NormalizeError::MissingCurrency {
                    mapping: self.name.clone(),
                    field: field.clone(),
                });
            };
            let Some(exp) = currency_exponent(code) else {
                return Err(NormalizeError::UnknownCurrency {
                    mapping: self.name.clone(),
                    code: code.clone(),
                });
            };
            let minor =
                to_minor_units(raw, exp).map_err(|reason| NormalizeError::InvalidAmount {
                    mapping: self.name.clone(),
                    field: field.clone(),
                    reason,
                })?;
            if let Some(slot) = data.get_mut(field) {
                *slot = Value::from(minor);
            }
            if !currency_written {
                data.insert("currency".into(), Value::String(code.clone()));
                currency_written = true;
            }
        }
        Ok(())
    }
}

/// Amount (a JSON number or a decimal string such as `"550.00"`) in major units
/// → integer minor units for a currency exponent. Exact: no floating point.
pub fn to_minor_units(value: &Value, exponent: u32) -> Result<i64, String> {
    let text: std::borrow::Cow<str> = match value {
        Value::Number(n) => n.to_string().into(),
        Value::String(s) => s.trim().into(),
        other => {
            return Err(format!(
                "expected a number or a decimal string, found {}",
                crate::source::type_name(other)
            ))
        }
    };
    let (neg, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, &*text),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !all_digits(int) || !all_digits(frac) {
        return Err(format!("`{text}` is not a decimal number"));
    }
    let frac_trimmed = frac.trim_end_matches('0');
    if frac_trimmed.len() > exponent as usize {
        return Err(format!(
            "`{text}` has more decimals than the currency's {exponent}"
        ));
    }
    let overflow = || format!("`{text}` is too large");
    // int * 10^exp + frac padded to exp digits, with overflow checks.
    let mut v: i64 = 0;
    let frac_digits = frac_trimmed
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(exponent as usize);
    for b in int.bytes().chain(frac_digits) {
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(i64::from(b - b'0')))
            .ok_or_else(overflow)?;
    }
    Ok(if neg { -v } else { v })
}

/// An event the plugin already sent in the normalized vocabulary (`checkout.created`, …,
/// see [`EVENT_TYPES`]): wrapped as a CloudEvent as it is, with the same deterministic id a
/// mapped event gets. Anything else needs a mapping.
pub fn already_normalized(input: &InteropEvent) -> Result<NormalizedEvent, NormalizeError> {
    if !EVENT_TYPES.contains(&input.event_type.as_str()) {
        return Err(NormalizeError::NoMapping {
            platform: input.platform.clone(),
            event_type: input.event_type.clone(),
        });
    }
    let Value::Object(data) = &input.payload else {
        return Err(NormalizeError::PayloadNotObject);
    };
    Ok(cloud_event(
        &input.platform,
        &input.event_type,
        &input.event_type,
        "order_id",
        input,
        data.clone(),
    ))
}

fn cloud_event(
    platform: &str,
    normalized_event_type: &str,
    source_event_type: &str,
    subject_field: &str,
    input: &InteropEvent,
    data: Map<String, Value>,
) -> NormalizedEvent {
    let subject = data.get(subject_field).and_then(|v| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    });
    let id = event_id(
        platform,
        &input.shop,
        &input.event_type,
        input.event_id.as_deref(),
        subject.as_deref(),
        &input.payload,
    );
    let mut source = String::with_capacity(10 + platform.len() + input.shop.len());
    source.push_str("/plugins/");
    source.push_str(platform);
    source.push('/');
    source.push_str(&input.shop);
    NormalizedEvent {
        specversion: "1.0".into(),
        id,
        source,
        event_type: normalized_event_type.to_owned(),
        time: input.time,
        subject,
        datacontenttype: "application/json".into(),
        category: category_of(normalized_event_type).to_string(),
        sourceplatform: platform.to_owned(),
        sourceevent: source_event_type.to_owned(),
        data,
    }
}

/// Deterministic CloudEvents `id`: the same platform, shop and source event id
/// always give the same id, so a retried delivery deduplicates. Without a
/// source event id, the source event type and subject (or the payload) stand in.
pub fn event_id(
    platform: &str,
    shop: &str,
    source_event_type: &str,
    source_event_id: Option<&str>,
    subject: Option<&str>,
    payload: &Value,
) -> String {
    let mut h = Sha256::new();
    h.update(b"autoheal-interop\0");
    h.update(platform.as_bytes());
    h.update(b"\0");
    h.update(shop.as_bytes());
    h.update(b"\0");
    match (source_event_id, subject) {
        (Some(id), _) => h.update(id.as_bytes()),
        (None, Some(s)) => {
            h.update(source_event_type.as_bytes());
            h.update(b":");
            h.update(s.as_bytes());
        }
        (None, None) => {
            h.update(source_event_type.as_bytes());
            h.update(b":");
            h.update(payload.to_string().as_bytes());
        }
    }
    let b = h.finalize();
    // Shaped as a UUID (version 8: custom, variant RFC 4122) for stores that want one.
    let mut u = [0u8; 16];
    u.copy_from_slice(&b[..16]);
    u[6] = (u[6] & 0x0f) | 0x80;
    u[8] = (u[8] & 0x3f) | 0x80;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(36);
    for (i, x) in u.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push(HEX[(x >> 4) as usize] as char);
        out.push(HEX[(x & 0xf) as usize] as char);
    }
    out
}

fn epoch() -> DateTime<Utc> {
    DateTime::<Utc>::UNIX_EPOCH
}

/// An event as a plugin reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InteropEvent {
    pub platform: String,
    /// The merchant's shop / installation id (part of `source` and of the id).
    pub shop: String,
    /// Source event type, e.g. `orders/create`.
    pub event_type: String,
    /// The platform's own id for this delivery (webhook id), if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// When the event was received (the caller's clock). Defaults to the epoch.
    #[serde(default = "epoch")]
    pub time: DateTime<Utc>,
    pub payload: Value,
}

/// A normalized event as a CloudEvents 1.0 JSON envelope (with extension
/// attributes `category`, `sourceplatform`, `sourceevent`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NormalizedEvent {
    pub specversion: String,
    pub id: String,
    pub source: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub time: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub datacontenttype: String,
    pub category: String,
    pub sourceplatform: String,
    pub sourceevent: String,
    pub data: Map<String, Value>,
}
