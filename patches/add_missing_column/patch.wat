;; add_missing_column — database_patch.
;; Adds params.column (type params.column_type) to snapshot table params.table, unless the
;; column is already there (then: no operations). Refuses if the table does not exist.
(module
  (import "autoheal" "log" (func $log (param i32 i32)))
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
  (data (i32.const 288) "table\00")
  (data (i32.const 304) "column\00")
  (data (i32.const 320) "column_type\00")
  (data (i32.const 336) "tables\00")
  (data (i32.const 352) "missing parameter table, column or column_type\00")
  (data (i32.const 416) "table does not exist in the snapshot\00")
  (data (i32.const 480) "{\"op\":\"add_column\",\"table\":\"\00")
  (data (i32.const 512) "\",\"column\":\"\00")
  (data (i32.const 528) "\",\"column_type\":\"\00")
  (data (i32.const 560) "\"}\00")
  (data (i32.const 576) "\"\00")
  (data (i32.const 584) "\":\"\00")
  (data (i32.const 592) ",\00")
  (data (i32.const 608) "column already present, nothing to do\00")
  (data (i32.const 656) "adding the missing column\00")
  (data (i32.const 704) "snapshot has no tables\00")
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
  (func $raw_len (param $v i32) (result i32)
    (i32.sub (call $skip_string (local.get $v)) (i32.add (local.get $v) (i32.const 2))))

  (func (export "run") (param $in i32) (param $len i32) (result i64)
    (local $start i32) (local $params i32) (local $snap i32)
    (local $table i32) (local $column i32) (local $ctype i32)
    (local $tables i32) (local $tv i32) (local $after i32)
    (local.set $start (call $begin (local.get $in) (local.get $len)))
    (local.set $params (call $find_c (local.get $in) (i32.const 256)))
    (local.set $snap (call $find_c (local.get $in) (i32.const 272)))
    (local.set $table (call $find_str (local.get $params) (i32.const 288)))
    (local.set $column (call $find_str (local.get $params) (i32.const 304)))
    (local.set $ctype (call $find_str (local.get $params) (i32.const 320)))
    (if (i32.or (i32.lt_s (local.get $table) (i32.const 0))
          (i32.or (i32.lt_s (local.get $column) (i32.const 0))
                  (i32.lt_s (local.get $ctype) (i32.const 0))))
      (then (return (call $fail (local.get $start) (i32.const 352)))))
    (local.set $tables (call $find_c (local.get $snap) (i32.const 336)))
    (if (i32.lt_s (local.get $tables) (i32.const 0))
      (then (return (call $fail (local.get $start) (i32.const 704)))))
    (local.set $tv (call $find_key (local.get $tables)
      (i32.add (local.get $table) (i32.const 1)) (call $raw_len (local.get $table))))
    (if (i32.lt_s (local.get $tv) (i32.const 0))
      (then (return (call $fail (local.get $start) (i32.const 416)))))
    (if (i32.ne (i32.load8_u (local.get $tv)) (i32.const 123))
      (then (return (call $fail (local.get $start) (i32.const 416)))))
    (if (i32.ge_s
          (call $find_key (local.get $tv)
            (i32.add (local.get $column) (i32.const 1)) (call $raw_len (local.get $column)))
          (i32.const 0))
      (then
        (call $log (i32.const 608) (call $strlen (i32.const 608)))
        (return (call $unchanged (local.get $start) (local.get $snap)))))
    (call $log (i32.const 656) (call $strlen (i32.const 656)))
    ;; operations: [{"op":"add_column",...}]
    (call $emit_c (i32.const 128))
    (call $emit_c (i32.const 480))
    (call $emit_str_body (local.get $table))
    (call $emit_c (i32.const 512))
    (call $emit_str_body (local.get $column))
    (call $emit_c (i32.const 528))
    (call $emit_str_body (local.get $ctype))
    (call $emit_c (i32.const 560))
    (call $emit_c (i32.const 160))
    ;; state: the snapshot with "column":"type" first in the table's object
    (local.set $after (i32.add (local.get $tv) (i32.const 1)))
    (call $emit_range (local.get $snap) (local.get $after))
    (call $emit_c (i32.const 576))
    (call $emit_str_body (local.get $column))
    (call $emit_c (i32.const 584))
    (call $emit_str_body (local.get $ctype))
    (call $emit_c (i32.const 576))
    (if (i32.ne (i32.load8_u (call $ws (local.get $after))) (i32.const 125))
      (then (call $emit_c (i32.const 592))))
    (call $emit_range (local.get $after) (call $snap_end))
    (call $emit_c (i32.const 112))
    (call $finish (local.get $start)))
)
