"""The access-log reader against an independent reference (a partition-based parser
written here), on lines built to stress it: IPv4 and IPv6 clients, user agents with
spaces and escaped quotes, times changing inside a 64-line block, and malformed lines
of every shape (garbage, empty, truncated, a line without spaces that the fast pattern
would read into the next line)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probes import accesslog
from probes.accesslog import (
    BLOCK_LINES,
    COMBINED,
    LogFormatError,
    TimeCache,
    clients_with_5xx,
    compile_format,
    duration_seconds,
    odd_durations,
    parse_chunk,
    slow_mask,
    split_complete,
    times_with_5xx,
)

AGENTS = [
    "curl/8.5.0",
    'Mozilla/5.0 (compatible; \\"quoted\\" bot; +http://example.com/bot)',
    'weird \\"agent\\" with \\"many\\" quotes and spaces',
    "-",
    "recorder/0.1.0",  # the recorder's own probes (left out of the counts)
    "recorder-lab-traffic/1",  # not the recorder's own: the lab's users
]


def reference(line: bytes) -> tuple[bytes, bytes, bytes, bool] | None:
    """(client, time, status class, the recorder's own request) of a combined line, or
    None: a different technique from the reader (partition, not a regular expression)."""
    client, sep, rest = line.partition(b" - ")
    if not sep or not client or b" " in client:
        return None
    user, sep, rest = rest.partition(b" [")
    if not sep or b" " in user:
        return None
    when, rest = rest[:26], rest[26:]
    if len(when) != 26 or not rest.startswith(b'] "'):
        return None
    request, sep, rest = rest[3:].partition(b'" ')
    if not sep or b'"' in request:
        return None
    status = rest[:3]
    if len(status) != 3 or not status.isdigit() or rest[3:4] != b" ":
        return None
    return client, when, status[:1], own_agent(rest[4:])


def own_agent(rest: bytes) -> bool:
    """After the status: `$body_bytes_sent "$http_referer" "recorder/...`."""
    size = rest.find(b" ")
    if size < 0 or rest[size : size + 2] != b' "':
        return False
    referer = rest[size + 2 :]
    end = referer.find(b'"')
    return end >= 0 and referer[end:].startswith(b'" "recorder/')


def valid_line(rnd: random.Random, second: int) -> bytes:
    if rnd.random() < 0.3:
        client = f"2001:db8::{rnd.randrange(1, 300):x}"
    else:
        client = f"10.0.{rnd.randrange(3)}.{rnd.randrange(1, 40)}"
    user = "-" if rnd.random() < 0.9 else "alice"
    when = f"23/Nov/2026:14:{second // 60 % 60:02d}:{second % 60:02d} +0300"
    status = rnd.choice([200, 200, 200, 301, 404, 499, 500, 502, 503])
    path = rnd.choice(["/", "/a b", "/x?q=1&r=2", "/%22quoted%22"])
    return (
        f'{client} - {user} [{when}] "GET {path} HTTP/1.1" {status} {rnd.randrange(999)} '
        f'"-" "{rnd.choice(AGENTS)}"'
    ).encode()


def malformed_line(rnd: random.Random, second: int) -> bytes:
    good = valid_line(rnd, second)
    return rnd.choice(
        [
            b"garbage",  # no space at all: the fast client loop would cross the newline
            b"",
            b"error: something went wrong",
            good[: rnd.randrange(1, good.index(b'" ') + 4)],  # cut before the status ends
            good.replace(b'HTTP/1.1"', b'HTTP/1.1" junk"', 1),  # a raw quote in the request
            good.replace(b" - ", b" + ", 1),
            b"1.2.3.4 - - [23/Nov/2026:14:00:00 +0300]",
        ]
    )


def build(lines: Sequence[bytes]) -> bytes:
    return b"\n" + b"\n".join(lines)


def check_against_reference(lines: Sequence[bytes]) -> accesslog.Lines:
    fmt = compile_format(None)
    parsed = parse_chunk(fmt, build(lines))
    well_formed = [r for r in map(reference, lines) if r is not None]
    expected = [r for r in well_formed if not r[3]]
    assert parsed.lines == len(lines)
    assert parsed.malformed == len(lines) - len(well_formed)
    assert parsed.clients == [e[0] for e in expected]
    assert parsed.full_times() == [e[1] for e in expected]
    assert parsed.digits == b"".join(e[2] for e in expected)
    assert parsed.own_times == [r[1] for r in well_formed if r[3]]
    return parsed


def mixed(n: int, seed: int, bad_share: float) -> list[bytes]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        second = i // 7  # several lines per second, seconds change inside blocks
        out.append(
            malformed_line(rnd, second) if rnd.random() < bad_share else valid_line(rnd, second)
        )
    return out


@pytest.mark.parametrize("n", [1, 2, 63, 64, 65, 127, 128, 129, 1000])
def test_block_boundaries_clean(n: int) -> None:
    parsed = check_against_reference(mixed(n, seed=n, bad_share=0.0))
    assert parsed.malformed == 0


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("bad_share", [0.01, 0.2, 0.9])
def test_mixed_with_malformed_lines(seed: int, bad_share: float) -> None:
    check_against_reference(mixed(700, seed=seed, bad_share=bad_share))


@pytest.mark.parametrize(
    "fmt_text", ["$remote_addr $status $msec", '$remote_addr $msec "$request" $status']
)
def test_a_block_reads_every_line_as_it_reads_it_alone(fmt_text: str) -> None:
    """Lines of a 64-line block may share the block's first time: a `$msec` that merely
    starts like it (`1.9` and `1.99999999999999999999`, another second once rounded) must
    keep its own. It took the first line's time until a review found it."""
    rnd = random.Random(7)
    fmt = compile_format(fmt_text)
    lines = []
    for i in range(1000):
        msec = rnd.choice(["1795433405.", "1.", "253402300799."]) + "9" * rnd.randrange(1, 25)
        line = fmt_text.replace("$remote_addr", f"10.0.0.{i % 7}").replace("$msec", msec)
        line = line.replace("$status", rnd.choice(["200", "503"])).replace("$request", "GET /")
        lines.append(line.encode())
    whole = parse_chunk(fmt, build(lines))
    alone = [parse_chunk(fmt, b"\n" + line) for line in lines]
    assert whole.full_times() == [t for one in alone for t in one.full_times()]
    assert whole.clients == [c for one in alone for c in one.clients]
    assert whole.digits == b"".join(one.digits for one in alone)
    assert whole.matched == len(lines)


def test_line_without_spaces_does_not_swallow_the_next() -> None:
    rnd = random.Random(1)
    lines = [valid_line(rnd, 0) for _ in range(70)]
    lines[10] = b"garbage"  # the fast pattern's client loop would run into line 11
    parsed = check_against_reference(lines)
    assert parsed.malformed == 1
    assert len(parsed.clients) + parsed.own == 69


def test_truncated_request_does_not_merge_with_a_crafted_next_line() -> None:
    rnd = random.Random(2)
    lines = [valid_line(rnd, 0) for _ in range(70)]
    lines[20] = b'10.9.9.9 - - [23/Nov/2026:14:00:00 +0300] "GET /cut-off-here'
    # The next request text starts like a status: only the newline tells them apart.
    lines[21] = b'10.8.8.8 - - [23/Nov/2026:14:00:00 +0300] " 200 x" 400 0 "-" "-"'
    parsed = check_against_reference(lines)
    assert b"10.9.9.9" not in parsed.clients


def test_escaped_quotes_in_user_agent_and_ipv6() -> None:
    line = (
        b'2001:db8::1 - - [23/Nov/2026:14:00:00 +0300] "GET / HTTP/1.1" 503 0 "-" '
        b'"Mozilla \\"x\\" y"'
    )
    parsed = check_against_reference([line])
    assert parsed.clients == [b"2001:db8::1"]
    assert parsed.digits == b"5"


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.booleans(), st.integers(0, 2**31), st.integers(0, 200)),
        min_size=0,
        max_size=200,
    )
)
def test_property_matches_reference(spec: list[tuple[bool, int, int]]) -> None:
    lines = []
    for bad, seed, second in spec:
        rnd = random.Random(seed)
        lines.append(malformed_line(rnd, second) if bad else valid_line(rnd, second))
    if lines:
        check_against_reference(lines)


def test_counts_helpers() -> None:
    lines = mixed(300, seed=9, bad_share=0.1)
    parsed = check_against_reference(lines)
    ref = [r for r in map(reference, lines) if r is not None and not r[3]]
    counts = {f"{d}xx": parsed.digits.count(str(d).encode()) for d in range(1, 6)}
    assert counts == {f"{d}xx": sum(1 for r in ref if r[2] == str(d).encode()) for d in range(1, 6)}
    assert set(clients_with_5xx(parsed)) == {r[0] for r in ref if r[2] == b"5"}
    assert times_with_5xx(parsed) == {r[1] for r in ref if r[2] == b"5"}


def test_split_complete_keeps_the_partial_line() -> None:
    chunk, tail = split_complete(b"", b"a\nb\nc")
    assert chunk == b"\na\nb" and tail == b"c"
    chunk, tail = split_complete(tail, b"d\n")
    assert chunk == b"\ncd" and tail == b""
    chunk, tail = split_complete(b"x", b"yz")
    assert chunk == b"" and tail == b"xyz"


# ---- formats ----------------------------------------------------------------------------


def test_combined_is_the_default() -> None:
    assert compile_format(None) is compile_format(COMBINED)
    assert compile_format(None).name == "combined"


def test_custom_format_status_first_and_iso_time() -> None:
    fmt = compile_format('$status $remote_addr [$time_iso8601] "$request" $request_time')
    buf = build(
        [
            b'503 10.0.0.1 [2026-11-23T14:30:05+03:00] "GET / HTTP/1.1" 0.012',
            b'200 10.0.0.2 [2026-11-23T14:30:06+03:00] "GET / HTTP/1.1" 0.002',
            b"nonsense",
        ]
    )
    parsed = parse_chunk(fmt, buf)
    assert parsed.clients == [b"10.0.0.1", b"10.0.0.2"]
    assert parsed.digits == b"52"
    assert parsed.malformed == 1
    times = TimeCache(fmt.time_var)
    assert times(parsed.full_times()[0]) == 1795433405  # 2026-11-23T11:30:05Z


def test_a_skipped_value_may_stop_at_a_parenthesis() -> None:
    """A `(` after a variable the reader skips is the stop of that value, and only that:
    `?` and `:` inside the value are ordinary bytes (they once ended it, so the line was
    malformed; found by fuzzing the compiled counter against this reader)."""
    fmt = compile_format("$remote_addr [$time_local] $request($status) $host")
    lines = [
        b"10.0.0.1 [23/Nov/2026:14:30:05 +0300] GET /?a=b:c HTTP/1.1(503) example.org",
        b"10.0.0.2 [23/Nov/2026:14:30:05 +0300] GET /:x?(200) example.org",
        b"10.0.0.3 [23/Nov/2026:14:30:05 +0300] no status here example.org",
    ]
    parsed = parse_chunk(fmt, build(lines * 40))  # past one 64-line block
    assert parsed.clients == [b"10.0.0.1", b"10.0.0.2"] * 40
    assert parsed.digits == b"52" * 40
    assert parsed.malformed == 40


def test_custom_format_forwarded_client_and_msec() -> None:
    fmt = compile_format("$http_x_forwarded_for|$msec|$status|$body_bytes_sent")
    parsed = parse_chunk(fmt, build([b"203.0.113.9|1795433405.123|404|12"]))
    assert parsed.clients == [b"203.0.113.9"]
    assert TimeCache(fmt.time_var)(parsed.full_times()[0]) == 1795433405
    assert parsed.digits == b"4"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("$time_local $status", "no client address"),
        ("$remote_addr $status", "no time"),
        ("$remote_addr [$time_local]", "no $status"),
        ("$remote_addr$remote_user [$time_local] $status", "followed by literal text"),
    ],
)
def test_bad_formats_are_clear_errors(text: str, message: str) -> None:
    with pytest.raises(LogFormatError, match=message.replace("$", r"\$")):
        compile_format(text)


def test_many_blocks_with_changing_times() -> None:
    # One line per second: every slot's time differs from its block's first line.
    rnd = random.Random(5)
    check_against_reference([valid_line(rnd, i) for i in range(3 * BLOCK_LINES + 5)])


# ---- times ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "epoch"),
    [
        (b"23/Nov/2026:14:30:05 +0300", 1795433405),
        (b"23/Nov/2026:11:30:05 +0000", 1795433405),
        (b"23/Nov/2026:06:00:05 -0530", 1795433405),
        (b"23/Foo/2026:14:30:05 +0300", None),
        (b"23/Nov/2026:14:30:05 ?0300", None),
        (b"xx/Nov/2026:14:30:05 +0300", None),
    ],
)
def test_time_local(raw: bytes, epoch: int | None) -> None:
    assert TimeCache("time_local")(raw) == epoch


def test_unparsable_times_are_dropped_not_counted_as_malformed() -> None:
    rnd = random.Random(3)
    good = valid_line(rnd, 0)
    bad_time = good.replace(b"/Nov/", b"/Foo/")
    parsed = parse_chunk(compile_format(None), build([good, bad_time]))
    assert parsed.malformed == 0
    seconds = TimeCache("time_local").many(parsed.distinct_times())
    assert accesslog.drop_untimed(parsed, seconds) == 1
    assert parsed.clients == [reference(good)[0]]  # type: ignore[index]


VALID_TIME = b"23/Nov/2026:14:30:05 +0300"


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.binary(min_size=26, max_size=26),
        st.lists(
            st.tuples(st.integers(0, 25), st.sampled_from(list(b"0123456789/:+- Nx\xff"))),
            min_size=1,
            max_size=4,
        ).map(lambda edits: _edited(VALID_TIME, edits)),
    )
)
def test_time_local_by_the_minute_equals_the_whole_conversion(raw: bytes) -> None:
    assert accesslog._time_local(raw) == accesslog._time_local_full(raw)


def _edited(raw: bytes, edits: list[tuple[int, int]]) -> bytes:
    out = bytearray(raw)
    for pos, byte in edits:
        out[pos] = byte
    return bytes(out)


def test_time_local_every_second_of_a_day() -> None:
    zone = timezone(timedelta(hours=-5, minutes=-30))
    start = datetime(2026, 12, 31, 12, 0, 0, tzinfo=zone)
    for i in range(0, 86_400, 7):
        when = start + timedelta(seconds=i)
        raw = when.strftime("%d/%b/%Y:%H:%M:%S %z").encode()
        assert accesslog._time_local(raw) == int(when.timestamp()), raw


def test_the_recorders_own_requests_are_read_apart() -> None:
    """Lines whose user agent starts `recorder/` (what probes/http.py sends) are
    well-formed but left out of clients, times and classes, wherever they fall in a
    64-line block; a line cut after the status is still read, as not the recorder's."""
    rnd = random.Random(11)
    lines = [valid_line(rnd, i // 9) for i in range(300)]
    own = (
        b'127.0.0.1 - - [23/Nov/2026:14:00:%02d +0300] "GET / HTTP/1.1" 503 9 "-" "recorder/0.1.0"'
    )
    for i in (0, 1, 63, 64, 65, 200, 299):
        lines[i] = own % (i // 9)
    lines[100] = own.replace(b"recorder/", b"Recorder/") % 3
    lines[101] = (own % 5).split(b' 9 "-"')[0] + b" "  # cut after the status: not own
    parsed = check_against_reference(lines)
    assert parsed.own >= 7 and parsed.matched == 300 and parsed.malformed == 0  # + random ones
    assert parsed.clients.count(b"127.0.0.1") == 2


@pytest.mark.parametrize(
    ("fmt_text", "line"),
    [
        ('"$http_user_agent" $remote_addr [$time_local] $status', '"{a}" 10.0.0.1 [{t}] 200'),
        ("$remote_addr [$time_local] $status", "10.0.0.1 [{t}] 200"),
        ('$remote_addr [$time_local] $status "$http_referer"', '10.0.0.1 [{t}] 200 "{a}"'),
        ("$remote_addr [$time_local] $status $http_user_agent", "10.0.0.1 [{t}] 200 {a}"),
    ],
)
def test_only_a_format_with_the_user_agent_tells_the_recorder_apart(
    fmt_text: str, line: str
) -> None:
    fmt = compile_format(fmt_text)
    text = line.format(a="recorder/0.1.0", t="23/Nov/2026:14:00:00 +0300").encode()
    parsed = parse_chunk(fmt, b"\n" + text)
    assert parsed.matched == 1
    assert parsed.own == (1 if "$http_user_agent" in fmt_text else 0)
    assert (fmt.own is not None) == ("$http_user_agent" in fmt_text)


# ---- escaped quotes (nginx's escape=json, Apache-style logs) -------------------------------

ESCAPED = [
    # a request and a referer that hold `\"`, an agent that ends in an escaped backslash
    b'192.0.2.1 - - [23/Nov/2026:14:00:00 +0300] "GET /a\\"b HTTP/1.1" 503 5 "x\\"y" "curl\\\\"',
    b'10.0.0.2 - - [23/Nov/2026:14:00:00 +0300] "GET /\\\\" 200 5 "-" "recorder/0.1.0"',
    b'10.0.0.3 - - [23/Nov/2026:14:00:00 +0300] "\\"" 404 5 "\\"\\"" "recorder/0.1.0 \\"x\\""',
]


@pytest.mark.parametrize("escape", ["default", "json"])
def test_backslash_escaped_quotes_are_read(escape: str) -> None:
    fmt = compile_format(None, escape)
    alone = parse_chunk(fmt, build(ESCAPED))
    assert alone.malformed == 0 and alone.clients == [b"192.0.2.1"] and alone.digits == b"5"
    assert alone.own == 2  # after a request ending in an escaped backslash; after `"\"\""`
    rnd = random.Random(5)
    lines = [valid_line(rnd, 0) for _ in range(70)]
    lines[3:3], lines[64:64] = ESCAPED, ESCAPED  # inside a 64-line block and across two
    parsed = parse_chunk(fmt, build(lines))
    assert parsed.malformed == 0 and parsed.clients.count(b"192.0.2.1") == 2


def test_with_escape_none_a_backslash_is_only_a_backslash() -> None:
    """`"GET /a\"` ends at that quote (`b HTTP/1.1"` is no status), and so does `"\"`;
    `"GET /\\"` is a request that ends in two backslashes."""
    parsed = parse_chunk(compile_format(None, "none"), build(ESCAPED))
    assert parsed.malformed == 2 and parsed.clients == [] and parsed.own == 1
    with pytest.raises(LogFormatError, match="unknown log escape"):
        compile_format(None, "xml")


TIMED = COMBINED + " $request_time"


def test_request_time_is_read_when_the_format_has_it() -> None:
    """The lab's format (combined, then $request_time): each line's duration, aligned with
    its client after the malformed and the recorder's own lines are left out; a line cut
    short before it is still a request, of unknown duration (never slow)."""
    head = '10.0.0.{n} - - [23/Nov/2026:14:00:0{n} +0300] "GET / HTTP/1.1" {s} 9 "-" "{a}"'
    lines = [
        head.format(n=1, s=200, a="curl") + " 0.004",
        head.format(n=2, s=200, a="curl") + " 3.012",
        "garbage",
        head.format(n=3, s=200, a="recorder/0.1.0") + " 9.000",
        head.format(n=4, s=503, a="curl"),  # cut before the duration
        head.format(n=5, s=200, a="curl") + " 1.000",  # not above a 1 s bar
    ]
    fmt = compile_format(TIMED)
    assert fmt.duration_var == "request_time"
    parsed = parse_chunk(fmt, build([line.encode() for line in lines]))
    assert parsed.clients == [b"10.0.0.1", b"10.0.0.2", b"10.0.0.4", b"10.0.0.5"]
    assert parsed.durations == [b"0.004", b"3.012", b"", b"1.000"]
    assert slow_mask(parsed, 1.0) == [False, True, False, False]
    # A block of 64 lines reads them as each alone does.
    many = [(lines[i % 6]).encode() for i in range(200)]
    whole = parse_chunk(fmt, build(many))
    alone = [parse_chunk(fmt, b"\n" + line) for line in many]
    assert whole.durations == [d for one in alone for d in one.durations or []]
    # The same lines read as combined: the same requests, no durations.
    plain = parse_chunk(compile_format(None), build([line.encode() for line in lines]))
    assert plain.clients == parsed.clients and plain.durations is None
    assert slow_mask(plain, 1.0) == [False] * 4


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        (b"0.004", 0.004),
        (b"3", 3.0),
        (b"1.002, 0.500", 1.502),  # two backends tried in turn
        (b"0.5 : 0.25", 0.75),  # an internal redirect to another upstream
        (b"-", None),
        (b"", None),
        (b"-, 0.300", 0.3),  # the first backend gave no answer
        (b"86400.000", 86400.0),
        # Not what nginx writes: unknown, never slow.
        (b"86400.001", None),  # longer than a day
        (b"9" * 400, None),  # infinity when summed
        (b"0.5 10.0.0.1 - - [23/Nov/2026:14:00:00 +0300] 200 0.004", None),  # lines glued
        (b"1e9", None),
        (b"nan", None),
        (b"0.5,0.3", None),
        (b" 0.5", None),
    ],
)
def test_duration_seconds(raw: bytes, seconds: float | None) -> None:
    assert duration_seconds(raw) == (pytest.approx(seconds) if seconds is not None else None)


def test_upstream_response_time_counts_when_request_time_is_absent() -> None:
    fmt = compile_format('$remote_addr [$time_local] $status "$upstream_response_time"')
    assert fmt.duration_var == "upstream_response_time"
    line = b'10.0.0.1 [23/Nov/2026:14:00:00 +0300] 502 "0.700, 0.600"'
    parsed = parse_chunk(fmt, b"\n" + line)
    assert parsed.durations == [b"0.700, 0.600"] and slow_mask(parsed, 1.0) == [True]
    both = compile_format(
        "$remote_addr [$time_local] $status $upstream_response_time $request_time"
    )
    assert both.duration_var == "request_time"  # what the client waited, backends and all


def test_a_1xx_is_never_slow() -> None:
    """nginx logs a websocket's 101 when the connection closes, its whole life as the
    request's duration: not a slow response."""
    fmt = compile_format("$remote_addr [$time_local] $status $request_time")
    lines = [b"10.0.0.1 [23/Nov/2026:14:00:00 +0300] 101 3600.000"]
    lines.append(b"10.0.0.2 [23/Nov/2026:14:00:00 +0300] 200 3.000")
    assert slow_mask(parse_chunk(fmt, b"\n" + b"\n".join(lines)), 1.0) == [False, True]


def test_odd_durations_are_counted_but_not_dashes_or_cut_lines() -> None:
    fmt = compile_format('$remote_addr [$time_local] $status "$upstream_response_time"')
    head = b"10.0.0.1 [23/Nov/2026:14:00:00 +0300] 200 "
    values = [b'"0.004"', b'"-"', b'"-, -"', b'"1e9"', b'"1e9"', b'"' + b"9" * 400 + b'"']
    parsed = parse_chunk(fmt, b"\n" + b"\n".join(head + v for v in values) + b"\n" + head)
    assert parsed.durations is not None and len(parsed.durations) == 7
    assert odd_durations(parsed) == 3
    assert odd_durations(parse_chunk(compile_format(None), b"\n" + head)) == 0
