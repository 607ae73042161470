"""Real boot images made with Debian's own tools, as a new user would try them.

Marked `images`; each test skips when the Debian package it needs is not installed
(apt-get install syslinux syslinux-common mtools dosfstools memtest86+).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.test_boot_cli import pyemu

pytestmark = pytest.mark.images

SYSLINUX_TOOLS = ("syslinux", "mkfs.fat", "mcopy")


@pytest.mark.skipif(any(shutil.which(t) is None for t in SYSLINUX_TOOLS),
                    reason="needs syslinux, dosfstools and mtools")
def test_syslinux_floppy_shows_its_prompt_and_takes_keys(tmp_path):
    img = tmp_path / "syslinux.img"
    subprocess.run(["mkfs.fat", "-C", str(img), "1440"], check=True, capture_output=True)
    subprocess.run(["syslinux", "--install", str(img)], check=True, capture_output=True)
    cfg = tmp_path / "syslinux.cfg"
    cfg.write_text("PROMPT 1\nTIMEOUT 0\nSAY Hello from SYSLINUX on pyemu\n")
    subprocess.run(["mcopy", "-i", str(img), str(cfg), "::syslinux.cfg"], check=True, capture_output=True)
    shot = tmp_path / "screen.txt"
    p = pyemu(str(img), "-display", "none", "--screendump", str(shot), "--timeout", "10", stdin=b"abc")
    assert p.returncode == 124  # still at its prompt when the timeout ends the run
    assert "Traceback" not in p.stderr.decode()
    screen = shot.read_text(encoding="utf-8")
    assert "SYSLINUX" in screen and "Hello from SYSLINUX on pyemu" in screen
    assert "boot: abc" in screen


@pytest.mark.skipif(not Path("/boot/memtest86+ia32.bin").exists(), reason="needs memtest86+")
def test_memtest86_with_kernel_reaches_its_test_screen(tmp_path):
    """memtest86+ is a Linux-boot-protocol image: the loader and BIOS get it to its 32-bit code, and
    with the x87 FPU (its first instruction is FNINIT) it draws its screen and starts testing."""
    shot = tmp_path / "screen.txt"
    p = pyemu("-kernel", "/boot/memtest86+ia32.bin", "-display", "none", "--screendump", str(shot),
              "--timeout", "30")
    assert "Traceback" not in p.stderr.decode()
    assert p.returncode == 124, p.stderr.decode()
    screen = shot.read_text()
    assert "Memtest86+" in screen
    assert "Pass" in screen and "Errors: 0" in screen


MEMTEST_ISO = Path("/usr/lib/memtest86+/memtest86+ia32.iso")
F1 = b"\x1bOP"  # the terminal's F1, which pyemu turns into the F1 scancodes


@pytest.mark.slow  # ~25 s
@pytest.mark.skipif(not MEMTEST_ISO.exists(), reason="needs memtest86+")
def test_memtest86_iso_boots_by_floppy_emulation_and_opens_its_menu_on_f1(tmp_path):
    """Debian's memtest86+ ISO boots by El Torito floppy emulation; F1 opens its settings menu."""
    shot = tmp_path / "screen.txt"
    p = pyemu("-cdrom", str(MEMTEST_ISO), "-display", "none", "--screendump", str(shot), "--timeout", "25",
              stdin=F1)
    assert "Traceback" not in p.stderr.decode()
    assert p.returncode == 124, p.stderr.decode()
    screen = shot.read_text()
    assert "Memtest86+ v" in screen and "<F1> Configuration" in screen
    assert "Settings:" in screen and "<F10> Exit menu" in screen  # the key reached it


IPXE = Path("/boot/ipxe.lkrn")


@pytest.mark.skipif(not IPXE.exists(), reason="needs ipxe")
def test_ipxe_with_kernel_gives_its_shell_on_ctrl_b(tmp_path):
    """Debian's iPXE as a Linux-boot-protocol image (-kernel); it uses FXSAVE/FXRSTOR around its
    real-mode calls. Ctrl-B during its banner opens the shell, which runs a typed command."""
    shot = tmp_path / "screen.txt"
    p = pyemu("-kernel", str(IPXE), "-display", "none", "--screendump", str(shot), "--timeout", "15",
              stdin=b"\x02help\r")
    assert "Traceback" not in p.stderr.decode()
    assert p.returncode == 124, p.stderr.decode()
    screen = shot.read_text()
    assert "iPXE" in screen and "Open Source Network Boot Firmware" in screen
    assert "iPXE> help" in screen and "Available commands:" in screen


GRUB_BOOT_IMG = Path("/usr/lib/grub/i386-pc/boot.img")


@pytest.mark.slow  # ~16 s: GRUB polls the keyboard in a busy loop
@pytest.mark.skipif(shutil.which("grub-mkstandalone") is None or not GRUB_BOOT_IMG.exists(),
                    reason="needs grub-pc-bin")
def test_grub_disk_reaches_its_command_line_and_takes_keys(tmp_path):
    """A disk made with GRUB's tools: boot.img in the MBR, a standalone core.img after it."""
    cfg = tmp_path / "grub.cfg"
    cfg.write_text('set timeout=-1\nmenuentry "pyemu" {\n  echo hi\n}\n')
    core = tmp_path / "core.img"
    subprocess.run(["grub-mkstandalone", "-O", "i386-pc", "--install-modules=normal echo configfile biosdisk",
                    "--modules=normal echo biosdisk", "--locales=", "--fonts=", "--themes=", "-o", str(core),
                    f"boot/grub/grub.cfg={cfg}"], check=True, capture_output=True)
    disk = tmp_path / "grub.img"
    disk.write_bytes(GRUB_BOOT_IMG.read_bytes() + core.read_bytes())
    with open(disk, "r+b") as fh:
        fh.truncate(4 << 20)
    shot = tmp_path / "screen.txt"
    p = pyemu(str(disk), "-display", "none", "--screendump", str(shot), "--timeout", "15", stdin=b"cecho")
    assert p.returncode == 124
    assert "Traceback" not in p.stderr.decode()
    screen = shot.read_text(encoding="utf-8")
    assert "GNU GRUB" in screen
    assert "grub> e" in screen  # the command line, with the first typed keys


@pytest.mark.slow  # ~20 s
@pytest.mark.skipif(shutil.which("grub-mkrescue") is None or shutil.which("xorriso") is None,
                    reason="needs grub-pc-bin (grub-mkrescue) and xorriso")
def test_grub_rescue_cd_boots_from_cdrom(tmp_path):
    """An El Torito no-emulation ISO made by grub-mkrescue, on -cdrom."""
    root = tmp_path / "iso" / "boot" / "grub"
    root.mkdir(parents=True)
    (root / "grub.cfg").write_text('set timeout=-1\nmenuentry "pyemu" {\n  echo hi\n}\n')
    iso = tmp_path / "rescue.iso"
    subprocess.run(["grub-mkrescue", "-o", str(iso), str(tmp_path / "iso"), "--modules=normal echo"],
                   check=True, capture_output=True)
    shot = tmp_path / "screen.txt"
    p = pyemu("-cdrom", str(iso), "-display", "none", "--screendump", str(shot), "--timeout", "20", stdin=b"c")
    assert p.returncode == 124
    assert "Traceback" not in p.stderr.decode()
    screen = shot.read_text(encoding="utf-8")
    assert "GNU GRUB" in screen and "grub>" in screen


GRUB_RESCUE = Path("/usr/lib/grub-rescue")


@pytest.mark.slow  # ~25 s each: GRUB polls the keyboard through the BIOS at its menu
@pytest.mark.parametrize("drive, image", [("-fda", "grub-rescue-floppy.img"), ("-cdrom", "grub-rescue-cdrom.iso")])
def test_debian_grub_rescue_images_show_their_menu_and_take_keys(tmp_path, drive, image):
    """Debian's grub-rescue-pc images: the floppy (1,296,384 bytes, not a standard size) on -fda
    and the El Torito CD on -cdrom; 'c' leaves the menu for GRUB's command line."""
    if not (GRUB_RESCUE / image).exists():
        pytest.skip("needs grub-rescue-pc")
    shot = tmp_path / "screen.txt"
    p = pyemu(drive, str(GRUB_RESCUE / image), "-display", "none", "--screendump", str(shot), "--timeout", "40",
              stdin=b"c")
    assert p.returncode == 124
    assert "Traceback" not in p.stderr.decode()
    screen = shot.read_text(encoding="utf-8")
    assert "GNU GRUB" in screen and "grub>" in screen
