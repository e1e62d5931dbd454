"""``edge-geoloc demo``: the whole product on the synthetic world (fly, log, adapt, redeploy) with a report.

Modules: ``cli`` (the command), ``config`` (the run's typed config), ``steps`` (the recipe: the six steps in
order) with ``steps_train`` / ``steps_fly`` / ``steps_report`` (the steps, calling the components' public APIs)
and ``parts`` (what several steps do alike), ``layout`` (the run folder's named paths), ``runner`` +
``runfolder`` (timestamped run folders, sha256 step manifests, ``--from-step`` reuse), ``cache`` (seed-keyed
cache of generated inputs), ``flight`` (replay with the field logger), ``report`` + ``plots`` (summary, PNGs,
HTML). The per-frame trajectory table is ``edge_geoloc.runtime.trajectory`` (written by the replay, read by
the report).
"""
