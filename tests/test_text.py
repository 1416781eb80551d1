from labkit.measure.text import repetition


def test_repetition_new_text_is_zero():
    assert repetition([1, 2, 3, 4], [5, 6, 7, 8, 9]) == 0.0


def test_repetition_pure_loop_is_one():
    # the output continues the prompt's period-4 loop: every generated 4-gram occurred before
    assert repetition([1, 2, 3, 4, 1, 2, 3, 4], [1, 2, 3, 4, 1, 2]) == 1.0


def test_repetition_counts_ngrams_ending_in_output():
    # prompt 1 2 3, output 4 1 2 3 4: generated 4-grams (1234) (2341) (3412) (4123) (1234): only the last repeats
    assert repetition([1, 2, 3], [4, 1, 2, 3, 4]) == 1 / 5


def test_repetition_short_output():
    assert repetition([], [1, 2]) == 0.0
    assert repetition([1, 2, 3, 4], [9], n=2) == 0.0
