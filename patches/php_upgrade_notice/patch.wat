;; php_upgrade_notice — notify.
;; If snapshot.php_version is older than params.required_php (major.minor[.patch]), asks the
;; merchant to upgrade PHP. Changes no state.
(module
  (memory (export "memory") 1)
  ;; Shared output fragments (NUL-terminated; offsets below 256).
  (data (i32.const 16) "{\"error\":\"\00")
  (data (i32.const 48) "\"}\00")
  (data (i32.const 64) "{\"operations\":[],\"state\":\00")
  (data (i32.const 112) "}\00")
  (data (i32.const 128) "{\"operations\":[\00")
  (data (i32.const 160) "],\"state\":\00")
  (data (i32.const 256) "params\00")
  (data (i32.const 272) "snapshot\00")
  (data (i32.const 288) "required_php\00")
  (data (i32.const 304) "php_version\00")
  (data (i32.const 320) "missing parameter required_php\00")
  (data (i32.const 352) "snapshot has no php_version\00")
  (data (i32.const 384) "{\"op\":\"notify_merchant\",\"template\":\"php_upgrade\",\"severity\":\"warning\",\"message\":\"This site runs PHP \00")
  (data (i32.const 512) " but the payment plugin needs PHP \00")
  (data (i32.const 576) " or newer. Ask your hosting provider to upgrade PHP.\",\"data\":{\"current_php\":\"\00")
  (data (i32.const 704) "\",\"required_php\":\"\00")
  (data (i32.const 736) "\"}}\00")
  ;; ---- ABI plumbing and a small JSON scanner (same in every shipped patch) ----
  ;; Input is the host's compact JSON {"params":{...},"snapshot":{...}}. Strings are copied
  ;; raw (still escaped), so whatever is copied into the output stays valid JSON.

  (global $heap (mut i32) (i32.const 8192))
  (global $out (mut i32) (i32.const 0))
  (global $in_end (mut i32) (i32.const 0))

  ;; Grow memory so that [0, $end) is addressable.
  (func $reserve (param $end i32)
    (local $have i32)
    (local.set $have (i32.shl (memory.size) (i32.const 16)))
    (if (i32.gt_u (local.get $end) (local.get $have))
      (then
        (if (i32.eq
              (memory.grow
                (i32.shr_u
                  (i32.add (i32.sub (local.get $end) (local.get $have)) (i32.const 65535))
                  (i32.const 16)))
              (i32.const -1))
          (then unreachable)))))

  ;; Bump allocator: the host calls it once for the input.
  (func $alloc (export "alloc") (param $len i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (local.get $p) (local.get $len)))
    (call $reserve (i32.add (global.get $heap) (i32.const 1)))
    (local.get $p))

  (func $strlen (param $p i32) (result i32)
    (local $n i32)
    (block $done
      (loop $next
        (br_if $done (i32.eqz (i32.load8_u (i32.add (local.get $p) (local.get $n)))))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $next)))
    (local.get $n))

  ;; Output: bytes are appended at $out.
  (func $emit (param $ptr i32) (param $len i32)
    (call $reserve (i32.add (global.get $out) (local.get $len)))
    (memory.copy (global.get $out) (local.get $ptr) (local.get $len))
    (global.set $out (i32.add (global.get $out) (local.get $len))))

  (func $emit_range (param $start i32) (param $end i32)
    (call $emit (local.get $start) (i32.sub (local.get $end) (local.get $start))))

  (func $emit_c (param $p i32)
    (call $emit (local.get $p) (call $strlen (local.get $p))))

  ;; The raw contents of the string value at $v (without the quotes).
  (func $emit_str_body (param $v i32)
    (call $emit_range
      (i32.add (local.get $v) (i32.const 1))
      (i32.sub (call $skip_string (local.get $v)) (i32.const 1))))

  (func $ws (param $p i32) (result i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $p) (global.get $in_end)))
        (br_if $done (i32.gt_u (i32.load8_u (local.get $p)) (i32.const 32)))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $next)))
    (local.get $p))

  ;; $p at an opening quote; returns the position just after the closing quote. The hot
  ;; loop of every patch, so it has no bounds check: the host's input is valid JSON, and an
  ;; unterminated string would run into the end of memory and trap.
  (func $skip_string (param $p i32) (result i32)
    (local $c i32)
    (loop $next
      (local.set $p (i32.add (local.get $p) (i32.const 1)))
      (local.set $c (i32.load8_u (local.get $p)))
      (if (i32.eq (local.get $c) (i32.const 92))
        (then
          (local.set $p (i32.add (local.get $p) (i32.const 1)))
          (br $next)))
      (br_if $next (i32.ne (local.get $c) (i32.const 34))))
    (i32.add (local.get $p) (i32.const 1)))

  ;; $p at the start of a value; returns the position just after it.
  (func $skip_value (param $p i32) (result i32)
    (local $c i32) (local $depth i32)
    (local.set $c (i32.load8_u (local.get $p)))
    (if (i32.eq (local.get $c) (i32.const 34))
      (then (return (call $skip_string (local.get $p)))))
    (if (i32.or (i32.eq (local.get $c) (i32.const 123)) (i32.eq (local.get $c) (i32.const 91)))
      (then
        (block $done
          (loop $next
            (if (i32.ge_u (local.get $p) (global.get $in_end)) (then unreachable))
            (local.set $c (i32.load8_u (local.get $p)))
            (if (i32.eq (local.get $c) (i32.const 34))
              (then
                (local.set $p (call $skip_string (local.get $p)))
                (br $next)))
            (if (i32.or (i32.eq (local.get $c) (i32.const 123)) (i32.eq (local.get $c) (i32.const 91)))
              (then (local.set $depth (i32.add (local.get $depth) (i32.const 1)))))
            (if (i32.or (i32.eq (local.get $c) (i32.const 125)) (i32.eq (local.get $c) (i32.const 93)))
              (then (local.set $depth (i32.sub (local.get $depth) (i32.const 1)))))
            (local.set $p (i32.add (local.get $p) (i32.const 1)))
            (br_if $done (i32.eqz (local.get $depth)))
            (br $next)))
        (return (local.get $p))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $p) (global.get $in_end)))
        (local.set $c (i32.load8_u (local.get $p)))
        (br_if $done (i32.eq (local.get $c) (i32.const 44)))
        (br_if $done (i32.eq (local.get $c) (i32.const 125)))
        (br_if $done (i32.eq (local.get $c) (i32.const 93)))
        (br_if $done (i32.le_u (local.get $c) (i32.const 32)))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $next)))
    (local.get $p))

  (func $mem_eq (param $a i32) (param $b i32) (param $len i32) (result i32)
    (block $ne
      (loop $next
        (if (i32.eqz (local.get $len)) (then (return (i32.const 1))))
        (br_if $ne (i32.ne (i32.load8_u (local.get $a)) (i32.load8_u (local.get $b))))
        (local.set $a (i32.add (local.get $a) (i32.const 1)))
        (local.set $b (i32.add (local.get $b) (i32.const 1)))
        (local.set $len (i32.sub (local.get $len) (i32.const 1)))
        (br $next)))
    (i32.const 0))

  ;; $obj at '{' (or -1). Finds the member whose raw key is [$key, $key+$klen) and returns
  ;; the position of its value, or -1.
  (func $find_key (param $obj i32) (param $key i32) (param $klen i32) (result i32)
    (local $p i32) (local $kend i32) (local $hit i32)
    (if (i32.lt_s (local.get $obj) (i32.const 0)) (then (return (i32.const -1))))
    (if (i32.ne (i32.load8_u (local.get $obj)) (i32.const 123)) (then (return (i32.const -1))))
    (local.set $p (i32.add (local.get $obj) (i32.const 1)))
    (loop $next
      (local.set $p (call $ws (local.get $p)))
      (if (i32.ne (i32.load8_u (local.get $p)) (i32.const 34)) (then (return (i32.const -1))))
      (local.set $kend (call $skip_string (local.get $p)))
      (local.set $hit (i32.const 0))
      (if (i32.eq (i32.sub (local.get $kend) (i32.add (local.get $p) (i32.const 2))) (local.get $klen))
        (then
          (local.set $hit
            (call $mem_eq (i32.add (local.get $p) (i32.const 1)) (local.get $key) (local.get $klen)))))
      (local.set $p (call $ws (local.get $kend)))
      (local.set $p (call $ws (i32.add (local.get $p) (i32.const 1))))
      (if (local.get $hit) (then (return (local.get $p))))
      (local.set $p (call $ws (call $skip_value (local.get $p))))
      (if (i32.eq (i32.load8_u (local.get $p)) (i32.const 44))
        (then
          (local.set $p (i32.add (local.get $p) (i32.const 1)))
          (br $next))))
    (i32.const -1))

  ;; find_key with a NUL-terminated key from the data segment.
  (func $find_c (param $obj i32) (param $key i32) (result i32)
    (call $find_key (local.get $obj) (local.get $key) (call $strlen (local.get $key))))

  ;; Find the string value of $key in $obj: its position, or -1 if absent or not a string.
  (func $find_str (param $obj i32) (param $key i32) (result i32)
    (local $v i32)
    (local.set $v (call $find_c (local.get $obj) (local.get $key)))
    (if (i32.lt_s (local.get $v) (i32.const 0)) (then (return (i32.const -1))))
    (if (i32.ne (i32.load8_u (local.get $v)) (i32.const 34)) (then (return (i32.const -1))))
    (local.get $v))

  ;; The snapshot is the input's last member ({"params":…,"snapshot":{…}}, compact), so it
  ;; ends just before the final brace: no need to scan it.
  (func $snap_end (result i32)
    (i32.sub (global.get $in_end) (i32.const 1)))

  ;; Start the output buffer after the input.
  (func $begin (param $in i32) (param $len i32) (result i32)
    (global.set $in_end (i32.add (local.get $in) (local.get $len)))
    (global.set $out (global.get $heap))
    (global.get $heap))

  ;; (start << 32) | length
  (func $finish (param $start i32) (result i64)
    (i64.or
      (i64.shl (i64.extend_i32_u (local.get $start)) (i64.const 32))
      (i64.extend_i32_u (i32.sub (global.get $out) (local.get $start)))))

  ;; {"error":"<message>"}
  (func $fail (param $start i32) (param $msg i32) (result i64)
    (global.set $out (local.get $start))
    (call $emit_c (i32.const 16))
    (call $emit_c (local.get $msg))
    (call $emit_c (i32.const 48))
    (call $finish (local.get $start)))

  ;; {"operations":[],"state":<snapshot>}
  (func $unchanged (param $start i32) (param $snap i32) (result i64)
    (call $emit_c (i32.const 64))
    (call $emit_range (local.get $snap) (call $snap_end))
    (call $emit_c (i32.const 112))
    (call $finish (local.get $start)))
  ;; ---- end of the shared part ----
  ;; major.minor.patch of a version string value at $v, as one comparable number.
  (func $parse_version (param $v i32) (result i64)
    (local $p i32) (local $end i32) (local $part i64) (local $acc i64) (local $parts i32) (local $c i32)
    (local.set $p (i32.add (local.get $v) (i32.const 1)))
    (local.set $end (i32.sub (call $skip_string (local.get $v)) (i32.const 1)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $p) (local.get $end)))
        (local.set $c (i32.load8_u (local.get $p)))
        (if (i32.eq (local.get $c) (i32.const 46))
          (then
            (br_if $done (i32.ge_u (local.get $parts) (i32.const 2)))
            (local.set $acc (i64.add (i64.mul (local.get $acc) (i64.const 1000)) (local.get $part)))
            (local.set $part (i64.const 0))
            (local.set $parts (i32.add (local.get $parts) (i32.const 1))))
          (else
            (br_if $done (i32.or (i32.lt_u (local.get $c) (i32.const 48))
                                 (i32.gt_u (local.get $c) (i32.const 57))))
            (if (i64.lt_u (local.get $part) (i64.const 100000))
              (then
                (local.set $part (i64.add (i64.mul (local.get $part) (i64.const 10))
                                          (i64.extend_i32_u (i32.sub (local.get $c) (i32.const 48)))))))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $next)))
    (local.set $acc (i64.add (i64.mul (local.get $acc) (i64.const 1000)) (local.get $part)))
    (local.set $parts (i32.add (local.get $parts) (i32.const 1)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $parts) (i32.const 3)))
        (local.set $acc (i64.mul (local.get $acc) (i64.const 1000)))
        (local.set $parts (i32.add (local.get $parts) (i32.const 1)))
        (br $next)))
    (local.get $acc))

  (func (export "run") (param $in i32) (param $len i32) (result i64)
    (local $start i32) (local $params i32) (local $snap i32) (local $req i32) (local $cur i32)
    (local.set $start (call $begin (local.get $in) (local.get $len)))
    (local.set $params (call $find_c (local.get $in) (i32.const 256)))
    (local.set $snap (call $find_c (local.get $in) (i32.const 272)))
    (local.set $req (call $find_str (local.get $params) (i32.const 288)))
    (if (i32.lt_s (local.get $req) (i32.const 0))
      (then (return (call $fail (local.get $start) (i32.const 320)))))
    (local.set $cur (call $find_str (local.get $snap) (i32.const 304)))
    (if (i32.lt_s (local.get $cur) (i32.const 0))
      (then (return (call $fail (local.get $start) (i32.const 352)))))
    (if (i64.ge_u (call $parse_version (local.get $cur)) (call $parse_version (local.get $req)))
      (then (return (call $unchanged (local.get $start) (local.get $snap)))))
    (call $emit_c (i32.const 128))
    (call $emit_c (i32.const 384))
    (call $emit_str_body (local.get $cur))
    (call $emit_c (i32.const 512))
    (call $emit_str_body (local.get $req))
    (call $emit_c (i32.const 576))
    (call $emit_str_body (local.get $cur))
    (call $emit_c (i32.const 704))
    (call $emit_str_body (local.get $req))
    (call $emit_c (i32.const 736))
    (call $emit_c (i32.const 160))
    (call $emit_range (local.get $snap) (call $snap_end))
    (call $emit_c (i32.const 112))
    (call $finish (local.get $start)))
)
