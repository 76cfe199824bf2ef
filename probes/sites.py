"""Sites probe: is every expected site of sites-available linked in sites-enabled?

Debian's layout: a site is a file in sites-available, served only while a link to it sits
in sites-enabled. Two ways that breaks silently, both seen after deploys: the link is
missing (the site is not served; nginx -t still passes) or the link dangles (its target
was moved or deleted; nginx refuses to reload). Everything goes through the host's
listdir/lstat/readlink/stat, never `ls` output.
"""

from __future__ import annotations

import posixpath
import stat as stat_module

from pydantic import BaseModel, ConfigDict, Field

from probes.base import (
    Fault,
    Host,
    HostUnreachable,
    Observation,
    Status,
    error_observation,
    measured,
)
from probes.facts import Facts, Subjects

NAME = "sites"


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    expect_enabled: list[str] = Field(default_factory=list)
    available_dir: str = "/etc/nginx/sites-available"
    enabled_dir: str = "/etc/nginx/sites-enabled"


def enabled_targets(host: Host, config: Config) -> tuple[dict[str, str], list[str], list[str]]:
    """What sites-enabled holds: link name -> absolute target, plain files, and
    dangling links as "name -> target"."""
    links: dict[str, str] = {}
    plain: list[str] = []
    dangling: list[str] = []
    for name in host.listdir(config.enabled_dir):
        path = posixpath.join(config.enabled_dir, name)
        try:
            st = host.lstat(path)
        except FileNotFoundError:
            continue  # removed between listdir and lstat: it is not there
        if not stat_module.S_ISLNK(st.mode):
            plain.append(name)
            continue
        try:
            target = host.readlink(path)
        except FileNotFoundError:
            continue
        # A relative target is relative to the directory holding the link.
        absolute = posixpath.normpath(posixpath.join(config.enabled_dir, target))
        links[name] = absolute
        try:
            host.stat(path)  # follows the link (and any chain of links)
        except FileNotFoundError:
            dangling.append(f"{name} -> {target}")
    return links, plain, dangling


def missing_symlinks(config: Config, links: dict[str, str], plain: list[str]) -> list[str]:
    """Expected sites that nothing in sites-enabled names: no entry of that name and no
    link to its file in sites-available (a dangling link is reported as dangling)."""
    missing = []
    for site in config.expect_enabled:
        source = posixpath.normpath(posixpath.join(config.available_dir, site))
        served = site in plain or site in links or source in links.values()
        if not served:
            missing.append(site)
    return missing


def _check(host: Host, config: Config) -> Observation:
    try:
        try:
            available = host.listdir(config.available_dir)
        except FileNotFoundError:
            available = []
        links, plain, dangling = enabled_targets(host, config)
    except FileNotFoundError:
        gone = FileNotFoundError(2, f"{config.enabled_dir} does not exist", config.enabled_dir)
        return error_observation(host, NAME, gone)
    except (HostUnreachable, OSError) as exc:
        return error_observation(host, NAME, exc)
    missing = missing_symlinks(config, links, plain)
    details = {
        "available_dir": config.available_dir,
        "enabled_dir": config.enabled_dir,
        "available": available,
        "enabled": sorted([*links, *plain]),
        "links": links,
        "missing": missing,
        "dangling": dangling,
        "warnings": [
            f"{config.enabled_dir}/{name} is a plain file, not a link to sites-available"
            for name in plain
        ],
    }
    if missing or dangling:
        # What to fix: the missing links first (the fault reported), then the dangling.
        to_fix = [*missing, *(d.split(" -> ", 1)[0] for d in dangling)]
        subjects = Subjects(
            site=tuple(dict.fromkeys(to_fix)),
            file=tuple(dict.fromkeys(posixpath.join(config.enabled_dir, n) for n in to_fix)),
        )
        problems = []
        if missing:
            avail = posixpath.basename(config.available_dir.rstrip("/"))
            enabled = posixpath.basename(config.enabled_dir.rstrip("/"))
            names = ", ".join(f"{avail}/{s}" for s in missing)
            verb = "is" if len(missing) == 1 else "are"
            not_there = [s for s in missing if s not in available]
            note = f" ({', '.join(not_there)} not in {avail} either)" if not_there else ""
            problems.append(f"{names} {verb} not linked in {enabled}{note}")
        if dangling:
            enabled = posixpath.basename(config.enabled_dir.rstrip("/"))
            problems.append(
                "dangling link"
                + ("s" if len(dangling) > 1 else "")
                + f" in {enabled}: "
                + ", ".join(dangling)
            )
        return Observation(
            host=host.name,
            probe=NAME,
            status=Status.FAIL,
            fault=Fault.MISSING_SYMLINK if missing else Fault.DANGLING_SYMLINK,
            summary="; ".join(problems),
            details=details,
            facts=Facts(subjects=subjects),
        )
    n = len(links) + len(plain)
    summary = f"{n} site{'s' if n != 1 else ''} enabled, no dangling links"
    if config.expect_enabled:
        summary = f"{', '.join(config.expect_enabled)} linked; " + summary
    return Observation(
        host=host.name,
        probe=NAME,
        status=Status.OK,
        summary=summary,
        details=details,
    )


probe = measured(_check)
