"""The MOO parser on the real 80286 files, and the SST runner's checks against a fake core."""

from __future__ import annotations

import gzip
import struct

import pytest

from tests.cpu import sst286 as sst
from tests.cpu.moo import REG_NAMES, MooError, parse_bytes, parse_file

ROOT = sst.data_dir()
needs_data = pytest.mark.skipif(not (ROOT / "metadata.json").exists(),
                                reason=f"SingleStepTests 80286 data not found at {ROOT} (set SST_DIR)")


# --- parser on the real files -----------------------------------------------------------------


@needs_data
def test_every_file_parses_with_its_header_count():
    forms = sst.list_forms(ROOT)
    assert len(forms) == 325
    total = 0
    for form in forms:
        mf = parse_file(ROOT / f"{form}.MOO.gz")
        assert mf.cpu_id == "C286" and (mf.major, mf.minor) == (1, 0)
        assert mf.test_count == len(mf.tests) == 300
        assert [t.idx for t in mf.tests] == list(range(300))
        assert mf.meta is not None and mf.meta.cpu_mode == 0  # real mode
        op = int(form[:2], 16)
        assert mf.meta.opcode & 0xFF == op, form
        for t in mf.tests:
            assert set(t.init.regs) == set(REG_NAMES)  # INIT always has every register
            assert t.bytes[-1] == 0xF4  # the terminating HLT is part of BYTS
            assert len(t.hash) == 40
        total += len(mf.tests)
    assert total == 97_500


@needs_data
def test_readme_example_is_00_test_0():
    """The JSON example in README.md is test 0 of 00.MOO.gz."""
    t = parse_file(ROOT / "00.MOO.gz").tests[0]
    assert t.name == "add [bx+0Eh],bl"
    assert list(t.bytes) == [0, 95, 14, 244]
    assert t.init.regs == {"ax": 715, "bx": 26659, "cx": 49548, "dx": 64181, "cs": 65535, "ss": 41175,
                           "ds": 65535, "es": 43996, "sp": 39769, "bp": 65535, "si": 35262,
                           "di": 34633, "ip": 38072, "flags": 6291}
    assert t.init.ram[:4] == [(1086632, 0), (1086633, 95), (1086634, 14), (1086635, 244)]
    assert t.init.ram[-1] == (1075233, 222) and len(t.init.ram) == 11
    assert t.final.regs == {"ip": 38076, "flags": 19}
    assert t.final.ram == [(1075233, 1)]
    assert t.exception is None and t.init.queue == b""
    assert t.hash == "626be5084b331080eb08256c12a62d24afdf2a03"


@needs_data
def test_known_group_test_fields():
    mf = parse_file(ROOT / "F6.4.MOO.gz")
    assert mf.meta.mnemonic == "mul" and mf.meta.opcode == 0xF6
    t = mf.tests[0]
    assert t.name == "mul byte [bx+di]" and t.bytes == bytes.fromhex("f621f4")
    assert t.init.regs["ax"] == 0xDDB9 and t.init.regs["ip"] == 0x4D10 and t.init.regs["flags"] == 0x9017
    assert t.final.regs == {"ax": 0x1C2F, "ip": 0x4D13, "flags": 0x0813}  # IP: 2 bytes + the HLT
    assert t.final.ram == []
    assert t.hash == "14086984314c2f090491531d4e98856a9b52ea4b"


@needs_data
def test_exception_chunk_and_pushed_flags_address():
    t = next(t for t in parse_file(ROOT / "F6.6.MOO.gz").tests if t.exception)
    assert t.idx == 0 and t.name == "div byte [si+3D3Bh]"
    assert t.exception == (0, 807720)
    r = {**t.init.regs, **t.final.regs}
    # FLAGS sits at SS:SP+4 after the push; EXCP gives its even bus address.
    flags_at = (r["ss"] << 4) + ((r["sp"] + 4) & 0xFFFF)
    assert flags_at & ~1 == t.exception[1]
    assert flags_at in dict(t.final.ram)


@needs_data
def test_cycles_decode_on_request():
    t = parse_file(ROOT / "00.MOO.gz", cycles=True).tests[0]
    assert t.cycles is not None and len(t.cycles) == 19
    first = t.cycles[0]
    assert first[1] == 1086632  # address latch of the first code fetch
    assert parse_file(ROOT / "00.MOO.gz").tests[0].cycles is None


# --- parser on synthetic images: chunk skipping and errors -----------------------------------------


def _chunk(cid: bytes, payload: bytes) -> bytes:
    return cid + struct.pack("<I", len(payload)) + payload


def _regs(values: dict[str, int]) -> bytes:
    mask = sum(1 << REG_NAMES.index(n) for n in values)
    return struct.pack("<H", mask) + b"".join(struct.pack("<H", values[n]) for n in REG_NAMES if n in values)


def _image(extra_top: bytes = b"", extra_test: bytes = b"", count: int = 1, ntests: int = 1) -> bytes:
    init = _chunk(b"REGS", _regs({n: i for i, n in enumerate(REG_NAMES)}))
    init += _chunk(b"RAM ", struct.pack("<I", 2) + struct.pack("<IB", 0x1000, 0x90)
                   + struct.pack("<IB", 0x1001, 0xF4))
    init += _chunk(b"QUEU", struct.pack("<I", 1) + b"\x90")
    final = _chunk(b"REGS", _regs({"ip": 0x0D, "flags": 0x46})) + _chunk(b"RAM ", struct.pack("<I", 0))
    final += _chunk(b"ZZZZ", b"future")  # unknown subchunk of a state
    test = struct.pack("<I", 0)
    test += _chunk(b"GMET", b"\x00" * 10)
    test += _chunk(b"NAME", struct.pack("<I", 3) + b"nop" + b"pad")  # payload longer than the field
    test += _chunk(b"BYTS", struct.pack("<I", 2) + b"\x90\xf4")
    test += _chunk(b"INIT", init) + _chunk(b"FINA", final) + extra_test
    test += _chunk(b"EXCP", struct.pack("<BI", 6, 0x1234))
    test += _chunk(b"HASH", bytes(range(20)))
    head = _chunk(b"MOO ", bytes((1, 1, 0, 0)) + struct.pack("<I", count) + b"C286" + b"more")
    meta = _chunk(b"META", struct.pack("<BBBI8sIQB3s", 1, 0, 6, 0x90, b"nop     ", 1, 7, 0, b"\0\0\0"))
    return head + meta + extra_top + _chunk(b"TEST", test) * ntests


def test_synthetic_image_and_unknown_chunks_are_skipped():
    img = _image(extra_top=_chunk(b"XTRA", b"\xff" * 7), extra_test=_chunk(b"CYCL", struct.pack("<I", 0)))
    mf = parse_bytes(img)
    assert (mf.major, mf.minor, mf.test_count, mf.cpu_id) == (1, 1, 1, "C286")
    assert mf.meta.mnemonic == "nop" and mf.meta.opcode == 0x90 and mf.meta.seed == 7
    (t,) = mf.tests
    assert t.name == "nop" and t.bytes == b"\x90\xf4"
    assert t.init.regs == {n: i for i, n in enumerate(REG_NAMES)}
    assert t.init.ram == [(0x1000, 0x90), (0x1001, 0xF4)] and t.init.queue == b"\x90"
    assert t.final.regs == {"ip": 0x0D, "flags": 0x46} and t.final.ram == []
    assert t.exception == (6, 0x1234) and t.hash == bytes(range(20)).hex()
    assert parse_bytes(gzip.decompress(gzip.compress(img))).tests[0].hash == t.hash


def test_parse_errors():
    with pytest.raises(MooError):
        parse_bytes(b"")
    with pytest.raises(MooError):
        parse_bytes(_chunk(b"TEST", b"\0\0\0\0"))
    with pytest.raises(MooError, match="header says 2"):
        parse_bytes(_image(count=2))
    with pytest.raises(MooError):
        parse_bytes(_image()[:-5])  # truncated last chunk


# --- the runner against a fake core ------------------------------------------------------------


class FakeCore:
    """The engine API, with a step() that replays the expected MOO final state (plus a fault)."""

    def __init__(self):
        self.st = [0] * 128
        self.segs = [0] * 6
        self.flags = 0
        self.mem = bytearray(16 << 20)
        self.test = None  # the moo.MooTest whose final state step() produces
        self.fault = None  # callable(core) run after it
        self.form = ""

    def set_reg16(self, r, v):
        self.st[r] = (self.st[r] & ~0xFFFF) | (v & 0xFFFF)

    def get_reg16(self, r):
        return self.st[r] & 0xFFFF

    def set_seg_real(self, s, sel):
        self.segs[s] = sel & 0xFFFF

    def get_seg_sel(self, s):
        return self.segs[s]

    def set_flags(self, v):
        self.flags = v

    def get_flags(self):
        return self.flags

    def write_phys(self, addr, data):
        self.mem[addr:addr + len(data)] = data

    def read_phys(self, addr, n):
        return bytes(self.mem[addr:addr + n])

    def reset_memory(self):
        self.mem[:] = bytes(len(self.mem))

    def step(self):
        t = self.test
        gpr = dict(sst.GPR_ORDER)
        seg = dict(sst.SEG_ORDER)
        for name, v in t.final.regs.items():
            if name in gpr:
                self.set_reg16(gpr[name], v)
            elif name in seg:
                self.segs[seg[name]] = v
            elif name == "flags":
                self.flags = v
        # the data's IP is past the HLT that ended the test; in form F4 that is the HLT under test
        self.st[sst.EIP_SLOT] = t.final.regs["ip"] - (0 if self.form == "F4" else 1)
        for a, v in t.final.ram:
            self.mem[a] = v
        if self.fault:
            self.fault(self)


@pytest.fixture(scope="module")
def fake():
    return FakeCore()


def _run(fake, form, fault=None, pick=None, limit=300):
    """Run `form` on the fake; return (passed, failed, first diffs)."""
    tests = parse_file(ROOT / f"{form}.MOO.gz").tests
    cases = sst.load_form(form, ROOT)
    passed = failed = 0
    diffs = None
    for t, c in list(zip(tests, cases, strict=True))[:limit]:
        if c.skip or (pick and not pick(t)):
            continue
        fake.test, fake.fault, fake.form = t, fault, form
        d = sst.run_case(fake, c)
        touched = [a for a, _ in t.init.ram + t.final.ram]
        assert not any(fake.mem[a] for a in touched), "run_case must zero the memory it touched"
        if d:
            failed += 1
            diffs = diffs or d
        else:
            passed += 1
    return passed, failed, diffs


@needs_data
@pytest.mark.parametrize("form", ["00", "F6.6", "CD", "F4", "C0.4", "9C", "A5", "8E"])
def test_runner_passes_a_correct_core(fake, form):
    passed, failed, diffs = _run(fake, form)
    assert failed == 0, diffs
    assert passed > 0


@needs_data
def test_runner_catches_a_wrong_register(fake):
    def bad_bx(core):
        core.set_reg16(3, core.get_reg16(3) ^ 0x0100)

    passed, failed, diffs = _run(fake, "00", bad_bx, limit=20)
    assert passed == 0 and failed > 10 and diffs[0].startswith("bx: ")

    def bad_ds(core):
        core.segs[3] ^= 1

    passed, failed, diffs = _run(fake, "00", bad_ds, limit=5)
    assert passed == 0 and failed > 0 and diffs[0].startswith("ds: ")

    def bad_ip(core):
        core.st[sst.EIP_SLOT] += 1

    passed, failed, diffs = _run(fake, "EB", bad_ip, limit=5)
    assert passed == 0 and failed > 0 and diffs[0].startswith("ip")


@needs_data
def test_runner_catches_a_wrong_flag_only_when_defined(fake):
    def flip(bits):
        def f(core):
            core.flags ^= bits
        return f

    # ADD: every status flag defined
    passed, failed, diffs = _run(fake, "00", flip(0x001), limit=20)
    assert passed == 0 and failed > 10 and "CF" in diffs[0]
    # bits 12-15 (IOPL, NT, 15) are never compared
    assert _run(fake, "00", flip(0xF000), limit=20)[1] == 0
    # MUL: AF SF ZF PF undefined (metadata flags-mask), CF OF defined
    assert _run(fake, "F6.4", flip(0x0D4), limit=40)[1] == 0
    assert _run(fake, "F6.4", flip(0x800), limit=40)[0] == 0
    # C0 /4 SHL imm8: OF undefined unless the count is 1 (SDM; metadata masks only AF)
    tests = parse_file(ROOT / "C0.4.MOO.gz").tests

    def count_gt1(t):
        return (t.bytes[-2] & 0x1F) > 1

    assert any(count_gt1(t) for t in tests)
    assert _run(fake, "C0.4", flip(0x800), pick=count_gt1)[1] == 0


@needs_data
def test_runner_catches_a_wrong_ram_byte(fake):
    # a byte the instruction wrote (ADD to memory: FINA lists it)
    def bad_dest(core):
        a, v = core.test.final.ram[0]
        core.mem[a] = v ^ 0x40

    _, failed, diffs = _run(fake, "00", bad_dest, pick=lambda t: t.final.ram, limit=30)
    assert failed > 0 and diffs[0].startswith("ram[")

    # a byte that must be left alone (only in INIT: the instruction bytes)
    def stray(core):
        a, v = core.test.init.ram[0]
        core.mem[a] = v ^ 1

    passed, failed, diffs = _run(fake, "00", stray, limit=10)
    assert passed == 0 and failed > 0 and diffs[0].startswith("ram[")


@needs_data
def test_pushed_flags_are_masked_like_flags(fake):
    """DIV #DE pushes FLAGS with the undefined arithmetic flags; only defined bits are compared."""
    def flip_pushed(bits):
        def f(core):
            r = {**core.test.init.regs, **core.test.final.regs}
            a = (r["ss"] << 4) + ((r["sp"] + 4) & 0xFFFF)
            core.mem[a] ^= bits & 0xFF
            core.mem[(r["ss"] << 4) + ((r["sp"] + 5) & 0xFFFF)] ^= bits >> 8
        return f

    exc = lambda t: t.exception is not None  # noqa: E731
    passed, failed, _ = _run(fake, "F6.6", flip_pushed(0x08D5 | 0xF000), pick=exc)
    assert passed > 100 and failed == 0
    passed, failed, diffs = _run(fake, "F6.6", flip_pushed(0x0100), pick=exc)  # TF: defined
    assert passed == 0 and failed > 100 and "pushed flags" in diffs[0]


@needs_data
def test_skip_rules_on_the_data():
    counts = {}
    for form in sst.list_forms(ROOT):
        for c in sst.load_form(form, ROOT):
            if c.skip:
                counts[c.skip] = counts.get(c.skip, 0) + 1
    assert set(counts) <= set(sst.SKIP_RULES)
    assert counts["too-long"] == 13 and counts["sreg-fs-gs"] == 12 and counts["fpu-escape"] == 300 - 11
    assert 1500 < counts["lock-ud"] < 2147
    assert sum(counts.values()) < 0.03 * 97_500


def test_skip_rule_decisions():
    assert sst.skip_reason("00", bytes.fromhex("f00007")) is None  # LOCK ADD [bx],al
    assert sst.skip_reason("00", bytes.fromhex("f000c0")) == "lock-ud"  # register destination
    assert sst.skip_reason("80.7", bytes.fromhex("f0803f01")) == "lock-ud"  # CMP is not lockable
    assert sst.skip_reason("FE.0", bytes.fromhex("26f0fe07")) is None  # ES: LOCK INC byte [bx]
    assert sst.skip_reason("90", bytes.fromhex("f090")) == "lock-ud"
    assert sst.skip_reason("8C", bytes.fromhex("8ce0")) == "sreg-fs-gs"
    assert sst.skip_reason("8E", bytes.fromhex("8ec8")) is None  # MOV CS: #UD on both
    assert sst.skip_reason("81.0", bytes.fromhex("2e362e3e3e8184df1d9376")) == "too-long"
    assert sst.skip_reason("81.0", bytes.fromhex("2e362e3e8184df1d9376")) is None  # exactly 10
    assert sst.skip_reason("D8", bytes.fromhex("d807")) == "fpu-escape"
    assert sst.skip_reason("D6", bytes.fromhex("d6")) is None  # SALC exists on a P6


@needs_data
def test_form_info_uses_reg_subentries():
    meta = sst.load_metadata(ROOT)
    assert sst.form_info(meta, "F6.4")["flags-mask"] == 65323
    assert sst.form_info(meta, "00") == {"status": "normal", "arch": "86"}
    assert sst.form_info(meta, "08")["flags-mask"] == 0xFFEF
