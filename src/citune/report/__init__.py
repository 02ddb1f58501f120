"""Reports of runs and comparisons: report.md, a self-contained report.html and plots/*.png."""
from citune.report.comparison import build_comparison_report
from citune.report.run_report import build_report

__all__ = ["build_report", "build_comparison_report"]
