"""Follow firmware transfers in one session and reassemble the image (spec §5).

Legacy chunked OTA (UpdateBegin, Chunk, ChunkReceived, ChunkMissed, UpdateDone), its fast
mode (indexed chunks, no per-chunk answers) and OTA protocol v3 (UpdateStart,
UpdateChunk, UpdateAck, UpdateFinish). Chunk data is written at its position (legacy
index × chunk size, v3 (index − 1) × chunk size; unindexed legacy chunks advance when the
device answers 2.04, stay on 4.00); the image is trimmed to the file size the start
message announced (the last legacy chunk is zero-padded on the wire) and hashed.

Memory: one transfer's image at a time, at most :data:`MAX_IMAGE` bytes, plus a byte per
chunk position.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from dissector.report.model import OtaTransfer, clip

MAX_IMAGE = 64 * 1024 * 1024

#: Called with a finished transfer and its complete image; returns where it was written.
ImageSink = Callable[[OtaTransfer, bytes], str | None]

_LEGACY_KINDS = frozenset(
    {"UpdateBegin", "SaveBegin", "UpdateReady", "Chunk", "ChunkReceived", "ChunkMissed"}
    | {"UpdateDone", "UpdateDoneAck"}
)
_V3_KINDS = frozenset(
    {"UpdateStart", "UpdateStartReturn", "UpdateChunk", "UpdateAck", "UpdateFinish"}
    | {"UpdateFinishReturn"}
)
OTA_KINDS = _LEGACY_KINDS | _V3_KINDS


class _Transfer:
    __slots__ = (
        "buffer",
        "have",
        "last_ts",
        "missed",
        "next_pos",
        "pending",
        "pending_ok",
        "report",
        "sent",
        "too_big",
    )

    def __init__(self, report: OtaTransfer) -> None:
        self.report = report
        self.buffer = bytearray()
        self.have = bytearray()  # 1 per chunk position stored with good data
        self.sent = bytearray()  # 1 per chunk position seen at least once
        self.missed: set[int] = set()
        self.next_pos = 0
        self.pending: int | None = None
        self.pending_ok = False
        self.too_big = False
        self.last_ts = report.start_ts

    @staticmethod
    def _flag(bits: bytearray, pos: int) -> bool:
        return pos < len(bits) and bits[pos] == 1

    @staticmethod
    def _set(bits: bytearray, pos: int) -> None:
        if pos >= len(bits):
            bits.extend(bytes(pos + 1 - len(bits)))
        bits[pos] = 1

    def chunk(self, pos: int, data: bytes, good: bool, retransmission: bool) -> None:
        rep = self.report
        rep.chunks_sent += 1
        rep.bytes_sent += len(data)
        if retransmission or self._flag(self.sent, pos):
            rep.resent += 1
        self._set(self.sent, pos)
        if not good:
            return
        size = rep.chunk_size
        if size is None:
            size = rep.chunk_size = len(data)
        start = pos * size
        end = start + len(data)
        if end > MAX_IMAGE:
            self.too_big = True
            return
        if len(self.buffer) < end:
            self.buffer.extend(bytes(end - len(self.buffer)))
        self.buffer[start:end] = data
        self._set(self.have, pos)


class OtaTracker:
    """Per-session OTA follower: feed it the OTA kinds (:data:`OTA_KINDS`) in order."""

    def __init__(self, session: str, sink: ImageSink | None = None) -> None:
        self.session = session
        self.sink = sink
        self.transfers: list[OtaTransfer] = []
        self._current: _Transfer | None = None

    def observe(
        self,
        kind: str,
        decoded: dict[str, Any] | None,
        payload: bytes,
        ts: float,
        retransmission: bool = False,
    ) -> None:
        """One OTA message (``decoded`` as the pipeline decoded it)."""
        d = decoded or {}
        if kind in ("UpdateBegin", "SaveBegin"):
            self._start(ts, "legacy fast" if d.get("fast_ota") else "legacy", d)
            return
        if kind == "UpdateStart":
            self._start(ts, "v3", d)
            return
        cur = self._current
        if cur is None:
            if kind not in ("Chunk", "UpdateChunk"):
                return
            cur = self._start(ts, "v3" if kind == "UpdateChunk" else "legacy", {})
            cur.report.image_note = "the transfer's start message is not in the capture"
        cur.last_ts = ts
        rep = cur.report
        if kind == "UpdateReady":
            if d.get("ready") is False:
                rep.result = f"device refused the update ({d.get('status', '?')})"
                self._finish(cur, ts)
            elif rep.mode.startswith("legacy"):
                rep.mode = "legacy fast" if d.get("fast_ota") else "legacy"
        elif kind == "Chunk":
            self._legacy_chunk(cur, d, payload, retransmission)
        elif kind == "ChunkReceived":
            if d.get("ok"):
                if cur.pending is not None:
                    cur.next_pos = cur.pending + 1
            else:
                rep.crc_rejected += 1
                if cur.pending is not None:
                    cur.next_pos = cur.pending
            cur.pending = None
        elif kind == "ChunkMissed":
            for index in d.get("chunks") or []:
                if isinstance(index, int):
                    cur.missed.add(index)
            rep.missed = len(cur.missed)
        elif kind == "UpdateDoneAck":
            if d.get("complete"):
                rep.complete = True
                rep.result = "device confirmed the update" + _text_suffix(d)
                self._finish(cur, ts)
            else:
                rep.result = "device reported missing chunks (4.00)"
        elif kind == "UpdateStartReturn":
            status = str(d.get("status", ""))
            if not status.startswith("2."):
                rep.result = f"device refused the update ({status or '?'})"
                self._finish(cur, ts)
            elif d.get("resume_offset"):
                rep.image_note = (
                    f"the device already held {d['resume_offset']} bytes (resumed transfer)"
                )
        elif kind == "UpdateChunk":
            index = d.get("chunk_index")
            if isinstance(index, int) and index >= 1:
                cur.chunk(index - 1, payload, True, retransmission)
        elif kind == "UpdateAck":
            self._v3_ack(cur, d)
        elif kind == "UpdateFinishReturn":
            status = str(d.get("status", ""))
            rep.complete = status.startswith("2.")
            stats = d.get("stats")
            text = f"finish answered {status} {d.get('status_name', '')}".rstrip()
            if stats is not None:
                text += " " + clip(json.dumps(stats, separators=(",", ":")), 200)
            rep.result = text
            self._finish(cur, ts)

    def finish(self, ts: float) -> None:
        """Session end: close a transfer still open."""
        if self._current is not None:
            rep = self._current.report
            if not rep.result:
                rep.result = "no end of transfer in the capture"
            self._finish(self._current, self._current.last_ts)

    # -- internals ---------------------------------------------------------------------

    def _start(self, ts: float, mode: str, d: dict[str, Any]) -> _Transfer:
        if self._current is not None:
            prev = self._current.report
            if not prev.result:
                prev.result = "interrupted by a new transfer"
            self._finish(self._current, self._current.last_ts)
        rep = OtaTransfer(self.session, len(self.transfers) + 1, mode, ts)
        for key in ("file_size", "chunk_size"):
            value = d.get(key)
            if isinstance(value, int) and value > 0:
                setattr(rep, key, value)
        dest = d.get("destination_name")
        if isinstance(dest, str):
            rep.destination = dest
        sha = d.get("file_sha256")
        if isinstance(sha, str):
            rep.announced_sha256 = sha
        if rep.file_size and rep.chunk_size:
            rep.chunks_expected = -(-rep.file_size // rep.chunk_size)
        self.transfers.append(rep)
        self._current = _Transfer(rep)
        return self._current

    def _legacy_chunk(
        self, cur: _Transfer, d: dict[str, Any], payload: bytes, retransmission: bool
    ) -> None:
        rep = cur.report
        good = d.get("crc_ok") is not False
        if not good:
            rep.crc_failures += 1
        index = d.get("index")
        if isinstance(index, int):
            if rep.mode == "legacy":
                rep.mode = "legacy fast"
            pos = index
        else:
            if cur.pending is not None and cur.pending_ok:
                cur.next_pos = cur.pending + 1
            pos = cur.next_pos
            cur.pending = pos
            cur.pending_ok = good
        cur.chunk(pos, payload, good, retransmission)

    def _v3_ack(self, cur: _Transfer, d: dict[str, Any]) -> None:
        contiguous = d.get("contiguous")
        received = d.get("received") or []
        if not isinstance(contiguous, int) or not received:
            return
        top = max(r for r in received if isinstance(r, int))
        got = set(received)
        for index in range(contiguous + 1, min(top, contiguous + 4096)):
            if index not in got:
                cur.missed.add(index)
        cur.report.missed = len(cur.missed)

    def _finish(self, cur: _Transfer, ts: float) -> None:
        self._current = None
        rep = cur.report
        rep.end_ts = ts
        rep.duration = max(0.0, ts - rep.start_ts)
        rep.chunks_unique = sum(cur.sent)
        if rep.chunks_expected is None and rep.file_size is None and rep.chunk_size:
            rep.chunks_expected = None
        useful = rep.file_size if rep.file_size else len(cur.buffer)
        if rep.duration and useful:
            rep.throughput = useful / rep.duration
        self._image(cur)

    def _image(self, cur: _Transfer) -> None:
        rep = cur.report
        if cur.too_big:
            rep.image_note = f"image larger than {MAX_IMAGE} bytes: not reassembled"
            return
        if rep.image_note.startswith(("the transfer's start", "the device already held")):
            return
        if not cur.buffer:
            rep.image_note = rep.image_note or "no chunk data in the capture"
            return
        positions = rep.chunks_expected
        if positions is None:
            positions = len(cur.have)
        missing = [p for p in range(positions) if not _flag(cur.have, p)]
        if missing:
            shown = ", ".join(str(p) for p in missing[:10])
            more = f" (+{len(missing) - 10} more)" if len(missing) > 10 else ""
            rep.image_note = (
                f"{len(missing)} of {positions} chunks never arrived intact: {shown}{more}"
            )
            return
        image = bytes(cur.buffer)
        if rep.file_size is not None:
            if len(image) < rep.file_size:
                rep.image_note = f"only {len(image)} of the {rep.file_size} announced bytes arrived"
                return
            image = image[: rep.file_size]
        else:
            rep.image_note = "no file size announced: the image keeps the last chunk's zero padding"
        rep.size = len(image)
        rep.sha256 = hashlib.sha256(image).hexdigest()
        if rep.announced_sha256 is not None:
            rep.sha256_match = rep.sha256 == rep.announced_sha256.lower()
        if self.sink is not None:
            rep.extracted = self.sink(rep, image)


def _flag(bits: bytearray, pos: int) -> bool:
    return pos < len(bits) and bits[pos] == 1


def _text_suffix(d: dict[str, Any]) -> str:
    data = d.get("data")
    if isinstance(data, str) and data:
        return f": {clip(data, 200)}"
    return ""
