"""recorder: watches Nginx stacks, opens incidents by itself and drafts their postmortems."""

__version__ = "0.1.0"
