"""The PS/2 (MF2) keyboard behind the i8042, and the scancode tables.

Internal representation: the keyboard speaks its selected scancode set on the wire (set 2 after
reset, as every MF2 keyboard); the i8042 translates set 2 to set 1 when command byte bit 6 (XLAT)
is set, exactly as the real controller does (see `SET2_TO_SET1` and `I8042`). The host side (see
`emu.hostkeys`) hands keys over as set-1 make/break sequences, the lingua franca of PC software;
`Ps2Keyboard.key_set1` converts them into the selected set before they are queued.

Keyboard commands follow the IBM PS/2 Technical Reference ("Keyboard and Auxiliary Device
Controller", keyboard command set): every command and parameter byte is acknowledged with FAh.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

# -- scancodes -----------------------------------------------------------------------------------
# (name, set-1 make, set-2 make); names are shared with emu.hostkeys. E0-prefixed keys use the same
# base code after E0 in both sets, so only the base codes are listed here.
KEYS: tuple[tuple[str, int, int], ...] = (
    ("esc", 0x01, 0x76), ("1", 0x02, 0x16), ("2", 0x03, 0x1E), ("3", 0x04, 0x26),
    ("4", 0x05, 0x25), ("5", 0x06, 0x2E), ("6", 0x07, 0x36), ("7", 0x08, 0x3D),
    ("8", 0x09, 0x3E), ("9", 0x0A, 0x46), ("0", 0x0B, 0x45), ("minus", 0x0C, 0x4E),
    ("equal", 0x0D, 0x55), ("backspace", 0x0E, 0x66), ("tab", 0x0F, 0x0D), ("q", 0x10, 0x15),
    ("w", 0x11, 0x1D), ("e", 0x12, 0x24), ("r", 0x13, 0x2D), ("t", 0x14, 0x2C),
    ("y", 0x15, 0x35), ("u", 0x16, 0x3C), ("i", 0x17, 0x43), ("o", 0x18, 0x44),
    ("p", 0x19, 0x4D), ("bracketleft", 0x1A, 0x54), ("bracketright", 0x1B, 0x5B),
    ("enter", 0x1C, 0x5A), ("ctrl", 0x1D, 0x14), ("a", 0x1E, 0x1C), ("s", 0x1F, 0x1B),
    ("d", 0x20, 0x23), ("f", 0x21, 0x2B), ("g", 0x22, 0x34), ("h", 0x23, 0x33),
    ("j", 0x24, 0x3B), ("k", 0x25, 0x42), ("l", 0x26, 0x4B), ("semicolon", 0x27, 0x4C),
    ("apostrophe", 0x28, 0x52), ("grave", 0x29, 0x0E), ("shift", 0x2A, 0x12),
    ("backslash", 0x2B, 0x5D), ("z", 0x2C, 0x1A), ("x", 0x2D, 0x22), ("c", 0x2E, 0x21),
    ("v", 0x2F, 0x2A), ("b", 0x30, 0x32), ("n", 0x31, 0x31), ("m", 0x32, 0x3A),
    ("comma", 0x33, 0x41), ("dot", 0x34, 0x49), ("slash", 0x35, 0x4A), ("shift_r", 0x36, 0x59),
    ("kp_multiply", 0x37, 0x7C), ("alt", 0x38, 0x11), ("spc", 0x39, 0x29),
    ("caps_lock", 0x3A, 0x58), ("f1", 0x3B, 0x05), ("f2", 0x3C, 0x06), ("f3", 0x3D, 0x04),
    ("f4", 0x3E, 0x0C), ("f5", 0x3F, 0x03), ("f6", 0x40, 0x0B), ("f7", 0x41, 0x83),
    ("f8", 0x42, 0x0A), ("f9", 0x43, 0x01), ("f10", 0x44, 0x09), ("num_lock", 0x45, 0x77),
    ("scroll_lock", 0x46, 0x7E), ("kp_7", 0x47, 0x6C), ("kp_8", 0x48, 0x75),
    ("kp_9", 0x49, 0x7D), ("kp_subtract", 0x4A, 0x7B), ("kp_4", 0x4B, 0x6B),
    ("kp_5", 0x4C, 0x73), ("kp_6", 0x4D, 0x74), ("kp_add", 0x4E, 0x79), ("kp_1", 0x4F, 0x69),
    ("kp_2", 0x50, 0x72), ("kp_3", 0x51, 0x7A), ("kp_0", 0x52, 0x70), ("kp_decimal", 0x53, 0x71),
    ("sysrq", 0x54, 0x84), ("less", 0x56, 0x61), ("f11", 0x57, 0x78), ("f12", 0x58, 0x07),
)
# E0-prefixed keys (set 1 and set 2 both send E0 + base code)
E0_KEYS: tuple[tuple[str, int, int], ...] = (
    ("kp_enter", 0x1C, 0x5A), ("ctrl_r", 0x1D, 0x14), ("kp_divide", 0x35, 0x4A),
    ("alt_r", 0x38, 0x11), ("home", 0x47, 0x6C), ("up", 0x48, 0x75), ("pgup", 0x49, 0x7D),
    ("left", 0x4B, 0x6B), ("right", 0x4D, 0x74), ("end", 0x4F, 0x69), ("down", 0x50, 0x72),
    ("pgdn", 0x51, 0x7A), ("insert", 0x52, 0x70), ("delete", 0x53, 0x71),
    ("meta_l", 0x5B, 0x1F), ("meta_r", 0x5C, 0x27), ("menu", 0x5D, 0x2F),
)
SET1_KEYS: dict[str, int] = {name: s1 for name, s1, _ in KEYS}
SET1_E0_KEYS: dict[str, int] = {name: s1 for name, s1, _ in E0_KEYS}

PREFIX_E0 = 0xE0
PREFIX_E1 = 0xE1
SET2_BREAK = 0xF0  # set 2: F0 precedes the make code of a released key
SET1_BREAK = 0x80  # set 1: a released key is its make code | 80h


def _build_set2_to_set1() -> bytes:
    """The i8042's translation table (set 2 byte -> set 1 byte).

    Every key of `KEYS` and `E0_KEYS` maps to its set-1 code; bytes >= 80h (prefixes, responses
    FA/AA/EE/FE) pass unchanged except 83h (F7), as on the real controller. Set-2 codes no key uses
    pass unchanged too (the real table has arbitrary values there; nothing we emulate sends them).
    """
    table = bytearray(range(256))
    for _, s1, s2 in KEYS + E0_KEYS:
        table[s2] = s1
    table[0x00] = 0xFF  # set-2 overrun/error -> set-1 overrun/error
    return bytes(table)


SET2_TO_SET1 = _build_set2_to_set1()
SET1_TO_SET2 = {s1: s2 for _, s1, s2 in KEYS}
SET1_E0_TO_SET2 = {s1: s2 for _, s1, s2 in E0_KEYS}
SET1_E0_TO_SET2[0x2A] = 0x12  # the fake shifts of PrtSc and of E0 keys under NumLock
SET1_E0_TO_SET2[0x36] = 0x59
SET1_E0_TO_SET2[0x37] = 0x7C  # PrtSc


def set1_to_set2(codes: bytes) -> bytes:
    """Convert a set-1 byte sequence (makes, breaks, E0/E1 prefixes) into set 2."""
    out = bytearray()
    prefix = 0
    for b in codes:
        if b in (PREFIX_E0, PREFIX_E1):
            out.append(b)
            prefix = b
            continue
        base = b & ~SET1_BREAK
        if prefix == PREFIX_E0:
            s2 = SET1_E0_TO_SET2.get(base, SET1_TO_SET2.get(base, base))
        else:
            s2 = SET1_TO_SET2.get(base, base)  # E1 (Pause) uses 1D->14 and 45->77 like plain keys
        if b & SET1_BREAK:
            out.append(SET2_BREAK)
        out.append(s2)
        prefix = 0
    return bytes(out)


# -- the keyboard --------------------------------------------------------------------------------
ACK = 0xFA
BAT_OK = 0xAA  # basic assurance test passed
ECHO = 0xEE
RESEND = 0xFE
KEYBOARD_ID = (0xAB, 0x83)  # MF2 keyboard
OVERRUN = {1: 0xFF, 2: 0x00}

CMD_SET_LEDS = 0xED
CMD_ECHO = 0xEE
CMD_SCANCODE_SET = 0xF0
CMD_IDENTIFY = 0xF2
CMD_TYPEMATIC = 0xF3
CMD_ENABLE = 0xF4
CMD_DISABLE = 0xF5  # also restores defaults
CMD_DEFAULTS = 0xF6
CMD_RESEND = 0xFE
CMD_RESET = 0xFF
SET3_ONLY_COMMANDS = range(0xF7, 0xFE)  # F7-FD: set-3 key type commands, acknowledged and ignored
COMMANDS_WITH_ARGUMENT = (CMD_SET_LEDS, CMD_SCANCODE_SET, CMD_TYPEMATIC)
ARGUMENT_LIMIT = 0x80  # parameters are 00-7Fh; a byte above that while one is awaited is a new command

DEFAULT_TYPEMATIC = 0x2B  # 10.9 characters/s after 500 ms
DEFAULT_SET = 2
SUPPORTED_SETS = (1, 2)
QUEUE_LIMIT = 256  # bytes; a real keyboard buffers 16 keys, the host side may paste more


class Ps2Keyboard:
    """An MF2 keyboard: a byte queue towards the controller and the keyboard command set.

    `notify()` (set by the controller) is called whenever new bytes are queued.
    """

    def __init__(self):
        self.notify: Callable[[], None] = lambda: None
        self.queue: deque[int] = deque()
        self.reset()

    def reset(self) -> None:
        self.queue.clear()
        self._defaults()
        self.scanning = True
        self.leds = 0
        self.pending_cmd: int | None = None
        self.last_sent = BAT_OK

    def _defaults(self) -> None:
        self.scancode_set = DEFAULT_SET
        self.typematic = DEFAULT_TYPEMATIC

    # -- towards the controller ------------------------------------------------------------------
    def has_data(self) -> bool:
        return bool(self.queue)

    def read_byte(self) -> int:
        b = self.queue.popleft()
        self.last_sent = b
        return b

    def _send(self, *data: int) -> None:
        self.queue.extend(data)
        self.notify()

    # -- from the host ---------------------------------------------------------------------------
    def key_set1(self, codes: bytes) -> None:
        """Host keys as set-1 make/break bytes; dropped while scanning is disabled (F5)."""
        if not self.scanning or not codes:
            return
        data = codes if self.scancode_set == 1 else set1_to_set2(codes)
        if len(self.queue) + len(data) > QUEUE_LIMIT:
            if not self.queue or self.queue[-1] != OVERRUN[self.scancode_set]:
                self._send(OVERRUN[self.scancode_set])
            return
        self._send(*data)

    # -- commands from the guest -----------------------------------------------------------------
    def write(self, value: int) -> None:
        """A byte the controller sent to the keyboard (a command or a command's parameter)."""
        if self.pending_cmd is not None and value < ARGUMENT_LIMIT:
            cmd, self.pending_cmd = self.pending_cmd, None
            self._argument(cmd, value)
            return
        self.pending_cmd = None
        # a command makes the keyboard discard what it has not sent yet (PS/2 Tech Ref)
        if value != CMD_RESEND:
            self.queue.clear()
        if value in COMMANDS_WITH_ARGUMENT:
            self.pending_cmd = value
            self._send(ACK)
        elif value == CMD_ECHO:
            self._send(ECHO)
        elif value == CMD_IDENTIFY:
            self._send(ACK, *KEYBOARD_ID)
        elif value == CMD_ENABLE:
            self.scanning = True
            self._send(ACK)
        elif value == CMD_DISABLE:
            self._defaults()
            self.scanning = False
            self._send(ACK)
        elif value == CMD_DEFAULTS:
            self._defaults()
            self._send(ACK)
        elif value == CMD_RESEND:
            self._send(self.last_sent)
        elif value == CMD_RESET:
            self._defaults()
            self.scanning = True
            self.leds = 0
            self._send(ACK, BAT_OK)
        elif value in SET3_ONLY_COMMANDS:
            self._send(ACK)
        else:
            self._send(RESEND)

    def _argument(self, cmd: int, value: int) -> None:
        if cmd == CMD_SET_LEDS:
            self.leds = value & 0x07
            self._send(ACK)
        elif cmd == CMD_TYPEMATIC:
            self.typematic = value & 0x7F
            self._send(ACK)
        elif cmd == CMD_SCANCODE_SET:
            if value == 0:
                self._send(ACK, self.scancode_set)
            elif value in SUPPORTED_SETS:
                self.scancode_set = value
                self._send(ACK)
            else:  # set 3 is not emulated: refuse it, the driver stays with set 2
                self._send(RESEND)

    # -- state -----------------------------------------------------------------------------------
    def state(self) -> dict:
        return {"queue": list(self.queue), "scancode_set": self.scancode_set, "typematic": self.typematic,
                "scanning": self.scanning, "leds": self.leds, "pending_cmd": self.pending_cmd,
                "last_sent": self.last_sent}

    def load_state(self, s: dict) -> None:
        self.queue = deque(s["queue"])
        self.scancode_set, self.typematic = s["scancode_set"], s["typematic"]
        self.scanning, self.leds = s["scanning"], s["leds"]
        self.pending_cmd, self.last_sent = s["pending_cmd"], s["last_sent"]
