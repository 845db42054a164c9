;; A guest whose realloc calls an import: the canonical ABI refuses it (may_leave), at the first call out.
(component
  (type $host (instance
    (export "bytes" (func (result (list u8))))
  ))
  (import "test:corpus/host" (instance $h (type $host)))
  (core module $libc
    (memory (export "memory") 1)
    (table (export "table") 1 funcref)
    (type $bytes (func (param i32)))
    ;; an allocator that calls back into the host: what the canonical ABI forbids
    (func (export "realloc") (param i32 i32 i32 i32) (result i32)
      (call_indirect (type $bytes) (i32.const 64) (i32.const 0))
      (i32.const 1024))
  )
  (core instance $libc (instantiate $libc))
  (alias core export $libc "memory" (core memory $mem))
  (alias core export $libc "realloc" (core func $realloc))
  (alias core export $libc "table" (core table $table))
  (alias export $h "bytes" (func $host-bytes))
  (core func $lower-bytes (canon lower (func $host-bytes) (memory $mem) (realloc $realloc)))
  ;; the table slot is filled once the lowered import exists (wit-component's fix-up pattern)
  (core module $fixup
    (import "" "table" (table 1 funcref))
    (import "" "bytes" (func $bytes (param i32)))
    (elem (i32.const 0) func $bytes))
  (core instance (instantiate $fixup (with "" (instance (export "table" (table $table))
                                                         (export "bytes" (func $lower-bytes))))))
  (core module $main
    (import "h" "bytes" (func $bytes (param i32)))
    (import "libc" "memory" (memory 1))
    (func (export "run") (result i32)
      (call $bytes (i32.const 16))
      (i32.load offset=4 (i32.const 16))))
  (core instance $m (instantiate $main (with "h" (instance (export "bytes" (func $lower-bytes))))
                                       (with "libc" (instance $libc))))
  (func (export "run") (result u32) (canon lift (core func $m "run")))
)
