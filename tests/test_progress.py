"""One progress display: plain throttled lines in a log file, a bar only in a terminal."""
import io

from vjepa2.progress import Progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_log_file_gets_plain_lines_at_most_every_interval_and_at_the_end():
    stream = io.StringIO()
    with Progress(5, "collect reach/train", "ep", initial=1, seconds=3600, stream=stream) as bar:
        for _ in range(4):
            bar.update(1, successes=2)
        bar.write("a message that stays")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and "\r" not in stream.getvalue()
    assert lines[0].startswith("collect reach/train: 5/5 ep") and lines[0].endswith("successes 2")
    assert lines[1] == "a message that stays"


def test_a_terminal_gets_a_bar_and_disabled_progress_prints_nothing():
    terminal = Terminal()
    with Progress(3, "pretrain", "step", stream=terminal) as bar:
        bar.update(3, loss=0.5)
    assert "pretrain" in terminal.getvalue() and "\r" in terminal.getvalue()
    quiet = io.StringIO()
    with Progress(3, "pretrain", stream=quiet, enabled=False, seconds=0) as bar:
        bar.update(3)
    assert quiet.getvalue() == ""
