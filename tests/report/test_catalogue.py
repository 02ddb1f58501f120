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
    assert [r[0] for r in rows] == [m.label if m.key != "rg_mean" else "RG mean ± std" for m in HEADLINE
                                    if not m.optional]
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


def _strategy_row(name: str, **means) -> dict:
    from citune.evaluation.metrics import METRIC

    stats = {key: {"mean": means.get(key, 1.0), "n": 1, "std": None, "ci": None} for key in METRIC}
    return {"strategy": name, "runs": [f"{name}-seed1"], "seeds": [1], "complete": 1, "train_tokens": 10,
            "wall_seconds": 5.0, "vs_baseline": None, **stats}


def test_the_second_relative_gain_is_shown_only_where_a_run_has_it():
    """RG with UB = R[j][j] is a second reading beside the experts' (eval.ub = expert): absent from the run
    report and the comparison when no run has it, shown when one does."""
    from citune.report.comparison import strategy_columns

    label = next(m.label for m in HEADLINE if m.key == "relative_gain_learned")
    assert label not in [r[0] for r in headline_rows(METRICS)]
    assert dict((r[0], r[1]) for r in headline_rows({**METRICS, "relative_gain_learned": 75.0}))[label] == "75.00"
    without = strategy_columns([_strategy_row("none", relative_gain_learned=None)])[1]
    assert label not in [line[0] for line in without]
    with_it = strategy_columns([_strategy_row("none", relative_gain_learned=75.0),
                                _strategy_row("kpig", relative_gain_learned=None)])[1]
    assert [line[1:] for line in with_it if line[0] == label] == [["75.00", "n/a"]]
