"""`make demo`'s instance folder: its config kept up to date, a hand-written one left alone."""

from __future__ import annotations

from orchestration import demo


def test_an_outdated_demo_config_is_updated_and_a_hand_written_one_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "ROOT", tmp_path)
    config = tmp_path / ".dagster_home" / "dagster.yaml"
    assert demo.dagster_home() == config.parent and config.read_text() == demo.DAGSTER_YAML

    older = demo.DAGSTER_YAML.replace("  max_runtime_seconds: 43200\n", "")
    assert older != demo.DAGSTER_YAML  # an earlier version, without the run time limit
    config.write_text(older)
    demo.dagster_home()
    assert config.read_text() == demo.DAGSTER_YAML

    own = "# my instance\ntelemetry:\n  enabled: false\n"
    config.write_text(own)
    demo.dagster_home()
    assert config.read_text() == own
