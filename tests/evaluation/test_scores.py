"""Per-instance scorers against hand-computed values, TRACE's rules and quirks included."""
import pytest

from citune.evaluation.scores import (SCORER_NAMES, TOKENIZER, check_scorer, edit_similarity, exact_match,
                                      number_accuracy, option_accuracy, restore_literals, rouge_l,
                                      rouge_l_precision, score)

ENGLISH = [
    ("The cats were running quickly to the houses.", "A cat runs quickly to its house!"),
    ("Paraphrase\nHenri Dobler was", "Paraphrase"),
    ("Yes, it's 3.5 km (approx.) from St. John's", "yes its 3 5 km from st johns"),
    ("snake_case and CamelCase; e-mail: x@y.com", "snake case camelcase email x y com"),
    ("Generalization, generalizes, generalized", "generalize"),
    ("don't stop believing — 1990’s “hits”", "dont stop believ 1990 s hits"),
]


def test_english_tokens_and_scores_equal_rouge_score_default():
    from rouge_score import rouge_scorer
    from rouge_score.tokenizers import DefaultTokenizer

    default = DefaultTokenizer(use_stemmer=True)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    for pred, ref in ENGLISH:
        assert TOKENIZER.tokenize(pred) == default.tokenize(pred)
        assert TOKENIZER.tokenize(ref) == default.tokenize(ref)
        expected = 100 * scorer.score(ref, pred)["rougeL"].fmeasure
        assert rouge_l(pred, [ref]) == expected
        assert rouge_l_precision(pred, [ref]) == 100 * scorer.score(ref, pred)["rougeL"].precision


def test_tokens_in_every_script():
    tok = TOKENIZER.tokenize
    assert tok("支持") == ["支", "持"]
    assert tok("コーヒーを飲みます") == ["コ", "ー", "ヒ", "ー", "を", "飲", "み", "ま", "す"]
    assert tok("Café naïve Straße") == ["café", "naïve", "straße"]  # kept whole, not stemmed
    assert tok("Привет, мир!") == ["привет", "мир"]
    assert tok("Καλημέρα κόσμε") == ["καλημέρα", "κόσμε"]
    assert tok("안녕하세요 세계") == ["안녕하세요", "세계"]
    assert tok("3月に running") == ["3", "月", "に", "run"]
    assert tok("I love 🍕🍕!") == ["i", "love", "🍕", "🍕"]
    assert tok("👍🏽 👨\u200d👩\u200d👧") == ["👍🏽", "👨\u200d👩\u200d👧"]  # modifiers and joiners stay with the emoji


@pytest.mark.parametrize("text", ["支持", "我喜欢猫。", "猫が好きです", "コーヒー", "ภาษาไทย", "Die Straße ist schön",
                                  "Привет, мир!", "Καλημέρα κόσμε", "안녕하세요", "مرحبا بالعالم", "🎉🎉", "!!!", ""])
def test_identical_strings_score_100(text):
    assert rouge_l(text, [text]) == 100.0
    assert rouge_l_precision(text, [text]) == 100.0


@pytest.mark.parametrize("pred, ref, expected", [
    ("我喜欢猫", "我喜欢狗", 75.0),  # 4 and 4 characters, LCS 3
    ("猫が好きです", "犬が好きです", 100 * 5 / 6),  # 6 and 6, LCS 5
    ("Die Straße ist schön", "Die Straße ist lang", 75.0),
    ("Gerät kaputt", "Gerät", 100 * 2 / 3),  # P 1/2, R 1 (rouge-score's own tokens: "ger t kaputt" vs "ger t", 80)
    ("Я люблю кошек", "Я люблю собак", 100 * 2 / 3),
    ("Καλημέρα κόσμε", "Καλημέρα φίλε μου", 40.0),  # P 1/2, R 1/3
    ("I love 🍕", "I love 🍣", 100 * 2 / 3),
    ("!!!", "??", 0.0),  # no tokens on either side, different texts
    ("  !!!\n", "!!!", 100.0),  # whitespace-normalised equal
    ("!!!", "a", 0.0),
])
def test_rouge_l_near_strings(pred, ref, expected):
    assert rouge_l(pred, [ref]) == pytest.approx(expected)


def test_rouge_l_max_over_references_and_precision():
    assert rouge_l("我喜欢猫", ["狗", "我喜欢猫"]) == 100.0
    assert rouge_l_precision("the cat sat", ["the cat"]) == pytest.approx(100 * 2 / 3)
    assert rouge_l_precision("the cat", ["the cat sat"]) == 100.0
    assert rouge_l("the cat", ["the cat sat"]) == pytest.approx(80.0)


def test_exact_match_normalises():
    assert exact_match("  The Answer.  ", ["the   answer"]) == 100.0
    assert exact_match("answer", ["other", "Answer!"]) == 100.0
    assert exact_match("answers", ["answer"]) == 0.0


@pytest.mark.parametrize("pred, refs, expected", [
    ("B. because the text is hawkish", ["B"], 100.0),
    ("B", ["B\nBecause plants need light."], 100.0),  # ScienceQA: the reference's first character
    ("A", ["B"], 0.0),
    ("b", ["B"], 0.0),  # case-sensitive, as TRACE
    ("E", ["E"], 0.0),  # not an option letter
    ("The answer is B", ["B"], 0.0),  # only the leading character counts
    ("", ["B"], 0.0),
    ("\n C", ["C"], 100.0),  # leading whitespace skipped (TRACE would not)
    ("C", ["A", "C"], 100.0),
])
def test_option_accuracy(pred, refs, expected):
    assert option_accuracy(pred, refs) == expected


@pytest.mark.parametrize("pred, refs, expected", [
    ("The answer is 3.5 apples, not 4", ["4"], 100.0),  # the last number
    ("The answer is 3.5 apples, not 4", ["3.5"], 0.0),
    ("The answer is 3.5", ["3.5"], 100.0),
    ("x = 2.0001", ["2"], 100.0),  # within 1e-3
    ("x = 2.002", ["2"], 0.0),
    ("The answer is 4", ["10"], 0.0),  # TRACE's pred - ref < 1e-3 (no abs) would count this
    ("12.", ["12"], 100.0),
    ("-5", ["5"], 100.0),  # TRACE's pattern has no sign
    ("1,232", ["1232"], 0.0),  # nor thousands separators: the last number is 232
    ("no number here", ["3"], 0.0),
    ("August.", ["August"], 100.0),  # a non-numeric reference: normalised exact match
    ("July", ["August"], 0.0),
    ("6", [" 6 "], 100.0),
    ("7", ["3", "7"], 100.0),
])
def test_number_accuracy(pred, refs, expected):
    assert number_accuracy(pred, refs) == expected


def test_restore_literals():
    assert restore_literals('print("<STR_LIT:hi>", <NUM_LIT:42>, <CHAR_LIT:c>)') == 'print("hi", 42, c)'
    assert restore_literals("x = <NUM_LIT>; s = '<STR_LIT>'; c = '<CHAR_LIT>'") == "x = 0; s = ''; c = ''"


@pytest.mark.parametrize("pred, refs, expected", [
    ("return x", ["return y"], 87.5),  # 2 * LCS 7 / (8 + 8)
    ('print("hi")', ['print("<STR_LIT:hi>")'], 100.0),
    ("x = 0", ["x = <NUM_LIT>"], 100.0),
    ("s = ''", ["s = '<STR_LIT>'"], 100.0),
    ("x = 1", ["x = <NUM_LIT:10>"], 100 * 10 / 11),  # "x = 1" vs "x = 10": 2 * 5 / 11
    ("", ["x"], 0.0),
    ("<STR_LIT>", ["<STR_LIT>"], 0.0),  # both empty after restoring: TRACE scores 0
    ("abc", ["xyz", "abc"], 100.0),
])
def test_edit_similarity(pred, refs, expected):
    assert edit_similarity(pred, refs) == pytest.approx(expected)


def test_registry():
    assert SCORER_NAMES == ("rougeL", "rougeL_precision", "exact_match", "option_accuracy", "number_accuracy",
                            "edit_similarity")
    assert check_scorer("rougeL") == "rougeL"
    with pytest.raises(ValueError, match=r"unknown scorer 'bleu' \(known: rougeL, "):
        check_scorer("bleu")
    assert score("option_accuracy", "B. because", ["B"]) == 100.0
    for name in SCORER_NAMES:
        assert 0.0 <= score(name, "B 3 x", ["B 4 y"]) <= 100.0


def test_the_config_knows_every_scorer():
    """config.ScorerName validates scorer names at load time; it must list the registry exactly."""
    from typing import get_args

    from citune.config import ScorerName
    from citune.evaluation.scores import SCORER_NAMES

    assert get_args(ScorerName) == SCORER_NAMES
