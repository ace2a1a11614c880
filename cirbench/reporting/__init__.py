"""Tables, the reproduction report and its plots, computed from result records.

Modules, in the order data flows (each imports only those before it):

- :mod:`~cirbench.reporting.records`: every record under ``runs/<task>/`` as one DataFrame.
- :mod:`~cirbench.reporting.tables`: per-task summaries (mean, sample std over seeds), ours
  beside ``cirbench/reported.yaml``, and the significance tests of perturbed methods.
- :mod:`~cirbench.reporting.render`: Markdown, LaTeX (one generator) and CSV text of tables.
- :mod:`~cirbench.reporting.status`: the README's reproduction status section.
- :mod:`~cirbench.reporting.plots`: figures of a task table and training curves.
- :mod:`~cirbench.reporting.tuned`: the tuned-vs-default section, rebuilt from tune records.
- :mod:`~cirbench.reporting.write`: ``cirbench report``'s files on disk.
"""

from cirbench.reporting.records import RecordSet, collect_records, metric_columns
from cirbench.reporting.render import Format, csv_table, format_table, latex_table, markdown_table
from cirbench.reporting.status import STATUS_BEGIN, STATUS_END, Status, entry_status, statuses
from cirbench.reporting.tables import TaskTable, build_task_table, summarize, task_table
from cirbench.reporting.write import ReportFiles, write_report

__all__ = [
    "STATUS_BEGIN",
    "STATUS_END",
    "Format",
    "RecordSet",
    "ReportFiles",
    "Status",
    "TaskTable",
    "build_task_table",
    "collect_records",
    "csv_table",
    "entry_status",
    "format_table",
    "latex_table",
    "markdown_table",
    "metric_columns",
    "statuses",
    "summarize",
    "task_table",
    "write_report",
]
