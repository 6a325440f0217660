"""Streaming pcap / pcapng reader: several files (and stdin, and gzip) as one capture.

Memory stays bounded by the largest record, not by the file size: every file is read in chunks
and parsed with ``struct.unpack_from``. Classic pcap (both byte orders, microsecond and
nanosecond magic, the old "modified" pcap) and pcapng (several sections in either byte order,
several interfaces per section with their own link type, ``if_tsresol`` and ``if_tsoffset``;
EPB, SPB and the obsolete PB; decryption-secrets blocks are kept; other blocks are skipped).

Several sources are merged into one time-ordered capture (``heapq.merge``, ties keep file
order; each file itself is read in its own order). A cut-off file yields what it holds and
then a ``capture.truncated`` finding; a corrupt pcapng block structure yields a
``capture.corrupt`` finding and ends that file. Anything that is not a capture at all raises
:class:`CaptureFormatError` when the reader is created.

Throughput (reader + :func:`~dissector.capture.linklayer.decode_packet`) can be measured with::

    from dissector.capture.reader import benchmark
    benchmark(100_000)   # -> packets per second on a generated Ethernet/IPv4/TCP pcap
"""

from __future__ import annotations

import contextlib
import gzip
import heapq
import io
import os
import struct
import sys
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, BinaryIO

from dissector.capture.packets import RawPacket
from dissector.model import Finding, Severity

__all__ = [
    "CaptureFileStats",
    "CaptureFormatError",
    "CaptureReader",
    "DecryptionSecrets",
    "benchmark",
    "open_capture_sources",
]

MAX_RECORD = 16 * 1024 * 1024
"""Largest pcap record / pcapng block accepted; anything bigger is treated as corruption."""

_CHUNK = 256 * 1024

_PCAPNG_SHB = 0x0A0D0D0A
_PCAPNG_IDB = 0x00000001
_PCAPNG_PB = 0x00000002
_PCAPNG_SPB = 0x00000003
_PCAPNG_EPB = 0x00000006
_PCAPNG_DSB = 0x0000000A
_BOM = 0x1A2B3C4D

# magic -> (struct endian prefix, nanosecond, record header length)
_PCAP_MAGICS: dict[bytes, tuple[str, bool, int]] = {
    b"\xd4\xc3\xb2\xa1": ("<", False, 16),
    b"\xa1\xb2\xc3\xd4": (">", False, 16),
    b"\x4d\x3c\xb2\xa1": ("<", True, 16),
    b"\xa1\xb2\x3c\x4d": (">", True, 16),
    b"\x34\xcd\xb2\xa1": ("<", False, 24),  # Kuznetzov "modified" pcap
    b"\xa1\xb2\xcd\x34": (">", False, 24),
}
_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
_GZIP_MAGIC = b"\x1f\x8b"

_READ_ERRORS = (OSError, EOFError, zlib.error, ValueError)


class CaptureFormatError(Exception):
    """A source is not a pcap/pcapng capture at all (or cannot be opened)."""


@dataclass(slots=True)
class DecryptionSecrets:
    """The contents of a pcapng Decryption Secrets Block (e.g. a TLS key log)."""

    TLS_KEY_LOG = 0x544C534B

    secrets_type: int
    data: bytes
    source: str


@dataclass(slots=True)
class CaptureFileStats:
    """What one source held; filled in while it is read."""

    name: str
    size: int | None
    format: str
    compressed: bool = False
    byte_order: str = "little"
    linktypes: list[int] = field(default_factory=list)
    packets: int = 0
    first_ts: float | None = None
    last_ts: float | None = None
    sections: int = 0
    interfaces: int = 0
    snaplen: int | None = None
    bytes_read: int = 0
    truncated: bool = False
    corrupt: bool = False


class _PrefixedStream:
    """A readable stream that first returns ``prefix`` and then the rest of ``inner``."""

    def __init__(self, prefix: bytes, inner: IO[bytes]) -> None:
        self._prefix = prefix
        self._inner = inner
        self._read1: Callable[[int], bytes] = getattr(inner, "read1", inner.read)
        self.mode = "rb"

    def _take(self, n: int) -> bytes:
        if n < 0 or n >= len(self._prefix):
            out, self._prefix = self._prefix, b""
        else:
            out, self._prefix = self._prefix[:n], self._prefix[n:]
        return out

    def read(self, n: int = -1) -> bytes:
        if self._prefix:
            return self._take(n)
        return self._inner.read(n)

    def read1(self, n: int = -1) -> bytes:
        if self._prefix:
            return self._take(n)
        return self._read1(n)

    def seek(self, n: int, whence: int = 0) -> int:
        raise io.UnsupportedOperation("stream is not seekable")


def _read_at_least(read: Callable[[int], bytes], n: int) -> tuple[bytes, BaseException | None]:
    """Up to ``n`` bytes (fewer at the end of the stream) and the read error, if any."""
    parts: list[bytes] = []
    have = 0
    error: BaseException | None = None
    while have < n:
        try:
            chunk = read(n - have)
        except _READ_ERRORS as exc:
            error = exc
            break
        if not chunk:
            break
        parts.append(chunk)
        have += len(chunk)
    return b"".join(parts), error


def _describe_start(data: bytes) -> str:
    head = data[:8]
    text = "".join(chr(b) if 32 <= b < 127 else "." for b in head)
    return f"{head.hex(' ')} ({text!r})"


class _FileReader:
    """Reads one source; :meth:`records` yields its packets and findings in file order."""

    def __init__(
        self,
        name: str,
        stream: Any,
        prefix: bytes,
        fmt: str,
        stats: CaptureFileStats,
        on_secrets: Callable[[DecryptionSecrets], None],
        owned: IO[bytes] | None,
    ) -> None:
        self.name = name
        self.stream = stream
        self.prefix = prefix
        self.fmt = fmt
        self.stats = stats
        self.on_secrets = on_secrets
        self.owned = owned
        self._read: Callable[[int], bytes] = getattr(stream, "read1", None) or stream.read
        self.eof = False
        #: Number packets 1.. here (the only source: no merge to number them after).
        self.numbered = False
        self.error: BaseException | None = None

    # -- low-level buffering ------------------------------------------------------------
    def _more(self, buf: bytes, pos: int, need: int) -> bytes:
        """``buf[pos:]`` extended by reads until it holds ``need`` bytes or the stream ends."""
        rest = buf[pos:]
        have = len(rest)
        if have >= need or self.eof:
            return rest
        parts = [rest]
        read = self._read
        st = self.stats
        while have < need:
            try:
                chunk = read(max(_CHUNK, need - have))
            except _READ_ERRORS as exc:
                self.error = exc
                chunk = b""
            if not chunk:
                self.eof = True
                break
            parts.append(chunk)
            have += len(chunk)
            st.bytes_read += len(chunk)
        return b"".join(parts)

    def close(self) -> None:
        if self.owned is not None:
            self.owned.close()
            self.owned = None

    # -- findings -----------------------------------------------------------------------
    def _finding(self, code: str, message: str, **details: Any) -> Finding:
        st = self.stats
        if code == "capture.truncated":
            st.truncated = True
        else:
            st.corrupt = True
        details["file"] = self.name
        details["packets_before"] = st.packets
        return Finding(
            Severity.WARNING,
            code,
            f"{self.name}: {message}",
            ts=st.last_ts,
            details=details,
        )

    def _cut(self, what: str, offset: int, need: int, have: int) -> Finding:
        cause = f" ({self.error})" if self.error is not None else " (interrupted capture?)"
        return self._finding(
            "capture.truncated",
            f"capture ends inside {what} at byte offset {offset}: {need} bytes expected, "
            f"only {have} present, {need - have} lost{cause}; "
            f"{self.stats.packets} packets read before it",
            offset=offset,
            expected=need,
            available=have,
            lost=need - have,
        )

    def _stream_error(self, offset: int) -> Finding | None:
        """A finding for a stream that ended with a read error at a record boundary."""
        exc = self.error
        if exc is None:
            return None
        if isinstance(exc, EOFError):
            return self._finding(
                "capture.truncated",
                f"compressed stream ends early after byte offset {offset} ({exc}); "
                f"{self.stats.packets} packets read before it",
                offset=offset,
            )
        return self._finding(
            "capture.corrupt",
            f"read error after byte offset {offset}: {exc}",
            offset=offset,
        )

    def _corrupt(self, message: str, offset: int) -> Finding:
        return self._finding("capture.corrupt", f"{message} at byte offset {offset}", offset=offset)

    # -- iteration ----------------------------------------------------------------------
    def records(self) -> Iterator[RawPacket | Finding]:
        try:
            if self.fmt == "pcap":
                yield from self._pcap()
            else:
                yield from self._pcapng()
        finally:
            self.close()

    def _pcap(self) -> Iterator[RawPacket | Finding]:
        st = self.stats
        name = self.name
        buf = self._more(self.prefix, 0, 24)
        self.prefix = b""
        if len(buf) < 24:
            yield self._cut("the pcap file header", 0, 24, len(buf))
            return
        endian, nano, hdr_len = _PCAP_MAGICS[buf[:4]]
        snaplen, network = struct.unpack_from(endian + "II", buf, 16)
        linktype = network & 0x03FFFFFF
        st.byte_order = "little" if endian == "<" else "big"
        st.linktypes.append(linktype)
        st.sections = 1
        st.interfaces = 1
        st.snaplen = snaplen
        scale = 1_000_000_000 if nano else 1_000_000
        unpack = struct.Struct(endian + "IIII").unpack_from
        numbered = self.numbered
        pos = 24
        base = 0
        count = 0
        while True:
            if pos + hdr_len > len(buf):
                base += pos
                buf = self._more(buf, pos, hdr_len)
                pos = 0
                if len(buf) < hdr_len:
                    if buf:
                        yield self._cut("a packet record header", base, hdr_len, len(buf))
                    else:
                        err = self._stream_error(base)
                        if err is not None:
                            yield err
                    return
            sec, frac, incl, orig = unpack(buf, pos)
            end = pos + hdr_len + incl
            if end > len(buf):
                if incl > MAX_RECORD:
                    yield self._corrupt(
                        f"impossible packet record length {incl} (corrupt file?)", base + pos
                    )
                    return
                base += pos
                buf = self._more(buf, pos, hdr_len + incl)
                pos = 0
                end = hdr_len + incl
                if len(buf) < end:
                    yield self._cut("a packet record", base, end, len(buf))
                    return
            ts = sec + frac / scale
            count += 1
            st.packets = count
            if count == 1:
                st.first_ts = ts
            st.last_ts = ts
            yield RawPacket(
                ts, linktype, buf[pos + hdr_len : end], orig, count if numbered else 0, name
            )
            pos = end

    def _pcapng(self) -> Iterator[RawPacket | Finding]:
        st = self.stats
        name = self.name
        buf = self.prefix
        self.prefix = b""
        pos = 0
        base = 0
        endian = "<"
        u32 = struct.Struct("<I").unpack_from
        u2 = struct.Struct("<II").unpack_from
        epb = struct.Struct("<IIIII").unpack_from
        # interface: (linktype, divisor, offset, snaplen)
        ifaces: list[tuple[int, int, int, int]] = []
        count = 0
        last_ts = 0.0
        numbered = self.numbered
        while True:
            if pos + 12 > len(buf):
                base += pos
                buf = self._more(buf, pos, 12)
                pos = 0
                if len(buf) < 12:
                    if buf:
                        yield self._cut("a block header", base, 12, len(buf))
                    else:
                        err = self._stream_error(base)
                        if err is not None:
                            yield err
                    return
            btype, blen = u2(buf, pos)
            if btype == _PCAPNG_SHB:
                bom_le = struct.unpack_from("<I", buf, pos + 8)[0]
                if bom_le == _BOM:
                    endian = "<"
                elif bom_le == 0x4D3C2B1A:
                    endian = ">"
                else:
                    yield self._corrupt("section header with invalid byte-order magic", base + pos)
                    return
                u32 = struct.Struct(endian + "I").unpack_from
                u2 = struct.Struct(endian + "II").unpack_from
                epb = struct.Struct(endian + "IIIII").unpack_from
                blen = u32(buf, pos + 4)[0]
            if blen < 12 or blen & 3 or blen > MAX_RECORD:
                yield self._corrupt(
                    f"invalid block length {blen} (block type {btype:#x})", base + pos
                )
                return
            end = pos + blen
            if end > len(buf):
                base += pos
                buf = self._more(buf, pos, blen)
                pos = 0
                end = blen
                if len(buf) < end:
                    yield self._cut(f"a block (type {btype:#x})", base, blen, len(buf))
                    return
            if u32(buf, end - 4)[0] != blen:
                yield self._corrupt(
                    f"block length {blen} does not match its trailing copy (block type {btype:#x})",
                    base + pos,
                )
                return
            if btype in (6, 2):  # enhanced / obsolete packet block
                if blen < 32:
                    yield self._corrupt("packet block too short", base + pos)
                    pos = end
                    continue
                ifid, th, tl, cap, orig = epb(buf, pos + 8)
                if btype == _PCAPNG_PB:  # 16-bit interface id, 16-bit drop count
                    ifid = ifid & 0xFFFF if endian == "<" else ifid >> 16
                if pos + 28 + cap > end - 4:
                    yield self._corrupt(
                        f"packet block captured length {cap} exceeds the block", base + pos
                    )
                    pos = end
                    continue
                if ifid >= len(ifaces):
                    yield self._corrupt(
                        f"packet block refers to interface {ifid} but the section "
                        f"describes {len(ifaces)}",
                        base + pos,
                    )
                    pos = end
                    continue
                linktype, div, off, _snap = ifaces[ifid]
                ts = ((th << 32) | tl) / div + off
                count += 1
                st.packets = count
                if count == 1:
                    st.first_ts = ts
                st.last_ts = last_ts = ts
                yield RawPacket(
                    ts,
                    linktype,
                    buf[pos + 28 : pos + 28 + cap],
                    orig,
                    count if numbered else 0,
                    name,
                )
            elif btype == _PCAPNG_SPB:
                if blen < 16 or not ifaces:
                    yield self._corrupt(
                        "simple packet block without interface or too short", base + pos
                    )
                    pos = end
                    continue
                orig = u32(buf, pos + 8)[0]
                linktype, _div, _off, snap = ifaces[0]
                cap = min(orig, blen - 16)
                if snap:
                    cap = min(cap, snap)
                count += 1
                st.packets = count
                if count == 1:
                    st.first_ts = last_ts
                st.last_ts = last_ts
                yield RawPacket(
                    last_ts,
                    linktype,
                    buf[pos + 12 : pos + 12 + cap],
                    orig,
                    count if numbered else 0,
                    name,
                )
            elif btype == _PCAPNG_IDB:
                if blen < 20:
                    yield self._corrupt("interface description block too short", base + pos)
                    return
                iface = _parse_idb(buf, pos, end, endian)
                ifaces.append(iface)
                st.interfaces += 1
                if st.snaplen is None:
                    st.snaplen = iface[3]
                if iface[0] not in st.linktypes:
                    st.linktypes.append(iface[0])
            elif btype == _PCAPNG_SHB:
                if blen < 28:
                    yield self._corrupt("section header block too short", base + pos)
                    return
                major = struct.unpack_from(endian + "H", buf, pos + 12)[0]
                if major != 1:
                    yield self._corrupt(f"unsupported pcapng major version {major}", base + pos)
                    return
                st.sections += 1
                if st.sections == 1:
                    st.byte_order = "little" if endian == "<" else "big"
                ifaces = []
            elif btype == _PCAPNG_DSB:
                stype, slen = u2(buf, pos + 8) if blen >= 20 else (0, blen)
                if 16 + slen > blen - 4:
                    yield self._corrupt("decryption secrets block too short", base + pos)
                else:
                    self.on_secrets(DecryptionSecrets(stype, buf[pos + 16 : pos + 16 + slen], name))
            pos = end


def _parse_idb(buf: bytes, pos: int, end: int, endian: str) -> tuple[int, int, int, int]:
    """(linktype, timestamp divisor, timestamp offset, snaplen) of an interface block."""
    linktype, _res, snaplen = struct.unpack_from(endian + "HHI", buf, pos + 8)
    div = 1_000_000
    offset = 0
    opt = pos + 16
    stop = end - 4
    hh = struct.Struct(endian + "HH").unpack_from
    while opt + 4 <= stop:
        code, length = hh(buf, opt)
        if code == 0:
            break
        vstart = opt + 4
        if vstart + length > stop:
            break
        if code == 9 and length >= 1:
            v = buf[vstart]
            div = 1 << (v & 0x7F) if v & 0x80 else 10 ** min(v, 64)
        elif code == 14 and length >= 8:
            offset = struct.unpack_from(endian + "q", buf, vstart)[0]
        opt = vstart + ((length + 3) & ~3)
    return linktype, div, offset, snaplen


def _merge_key(item: RawPacket | Finding) -> float:
    ts = item.ts
    return ts if ts is not None else float("-inf")


class CaptureReader:
    """Reads one or more captures as one time-ordered capture.

    ``sources`` are paths, ``"-"`` (standard input) or binary file objects; gzip-compressed
    sources are recognised by their magic. Iterating yields :class:`RawPacket` (with
    ``index`` numbered 1.. across the merged capture) and :class:`Finding` objects. ``stats``
    holds one :class:`CaptureFileStats` per source, ``secrets`` the decryption secrets found
    in pcapng files (``on_secrets``, which may be set after creation, is also called for
    each as it is read, before the packets that follow it). Raises
    :class:`CaptureFormatError` on creation if a source cannot be opened or is not a capture.
    A reader is iterated once; use it as a context manager (or call :meth:`close`) to release
    files early.
    """

    def __init__(
        self,
        sources: Sequence[str | os.PathLike[str] | BinaryIO],
        *,
        on_secrets: Callable[[DecryptionSecrets], None] | None = None,
    ) -> None:
        self.stats: list[CaptureFileStats] = []
        self.secrets: list[DecryptionSecrets] = []
        self.on_secrets = on_secrets
        self._files: list[_FileReader] = []
        self._iterated = False
        if isinstance(sources, (str, bytes, os.PathLike)) or hasattr(sources, "read"):
            sources = [sources]  # type: ignore[list-item]
        if sum(1 for src in sources if isinstance(src, str) and src == "-") > 1:
            raise CaptureFormatError("-: standard input can be read only once")
        try:
            for src in sources:
                self._files.append(self._open(src))
        except BaseException:
            self.close()
            raise

    def _secret(self, secret: DecryptionSecrets) -> None:
        self.secrets.append(secret)
        if self.on_secrets is not None:
            self.on_secrets(secret)

    def _open(self, src: str | os.PathLike[str] | BinaryIO) -> _FileReader:
        owned: IO[bytes] | None = None
        size: int | None = None
        stream: Any
        if isinstance(src, (str, bytes, os.PathLike)):
            path = os.fsdecode(src)
            if path == "-":
                name = "<stdin>"
                stream = sys.stdin.buffer
            else:
                name = path
                try:
                    owned = stream = open(path, "rb")  # noqa: SIM115 - closed by the reader
                    fst = os.fstat(stream.fileno())
                except OSError as exc:
                    raise CaptureFormatError(
                        f"{path}: cannot open: {exc.strerror or exc}"
                    ) from None
                if (fst.st_mode & 0o170000) == 0o100000:
                    size = fst.st_size
        else:
            stream = src
            if isinstance(stream, io.TextIOBase) and hasattr(stream, "buffer"):
                stream = stream.buffer
            raw_name = getattr(src, "name", None)
            name = raw_name if isinstance(raw_name, str) else "<stream>"
        try:
            return self._identify(name, stream, size, owned)
        except BaseException:
            if owned is not None:
                owned.close()
            raise

    def _identify(
        self, name: str, stream: Any, size: int | None, owned: IO[bytes] | None
    ) -> _FileReader:
        read: Callable[[int], bytes] = getattr(stream, "read1", None) or stream.read
        head, error = _read_at_least(read, 4)
        if error is not None and len(head) < 4:
            raise CaptureFormatError(f"{name}: cannot read: {error}")
        compressed = False
        what = "file"
        if head[:2] == _GZIP_MAGIC:
            compressed = True
            what = "gzip-compressed file"
            stream = gzip.GzipFile(fileobj=_PrefixedStream(head, stream), mode="rb")
            read = stream.read1
            head, error = _read_at_least(read, 4)
            if error is not None and len(head) < 4:
                raise CaptureFormatError(f"{name}: bad or cut-off gzip data: {error}")
        if not head:
            raise CaptureFormatError(f"{name}: empty {what}, not a pcap or pcapng capture")
        if head[:4] in _PCAP_MAGICS:
            fmt = "pcap"
        elif head[:4] == _PCAPNG_MAGIC:
            fmt = "pcapng"
            if error is None:
                more, error = _read_at_least(read, 8)
                head += more
            if len(head) >= 12 and head[8:12] not in (b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d"):
                raise CaptureFormatError(
                    f"{name}: pcapng magic but invalid byte-order magic {head[8:12].hex(' ')}"
                )
        else:
            if error is None and len(head) == 4:
                with contextlib.suppress(*_READ_ERRORS):
                    head += read(4)
            raise CaptureFormatError(
                f"{name}: not a pcap or pcapng capture ({what} starts with {_describe_start(head)})"
            )
        stats = CaptureFileStats(name=name, size=size, format=fmt, compressed=compressed)
        stats.bytes_read = len(head)
        self.stats.append(stats)
        reader = _FileReader(name, stream, head, fmt, stats, self._secret, owned)
        if error is not None:
            reader.error = error
            reader.eof = True
        return reader

    def __iter__(self) -> Iterator[RawPacket | Finding]:
        if self._iterated:
            raise RuntimeError("a CaptureReader can be iterated only once")
        self._iterated = True
        if len(self._files) == 1:
            # One source: it numbers its own packets; no merging layer in between.
            only = self._files[0]
            only.numbered = True
            return only.records()
        return self._items()

    def _items(self) -> Iterator[RawPacket | Finding]:
        gens = [f.records() for f in self._files]
        merged: Iterator[RawPacket | Finding] = (
            gens[0] if len(gens) == 1 else heapq.merge(*gens, key=_merge_key)
        )
        index = 0
        for item in merged:
            if item.__class__ is RawPacket:
                index += 1
                item.index = index
            yield item

    def close(self) -> None:
        """Close the files this reader opened."""
        for f in self._files:
            f.close()

    def __enter__(self) -> CaptureReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_capture_sources(
    paths: Sequence[str | os.PathLike[str] | BinaryIO],
    *,
    on_secrets: Callable[[DecryptionSecrets], None] | None = None,
) -> CaptureReader:
    """Open ``paths`` (files, ``"-"`` for stdin, file objects) as one merged capture."""
    return CaptureReader(paths, on_secrets=on_secrets)


def benchmark(n: int = 100_000, path: str | None = None) -> float:
    """Packets per second of reader + link decode on a generated ``n``-packet pcap.

    Not used by the tool itself; run ``python -c "from dissector.capture.reader import
    benchmark; print(benchmark())"``.
    """
    import tempfile
    import time

    from dissector.capture.ipfrag import IpDefragmenter
    from dissector.capture.linklayer import decode_packet
    from dissector.capture.writer import PcapWriter, build_ethernet_ipv4_tcp

    with tempfile.TemporaryDirectory() as tmp:
        target = path or os.path.join(tmp, "bench.pcap")
        with open(target, "wb") as fh:
            w = PcapWriter(fh, 1)
            payload = bytes(range(256)) * 2
            for i in range(n):
                frame = build_ethernet_ipv4_tcp(
                    "10.0.0.1", 40000, "10.0.0.2", 5683, 1000 + i * 100, 1, 0x18,
                    payload[: 20 + i % 200],
                )  # fmt: skip
                w.write_packet(1_700_000_000 + i / 1000, frame)
        defrag = IpDefragmenter()
        start = time.perf_counter()
        got = 0
        for item in CaptureReader([target]):
            if item.__class__ is RawPacket and decode_packet(item, defrag) is not None:
                got += 1
        elapsed = time.perf_counter() - start
    assert got == n
    return n / elapsed
