"""The compiled counter (probes/_accesslog.c) against its Python twin (PyTally): the same
totals on every log, hostile ones first.

The twin is built on the reader's regular expressions, which tests/test_accesslog.py
checks against an independent parser; this file checks that the C code reads lines the
same way: generated lines for several log formats, with values that break them (stop
bytes inside values, truncation, stray bytes, non-UTF-8, times out of every range), cut
into regions at random, with and without a time range. These tests import the compiled
module directly, so they fail (not skip) when setup could not build it.
"""

from __future__ import annotations

import gc
import json
import os
import random
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probes import _accesslog, accesslog
from probes.accesslog import COMBINED, PyTally, TimeCache, compile_format, new_tally

ROOT = Path(__file__).resolve().parent.parent

FORMATS = [
    COMBINED,
    # client chosen by priority (remote_addr), a forwarded-for value skipped, $msec time
    '$http_x_forwarded_for|$msec|$status|$remote_addr|"$request"',
    # ISO 8601 time, the client from X-Real-IP, status before the client
    '$time_iso8601 $status $http_x_real_ip "$request" $body_bytes_sent',
    # repeated variables: only the first of each is read, the line ends with a time
    "[$time_local] $remote_addr $status $remote_addr $time_local",
    # nothing literal after a time of no fixed width
    "$remote_addr $status $msec",
    # regular-expression syntax as literals and as the stop of a skipped value
    "$remote_addr ($time_local) $request($status) $host?",
    # the user agent (the recorder's own requests) before the fields the reader needs
    '"$http_user_agent" $remote_addr [$time_local] $status',
    # ... and after them, right after a time of no fixed width, after a repeated status
    "$remote_addr $status $msec$http_user_agent",
    '$remote_addr [$time_local] $status $status "$http_user_agent" $http_user_agent',
    # how long the request took, after the user agent and ending the line (the lab's),
    # and quoted before it, several backends' times in one value
    COMBINED + " $request_time",
    '$remote_addr [$time_local] $status "$upstream_response_time" "$http_user_agent" end',
    # the user agent before the fields the reader needs and a duration after them: a line
    # cut short in the optional part keeps the agent's verdict
    '"$http_user_agent" $remote_addr [$time_local] $status "$request_time"',
    # JSON (escape=json): every value quoted, the client too
    '{"ip":"$remote_addr","t":"$time_iso8601","r":"$request","s":$status,"ua":"$http_user_agent"}',
]
AGENTS = [b"recorder/0.1.0", b"recorder/", b"recorder", b"Recorder/1", b"curl/8.5", b"-"]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
POOL = ["10.0.0.1", "10.0.0.2", "192.168.100.200", "2001:db8::1", "2001:db8:ffff::abcd:1"]

no_newline = st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"\r"))


@st.composite
def time_local(draw: st.DrawFn) -> bytes:
    """Canonical times with any digits (day 00, hour 99, year 0000), other shapes, noise."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(no_newline)
    if kind == 1:
        return bytes(
            draw(st.lists(st.integers(0, 255).filter(lambda c: c != 10), min_size=26, max_size=26))
        )
    day = draw(st.integers(0, 99))
    month = draw(st.sampled_from([*MONTHS, "nov", "Xyz"] if kind == 2 else MONTHS))
    year = draw(st.integers(0, 9999)) if kind <= 3 else draw(st.integers(1990, 2040))
    hms = [draw(st.integers(0, 99 if kind <= 4 else 59)) for _ in range(3)]
    sign = draw(st.sampled_from("+-" if kind != 5 else "+-x"))
    offset = draw(st.integers(0, 9999 if kind <= 5 else 1400))
    text = f"{day:02d}/{month}/{year:04d}:{hms[0]:02d}:{hms[1]:02d}:{hms[2]:02d} {sign}{offset:04d}"
    if kind == 6:  # a separator the Python converter does not look at, or a space in a number
        pos = draw(st.sampled_from([0, 1, 11, 14, 17, 18]))
        text = text[:pos] + draw(st.sampled_from([" ", "+", "_", "x", "0"])) + text[pos + 1 :]
    return text.encode()


@st.composite
def value(draw: st.DrawFn, var: str) -> bytes:
    if var == "time_local":
        return draw(time_local())
    if var == "time_iso8601":
        return draw(
            st.one_of(
                st.sampled_from(
                    [
                        b"2026-11-23T14:30:05+03:00",
                        b"2026-11-23T14:30:05-00:00",
                        b"0001-01-01T00:00:00+00:00",
                    ]
                ),
                st.datetimes().map(lambda d: d.isoformat()[:19].encode() + b"+01:00"),
                no_newline,
            )
        )
    if var == "msec":
        return draw(
            st.one_of(
                st.integers(0, 10**12).map(lambda n: f"{n}.{n % 1000:03d}".encode()),
                st.sampled_from([b"9" * 400 + b".5", b"1.", b".5", b"1e9.5", b"253402300800.000"]),
                # times that extend one another (a block's first time is a prefix of them)
                st.builds(
                    lambda stem, nines: stem + b"9" * nines,
                    st.sampled_from([b"1795433405.", b"253402300799."]),
                    st.integers(1, 20),
                ),
                no_newline,
            )
        )
    if var == "status":
        return draw(st.one_of(st.integers(0, 999).map(lambda n: f"{n:03d}".encode()), no_newline))
    if var == "http_user_agent":
        return draw(st.one_of(st.sampled_from(AGENTS), no_newline))
    if var in ("remote_addr", "http_x_real_ip"):
        return draw(
            st.one_of(
                st.sampled_from(POOL).map(str.encode),
                no_newline,
                st.integers(17, 600).map(lambda n: b"c" * n),  # past the inline key: the arena
            )
        )
    return draw(no_newline)


def render(fmt_text: str, values: dict[str, bytes]) -> bytes:
    out = fmt_text.encode()
    for name in sorted(values, key=len, reverse=True):
        out = out.replace(b"$" + name.encode(), values[name])
    return out


@st.composite
def log_lines(draw: st.DrawFn, fmt_text: str) -> list[bytes]:
    names = [m.group(2) for m in accesslog._VAR.finditer(fmt_text)]
    pool = []
    for _ in range(draw(st.integers(1, 12))):
        line = render(fmt_text, {n: draw(value(n)) for n in sorted(set(names))})
        mutation = draw(st.integers(0, 5))
        if mutation == 0 and line:
            line = line[: draw(st.integers(0, len(line) - 1))]
        elif mutation == 1:
            pos = draw(st.integers(0, len(line)))
            line = (
                line[:pos]
                + draw(
                    st.sampled_from(
                        [b" ", b'"', b"[", b"]", b"|", b"(", b")", b"\r", b"\x00", b"\\", b'\\"']
                    )
                )
                + line[pos:]
            )
        pool.append(line)
    # Lines repeat and runs pass 64 lines, so the reader's 64-line blocks (where a line
    # may share the block's first time) are read too, not only its one-line pattern.
    picks = draw(st.lists(st.integers(0, len(pool) - 1), max_size=150))
    return [pool[i] for i in picks]


def tallies(
    fmt_text: str, since: int | None, until: int | None, escape: str = "default"
) -> tuple[accesslog.Tally, PyTally]:
    fmt = compile_format(fmt_text, escape)
    compiled = new_tally(fmt, TimeCache(fmt.time_var), since, until)
    assert isinstance(compiled, _accesslog.Tally)
    return compiled, PyTally(fmt, TimeCache(fmt.time_var), since, until)


def scan_both(
    fmt_text: str,
    lines: Sequence[bytes],
    cuts: Sequence[int],
    since: int | None,
    until: int | None,
    escape: str = "default",
) -> tuple[accesslog.Totals, accesslog.Totals]:
    """Both tallies over the same regions: the log cut before the given lines."""
    compiled, python = tallies(fmt_text, since, until, escape)
    bounds = sorted({0, len(lines), *(c % (len(lines) + 1) for c in cuts)})
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        region = b"\n" + b"\n".join(lines[lo:hi])
        # a region inside a larger buffer, as logscan passes it
        buf = b"junk\nbefore" + region + b"\nafter"
        start = len(b"junk\nbefore")
        compiled.scan(buf, start, start + len(region))
        python.scan(buf, start, start + len(region))
    return compiled.totals(), python.totals()


ranges = st.one_of(st.none(), st.integers(1795300000, 1795500000), st.integers(-(10**12), 10**12))


@pytest.mark.parametrize("escape", ["default", "none"])
@pytest.mark.parametrize("fmt_text", FORMATS)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), since=ranges, until=ranges)
def test_compiled_counts_equal_python(
    fmt_text: str, escape: str, data: st.DataObject, since: int | None, until: int | None
) -> None:
    lines = data.draw(log_lines(fmt_text))
    cuts = data.draw(st.lists(st.integers(0, 100), max_size=4))
    got, want = scan_both(fmt_text, lines, cuts, since, until, escape)
    assert got == want


@given(when=time_local())
@settings(max_examples=600, deadline=None)
def test_time_local_in_c_equals_the_python_conversion(when: bytes) -> None:
    compiled, _ = tallies(COMBINED, None, None)
    line = b"10.0.0.1 - - [" + when + b'] "GET / HTTP/1.1" 503 0 "-" "-"'
    compiled.scan(b"\n" + line, 0, len(line) + 1)
    t = compiled.totals()
    if t["matched"] == 0:  # a 26-byte window the line does not hold
        return
    expected = accesslog._time_local(when)
    assert t["first_5xx"] == t["last_5xx"] == expected
    assert t["untimed"] == (expected is None)


def seeded_log(n: int, seed: int) -> list[bytes]:
    """A big mixed log: many distinct clients (the table grows many times), IPv6 and
    arena-sized clients, malformed lines, times moving through a day."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        second = 1795392000 + i // 5
        client = rnd.choice(
            [
                f"10.{rnd.randrange(256)}.{rnd.randrange(256)}.1",
                f"2001:db8::{rnd.randrange(9999):x}",
                "x" * rnd.randrange(17, 300),
            ]
        )
        when = accesslog.datetime.fromtimestamp(second, accesslog.UTC).strftime(
            "%d/%b/%Y:%H:%M:%S +0000"
        )
        status = rnd.choice([200, 200, 304, 404, 500, 503])
        agent = "recorder/0.1.0" if i % 7 == 0 else f"agent {i}"  # the recorder's own
        line = f'{client} - - [{when}] "GET /{i} HTTP/1.1" {status} 12 "-" "{agent}"'.encode()
        if rnd.random() < 0.02:
            line = line[: rnd.randrange(len(line))]
        out.append(line)
    return out


def test_a_big_log_in_uneven_regions() -> None:
    lines = seeded_log(60_000, seed=3)
    rnd = random.Random(4)
    cuts = [rnd.randrange(len(lines)) for _ in range(30)]
    for since, until in [(None, None), (1795392000 + 1000, 1795392000 + 9000)]:
        got, want = scan_both(COMBINED, lines, cuts, since, until)
        assert got == want
        assert got["clients"] > 5_000 and 0 < got["clients_with_5xx"] < got["clients"]
        assert got["self_requests"] > 500


def test_a_recorder_line_cut_short_after_its_agent_starts_is_a_client_in_both() -> None:
    """The lab's format reads on past the user agent to $request_time. A line of the
    recorder's cut short anywhere in that optional part (the end of a region, a torn
    write) is read up to the cut, not as the recorder's own: the compiled counter kept
    its look ahead's verdict when the part failed (a hostile-log seed found it). An agent
    read in the required part is the recorder's however the optional part ends."""
    fmt_text = COMBINED + " $request_time"
    line = (
        b'10.0.0.1 - - [23/Nov/2026:14:30:05 +0300] "GET / HTTP/1.1" 200 1 "-"'
        b' "recorder/0.1.0" 0.004'
    )
    agent = line.index(b'"recorder/')
    for cut in range(agent, len(line) + 1):
        got, want = scan_both(fmt_text, [line[:cut]], [], None, None)
        assert got == want, cut
        own = cut > line.index(b" 0.004")  # the literal before $request_time is read
        assert (got["self_requests"], got["kept"]) == ((1, 0) if own else (0, 1)), cut
    # With the agent in the required part, its verdict stands whatever the tail does.
    fmt_text = '"$http_user_agent" $remote_addr [$time_local] $status "$request_time"'
    line = b'"recorder/0.1.0" 10.0.0.1 [23/Nov/2026:14:30:05 +0300] 200 "0.004"'
    for cut in range(line.index(b" 200 ") + 5, len(line) + 1):  # past the status and its space
        got, want = scan_both(fmt_text, [line[:cut]], [], None, None)
        assert got == want, cut
        assert (got["self_requests"], got["kept"]) == (1, 0), cut


# ---- the C type's own edges --------------------------------------------------------------


def counter(convert: Callable[[bytes], int | None] | None = None) -> _accesslog.Tally:
    fmt = compile_format(None)
    return _accesslog.Tally(fmt.layout, convert or TimeCache(fmt.time_var))


LINE = b'\n10.0.0.1 - - [23/Nov/2026:14:30:05 +0300] "GET / HTTP/1.1" 500 1 "-" "-"'


def test_regions_outside_the_buffer_are_refused() -> None:
    c = counter()
    for start, end in [(-1, 5), (5, 4), (0, len(LINE) + 1)]:
        with pytest.raises(ValueError, match="outside the buffer"):
            c.scan(LINE, start, end)
    assert c.totals()["lines"] == 0


def test_converter_errors_propagate_and_scans_from_inside_it_are_refused() -> None:
    def boom(raw: bytes) -> int | None:
        raise KeyError("converter failed")

    with pytest.raises(KeyError):
        counter(boom).scan(LINE.replace(b"23/Nov", b"23/nov"), 0, len(LINE))  # not canonical
    with pytest.raises(TypeError):
        counter(lambda raw: "soon").scan(LINE.replace(b"Nov", b"nov"), 0, len(LINE))  # type: ignore[arg-type, return-value]

    inner: list[BaseException] = []
    c: _accesslog.Tally

    def reentrant(raw: bytes) -> int | None:
        try:
            c.scan(LINE, 0, len(LINE))
        except RuntimeError as exc:
            inner.append(exc)
        return 0

    c = counter(reentrant)
    c.scan(LINE.replace(b"Nov", b"nov"), 0, len(LINE))
    assert inner and "inside its converter" in str(inner[0])
    assert c.totals()["matched"] == 1


def test_bad_layouts_and_misuse_are_refused() -> None:
    convert = TimeCache("time_local")
    with pytest.raises(ValueError, match="one client, time and status"):
        _accesslog.Tally(((0, 0, 0, b" "),), convert)
    with pytest.raises(ValueError, match="bad layout step"):
        _accesslog.Tally(((9, 0, 0, b""),), convert)
    with pytest.raises(ValueError, match="bad layout step"):
        _accesslog.Tally(((0, 0, 0, b"a\nb"),), convert)
    with pytest.raises(TypeError):
        _accesslog.Tally("not a tuple", convert)
    with pytest.raises(TypeError):
        _accesslog.Tally(compile_format(None).layout, "not callable")
    c = counter()
    with pytest.raises(RuntimeError, match="once"):
        c.__init__(compile_format(None).layout, convert)  # type: ignore[misc]
    with pytest.raises(RuntimeError, match="not initialized"):
        _accesslog.Tally.__new__(_accesslog.Tally).scan(LINE, 0, len(LINE))


def test_a_format_with_a_newline_in_a_literal_is_counted_in_python() -> None:
    fmt = compile_format("$remote_addr\n[$time_local] $status ")
    assert fmt.layout is None
    assert isinstance(new_tally(fmt, TimeCache(fmt.time_var)), PyTally)


# ---- logscan reports which counter ran ----------------------------------------------------


def test_logscan_says_which_counter_ran_and_both_agree(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(b"\n".join(seeded_log(3000, seed=9)) + b"\n")
    results = {}
    for pure in ("", "1"):
        env = {k: v for k, v in os.environ.items() if k != "RECORDER_PURE_PYTHON"}
        if pure:
            env["RECORDER_PURE_PYTHON"] = pure
        done = subprocess.run(
            [sys.executable, "-m", "recorder", "logscan", "--json", str(log)],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            check=True,
        )
        results[pure] = json.loads(done.stdout)
    assert results[""].pop("reader") == "compiled"
    assert results["1"].pop("reader") == "python"
    assert results[""] == results["1"]
    assert results[""]["requests"] > 2500


# ---- memory safety: the counter built with AddressSanitizer -------------------------------

ASAN_CHILD = """
import importlib.util, json, sys
from probes.accesslog import PyTally, TimeCache, compile_format
spec = importlib.util.spec_from_file_location("_accesslog", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
cases = json.loads(open(sys.argv[2]).read())
for case in cases:
    fmt = compile_format(case["format"])
    data = bytes.fromhex(case["log"])
    c = module.Tally(fmt.layout, TimeCache(fmt.time_var), case["since"], case["until"],
                     fmt.time_var == "time_local")
    p = PyTally(fmt, TimeCache(fmt.time_var), case["since"], case["until"])
    cuts = sorted({0, len(data), *case["cuts"]})
    for lo, hi in zip(cuts, cuts[1:]):
        region = data[lo:hi]  # its own allocation: a read past its end is out of bounds
        for tally in (c, p):
            tally.scan(region, 0, len(region))
    assert c.totals() == p.totals(), (case["format"], c.totals(), p.totals())
print("ok", len(cases))
"""


def hostile_log(fmt_text: str, rnd: random.Random, n: int) -> bytes:
    """Lines of a format with values drawn from bytes that break it, some cut short."""
    names = [m.group(2) for m in accesslog._VAR.finditer(fmt_text)]
    alphabet = b' "[]|:/+-.0123456789x\r\x00\xff\\'
    out = []
    for i in range(n):
        values = {}
        for name in sorted(set(names)):  # not set order: that changes with PYTHONHASHSEED
            if rnd.random() < 0.7:
                good = {
                    "time_local": b"23/Nov/2026:14:30:%02d +0300" % (i % 60),
                    "time_iso8601": b"2026-11-23T14:30:05+03:00",
                    "msec": b"1795433405.%03d" % (i % 1000),
                    "status": rnd.choice([b"200", b"503", b"404"]),
                    "http_user_agent": rnd.choice(AGENTS),
                }
                values[name] = good.get(name, rnd.choice(POOL).encode() * rnd.randrange(1, 30))
            else:
                values[name] = bytes(rnd.choice(alphabet) for _ in range(rnd.randrange(0, 40)))
        line = render(fmt_text, values)
        if rnd.random() < 0.2:
            line = line[: rnd.randrange(len(line) + 1)]
        out.append(line)
    return b"\n" + b"\n".join(out)


@pytest.mark.slow
def test_the_counter_under_address_sanitizer(tmp_path: Path) -> None:
    """Out-of-bounds reads or writes, use after free and undefined behaviour stop the
    child with a report; the same totals as the Python twin are checked there too."""
    import shutil
    import sysconfig

    cc = shutil.which("gcc")
    if cc is None:
        pytest.fail("gcc is needed (scripts/setup.sh installs it)")
    runtime = [
        subprocess.run(
            [cc, f"-print-file-name={lib}"], capture_output=True, text=True
        ).stdout.strip()
        for lib in ("libasan.so", "libubsan.so")
    ]
    built = tmp_path / ("_accesslog" + str(sysconfig.get_config_var("EXT_SUFFIX")))
    subprocess.run(
        [
            cc,
            "-O1",
            "-g",
            "-fsanitize=address,undefined",
            "-fno-sanitize-recover=undefined",
            "-fno-omit-frame-pointer",
            "-shared",
            "-fPIC",
            "-I" + sysconfig.get_paths()["include"],
            str(ROOT / "probes" / "_accesslog.c"),
            "-o",
            str(built),
        ],
        check=True,
    )
    rnd = random.Random(11)
    cases = []
    for fmt_text in FORMATS:
        log = hostile_log(fmt_text, rnd, 3000)
        for since, until in [(None, None), (1795433000, 1795433406)]:
            cuts = [rnd.randrange(len(log)) for _ in range(20)]
            cases.append(
                {"format": fmt_text, "log": log.hex(), "since": since, "until": until, "cuts": cuts}
            )
    big = b"\n" + b"\n".join(seeded_log(20_000, seed=5))
    cases.append({"format": COMBINED, "log": big.hex(), "since": None, "until": None, "cuts": [7]})
    corpus = tmp_path / "cases.json"
    corpus.write_text(json.dumps(cases))
    env = {
        **os.environ,
        "LD_PRELOAD": " ".join(runtime),
        "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=0",
        "PYTHONMALLOC": "malloc",
    }
    done = subprocess.run(
        [sys.executable, "-c", ASAN_CHILD, str(built), str(corpus)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.split() == ["ok", str(len(cases))]


def test_init_reentered_from_its_arguments_keeps_the_first_and_leaks_nothing() -> None:
    """Reading the layout can run Python (__index__), which can call __init__ again."""
    fmt = compile_format(None)
    assert fmt.layout is not None
    inner, outer = TimeCache("time_local"), TimeCache("time_local")
    t = _accesslog.Tally.__new__(_accesslog.Tally)

    class Width:
        def __index__(self) -> int:
            t.__init__(fmt.layout, inner)  # type: ignore[misc]
            return 0

    kind, capture, _, text = fmt.layout[0]
    layout = ((kind, capture, Width(), text), *fmt.layout[1:])
    refs = sys.getrefcount(outer)
    with pytest.raises(RuntimeError, match="once"):
        t.__init__(layout, outer)  # type: ignore[misc]
    assert sys.getrefcount(outer) == refs
    t.scan(LINE, 0, len(LINE))
    assert t.totals()["matched"] == 1


def test_totals_under_memory_errors_leaks_nothing() -> None:
    """Each allocation of totals() failing in turn: a MemoryError, never a leaked object
    (the status-class tuple once leaked when a key before it failed)."""
    testcapi = pytest.importorskip("_testcapi")
    fmt = compile_format(None)
    t = new_tally(fmt, TimeCache(fmt.time_var))
    t.scan(LINE, 0, len(LINE))
    want = t.totals()

    def fail_allocation(n: int, times: int) -> int:
        failed = 0
        for _ in range(times):
            testcapi.set_nomemory(n, n + 1)
            try:
                got = t.totals()
            except MemoryError:
                failed += 1
            else:
                assert got == want
            finally:
                testcapi.remove_mem_hooks()
        return failed

    for n in range(40):  # once each first: the interpreter's own caches fill
        fail_allocation(n, 1)
    failed = 0
    for n in range(40):
        gc.collect()
        before = sys.getallocatedblocks()
        failed += fail_allocation(n, 20)
        gc.collect()
        # 20 failing calls: a leak would be 20 blocks or more. A block or two is the
        # interpreter's own free list of MemoryError objects filling.
        assert sys.getallocatedblocks() - before <= 2, f"allocation {n} failing leaks"
    assert failed > 0  # some allocations really failed
