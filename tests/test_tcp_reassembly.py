"""Behaviour of the TCP stream reassembler, one rule per test."""

from __future__ import annotations

from dataclasses import dataclass, field

from dissector.capture.packets import TcpSegment
from dissector.capture.tcp_reassembly import (
    SYNLESS_HOLD_SEGMENTS,
    ConnectionClosed,
    ConnectionOpened,
    StreamData,
    StreamEvent,
    StreamGap,
    TcpReassembler,
)

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
PA = PSH | ACK
CLIENT = ("10.0.0.1", 40000)
SERVER = ("10.0.0.2", 5683)
MASK = 0xFFFFFFFF


def mkseg(
    src: tuple[str, int],
    dst: tuple[str, int],
    seq: int,
    payload: bytes = b"",
    flags: int = ACK,
    ack: int = 0,
    ts: float = 1.0,
) -> TcpSegment:
    return TcpSegment(
        ts, 0, src[0], src[1], dst[0], dst[1], seq & MASK, ack & MASK, flags, payload, 4
    )


@dataclass
class Flow:
    """One connection driven by stream offsets instead of raw sequence numbers."""

    r: TcpReassembler = field(default_factory=TcpReassembler)
    client: tuple[str, int] = CLIENT
    server: tuple[str, int] = SERVER
    isn_c: int = 1000
    isn_s: int = 9000
    ts: float = 1.0
    events: list[StreamEvent] = field(default_factory=list)

    def feed(self, s: TcpSegment) -> list[StreamEvent]:
        ev = self.r.feed(s)
        self.events.extend(ev)
        return ev

    def handshake(self) -> None:
        self.feed(mkseg(self.client, self.server, self.isn_c, flags=SYN, ts=self.ts))
        self.feed(
            mkseg(
                self.server,
                self.client,
                self.isn_s,
                flags=SYN | ACK,
                ack=self.isn_c + 1,
                ts=self.ts,
            )
        )
        self.feed(mkseg(self.client, self.server, self.isn_c + 1, ack=self.isn_s + 1, ts=self.ts))

    def c(
        self, off: int, data: bytes = b"", flags: int = PA, ack: int | None = None, ts: float = 1.0
    ) -> list[StreamEvent]:
        """Client sends ``data`` at client-stream offset ``off``; acks server offset ``ack``."""
        a = self.isn_s + 1 + (ack or 0)
        return self.feed(mkseg(self.client, self.server, self.isn_c + 1 + off, data, flags, a, ts))

    def s(
        self, off: int, data: bytes = b"", flags: int = PA, ack: int | None = None, ts: float = 1.0
    ) -> list[StreamEvent]:
        """Server sends ``data`` at server-stream offset ``off``; acks client offset ``ack``."""
        a = self.isn_c + 1 + (ack or 0)
        return self.feed(mkseg(self.server, self.client, self.isn_s + 1 + off, data, flags, a, ts))

    def close(self) -> list[StreamEvent]:
        ev = self.r.close_all(99.0)
        self.events.extend(ev)
        return ev


def data_of(events: list[StreamEvent], side: int) -> list[tuple[int, bytes]]:
    return [(e.offset, e.data) for e in events if isinstance(e, StreamData) and e.side == side]


def gaps_of(events: list[StreamEvent], side: int) -> list[tuple[int, int]]:
    return [(e.offset, e.nbytes) for e in events if isinstance(e, StreamGap) and e.side == side]


def stream(events: list[StreamEvent], side: int) -> bytes:
    """The side's delivered bytes, checking that data and gaps tile the stream in order."""
    pos = 0
    out = bytearray()
    for e in events:
        if isinstance(e, StreamData) and e.side == side:
            assert e.offset == pos
            out += e.data
            pos += len(e.data)
        elif isinstance(e, StreamGap) and e.side == side:
            assert e.offset == pos and e.nbytes > 0
            pos += e.nbytes
    return bytes(out)


def closes(events: list[StreamEvent]) -> list[tuple[int | None, str]]:
    return [(e.side, e.reason) for e in events if isinstance(e, ConnectionClosed)]


# ---------------------------------------------------------------------------- ordering


def test_in_order_segments_are_delivered_immediately_with_offsets() -> None:
    f = Flow()
    f.handshake()
    assert data_of(f.c(0, b"hello"), 0) == [(0, b"hello")]
    assert data_of(f.c(5, b" world"), 0) == [(5, b" world")]
    assert data_of(f.s(0, b"ok", ack=11), 1) == [(0, b"ok")]
    conn = f.events[0].conn
    assert conn.data_bytes == (11, 2)
    assert conn.retransmitted_bytes == (0, 0)
    assert conn.out_of_order_segments == (0, 0)


def test_open_event_reports_syn_and_endpoints() -> None:
    f = Flow()
    f.handshake()
    opened = [e for e in f.events if isinstance(e, ConnectionOpened)]
    assert len(opened) == 1 and opened[0].syn_seen
    conn = opened[0].conn
    assert conn.endpoints == (CLIENT, SERVER)
    assert conn.syn_seen and conn.side_of(*SERVER) == 1 and conn.side_of("1.2.3.4", 1) is None


def test_reordered_segments_are_buffered_until_the_hole_fills() -> None:
    f = Flow()
    f.handshake()
    assert f.c(0, b"aaa") and not data_of(f.c(6, b"ccc"), 0)
    ev = f.c(3, b"bbb")
    assert data_of(ev, 0) == [(3, b"bbbccc")]
    assert stream(f.events, 0) == b"aaabbbccc"
    assert f.events[0].conn.out_of_order_segments == (1, 0)


def test_hole_filled_later_leaves_no_gap() -> None:
    f = Flow()
    f.handshake()
    f.c(0, b"0123")
    f.c(8, b"89")
    f.c(10, b"ab")
    f.c(4, b"4567")
    f.c(12, b"", flags=FIN | ACK)
    assert stream(f.events, 0) == b"0123456789ab"
    assert gaps_of(f.events, 0) == []
    assert closes(f.events) == [(0, "fin")]


def test_duplicate_segment_is_delivered_once_and_counted() -> None:
    f = Flow()
    f.handshake()
    f.c(0, b"abcdef")
    assert f.c(0, b"abcdef") == []
    conn = f.events[0].conn
    assert conn.retransmitted_bytes == (6, 0)
    assert conn.retransmitted_segments == (1, 0)
    assert conn.conflicting_overlaps == (0, 0)


def test_partial_retransmission_delivers_only_the_new_tail() -> None:
    f = Flow()
    f.handshake()
    f.c(0, b"abcdef")
    assert data_of(f.c(3, b"defghi"), 0) == [(6, b"ghi")]
    conn = f.events[0].conn
    assert conn.retransmitted_bytes == (3, 0) and conn.conflicting_overlaps == (0, 0)


def test_overlap_with_same_bytes_is_not_a_conflict() -> None:
    f = Flow()
    f.handshake()
    f.c(0, b"ab")
    f.c(4, b"efgh")
    f.c(6, b"ghij")  # overlaps buffered data, same bytes
    f.c(2, b"cdef")  # fills the hole, overlaps buffered data
    assert stream(f.events, 0) == b"abcdefghij"
    conn = f.events[0].conn
    assert conn.conflicting_overlaps == (0, 0)
    assert conn.retransmitted_bytes == (4, 0)


def test_conflicting_overlap_keeps_first_bytes_and_counts_conflict() -> None:
    f = Flow()
    f.handshake()
    f.c(0, b"ab")
    f.c(4, b"EFGH")
    f.c(6, b"xyIJ")  # conflicts with buffered "GH"
    f.c(2, b"CDzz")  # conflicts with buffered "EF"
    assert stream(f.events, 0) == b"abCDEFGHIJ"
    f.c(8, b"qq")  # conflicts with delivered "IJ"
    assert stream(f.events, 0) == b"abCDEFGHIJ"
    assert f.events[0].conn.conflicting_overlaps == (3, 0)


def test_one_byte_segments_in_any_order() -> None:
    f = Flow()
    f.handshake()
    payload = b"particle!"
    order = [0, 2, 1, 4, 3, 8, 7, 6, 5]
    for i in order:
        f.c(i, payload[i : i + 1])
    f.c(2, payload[2:3])  # duplicate
    assert stream(f.events, 0) == payload
    assert f.events[0].conn.retransmitted_bytes == (1, 0)


def test_hole_never_filled_is_reported_at_fin_with_exact_size() -> None:
    f = Flow()
    f.handshake()
    f.c(0, b"0123")
    f.c(10, b"abc")
    assert gaps_of(f.events, 0) == []
    ev = f.c(13, b"de", flags=FIN | ACK)
    assert gaps_of(ev, 0) == [(4, 6)]
    assert data_of(ev, 0) == [(10, b"abcde")]
    assert closes(ev) == [(0, "fin")]
    # the gap event comes before the data, and the close after it
    kinds = [type(e).__name__ for e in ev]
    assert kinds == ["StreamGap", "StreamData", "ConnectionClosed"]
    conn = f.events[0].conn
    assert conn.gap_bytes == (6, 0) and conn.gaps == (1, 0) and conn.data_bytes == (9, 0)
    # the missing bytes arriving after the FIN are not delivered
    assert f.c(4, b"456789") == []


def test_gap_before_fin_without_buffered_data() -> None:
    f = Flow()
    f.handshake()
    f.c(0, b"abc")
    ev = f.c(7, b"", flags=FIN | ACK)
    assert gaps_of(ev, 0) == [(3, 4)] and closes(ev) == [(0, "fin")]


def test_hole_declared_lost_when_the_peer_acks_beyond_it() -> None:
    f = Flow()
    f.handshake()
    f.c(0, b"abcd")
    f.c(8, b"ijkl")  # 4..8 missing from the capture
    assert gaps_of(f.events, 0) == []
    ev = f.s(0, b"", flags=ACK, ack=12)  # server acknowledges everything up to 12
    assert gaps_of(ev, 0) == [(4, 4)]
    assert data_of(ev, 0) == [(8, b"ijkl")]
    # later data continues in order
    assert data_of(f.c(12, b"mn"), 0) == [(12, b"mn")]


def test_ack_inside_a_hole_declares_only_the_acknowledged_part() -> None:
    f = Flow()
    f.handshake()
    f.c(0, b"ab")
    f.c(10, b"kl")
    ev = f.s(0, b"", flags=ACK, ack=5)
    assert gaps_of(ev, 0) == [(2, 3)] and data_of(ev, 0) == []
    ev = f.c(5, b"fghij")  # the rest of the hole is retransmitted and captured
    assert data_of(ev, 0) == [(5, b"fghijkl")]
    assert f.events[0].conn.gap_bytes == (3, 0)


def test_ack_beyond_last_byte_is_not_a_gap_until_later_data_or_end() -> None:
    f = Flow()
    f.handshake()
    f.c(0, b"ab")
    f.s(0, b"", flags=ACK, ack=5)  # peer got 3 bytes the capture does not have (yet)
    assert gaps_of(f.events, 0) == []
    ev = f.c(2, b"cde")  # capture reordering: they do show up
    assert data_of(ev, 0) == [(2, b"cde")]
    f.s(0, b"", flags=ACK, ack=9)
    ev = f.close()
    assert gaps_of(ev, 0) == [(5, 4)]
    assert closes(ev) == [(None, "end_of_capture")]


def test_sequence_numbers_wrap_around_2_pow_32() -> None:
    f = Flow(isn_c=0xFFFFFFF0, isn_s=0xFFFFFFFE)
    f.handshake()
    chunks = [bytes([i]) * 7 for i in range(10)]
    f.c(7, chunks[1])  # out of order across the wrap
    f.c(0, chunks[0])
    for i in range(2, 10):
        f.c(7 * i, chunks[i])
    f.s(0, b"xyz", ack=70)
    f.s(3, b"w", flags=FIN | PA, ack=70)
    assert stream(f.events, 0) == b"".join(chunks)
    assert stream(f.events, 1) == b"xyzw"
    assert gaps_of(f.events, 0) == [] and gaps_of(f.events, 1) == []


def test_syn_and_fin_consume_one_sequence_number() -> None:
    f = Flow()
    f.handshake()
    f.c(0, b"abc", flags=FIN | PA)
    ev = f.s(0, b"", flags=FIN | ACK, ack=4)  # ACK of data + FIN: no gap
    assert gaps_of(f.events, 0) == [] and closes(ev) == [(1, "fin")]
    assert f.events[0].conn.finished
    assert f.events[0].conn.close_reason == "fin"
    assert f.c(4, b"", flags=ACK, ack=1) == []  # final ACK absorbed, no new connection
    assert f.r.connection_count == 1


def test_data_on_syn_is_delivered() -> None:
    f = Flow()
    f.feed(mkseg(CLIENT, SERVER, f.isn_c, b"tfo-data", SYN))
    f.feed(mkseg(SERVER, CLIENT, f.isn_s, b"", SYN | ACK, ack=f.isn_c + 9))
    f.c(8, b"more")
    f.c(0, b"tfo-data")  # retransmitted after the handshake
    assert stream(f.events, 0) == b"tfo-datamore"
    assert f.events[0].conn.retransmitted_bytes == (8, 0)


def test_keepalive_probes_are_ignored() -> None:
    f = Flow()
    f.handshake()
    f.c(0, b"abcd")
    assert f.c(3, b"\x00") == []  # BSD-style probe: 1 garbage byte at next-1
    assert f.c(3, b"") == []  # Linux-style probe: no data at next-1
    assert data_of(f.c(4, b"e"), 0) == [(4, b"e")]
    conn = f.events[0].conn
    assert conn.keepalive_probes == (1, 0)
    assert conn.conflicting_overlaps == (0, 0) and conn.retransmitted_bytes == (0, 0)


def test_zero_window_probe_byte_is_delivered_once() -> None:
    f = Flow()
    f.handshake()
    f.c(0, b"abcd")
    f.c(4, b"e")  # probe carries the next byte
    f.c(4, b"efgh")  # later retransmitted with more data
    assert stream(f.events, 0) == b"abcdefgh"
    assert f.events[0].conn.retransmitted_bytes == (1, 0)


def test_buffer_limit_declares_gap_and_releases() -> None:
    f = Flow(r=TcpReassembler(max_buffer_per_direction=10))
    f.handshake()
    f.c(0, b"ab")
    f.c(5, b"fghij")
    assert gaps_of(f.events, 0) == []
    ev = f.c(10, b"klmnop")  # 11 bytes buffered > 10
    assert gaps_of(ev, 0) == [(2, 3)]
    assert data_of(ev, 0) == [(5, b"fghijklmnop")]


def test_segments_far_beyond_the_window_are_ignored() -> None:
    f = Flow()
    f.handshake()
    f.c(0, b"ab")
    f.c((1 << 30) + 100, b"junk")
    f.c(2, b"c", flags=FIN | PA)
    assert stream(f.events, 0) == b"abc" and gaps_of(f.events, 0) == []
    assert f.events[0].conn.ignored_segments == 1


# ---------------------------------------------------------------------------- lifecycle


def test_rst_ends_the_connection_and_later_data_is_ignored() -> None:
    f = Flow()
    f.handshake()
    f.c(0, b"ab")
    f.c(5, b"fg")
    ev = f.s(0, b"", flags=RST | ACK, ack=2)
    assert gaps_of(ev, 0) == [(2, 3)] and data_of(ev, 0) == [(5, b"fg")]
    assert closes(ev) == [(1, "rst")]
    conn = f.events[0].conn
    assert conn.finished and conn.close_reason == "rst"
    assert f.c(7, b"late") == [] and f.s(0, b"late") == []
    assert conn.ignored_segments == 2
    assert f.close() == []


def test_stray_rst_opens_no_connection() -> None:
    r = TcpReassembler()
    assert r.feed(mkseg(CLIENT, SERVER, 5, flags=RST)) == []
    assert r.connection_count == 0 and r.ignored_segments == 1


def test_port_reuse_after_close_gives_a_new_connection() -> None:
    r = TcpReassembler()
    f1 = Flow(r=r)
    f1.handshake()
    f1.c(0, b"first", flags=FIN | PA)
    f1.s(0, b"", flags=FIN | ACK, ack=6)
    f2 = Flow(r=r, isn_c=777_000, isn_s=55, ts=2.0)
    f2.handshake()
    f2.c(0, b"second")
    c1 = f1.events[0].conn
    c2 = f2.events[0].conn
    assert c1 is not c2 and c2.id > c1.id
    assert stream(f2.events, 0) == b"second"
    assert closes(f2.events) == []  # the old connection was already closed


def test_new_syn_with_other_isn_on_open_connection_replaces_it() -> None:
    r = TcpReassembler()
    f1 = Flow(r=r)
    f1.handshake()
    f1.c(0, b"old")
    f2 = Flow(r=r, isn_c=5_000_000)
    f2.handshake()
    assert closes(f2.events) == [(None, "reused")]
    assert f2.events[1].conn.id > f1.events[0].conn.id
    f2.c(0, b"new")
    assert stream(f2.events, 0) == b"new"


def test_retransmitted_syn_and_synack_are_ignored() -> None:
    f = Flow()
    f.handshake()
    f.handshake()
    f.c(0, b"x")
    assert len([e for e in f.events if isinstance(e, ConnectionOpened)]) == 1
    assert stream(f.events, 0) == b"x"


def test_capture_starting_at_syn_ack_knows_both_starts() -> None:
    f = Flow()
    f.feed(mkseg(SERVER, CLIENT, f.isn_s, flags=SYN | ACK, ack=f.isn_c + 1))
    f.c(0, b"req")
    f.s(0, b"resp", ack=3)
    conn = f.events[0].conn
    assert conn.syn_seen and conn.endpoints == (CLIENT, SERVER)
    assert stream(f.events, 0) == b"req" and stream(f.events, 1) == b"resp"


def test_synless_connection_starts_at_the_first_bytes_seen() -> None:
    f = Flow()
    ev = f.c(100, b"mid", ack=50)
    opened = [e for e in ev if isinstance(e, ConnectionOpened)]
    assert opened and not opened[0].syn_seen
    # server side: the client's ACK (server offset 50) says nothing before 50 is outstanding
    assert data_of(f.s(50, b"resp", ack=103), 1) == [(0, b"resp")]
    # that response acknowledges the client's start, so the held bytes are released
    assert data_of(f.events, 0) == [(0, b"mid")]
    assert f.events[0].conn.endpoints == (CLIENT, SERVER)


def test_synless_side_sent_first_by_server_is_side_zero() -> None:
    f = Flow()
    f.s(0, b"banner", ack=0)
    conn = f.events[0].conn
    assert conn.endpoints == (SERVER, CLIENT) and conn.side_of(*SERVER) == 0


def test_synless_start_accepts_an_earlier_reordered_segment() -> None:
    f = Flow()
    assert data_of(f.c(1000, b"BBBB"), 0) == []  # held: nothing confirms the start yet
    assert data_of(f.c(996, b"AAAA"), 0) == []  # earlier bytes: the start moves back
    ev = f.s(0, b"", flags=ACK, ack=996)  # peer acknowledges up to the new start
    assert data_of(ev, 0) == [(0, b"AAAABBBB")]
    assert f.events[0].conn.out_of_order_segments == (1, 0)


def test_synless_hold_ends_after_a_few_segments_without_acks() -> None:
    f = Flow()
    for i in range(SYNLESS_HOLD_SEGMENTS - 1):
        f.c(10 + i, bytes([65 + i]), flags=PSH)
    assert data_of(f.events, 0) == []
    ev = f.c(10 + SYNLESS_HOLD_SEGMENTS - 1, b"!", flags=PSH)
    assert stream(ev, 0) == b"ABCDEFG!"
    # bytes before the accepted start are now old: not delivered
    assert f.c(5, b"early", flags=PSH) == []
    assert f.events[0].conn.retransmitted_bytes == (5, 0)


def test_synless_hold_is_skipped_when_peer_ack_matches_start() -> None:
    f = Flow()
    f.s(7, b"", flags=ACK, ack=20)  # server's ACK: client offset 20 is the next byte
    ev = f.c(20, b"now")
    assert f.events[0].conn.endpoints == (SERVER, CLIENT)  # the server was seen first: side 0
    assert data_of(ev, 1) == [(0, b"now")]


def test_synless_trailing_fin_only_side() -> None:
    f = Flow()
    f.c(10, b"abc")
    ev = f.s(4, b"", flags=FIN | ACK, ack=13)
    assert data_of(ev, 0) == [(0, b"abc")]
    assert closes(ev) == [(1, "fin")]


def test_idle_connections_time_out() -> None:
    r = TcpReassembler(idle_timeout=10.0)
    f = Flow(r=r)
    f.handshake()
    f.c(0, b"ab", ts=1.0)
    f.c(4, b"ef", ts=2.0)
    other = Flow(r=r, client=("10.0.0.9", 1), isn_c=1, ts=50.0)
    other.handshake()  # 48 s later: the first connection has been idle too long
    ev = other.events
    assert gaps_of(ev, 0) == [(2, 2)] and data_of(ev, 0) == [(4, b"ef")]
    assert closes(ev) == [(None, "timeout")] and ev[-1].conn is not f.events[0].conn
    assert r.connection_count == 1
    ev = r.expire(100.0)
    assert closes(ev) == [(None, "timeout")] and r.connection_count == 0


def test_close_all_releases_buffers_and_closes_open_connections() -> None:
    f = Flow()
    f.handshake()
    f.c(0, b"a")
    f.c(3, b"d")
    f.s(0, b"resp")
    ev = f.close()
    assert gaps_of(ev, 0) == [(1, 2)] and data_of(ev, 0) == [(3, b"d")]
    assert closes(ev) == [(None, "end_of_capture")]
    assert f.r.connection_count == 0


def test_connection_table_is_bounded() -> None:
    r = TcpReassembler(max_connections=4)
    flows = [Flow(r=r, client=("10.1.0.1", 1000 + i), ts=float(i)) for i in range(6)]
    for i, f in enumerate(flows):
        f.c(0, b"x", flags=PSH, ts=float(i))
    assert r.connection_count <= 4
    assert closes(flows[4].events) == [(None, "evicted")]
    evicted = next(e for e in flows[4].events if isinstance(e, ConnectionClosed))
    assert evicted.conn is flows[0].events[0].conn


def test_5000_interleaved_connections() -> None:
    r = TcpReassembler()
    flows = [
        Flow(r=r, client=(f"10.2.{i // 250}.{i % 250}", 30000 + i), isn_c=i * 7919, isn_s=i * 31)
        for i in range(5000)
    ]
    for f in flows:
        f.handshake()
    for k in range(3):
        for i, f in enumerate(flows):
            f.c(4 * k, b"%04d" % ((i + k) % 10000), ack=2 * k)
            f.s(2 * k, b"%02d" % (k + i % 7), ack=4 * (k + 1))
    for f in flows:
        f.c(12, b"", flags=FIN | ACK, ack=6)
        f.s(6, b"", flags=FIN | ACK, ack=13)
    ids = set()
    for i, f in enumerate(flows):
        assert stream(f.events, 0) == b"".join(b"%04d" % ((i + k) % 10000) for k in range(3))
        assert stream(f.events, 1) == b"".join(b"%02d" % (k + i % 7) for k in range(3))
        assert closes(f.events) == [(0, "fin"), (1, "fin")]
        ids.add(f.events[0].conn.id)
    assert len(ids) == 5000
