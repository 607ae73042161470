"""Raw-pointer loads and stores for compiled code.

execution.md's first hard rule: no numpy array crosses a function boundary on the hot path, because
numba then adds a reference-count increment and decrement for every array at every call. Compiled
helpers therefore take the integer address of an array (`arr.ctypes.data`, taken once) and use these
intrinsics, which compile to a single unaligned LLVM load or store.

Nothing here checks bounds: callers must prove the address is inside the array they mean.
Every guest-controlled offset is masked or range-checked before it reaches these functions.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.extending import intrinsic


def _make_load(bits: int, signed: bool):
    @intrinsic
    def load(typingctx, addr):
        if not isinstance(addr, types.Integer):
            return None
        sig = types.int64(types.int64)

        def codegen(context, builder, signature, args):
            ptr = builder.inttoptr(args[0], ir.IntType(bits).as_pointer())
            val = builder.load(ptr, align=1)  # widened to int64, the engine's one integer type
            ext = builder.sext if signed else builder.zext
            return ext(val, ir.IntType(64)) if bits < 64 else val

        return sig, codegen

    return load


def _make_store(bits: int):
    @intrinsic
    def store(typingctx, addr, value):
        if not isinstance(addr, types.Integer) or not isinstance(value, types.Integer):
            return None
        sig = types.void(types.int64, types.int64)

        def codegen(context, builder, signature, args):
            ptr = builder.inttoptr(args[0], ir.IntType(bits).as_pointer())
            val = args[1]
            if bits < 64:
                val = builder.trunc(val, ir.IntType(bits))
            builder.store(val, ptr, align=1)
            return context.get_dummy_value()

        return sig, codegen

    return store


load_u8 = _make_load(8, False)
load_u16 = _make_load(16, False)
load_u32 = _make_load(32, False)
load_i8 = _make_load(8, True)
load_i16 = _make_load(16, True)
load_i32 = _make_load(32, True)
load_i64 = _make_load(64, True)
store_u8 = _make_store(8)
store_u16 = _make_store(16)
store_u32 = _make_store(32)
store_i64 = _make_store(64)


@intrinsic
def call_block_fn(typingctx, fnaddr, arg0, arg1, arg2):
    """Call native code at `fnaddr` as `int64 f(int64, int64, int64)` (a compiled tier-1 block)."""
    sig = types.int64(types.int64, types.int64, types.int64, types.int64)

    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(ir.IntType(64), [ir.IntType(64)] * 3)
        fn = builder.inttoptr(args[0], fnty.as_pointer())
        return builder.call(fn, [args[1], args[2], args[3]])

    return sig, codegen


@intrinsic
def call_clock_fn(typingctx, fnaddr, clock_id, bufaddr):
    """Call native code at `fnaddr` as `int f(int, void *)`: the C library's clock_gettime, whose
    address Python put in the state array (emu/tsc.py). Returns its int result."""
    sig = types.int64(types.int64, types.int64, types.int64)

    def codegen(context, builder, signature, args):
        i32, ptr = ir.IntType(32), ir.IntType(8).as_pointer()
        fn = builder.inttoptr(args[0], ir.FunctionType(i32, [i32, ptr]).as_pointer())
        r = builder.call(fn, [builder.trunc(args[1], i32), builder.inttoptr(args[2], ptr)])
        return builder.sext(r, ir.IntType(64))

    return sig, codegen


__all__ = [name for name in dir() if name.startswith(("load_", "store_"))] + ["call_block_fn", "call_clock_fn"]
