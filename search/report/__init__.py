"""Reports: what a search, an evaluation, an ablation or a regime map leaves in its folder.

- `write_report(population, run_dir, config, started, wall_time_s)`: a search's run folder
  (``search.report.search_page``: leaderboard.md, results.json, plots, winners, report.html);
- `write_evaluate_report(out_dir)`: ``report.html`` of an ``optforge evaluate`` folder;
- `write_ablation_report`, `write_regimes_report`: the pages of ``optforge ablate`` and
  ``optforge regimes``;
- `render(folder)`: whichever of these a folder holds (``optforge report``, ``search.report.folder``);
- `write_simplified(run_dir, id, simplification)`: record a winner's simplified form
  (``search.simplify``), which the report shows beside the original and `export_winners` exports.

Every page is one self-contained HTML file (``search.report.html``).
"""

from .ablation_page import write_ablation_report
from .evaluate_page import write_evaluate_report
from .folder import render
from .leaderboard import canonical_text, counts, export_winners, leaderboard_md, winners, write_simplified
from .regimes_page import write_regimes_report
from .search_page import SCHEMA, write_report

__all__ = ["SCHEMA", "canonical_text", "counts", "export_winners", "leaderboard_md", "render",
           "winners", "write_ablation_report", "write_evaluate_report", "write_regimes_report",
           "write_report", "write_simplified"]
