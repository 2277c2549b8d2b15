"""An .xlsx/.xlsm package rewritten member by member: what is not replaced is copied byte for byte.

The zip is read from its central directory; every member the caller does not replace is copied
as it is stored (local header, compressed bytes, data descriptor), in the same order, and its
central directory entry is kept with only its offset moved. A replaced member keeps its name,
timestamps, extra fields and compression method; an added member goes at the end. Standard
library only (zlib, struct).
"""

from __future__ import annotations

import struct
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import BinaryIO

_LOCAL = b"PK\x03\x04"
_CENTRAL = b"PK\x01\x02"
_END = b"PK\x05\x06"
_ZIP64_LOCATOR = b"PK\x06\x07"
_STORED, _DEFLATED = 0, 8
_DESCRIPTOR_FLAG = 0x08
_UTF8_FLAG = 0x800


class PackageError(ValueError):
    """The file is not a zip this writer can rewrite safely (damaged, zip64, encrypted...)."""


@dataclass(frozen=True)
class Member:
    """One member as the central directory describes it, with its raw central entry."""

    name: str
    offset: int  # of its local header
    method: int
    flags: int
    central: bytes  # the whole central directory entry, as stored


@dataclass(frozen=True)
class Layout:
    """Where everything is in the original file."""

    members: list[Member]  # central directory order
    directory_offset: int
    end_record: bytes  # the end-of-central-directory record, comment included


def read_layout(stream: BinaryIO) -> Layout:
    """The package's central directory, from its end record (a zip64 or split archive is refused)."""
    stream.seek(0, 2)
    size = stream.tell()
    tail_size = min(size, 22 + 65535)
    stream.seek(size - tail_size)
    tail = stream.read(tail_size)
    at = tail.rfind(_END)
    if at < 0 or len(tail) - at < 22:
        raise PackageError("no zip end record")
    end = tail[at:]
    disk, directory_disk, on_disk, total, directory_size, directory_offset, comment = struct.unpack(
        "<HHHHIIH", end[4:22]
    )
    end = end[: 22 + comment]
    if disk or directory_disk or on_disk != total:
        raise PackageError("a split zip")
    if total == 0xFFFF or directory_offset == 0xFFFFFFFF or _ZIP64_LOCATOR in tail[max(0, at - 20) : at]:
        raise PackageError("a zip64 package")
    stream.seek(directory_offset)
    directory = stream.read(directory_size)
    members: list[Member] = []
    position = 0
    for _ in range(total):
        if directory[position : position + 4] != _CENTRAL:
            raise PackageError("a damaged central directory")
        fields = struct.unpack("<HHHHHHIIIHHHHHII", directory[position + 4 : position + 46])
        flags, method, compressed, uncompressed = fields[2], fields[3], fields[7], fields[8]
        name_length, extra_length, comment_length, offset = fields[9], fields[10], fields[11], fields[15]
        if 0xFFFFFFFF in (compressed, uncompressed, offset):
            raise PackageError("a zip64 package")
        if flags & 0x01:
            raise PackageError("an encrypted package")
        end_of_entry = position + 46 + name_length + extra_length + comment_length
        raw_name = directory[position + 46 : position + 46 + name_length]
        name = raw_name.decode("utf-8" if flags & _UTF8_FLAG else "cp437")
        members.append(Member(name, offset, method, flags, directory[position:end_of_entry]))
        position = end_of_entry
    return Layout(members, directory_offset, end)


def _dos_time(moment: float) -> tuple[int, int]:
    local = time.localtime(moment)
    dos_time = (local.tm_hour << 11) | (local.tm_min << 5) | (local.tm_sec // 2)
    dos_date = ((max(local.tm_year, 1980) - 1980) << 9) | (local.tm_mon << 5) | local.tm_mday
    return dos_time, dos_date


def _compress(data: bytes, method: int) -> bytes:
    if method == _STORED:
        return data
    if method == _DEFLATED:
        packer = zlib.compressobj(6, zlib.DEFLATED, -15)
        return packer.compress(data) + packer.flush()
    raise PackageError(f"compression method {method}")


def rewrite(
    source: BinaryIO,
    target: BinaryIO,
    replaced: Mapping[str, bytes],
    added: Sequence[tuple[str, bytes]] = (),
) -> None:
    """Copy the package ``source`` to ``target``, with the members in ``replaced`` given new contents
    and the members in ``added`` (name, contents) appended, deflated."""
    layout = read_layout(source)
    names = {m.name for m in layout.members}
    missing = set(replaced) - names
    if missing:
        raise PackageError(f"no member {sorted(missing)[0]}")
    if any(name in names for name, _ in added):
        raise PackageError("an added member already exists")
    by_offset = sorted(layout.members, key=lambda m: m.offset)
    ends = [m.offset for m in by_offset[1:]] + [layout.directory_offset]
    moved: dict[str, int] = {}
    central: dict[str, bytes] = {}
    for member, end in zip(by_offset, ends, strict=True):
        moved[member.name] = target.tell()
        if member.name not in replaced:
            _copy(source, target, member.offset, end - member.offset)
            central[member.name] = (
                member.central[:42] + struct.pack("<I", moved[member.name]) + member.central[46:]
            )
            continue
        source.seek(member.offset)
        local = source.read(30)
        if local[:4] != _LOCAL:
            raise PackageError(f"a damaged entry for {member.name}")
        name_length, extra_length = struct.unpack("<HH", local[26:30])
        name_and_extra = source.read(name_length + extra_length)
        data = replaced[member.name]
        packed = _compress(data, member.method)
        crc = zlib.crc32(data) & 0xFFFFFFFF
        if max(len(data), len(packed), target.tell()) >= 0xFFFFFFFF:
            raise PackageError("a part too large for a zip without zip64")
        flags = member.flags & ~_DESCRIPTOR_FLAG
        sizes = struct.pack("<III", crc, len(packed), len(data))
        target.write(
            local[:6] + struct.pack("<H", flags) + local[8:14] + sizes + local[26:30] + name_and_extra
        )
        target.write(packed)
        entry = member.central
        central[member.name] = (
            (entry[:8] + struct.pack("<H", flags) + entry[10:16] + sizes + entry[28:42])
            + struct.pack("<I", moved[member.name])
            + entry[46:]
        )
    order = [m.name for m in layout.members]
    for name, data in added:
        offset = target.tell()
        packed = _compress(data, _DEFLATED)
        crc = zlib.crc32(data) & 0xFFFFFFFF
        encoded = name.encode("utf-8")
        flags = _UTF8_FLAG if not encoded.isascii() else 0
        dos_time, dos_date = _dos_time(time.time())
        common = struct.pack(
            "<HHHHHIII", 20, flags, _DEFLATED, dos_time, dos_date, crc, len(packed), len(data)
        )
        target.write(_LOCAL + common + struct.pack("<HH", len(encoded), 0) + encoded)
        target.write(packed)
        central[name] = (
            _CENTRAL
            + struct.pack("<H", 20)
            + common
            + struct.pack("<HHHHHII", len(encoded), 0, 0, 0, 0, 0, offset)
            + encoded
        )
        order.append(name)
    directory_offset = target.tell()
    for name in order:
        target.write(central[name])
    directory_size = target.tell() - directory_offset
    if directory_offset >= 0xFFFFFFFF or len(order) >= 0xFFFF:
        raise PackageError("a package too large for a zip without zip64")
    end = layout.end_record
    counts = struct.pack("<HHII", len(order), len(order), directory_size, directory_offset)
    target.write(end[:8] + counts + end[20:])


def _copy(source: BinaryIO, target: BinaryIO, offset: int, length: int) -> None:
    source.seek(offset)
    while length > 0:
        block = source.read(min(length, 1 << 20))
        if not block:
            raise PackageError("a truncated package")
        target.write(block)
        length -= len(block)
