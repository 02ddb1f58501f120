"""V-score checks: closed label sets and each mechanically checkable constraint, true and false."""
import pytest

from citune.types import Instance, Task
from citune.data.text import normalize, sentence_spans
from citune.data.instructions import closed_labels
from citune.evaluation.vscore import Constraint, build_checker, parse_constraints, validated


def task_of(instruction: str, outputs: list[str], name: str = "t") -> Task:
    return Task(name, [Instance(instruction, f"in {i}", (o,), name) for i, o in enumerate(outputs)], [])


def check(instruction: str, prediction: str, outputs=None) -> bool | None:
    task = task_of(instruction, outputs or [])
    return build_checker(task)(Instance(instruction, "x", ("",)), prediction)


def test_normalize():
    assert normalize("  The  Answer\n is  Yes!! ") == "the answer is yes"
    assert normalize("Positive.") == "positive"
    assert normalize("") == ""


def test_sentences_keep_abbreviations():
    text = "Pick one, e.g. 'A' or 'B'. Then stop.\nDone"
    assert [text[s:e] for s, e in sentence_spans(text)] == ["Pick one, e.g. 'A' or 'B'.", "Then stop.", "Done"]


def test_closed_labels():
    assert closed_labels(["Yes", "no", "yes.", "No", "yes"]) == ["yes", "no"]
    assert closed_labels([f"sentence {i}" for i in range(30)]) is None  # free-form
    assert closed_labels(["a b", "c d", "e f"]) is None  # labels must recur
    rare = ["pos"] * 60 + ["neg"] * 37 + ["odd one", "odd two", "odd three"]
    assert closed_labels(rare) == ["pos", "neg"]  # the 95 % most frequent
    many = [f"l{i % 25}" for i in range(100)]
    assert closed_labels(many) is None  # more than 20 labels


def test_closed_label_task():
    ins = "Classify the sentiment of the tweet."
    outputs = ["positive", "negative"] * 10
    assert check(ins, "Positive.", outputs) is True
    assert check(ins, "neutral", outputs) is False
    assert check(ins, "", outputs) is False


def test_a_few_agreeing_outputs_are_not_a_label_set():
    """A category merging source tasks, one of which has only two training instances that happen
    to share a label: its label set is the category's, so the other label is not a violation."""
    few = "Is the review positive or negative?"
    many = "Label the tweet's sentiment."
    train = [Instance(few, f"r{i}", ("negative",), "c", "amazon") for i in range(2)]
    train += [Instance(many, f"t{i}", (lab,), "c", "tweets") for i, lab in enumerate(["positive", "negative"] * 5)]
    checker = build_checker(Task("c", train, []))
    assert checker(Instance(few, "x", ("positive",)), "positive") is True
    assert checker(Instance(few, "x", ("positive",)), "great") is False
    own = Task("d", [Instance(many, f"t{i}", ("yes",), "d", "s") for i in range(8)]
               + [Instance(few, f"r{i}", (lab,), "d", "s2") for i, lab in enumerate(["a", "b"] * 4)], [])
    assert build_checker(own)(Instance(many, "x", ("yes",)), "a") is False  # 8 outputs: its own set


@pytest.mark.parametrize("instruction, good, bad", [
    ('Decide if the claim holds. Answer "yes" or "no".', "Yes", "maybe"),
    ("Return the number of vowels in the word.", "12", "twelve"),
    ('Choose one of "alpha", "beta" or "gamma" as your answer.', "Beta.", "delta"),
    ("Generate either Completion A or Completion B.", "completion b", "completion c"),
    ("Return a comma-separated list of the nouns in the sentence.", "cat, dog, tree", "cat,, dog"),
    ("Write a title for the article in at most 5 words.", "a b c d e", "a b c d e f"),
    ("Write a headline with fewer than 4 words.", "one two three", "one two three four"),
    ("Summarize the text in a single sentence.", "It rained all day.", "It rained. We stayed in."),
    ("You must write a short poem about the sea.", "Waves.", "   "),
])
def test_each_constraint_kind(instruction, good, bad):
    assert check(instruction, good) is True
    assert check(instruction, bad) is False


def test_kinds_parsed():
    kinds = lambda s: [c.kind for c in parse_constraints([s])]  # noqa: E731
    assert kinds('Answer "yes" or "no".') == ["yes/no", "non_empty"]
    assert kinds("Count the number of words.") == ["number", "non_empty"]
    assert kinds("Write at most 10 words.") == ["max_length", "non_empty"]
    assert kinds("For example, 'x' and 'y' are words.") == []  # examples are not options


def test_nothing_checkable_is_none():
    assert check("The sky is blue today.", "anything") is None
    assert check("Little words like 'the' or 'of' are common.", "x") is None


def test_constraints_broken_by_the_references_are_dropped():
    words = Constraint("max_length", (2, "words"))
    assert validated([words, Constraint("non_empty")], ["a b c", "d e f g"]) == [Constraint("non_empty")]
    assert validated([words], []) == [words]
    ins = "Write the answer in at most 2 words."
    assert check(ins, "one two three", ["a long reference answer", "another long one here"]) is True


def test_keyparts_restrict_the_parsed_sentences():
    ins = "Texts often have 2 words. Write a story about it."
    task = task_of(ins, [])
    x = Instance(ins, "", ("",))
    assert build_checker(task, {ins: [(26, 50)]})(x, "a long story of many words") is True
    assert build_checker(task, {ins: []})(x, "anything") is None
