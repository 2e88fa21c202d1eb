from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from earmark.config import SplitConfig
from earmark.data.manifest import Item, Manifest
from earmark.data.split import Fold, check_no_leak, make_folds
from earmark.errors import DatasetError


def manifest(n_groups=12, per_group=5, classes=("a", "b", "c"), folds=None, splits=None) -> Manifest:
    items = []
    for g in range(n_groups):
        for k in range(per_group):
            label = classes[g % len(classes)]
            items.append(Item(Path(f"/x/{g}_{k}.wav"), label, f"g{g}",
                              fold=None if folds is None else str(folds(g)),
                              split=None if splits is None else splits(g)))
    return Manifest(items, Path("/x"), "manifest", "speaker")


def groups_of(m, idx):
    return {m.items[i].group for i in idx}


def test_holdout_keeps_groups_whole_and_stratifies():
    m = manifest(n_groups=30)
    (fold,) = make_folds(m, SplitConfig(method="holdout", test_size=0.3, val_size=0.2), seed=8)
    sides = [groups_of(m, fold.train), groups_of(m, fold.val), groups_of(m, fold.test)]
    assert all(not (a & b) for i, a in enumerate(sides) for b in sides[i + 1:])
    test_labels = Counter(m.items[i].label for i in fold.test)
    assert set(test_labels) == {"a", "b", "c"}
    assert abs(fold.test.size / len(m) - 0.3) < 0.07
    assert fold.train.size + fold.val.size + fold.test.size == len(m)


def test_holdout_is_seeded():
    m = manifest(n_groups=30)
    cfg = SplitConfig(method="holdout")
    a, b, c = (make_folds(m, cfg, seed=s)[0] for s in (8, 8, 9))
    assert a.test.tolist() == b.test.tolist() and a.test.tolist() != c.test.tolist()


def test_default_70_30_by_file():
    items = [Item(Path(f"/x/{i}.wav"), "ab"[i % 2], f"/x/{i}.wav") for i in range(100)]
    (fold,) = make_folds(Manifest(items, Path("/x"), "folders"), SplitConfig(val_size=0), seed=0)
    assert fold.test.size == 30 and fold.train.size == 70


def test_kfold_covers_every_group_once():
    m = manifest(n_groups=15)
    folds = make_folds(m, SplitConfig(method="kfold", folds=5), seed=0)
    assert len(folds) == 5
    tested = np.concatenate([f.test for f in folds])
    assert sorted(tested.tolist()) == list(range(len(m)))


def test_leave_one_group_out():
    m = manifest(n_groups=6)
    folds = make_folds(m, SplitConfig(method="logo", val_size=0), seed=0)
    assert [f.name for f in folds] == [f"g{g}" for g in range(6)]
    assert all(groups_of(m, f.test) == {f.name} for f in folds)


def test_predefined_folds_and_split_are_used_by_default():
    m = manifest(n_groups=10, folds=lambda g: g % 5 + 1)
    folds = make_folds(m, SplitConfig(), seed=0)
    assert [f.name for f in folds] == ["fold1", "fold2", "fold3", "fold4", "fold5"]
    m = manifest(n_groups=10, splits=lambda g: "test" if g < 3 else "train")
    (fold,) = make_folds(m, SplitConfig(), seed=0)
    assert groups_of(m, fold.test) == {"g0", "g1", "g2"}


def test_a_predefined_split_that_leaks_a_group_is_refused():
    m = manifest(n_groups=6, per_group=4)
    # same group on both sides: the second half of each group's files is "test"
    items = [Item(it.path, it.label, it.group, split="test" if int(it.path.stem.split("_")[1]) >= 2 else "train")
             for it in m.items]
    with pytest.raises(DatasetError, match="leaks"):
        make_folds(Manifest(items, m.root, m.layout, "speaker"), SplitConfig(), seed=0)


def test_check_no_leak_directly():
    m = manifest(n_groups=3, per_group=2)
    with pytest.raises(DatasetError, match="g0"):
        check_no_leak(m, Fold("x", np.array([0, 2, 4]), np.array([], dtype=int), np.array([1])))


def test_single_group_class_stays_in_training():
    items = [Item(Path(f"/x/{i}.wav"), "a", f"/x/{i}.wav") for i in range(10)]
    items.append(Item(Path("/x/lonely.wav"), "b", "/x/lonely.wav"))
    (fold,) = make_folds(Manifest(items, Path("/x"), "folders"), SplitConfig(val_size=0), seed=0)
    assert 10 in fold.train.tolist()
