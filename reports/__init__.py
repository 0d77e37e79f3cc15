"""Reports: render a run's results (never re-running anything).

* ``reports.html``: a self-contained static site (index with the scenario ×
  target matrix, a page per case with its wire transcript, comparisons);
* ``reports.junit``: JUnit XML, one testsuite per target;
* ``reports.terminal``: tabulate summaries for terminals and issue trackers;
* ``reports.charts``: inline SVG pictures (verdict bars, bench results);
* ``reports/schema.json``: the JSON schema of the run file.
"""
