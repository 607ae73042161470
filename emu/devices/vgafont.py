"""pyemu's own ROM fonts for code page 437: 8x16, 8x14 and 8x8, drawn here and generated from structure.

Nothing here is copied from another font. The glyphs come from four sources:

- `_MASTER`: the text characters (ASCII 21h-7Eh, the Greek and currency letters, ª º ½ ¼ « » and
  friends) drawn once on a 6-column, 12-row grid that sits at columns 1-6 and rows 3-14 of the
  8x16 cell: capitals and digits on rows 0-8 of the grid, lower case from row 2, descenders on rows
  9-11. One-pixel strokes.
- `_SYMBOLS`: the pictures (smileys, suits, arrows, maths signs) drawn on the full 8x8 cell; the
  8x16 versions double each row.
- generated: box drawing (B3h-DAh) from the Unicode names of the characters (which arms, single or
  double), the shades and blocks from their coverage, accented letters from a base letter and a
  mark, mirror images (◄ from ►, ¿ from ?).
- the 8x8 glyphs of the master set are derived by dropping repeated rows (a straight stroke loses
  a row before a curve does), the 8x14 font is the 8x16 one without its top and bottom rows.

Each font is `bytes` of 256 glyphs, one byte per row, bit 7 = the leftmost pixel, as the VGA's
plane 2 and INT 10h AX=1130h hold them.
"""

from __future__ import annotations

import unicodedata

from emu.devices.cp437 import CP437

CELL_WIDTH = 8
HEIGHTS = (8, 14, 16)
MASTER_TOP = 3  # font row of grid row 0 in the 8x16 cell
MASTER_COLUMN = 1  # cell column of grid column 0
CAPS_ROWS = 9  # grid rows 0-8: capital height; 9-11: descenders
DESC_ROWS = 3
ROWS8_CAPS = 7  # 8x8: rows 0-6 above the baseline, row 7 for descenders
LOWER_MARK_ROW16 = 2  # marks over lower-case letters in the 8x16 cell
UPPER_MARK_ROW16 = 0  # marks over capitals
CEDILLA_ROW16 = 12
CEDILLA_ROW8 = 7
MID_ROW = {8: 3, 16: 7}  # box drawing: the row of a single horizontal line
MID_COL = 3  # ... and the column of a single vertical line

# the text characters, 6 columns x up to 12 rows (missing rows are blank)
_MASTER = r"""
!"#$%&'(
..#... .#..#. ...... ..#... ...... .##... ..#... ...#..
..#... .#..#. .#..#. .####. ##...# #..#.. ..#... ..#...
..#... .#..#. .#..#. #.#... ##..#. #..#.. ..#... .#....
..#... ...... ###### #.#... ...#.. .##... ...... .#....
..#... ...... .#..#. .###.. ..#... .#.... ...... .#....
..#... ...... ###### ..#.#. .#.... #.#..# ...... .#....
...... ...... .#..#. ..#.#. #..##. #..##. ...... .#....
..#... ...... .#..#. ####.. ...##. #...#. ...... ..#...
..#... ...... ...... ..#... ...... .###.# ...... ...#..

)*+,-./0
.#.... ...... ...... ...... ...... ...... ....#. .####.
..#... ...... ...... ...... ...... ...... ....#. #....#
...#.. .#..#. ..#... ...... ...... ...... ...#.. #....#
...#.. ..##.. ..#... ...... ...... ...... ...#.. #....#
...#.. ###### #####. ...... #####. ...... ..#... #.##.#
...#.. ..##.. ..#... ...... ...... ...... .#.... #....#
...#.. .#..#. ..#... ...... ...... ...... .#.... #....#
..#... ...... ...... ..##.. ...... ..##.. #..... #....#
.#.... ...... ...... ..##.. ...... ..##.. #..... .####.
...... ...... ...... ...#.. ...... ...... ...... ......
...... ...... ...... ..#... ...... ...... ...... ......

12345678
..#... .####. .####. ....#. ###### ..###. ###### .####.
.##... #....# #....# ...##. #..... .#.... .....# #....#
#.#... .....# .....# ..#.#. #..... #..... ....#. #....#
..#... ....#. .....# .#..#. #####. #..... ....#. #....#
..#... ...#.. ..###. #...#. .....# #####. ...#.. .####.
..#... ..#... .....# ###### .....# #....# ...#.. #....#
..#... .#.... .....# ....#. .....# #....# ..#... #....#
..#... #..... #....# ....#. #....# #....# ..#... #....#
#####. ###### .####. ....#. .####. .####. ..#... .####.

9:;<=>?@
.####. ...... ...... ...... ...... ...... .####. .####.
#....# ...... ...... ....#. ...... .#.... #....# #....#
#....# ..##.. ..##.. ...#.. ...... ..#... .....# #..###
#....# ..##.. ..##.. ..#... ###### ...#.. ....#. #.#..#
.##### ...... ...... .#.... ...... ....#. ...#.. #.#..#
.....# ...... ...... ..#... ###### ...#.. ..#... #.#..#
.....# ...... ...... ...#.. ...... ..#... ...... #..###
....#. ..##.. ..##.. ....#. ...... .#.... ..#... #.....
.###.. ..##.. ..##.. ...... ...... ...... ..#... .#####
...... ...... ...#.. ...... ...... ...... ...... ......
...... ...... ..#... ...... ...... ...... ...... ......

ABCDEFGH
..##.. #####. .####. ####.. ###### ###### .####. #....#
.#..#. #....# #....# #...#. #..... #..... #....# #....#
#....# #....# #..... #....# #..... #..... #..... #....#
#....# #....# #..... #....# #..... #..... #..... #....#
#....# #####. #..... #....# #####. #####. #..### ######
###### #....# #..... #....# #..... #..... #....# #....#
#....# #....# #..... #....# #..... #..... #....# #....#
#....# #....# #....# #...#. #..... #..... #...## #....#
#....# #####. .####. ####.. ###### #..... .###.# #....#

IJKLMNOP
.###.. ...### #....# #..... #....# #....# .####. #####.
..#... ....#. #...#. #..... ##..## ##...# #....# #....#
..#... ....#. #..#.. #..... #.##.# #.#..# #....# #....#
..#... ....#. #.#... #..... #.##.# #.#..# #....# #....#
..#... ....#. ##.... #..... #....# #..#.# #....# #####.
..#... ....#. #.#... #..... #....# #..#.# #....# #.....
..#... ....#. #..#.. #..... #....# #...## #....# #.....
..#... #...#. #...#. #..... #....# #....# #....# #.....
.###.. .###.. #....# ###### #....# #....# .####. #.....

QRSTUVWX
.####. #####. .####. #####. #....# #....# #....# #....#
#....# #....# #....# ..#... #....# #....# #....# .#..#.
#....# #....# #..... ..#... #....# #....# #....# .#..#.
#....# #....# #..... ..#... #....# #....# #....# ..##..
#....# #####. .####. ..#... #....# .#..#. #....# ..##..
#....# #..#.. .....# ..#... #....# .#..#. #.##.# ..##..
#..#.# #...#. .....# ..#... #....# .#..#. #.##.# .#..#.
#...#. #....# #....# ..#... #....# ..##.. ##..## .#..#.
.###.# #....# .####. ..#... .####. ..##.. #....# #....#

YZ[\]^_`
#...#. ###### .###.. #..... .###.. ..#... ...... .#....
#...#. .....# .#.... #..... ...#.. .#.#.. ...... ..#...
.#.#.. ....#. .#.... .#.... ...#.. #...#. ...... ......
.#.#.. ...#.. .#.... .#.... ...#.. ...... ...... ......
..#... ..#... .#.... ..#... ...#.. ...... ...... ......
..#... .#.... .#.... ...#.. ...#.. ...... ...... ......
..#... #..... .#.... ...#.. ...#.. ...... ...... ......
..#... #..... .#.... ....#. ...#.. ...... ...... ......
..#... ###### .#.... ....#. ...#.. ...... ...... ......
...... ...... .###.. ...... .###.. ...... ...... ......
...... ...... ...... ...... ...... ...... ###### ......

abcdefgh
...... #..... ...... .....# ...... ...##. ...... #.....
...... #..... ...... .....# ...... ..#... ...... #.....
.####. #.###. .####. .###.# .####. #####. .###.# #.###.
.....# ##...# #....# #...## #....# ..#... #...## ##...#
.##### #....# #..... #....# #....# ..#... #....# #....#
#....# #....# #..... #....# ###### ..#... #....# #....#
#....# #....# #..... #....# #..... ..#... #....# #....#
#...## ##...# #....# #...## #....# ..#... #...## #....#
.###.# #.###. .####. .###.# .####. ..#... .###.# #....#
...... ...... ...... ...... ...... ...... .....# ......
...... ...... ...... ...... ...... ...... .####. ......

ijklmnop
..#... ....#. #..... .##... ...... ...... ...... ......
...... ...... #..... ..#... ...... ...... ...... ......
.##... ...##. #...#. ..#... ##.#.. #.###. .####. #.###.
..#... ....#. #..#.. ..#... #.#.#. ##...# #....# ##...#
..#... ....#. #.#... ..#... #.#.#. #....# #....# #....#
..#... ....#. ##.... ..#... #.#.#. #....# #....# #....#
..#... ....#. #.#... ..#... #.#.#. #....# #....# #....#
..#... ....#. #..#.. ..#... #.#.#. #....# #....# ##...#
.###.. ....#. #...#. .###.. #.#.#. #....# .####. #.###.
...... #...#. ...... ...... ...... ...... ...... #.....
...... .###.. ...... ...... ...... ...... ...... #.....

qrstuvwx
...... ...... ...... ..#... ...... ...... ...... ......
...... ...... ...... ..#... ...... ...... ...... ......
.###.# #.###. .####. #####. #....# #....# #....# #....#
#...## ##...# #....# ..#... #....# #....# #....# .#..#.
#....# #..... #..... ..#... #....# #....# #....# ..##..
#....# #..... .####. ..#... #....# .#..#. #....# ..##..
#....# #..... .....# ..#... #....# .#..#. #.##.# ..##..
#...## #..... #....# ..#..# #...## ..##.. #.##.# .#..#.
.###.# #..... .####. ...##. .###.# ..##.. .#..#. #....#
.....# ...... ...... ...... ...... ...... ...... ......
.....# ...... ...... ...... ...... ...... ...... ......

yz{|}~æÆ
...... ...... ...##. ..#... .##... ...... ...... .#####
...... ...... ..#... ..#... ...#.. ...... ...... #..#..
#....# ###### ..#... ..#... ...#.. ...... ##.##. #..#..
#....# ....#. ..#... ..#... ...#.. .##..# ..#..# #..#..
#....# ...#.. .#.... ..#... ....#. #..##. .##### ######
#....# ..#... ..#... ..#... ...#.. ...... #.#... #..#..
#....# .#.... ..#... ..#... ...#.. ...... #.#... #..#..
#...## #..... ..#... ..#... ...#.. ...... #.#..# #..#..
.###.# ###### ...##. ..#... .##... ...... .#.##. #..###
.....# ...... ...... ..#... ...... ...... ...... ......
.####. ...... ...... ..#... ...... ...... ...... ......

¢£¥₧ƒªº½
..#... ..###. #...#. ###... ....## .###.. .###.. .#....
..#... .#...# #...#. #..#.. ...#.. ....#. #...#. ##....
.####. .#.... .#.#.. #..#.. ...#.. .####. #...#. .#...#
#.#... .#.... ..#... ###.#. .####. #...#. #...#. .#..#.
#.#... ####.. #####. #..### ...#.. .####. .###.. ...#..
#.#... .#.... ..#... #...#. ...#.. ...... ...... ..#...
#.#... .#.... #####. #...#. ...#.. #####. #####. .#.##.
.####. .#.... ..#... #...#. ...#.. ...... ...... #.#..#
..#... ###### ..#... #....# ...#.. ...... ...... ....#.
...... ...... ...... ...... ...#.. ...... ...... ...#..
...... ...... ...... ...... .##... ...... ...... ..####

¼«αßΓπΣσ
.#.... ...... ...... .###.. ###### ...... ###### ......
##.... ...... ...... #...#. #..... ...... #..... ......
.#...# ..#..# .###.# #...#. #..... ###### .#.... .#####
.#..#. .#..#. #...#. #..#.. #..... .#..#. ..#... #...#.
...#.. #..#.. #...#. #.##.. #..... .#..#. ...#.. #....#
..#... .#..#. #...#. #...#. #..... .#..#. ..#... #....#
.#..#. ..#..# #...#. #....# #..... .#..#. .#.... #....#
#..##. ...... #...#. #....# #..... .#..#. #..... #....#
..#.#. ...... .###.# #.###. #..... .#..#. ###### .####.
..#### ...... ...... #..... ...... ...... ...... ......
....#. ...... ...... #..... ...... ...... ...... ......

µτΦΘΩδ∞φ
...... ...... ..#... .####. .####. ..###. ...... ......
...... ...... .###.. #....# #....# .#.... ...... ..#...
#....# .##### #.#.#. #....# #....# ..#... ...... ..#...
#....# #..#.. #.#.#. #....# #....# .###.. .#..#. .###..
#....# ...#.. #.#.#. ###### #....# #...#. #.##.# #.#.#.
#....# ...#.. #.#.#. #....# .#..#. #...#. #.##.# #.#.#.
#....# ...#.. #.#.#. #....# .#..#. #...#. .#..#. #.#.#.
##..## ...#.. .###.. #....# .#..#. #...#. ...... .###..
#.##.# ....## ..#... .####. ##..## .###.. ...... ..#...
#..... ...... ...... ...... ...... ...... ...... ..#...
#..... ...... ...... ...... ...... ...... ...... ......

ε∩⌐
...... ...... ......
...... .####. ......
.####. #....# ......
#..... #....# ......
#..... #....# ######
####.. #....# #.....
#..... #....# #.....
#..... #....# ......
.####. #....# ......
"""

# the pictures, 8x8 (rows doubled for 8x16)
_SYMBOLS = r"""
☺☻♥♦♣♠•○
.######. .######. .##..##. ...##... ...#.... ...#.... ........ ........
#......# ######## ######## ..####.. ..###... ..###... ........ ..####..
#.#..#.# ##.##.## ######## .######. ..###... .#####.. ...##... .##..##.
#......# ######## ######## ######## ##.#.##. #######. ..####.. .#....#.
#.####.# ##....## .######. .######. #######. #######. ..####.. .#....#.
#..##..# ###..### ..####.. ..####.. ##.#.##. ##.#.##. ...##... .##..##.
#......# ######## ...##... ...##... ...#.... ...#.... ........ ..####..
.######. .######. ........ ........ ..###... ..###... ........ ........

♂♀♪♫☼►↕‼
....#### ..###... ...###.. .######. ...#.... #....... ...#.... .#..#...
......## .#...#.. ...#.##. .#....#. .#.#.#.. ###..... ..###... .#..#...
.....#.# .#...#.. ...#..#. .######. ..###... #####... .#.#.#.. .#..#...
..###..# .#...#.. ...#.... .#....#. ###.###. #######. ...#.... .#..#...
.#...#.. ..###... ...#.... .#....#. ..###... #####... .#.#.#.. .#..#...
.#...#.. ...#.... .###.... .#...##. .#.#.#.. ###..... ..###... ........
.#...#.. .#####.. ####.... ##..###. ...#.... #....... ...#.... .#..#...
..###... ...#.... .##..... ##...#.. ........ ........ ........ ........

¶§▬↨↑→∟↔
.######. ..####.. ........ ...#.... ...#.... ........ ........ ........
#..#.#.. .#...... ........ ..###... ..###... ....#... ........ ..#..#..
#..#.#.. ..###... ........ .#.#.#.. .#.#.#.. .....#.. #....... .#....#.
.###.#.. .#...#.. ........ ...#.... ...#.... #######. #....... ########
...#.#.. ..###... #######. .#.#.#.. ...#.... .....#.. #....... .#....#.
...#.#.. .....#.. #######. ..###... ...#.... ....#... #######. ..#..#..
...#.#.. .####... #######. ...#.... ...#.... ........ ........ ........
........ ........ ........ .#####.. ........ ........ ........ ........

▲⌂≡±≥⌠⌡÷
........ ...#.... ........ ...#.... #....... ....##.. ...#.... ........
........ ..#.#... #######. ...#.... .##..... ...#..#. ...#.... ...#....
...#.... .#...#.. ........ #######. ...##... ...#.... ...#.... ........
..###... #.....#. #######. ...#.... .##..... ...#.... ...#.... #######.
.#####.. #.....#. ........ ...#.... #....... ...#.... ...#.... ........
#######. #.....#. #######. ........ ........ ...#.... #..#.... ...#....
........ #######. ........ #######. #####... ...#.... .##..... ........
........ ........ ........ ........ ........ ...#.... ........ ........

≈°∙·√ⁿ²■
........ ..##.... ........ ........ .....### #.##.... .##..... ........
.##..#.. .#..#... ........ ........ .....#.. .#..#... #..#.... ........
#..##... ..##.... ........ ........ .....#.. .#..#... ..#..... ..####..
........ ........ ...##... ........ .....#.. .#..#... .#...... ..####..
.##..#.. ........ ...##... ...#.... #...#... ........ ####.... ..####..
#..##... ........ ........ ........ .#..#... ........ ........ ..####..
........ ........ ........ ........ ..##.... ........ ........ ........
........ ........ ........ ........ ...#.... ........ ........ ........
"""

# (mirror-image or upside-down source, how): generated from a drawn glyph
_MIRRORS = {"◄": ("►", "h7"), "←": ("→", "h7"), "≤": ("≥", "h6"), "»": ("«", "h6"), "¬": ("⌐", "h6"),
            "↓": ("↑", "v7"), "▼": ("▲", "v8"), "¿": ("?", "r"), "¡": ("!", "r")}
_INVERSES = {"◘": "•", "◙": "○"}

# accent marks: 8x16 rows (6 columns) and the 8x8 rows over lower case / over capitals (one row)
_MARKS16 = {"acute": ("....#.", "...#.."), "grave": (".#....", "..#..."), "circ": ("..##..", ".#..#."),
            "diaer": ("......", ".#..#."), "ring": ("..##..", ".#..#.", "..##.."), "tilde": (".##..#", "#..##.")}
_MARKS8 = {"acute": ("....#.", "...#.."), "grave": (".#....", "..#..."), "circ": ("..##..", ".#..#."),
           "diaer": (".#..#.", "......"), "ring": ("..##..", ".#..#."), "tilde": (".##..#", "#..##.")}
_MARKS8_CAPS = {"acute": "...#..", "diaer": ".#..#.", "ring": "..##..", "tilde": ".##.##"}
_CEDILLA16 = ("..#...", ".##...")
_CEDILLA8 = "..##.."
_ACCENTED = {
    "Ç": ("C", "cedilla"), "ü": ("u", "diaer"), "é": ("e", "acute"), "â": ("a", "circ"), "ä": ("a", "diaer"),
    "à": ("a", "grave"), "å": ("a", "ring"), "ç": ("c", "cedilla"), "ê": ("e", "circ"), "ë": ("e", "diaer"),
    "è": ("e", "grave"), "ï": ("ı", "diaer"), "î": ("ı", "circ"), "ì": ("ı", "grave"), "Ä": ("A", "diaer"),
    "Å": ("A", "ring"), "É": ("E", "acute"), "ô": ("o", "circ"), "ö": ("o", "diaer"), "ò": ("o", "grave"),
    "û": ("u", "circ"), "ù": ("u", "grave"), "ÿ": ("y", "diaer"), "Ö": ("O", "diaer"), "Ü": ("U", "diaer"),
    "á": ("a", "acute"), "í": ("ı", "acute"), "ó": ("o", "acute"), "ú": ("u", "acute"), "ñ": ("n", "tilde"),
    "Ñ": ("N", "tilde"),
}

# 8x8 glyphs where dropping rows from the 8x16 design does not read well, drawn directly
_OVERRIDES8 = r"""
Ss
.####. ......
#....# ......
#..... .####.
.####. #.....
.....# .####.
#....# .....#
.####. #####.
...... ......
"""


# -- parsing -------------------------------------------------------------------------------------------
def _parse(text: str) -> dict[str, list[str]]:
    """Blocks of glyphs side by side: a line naming the characters, then their rows."""
    out: dict[str, list[str]] = {}
    for block in text.strip("\n").split("\n\n"):
        lines = block.split("\n")
        chars, rows = lines[0], [line.split() for line in lines[1:]]
        for i, ch in enumerate(chars):
            out[ch] = [r[i] for r in rows]
    return out


def _bits(row: str, column: int = 0) -> int:
    """'.#..' -> a byte with bit 7 = cell column 0, the art starting at `column`."""
    value = 0
    for i, c in enumerate(row):
        if c == "#":
            value |= 0x80 >> (column + i)
    return value


def _popcount(v: int) -> int:
    return bin(v).count("1")


# -- the master set and its smaller sizes ----------------------------------------------------------------
def _master16(art: list[str]) -> list[int]:
    rows = [0] * 16
    for i, r in enumerate(art):
        rows[MASTER_TOP + i] = _bits(r, MASTER_COLUMN)
    return rows


def _drop_one(rows: list[int], keep_top: int) -> None:
    """Remove the row whose loss changes the picture least: a repeated stroke row, else a blank row
    beside another blank, else the row closest to a neighbour. Rows above `keep_top` stay."""
    n = len(rows)

    def run_length(i: int) -> int:
        a = b = i
        while a > 0 and rows[a - 1] == rows[i]:
            a -= 1
        while b < n - 1 and rows[b + 1] == rows[i]:
            b += 1
        return b - a + 1

    repeats = [i for i in range(max(1, keep_top), n) if rows[i] and rows[i] == rows[i - 1]]
    if repeats:
        best = max(repeats, key=run_length)  # the first of the longest runs
        rows.pop(best)
        return
    blanks = [i for i in range(keep_top, n) if not rows[i]
              and ((i > 0 and not rows[i - 1]) or (i < n - 1 and not rows[i + 1]))]
    if blanks:
        rows.pop(max(blanks, key=run_length))
        return

    def distance(i: int) -> int:
        near = [rows[j] for j in (i - 1, i + 1) if 0 <= j < n]
        return min(_popcount(rows[i] ^ r) for r in near)

    rows.pop(min(range(max(1, keep_top), n), key=lambda i: (distance(i), -i)))


def _squeeze(rows: list[int], count: int, keep_top: int) -> list[int]:
    rows = list(rows)
    while len(rows) > count:
        _drop_one(rows, keep_top)
    return rows


def _derive8(g16: list[int]) -> list[int]:
    """8x16 master glyph -> 8x8: capital height 9 -> 7 rows (rows 0-1 kept, so the x-height stays
    on row 2), the three descender rows merged into row 7."""
    caps = g16[MASTER_TOP: MASTER_TOP + CAPS_ROWS]
    desc = 0
    for r in g16[MASTER_TOP + CAPS_ROWS: MASTER_TOP + CAPS_ROWS + DESC_ROWS]:
        desc |= r
    return _squeeze(caps, ROWS8_CAPS, keep_top=2) + [desc]


def _symbol(art: list[str]) -> list[int]:
    return [_bits(r) for r in art]


def _double(rows8: list[int]) -> list[int]:
    return [r for r in rows8 for _ in range(2)]


def _mirror(rows: list[int], width: int, column: int) -> list[int]:
    """Flip each row left-right inside `width` columns starting at cell column `column`."""
    out = []
    for r in rows:
        v = 0
        for i in range(width):
            if r & (0x80 >> (column + i)):
                v |= 0x80 >> (column + width - 1 - i)
        out.append(v)
    return out


# -- generated glyphs --------------------------------------------------------------------------------
_WEIGHTS = {"LIGHT": 1, "SINGLE": 1, "DOUBLE": 2}
_ARMS = {"UP": ("up",), "DOWN": ("down",), "LEFT": ("left",), "RIGHT": ("right",),
         "VERTICAL": ("up", "down"), "HORIZONTAL": ("left", "right")}


def box_arms(ch: str) -> dict[str, int]:
    """'╡' -> {'up': 1, 'down': 1, 'left': 2, 'right': 0}, read from the character's Unicode name."""
    name = unicodedata.name(ch).removeprefix("BOX DRAWINGS ")
    parts = [p.split() for p in name.split(" AND ")]
    weights = [next((_WEIGHTS[w] for w in p if w in _WEIGHTS), 0) for p in parts]
    default = max(weights)
    arms = {"up": 0, "down": 0, "left": 0, "right": 0}
    for words, weight in zip(parts, weights, strict=True):
        for w in words:
            for arm in _ARMS.get(w, ()):
                arms[arm] = weight or default
    return arms


_ACROSS = {"up": ("left", "right"), "down": ("left", "right"), "left": ("up", "down"), "right": ("up", "down")}


def _box_lines(arms: dict[str, int], arm: str, height: int) -> list[int]:
    """Cross positions of an arm's lines: one through the middle, or two one pixel either side."""
    mid = MID_ROW[height] if arm in ("left", "right") else MID_COL
    return {0: [], 1: [mid], 2: [mid - 1, mid + 1]}[arms[arm]]


def _box_stop(arms: dict[str, int], arm: str, facing: str | None, height: int) -> int:
    """Where a line of `arm` ends, along the arm: at the nearest line of the arm it faces; with no
    arm on that side, at the farthest line across (so an outer corner closes); a single line meets
    a straight double crossing at its near line; with nothing across, at the middle."""
    from_start = arm in ("up", "left")  # the arm starts at coordinate 0
    present = [s for s in _ACROSS[arm] if arms[s]]
    across = sorted(x for s in present for x in _box_lines(arms, s, height))
    if facing is not None and arms[facing]:
        pos = _box_lines(arms, facing, height)
        return min(pos) if from_start else max(pos)
    if not present:
        return MID_ROW[height] if arm in ("up", "down") else MID_COL
    near = facing is None and len(present) == 2
    return (min(across) if from_start else max(across)) if near else (max(across) if from_start else min(across))


def _box(arms: dict[str, int], height: int) -> list[int]:
    """Draw a box-drawing glyph: each line of each arm from its edge to where `_box_stop` ends
    it, so that corners and junctions of double lines close as drawn on paper."""
    grid = [[0] * CELL_WIDTH for _ in range(height)]
    for arm in arms:
        own = _box_lines(arms, arm, height)
        vertical = arm in ("up", "down")
        length = height if vertical else CELL_WIDTH
        for k, pos in enumerate(own):
            facing = None if len(own) == 1 else _ACROSS[arm][k]
            end = _box_stop(arms, arm, facing, height)
            for t in range(0, end + 1) if arm in ("up", "left") else range(end, length):
                if vertical:
                    grid[t][pos] = 1
                else:
                    grid[pos][t] = 1
    return [sum(0x80 >> x for x in range(CELL_WIDTH) if row[x]) for row in grid]


def _shade(code: int, height: int) -> list[int]:
    """░ ▒ ▓ as a quarter, half and three-quarter dot pattern; █ ▄ ▌ ▐ ▀ from the area they cover."""
    rows = []
    for y in range(height):
        bits = 0
        for x in range(CELL_WIDTH):
            on = {0xB0: x % 4 == (0 if y % 2 == 0 else 2), 0xB1: (x + y) % 2 == 0,
                  0xB2: x % 4 != (0 if y % 2 == 0 else 2), 0xDB: True, 0xDC: y >= height // 2,
                  0xDD: x < CELL_WIDTH // 2, 0xDE: x >= CELL_WIDTH // 2, 0xDF: y < height // 2}[code]
            if on:
                bits |= 0x80 >> x
        rows.append(bits)
    return rows


SHADE_CODES = (0xB0, 0xB1, 0xB2, 0xDB, 0xDC, 0xDD, 0xDE, 0xDF)
BOX_CODES = range(0xB3, 0xDB)


# -- assembling the fonts ------------------------------------------------------------------------------
def _build() -> dict[int, bytes]:
    master = _parse(_MASTER)
    symbols = _parse(_SYMBOLS)
    overrides8 = _parse(_OVERRIDES8)
    g16: dict[str, list[int]] = {}
    g8: dict[str, list[int]] = {}
    for ch, art in master.items():
        g16[ch] = _master16(art)
        g8[ch] = _derive8(g16[ch])
    for ch, art in overrides8.items():
        g8[ch] = [_bits(r, MASTER_COLUMN) for r in art]
    for ch, art in symbols.items():
        g8[ch] = _symbol(art)
        g16[ch] = _double(g8[ch])
    for ch, (src, how) in _MIRRORS.items():
        for g in (g8, g16):
            rows = g[src]
            if how.startswith("h"):  # left-right inside the first N columns
                width = int(how[1:])
                column = MASTER_COLUMN if src in master else 0
                g[ch] = _mirror(rows, width, column)
            elif how == "v7":  # upside down inside the first 7 rows of the 8x8 picture
                g[ch] = (rows[:7][::-1] + rows[7:]) if g is g8 else (rows[:14][::-1] + rows[14:])
            elif how == "v8":
                g[ch] = rows[::-1]
            else:  # rotated half a turn inside the master grid
                if g is g16:
                    grid = rows[MASTER_TOP: MASTER_TOP + CAPS_ROWS]
                    turned = _mirror(grid[::-1], 6, MASTER_COLUMN)
                    g[ch] = rows[:MASTER_TOP] + turned + rows[MASTER_TOP + CAPS_ROWS:]
                else:
                    g[ch] = _mirror(rows[:ROWS8_CAPS][::-1], 6, MASTER_COLUMN) + rows[ROWS8_CAPS:]
    for ch, src in _INVERSES.items():
        g8[ch] = [~r & 0xFF for r in g8[src]]
        g16[ch] = [~r & 0xFF for r in g16[src]]
    # dotless i (a base for ï î ì í): the i without its dot
    g16["ı"] = [0 if i == MASTER_TOP else r for i, r in enumerate(g16["i"])]
    g8["ı"] = [0 if i == 0 else r for i, r in enumerate(g8["i"])]
    for ch, (base, mark) in _ACCENTED.items():
        g16[ch], g8[ch] = _accent(g16[base], g8[base], mark, base.isupper())
    fonts = {}
    for height in (8, 16):
        table = bytearray(256 * height)
        src = g8 if height == 8 else g16
        for code in range(256):
            ch = CP437[code]
            if code in BOX_CODES:
                rows = _box(box_arms(ch), height)
            elif code in SHADE_CODES:
                rows = _shade(code, height)
            else:
                rows = src.get(ch, [0] * height)
            table[code * height: (code + 1) * height] = bytes(rows)
        fonts[height] = bytes(table)
    f16 = fonts[16]
    fonts[14] = b"".join(f16[c * 16 + 1: c * 16 + 15] for c in range(256))
    return fonts


def _accent(base16: list[int], base8: list[int], mark: str, capital: bool) -> tuple[list[int], list[int]]:
    g16, g8 = list(base16), list(base8)
    if mark == "cedilla":
        for i, r in enumerate(_CEDILLA16):
            g16[CEDILLA_ROW16 + i] |= _bits(r, MASTER_COLUMN)
        g8[CEDILLA_ROW8] |= _bits(_CEDILLA8, MASTER_COLUMN)
        return g16, g8
    art = _MARKS16[mark]
    top = UPPER_MARK_ROW16 if capital else LOWER_MARK_ROW16 + 2 - len(art)
    for i, r in enumerate(art):
        g16[top + i] |= _bits(r, MASTER_COLUMN)
    if capital:  # no room above an 8x8 capital: squeeze it to six rows under a one-row mark
        body = _squeeze(g8[:ROWS8_CAPS], ROWS8_CAPS - 1, keep_top=0)
        g8 = [_bits(_MARKS8_CAPS[mark], MASTER_COLUMN)] + body + g8[ROWS8_CAPS:]
    else:
        for i, r in enumerate(_MARKS8[mark]):
            g8[i] |= _bits(r, MASTER_COLUMN)
    return g16, g8


FONTS = _build()
FONT8X8, FONT8X14, FONT8X16 = FONTS[8], FONTS[14], FONTS[16]


def font(height: int) -> bytes:
    """The 256-glyph font for a character height of 8, 14 or 16 rows."""
    return FONTS[height]


def glyph(code: int, height: int = 16) -> bytes:
    return FONTS[height][code * height: (code + 1) * height]


def show(code: int, height: int = 16) -> str:
    """A glyph as text ('#' = foreground), for tests and for looking at the designs."""
    return "\n".join(f"{r:08b}".replace("0", ".").replace("1", "#") for r in glyph(code, height))
