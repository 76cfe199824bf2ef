# The compiled counter (probes/_accesslog.c); its Python twin is accesslog.PyTally.
from collections.abc import Callable

from probes.accesslog import Step, Totals

class Tally:
    def __init__(
        self,
        layout: tuple[Step, ...] | None,
        convert: Callable[[bytes], int | None],
        since: int | None = None,
        until: int | None = None,
        time_local: bool = False,
    ) -> None: ...
    def scan(self, buf: bytes, start: int, end: int, /) -> None: ...
    def totals(self) -> Totals: ...
