"""``python -m fer_bench.cli``: the ``fer-bench`` command."""

from fer_bench.cli.main import main

raise SystemExit(main())
