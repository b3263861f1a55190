//! Error fingerprints: which error events are "the same error", Sentry-style.
//!
//! An event's fingerprint is its message with the variable parts replaced by placeholders
//! (the *pattern*), plus the in-app stack frames when a trace is present; its `hash` is the
//! group key. It runs on every error event ingested, so it is one pass over a bounded input.
//!
//! # The message
//!
//! [`parameterize`] follows Sentry's message parameterization
//! (`src/sentry/grouping/parameterization.py`): one regex made of every kind below, scanned
//! once from left to right, which reports which kind matched. At each position the kinds
//! are tried in this order, so a URL wins over the host inside it, a date over its numbers,
//! a UUID over its hex:
//!
//! | placeholder    | what                                                                    |
//! |----------------|-------------------------------------------------------------------------|
//! | `<root>`       | the install's own directory before a shared one (`wp-content/`, `vendor/`, …, see [`ROOT_DIRS`]) |
//! | `<email>`      | `local@domain.tld`                                                      |
//! | `<url>`        | `http(s)://`, `ws(s)://`, `ftp://` up to whitespace or a quote          |
//! | `<hostname>`   | dotted names ending in one of the ~100 most common TLDs                 |
//! | `<ip>`         | IPv4 and IPv6                                                           |
//! | `<uuid>`       | `8-4-4-4-12` hex                                                        |
//! | `<sha1>`, `<md5>` | 40 and 32 hex digits                                                 |
//! | `<date>`       | RFC 822/850/1123/3339, ISO 8601 and SQL datetimes, PHP `error_log` stamps, JavaScript dates, 12/24-hour clock times |
//! | `<duration>`   | a number with a unit: `30s`, `250ms`, `1.5 ms`, `2 minutes`, `24h`      |
//! | `<id>`         | a generated identifier: `req_8x3KpQ2mN7vLzA`, `wc_order_Ab12Cd34Ef` (lower-case `prefix_`s, then 10+ letters and digits with a digit and a capital), or 12+ capitals and digits with 3+ digits (`5O190127TN364715T`) |
//! | `<hex>`        | `0x…` of any length; or 8–128 hex digits of one case containing a digit |
//! | `<float>`      | `1.5`, `-0.25`                                                          |
//! | `<int>`        | a run of decimal digits, optionally negative                            |
//! | `<quoted_str>` | a quoted value right after `=`: `key='…'`, `key="…"`, `` key=`…` ``    |
//!
//! Whitespace runs become one space and the message is trimmed.
//!
//! Word boundaries are Sentry's: a value must stand alone as a word (ASCII word characters),
//! so identifiers with digits inside — `utf8mb4`, `wp_posts2`, `sha256`, `order_123` — are
//! left as they are, while `#1231`, `[23000]` or `(214)` are numbers. A `-` is a minus sign
//! only where it does not join two words (`abc-12` gives `abc-<int>`).
//!
//! Where this differs from Sentry, on purpose:
//! - **All-digit words are `<int>` whatever their length** (Sentry calls 8 digits and more
//!   `<hex>`), so `Allowed memory size of 134217728 bytes exhausted (tried to allocate 20480
//!   bytes)` gives one pattern for every size.
//! - **`<root>`**: PHP messages carry absolute paths (`… in /home/u123/public_html/wp-content/
//!   plugins/x/y.php on line 12`), and the part before the first shared directory is the
//!   install's own, so without this no error would group across installs. The path from that
//!   directory on is kept.
//! - **`<id>`**: payment APIs name every request, charge and transaction with a generated
//!   id (Stripe's `req_…`, `ch_…`, `evt_…`; PayPal's transaction ids); an error quoting one
//!   would be a group of its own. (Sentry experiments with the same idea.)
//! - Quoted values are replaced only after `=`, as in Sentry (the rest of a quoted string is
//!   what the error is about: `Unknown column 'billing_phone' in 'field list'` keeps its
//!   column, and a shipped rule can tell it from another), and backticks count as quotes.
//! - An email's domain needs a dot (so PHP's `class@anonymous` is not an email), its local
//!   part is `[A-Za-z0-9._%+-]`; a URL stops at a quote or `<`/`>`; a numeric date must start
//!   a word; `12:30pm` needs its `pm` to end a word.
//! - Without look-around (the `regex` crate has none), Sentry's look-arounds are word
//!   boundaries plus checks on the matched text: an IPv6 address must contain a digit (so
//!   `Db::add` is not one), a bare hex word must contain a digit (so `deadbeef` stays), a
//!   minus sign glued to a word is kept as text, and an `<id>` must look generated. A match
//!   that fails its check is kept as it is.
//! - IPv6's forms are ordered so the longest wins (Sentry's order cuts
//!   `2001:db8::8a2e:370:7334` after `8a2e`).
//! - Not done: Sentry's `traceparent`, Swift transaction ids and booleans (absent from PHP
//!   plugin errors; `enabled=false` and `enabled=true` may well be different errors), and
//!   7-character git shas (too close to identifiers).
//!
//! The input examined is capped at [`MAX_MESSAGE_BYTES`] (and a trace at
//! [`MAX_STACK_TRACE_BYTES`]), cut back to the last whitespace so no value is split; what
//! lies beyond is ignored, so a huge message costs bounded time.
//!
//! # The stack trace
//!
//! A trace is read line by line. Understood lines: PHP's `getTraceAsString()` (`#0
//! /path/file.php(214): Class->method(Array)`, `#1 [internal function]: fn()`, `#2 {main}`),
//! `at Class->method() in /path/file.php:123`, `Class->method() at /path/file.php:123` and a
//! bare `/path/file.php:123` or `/path/file.php(123)`; other lines are skipped. When no trace
//! is given but the message contains PHP's `Stack trace:` line, what follows it is the trace;
//! the message is always cut there (and so loses the trailing `thrown in … on line N`).
//!
//! A frame is `"module function"`:
//! - **function**: `Class->method`, `Class::method` or `function`, without arguments;
//!   closures are `{closure}` and anonymous classes `class@anonymous` (PHP writes their file
//!   and line into the name);
//! - **module**: for an **in-app** frame, the file's path from the plugin directory on,
//!   plugin name included, without `.php` — a frame is in-app when its file is under
//!   `wp-content/plugins/<name>/` (WordPress), `modules/<name>/` (PrestaShop) or
//!   `app/code/<Vendor>/<Module>/` (Magento), and not under a `vendor/` directory there
//!   (`wp-content/plugins/molam-pay/includes/class-gateway.php` → `molam-pay/includes/
//!   class-gateway`). Any other file's module is its path from the first of [`ROOT_DIRS`]
//!   (`wp-includes/class-wp-hook`, `vendor/stripe/stripe-php/lib/ApiRequestor`), or its file
//!   name when it has none, so it does not depend on where the install lives.
//!
//! The frames hashed are the in-app ones; when there are none, every frame except
//! `[internal function]` and `{main}`; with no frame, the pattern alone. Line numbers and
//! arguments never count. Frames keep the trace's order (PHP's: innermost first, outermost
//! last), at most [`MAX_FRAMES`] of them.
//!
//! # Versioning
//!
//! `hash` is the hex SHA-256 of `autoheal-fingerprint`, the version, the pattern and each
//! frame, each followed by a newline (neither a pattern nor a frame contains one). Stored
//! groups keep the version they were made with; any change to what this module groups
//! together must bump [`FINGERPRINT_VERSION`], so new events start new groups instead of
//! silently regrouping old ones.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::{Regex, RegexBuilder};
use regex_automata::{meta, util::syntax};
use regex_syntax::hir::HirKind;
use sha2::{Digest, Sha256};

/// Bumped whenever the algorithm changes what groups together: stored groups carry the
/// version they were made with, so a new algorithm starts new groups instead of silently
/// regrouping old ones.
pub const FINGERPRINT_VERSION: u32 = 1;

/// How much of a message is examined, in bytes; the rest is ignored.
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// How much of a stack trace is examined, in bytes (PHP traces run to ~150 bytes a frame).
pub const MAX_STACK_TRACE_BYTES: usize = 16384;

/// How many frames a fingerprint keeps, innermost first.
pub const MAX_FRAMES: usize = 50;

/// Directories every install of a platform has in common: a path's part before the first of
/// them is the install's own (`<root>` in a message), and a frame's module outside the
/// plugins starts at it. Magento's and PrestaShop's core folders besides WordPress's.
pub const ROOT_DIRS: &[&str] = &[
    "wp-content",
    "wp-includes",
    "wp-admin",
    "modules",
    "app/code",
    "app/design",
    "vendor",
    "lib/internal",
    "generated",
    "classes",
    "controllers",
    "override",
];

/// Where in-app code lives: the directory holding one folder per plugin or module.
const PLUGIN_DIRS: &[&str] = &["wp-content/plugins", "modules", "app/code"];

/// What files an error event with the others of its group (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Fingerprint {
    pub version: u32,
    /// hex sha256 of (version, pattern, frames): the group key.
    pub hash: String,
    /// The message with its variable parts replaced by placeholders.
    pub pattern: String,
    /// The in-app stack frames as "module function" strings (no line numbers), outermost last, as used in the hash.
    pub frames: Vec<String>,
}

/// One kind of variable part of a message.
#[derive(Debug)]
pub struct Parameter {
    /// The name of its group in [`Parameter::pattern`].
    pub name: &'static str,
    /// What replaces it (`<int>`); a whitespace run's is a single space.
    pub placeholder: &'static str,
    /// Its regex (verbose syntax, ASCII classes: see [`parameters`]), with the replaced part in
    /// the group `name`; text matched outside that group (the `=` before a quoted value, the
    /// shared directory after a `<root>`) is kept.
    pub pattern: String,
    check: Check,
}

impl Parameter {
    /// This parameter's pattern on its own, read as the combined regex reads it.
    pub fn regex(&self) -> Regex {
        RegexBuilder::new(&self.pattern)
            .ignore_whitespace(true)
            .unicode(false)
            .build()
            .expect("the parameter patterns compile")
    }
}

/// What the matched text must also satisfy, where Sentry uses a look-around.
#[derive(Clone, Copy, Debug)]
enum Check {
    None,
    /// Replaced only if it contains a decimal digit.
    HasDigit,
    /// Replaced only if it contains at least this many decimal digits.
    Digits(usize),
    /// Replaced only if the part after the last `_` has a digit and an upper-case letter.
    RandomTail,
    /// A leading `-` glued to a preceding word is text, not a minus sign.
    Signed,
}

/// The kinds, in the order they are tried at a position. Each `pattern` is compiled with
/// `ignore_whitespace` (comments after `#`) and Unicode off, so `\b`, `\s` and `\w` are
/// ASCII; Unicode is turned back on only in negated classes, so no match splits a character.
pub fn parameters() -> &'static [Parameter] {
    &PARAMETERS
}

static PARAMETERS: LazyLock<Vec<Parameter>> = LazyLock::new(|| {
    let kind = |name, placeholder, pattern: &str, check| Parameter {
        name,
        placeholder,
        pattern: pattern.to_owned(),
        check,
    };
    vec![
        kind("root", "<root>", &root_pattern(), Check::None),
        kind(
            "email",
            "<email>",
            r"(?P<email> [A-Za-z0-9._%+-]+ @ [A-Za-z0-9-]+ (?:\.[A-Za-z0-9-]+)+ )",
            Check::None,
        ),
        kind(
            "url",
            "<url>",
            r#"(?P<url> \b (?:wss?|https?|ftp) :// (?u:[^\s/$.?\#'"<>]) (?u:[^\s'"<>])* )"#,
            Check::None,
        ),
        kind("hostname", "<hostname>", HOSTNAME, Check::None),
        kind("ipv6", "<ip>", &ipv6_pattern(), Check::HasDigit),
        kind(
            "ipv4",
            "<ip>",
            &format!(r"(?P<ipv4> \b {IPV4} \b )"),
            Check::None,
        ),
        kind(
            "uuid",
            "<uuid>",
            r"(?P<uuid> \b [0-9a-fA-F]{8} - [0-9a-fA-F]{4} - [0-9a-fA-F]{4} - [0-9a-fA-F]{4} - [0-9a-fA-F]{12} \b )",
            Check::None,
        ),
        kind(
            "sha1",
            "<sha1>",
            r"(?P<sha1> \b [0-9a-fA-F]{40} \b )",
            Check::None,
        ),
        kind(
            "md5",
            "<md5>",
            r"(?P<md5> \b [0-9a-fA-F]{32} \b )",
            Check::None,
        ),
        kind("date", "<date>", DATE, Check::None),
        kind(
            "duration",
            "<duration>",
            r"(?P<duration> \b [0-9]+ (?:\.[0-9]+)?
                (?: ms | s | h | \s? (?:milliseconds?|msecs?|ms|seconds?|secs?|minutes?|mins?|hours?|hrs?|days?) ) \b )",
            Check::None,
        ),
        kind(
            "id",
            "<id>",
            r"(?P<id> \b (?:[a-z]{2,8}_)+ [A-Za-z0-9]{10,128} \b )",
            Check::RandomTail,
        ),
        kind(
            "id_word",
            "<id>",
            r"(?P<id_word> \b [A-Z0-9]{12,128} \b )",
            Check::Digits(3),
        ),
        kind(
            "hex",
            "<hex>",
            r"(?P<hex> \b 0[xX][0-9a-fA-F]+ \b )",
            Check::None,
        ),
        kind(
            "float",
            "<float>",
            r"(?P<float> (?: \b | - ) [0-9]+ \. [0-9]+ \b )",
            Check::Signed,
        ),
        kind(
            "int",
            "<int>",
            r"(?P<int> (?: \b | - ) [0-9]+ \b )",
            Check::Signed,
        ),
        // After `int`, so an all-digit word never gets here.
        kind(
            "hex_word",
            "<hex>",
            r"(?P<hex_word> \b (?: [0-9a-f]{8,128} | [0-9A-F]{8,128} ) \b )",
            Check::HasDigit,
        ),
        kind(
            "quoted_str",
            "<quoted_str>",
            r#"= (?P<quoted_str> '(?u:[^'])+' | "(?u:[^"])+" | `(?u:[^`])+` )"#,
            Check::None,
        ),
        kind(
            "space",
            " ",
            r"(?P<space> [\t\n\r\x0B\x0C] [\s]* | \x20 [\s]+ )",
            Check::None,
        ),
    ]
});

/// An absolute path (Unix or Windows) up to the first of [`ROOT_DIRS`] or a WordPress file at
/// the install's top (`wp-settings.php`, `index.php`), which is kept.
fn root_pattern() -> String {
    let dirs: Vec<String> = ROOT_DIRS
        .iter()
        .map(|d| regex::escape(d).replace('/', r"[/\\]"))
        .collect();
    format!(
        r#"(?P<root> (?:[A-Za-z]:)? (?:[/\\] (?u:[^\s/\\:()'"<>])+ )*? )
           [/\\] (?: (?: {dirs} ) [/\\] | (?: wp-[a-z-]+ | index | xmlrpc ) \.php \b )"#,
        dirs = dirs.join("|")
    )
}

/// Sentry's list: the ~100 most common TLDs, in either case.
const HOSTNAME: &str = r"(?P<hostname> \b (?:[A-Za-z0-9-]{1,63}\.)+?
    (?: COM|NET|ORG|JP|DE|UK|FR|BR|IT|RU|ES|ME|GOV|PL|CA|AU|CN|CO|IN|NL|EDU|INFO|EU|CH|ID|AT|KR|CZ|MX|BE|TV|SE|TR|TW|AL|UA|IR|VN|CL|SK|LY|CC|TO|NO|FI|US|PT|DK|AR|HU|TK|GR|IL|NEWS|RO|MY|BIZ|IE|ZA|NZ|SG|EE|TH|IO|XYZ|PE|BG|HK|RS|LT|LINK|PH|CLUB|SI|SITE|MOBI|BY|CAT|WIKI|LA|GA|XXX|CF|HR|NG|JOBS|ONLINE|KZ|UG|GQ|AE|IS|LV|PRO|FM|TIPS|MS|SA|APP
      | com|net|org|jp|de|uk|fr|br|it|ru|es|me|gov|pl|ca|au|cn|co|in|nl|edu|info|eu|ch|id|at|kr|cz|mx|be|tv|se|tr|tw|al|ua|ir|vn|cl|sk|ly|cc|to|no|fi|us|pt|dk|ar|hu|tk|gr|il|news|ro|my|biz|ie|za|nz|sg|ee|th|io|xyz|pe|bg|hk|rs|lt|link|ph|club|si|site|mobi|by|cat|wiki|la|ga|xxx|cf|hr|ng|jobs|online|kz|ug|gq|ae|is|lv|pro|fm|tips|ms|sa|app )
    \b )";

const IPV4: &str =
    r"(?: (?:25[0-5]|(?:2[0-4]|1?[0-9])?[0-9]) \. ){3} (?:25[0-5]|(?:2[0-4]|1?[0-9])?[0-9])";

/// Sentry's IPv6 forms, reordered so the longest wins (an embedded IPv4 before the hex
/// groups it starts with; both sides of a `::` in one branch), where Sentry's order cuts
/// `2001:db8::8a2e:370:7334` after `8a2e`. Its look-behind (no word character before) is `\b`
/// before a hex digit and `\B` before a colon; its look-ahead (no alphanumeric after) is `\b`
/// after a hex digit and `\B` after a colon.
fn ipv6_pattern() -> String {
    let h = "[0-9a-fA-F]{1,4}";
    format!(
        r"(?P<ipv6>
            \B :: (?:ffff (?::0{{1,4}})? :)? {IPV4} \b
          | \b (?:{h}:){{1,4}} : {IPV4} \b
          | \b fe80: (?::[0-9a-fA-F]{{0,4}}){{0,4}} % [0-9a-zA-Z]+ \b
          | \b (?:{h}:){{7}} {h} \b
          | \b (?:{h}:){{1,6}} (?::{h}){{1,6}} \b
          | \b (?:{h}:){{1,7}} : \B
          | \B : (?: (?::{h}){{1,7}} \b | : \B )
        )"
    )
}

/// Sentry's date branches (its plain `HH:MM:SS` one is inside the 24-hour clock here), plus
/// PHP's `error_log` stamp with its zone.
const DATE: &str = r"(?P<date>
    # RFC 822 / 1123 / 2822: Tue, 05 Mar 2024 14:22:01 +0000
    (?:Sun|Mon|Tue|Wed|Thu|Fri|Sat) , \s [0-9]{1,2} \s (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \s [0-9]{2,4}
        \s [0-9]{1,2} : [0-9]{1,2} (?: : [0-9]{1,2} )? \s (?: [-+][0-9]{2}[0-5][0-9] | UTC | UT | GMT | [ECMP][SD]T | [A-IK-Z]\b )
    # Mon Jan 02, 1999 and Jan 02, 1999
  | \b (?: (?:Sun|Mon|Tue|Wed|Thu|Fri|Sat) \s )? (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \s [0-3][0-9] , \s [0-9]{2,4} \b
    # RFC 850: Sunday, 06-Nov-94 08:49:37 GMT
  | \b (?:Sunday|Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sun|Mon|Tue|Wed|Thu|Fri|Sat) , \s [0-9]{2}
        - (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) - [0-9]{2} \s [0-9]{2}:[0-9]{2}:[0-9]{2} \s (?: UTC | UT | GMT | [ECMP][SD]T | [A-IK-Z]\b )
    # PHP's error_log: 05-Mar-2024 14:22:01 UTC, or a zone name (Europe/Paris)
  | \b [0-3][0-9] - (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) - [0-9]{4} \s [0-2][0-9]:[0-5][0-9]:[0-5][0-9]
        (?: \s (?: UTC | [A-Z][a-z]+ / [A-Za-z_]+ (?: / [A-Za-z_]+ )? ) \b )?
    # JavaScript: Tue Mar 05 2024 14:22:01 GMT+0100 (Central European Standard Time)
  | \b (?:Sun|Mon|Tue|Wed|Thu|Fri|Sat) \s (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \s [0-9]{2} \s [0-9]{4}
        \s [0-9]{2}:[0-9]{2}:[0-9]{2} \s GMT [+-][0-9]{4} (?: \s \( (?u:[^)])+ \) )?
    # ISO 8601, RFC 3339 and SQL datetimes: optional seconds, fraction and offset
  | \b [0-9]{4} -? [01][0-9] -? [0-3][0-9] [\sT] [0-2][0-9] :? [0-5][0-9] (?: :? [0-5][0-9] (?: \.[0-9]+ )? )?
        (?: Z | [+-][0-2][0-9] :? [0-5][0-9] )?
    # 12-hour clock: 2:30 PM, 11:05:09am
  | \b (?:1[0-2]|[1-9]) : [0-5][0-9] (?: : [0-5][0-9] )? (?: \s?[aApP][mM] \b | \b )
    # 24-hour clock: 14:22, 09:05:33
  | \b (?:2[0-3]|[01]?[0-9]) : [0-5][0-9] (?: : [0-5][0-9] )? \b
    # 2024-03-05
  | \b [0-9]{4} - [01][0-9] - [0-3][0-9] \b
    # asctime: Tue Mar  5 14:22:01 2024
  | \b (?: (?:Sun|Mon|Tue|Wed|Thu|Fri|Sat) \s+ )? (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \s+ [0-9]{1,2}
        \s+ [0-9]{2}:[0-9]{2}:[0-9]{2} \s+ [0-9]{4} \b
    # RFC 822 with whitespace runs: Tue,  5 Mar 2024 14:22 +0100
  | \b (?: (?:Sun|Mon|Tue|Wed|Thu|Fri|Sat) , \s+ )? (?:0[1-9]|[12]?[0-9]|3[01]) \s+ (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)
        \s+ (?:19[0-9]{2}|[2-9][0-9]{3}) \s+ (?:2[0-3]|[01][0-9]) : [0-5][0-9] (?: : (?:60|[0-5][0-9]) )?
        \s+ (?: [-+][0-9]{2}[0-5][0-9] | UTC | UT | GMT | [ECMP][SD]T | [A-IK-Z]\b )
)";

/// Every [`Parameter`] in one regex. It is built as a multi-pattern regex, pattern `i` being
/// `PARAMETERS[i]`, because a search then says which one matched from its DFAs alone;
/// resolving the alternation's capture groups instead measured ten times slower.
struct Parameterizer {
    regex: meta::Regex,
    /// For a parameter whose replaced group is not its whole match (`<root>`, `<quoted_str>`),
    /// its own regex, to find that group in the match.
    groups: Vec<Option<Regex>>,
}

static PARAMETERIZER: LazyLock<Parameterizer> = LazyLock::new(|| {
    let patterns: Vec<&str> = PARAMETERS.iter().map(|p| p.pattern.as_str()).collect();
    let regex = meta::Builder::new()
        .syntax(syntax::Config::new().ignore_whitespace(true).unicode(false))
        .configure(meta::Config::new().nfa_size_limit(Some(64 << 20)))
        .build_many(&patterns)
        .expect("the parameter patterns compile");
    let groups = PARAMETERS
        .iter()
        .map(|p| {
            let hir = regex_syntax::ParserBuilder::new()
                .ignore_whitespace(true)
                .unicode(false)
                .build()
                .parse(&p.pattern)
                .expect("the parameter patterns parse");
            let whole =
                matches!(hir.kind(), HirKind::Capture(c) if c.name.as_deref() == Some(p.name));
            (!whole).then(|| p.regex())
        })
        .collect();
    Parameterizer { regex, groups }
});

/// The message with its variable parts replaced by placeholders (see the module
/// documentation): `order #1231 failed` → `order #<int> failed`.
pub fn parameterize(message: &str) -> String {
    let text = examined(message.trim(), MAX_MESSAGE_BYTES);
    let p = &*PARAMETERIZER;
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for found in p.regex.find_iter(text) {
        let index = found.pattern().as_usize();
        let parameter = &PARAMETERS[index];
        let value = match &p.groups[index] {
            None => found.range(),
            Some(own) => own
                .captures_at(text, found.start())
                .and_then(|c| c.name(parameter.name))
                .map_or(found.range(), |m| m.range()),
        };
        out.push_str(&text[copied..value.start]);
        let value_text = &text[value.clone()];
        match parameter.check {
            Check::HasDigit if !value_text.bytes().any(|b| b.is_ascii_digit()) => {
                out.push_str(value_text)
            }
            Check::Digits(n) if value_text.bytes().filter(u8::is_ascii_digit).count() < n => {
                out.push_str(value_text)
            }
            Check::RandomTail if !is_random(value_text.rsplit('_').next().unwrap_or("")) => {
                out.push_str(value_text)
            }
            Check::Signed
                if value_text.starts_with('-')
                    && text[..value.start]
                        .bytes()
                        .next_back()
                        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_') =>
            {
                out.push('-');
                out.push_str(parameter.placeholder);
            }
            _ => out.push_str(parameter.placeholder),
        }
        out.push_str(&text[value.end..found.end()]);
        copied = found.end();
    }
    out.push_str(&text[copied..]);
    out
}

/// Whether an identifier's tail looks generated rather than named: a digit and an upper-case
/// letter among its letters (`8x3KpQ2mN7vLzA`, not `stripe2024`).
fn is_random(tail: &str) -> bool {
    tail.bytes().any(|b| b.is_ascii_digit()) && tail.bytes().any(|b| b.is_ascii_uppercase())
}

/// The fingerprint of an error event: its message's pattern and, when a stack trace is given
/// (or embedded in the message after `Stack trace:`), its frames; see the module documentation.
pub fn fingerprint(message: &str, stack_trace: Option<&str>) -> Fingerprint {
    let head = examined(message, MAX_STACK_TRACE_BYTES);
    let (message, embedded) = match head.find("Stack trace:") {
        Some(at) => (&head[..at], Some(&head[at + "Stack trace:".len()..])),
        None => (head, None),
    };
    let pattern = parameterize(message);
    let frames = stack_trace
        .or(embedded)
        .map(|trace| frames(examined(trace, MAX_STACK_TRACE_BYTES)))
        .unwrap_or_default();
    Fingerprint {
        version: FINGERPRINT_VERSION,
        hash: group_key(FINGERPRINT_VERSION, &pattern, &frames),
        pattern,
        frames,
    }
}

fn group_key(version: u32, pattern: &str, frames: &[String]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"autoheal-fingerprint\n");
    hasher.update(version.to_string());
    hasher.update(b"\n");
    hasher.update(pattern);
    hasher.update(b"\n");
    for frame in frames {
        hasher.update(frame);
        hasher.update(b"\n");
    }
    // By hand: `format!` per byte was a third of a fingerprint's time.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hash = String::with_capacity(64);
    for byte in hasher.finalize() {
        hash.push(char::from(HEX[usize::from(byte >> 4)]));
        hash.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    hash
}

/// The first `max_bytes` of `text`, cut back to the last whitespace when the cut would
/// split a word (a value cut in two would make a pattern of its own).
fn examined(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let cut = text.floor_char_boundary(max_bytes);
    let head = &text[..cut];
    if text[cut..].starts_with(char::is_whitespace) {
        return head;
    }
    match head.rfind(char::is_whitespace) {
        Some(at) => &head[..at],
        None => head,
    }
}

/// One line of a trace.
struct Frame<'a> {
    file: &'a str,
    function: String,
}

fn frames(trace: &str) -> Vec<String> {
    let parsed: Vec<Frame> = trace.lines().filter_map(parse_frame).collect();
    let in_app: Vec<String> = parsed
        .iter()
        .filter_map(|f| Some(frame_string(&in_app_module(f.file)?, &f.function)))
        .take(MAX_FRAMES)
        .collect();
    if !in_app.is_empty() {
        return in_app;
    }
    parsed
        .iter()
        .map(|f| frame_string(&shared_module(f.file), &f.function))
        .take(MAX_FRAMES)
        .collect()
}

/// A frame with a file, or `None` for `{main}`, `[internal function]` and lines that are
/// no frame.
fn parse_frame(line: &str) -> Option<Frame<'_>> {
    let line = line.trim();
    if let Some(numbered) = line.strip_prefix('#') {
        // `#3 /path/file.php(214): Class->method(Array)`
        let rest = numbered
            .trim_start_matches(|c: char| c.is_ascii_digit())
            .trim_start();
        let (location, call) = rest.split_once(": ")?;
        let file = location.strip_suffix(')')?.rsplit_once('(')?.0;
        return Some(Frame {
            file,
            function: function_name(call),
        });
    }
    let line = line.strip_prefix("at ").unwrap_or(line);
    // `Class->method() in /path/file.php:123`, `Class->method() at /path/file.php:123`
    let (call, location) = match line
        .rsplit_once(" in ")
        .or_else(|| line.rsplit_once(" at "))
    {
        Some((call, location)) => (call, location.trim()),
        None => ("", line),
    };
    let file = strip_line_number(location)?;
    if !file.ends_with(".php") || file.contains(char::is_whitespace) {
        return None;
    }
    Some(Frame {
        file,
        function: function_name(call),
    })
}

/// `file.php:123` or `file.php(123)` → `file.php`.
fn strip_line_number(location: &str) -> Option<&str> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if let Some((file, line)) = location.rsplit_once(':') {
        if digits(line) {
            return Some(file);
        }
    }
    let (file, line) = location.strip_suffix(')')?.rsplit_once('(')?;
    digits(line).then_some(file)
}

/// `Class->method(Array, 12)` → `Class->method`; closures and anonymous classes lose the file
/// and line PHP writes into their names (`Foo->{closure:/x.php:3}` → `Foo->{closure}`,
/// `class@anonymous/x.php:3$0->run` → `class@anonymous->run`).
fn function_name(call: &str) -> String {
    let name = call.split('(').next().unwrap_or("").trim();
    if let Some(at) = name.find("{closure") {
        return format!("{}{{closure}}", &name[..at]);
    }
    if let Some(at) = name.find("class@anonymous") {
        let rest = &name[at..];
        let call = ["->", "::"].iter().filter_map(|op| rest.find(op)).min();
        return format!(
            "{}class@anonymous{}",
            &name[..at],
            call.map_or("", |i| &rest[i..])
        );
    }
    name.to_owned()
}

fn frame_string(module: &str, function: &str) -> String {
    if function.is_empty() {
        module.to_owned()
    } else {
        format!("{module} {function}")
    }
}

/// The module of a file inside a plugin or module directory and not under its `vendor/`:
/// the path from the plugin's folder on, without `.php`.
fn in_app_module(file: &str) -> Option<String> {
    let file = slashes(file);
    let (at, dir) = PLUGIN_DIRS
        .iter()
        .filter_map(|dir| find_dir(&file, dir).map(|at| (at, dir)))
        .min_by_key(|&(at, _)| at)?;
    let module = &file[at + dir.len() + 1..];
    if module.starts_with("vendor/") || module.contains("/vendor/") {
        return None;
    }
    Some(module.strip_suffix(".php").unwrap_or(module).to_owned())
}

/// The module of any other file: its path from the first shared directory, or its name.
fn shared_module(file: &str) -> String {
    let file = slashes(file);
    let start = ROOT_DIRS
        .iter()
        .filter_map(|dir| find_dir(&file, dir))
        .min()
        .unwrap_or_else(|| file.rfind('/').map_or(0, |i| i + 1));
    let module = &file[start..];
    module.strip_suffix(".php").unwrap_or(module).to_owned()
}

/// A Windows path with the slashes of the others.
fn slashes(file: &str) -> Cow<'_, str> {
    if file.contains('\\') {
        Cow::Owned(file.replace('\\', "/"))
    } else {
        Cow::Borrowed(file)
    }
}

/// Where the directory `dir` starts in `path`, as whole path segments.
fn find_dir(path: &str, dir: &str) -> Option<usize> {
    path.match_indices(dir).map(|(at, _)| at).find(|&at| {
        (at == 0 || path.as_bytes()[at - 1] == b'/')
            && path.as_bytes().get(at + dir.len()) == Some(&b'/')
    })
}
