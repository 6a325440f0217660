"""The floor: the least a Python program does per message, timed beside ours.

    python benchmarks/floor.py CAPTURE > /dev/null

Reads a classic Ethernet/IPv4 pcap (the benchmark captures) with ``struct``, follows
each TCP direction in order and cuts Particle's ``u16 length ‖ ciphertext`` frames, or
cuts the DTLS records of each UDP datagram, and writes one small orjson line per frame
or record (time, direction, length, the ciphertext as hex). No decryption, no CoAP, no
Particle semantics, no error handling, no reassembly of anything out of order: what is
left is the interpreter's own cost of touching each message once. ``run.py`` times it
on the same file in the same run, so ``ours/floor`` says how much of our time the real
work costs, and ``floor`` against the goal says what a pure-Python design can reach.
"""

from __future__ import annotations

import struct
import sys

import orjson

_REC = struct.Struct("<IIII")
_PORTS = struct.Struct(">HHI")
_DTLS_HEADER = 13


def main(path: str) -> int:
    with open(path, "rb") as f:
        data = f.read()
    out = sys.stdout.buffer
    write = out.write
    dumps = orjson.dumps
    newline = orjson.OPT_APPEND_NEWLINE
    streams: dict[tuple[int, int], list[object]] = {}
    pos = 24
    n = len(data)
    count = 0
    while pos + 16 <= n:
        sec, usec, incl, _ = _REC.unpack_from(data, pos)
        pkt = data[pos + 16 : pos + 16 + incl]
        pos += 16 + incl
        if pkt[12:14] != b"\x08\x00":
            continue
        ihl = (pkt[14] & 15) * 4
        end = 14 + ((pkt[16] << 8) | pkt[17])
        l4 = 14 + ihl
        sport, dport, seq = _PORTS.unpack_from(pkt, l4)
        ts = sec + usec * 1e-6
        if pkt[23] == 17:  # UDP: DTLS records
            body = pkt[l4 + 8 : end]
            direction = "device->cloud" if dport == 5684 else "cloud->device"
            p = 0
            while p + _DTLS_HEADER <= len(body):
                length = (body[p + 11] << 8) | body[p + 12]
                rec = body[p + _DTLS_HEADER : p + _DTLS_HEADER + length]
                p += _DTLS_HEADER + length
                count += 1
                write(dumps({"ts": ts, "direction": direction, "length": length,
                             "data": rec.hex()}, option=newline))  # fmt: skip
            continue
        payload = pkt[l4 + (pkt[l4 + 12] >> 4) * 4 : end]
        if not payload:
            continue
        key = (sport, dport)
        state = streams.get(key)
        if state is None:
            # The handshake blobs come first: 40 + 384 bytes from the cloud, 256 from the
            # device (in the benchmark captures, the first data of each direction).
            skip = 424 if sport == 5683 else 256
            streams[key] = state = [seq + len(payload), bytearray(payload)]
            state.append(skip)
        elif seq != state[0]:
            continue  # not in order: the floor does not reassemble
        else:
            state[0] = seq + len(payload)
            state[1] += payload  # type: ignore[operator]
        buf = state[1]
        assert isinstance(buf, bytearray)
        skip = state[2]
        assert isinstance(skip, int)
        if skip:
            dropped = min(skip, len(buf))
            del buf[:dropped]
            state[2] = skip - dropped
        direction = "device->cloud" if dport == 5683 else "cloud->device"
        p = 0
        avail = len(buf)
        while avail - p >= 2:
            length = (buf[p] << 8) | buf[p + 1]
            if avail - p - 2 < length:
                break
            frame = buf[p + 2 : p + 2 + length]
            p += 2 + length
            count += 1
            write(dumps({"ts": ts, "direction": direction, "length": length,
                         "data": frame.hex()}, option=newline))  # fmt: skip
        del buf[:p]
    out.flush()
    print(f"{count} frames or records", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
