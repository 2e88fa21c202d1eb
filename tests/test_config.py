import pytest

from earmark.config import load_recipe, parse_override, recipe_names
from earmark.errors import ConfigError


def test_builtin_recipes_load_and_validate():
    names = recipe_names()
    assert "default" in names
    for name in names:
        r = load_recipe(name)
        assert r.name == name and r.description


def test_overrides_are_typed_and_nested():
    r = load_recipe("default", ["train.epochs=5", "model.name=resnet34", "features.f_max=null",
                                "train.loggers=[csv]", "augment.mixup.p=0.25"])
    assert r.train.epochs == 5 and isinstance(r.train.epochs, int)
    assert r.model.name == "resnet34"
    assert r.features.f_max is None
    assert r.train.loggers == ["csv"]
    assert r.augment.mixup.p == 0.25


def test_parse_override_values_are_yaml():
    assert parse_override("a.b=3") == (["a", "b"], 3)
    assert parse_override("a=true") == (["a"], True)
    assert parse_override("a=x=y") == (["a"], "x=y")


@pytest.mark.parametrize("bad, message", [
    ("train.epochz=5", "epochz"),            # typo: unknown key is refused, not ignored
    ("train.epochs=-1", "train.epochs"),
    ("train.epochs", "key=value"),
    ("segment.short=stretch", "segment.short"),
    ("features.f_max=12000", "Nyquist"),      # above 8 kHz at 16 kHz
])
def test_invalid_settings_give_clear_errors(bad, message):
    with pytest.raises(ConfigError, match=message):
        load_recipe("default", [bad])


def test_unknown_recipe_lists_the_known_ones():
    with pytest.raises(ConfigError, match="default"):
        load_recipe("no-such-recipe")


def test_recipe_from_yaml_file(tmp_path):
    p = tmp_path / "mine.yaml"
    p.write_text("train:\n  epochs: 2\nmodel:\n  name: crnn\n")
    r = load_recipe(str(p), ["train.batch_size=8"])
    assert (r.name, r.train.epochs, r.model.name, r.train.batch_size) == ("mine", 2, "crnn", 8)


def test_user_overrides_win_over_a_variants_own_settings():
    r = load_recipe("default", ["train.epochs=2"])
    r.variants = {"long": ["train.epochs=30", "model.name=crnn"]}
    assert r.variant("long").train.epochs == 30
    v = r.variant("long", ["train.epochs=2"])
    assert (v.train.epochs, v.model.name, v.name) == (2, "crnn", "default/long")
