"""Reports over runs stored in the database: accuracy under each answer-selection rule,
compute and FLOPs, the per-depth allocation view, plots, tree inspection and exports.

Entry points: `build.build_report` (the JSON-ready report document), the `render_*` modules
(table, markdown, html, json), `plot.write_plot`, `tree_view` and `export.export_run`.
They read the database only through `store.reader.RunReader`, whose records carry no SQL.
"""
