"""Hosts: how the engine reaches a machine. Three transports behind one protocol
(`probes.base.Host`) that a probe cannot tell apart."""

from __future__ import annotations

from probes.base import CommandResult, FileStat, Host, HostUnreachable
from recorder.config import HostConfig
from recorder.hosts.docker import DockerHost
from recorder.hosts.local import LocalHost

__all__ = [
    "CommandResult",
    "DockerHost",
    "FileStat",
    "Host",
    "HostUnreachable",
    "LocalHost",
    "build_host",
]


def build_host(name: str, cfg: HostConfig) -> Host:
    """The Host for one entry of the config's `hosts:` mapping."""
    if cfg.local is not None:
        return LocalHost(name, prefix=cfg.local.prefix, address=cfg.probe_address)
    if cfg.docker is not None:
        return DockerHost(
            name, cfg.docker.container, docker=cfg.docker.docker, address=cfg.probe_address
        )
    assert cfg.ssh is not None
    from recorder.hosts.ssh import SSHHost  # paramiko is slow to import; only when used

    return SSHHost(name, cfg.ssh, address=cfg.probe_address)
