"""Presets: strict YAML loading, --set overrides, custom presets, pre-roll arithmetic."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import ConfigError
from core.presets import TemporalConfig, apply_sets, list_presets, load_preset, save_preset
from stylizers import checked_preset


@pytest.mark.parametrize("name", ["speed", "balanced", "quality"])
def test_bundled_presets_load(name: str) -> None:
    p = checked_preset(name)
    assert p.name == name and p.encoder.codec == "libx264" and p.description


def test_unknown_key_names_key_and_file(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("encoder:\n  crff: 18\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*unknown key 'crff'"):
        load_preset(str(f))


@pytest.mark.parametrize(("text", "match"), [
    ("chunk_seconds: fast\n", "chunk_seconds: expected a number"),
    ("encoder:\n  crf: 18.5\n", "crf: expected an integer"),
    ("temporal:\n  mode: wobble\n", "'wobble' is not one of"),
    ("styles:\n  pencil:\n    blur_sigma: [1]\n", "blur_sigma: expected a number"),
    ("styles:\n  oil: {}\n", "unknown style 'oil'"),
    ("encoder: [1, 2\n", "not valid YAML"),
])
def test_wrong_values_are_errors(tmp_path: Path, text: str, match: str) -> None:
    f = tmp_path / "p.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=match) as err:
        checked_preset(str(f))
    assert str(f) in str(err.value)


def test_save_and_load_custom_preset(studio_home: Path) -> None:
    custom = apply_sets(load_preset("balanced"), {"encoder.crf": "16", "temporal.strength": "0.5"})
    path = save_preset(custom, "my-look")
    assert path.parent == studio_home / "presets"
    back = load_preset("my-look")
    assert back.encoder.crf == 16 and back.temporal.strength == 0.5 and back.name == "my-look"
    assert "my-look" in list_presets()
    with pytest.raises(ConfigError):
        save_preset(custom, "../escape")


def test_preroll_leaves_less_than_a_tenth_of_a_code_value() -> None:
    for s in (0.1, 0.3, 0.5, 0.7, 0.8):
        t = TemporalConfig(strength=s, lines_strength=s, max_preroll=500)
        n = t.preroll_frames()
        assert s**n * 255 < 0.1 <= s ** (n - 1) * 255
    assert TemporalConfig(mode="off").preroll_frames() == 1
