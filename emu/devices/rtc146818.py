"""Motorola MC146818A real-time clock and CMOS RAM at ports 70h (index, bit 7 = NMI disable) and 71h.

References: MC146818A datasheet: "Time, calendar and alarm locations" (table 3, BCD/binary and
12/24-hour formats), "Register A" (UIP, DV2-DV0, RS3-RS0 with the periodic rate table), "Register B"
(SET, PIE, AIE, UIE, SQWE, DM, 24/12, DSE), "Register C" (IRQF, PF, AF, UF, cleared by a read),
"Register D" (VRT), "Update cycle" (UIP rises 244 us before the update, which lasts 1984 us), "Alarm"
(C0h-FFh in an alarm byte is "don't care"). CMOS layout: IBM PC/AT Technical Reference and the
registers SeaBIOS/Linux read (10h-35h, checksum at 2Eh/2Fh).

Time is not ticked. The clock keeps `seconds` (an epoch count of the wall time shown) valid at the
second boundary `base_ns` of virtual time; the time registers are re-encoded from the virtual
clock when read. Flags are computed lazily over the time since they were last brought up to date,
so nothing runs while interrupts are disabled; a Timer is armed only for an enabled interrupt that
would raise IRQ8.
"""

from __future__ import annotations

import calendar
import datetime as _dt

from emu.clock import NS_PER_SECOND, VirtualClock
from emu.devices.bus import IoBus, IrqLine

INDEX_PORT = 0x70
DATA_PORT = 0x71
NMI_DISABLE = 0x80  # bit 7 of a write to 70h
INDEX_MASK = 0x7F
CMOS_SIZE = 128

# Time, calendar and alarm locations.
REG_SECONDS = 0x00
REG_SECONDS_ALARM = 0x01
REG_MINUTES = 0x02
REG_MINUTES_ALARM = 0x03
REG_HOURS = 0x04
REG_HOURS_ALARM = 0x05
REG_DAY_OF_WEEK = 0x06
REG_DAY_OF_MONTH = 0x07
REG_MONTH = 0x08
REG_YEAR = 0x09
REG_A = 0x0A
REG_B = 0x0B
REG_C = 0x0C
REG_D = 0x0D
REG_CENTURY = 0x32  # PC/AT convention (IBM century byte), kept by the clock here as QEMU does
TIME_REGISTERS = (REG_SECONDS, REG_MINUTES, REG_HOURS, REG_DAY_OF_WEEK, REG_DAY_OF_MONTH, REG_MONTH,
                  REG_YEAR, REG_CENTURY)

REG_A_UIP = 0x80
REG_A_DV_MASK = 0x70
REG_A_DV_32KHZ = 0x20  # DV2-DV0 = 010: 32.768 kHz time base, running
REG_A_DV_RESET = 0x60  # DV2-DV1 = 11: divider chain held in reset
REG_A_RS_MASK = 0x0F
REG_A_WRITABLE = 0x7F
REG_B_SET = 0x80
REG_B_PIE = 0x40
REG_B_AIE = 0x20
REG_B_UIE = 0x10
REG_B_SQWE = 0x08
REG_B_DM_BINARY = 0x04
REG_B_24H = 0x02
REG_B_DSE = 0x01
REG_C_IRQF = 0x80
REG_C_PF = 0x40
REG_C_AF = 0x20
REG_C_UF = 0x10
REG_D_VRT = 0x80
HOUR_PM = 0x80  # 12-hour mode: bit 7 of the hours byte
ALARM_DONT_CARE = 0xC0  # an alarm byte of C0h-FFh matches any value

TIME_BASE_HZ = 32_768
UIP_LEAD_NS = 244_000  # UIP rises this long before the update cycle starts
UPDATE_CYCLE_NS = 1_984_000
DIVIDER_RESET_FIRST_UPDATE_NS = 500_000_000  # first update after leaving divider reset
SECONDS_PER_DAY = 86_400
SECONDS_PER_HOUR = 3600
SECONDS_PER_MINUTE = 60

DEFAULT_REG_A = REG_A_DV_32KHZ | 0x06  # 1024 Hz periodic rate, as BIOSes program it
DEFAULT_REG_B = REG_B_24H
# Under -icount the clock starts here so that runs are deterministic.
ICOUNT_START_TIME = _dt.datetime(2024, 1, 1, 0, 0, 0)

# Standard CMOS layout.
CMOS_FLOPPY_TYPES = 0x10
CMOS_DISK_TYPES = 0x12
CMOS_EQUIPMENT = 0x14
CMOS_BASE_MEM_LO = 0x15
CMOS_EXT_MEM_LO = 0x17
CMOS_DISK0_EXT_TYPE = 0x19
CMOS_DISK1_EXT_TYPE = 0x1A
CMOS_CHECKSUM_HI = 0x2E
CMOS_CHECKSUM_FIRST = 0x10
CMOS_CHECKSUM_LAST = 0x2D
CMOS_EXT_MEM2_LO = 0x30
CMOS_MEM_ABOVE_16M_LO = 0x34
# The boot order as QEMU's pc machine stores it for SeaBIOS: 3Dh = first | second << 4,
# 38h = third << 4 | bit 0 (1: do not check the floppy's boot signature). Devices: 1 floppy,
# 2 hard disk, 3 CD-ROM.
CMOS_BOOT_ORDER_12 = 0x3D
CMOS_BOOT_ORDER_3 = 0x38
BOOT_DEVICE_CODES = {"a": 1, "c": 2, "d": 3}
BOOT_NO_FLOPPY_SIG_CHECK = 0x01
BASE_MEMORY_KB = 640
KB = 1024
MB = 1024 * KB
EXT_MEM_START = 1 * MB
ABOVE_16M_START = 16 * MB
ABOVE_16M_UNIT = 64 * KB
DISK_TYPE_USER = 0xF  # "type 15": the real type is in 19h/1Ah
DISK_EXT_TYPE_USER = 47  # user-defined geometry
EQUIP_FLOPPY_PRESENT = 0x01
EQUIP_FPU = 0x02
EQUIP_FLOPPY_COUNT_SHIFT = 6
EQUIP_DISPLAY_EGA_VGA = 0x00  # bits 5-4: 00 = EGA/VGA (has its own BIOS)
FLOPPY_TYPES = {"none": 0, "360K": 1, "1.2M": 2, "720K": 3, "1.44M": 4, "2.88M": 5}


def _bcd(value: int) -> int:
    return ((value // 10) << 4) | (value % 10)


def _unbcd(value: int) -> int:
    return (value >> 4) * 10 + (value & 0x0F)


def _to_epoch(when: _dt.datetime) -> int:
    return calendar.timegm(when.timetuple())


def _from_epoch(seconds: int) -> _dt.datetime:
    return _dt.datetime(1970, 1, 1) + _dt.timedelta(seconds=seconds)


class Rtc146818:
    """The RTC and its 128 bytes of CMOS RAM; `irq8` follows Register C's IRQF."""

    def __init__(self, clock: VirtualClock, irq8: IrqLine | None = None,
                 start_time: _dt.datetime | None = None):
        self.clock = clock
        self.irq8 = irq8
        if start_time is None:
            start_time = ICOUNT_START_TIME if clock.icount else _dt.datetime.now()
        self.start_time = start_time.replace(microsecond=0, tzinfo=None)
        self.timer = clock.timer(self._on_timer, "rtc")
        self.cmos = bytearray(CMOS_SIZE)
        self.index = 0
        self.nmi_disabled = False
        self.reset(power_on=True)

    def attach(self, bus: IoBus) -> None:
        bus.register(INDEX_PORT, 1, self._index_read, self._index_write, owner=self)
        bus.register(DATA_PORT, 1, self._data_read, self._data_write, owner=self)

    def reset(self, power_on: bool = False) -> None:
        """A machine reset clears PIE/AIE/UIE/SQWE and the flags; time and CMOS RAM survive
        (they are battery-backed)."""
        now = self.clock.now()
        if power_on:
            self.cmos[REG_A] = DEFAULT_REG_A
            self.cmos[REG_B] = DEFAULT_REG_B
            self.seconds = _to_epoch(self.start_time)
            self.base_ns = now
            self.divider_ns = now
        else:
            self._update_flags(now)
            self.cmos[REG_B] &= ~(REG_B_PIE | REG_B_AIE | REG_B_UIE | REG_B_SQWE)
        self.reg_c = 0
        self.flags_ns = now
        self.cmos[REG_D] = REG_D_VRT
        self._sync_time_registers(now)
        self._set_irq()
        self._rearm(now)

    # -- time ------------------------------------------------------------------------------
    @property
    def reg_a(self) -> int:
        return self.cmos[REG_A]

    @property
    def reg_b(self) -> int:
        return self.cmos[REG_B]

    def _divider_running(self) -> bool:
        return self.reg_a & REG_A_DV_MASK == REG_A_DV_32KHZ

    def _running(self) -> bool:
        return self._divider_running() and not self.reg_b & REG_B_SET

    def _second_index(self, ns: int) -> int:
        return (ns - self.base_ns) // NS_PER_SECOND

    def current_seconds(self, now: int) -> int:
        if not self._running():
            return self.seconds
        return self.seconds + self._second_index(now)

    def now_datetime(self) -> _dt.datetime:
        """The wall time the guest reads now."""
        return _from_epoch(self.current_seconds(self.clock.now()))

    def _freeze(self, now: int) -> None:
        self.seconds = self.current_seconds(now)
        self.base_ns = now

    def _encode(self, value: int) -> int:
        return value if self.reg_b & REG_B_DM_BINARY else _bcd(value)

    def _decode(self, value: int) -> int:
        return value if self.reg_b & REG_B_DM_BINARY else _unbcd(value)

    def _encode_hour(self, hour: int) -> int:
        if self.reg_b & REG_B_24H:
            return self._encode(hour)
        return self._encode(hour % 12 or 12) | (HOUR_PM if hour >= 12 else 0)

    def _decode_hour(self, value: int) -> int:
        if self.reg_b & REG_B_24H:
            return self._decode(value)
        return self._decode(value & ~HOUR_PM) % 12 + (12 if value & HOUR_PM else 0)

    def _sync_time_registers(self, now: int) -> None:
        """Encode the running time into 00h-09h and 32h in the format register B selects."""
        when = _from_epoch(self.current_seconds(now))
        cmos = self.cmos
        cmos[REG_SECONDS] = self._encode(when.second)
        cmos[REG_MINUTES] = self._encode(when.minute)
        cmos[REG_HOURS] = self._encode_hour(when.hour)
        cmos[REG_DAY_OF_WEEK] = self._encode(when.isoweekday() % 7 + 1)  # Sunday = 1
        cmos[REG_DAY_OF_MONTH] = self._encode(when.day)
        cmos[REG_MONTH] = self._encode(when.month)
        cmos[REG_YEAR] = self._encode(when.year % 100)
        cmos[REG_CENTURY] = self._encode(when.year // 100)

    def _registers_to_seconds(self) -> int:
        """Decode what the guest wrote into the time registers (out-of-range fields clamped)."""
        cmos = self.cmos
        year = self._decode(cmos[REG_CENTURY]) * 100 + self._decode(cmos[REG_YEAR])
        year = min(max(year, 1970), 9999)
        month = min(max(self._decode(cmos[REG_MONTH]), 1), 12)
        day = min(max(self._decode(cmos[REG_DAY_OF_MONTH]), 1), calendar.monthrange(year, month)[1])
        hour = min(self._decode_hour(cmos[REG_HOURS]), 23)
        minute = min(self._decode(cmos[REG_MINUTES]), 59)
        second = min(self._decode(cmos[REG_SECONDS]), 59)
        return _to_epoch(_dt.datetime(year, month, day, hour, minute, second))

    # -- alarm -----------------------------------------------------------------------------
    def _alarm_values(self, reg: int, limit: int) -> list[int]:
        raw = self.cmos[reg]
        if raw & ALARM_DONT_CARE == ALARM_DONT_CARE:
            return list(range(limit))
        value = self._decode_hour(raw) if reg == REG_HOURS_ALARM else self._decode(raw)
        return [value] if value < limit else []

    def _next_alarm(self, seconds: int) -> int | None:
        """The first second after `seconds` whose time of day matches the three alarm bytes."""
        hours = self._alarm_values(REG_HOURS_ALARM, 24)
        minutes = self._alarm_values(REG_MINUTES_ALARM, 60)
        secs = self._alarm_values(REG_SECONDS_ALARM, 60)
        if not (hours and minutes and secs):
            return None
        day = seconds - seconds % SECONDS_PER_DAY
        tod = seconds % SECONDS_PER_DAY
        h0, m0, s0 = (tod // SECONDS_PER_HOUR, tod // SECONDS_PER_MINUTE % 60,
                      tod % SECONDS_PER_MINUTE)
        for h in hours:
            if h < h0:
                continue
            if h > h0:
                return day + h * SECONDS_PER_HOUR + minutes[0] * SECONDS_PER_MINUTE + secs[0]
            for m in minutes:
                if m < m0:
                    continue
                if m > m0:
                    return day + h * SECONDS_PER_HOUR + m * SECONDS_PER_MINUTE + secs[0]
                for s in secs:
                    if s > s0:
                        return day + h * SECONDS_PER_HOUR + m * SECONDS_PER_MINUTE + s
        return day + SECONDS_PER_DAY + hours[0] * SECONDS_PER_HOUR + minutes[0] * SECONDS_PER_MINUTE + secs[0]

    # -- periodic --------------------------------------------------------------------------
    def periodic_period_ns(self) -> float | None:
        """Register A RS3-RS0 at 32.768 kHz: 0 = none, 1 and 2 = 3.90625 and 7.8125 ms,
        3-15 = 2**(RS-1) cycles of the time base (122.070 us .. 500 ms)."""
        cycles = self._periodic_cycles()
        return None if cycles is None else cycles * NS_PER_SECOND / TIME_BASE_HZ

    def _periodic_cycles(self) -> int | None:
        rs = self.reg_a & REG_A_RS_MASK
        if rs == 0 or not self._divider_running():
            return None
        return 1 << (rs + 6) if rs <= 2 else 1 << (rs - 1)

    def _periodic_index(self, ns: int, cycles: int) -> int:
        return (ns - self.divider_ns) * TIME_BASE_HZ // (cycles * NS_PER_SECOND)

    # -- flags and IRQ8 --------------------------------------------------------------------
    def _update_flags(self, now: int) -> None:
        """Set PF, UF and AF for every event in (flags_ns, now]."""
        last = self.flags_ns
        if now <= last:
            return
        cycles = self._periodic_cycles()
        if cycles is not None and self._periodic_index(now, cycles) > self._periodic_index(last, cycles):
            self.reg_c |= REG_C_PF
        if self._running() and self._second_index(now) > self._second_index(last):
            self.reg_c |= REG_C_UF
            before = self.seconds + self._second_index(last)
            alarm = self._next_alarm(before)
            if alarm is not None and alarm <= self.current_seconds(now):
                self.reg_c |= REG_C_AF
        self.flags_ns = now
        self._set_irq()

    def _set_irq(self) -> None:
        enabled = self.reg_b & (REG_B_PIE | REG_B_AIE | REG_B_UIE)
        # PF/AF/UF sit at the same bit positions as PIE/AIE/UIE.
        if self.reg_c & enabled & (REG_C_PF | REG_C_AF | REG_C_UF):
            self.reg_c |= REG_C_IRQF
        else:
            self.reg_c &= ~REG_C_IRQF
        if self.irq8 is not None:
            self.irq8.set(self.reg_c & REG_C_IRQF)

    def _rearm(self, now: int) -> None:
        """Arm the timer for the next event that would raise IRQ8; none while IRQF is already set."""
        deadlines = []
        if not self.reg_c & REG_C_IRQF:
            b = self.reg_b
            cycles = self._periodic_cycles()
            if b & REG_B_PIE and cycles is not None:
                k = self._periodic_index(now, cycles) + 1
                deadlines.append(self.divider_ns - (-k * cycles * NS_PER_SECOND // TIME_BASE_HZ))
            if self._running():
                next_second = self.base_ns + (self._second_index(now) + 1) * NS_PER_SECOND
                if b & REG_B_UIE:
                    deadlines.append(next_second)
                if b & REG_B_AIE:
                    alarm = self._next_alarm(self.current_seconds(now))
                    if alarm is not None:
                        deadlines.append(self.base_ns + (alarm - self.seconds) * NS_PER_SECOND)
        if deadlines:
            self.timer.arm(min(deadlines))
        else:
            self.timer.cancel()

    def _on_timer(self, deadline: int) -> None:
        now = self.clock.now()
        self._update_flags(now)
        self._rearm(now)

    def update_in_progress(self, now: int) -> bool:
        if not self._running():
            return False
        into_second = (now - self.base_ns) % NS_PER_SECOND
        return into_second >= NS_PER_SECOND - (UIP_LEAD_NS + UPDATE_CYCLE_NS)

    # -- register access -------------------------------------------------------------------
    def read_register(self, index: int) -> int:
        now = self.clock.now()
        if index in TIME_REGISTERS:
            if self._running():
                self._sync_time_registers(now)
            return self.cmos[index]
        if index == REG_A:
            return self.reg_a | (REG_A_UIP if self.update_in_progress(now) else 0)
        if index == REG_C:
            self._update_flags(now)
            value = self.reg_c
            self.reg_c = 0
            self._set_irq()
            self._rearm(now)
            return value
        if index == REG_D:
            return REG_D_VRT
        return self.cmos[index]

    def write_register(self, index: int, value: int) -> None:
        now = self.clock.now()
        if index in TIME_REGISTERS:
            if self._running():
                self._sync_time_registers(now)
                self._update_flags(now)
                self.cmos[index] = value
                # Keep the phase of the divider chain: the new time holds from the current second.
                self.base_ns += self._second_index(now) * NS_PER_SECOND
                self.seconds = self._registers_to_seconds()
                self.flags_ns = now
                self._rearm(now)
            else:
                self.cmos[index] = value
            return
        if index == REG_A:
            self._update_flags(now)
            was_running, was_divider = self._running(), self._divider_running()
            seconds = self.current_seconds(now)
            self.cmos[REG_A] = value & REG_A_WRITABLE
            if self._divider_running() and not was_divider:
                self.divider_ns = now
            if was_running != self._running():
                self.seconds = seconds
                self.base_ns = now
                if not was_divider:
                    # Leaving divider reset: the first update comes 500 ms later.
                    self.base_ns = now - (NS_PER_SECOND - DIVIDER_RESET_FIRST_UPDATE_NS)
            self.flags_ns = now
            self._set_irq()
            self._rearm(now)
            return
        if index == REG_B:
            self._update_flags(now)
            was_running = self._running()
            if was_running:
                self._sync_time_registers(now)
            if value & REG_B_SET:
                value &= ~REG_B_UIE  # SET clears UIE and aborts any update cycle
                if was_running:
                    self._freeze(now)
            self.cmos[REG_B] = value
            if self._running() and not was_running:
                self.seconds = self._registers_to_seconds()
                self.base_ns = now
            self.flags_ns = now
            self._set_irq()
            self._rearm(now)
            return
        if index in (REG_C, REG_D):
            return  # read-only
        self.cmos[index] = value

    # -- ports -----------------------------------------------------------------------------
    def _index_read(self, port: int, size: int) -> int:
        return 0xFF  # the index register is write-only on the PC

    def _index_write(self, port: int, size: int, value: int) -> None:
        self.index = value & INDEX_MASK
        self.nmi_disabled = bool(value & NMI_DISABLE)

    def _data_read(self, port: int, size: int) -> int:
        return self.read_register(self.index)

    def _data_write(self, port: int, size: int, value: int) -> None:
        self.write_register(self.index, value & 0xFF)

    # -- CMOS helpers ----------------------------------------------------------------------
    def checksum(self) -> int:
        return sum(self.cmos[CMOS_CHECKSUM_FIRST:CMOS_CHECKSUM_LAST + 1]) & 0xFFFF

    def update_checksum(self) -> None:
        value = self.checksum()
        self.cmos[CMOS_CHECKSUM_HI] = value >> 8
        self.cmos[CMOS_CHECKSUM_HI + 1] = value & 0xFF

    def fill_standard_cmos(self, ram_bytes: int, floppies: tuple[str, ...] = (),
                           hard_disks: int = 0, fpu: bool = True, boot_order: str = "") -> None:
        """Write the PC/AT layout BIOSes and Linux read, then the checksum over 10h-2Dh.

        `floppies` names the drive types ("1.44M", ...) for A: and B:; `hard_disks` is how many
        ATA disks are attached (typed 47, user-defined, as BIOSes with translation expect).
        """
        cmos = self.cmos
        types = [FLOPPY_TYPES[name] for name in floppies[:2]] + [0, 0]
        cmos[CMOS_FLOPPY_TYPES] = (types[0] << 4) | types[1]
        disk0 = DISK_TYPE_USER if hard_disks >= 1 else 0
        disk1 = DISK_TYPE_USER if hard_disks >= 2 else 0
        cmos[CMOS_DISK_TYPES] = (disk0 << 4) | disk1
        cmos[CMOS_DISK0_EXT_TYPE] = DISK_EXT_TYPE_USER if disk0 else 0
        cmos[CMOS_DISK1_EXT_TYPE] = DISK_EXT_TYPE_USER if disk1 else 0
        equipment = EQUIP_DISPLAY_EGA_VGA | (EQUIP_FPU if fpu else 0)
        n_floppies = sum(1 for t in types[:2] if t)
        if n_floppies:
            equipment |= EQUIP_FLOPPY_PRESENT | ((n_floppies - 1) << EQUIP_FLOPPY_COUNT_SHIFT)
        cmos[CMOS_EQUIPMENT] = equipment
        cmos[CMOS_BASE_MEM_LO:CMOS_BASE_MEM_LO + 2] = BASE_MEMORY_KB.to_bytes(2, "little")
        codes = [BOOT_DEVICE_CODES[d] for d in boot_order if d in BOOT_DEVICE_CODES][:3] + [0, 0, 0]
        cmos[CMOS_BOOT_ORDER_12] = codes[0] | (codes[1] << 4)
        cmos[CMOS_BOOT_ORDER_3] = (codes[2] << 4) | BOOT_NO_FLOPPY_SIG_CHECK
        ext_kb = min(max(ram_bytes - EXT_MEM_START, 0) // KB, 0xFFFF)
        cmos[CMOS_EXT_MEM_LO:CMOS_EXT_MEM_LO + 2] = ext_kb.to_bytes(2, "little")
        cmos[CMOS_EXT_MEM2_LO:CMOS_EXT_MEM2_LO + 2] = ext_kb.to_bytes(2, "little")
        above = min(max(ram_bytes - ABOVE_16M_START, 0) // ABOVE_16M_UNIT, 0xFFFF)
        cmos[CMOS_MEM_ABOVE_16M_LO:CMOS_MEM_ABOVE_16M_LO + 2] = above.to_bytes(2, "little")
        self._sync_time_registers(self.clock.now())  # includes the century byte
        self.update_checksum()

    # -- state -----------------------------------------------------------------------------
    def state(self) -> dict:
        return {"cmos": list(self.cmos), "index": self.index, "nmi_disabled": int(self.nmi_disabled),
                "seconds": self.seconds, "base_ns": self.base_ns, "divider_ns": self.divider_ns,
                "flags_ns": self.flags_ns, "reg_c": self.reg_c}

    def load_state(self, state: dict) -> None:
        self.cmos = bytearray(state["cmos"])
        self.index = int(state["index"])
        self.nmi_disabled = bool(state["nmi_disabled"])
        for name in ("seconds", "base_ns", "divider_ns", "flags_ns", "reg_c"):
            setattr(self, name, int(state[name]))
        self._set_irq()
        self._rearm(self.clock.now())
