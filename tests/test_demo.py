"""`make demo` runs the whole pipeline on the demo workbook and exits 0, sending each message once."""

from __future__ import annotations

from homevisits import demo


def test_demo_runs_every_step_and_the_second_run_sends_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "left-over.txt").write_text("from an earlier run")
    assert demo.run() == 0
    out = capsys.readouterr().out
    made = tmp_path / "demo"
    assert not (made / "left-over.txt").exists()  # starts afresh
    assert (made / "home_visits.xlsx").is_file()
    assert "<html" in (made / "validation.html").read_text(encoding="utf-8").lower()
    assert '"findings"' in (made / "validation.json").read_text(encoding="utf-8")
    forms = {
        p.stem: sorted(q.suffix for q in (made / "forms").glob(p.stem + ".*"))
        for p in (made / "forms").iterdir()
    }
    assert set(forms) == {"V-134-risk_assessment", "V-135-risk_assessment", "V-139-risk_assessment"}
    assert all(suffixes == [".html", ".pdf"] for suffixes in forms.values())
    assert sorted(p.suffix for p in (made / "reports").iterdir()) == [".html", ".xlsx"]
    kinds = sorted(p.name.split("_")[1] for p in (made / "outbox").glob("*.eml"))
    assert kinds == ["deadline-missed", "form", "overdue-alert", "reminder"]
    assert "Nothing new was sent: demo/outbox still holds the 4 messages of the first run." in out
    texts = sorted(p.read_text(encoding="utf-8") for p in (made / "texts").glob("*.txt"))
    assert [t.split("\n\n")[1].split(":")[0] for t in texts] == ["Recorded", "URGENT home visit V-132"]
    assert "recorded from a text: V-131 returned_at" in out
