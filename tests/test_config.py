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


# ------------------------------------------------------------- recipe formats: old runs keep their behaviour


CHOSEN_NORM = "max"  # the default front-end of recipe format 2 (docs/default-recipe.md)


def _old_style_config(tmp_path):
    """A run folder's config.yaml as earmark wrote it before recipe format 2 (no loudness settings)."""
    import yaml

    data = load_recipe("default").model_dump(mode="json")
    del data["recipe_format"]
    for key in ("log_floor_db", "segment_norm"):
        del data["features"][key]
    run = tmp_path / "old-run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return run


def test_new_recipes_floor_relative_to_the_segment_and_remove_its_level():
    for name in recipe_names():
        r = load_recipe(name)
        assert r.recipe_format == 2
        assert r.features.log_floor_db == 80.0 and r.features.segment_norm == CHOSEN_NORM


def test_old_run_config_loads_with_the_old_front_end(tmp_path):
    from earmark.models.net import build_net
    from earmark.run import load_run_recipe

    old = load_run_recipe(_old_style_config(tmp_path))
    assert old.recipe_format == 1
    assert old.features.log_floor_db is None and old.features.segment_norm == "none"
    assert old.features.log_floor == 1e-6 and old.features.n_mels == 64  # what it did state is kept
    frontend = build_net(old, 3).frontend
    assert frontend.log_floor_db is None and frontend.segment_norm == "none"
    (tmp_path / "old-run" / "run.json").write_text("{}")  # retraining from an old run's own config.yaml
    again = load_recipe(str(tmp_path / "old-run" / "config.yaml"), ["train.epochs=3"])
    assert again.features.log_floor_db is None and again.features.segment_norm == "none"


def test_saved_recipe_round_trips_with_its_format(tmp_path):
    import yaml

    from earmark.config import recipe_from_dict
    from earmark.run import load_run_recipe

    new = load_recipe("default")
    run = tmp_path / "new-run"
    run.mkdir()
    (run / "config.yaml").write_text(new.to_yaml())
    assert load_run_recipe(run) == new
    old = load_run_recipe(_old_style_config(tmp_path))
    assert recipe_from_dict(yaml.safe_load(old.to_yaml())) == old  # re-saved, still the old behaviour
    explicit = recipe_from_dict({"features": {"segment_norm": "mean"}})  # an old format states a new setting
    assert explicit.features.segment_norm == "mean" and explicit.features.log_floor_db is None


def test_recipe_format_from_the_future_is_refused():
    from earmark.config import recipe_from_dict

    with pytest.raises(ConfigError, match="recipe_format"):
        recipe_from_dict({"recipe_format": 3})
