;; A WASI command whose state lives in a table as well as in memory: it exits with what table
;; entry 0 returns (3 at instantiation), then points entry 0 at a function returning 4. A host
;; that only put memory and globals back between calls would see 4 from the second call on.
(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (type $ret (func (result i32)))
  (memory (export "memory") 1)
  (table $t 1 funcref)
  (elem (table $t) (i32.const 0) func $three)
  (elem declare func $four)
  (func $three (result i32) i32.const 3)
  (func $four (result i32) i32.const 4)
  (func (export "_start") (local $r i32)
    (local.set $r (call_indirect (type $ret) (i32.const 0)))
    (table.set $t (i32.const 0) (ref.func $four))
    (call $exit (local.get $r))))
