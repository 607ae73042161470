"""Host terminal input -> PC keyboard scancodes (set 1 make/break sequences, US layout).

A raw-mode terminal sends bytes: ASCII characters, control characters for Ctrl+letter, and escape
sequences (xterm/VT220/Linux console) for cursor, editing and function keys. `decode(buffer)` takes
the whole buffer read at once and returns one set-1 sequence per keystroke, each complete with its
modifiers pressed and released around it. A lone ESC (at the end of the buffer, or followed by
another ESC) is the Esc key; ESC followed by an ordinary character is Alt+that character.

Keys come from the scancode table in `emu.devices.ps2kbd`; E0-prefixed keys (arrows, Home, End,
PgUp/PgDn, Ins, Del) get their E0 prefix on both make and break, as set 1 defines.
"""

from __future__ import annotations

from emu.devices.ps2kbd import PREFIX_E0, SET1_BREAK, SET1_E0_KEYS, SET1_KEYS

ESC = 0x1B
DEL = 0x7F
BS = 0x08
TAB = 0x09
LF = 0x0A
CR = 0x0D
CSI_INTRO = ord("[")
SS3_INTRO = ord("O")

MOD_SHIFT, MOD_ALT, MOD_CTRL = 1, 2, 4  # xterm modifier parameter = 1 + these bits
MODIFIER_KEYS = ((MOD_CTRL, "ctrl"), (MOD_ALT, "alt"), (MOD_SHIFT, "shift"))

# printable ASCII -> (key, shifted?) on a US keyboard
_UNSHIFTED = {
    "`": "grave", "-": "minus", "=": "equal", "[": "bracketleft", "]": "bracketright",
    "\\": "backslash", ";": "semicolon", "'": "apostrophe", ",": "comma", ".": "dot", "/": "slash",
    " ": "spc",
}
_SHIFTED = {
    "~": "grave", "!": "1", "@": "2", "#": "3", "$": "4", "%": "5", "^": "6", "&": "7", "*": "8",
    "(": "9", ")": "0", "_": "minus", "+": "equal", "{": "bracketleft", "}": "bracketright",
    "|": "backslash", ":": "semicolon", '"': "apostrophe", "<": "comma", ">": "dot", "?": "slash",
}
ASCII_KEYS: dict[int, tuple[str, bool]] = {}
for _c in "abcdefghijklmnopqrstuvwxyz0123456789":
    ASCII_KEYS[ord(_c)] = (_c, False)
for _c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ":
    ASCII_KEYS[ord(_c)] = (_c.lower(), True)
for _c, _k in _UNSHIFTED.items():
    ASCII_KEYS[ord(_c)] = (_k, False)
for _c, _k in _SHIFTED.items():
    ASCII_KEYS[ord(_c)] = (_k, True)

# control characters that are keys of their own, before the Ctrl+letter rule
CONTROL_KEYS = {CR: "enter", LF: "enter", TAB: "tab", BS: "backspace", DEL: "backspace"}
# Ctrl+symbol: 00 = Ctrl+@ (Ctrl+2), 1C-1F = Ctrl+\ ] ^ _
CTRL_SYMBOLS = {0x00: ("2", MOD_CTRL), 0x1C: ("backslash", MOD_CTRL), 0x1D: ("bracketright", MOD_CTRL),
                0x1E: ("6", MOD_CTRL | MOD_SHIFT), 0x1F: ("minus", MOD_CTRL | MOD_SHIFT)}

# CSI final letters (ESC [ x / ESC O x)
CSI_LETTER_KEYS = {"A": "up", "B": "down", "C": "right", "D": "left", "H": "home", "F": "end",
                   "P": "f1", "Q": "f2", "R": "f3", "S": "f4", "E": "kp_5"}
# ESC [ n ~
CSI_TILDE_KEYS = {1: "home", 2: "insert", 3: "delete", 4: "end", 5: "pgup", 6: "pgdn", 7: "home",
                  8: "end", 11: "f1", 12: "f2", 13: "f3", 14: "f4", 15: "f5", 17: "f6", 18: "f7",
                  19: "f8", 20: "f9", 21: "f10", 23: "f11", 24: "f12"}
# Linux console: ESC [ [ A-E = F1-F5
LINUX_FKEYS = {"A": "f1", "B": "f2", "C": "f3", "D": "f4", "E": "f5"}


def key_make(name: str) -> bytes:
    if name in SET1_E0_KEYS:
        return bytes((PREFIX_E0, SET1_E0_KEYS[name]))
    return bytes((SET1_KEYS[name],))


def key_break(name: str) -> bytes:
    if name in SET1_E0_KEYS:
        return bytes((PREFIX_E0, SET1_E0_KEYS[name] | SET1_BREAK))
    return bytes((SET1_KEYS[name] | SET1_BREAK,))


def keystroke(name: str, mods: int = 0) -> bytes:
    """Press and release `name` with modifiers held around it (Ctrl, Alt, Shift order)."""
    held = [k for bit, k in MODIFIER_KEYS if mods & bit]
    out = b"".join(key_make(k) for k in held) + key_make(name) + key_break(name)
    return out + b"".join(key_break(k) for k in reversed(held))


def _byte_key(b: int) -> tuple[str, int] | None:
    """A single byte as (key, modifiers), or None if it has no key (non-ASCII)."""
    if b in CONTROL_KEYS:
        return CONTROL_KEYS[b], 0
    if b == ESC:
        return "esc", 0
    if b in CTRL_SYMBOLS:
        return CTRL_SYMBOLS[b]
    if 0x01 <= b <= 0x1A:
        return chr(ord("a") + b - 1), MOD_CTRL
    if b in ASCII_KEYS:
        key, shifted = ASCII_KEYS[b]
        return key, MOD_SHIFT if shifted else 0
    return None


def _modifier_param(params: list[int]) -> int:
    """xterm's `;m` parameter: m = 1 + shift|alt|ctrl bits."""
    if len(params) >= 2 and params[1] >= 1:
        return (params[1] - 1) & (MOD_SHIFT | MOD_ALT | MOD_CTRL)
    return 0


def _parse_escape(buf: bytes, i: int) -> tuple[tuple[str, int] | None, int]:
    """At buf[i] == ESC: returns ((key, mods) or None for an unknown sequence, next index)."""
    n = len(buf)
    if i + 1 >= n or buf[i + 1] == ESC:
        return ("esc", 0), i + 1
    intro = buf[i + 1]
    if intro in (CSI_INTRO, SS3_INTRO) and i + 2 < n:
        j = i + 2
        if intro == CSI_INTRO and buf[j] == CSI_INTRO and j + 1 < n:  # Linux console F1-F5
            key = LINUX_FKEYS.get(chr(buf[j + 1]))
            return ((key, 0) if key else None), j + 2
        start = j
        while j < n and (0x30 <= buf[j] <= 0x3F):  # parameter bytes: digits ; etc.
            j += 1
        while j < n and (0x20 <= buf[j] <= 0x2F):  # intermediate bytes
            j += 1
        if j >= n:
            return None, n  # truncated sequence: dropped
        final = chr(buf[j])
        try:
            params = [int(p) if p else 0 for p in buf[start:j].decode("ascii").split(";")]
        except ValueError:
            params = []
        mods = _modifier_param(params)
        if final == "~" and params and params[0] in CSI_TILDE_KEYS:
            return (CSI_TILDE_KEYS[params[0]], mods), j + 1
        if final in CSI_LETTER_KEYS:
            return (CSI_LETTER_KEYS[final], mods), j + 1
        if final == "Z":  # back-tab
            return ("tab", MOD_SHIFT), j + 1
        return None, j + 1
    key = _byte_key(intro)  # ESC x: Alt+x (also ESC [ / ESC O at the end of the buffer)
    if key is None:
        return None, i + 2
    return (key[0], key[1] | MOD_ALT), i + 2


def decode(buffer: bytes) -> list[bytes]:
    """The keystrokes in one terminal read, each as a set-1 make...break sequence."""
    out: list[bytes] = []
    i, n = 0, len(buffer)
    while i < n:
        b = buffer[i]
        if b == ESC:
            key, i = _parse_escape(buffer, i)
        else:
            key = _byte_key(b)
            i += 1
        if key is not None:
            out.append(keystroke(*key))
    return out


def scancodes(buffer: bytes) -> bytes:
    """`decode` flattened: the set-1 bytes to hand to the keyboard (`I8042.key_set1`)."""
    return b"".join(decode(buffer))
