"""pytest11 plugin for fer_bench (work in progress; adds nothing yet)."""

from __future__ import annotations
