"""Read nginx configuration the way nginx does: a tokenizer for its syntax and a reader
for the output of `nginx -T`, which prints every file the configuration loads, each after
a `# configuration file PATH:` line.

Why a real tokenizer: `server 10.0.0.1:80; # web-01 "old" {` on one line, quoted
arguments with escapes, `${var}` inside words and comments anywhere would fool any
line-by-line regular expression.

`include` is expanded from the dump itself (nginx printed each included file once, under
its own header), so nothing is read from disk: the same code serves a local host, an SSH
host and a container.
"""

from __future__ import annotations

import fnmatch
import posixpath
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

FILE_HEADER = "# configuration file "


class ConfigParseError(ValueError):
    """The text is not valid nginx syntax (names the file and line)."""

    def __init__(self, message: str, file: str, line: int) -> None:
        super().__init__(f"{message} in {file}:{line}")
        self.message = message
        self.file = file
        self.line = line


@dataclass
class Directive:
    name: str
    args: list[str]
    file: str
    line: int
    block: list[Directive] | None = None  # children when the directive has `{ ... }`
    comment: str = ""  # a `# comment` after the directive on the same line (operators' labels)


@dataclass(frozen=True)
class Token:
    text: str
    line: int
    kind: str  # "word", "quoted", ";", "{", "}", "comment"


def tokenize(text: str, file: str = "<string>") -> Iterator[Token]:
    """nginx's lexer: words, quoted strings (with backslash escapes), `;`, `{`, `}`, and
    comments from `#` at the start of a token to the end of the line."""
    i, n, line = 0, len(text), 1
    while i < n:
        ch = text[i]
        if ch == "\n":
            line += 1
            i += 1
        elif ch in " \t\r\f\v":
            i += 1
        elif ch in ";{}":
            yield Token(ch, line, ch)
            i += 1
        elif ch == "#":
            end = text.find("\n", i)
            end = n if end < 0 else end
            yield Token(text[i + 1 : end].strip(), line, "comment")
            i = end
        elif ch in "\"'":
            start_line, quote, i = line, ch, i + 1
            out: list[str] = []
            while True:
                if i >= n:
                    raise ConfigParseError("unexpected end of file, expecting " + quote, file, line)
                c = text[i]
                if c == "\\" and i + 1 < n:
                    nxt = text[i + 1]
                    # nginx unescapes only the quotes and the backslash; \n, \t... stay
                    # two characters (they mean something to the directive, not the lexer).
                    out.append(nxt if nxt in "\"'\\" else c + nxt)
                    line += nxt == "\n"
                    i += 2
                    continue
                if c == quote:
                    i += 1
                    break
                line += c == "\n"
                out.append(c)
                i += 1
            yield Token("".join(out), start_line, "quoted")
        else:
            start = i
            while i < n:
                c = text[i]
                if c in " \t\r\n\f\v;{}\"'":
                    # `${name}` is one word: its braces are not blocks.
                    if c == "{" and i > start and text[i - 1] == "$":
                        close = text.find("}", i)
                        if close < 0:
                            raise ConfigParseError('unexpected "{"', file, line)
                        i = close + 1
                        continue
                    break
                if c == "\\" and i + 1 < n:
                    i += 2
                    continue
                i += 1
            yield Token(text[start:i], line, "word")


def parse(text: str, file: str = "<string>") -> list[Directive]:
    """The directives of one file, blocks nested; raises ConfigParseError like `nginx -t`."""
    root: list[Directive] = []
    stack: list[tuple[list[Directive], Directive | None]] = [(root, None)]
    words: list[Token] = []
    last: Directive | None = None  # the latest finished directive, to attach a same-line comment
    for tok in tokenize(text, file):
        if tok.kind == "comment":
            if not words and last is not None and last.line == tok.line and not last.comment:
                last.comment = tok.text
            continue
        if tok.kind in ("word", "quoted"):
            words.append(tok)
            continue
        if tok.kind == "}":
            if words:
                raise ConfigParseError('unexpected "}"', file, tok.line)
            if len(stack) == 1:
                raise ConfigParseError('unexpected "}"', file, tok.line)
            stack.pop()
            last = None
            continue
        if not words:
            raise ConfigParseError(f'unexpected "{tok.text}"', file, tok.line)
        name, *args = words
        directive = Directive(name.text, [a.text for a in args], file, name.line)
        stack[-1][0].append(directive)
        words = []
        last = directive
        if tok.kind == "{":
            directive.block = []
            stack.append((directive.block, directive))
            last = None
    if words:
        raise ConfigParseError('unexpected end of file, expecting ";" or "}"', file, words[-1].line)
    if len(stack) > 1:
        opener = stack[-1][1]
        raise ConfigParseError(
            'unexpected end of file, expecting "}"', file, opener.line if opener else 0
        )
    return root


def split_dump(dump: str) -> list[tuple[str, str]]:
    """`nginx -T` output as (path, text) per file, in the order nginx printed them."""
    files: list[tuple[str, str]] = []
    path: str | None = None
    body: list[str] = []
    for raw in dump.splitlines(keepends=True):
        stripped = raw.rstrip("\r\n")
        if stripped.startswith(FILE_HEADER) and stripped.endswith(":"):
            if path is not None:
                files.append((path, "".join(body)))
            path, body = stripped[len(FILE_HEADER) : -1], []
        elif path is not None:
            body.append(raw)
    if path is not None:
        files.append((path, "".join(body)))
    return files


@dataclass
class Dump:
    """A parsed `nginx -T`: every file's directives, with `include` resolved."""

    main: str
    files: dict[str, list[Directive]] = field(default_factory=dict)

    def tree(self) -> list[Directive]:
        """The main file's directives with every `include` replaced by what it loads."""
        return self._expand(self.files.get(self.main, []), posixpath.dirname(self.main), set())

    def _expand(self, items: list[Directive], conf_dir: str, seen: set[str]) -> list[Directive]:
        out: list[Directive] = []
        for d in items:
            if d.name == "include" and d.args and d.block is None:
                for path in self.included(d.args[0], conf_dir):
                    if path in seen:  # nginx would loop forever; a dump cannot, but be safe
                        continue
                    out.extend(self._expand(self.files[path], conf_dir, seen | {path}))
                continue
            if d.block is not None:
                d = Directive(
                    d.name, d.args, d.file, d.line, self._expand(d.block, conf_dir, seen), d.comment
                )
            out.append(d)
        return out

    def included(self, pattern: str, conf_dir: str) -> list[str]:
        """The dumped files an `include` argument names (a glob, relative to the main
        file's directory when not absolute), sorted as nginx's glob returns them."""
        full = posixpath.normpath(
            pattern if pattern.startswith("/") else posixpath.join(conf_dir, pattern)
        )
        if not any(c in full for c in "*?["):
            return [full] if full in self.files else []
        return sorted(p for p in self.files if glob_match(full, p))


def glob_match(pattern: str, path: str) -> bool:
    """glob(3) semantics: wildcards match within one path segment, never across `/`."""
    want, have = pattern.split("/"), posixpath.normpath(path).split("/")
    if len(want) != len(have):
        return False
    return all(fnmatch.fnmatchcase(h, w) for w, h in zip(want, have, strict=True))


def parse_dump(dump: str, main: str | None = None) -> Dump:
    """Parse `nginx -T` output; `main` is the file given to `-c` (default: the first)."""
    sections = split_dump(dump)
    if not sections:
        raise ConfigParseError("no '# configuration file' sections in nginx -T output", "-", 0)
    result = Dump(main=main if main is not None else sections[0][0])
    for path, text in sections:
        if path not in result.files:
            result.files[path] = parse(text, path)
    if result.main not in result.files:
        result.main = sections[0][0]
    return result


def walk(items: Sequence[Directive]) -> Iterator[Directive]:
    """Every directive, depth first."""
    for d in items:
        yield d
        if d.block:
            yield from walk(d.block)


@dataclass(frozen=True)
class UpstreamServer:
    address: str  # as written: host:port, [v6]:port, host, unix:/path
    host: str  # "" for unix sockets
    port: int  # 0 for unix sockets
    weight: int = 1
    backup: bool = False
    down: bool = False
    params: tuple[str, ...] = ()  # every parameter as written
    label: str = ""  # the comment after the directive, if any
    file: str = ""
    line: int = 0

    @property
    def unix(self) -> bool:
        return self.address.startswith("unix:")


@dataclass(frozen=True)
class Upstream:
    name: str
    context: str  # "http" or "stream"
    servers: tuple[UpstreamServer, ...]
    file: str
    line: int


def split_address(address: str, default_port: int = 80) -> tuple[str, int]:
    """`host:port`, `[v6]:port`, `host` (default port) -> (host, port); ValueError if bad."""
    if address.startswith("unix:"):
        return "", 0
    if address.startswith("["):
        close = address.find("]")
        if close < 0:
            raise ValueError(f"bad address {address!r}")
        host, rest = address[1:close], address[close + 1 :]
        if not rest:
            return host, default_port
        if not rest.startswith(":"):
            raise ValueError(f"bad address {address!r}")
        port_text = rest[1:]
    elif address.count(":") == 1:
        host, port_text = address.split(":")
    elif ":" in address:  # a bare IPv6 address cannot carry a port
        return address, default_port
    else:
        return address, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"bad port in {address!r}")
    return host, int(port_text)


def _server(d: Directive) -> UpstreamServer:
    if not d.args:
        raise ConfigParseError('invalid number of arguments in "server" directive', d.file, d.line)
    address, params = d.args[0], tuple(d.args[1:])
    weight, backup, down = 1, False, False
    for p in params:
        if p.startswith("weight="):
            value = p[len("weight=") :]
            if not value.isdigit() or int(value) < 1:
                raise ConfigParseError(f'invalid parameter "{p}"', d.file, d.line)
            weight = int(value)
        elif p == "backup":
            backup = True
        elif p == "down":
            down = True
    try:
        host, port = split_address(address)
    except ValueError as exc:
        raise ConfigParseError(str(exc), d.file, d.line) from None
    return UpstreamServer(
        address=address,
        host=host,
        port=port,
        weight=weight,
        backup=backup,
        down=down,
        params=params,
        label=d.comment,
        file=d.file,
        line=d.line,
    )


def upstreams(tree: Sequence[Directive]) -> list[Upstream]:
    """Every `upstream NAME { server ...; }` block, in http and stream contexts."""
    found: list[Upstream] = []

    def visit(items: Sequence[Directive], context: str) -> None:
        for d in items:
            if d.block is None:
                continue
            if d.name == "upstream" and d.args:
                servers = tuple(_server(s) for s in d.block if s.name == "server")
                found.append(Upstream(d.args[0], context, servers, d.file, d.line))
            elif d.name in ("http", "stream"):
                visit(d.block, d.name)
            else:
                visit(d.block, context)

    visit(tree, "http")
    return found


def rename_files(items: Sequence[Directive], to_host: Callable[[str], str]) -> list[Directive]:
    """The same directives with every file named as the host names it (prefix removed)."""
    return [
        Directive(
            d.name,
            d.args,
            to_host(d.file),
            d.line,
            rename_files(d.block, to_host) if d.block is not None else None,
            d.comment,
        )
        for d in items
    ]


# ---- which server block serves a port or writes a log ------------------------------------


@dataclass(frozen=True)
class Server:
    """One `server` block of the http context: where it is, what it listens on, its
    names, and the access logs its requests go to (its own, or else the http block's)."""

    file: str
    line: int
    listens: tuple[tuple[int, bool], ...]  # (port, default_server)
    names: tuple[str, ...]
    logs: tuple[str, ...]  # paths as written; "off" leaves it out


def _listen_port(arg: str) -> int | None:
    if arg.startswith("unix:"):
        return None
    if arg.isdigit():
        return int(arg)
    try:
        return split_address(arg)[1]
    except ValueError:
        return None


def _logs(items: Sequence[Directive]) -> list[str]:
    """The access_log paths set anywhere in these directives (a location's included)."""
    return [d.args[0] for d in walk(items) if d.name == "access_log" and d.args]


def servers(tree: Sequence[Directive]) -> list[Server]:
    """Every `server` block of the http context(s), in the order nginx reads them."""
    found: list[Server] = []
    for http in (d for d in tree if d.name == "http" and d.block is not None):
        assert http.block is not None
        inherited = [d.args[0] for d in http.block if d.name == "access_log" and d.args]
        for d in http.block:
            if d.name != "server" or d.block is None:
                continue
            listens = []
            for listen in (x for x in d.block if x.name == "listen" and x.args):
                port = _listen_port(listen.args[0])
                if port is not None:
                    listens.append((port, "default_server" in listen.args[1:]))
            names = [n for x in d.block if x.name == "server_name" for n in x.args]
            own = _logs(d.block)
            logs = [p for p in (own or inherited) if p != "off"]
            found.append(
                Server(d.file, d.line, tuple(listens) or ((80, False),), tuple(names), tuple(logs))
            )
    return found


def serving_port(found: Sequence[Server], port: int, name: str = "") -> list[Server]:
    """The server that answers `name` on `port`, as nginx picks it: one that names it,
    else the port's default_server, else the first on the port."""
    on_port = [s for s in found if any(p == port for p, _ in s.listens)]
    named = [s for s in on_port if name and name in s.names]
    default = [s for s in on_port if (port, True) in s.listens]
    return (named or default or on_port)[:1]


def writing_log(found: Sequence[Server], log: str, to_host: Callable[[str], str]) -> list[Server]:
    """The servers whose requests go to `log` (a host path; `to_host` names the paths
    in the configuration as the host does)."""
    want = posixpath.normpath(log)
    return [s for s in found if any(posixpath.normpath(to_host(p)) == want for p in s.logs)]
