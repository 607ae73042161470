"""Assemble small guest snippets with nasm at test time, caching the results by source hash.

    from tests.cpu.guestasm import assemble, needs_nasm

    pytestmark = needs_nasm
    code = assemble("bits 32\\nmov eax, 1\\nhlt\\n")

The flat binary (`nasm -f bin`) of each distinct source is kept in a temporary directory
(`$TMPDIR/pyemu-nasm-<uid>/<sha1>.bin`), so re-running a test or a hypothesis example that repeats
a program costs a file read. Without nasm, tests marked `needs_nasm` skip and `assemble` raises
`pytest.skip`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

NASM = shutil.which("nasm")
needs_nasm = pytest.mark.skipif(NASM is None, reason="nasm is not installed")

_CACHE = Path(tempfile.gettempdir()) / f"pyemu-nasm-{os.getuid()}"
_memo: dict[str, bytes] = {}


class AsmError(Exception):
    """nasm rejected the source (the message holds nasm's diagnostics and the source)."""


def assemble(source: str, bits: int | None = None, org: int | None = None) -> bytes:
    """Flat binary of `source`; `bits`/`org` prepend the directives when given."""
    head = ""
    if bits is not None:
        head += f"bits {bits}\n"
    if org is not None:
        head += f"org {org:#x}\n"
    text = head + source
    key = hashlib.sha1(text.encode()).hexdigest()
    hit = _memo.get(key)
    if hit is not None:
        return hit
    out = _CACHE / f"{key}.bin"
    if out.exists():
        data = out.read_bytes()
        _memo[key] = data
        return data
    if NASM is None:
        pytest.skip("nasm is not installed")
    _CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=_CACHE) as tmp:
        src = Path(tmp) / "g.asm"
        binf = Path(tmp) / "g.bin"
        src.write_text(text)
        res = subprocess.run([NASM, "-f", "bin", "-o", str(binf), str(src)], capture_output=True, text=True)
        if res.returncode != 0:
            raise AsmError(f"{res.stderr}\n--- source ---\n{text}")
        data = binf.read_bytes()
        os.replace(binf, out)  # atomic: parallel runs never see a half-written file
    _memo[key] = data
    return data
