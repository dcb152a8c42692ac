"""``fer-bench launch``: a benchmark selection as N shards (one pytest process each) on an
engine (a local process pool, a Slurm job array through submitit, or Ray), one run folder,
one shared result store, merged into the leaderboard when every shard is done.

Modules by role: ``layout`` (the run folder: what lies where, shard states; also read by the
leaderboard), ``shard`` (one shard's command and ``run_shard``), ``probe`` (the pytest plugin
each shard loads: plan and cell events), ``engines`` (local, submitit, ray), ``status``
(``--status``), ``cli`` (arguments, launch, resume, merge).
"""
