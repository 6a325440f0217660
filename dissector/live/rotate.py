"""``sniff --write``: keep the raw packets, optionally in rotating files.

Without rotation everything goes to the one file. With ``max_bytes`` a new file starts
once the current one reached that size: ``cap.pcap``, then ``cap.1.pcap``, ``cap.2.pcap``…
With ``max_files`` only the newest files are kept (the oldest is deleted). Files are
pcapng when the name ends in ``.pcapng``, classic pcap otherwise; every file is complete on
its own and ``particle-dissect dissect cap*.pcap`` reads them back as one capture.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import IO

from dissector.capture.packets import RawPacket
from dissector.capture.writer import PcapngWriter, PcapWriter

__all__ = ["RotatingCaptureWriter"]


class RotatingCaptureWriter:
    """Write captured packets to ``path`` (and its rotations). Raises ``OSError``."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        linktype: int,
        *,
        snaplen: int = 262144,
        interface: str | None = None,
        max_bytes: int | None = None,
        max_files: int | None = None,
    ) -> None:
        if max_bytes is not None and max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        if max_files is not None and max_files <= 0:
            raise ValueError("max_files must be positive")
        self.path = Path(path)
        self.linktype = linktype
        self.snaplen = snaplen
        self.interface = interface
        self.max_bytes = max_bytes
        self.max_files = max_files
        self.packets = 0
        self.files: list[Path] = []
        self.deleted: list[Path] = []
        self._number = 0
        self._file: IO[bytes] | None = None
        self._writer: PcapWriter | PcapngWriter | None = None
        self._open()

    def _name(self, number: int) -> Path:
        if number == 0:
            return self.path
        return self.path.with_name(f"{self.path.stem}.{number}{self.path.suffix}")

    def _open(self) -> None:
        name = self._name(self._number)
        self._file = open(name, "wb")  # noqa: SIM115 - closed in _close / close
        if self.path.suffix.lower() == ".pcapng":
            ng = PcapngWriter(self._file)
            ng.add_interface(self.linktype, name=self.interface, snaplen=self.snaplen)
            self._writer = ng
        else:
            self._writer = PcapWriter(self._file, self.linktype, snaplen=self.snaplen)
        self.files.append(name)
        if self.max_files is not None:
            while len(self.files) > self.max_files:
                old = self.files.pop(0)
                with contextlib.suppress(FileNotFoundError):
                    old.unlink()
                self.deleted.append(old)

    def write(self, pkt: RawPacket) -> None:
        """Append one packet (rotating first when the current file is full)."""
        assert self._file is not None and self._writer is not None
        if self.max_bytes is not None and self.packets and self._file.tell() >= self.max_bytes:
            self._close()
            self._number += 1
            self._open()
            assert self._writer is not None
        if isinstance(self._writer, PcapngWriter):
            self._writer.write(pkt.ts, pkt.data, 0, pkt.orig_len)
        else:
            self._writer.write_packet(pkt.ts, pkt.data, pkt.orig_len)
        self.packets += 1

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file = None
        self._writer = None

    def close(self) -> None:
        """Flush and close the current file."""
        self._close()
