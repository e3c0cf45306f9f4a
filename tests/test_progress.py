"""Progress lines for logs: counts, percentages and an ETA."""

import io

from tfbdl.progress import LineProgress, progress


def test_line_progress_reports_count_percent_and_eta():
    stream = io.StringIO()
    with LineProgress(4, "blocks", every_seconds=0.0, stream=stream) as bar:
        bar.update(1)
        bar.update(3)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("blocks: 1/4 (25%)") and "ETA 0m00s" in lines[0]
    assert lines[-1].startswith("blocks: 4/4 (100%)")


def test_hidden_progress_prints_nothing(capsys):
    with progress(3, "quiet", show=False) as bar:
        bar.update(3)
    assert capsys.readouterr().err == ""
