"""INT 09h's translation: set-1 scancodes to the BIOS's (scancode << 8 | ASCII) key words.

The shift-state bits live in BDA 40:17 (right shift, left shift, ctrl, alt, scroll, num, caps,
insert) as on the IBM PC/AT. Keys without an ASCII code (arrows, function keys) give ASCII 0 and
their scancode, or the extended codes that the PC/AT BIOS uses for shifted/ctrl/alt function keys.
"""

from __future__ import annotations

RSHIFT, LSHIFT, CTRL, ALT = 0x01, 0x02, 0x04, 0x08
SCROLL_LOCK, NUM_LOCK, CAPS_LOCK, INSERT = 0x10, 0x20, 0x40, 0x80

SC_LSHIFT, SC_RSHIFT, SC_CTRL, SC_ALT = 0x2A, 0x36, 0x1D, 0x38
SC_CAPS, SC_NUM, SC_SCROLL, SC_INSERT = 0x3A, 0x45, 0x46, 0x52
EXTENDED_PREFIX = 0xE0
BREAK_BIT = 0x80

_ROWS = (
    (0x02, "1234567890-=", "!@#$%^&*()_+"),
    (0x10, "qwertyuiop[]", "QWERTYUIOP{}"),
    (0x1E, "asdfghjkl;'`", 'ASDFGHJKL:"~'),
    (0x2B, "\\zxcvbnm,./", "|ZXCVBNM<>?"),
)
NORMAL: dict[int, int] = {0x01: 0x1B, 0x0E: 0x08, 0x0F: 0x09, 0x1C: 0x0D, 0x39: 0x20, 0x37: ord("*"),
                          0x4A: ord("-"), 0x4E: ord("+")}
SHIFTED: dict[int, int] = {0x01: 0x1B, 0x0E: 0x08, 0x0F: 0x00, 0x1C: 0x0D, 0x39: 0x20, 0x37: ord("*"),
                           0x4A: ord("-"), 0x4E: ord("+")}
for _first, _lo, _hi in _ROWS:
    for _i, (_a, _b) in enumerate(zip(_lo, _hi, strict=True)):
        NORMAL[_first + _i] = ord(_a)
        SHIFTED[_first + _i] = ord(_b)
LETTERS = {sc for sc, a in NORMAL.items() if ord("a") <= a <= ord("z")}
KEYPAD_DIGITS = {0x47: "7", 0x48: "8", 0x49: "9", 0x4B: "4", 0x4C: "5", 0x4D: "6", 0x4F: "1", 0x50: "2",
                 0x51: "3", 0x52: "0", 0x53: "."}
F1, F10, F11, F12 = 0x3B, 0x44, 0x57, 0x58


def translate(sc: int, flags: int, extended: bool = False) -> int | None:
    """The key word for a make code, or None for keys that only change state."""
    shift = bool(flags & (LSHIFT | RSHIFT))
    if F1 <= sc <= F10:
        n = sc - F1
        if flags & ALT:
            return (0x68 + n) << 8
        if flags & CTRL:
            return (0x5E + n) << 8
        if shift:
            return (0x54 + n) << 8
        return sc << 8
    if sc in (F11, F12):
        base = 0x85 + (sc - F11)
        if flags & ALT:
            base += 6
        elif flags & CTRL:
            base += 4
        elif shift:
            base += 2
        return base << 8
    if sc in KEYPAD_DIGITS:
        if not extended and bool(flags & NUM_LOCK) != shift:
            return (sc << 8) | ord(KEYPAD_DIGITS[sc])
        if extended:
            return (sc << 8) | 0xE0
        return sc << 8
    if sc not in NORMAL:
        return None
    if flags & ALT:
        return sc << 8
    if flags & CTRL:
        a = NORMAL[sc]
        if sc in LETTERS:
            return (sc << 8) | (a - ord("a") + 1)
        ctrl_map = {ord("["): 0x1B, ord("\\"): 0x1C, ord("]"): 0x1D, 0x0D: 0x0A, 0x08: 0x7F}
        if a in ctrl_map:
            return (sc << 8) | ctrl_map[a]
        if sc == 0x03:  # Ctrl-2: NUL
            return 0x0300
        return None
    upper = shift
    if sc in LETTERS and flags & CAPS_LOCK:
        upper = not upper
    a = SHIFTED[sc] if upper else NORMAL[sc]
    if sc == 0x0F and shift:
        return 0x0F00  # back-tab
    return (sc << 8) | a
