;; A durable-object component with two linear memories, written by hand: no language toolchain
;; makes one, but a hostile guest can. The host's memory limit must hold for both together.
;;
;; `fetch` grows each memory by as many 64 KiB pages as the request body has bytes, then answers
;; 200 with the two memories' sizes in pages ("<main> <hog>"). Every other export traps.
(component
  (core module $hog
    (memory (export "memory") 1)
    (func (export "grow") (param $pages i32) (result i32)
      (memory.grow (local.get $pages))))
  (core instance $hog (instantiate $hog))

  (core module $main
    (import "hog" "grow" (func $hog_grow (param i32) (result i32)))
    (import "hog" "memory" (memory $hog 1))
    (memory $main (export "memory") 1)
    ;; Arguments land past the first page; a bump allocator that grows the memory as it goes.
    (global $next (mut i32) (i32.const 65536))
    (func $realloc (export "cabi_realloc") (param $old i32) (param $old_size i32) (param $align i32) (param $size i32) (result i32)
      (local $at i32)
      (local.set $at (i32.and (i32.add (global.get $next) (i32.sub (local.get $align) (i32.const 1)))
                              (i32.sub (i32.const 0) (local.get $align))))
      (global.set $next (i32.add (local.get $at) (local.get $size)))
      (block $fits
        (br_if $fits (i32.le_u (global.get $next) (i32.mul (memory.size $main) (i32.const 65536))))
        (if (i32.eq (memory.grow $main (i32.add (i32.shr_u (i32.sub (global.get $next) (i32.mul (memory.size $main) (i32.const 65536))) (i32.const 16)) (i32.const 1))) (i32.const -1))
          (then unreachable)))
      (local.get $at))
    ;; Writes `n` as decimal digits ending at `end` (exclusive); returns where they start.
    (func $digits (param $n i32) (param $end i32) (result i32)
      (loop $more
        (local.set $end (i32.sub (local.get $end) (i32.const 1)))
        (i32.store8 $main (local.get $end) (i32.add (i32.const 48) (i32.rem_u (local.get $n) (i32.const 10))))
        (local.set $n (i32.div_u (local.get $n) (i32.const 10)))
        (br_if $more (local.get $n)))
      (local.get $end))
    ;; fetch(request) -> response: request is method, path, query, headers, body (pointer, length each).
    (func (export "fetch")
      (param i32 i32 i32 i32 i32 i32 i32 i32) (param $body i32) (param $body_len i32) (result i32)
      (local $start i32)
      (if (i32.eq (memory.grow $main (local.get $body_len)) (i32.const -1)) (then unreachable))
      (if (i32.eq (call $hog_grow (local.get $body_len)) (i32.const -1)) (then unreachable))
      ;; The body "<main pages> <hog pages>", built backwards from 256.
      (local.set $start (call $digits (memory.size $hog) (i32.const 256)))
      (local.set $start (i32.sub (local.get $start) (i32.const 1)))
      (i32.store8 $main (local.get $start) (i32.const 32))
      (local.set $start (call $digits (memory.size $main) (local.get $start)))
      ;; The response at 0: status u16, headers (pointer, length), body (pointer, length).
      (i32.store16 $main (i32.const 0) (i32.const 200))
      (i32.store $main (i32.const 4) (i32.const 0))
      (i32.store $main (i32.const 8) (i32.const 0))
      (i32.store $main (i32.const 12) (local.get $start))
      (i32.store $main (i32.const 16) (i32.sub (i32.const 256) (local.get $start)))
      (i32.const 0))
    (func (export "call") (param i32 i32 i32 i32) (result i32) unreachable)
    (func (export "alarm") (param i32 i32) (result i32) unreachable)
    (func (export "websocket-message") (param i64 i32 i32 i32) unreachable)
    (func (export "websocket-close") (param i64 i32 i32 i32 i32) unreachable)
    (func (export "websocket-error") (param i64 i32 i32) unreachable))
  (core instance $main (instantiate $main (with "hog" (instance $hog))))

  (type $headers (list (tuple string string)))
  (type $request (record (field "method" string) (field "path" string) (field "query" string)
                         (field "headers" $headers) (field "body" (list u8))))
  (type $response (record (field "status" u16) (field "headers" $headers) (field "body" (list u8))))
  (type $message (variant (case "text" string) (case "binary" (list u8))))
  (type $alarm-info (record (field "retry-count" u32) (field "is-retry" bool)))

  (alias core export $main "memory" (core memory $memory))
  (alias core export $main "cabi_realloc" (core func $realloc))
  (func $fetch (param "request" $request) (result $response)
    (canon lift (core func $main "fetch") (memory $memory) (realloc $realloc)))
  (func $call (param "method" string) (param "args" (list u8)) (result (result (list u8) (error string)))
    (canon lift (core func $main "call") (memory $memory) (realloc $realloc)))
  (func $alarm (param "info" $alarm-info) (result (result (error string)))
    (canon lift (core func $main "alarm") (memory $memory) (realloc $realloc)))
  (func $websocket-message (param "socket" u64) (param "message" $message)
    (canon lift (core func $main "websocket-message") (memory $memory) (realloc $realloc)))
  (func $websocket-close (param "socket" u64) (param "code" u16) (param "reason" string) (param "was-clean" bool)
    (canon lift (core func $main "websocket-close") (memory $memory) (realloc $realloc)))
  (func $websocket-error (param "socket" u64) (param "error" string)
    (canon lift (core func $main "websocket-error") (memory $memory) (realloc $realloc)))

  (instance $handler
    (export "request" (type $request))
    (export "response" (type $response))
    (export "message" (type $message))
    (export "alarm-info" (type $alarm-info))
    (export "fetch" (func $fetch))
    (export "call" (func $call))
    (export "alarm" (func $alarm))
    (export "websocket-message" (func $websocket-message))
    (export "websocket-close" (func $websocket-close))
    (export "websocket-error" (func $websocket-error)))
  (export "wdo:object/handler@0.1.0" (instance $handler)))
