"""One metric catalogue: the console, the run report and the comparison name the headline metrics
the same way and in the same order."""
from rich.console import Console

from citune.evaluation.metrics import HEADLINE
from citune.report.console import run_summary_table
from citune.report.doc import headline_rows

METRICS = {"ap": 50.0, "bwt": -2.5, "fwt": 1.0, "forgetting": 3.0, "relative_gain": 90.0, "rg_mean": 88.0,
           "rg_std": 4.0, "p_score": 20.0, "p_score_change": -1.5, "v_score": 70.0}


def test_headline_rows_follow_the_catalogue():
    rows = headline_rows(METRICS)
    assert [r[0] for r in rows] == [m.label if m.key != "rg_mean" else "RG mean ± std" for m in HEADLINE]
    values = dict((label, value) for label, value, _ in rows)
    assert values["BWT"] == "-2.50" and values["final AP"] == "50.00" and values["RG mean ± std"] == "88.00 ± 4.00"
    assert values["P-score change"] == "-1.50" and values["FWT"] == "+1.00"
    assert all(definition for _, _, definition in rows)


def test_the_console_summary_prints_the_catalogue_rows():
    console = Console(width=200, record=True)
    console.print(run_summary_table(METRICS))
    text = console.export_text()
    positions = [text.index(label) for label, _, _ in headline_rows(METRICS)]
    assert positions == sorted(positions)


def test_directions():
    assert {m.key for m in HEADLINE if not m.higher_is_better} == {"forgetting"}
