//! Error fingerprints on real-looking messages and stack traces: what each message's
//! pattern is, which events group together and which stay apart.

use engine::fingerprint::{MAX_FRAMES, MAX_MESSAGE_BYTES};
use engine::{fingerprint, parameterize, sha256_hex, FINGERPRINT_VERSION};

/// The table of messages and their patterns (`tests/fingerprint/messages.txt`).
const MESSAGES: &str = include_str!("fingerprint/messages.txt");

fn check(message: &str, expected_pattern: &str) {
    assert_eq!(
        parameterize(message),
        expected_pattern,
        "message: {message}"
    );
}

#[test]
fn the_table_of_messages_gives_its_patterns() {
    let mut lines = MESSAGES
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    let mut cases = 0;
    while let Some(message) = lines.next() {
        let expected = lines
            .next()
            .and_then(|l| l.strip_prefix("=> "))
            .unwrap_or_else(|| panic!("`=> pattern` must follow: {message}"));
        check(message, expected);
        cases += 1;
    }
    assert!(cases >= 40, "{cases} cases");
}

#[test]
fn values_become_placeholders() {
    check("order #1231 failed", "order #<int> failed");
    check("contact ops@molam.io now", "contact <email> now");
    check("see https://molam.io/docs?a=1 now", "see <url> now");
    check("host example.com down", "host <hostname> down");
    check(
        "from 0.0.0.0 and ::1 and fe80::1%eth0",
        "from <ip> and <ip> and <ip>",
    );
    check(
        "took 30s, 250ms, 1.5 ms, 2 minutes, 24h",
        "took <duration>, <duration>, <duration>, <duration>, <duration>",
    );
    check("at 0xDEADbeef1", "at <hex>");
    check("ratio -0.75 or 3.14", "ratio <float> or <float>");
    check("delta -12 from 7", "delta <int> from <int>");
    check("on Mar 05, 2024 and 2024-03-05", "on <date> and <date>");
    check(
        "key=\"v a l\" other='x'",
        "key=<quoted_str> other=<quoted_str>",
    );
}

#[test]
fn words_with_digits_inside_are_left_alone() {
    for word in [
        "utf8mb4",
        "wp_posts2",
        "sha256",
        "order_123",
        "x86_64",
        "php8",
        "H2O",
        "deadbeef",
        "B2B",
    ] {
        check(
            &format!("table {word} broken"),
            &format!("table {word} broken"),
        );
    }
    // A dash between two words is not a minus sign.
    check("sensor temp-7 and x-12y", "sensor temp-<int> and x-12y");
    // `Class::method` is no IPv6 address, even when the class name is hex.
    check(
        "Call to Db::add() and Feed::bad()",
        "Call to Db::add() and Feed::bad()",
    );
    // Quoted text that is not a `key=` value is what the error is about.
    check(
        "Unknown column 'billing_phone' in 'field list'",
        "Unknown column 'billing_phone' in 'field list'",
    );
}

#[test]
fn whitespace_runs_become_one_space() {
    check(
        "  PHP Fatal error:\t\tfoo \n\n  bar  ",
        "PHP Fatal error: foo bar",
    );
    check("a\r\nb", "a b");
}

#[test]
fn events_that_differ_only_in_values_share_a_pattern() {
    let same = [
        ("order #1231 failed", "order #998 failed"),
        (
            "PHP Fatal error: Allowed memory size of 134217728 bytes exhausted (tried to allocate 20480 bytes)",
            "PHP Fatal error: Allowed memory size of 536870912 bytes exhausted (tried to allocate 65 bytes)",
        ),
        (
            "PHP Warning: Undefined array key \"billing_phone\" in /var/www/html/wp-content/plugins/molam-pay/x.php on line 14",
            "PHP Warning: Undefined array key \"billing_phone\" in /home/u7/public_html/wp-content/plugins/molam-pay/x.php on line 140",
        ),
        (
            "Stripe API error (401): Invalid API Key provided (Request req_8x3KpQ2mN7vLzA)",
            "Stripe API error (401): Invalid API Key provided (Request req_Q2b9ZtLm4XcW1s)",
        ),
        (
            "cURL error 28: Operation timed out after 30001 milliseconds with 0 out of -1 bytes received",
            "cURL error 28: Operation timed out after 5000 milliseconds with 1234 out of 99999 bytes received",
        ),
        ("Session 5f2b8c1e-3d4a-4e6f-9a7b-2c1d0e9f8a6b expired", "Session 00000000-0000-4000-8000-000000000000 expired"),
        ("[05-Mar-2024 14:22:01 UTC] boom", "[17-Nov-2025 03:00:59 Europe/Paris] boom"),
    ];
    for (a, b) in same {
        assert_eq!(parameterize(a), parameterize(b), "{a} / {b}");
        assert_eq!(
            fingerprint(a, None).hash,
            fingerprint(b, None).hash,
            "{a} / {b}"
        );
    }
}

#[test]
fn different_errors_keep_different_patterns() {
    let apart = [
        (
            "Unknown column 'billing_phone' in 'field list'",
            "Unknown column 'shipping_phone' in 'field list'",
        ),
        (
            "Undefined array key \"billing_phone\"",
            "Undefined array key \"billing_email\"",
        ),
        (
            "Illegal mix of collations utf8mb4_unicode_ci",
            "Illegal mix of collations utf8mb3_unicode_ci",
        ),
        (
            "Stripe API error (401): Invalid API Key provided",
            "PayPal API error (401): Invalid API Key provided",
        ),
        (
            "in /var/www/html/wp-content/plugins/molam-pay/a.php",
            "in /var/www/html/wp-content/plugins/molam-pay/b.php",
        ),
        ("table wp_posts2", "table wp_posts3"),
    ];
    for (a, b) in apart {
        assert_ne!(
            fingerprint(a, None).hash,
            fingerprint(b, None).hash,
            "{a} / {b}"
        );
    }
}

const TRACE: &str = "\
#0 /var/www/html/wp-content/plugins/molam-pay/includes/class-gateway.php(214): Molam_Gateway->charge(Array)
#1 [internal function]: Molam_Gateway->process_payment(1231)
#2 /var/www/html/wp-includes/class-wp-hook.php(324): call_user_func_array(Array, Array)
#3 /var/www/html/wp-content/plugins/molam-pay/vendor/stripe/stripe-php/lib/ApiRequestor.php(88): Stripe\\ApiRequestor::request('post', '/v1/charges')
#4 /var/www/html/wp-content/plugins/woocommerce/includes/class-wc-checkout.php(1288): WC_Checkout->process_order_payment(1231, 'molam')
#5 /var/www/html/wp-content/plugins/molam-pay/includes/class-hooks.php(40): {closure}(Object(WC_Order))
#6 {main}";

const MESSAGE: &str =
    "PHP Fatal error:  Uncaught Molam\\Pay\\CardDeclined: Card declined for order 1231";

#[test]
fn a_trace_contributes_its_in_app_frames_without_lines_or_arguments() {
    let fp = fingerprint(MESSAGE, Some(TRACE));
    assert_eq!(fp.version, FINGERPRINT_VERSION);
    assert_eq!(
        fp.pattern,
        "PHP Fatal error: Uncaught Molam\\Pay\\CardDeclined: Card declined for order <int>"
    );
    assert_eq!(
        fp.frames,
        [
            "molam-pay/includes/class-gateway Molam_Gateway->charge",
            "woocommerce/includes/class-wc-checkout WC_Checkout->process_order_payment",
            "molam-pay/includes/class-hooks {closure}",
        ]
    );
    assert_ne!(fp.hash, fingerprint(MESSAGE, None).hash);
}

#[test]
fn line_numbers_and_arguments_do_not_change_the_hash() {
    let moved = TRACE
        .replace("(214)", "(219)")
        .replace("(1288)", "(1301)")
        .replace("charge(Array)", "charge(Array, 42)")
        .replace("/var/www/html", "/home/u48213/public_html");
    assert_eq!(
        fingerprint(MESSAGE, Some(TRACE)).hash,
        fingerprint(MESSAGE, Some(&moved)).hash
    );
}

#[test]
fn a_different_in_app_function_changes_the_hash() {
    let other = TRACE.replace(
        "Molam_Gateway->charge(Array)",
        "Molam_Gateway->refund(Array)",
    );
    assert_ne!(
        fingerprint(MESSAGE, Some(TRACE)).hash,
        fingerprint(MESSAGE, Some(&other)).hash
    );
    let other_file = TRACE.replace(
        "includes/class-gateway.php",
        "includes/class-legacy-gateway.php",
    );
    assert_ne!(
        fingerprint(MESSAGE, Some(TRACE)).hash,
        fingerprint(MESSAGE, Some(&other_file)).hash
    );
}

#[test]
fn frames_outside_the_plugins_do_not_count_when_in_app_ones_exist() {
    let core_changed = TRACE
        .replace("call_user_func_array", "do_action_ref_array")
        .replace("Stripe\\ApiRequestor::request", "Stripe\\HttpClient::send");
    assert_eq!(
        fingerprint(MESSAGE, Some(TRACE)).hash,
        fingerprint(MESSAGE, Some(&core_changed)).hash
    );
}

#[test]
fn a_vendor_only_trace_uses_every_frame_but_internal_and_main() {
    let trace = "\
#0 /var/www/magento2/vendor/guzzlehttp/guzzle/src/Handler/CurlFactory.php(210): GuzzleHttp\\Handler\\CurlFactory::createRejection(Object(GuzzleHttp\\Handler\\EasyHandle), Array)
#1 [internal function]: GuzzleHttp\\Handler\\CurlFactory::finish(Object(Closure))
#2 /var/www/magento2/vendor/magento/framework/App/Http.php(116): Magento\\Framework\\App\\Http->launch()
#3 /var/www/magento2/pub/index.php(30): Magento\\Framework\\App\\Bootstrap->run(Object(Magento\\Framework\\App\\Http))
#4 {main}";
    let fp = fingerprint("cURL error 28", Some(trace));
    assert_eq!(
        fp.frames,
        [
            "vendor/guzzlehttp/guzzle/src/Handler/CurlFactory GuzzleHttp\\Handler\\CurlFactory::createRejection",
            "vendor/magento/framework/App/Http Magento\\Framework\\App\\Http->launch",
            "index Magento\\Framework\\App\\Bootstrap->run",
        ]
    );
}

#[test]
fn prestashop_and_magento_modules_are_in_app() {
    let trace = "\
#0 /var/www/prestashop/modules/molampay/classes/MolamClient.php(77): MolamClient->post('/charges', Array)
#1 /var/www/prestashop/classes/controller/Controller.php(294): MolamPayValidationModuleFrontController->postProcess()
#2 /var/www/magento2/app/code/Molam/Pay/Model/Gateway.php(51): Molam\\Pay\\Model\\Gateway::capture()
#3 /var/www/magento2/app/code/Molam/Pay/vendor/lib/Http.php(9): Http->send()
#4 {main}";
    assert_eq!(
        fingerprint("x", Some(trace)).frames,
        [
            "molampay/classes/MolamClient MolamClient->post",
            "Molam/Pay/Model/Gateway Molam\\Pay\\Model\\Gateway::capture",
        ]
    );
}

#[test]
fn other_trace_notations_are_read() {
    let trace = "\
at Molam_Gateway->charge() in /var/www/html/wp-content/plugins/molam-pay/includes/class-gateway.php:214
Molam_Api::post() at C:\\xampp\\htdocs\\wp-content\\plugins\\molam-pay\\includes\\class-api.php:88
/var/www/html/wp-content/plugins/molam-pay/molam-pay.php:12
/var/www/html/wp-content/plugins/molam-pay/includes/closures.php(7)
thrown in /var/www/html/wp-content/plugins/molam-pay/includes/class-gateway.php on line 214";
    assert_eq!(
        fingerprint("x", Some(trace)).frames,
        [
            "molam-pay/includes/class-gateway Molam_Gateway->charge",
            "molam-pay/includes/class-api Molam_Api::post",
            "molam-pay/molam-pay",
            "molam-pay/includes/closures",
        ]
    );
}

#[test]
fn generated_names_lose_their_file_and_line() {
    let trace = "\
#0 /var/www/html/wp-content/plugins/molam-pay/a.php(3): Molam_Hooks->{closure:/var/www/html/wp-content/plugins/molam-pay/a.php:3}(Array)
#1 /var/www/html/wp-content/plugins/molam-pay/b.php(9): class@anonymous/var/www/html/wp-content/plugins/molam-pay/b.php:9$0->handle()
#2 {main}";
    assert_eq!(
        fingerprint("x", Some(trace)).frames,
        [
            "molam-pay/a Molam_Hooks->{closure}",
            "molam-pay/b class@anonymous->handle"
        ]
    );
}

#[test]
fn a_trace_inside_the_message_is_read_and_cut_from_the_pattern() {
    let message = format!("{MESSAGE} in /var/www/html/wp-content/plugins/molam-pay/includes/class-gateway.php:214\nStack trace:\n{TRACE}\n  thrown in /var/www/html/wp-content/plugins/molam-pay/includes/class-gateway.php on line 214");
    let fp = fingerprint(&message, None);
    assert_eq!(fp.frames, fingerprint(MESSAGE, Some(TRACE)).frames);
    assert_eq!(
        fp.pattern,
        "PHP Fatal error: Uncaught Molam\\Pay\\CardDeclined: Card declined for order <int> in <root>/wp-content/plugins/molam-pay/includes/class-gateway.php:<int>"
    );
}

#[test]
fn without_parsable_frames_the_pattern_alone_is_the_key() {
    for trace in [
        "",
        "no frames here",
        "#0 {main}",
        "#0 [internal function]: foo()",
    ] {
        let fp = fingerprint(MESSAGE, Some(trace));
        assert!(fp.frames.is_empty(), "{trace}");
        assert_eq!(fp.hash, fingerprint(MESSAGE, None).hash);
    }
}

#[test]
fn frames_are_capped() {
    let trace: String = (0..200)
        .map(|i| format!("#{i} /srv/wp-content/plugins/p/f{i}.php({i}): f{i}()\n"))
        .collect();
    let frames = fingerprint("x", Some(&trace)).frames;
    assert_eq!(frames.len(), MAX_FRAMES);
    assert_eq!(frames[0], "p/f0 f0");
}

/// The group key is documented (module docs): SHA-256 over a tag, the version, the pattern
/// and the frames. So the version is part of every hash, and a new algorithm version starts
/// new groups. A change to this encoding is itself a change of version.
#[test]
fn the_hash_covers_the_version_the_pattern_and_the_frames() {
    let key = |version: u32, pattern: &str, frames: &[String]| {
        let mut text = format!("autoheal-fingerprint\n{version}\n{pattern}\n");
        for frame in frames {
            text.push_str(frame);
            text.push('\n');
        }
        sha256_hex(text.as_bytes())
    };
    for (message, trace) in [(MESSAGE, Some(TRACE)), ("order #1231 failed", None)] {
        let fp = fingerprint(message, trace);
        assert_eq!(fp.hash, key(FINGERPRINT_VERSION, &fp.pattern, &fp.frames));
        assert_ne!(
            fp.hash,
            key(FINGERPRINT_VERSION + 1, &fp.pattern, &fp.frames)
        );
    }
    let json = serde_json::to_value(fingerprint("order #1231 failed", None)).unwrap();
    assert_eq!(json["version"], FINGERPRINT_VERSION);
    assert_eq!(json["pattern"], "order #<int> failed");
    assert_eq!(json["frames"], serde_json::json!([]));
    assert_eq!(json["hash"].as_str().unwrap().len(), 64);
}

#[test]
fn only_the_first_bytes_of_a_message_are_examined() {
    let filler = "lorem ipsum dolor ".repeat(300);
    let huge = |tail: &str| format!("order 1231 failed {filler}{}", tail.repeat(100_000));
    let a = parameterize(&huge("id 12 "));
    assert!(a.len() <= MAX_MESSAGE_BYTES, "{}", a.len());
    assert!(a.starts_with("order <int> failed lorem ipsum"));
    // What lies past the cap does not count...
    assert_eq!(a, parameterize(&huge("other words ")));
    // ...and the cut never splits a value into a pattern of its own.
    let digits = format!("{} 1234567890", "a".repeat(MAX_MESSAGE_BYTES - 5));
    assert_eq!(parameterize(&digits), "a".repeat(MAX_MESSAGE_BYTES - 5));
    // A cut inside a multi-byte character stays on its boundary.
    let accents = "é".repeat(MAX_MESSAGE_BYTES);
    assert!(parameterize(&accents).len() <= MAX_MESSAGE_BYTES);
}
