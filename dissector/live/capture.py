"""Live packets from a network interface (Linux), as :class:`RawPacket` for the pipeline.

Scapy opens the capture (``conf.L2listen``: a ``PF_PACKET`` socket bound to the interface,
the BPF filter compiled by libpcap and attached in the kernel, promiscuous mode, kernel
timestamps and VLAN auxiliary data switched on). The packets themselves are read here
with ``recvmsg`` as raw bytes: no Scapy packet is built on the hot path.

On the loopback interface Linux hands a packet socket every packet twice, once going
out and once coming in. Like libpcap, the outgoing copy (``PACKET_OUTGOING``) is dropped,
so every packet is seen once.

Timestamps are the kernel's, in microseconds (as ``--write`` files store them), so a
written capture dissects to exactly the records shown live.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import select
import socket
import struct
import sys
import time
from dataclasses import dataclass
from typing import Any

from dissector.capture.packets import RawPacket

__all__ = [
    "DEFAULT_SNAPLEN",
    "LiveCapture",
    "LiveCaptureError",
    "default_bpf",
    "interface_names",
]

DEFAULT_SNAPLEN = 262144
PACKET_OUTGOING = 4
ARPHRD_LOOPBACK = 772
_SOL_PACKET = 263
_PACKET_AUXDATA = 8
_PACKET_STATISTICS = 6
_SO_TIMESTAMPNS = 35
_SO_RCVBUFFORCE = 33
_TP_STATUS_VLAN_VALID = 0x10
_TP_STATUS_VLAN_TPID_VALID = 0x40
_AUXDATA = struct.Struct("=IIIHHHH")
_TIMESPEC = struct.Struct("=qq")
_ANCILLARY = socket.CMSG_SPACE(_AUXDATA.size) + socket.CMSG_SPACE(_TIMESPEC.size) + 64
_RCVBUF = 8 * 1024 * 1024
_BATCH = 256


class LiveCaptureError(Exception):
    """The capture could not start (or went away). ``kind`` is ``permission``,
    ``interface``, ``filter``, ``platform`` or ``io``."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


def interface_names() -> list[str]:
    """The names of this host's network interfaces."""
    try:
        return [name for _, name in socket.if_nameindex()]
    except OSError:
        return []


def default_bpf(tcp_ports: Any, udp_ports: Any) -> str:
    """The capture filter for the Particle ports: ``tcp port 5683 or udp port 5684``."""
    parts = [f"tcp port {p}" for p in sorted(set(tcp_ports))]
    parts += [f"udp port {p}" for p in sorted(set(udp_ports))]
    return " or ".join(parts)


@dataclass(slots=True)
class CaptureCounts:
    """What the capture saw: packets kept, loopback duplicates dropped, kernel drops."""

    kept: int = 0
    duplicates: int = 0
    kernel_drops: int = 0


def _privilege_message(iface: str) -> str:
    return (
        f"capturing on {iface} needs root or the CAP_NET_RAW capability: run as root "
        "(sudo), or grant the capability to the interpreter "
        '(sudo setcap cap_net_raw,cap_net_admin+eip "$(readlink -f $(which python3))")'
    )


class LiveCapture:
    """One interface, one BPF filter; :meth:`read` returns the packets that arrived.

    Raises :class:`LiveCaptureError` when the interface does not exist, the process may not
    capture, or the filter does not compile.
    """

    def __init__(
        self,
        iface: str,
        bpf: str | None,
        *,
        snaplen: int = DEFAULT_SNAPLEN,
        promisc: bool = True,
    ) -> None:
        if not sys.platform.startswith("linux"):
            raise LiveCaptureError("live capture is supported on Linux only", "platform")
        try:
            socket.if_nametoindex(iface)
        except (OSError, ValueError):
            known = ", ".join(interface_names()) or "none found"
            raise LiveCaptureError(
                f"no such interface {iface!r} (interfaces: {known})", "interface"
            ) from None
        self.iface = iface
        self.bpf = bpf
        self.snaplen = snaplen
        self.counts = CaptureCounts()
        self._index = 0
        self._scapy_socket = _open(iface, bpf, promisc)
        self._sock: socket.socket = self._scapy_socket.ins
        hatype = self._sock.getsockname()[3]
        self.loopback = hatype == ARPHRD_LOOPBACK
        linktype = _linktype(hatype)
        if linktype is None:
            self._scapy_socket.close()
            raise LiveCaptureError(
                f"{iface} has hardware type {hatype}, which this tool cannot decode "
                "(Ethernet, loopback and raw-IP interfaces can be captured)",
                "interface",
            )
        self.linktype = linktype
        _setsockopts(self._sock)
        # The kernel counts drops from the socket's creation: while Scapy compiled and
        # attached the filter (receive buffer 0, socket not yet bound to the interface) it
        # dropped every packet of the host on purpose. Reading the counters resets them.
        with contextlib.suppress(OSError):
            self._sock.getsockopt(_SOL_PACKET, _PACKET_STATISTICS, 8)
        self._sock.setblocking(False)

    def fileno(self) -> int:
        return self._sock.fileno()

    def read(self, timeout: float) -> list[RawPacket]:
        """The packets that arrived, waiting up to ``timeout`` seconds for the first."""
        batch = self._drain()
        if batch:
            return batch
        try:
            ready, _, _ = select.select([self._sock], [], [], max(0.0, timeout))
        except OSError as exc:
            raise LiveCaptureError(f"capture on {self.iface} failed: {exc}", "io") from exc
        return self._drain() if ready else []

    def _drain(self) -> list[RawPacket]:
        out: list[RawPacket] = []
        recvmsg = self._sock.recvmsg
        counts = self.counts
        for _ in range(_BATCH):
            try:
                data, ancdata, _flags, addr = recvmsg(self.snaplen, _ANCILLARY)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                raise LiveCaptureError(f"capture on {self.iface} failed: {exc}", "io") from exc
            if self.loopback and addr[2] == PACKET_OUTGOING:
                counts.duplicates += 1
                continue
            ts = 0.0
            orig_len = len(data)
            for level, kind, value in ancdata:
                if level == _SOL_PACKET and kind == _PACKET_AUXDATA and len(value) >= 20:
                    status, tp_len, _snap, _mac, _net, tci, tpid = _AUXDATA.unpack_from(value)
                    orig_len = tp_len
                    if (tci or status & _TP_STATUS_VLAN_VALID) and self.linktype == 1:
                        if not status & _TP_STATUS_VLAN_TPID_VALID:
                            tpid = 0x8100
                        data = data[:12] + struct.pack("!HH", tpid, tci) + data[12:]
                        orig_len += 4
                elif level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(value) >= 16:
                    sec, nsec = _TIMESPEC.unpack_from(value)
                    ts = sec + (nsec // 1000) / 1_000_000
            if not ts:
                ts = round(time.time(), 6)
            self._index += 1
            counts.kept += 1
            out.append(RawPacket(ts, self.linktype, data, max(orig_len, len(data)), self._index,
                                 self.iface))  # fmt: skip
        return out

    def kernel_drops(self) -> int:
        """Packets the kernel dropped because we read too slowly (cumulative)."""
        try:
            raw = self._sock.getsockopt(_SOL_PACKET, _PACKET_STATISTICS, 8)
            self.counts.kernel_drops += struct.unpack("=II", raw)[1]
        except OSError:
            pass
        return self.counts.kernel_drops

    def close(self) -> None:
        self.kernel_drops()
        with contextlib.suppress(OSError):
            self._scapy_socket.close()


def _linktype(hatype: int) -> int | None:
    """The pcap link type of an interface hardware type (ARPHRD), if we decode it."""
    from scapy.data import ARPHRD_TO_DLT

    from dissector.capture.linklayer import SUPPORTED_LINKTYPES

    linktype = ARPHRD_TO_DLT.get(hatype)
    if linktype == 12:  # DLT_RAW as Linux numbers it; LINKTYPE_RAW in files
        linktype = 101
    return linktype if linktype in SUPPORTED_LINKTYPES else None


def _setsockopts(sock: socket.socket) -> None:
    """A large receive buffer (bursts), original lengths and VLAN tags, kernel timestamps."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, _RCVBUF)
    except OSError:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
    for level, option in ((_SOL_PACKET, _PACKET_AUXDATA), (socket.SOL_SOCKET, _SO_TIMESTAMPNS)):
        with contextlib.suppress(OSError):
            sock.setsockopt(level, option, 1)


def _open(iface: str, bpf: str | None, promisc: bool) -> Any:
    """Open Scapy's listening socket; map its errors to :class:`LiveCaptureError`."""
    logging.getLogger("scapy").setLevel(logging.ERROR)
    try:
        import scapy.arch  # noqa: F401  (sets conf.L2listen for this platform)
        from scapy.config import conf
        from scapy.error import Scapy_Exception
    except ImportError as exc:  # pragma: no cover - scapy is a dependency
        raise LiveCaptureError(f"Scapy is not available: {exc}", "platform") from exc
    try:
        return conf.L2listen(iface=iface, filter=bpf or None, promisc=promisc)
    except PermissionError:
        raise LiveCaptureError(_privilege_message(iface), "permission") from None
    except Scapy_Exception as exc:
        text = str(exc)
        if "libpcap" in text:
            raise LiveCaptureError(
                f"cannot compile the capture filter: {text} (install libpcap: "
                "apt-get install libpcap0.8)",
                "filter",
            ) from None
        raise LiveCaptureError(f"bad capture filter {bpf!r}: {text}", "filter") from None
    except OSError as exc:
        if exc.errno in (errno.EPERM, errno.EACCES):
            raise LiveCaptureError(_privilege_message(iface), "permission") from None
        if exc.errno in (errno.ENODEV, errno.ENXIO):
            raise LiveCaptureError(f"no such interface {iface!r}", "interface") from None
        raise LiveCaptureError(f"cannot capture on {iface}: {exc}", "io") from None
    except ValueError as exc:
        raise LiveCaptureError(f"cannot capture on {iface}: {exc}", "interface") from None
