"""Device fuzzing (`pyemu fuzz --mode devices`, and one program in six of `--mode all`): random
port and MMIO traffic, timer expiry and BIOS service calls against a whole PC's devices, the way
QEMU's generic-fuzz drives its devices through qtest.

A program is a list of operations on a fresh machine (16 MiB, `-icount`, a 1.44 MB floppy, a
1 MiB hard disk and a CD, all in memory, every one of them zero-filled):

  ["o", port, size, value]      OUT: `size` 1, 2 or 4 bytes
  ["i", port, size]             IN
  ["w", address, size, value]   an MMIO write (the VGA window, A0000h-BFFFFh)
  ["r", address, size]          an MMIO read
  ["t", ns]                     virtual time passes: the devices' due timers fire
  ["b", vector, regs, segs]     the built-in BIOS serves INT `vector` in real mode with those
                                GPRs and DS/ES/SS selectors (what the guest's INT n reaches)

Operations come in bursts on one device (its ports, the data port read or written many times, as
a driver's sector transfer is) so that random traffic reaches the devices' deeper states (an ATA
command's data phase, an FDC command's result phase, DMA into RAM). A finding is a Python
exception from any device or the BIOS (kind `exception`), a read whose value does not fit its
size (`value`), a guest RAM access outside RAM, or one operation slower than `SLOW_OP_S` (`slow`).
A reset request (port 92h, CF9h, the keyboard controller) resets the machine, as the main loop does.
"""

from __future__ import annotations

import random
import time

from emu.devices.bus import PORT_SPACE

MODE = "devices"
OPS = 300  # operations per program
RAM_MB = 16
SLOW_OP_S = 2.0  # one operation slower than this (seconds) is a finding
FLOPPY_BYTES = 1_474_560
DISK_BYTES = 1 << 20
CD_BYTES = 1 << 16
VGA_MMIO = (0xA0000, 0x20000)
BURST_MAX = 40
REPEAT_MAX = 600  # a burst may read or write one data port this many times (a sector is 256 words)
BIOS_VECTORS = (0x09, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x1A, 0x08, 0x70)
DEVICE_PORTS = (
    (0x00, 16), (0x80, 16), (0xC0, 32),  # DMA 8237 channels, page registers
    (0x20, 2), (0xA0, 2), (0x4D0, 2),  # PIC pair, ELCR
    (0x40, 4), (0x61, 1),  # PIT, port B
    (0x60, 1), (0x64, 1),  # i8042
    (0x70, 2),  # RTC/CMOS
    (0x92, 1),  # port 92h
    (0x1F0, 8), (0x3F6, 1), (0x170, 8), (0x376, 1),  # ATA
    (0x3F0, 8),  # FDC
    (0x3F8, 8), (0x2F8, 8),  # UARTs
    (0x3B4, 2), (0x3BA, 1), (0x3C0, 16), (0x3D4, 2), (0x3DA, 1),  # VGA
    (0xCF8, 8),  # PCI configuration, reset control
)
"""The PC's device ports (emu/machine.py wires these); a few operations go anywhere else."""
DATA_PORTS = (0x1F0, 0x170, 0x3F5, 0x60, 0x71, 0xCFC, 0x3F8, 0x3C9, 0x3C5, 0x3CF, 0x3D5, 0x40)


def program(seed: int) -> dict:
    """Draw one device program from `seed`."""
    rng = random.Random(seed)
    ops: list[list] = []
    while len(ops) < OPS:
        r = rng.random()
        if r < 0.08:
            ops.append(["t", rng.choice((1_000, 100_000, 1_000_000, 55_000_000, 1_000_000_000))])
        elif r < 0.12:
            ops.append(_bios_op(rng))
        elif r < 0.17:
            addr = VGA_MMIO[0] + rng.randrange(VGA_MMIO[1])
            size = rng.choice((1, 2, 4))
            ops.append(["w", addr, size, _value(rng, size)] if rng.random() < 0.6 else ["r", addr, size])
        elif r < 0.2:
            ops.append(_port_op(rng, rng.randrange(PORT_SPACE)))
        else:
            base, count = rng.choice(DEVICE_PORTS)
            for _ in range(rng.randrange(1, BURST_MAX)):
                ops.append(_port_op(rng, base + rng.randrange(count)))
            if rng.random() < 0.3:  # a data phase: one port, many times
                port = rng.choice(DATA_PORTS)
                size = 2 if port in (0x1F0, 0x170) else 1
                if rng.random() < 0.5:
                    ops.extend(["i", port, size] for _ in range(rng.randrange(1, REPEAT_MAX)))
                else:
                    ops.extend(["o", port, size, _value(rng, size)] for _ in range(rng.randrange(1, REPEAT_MAX)))
    return {"mode": MODE, "seed": seed, "ops": ops}


def _value(rng: random.Random, size: int) -> int:
    r = rng.random()
    if r < 0.3:
        return rng.choice((0, 1, 0xFF, 0x80, 0x7F, 0xFFFF_FFFF)) & ((1 << 8 * size) - 1)
    return rng.getrandbits(8 * size)


def _port_op(rng: random.Random, port: int) -> list:
    size = rng.choice((1, 1, 1, 2, 4))
    return ["o", port, size, _value(rng, size)] if rng.random() < 0.55 else ["i", port, size]


def _bios_op(rng: random.Random) -> list:
    regs = [rng.getrandbits(16) if rng.random() < 0.5 else rng.getrandbits(8) for _ in range(8)]
    segs = [rng.choice((0, 0x40, 0x1000, 0x9000, 0xA000, 0xF000, 0xFFFF, rng.getrandbits(16))) for _ in range(3)]
    return ["b", rng.choice(BIOS_VECTORS), regs, segs]


class DeviceRunner:
    """Builds a fresh machine for each program (deterministic: nothing carries over)."""

    def __init__(self):
        self.machine = None

    def _fresh(self):
        from emu.devices.diskimage import DiskImage
        from emu.machine import Machine, MachineConfig

        if self.machine is not None:
            self.machine.close()
        cfg = MachineConfig(ram_mb=RAM_MB, icount=True,
                            floppy_images=[DiskImage.from_bytes(bytes(FLOPPY_BYTES)), None],
                            disk_images=[DiskImage.from_bytes(bytes(DISK_BYTES)), None],
                            cdrom_image=DiskImage.from_bytes(bytes(CD_BYTES)))
        self.machine = Machine(cfg)
        return self.machine

    def check(self, p: dict) -> dict | None:
        """None when the program passes; otherwise a finding (kind, detail, the operation's index)."""
        m = self._fresh()
        for i, op in enumerate(p["ops"]):
            t = time.perf_counter()
            try:
                bad = _do(m, op)
            except Exception as exc:  # noqa: BLE001 - a Python exception from a device is a finding
                return {"kind": "exception", "detail": f"op {i} {op[:3]}: {type(exc).__name__}: {exc}"}
            if bad:
                return {"kind": "value", "detail": f"op {i} {op}: {bad}"}
            if time.perf_counter() - t > SLOW_OP_S:
                return {"kind": "slow", "detail": f"op {i} {op[:3]} took {time.perf_counter() - t:.1f} s"}
            if m.reset_requested:
                m.reset()
        return None


def _do(m, op: list) -> str | None:
    kind = op[0]
    if kind == "o":
        m.bus.write(op[1], op[2], op[3])
    elif kind == "i":
        v = m.bus.read(op[1], op[2])
        if not 0 <= v < 1 << 8 * op[2]:
            return f"read {v:#x}"
    elif kind == "w":
        m.core.phys.mmio_write(op[1], op[2], op[3])
    elif kind == "r":
        v = m.core.phys.mmio_read(op[1], op[2])
        if not 0 <= v < 1 << 8 * op[2]:
            return f"read {v:#x}"
    elif kind == "t":
        m.clock.advance_instructions(m.clock.ns_to_instructions(op[1]))
        m.clock.run_due()
    elif kind == "b":
        _bios_call(m, op[1], op[2], op[3])
    return None


def _bios_call(m, vector: int, regs: list[int], segs: list[int]) -> None:
    """Enter the built-in BIOS's handler for INT `vector` as its ROM stub does (CS = F000h, IP just
    after the stub's OUT to the trap port), in real mode, with the given GPRs and DS, ES, SS."""
    from bios import rom as R
    from emu.cpu import state as S

    if m.bios is None:
        return
    core, st = m.core, m.st
    st[S.CR0] = int(st[S.CR0]) & ~1
    core.set_seg_real(S.CS, R.ROM_BASE >> 4)
    for seg, sel in zip((S.DS, S.ES, S.SS), segs, strict=True):
        core.set_seg_real(seg, sel)
    for i, v in enumerate(regs):
        st[i] = v
    st[S.EIP] = R.VECTOR_STUBS + vector * R.STUB_SIZE + R.STUB_RET
    m.bios.trap(R.TRAP_PORT, 1, vector)
