"""The powered benchmark's table in docs/BENCHMARKS.md says what its stored comparison says: every cell
(mean and 95 % interval) is the cell of `comparison.md`, which the benchmark rebuilds from the stored
runs after each run. A run stored without the docs brought up to date fails here."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STORED = ROOT / "benchmarks" / "results" / "superni" / "curriculum-8cat-powered" / "comparison.md"
DOC = ROOT / "docs" / "BENCHMARKS.md"
HEADER = "| strategy | final AP | final RG (experts) | final RG (UB R[j][j]) | P-score | V-score | Δ final AP vs random |"
# the doc's columns, as the rows of comparison.md's "By strategy" table that hold them
ROWS = ["final AP", "final RG", "final RG (UB R[j][j])", "P-score", "V-score", ("final AP", "Δ vs random")]


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def normal(cell: str) -> str:
    """A cell without what only one side writes: the doc's minus signs, seeds note and emphasis; the
    comparison's `*` for an interval excluding 0."""
    cell = re.sub(r"\s*\(seeds? [\d, ]+\)", "", cell.replace("−", "-").replace("**", "")).rstrip("*").strip()
    return "ref" if cell == "ref" else cell


def stored_table() -> dict[str, dict]:
    """comparison.md's "By strategy" table: {strategy: {row name (or (metric, Δ row)): cell}}."""
    lines = STORED.read_text(encoding="utf-8").split("## By strategy", 1)[1].strip().splitlines()
    strategies = cells(lines[0])[1:]
    table, metric = {s: {} for s in strategies}, None
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        name, *values = cells(line)
        key = (metric, name) if line.startswith("|   Δ") else name
        metric = name if not line.startswith("|   Δ") else metric
        for strategy, value in zip(strategies, values):
            table[strategy][key] = value
    return table


def doc_table() -> dict[str, list[str]]:
    lines = DOC.read_text(encoding="utf-8").split(HEADER, 1)[1].strip().splitlines()
    rows = {}
    for line in lines[1:]:
        if not line.startswith("|"):
            break
        label, *values = cells(line)
        rows[label.split()[0]] = values
    return rows


def test_the_powered_table_in_the_docs_is_the_stored_comparison():
    stored, doc = stored_table(), doc_table()
    assert set(doc) == set(stored), "the doc's strategies are not the stored ones"
    for strategy, values in doc.items():
        for row, value in zip(ROWS, values):
            assert normal(value) == normal(stored[strategy][row]), (strategy, row)


def test_the_docs_name_the_seeds_each_strategy_has_stored():
    stored = stored_table()
    for line in DOC.read_text(encoding="utf-8").split(HEADER, 1)[1].strip().splitlines()[2:]:
        if not line.startswith("|"):
            break
        label = cells(line)[0]
        seeds = re.search(r"\(seeds? ([\d, ]+)\)", label)
        strategy = label.split()[0]
        runs = stored[strategy]["runs"]  # "2 (seed 1,2)"
        expected = runs.split("(seed ")[1].rstrip(")").replace(",", ", ")
        assert (seeds.group(1) if seeds else "1") == expected, (strategy, runs)
