"""`citune score FILE.jsonl`: means per metric, --json, and one error line (exit 2) for bad input."""
import json
import subprocess
import sys

import pytest


def citune_score(tmp_path, *args):
    proc = subprocess.run([sys.executable, "-m", "citune", "score", *map(str, args)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stdout, proc.stderr.strip()


def jsonl(path, *rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def test_chinese_identical_pairs_score_100(tmp_path):
    f = jsonl(tmp_path / "zh.jsonl", {"prediction": "支持", "references": ["支持"]},
              {"prediction": "我喜欢猫。", "references": "我喜欢猫。"})
    code, out, err = citune_score(tmp_path, f, "--json", tmp_path / "out.json")
    assert code == 0, err
    assert json.loads((tmp_path / "out.json").read_text()) == {"n": 2, "scores": {"rougeL": 100.0}}
    assert "rougeL" in out and "100.00" in out


def test_mixed_metrics(tmp_path):
    f = jsonl(tmp_path / "mixed.jsonl",
              {"prediction": "the cat", "references": ["the cat sat"]},  # rougeL 80
              {"prediction": "我喜欢猫", "references": "我喜欢狗"},  # rougeL 75
              "",
              {"prediction": "B. because…", "references": ["B"], "metric": "option_accuracy"},
              {"prediction": "The answer is 4", "references": ["4"], "metric": "number_accuracy"},
              {"prediction": "The answer is 4", "references": ["10"], "metric": "number_accuracy"},
              {"prediction": "return x", "references": ["return y"], "metric": "edit_similarity"})
    code, out, err = citune_score(tmp_path, f, "--json", tmp_path / "out.json")
    assert code == 0, err
    assert json.loads((tmp_path / "out.json").read_text()) == {
        "n": 6, "scores": {"rougeL": 77.5, "option_accuracy": 100.0, "number_accuracy": 50.0, "edit_similarity": 87.5}}
    for name in ("rougeL", "option_accuracy", "number_accuracy", "edit_similarity", "77.50", "87.50"):
        assert name in out, out


def test_metric_option_is_the_default_of_lines(tmp_path):
    f = jsonl(tmp_path / "em.jsonl", {"prediction": "The Answer.", "references": ["the answer"]},
              {"prediction": "no", "references": ["yes"]},
              {"prediction": "the cat", "references": ["the cat sat"], "metric": "rougeL"})
    code, out, err = citune_score(tmp_path, f, "--metric", "exact_match", "--json", tmp_path / "out.json")
    assert code == 0, err
    assert json.loads((tmp_path / "out.json").read_text()) == {"n": 3, "scores": {"exact_match": 50.0, "rougeL": 80.0}}


GOOD = {"prediction": "a", "references": ["a"]}


@pytest.mark.parametrize("line, problem", [
    ('{"prediction": "a", "references": ', "not valid JSON"),
    ("[1, 2]", "not a JSON object"),
    ({"references": ["a"]}, "missing 'prediction'"),
    ({"prediction": 3, "references": ["a"]}, "'prediction' must be a string"),
    ({"prediction": "a"}, "missing 'references'"),
    ({"prediction": "a", "references": [1]}, "'references' must be a string or a list of strings"),
    ({"prediction": "a", "references": {"x": "a"}}, "'references' must be a string or a list of strings"),
    ({"prediction": "a", "references": []}, "'references' is an empty list"),
    ({"prediction": "a", "references": ["a"], "metric": 5}, "'metric' must be a string"),
    ({"prediction": "a", "references": ["a"], "metric": "bleu"}, "unknown metric 'bleu' (known: rougeL,"),
])
def test_bad_line_exits_2_naming_file_and_line(tmp_path, line, problem):
    f = jsonl(tmp_path / "bad.jsonl", GOOD, "", line, GOOD)  # the blank line counts: the bad one is line 3
    code, out, err = citune_score(tmp_path, f, "--json", tmp_path / "out.json")
    assert code == 2, (out, err)
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"error: {f}: line 3: ") and problem in err, err
    assert not (tmp_path / "out.json").exists()


@pytest.mark.parametrize("content, problem", [(None, "file not found"), ("\n  \n", "empty")])
def test_missing_or_empty_file(tmp_path, content, problem):
    f = tmp_path / "in.jsonl"
    if content is not None:
        f.write_text(content)
    code, out, err = citune_score(tmp_path, f, "--json", tmp_path / "out.json")
    assert code == 2 and err.startswith(f"error: {f}: ") and problem in err, err
    assert not (tmp_path / "out.json").exists()


def test_unknown_metric_option(tmp_path):
    f = jsonl(tmp_path / "in.jsonl", GOOD)
    code, out, err = citune_score(tmp_path, f, "--metric", "bleu", "--json", tmp_path / "out.json")
    assert code == 2 and "unknown metric 'bleu'" in err and "option_accuracy" in err, err
    assert not (tmp_path / "out.json").exists()
