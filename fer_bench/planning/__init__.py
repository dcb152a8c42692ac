"""fer_bench.planning: what a run will do, before any data is loaded.

``cells``: axis values -> a checked ``CellPlan`` -> the ``Cell`` (the one path, used by the
pytest plugin, ``fer-bench run`` and scripts); ``profiles``: the plugin's named run
profiles and option parsing; ``catalog``: every registry by the kind it lists.
"""
