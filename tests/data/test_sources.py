import numpy as np
import pytest

from earmark.data.sources import discover
from earmark.errors import DatasetError

from ..conftest import tone, write_wav


def wav(path, seconds=0.3):
    return write_wav(path, tone(440, seconds, 8000), 8000)


def test_class_folders(tmp_path):
    for label in ("cat", "dog"):
        for k in range(3):
            wav(tmp_path / label / "sub" / f"{k}.wav")
    (tmp_path / "cat" / "notes.txt").write_text("not audio")
    m = discover(tmp_path)
    assert m.layout == "folders" and m.labels == ["cat", "dog"] and len(m) == 6
    assert len({it.group for it in m.items}) == 6  # one group per file


def test_manifest_with_group_fold_split_and_missing_rows(tmp_path):
    for k in range(4):
        wav(tmp_path / "a" / f"{k}.wav")
    (tmp_path / "manifest.csv").write_text(
        "path,label,speaker,fold,split\n"
        "a/0.wav,x,s1,1,train\na/1.wav,y,s1,1,train\na/2.wav,x,s2,2,test\na/3.wav,y,s2,2,val\n"
        "a/missing.wav,x,s3,2,train\n")
    m = discover(tmp_path)
    assert m.layout == "manifest" and len(m) == 4
    assert m.missing and "missing.wav" in m.missing[0][0]
    assert [it.split for it in m.items] == ["train", "train", "test", "val"]
    assert m.has_folds and m.has_split
    by_speaker = discover(tmp_path, group="speaker")
    assert {it.group for it in by_speaker.items} == {"speaker=s1", "speaker=s2"}
    with pytest.raises(DatasetError, match="no 'artist' column"):
        discover(tmp_path, group="artist")


def test_manifest_needs_path_and_label(tmp_path):
    (tmp_path / "manifest.csv").write_text("file,class\na.wav,x\n")
    with pytest.raises(DatasetError, match="path and label"):
        discover(tmp_path)


def test_esc50_layout(tmp_path):
    (tmp_path / "meta").mkdir()
    rows = ["filename,fold,target,category,esc10,src_file,take"]
    for k, (fold, cat) in enumerate([(1, "dog"), (1, "rain"), (2, "dog"), (2, "rain")]):
        wav(tmp_path / "audio" / f"{fold}-{100 + k}-A-0.wav")
        rows.append(f"{fold}-{100 + k}-A-0.wav,{fold},0,{cat},True,{100 + k},A")
    (tmp_path / "meta" / "esc50.csv").write_text("\n".join(rows) + "\n")
    m = discover(tmp_path)
    assert m.layout == "esc50" and m.labels == ["dog", "rain"] and {it.fold for it in m.items} == {"1", "2"}


def test_urbansound8k_layout(tmp_path):
    (tmp_path / "metadata").mkdir()
    rows = ["slice_file_name,fsID,start,end,salience,fold,classID,class"]
    for k, (fold, cls) in enumerate([(1, "siren"), (1, "drilling"), (2, "siren"), (2, "drilling")]):
        wav(tmp_path / "audio" / f"fold{fold}" / f"{k}-0-0.wav")
        rows.append(f"{k}-0-0.wav,{k},0,1,1,{fold},0,{cls}")
    (tmp_path / "metadata" / "UrbanSound8K.csv").write_text("\n".join(rows) + "\n")
    m = discover(tmp_path)
    assert m.layout == "urbansound8k" and m.labels == ["drilling", "siren"] and m.group_by == "fsID"


def test_speech_commands_layout(tmp_path):
    for word in ("yes", "no"):
        for spk in ("aaa", "bbb", "ccc"):
            wav(tmp_path / word / f"{spk}_nohash_0.wav")
    wav(tmp_path / "_background_noise_" / "noise.wav")
    (tmp_path / "validation_list.txt").write_text("yes/bbb_nohash_0.wav\nno/bbb_nohash_0.wav\n")
    (tmp_path / "testing_list.txt").write_text("yes/ccc_nohash_0.wav\nno/ccc_nohash_0.wav\n")
    m = discover(tmp_path)
    assert m.layout == "speech_commands" and m.labels == ["no", "yes"] and len(m) == 6
    splits = {(it.meta["speaker"], it.split) for it in m.items}
    assert splits == {("aaa", "train"), ("bbb", "val"), ("ccc", "test")}


def test_fsdd_layout(tmp_path):
    for d in range(10):
        for spk in ("jackson", "theo"):
            for i in (0, 7):
                wav(tmp_path / "recordings" / f"{d}_{spk}_{i}.wav")
    m = discover(tmp_path)
    assert m.layout == "fsdd" and m.labels == [str(d) for d in range(10)]
    assert m.group_by == "speaker"
    assert {it.split for it in m.items if it.meta["index"] == "0"} == {"test"}


def test_gtzan_layout(tmp_path):
    for genre in ("blues", "classical", "country", "disco", "jazz"):
        wav(tmp_path / "genres_original" / genre / f"{genre}.00000.wav")
    m = discover(tmp_path)
    assert m.layout == "gtzan" and len(m.labels) == 5


def test_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="no audio found"):
        discover(tmp_path)
    with pytest.raises(DatasetError, match="does not exist"):
        discover(tmp_path / "nope")


def test_limit_per_class_is_seeded(tmp_path):
    for label in ("a", "b"):
        for k in range(10):
            wav(tmp_path / label / f"{k}.wav", 0.05)
    m = discover(tmp_path)
    sub1, sub2 = m.limit_per_class(3, seed=1), m.limit_per_class(3, seed=1)
    assert len(sub1) == 6 and [i.path for i in sub1.items] == [i.path for i in sub2.items]
    assert np.unique([i.label for i in sub1.items], return_counts=True)[1].tolist() == [3, 3]
