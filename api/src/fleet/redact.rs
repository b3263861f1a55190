//! Redaction of secrets that plugins put in telemetry: card numbers (13–19
//! digits passing Luhn, with or without spaces/dashes), CVVs, API keys,
//! passwords and bearer tokens, in any field name or free text. Runs before
//! an event is stored or logged.

use regex::Regex;
use serde_json::Value;
use std::sync::LazyLock;

pub const REDACTED: &str = "[REDACTED]";

/// Keys whose value is a secret whatever it looks like.
fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase().replace(['-', ' '], "_");
    const EXACT: [&str; 8] = [
        "cvv",
        "cvc",
        "cvv2",
        "cvc2",
        "cid",
        "pin",
        "pan",
        "card_number",
    ];
    const CONTAINS: [&str; 10] = [
        "password",
        "passwd",
        "secret",
        "api_key",
        "apikey",
        "token",
        "authorization",
        "private_key",
        "security_code",
        "cardnumber",
    ];
    EXACT.contains(&key.as_str()) || CONTAINS.iter().any(|part| key.contains(part))
}

static CARD_CANDIDATE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b\d(?:[ -]?\d){12,18}\b").expect("card regex"));

/// `password=…`, `api_key: …`, `"token": "…"` and `Bearer …` in free text.
static SECRET_ASSIGNMENT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)((?:password|passwd|pwd|secret|api[_-]?key|token|cvv2?|cvc2?)["']?\s*[:=]\s*["']?)[^\s"',;&]+"#,
    )
    .expect("assignment regex")
});

static BEARER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{8,}").expect("bearer regex"));

/// Well-known live key shapes (Stripe-like `sk_live_…`, our own secrets).
static KEY_SHAPES: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{8,}\b|\bah[mos]_[0-9a-f]{64}\b")
        .expect("key regex")
});

fn luhn_valid(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(index, digit)| {
            let digit = u32::from(*digit);
            if index % 2 == 1 {
                let doubled = digit * 2;
                if doubled > 9 {
                    doubled - 9
                } else {
                    doubled
                }
            } else {
                digit
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Redacts secrets inside free text.
pub fn redact_text(text: &str) -> String {
    let text = CARD_CANDIDATE.replace_all(text, |captures: &regex::Captures| {
        let candidate = &captures[0];
        let digits: Vec<u8> = candidate
            .bytes()
            .filter(u8::is_ascii_digit)
            .map(|byte| byte - b'0')
            .collect();
        if (13..=19).contains(&digits.len()) && luhn_valid(&digits) {
            REDACTED.to_owned()
        } else {
            candidate.to_owned()
        }
    });
    let text = SECRET_ASSIGNMENT.replace_all(&text, format!("${{1}}{REDACTED}"));
    let text = BEARER.replace_all(&text, format!("${{1}}{REDACTED}"));
    KEY_SHAPES.replace_all(&text, REDACTED).into_owned()
}

/// Redacts secrets anywhere in a JSON value: values under secret-looking
/// keys are replaced whole, strings elsewhere are scanned.
pub fn redact_json(value: &mut Value) {
    match value {
        Value::String(text) => *text = redact_text(text),
        Value::Array(items) => items.iter_mut().for_each(redact_json),
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                if is_secret_key(key) && !item.is_null() {
                    *item = Value::String(REDACTED.to_owned());
                } else {
                    redact_json(item);
                }
            }
        }
        Value::Number(number) => {
            // A card number sent as a JSON number.
            let text = number.to_string();
            if redact_text(&text) != text {
                *value = Value::String(REDACTED.to_owned());
            }
        }
        Value::Bool(_) | Value::Null => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check_text(input: &str, expected: &str) {
        assert_eq!(redact_text(input), expected, "input: {input}");
    }

    #[test]
    fn free_text() {
        check_text(
            "card 4111 1111 1111 1111 declined",
            "card [REDACTED] declined",
        );
        check_text("card 4111-1111-1111-1111", "card [REDACTED]");
        check_text(
            "order 4111111111111112 total",
            "order 4111111111111112 total",
        ); // fails Luhn
        check_text("order 12345 amount 55000", "order 12345 amount 55000");
        check_text(
            "login failed password=hunter2 for x",
            "login failed password=[REDACTED] for x",
        );
        check_text("{\"api_key\": \"abc123\"}", "{\"api_key\": \"[REDACTED]\"}");
        check_text(
            "Authorization: Bearer abcdefghijkl",
            "Authorization: Bearer [REDACTED]",
        );
        check_text("key sk_live_abcdefgh1234 leaked", "key [REDACTED] leaked");
        check_text("cvv: 123", "cvv: [REDACTED]");
    }

    #[test]
    fn json_values() {
        let mut value = json!({
            "order_id": "12345",
            "amount": 55000,
            "cvv": "123",
            "card": {"number": 4111111111111111u64, "holder": "A"},
            "Api-Key": "k",
            "notes": ["paid with 5555555555554444"],
            "token": null
        });
        redact_json(&mut value);
        assert_eq!(
            value,
            json!({
                "order_id": "12345",
                "amount": 55000,
                "cvv": "[REDACTED]",
                "card": {"number": "[REDACTED]", "holder": "A"},
                "Api-Key": "[REDACTED]",
                "notes": ["paid with [REDACTED]"],
                "token": null
            })
        );
    }
}
