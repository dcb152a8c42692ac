"""``StrEnum`` on every Python fer_bench supports: ``enum.StrEnum`` from 3.11, the same
behaviour on 3.10 (a member is a ``str`` equal to its value; ``str()`` and ``format()``
give the value, so JSON and f-strings see the text).

A core leaf that imports only ``enum``: the pytest plugin's settings (loaded in every pytest
run of the environment) use it without importing the data layer.
"""

from __future__ import annotations

import sys
from enum import Enum

__all__ = ["StrEnum"]

if sys.version_info >= (3, 11):
    from enum import StrEnum
else:   # Python 3.10
    class StrEnum(str, Enum):
        """``enum.StrEnum`` of Python 3.11: members are their values as text."""

        def __str__(self) -> str:
            return str(self.value)

        def __format__(self, spec: str) -> str:
            return format(str(self.value), spec)
