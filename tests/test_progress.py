"""Progress of long work: done of total and an estimate of the time left (issue 17: `make run`
was silent for minutes)."""

import pytest

from staffml_dagster.progress import PREFIX, ProgressLog, format_duration, progress_line


def test_durations_read_as_people_say_them():
    assert [format_duration(s) for s in (0, 44.6, 60, 200, 3599, 3600, 3900)] == [
        "0 s",
        "45 s",
        "1 min 00 s",
        "3 min 20 s",
        "59 min 59 s",
        "1 h 00 min",
        "1 h 05 min",
    ]


def test_time_left_follows_the_pace_so_far():
    # 40 of 344 partitions in 65 s: 304 more at 1.625 s each is 494 s
    assert (
        progress_line("questions", "partitions", 40, 344, 65)
        == "questions: 40/344 partitions (12%), 1 min 05 s elapsed, about 8 min 14 s left"
    )
    assert progress_line("cell_capacity", "partitions", 0, 344, 3).endswith("3 s elapsed, time left not known yet")
    assert progress_line("cell_capacity", "partitions", 344, 344, 200).endswith("(100%), 3 min 20 s elapsed, done")
    assert progress_line("questions", "cells", 0, 0, 0) == "questions: 0/0 cells, 0 s elapsed, done"
    with pytest.raises(ValueError, match="done 5 must be between 0 and the total 4"):
        progress_line("questions", "cells", 5, 4, 1)


def test_progress_log_writes_at_most_every_interval_and_always_at_the_end():
    now = [0.0]
    lines = []
    progress = ProgressLog(lines.append, "validated_questions", "questions", 10, every=15, clock=lambda: now[0])
    for _ in range(9):
        now[0] += 4  # a line at 16 s and at 32 s, not on every question
        progress.advance()
    assert lines == [
        PREFIX + "validated_questions: 4/10 questions (40%), 16 s elapsed, about 24 s left",
        PREFIX + "validated_questions: 8/10 questions (80%), 32 s elapsed, about 8 s left",
    ]
    now[0] += 1
    progress.advance()
    assert lines[-1] == PREFIX + "validated_questions: 10/10 questions (100%), 37 s elapsed, done"
    progress.start(2)  # counting again once a total is known
    progress.advance(2)
    assert lines[-1] == PREFIX + "validated_questions: 2/2 questions (100%), 0 s elapsed, done"
