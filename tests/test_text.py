"""Text conditioning: captions that are true of their images, condition dropout to the empty caption, guidance
with a one-row null condition, and the offline sentence encoder (against sentence-transformers itself); a
text-conditional run from the configuration to `difflab sample --prompt`."""

import importlib.util
import random

import pytest
import torch
from typer.testing import CliRunner

import difflab as dl
from difflab.cli import app
from difflab.data import captions as cap
from difflab.objectives import drop_labels

HAVE_ENCODER = importlib.util.find_spec("transformers") is not None and importlib.util.find_spec("all_minilm_l6_v2") is not None
needs_encoder = pytest.mark.skipif(not HAVE_ENCODER, reason="the optional extra difflab[text] is not installed")


def test_seen_and_held_out_wording_never_meet():
    seen, held = cap.captions("seen"), cap.captions("held_out")
    assert not {c.text for c in seen} & {c.text for c in held}
    for table in (cap.SYNONYMS, cap.SHADES, cap.SIZES):
        words = [(set(a), set(b)) for a, b in table.values()]
        assert not set().union(*(a for a, _ in words)) & set().union(*(b for _, b in words))
    assert not set(cap.TEMPLATES[0]) & set(cap.TEMPLATES[1])
    # every (class, shade, size) has captions of both splits, and each caption names its class's words
    for split, table in (("seen", seen), ("held_out", held)):
        s = cap.SPLITS.index(split)
        keys = {(c.label, c.shade, z) for c in table for z in ((c.size,) if c.size is not None else (0, 1, 2))}
        assert keys == {(a, b, z) for a in range(10) for b in range(3) for z in range(3)}
        for c in table:
            assert any(w in c.text for w in cap.SYNONYMS[c.label][s]) and any(w in c.text for w in cap.SHADES[c.shade][s])
            assert c.size is None or any(w in c.text for w in cap.SIZES[c.size][s])
    assert cap.caption_for(8, 0, 0, "seen", random.Random(3)) in {c.text for c in seen}
    assert "an image of" in {c.text[:11] for c in seen} and "a image" not in " ".join(c.text for c in seen)


def _words(text: str) -> set:
    """The words of a text up to a plural "s" ("sandals" is "sandal")."""
    import re

    return {w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w for w in re.findall(r"[a-z]+", text.lower())}


def test_the_thesaurus_adds_no_word_the_held_out_tests_ask_for():
    """Augmentation may widen the training wording, but a word of the held-out vocabulary or of the user prompts
    that the seen vocabulary lacks must stay unseen, or the held-out figures would stop measuring generalisation."""
    from difflab.data import thesaurus as th
    from difflab.data.user_prompts import USER_PROMPTS

    def vocabulary(i):
        out = set()
        for table in (cap.SYNONYMS, cap.SHADES, cap.SIZES):
            for v in table.values():
                out |= set().union(*(_words(w) for w in v[i]))
        return out | set().union(*(_words(t) for t in cap.TEMPLATES[i]))

    seen = vocabulary(0)
    tested = (vocabulary(1) | set().union(*(_words(p[0]) for p in USER_PROMPTS))) - seen
    added = set()
    for table in (th.CLASS_WORDS, th.SHADE_WORDS, th.SIZE_WORDS):
        for v in table.values():
            added |= set().union(*(_words(w) for w in v))
    added |= set().union(*(_words(t) for t in th.EXTRA_TEMPLATES))
    assert "parka" in tested and "breeche" in added  # the check sees what it should
    assert not added & tested, sorted(added & tested)
    # nor a phrase of them ("dress shirt" is made of seen words, but it is a held-out name)
    texts = [f" {c.text.lower()} " for c in cap.captions("held_out")] + [f" {p[0].lower()} " for p in USER_PROMPTS]
    seen_names = {w.lower() for v in cap.SYNONYMS.values() for w in v[0]}
    for table in (th.CLASS_WORDS, th.SHADE_WORDS, th.SIZE_WORDS):
        for v in table.values():
            for w in v:
                assert w.lower() not in seen_names and not any(f" {w.lower()} " in t for t in texts), w
    # class words of different classes never coincide, nor with another class's seen names
    names = {c: set(v[0]) | set(th.CLASS_WORDS[c]) for c, v in cap.SYNONYMS.items()}
    for a in range(10):
        for b in range(a):
            assert not names[a] & names[b], (a, b, names[a] & names[b])


def test_augmented_captions_are_true_of_their_group_and_use_every_added_word():
    from difflab.data import thesaurus as th

    table = cap.captions("augmented")
    assert table == cap.captions("augmented") and len({c.text for c in table}) == len(table)
    assert len(table) <= 90 * cap.PER_GROUP
    keys = {(c.label, c.shade, z) for c in table for z in ((c.size,) if c.size is not None else (0, 1, 2))}
    assert keys == {(a, b, z) for a in range(10) for b in range(3) for z in range(3)}
    items, shades, sizes, templates = cap._vocabulary("augmented")
    for c in table:
        assert c.split == "augmented"
        assert any(w in c.text for w in items[c.label]) and any(w in c.text for w in shades[c.shade])
        assert c.size is None or any(w in c.text for w in sizes[c.size])
        # no other class's name appears unless it is part of this class's (e.g. "coat" in "coatdress")
        others = [w for k in range(10) if k != c.label for w in items[k] if f" {w} " in f" {c.text} "]
        assert all(any(w in mine for mine in items[c.label] if mine in c.text) for w in others), (c, others)
    text = " ".join(c.text for c in table)
    for v in th.CLASS_WORDS.values():
        assert all(w in text for w in v)
    assert not {c.text for c in table} & {c.text for c in cap.captions("held_out")}
    assert cap.caption_for(4, 0, 2, "augmented", random.Random(3)) in {
        cap._article(t.format(item=i, shade=s, size=z)) for t in templates for i in items[4] for s in shades[0] for z in sizes[2]}
    cfg = dl.config.load_config("fashion_mnist", ["data.captions=augmented", "model.text_conditional=true"])
    assert cfg.data.captions == "augmented"
    with pytest.raises(ValueError, match="augmented"):
        dl.config.load_config("fashion_mnist", ["data.captions=thesaurus"])


def test_a_class_conditional_run_is_measured_on_prompts_by_their_classes(tmp_path, monkeypatch):
    """The ceiling of a text model: the same prompts, the class-conditional model given each one's class."""
    from difflab import sampling
    from difflab.data.user_prompts import user_prompts
    from difflab.evaluate import run_text_metrics

    images = dl.data.fashion_mnist("train")
    small = dl.data.ImageData(images.images[:200], images.labels[:200], images.name, images.class_names)
    over = ["model.class_conditional=true", "diffusion.p_uncond=0.2", "model.kind=dit", "model.patch_size=4",
            "model.width=32", "model.depth=1", "model.heads=2", "train.steps=2", "train.batch_size=8", "train.checkpoint_every=2"]
    dl.runs.train(dl.config.load_config("fashion_mnist", over), tmp_path / "c", resume=False, progress=False, data=small)
    seen, real = [], sampling.sample_batched

    def spy(*args, **kwargs):
        seen.append(kwargs["cond"])
        return real(*args, **kwargs)

    monkeypatch.setattr(sampling, "sample_batched", spy)
    prompts = user_prompts()[::17]
    rows = run_text_metrics(tmp_path / "c", prompts, [0, 2], per_prompt=3, steps=2, reference=40)
    want = torch.tensor([p.label for p in prompts]).repeat_interleave(3)
    assert len(seen) == 2 and all(set(c) == {"label"} and torch.equal(c["label"], want) for c in seen)
    assert [r["scale"] for r in rows] == [0.0, 2.0] and rows[0]["n"] == 3 * len(prompts)
    assert all(0 <= r["class_accuracy"] <= 1 for r in rows)
    dl.runs.train(dl.config.load_config("fashion_mnist", over[2:]), tmp_path / "u", resume=False, progress=False, data=small)
    with pytest.raises(ValueError, match="neither text-conditional nor a class-conditional"):
        run_text_metrics(tmp_path / "u", prompts, [0], per_prompt=1, steps=2, reference=40)


def _garments(n_per_class=6):
    """Images whose attributes are known: class c, image k lights a block of (k + 1) * 10 pixels at intensity
    0.2 + 0.1 k (on [0, 1])."""
    imgs, labels = [], []
    for c in range(10):
        for k in range(n_per_class):
            u = torch.zeros(784, dtype=torch.float64)
            u[:(k + 1) * 10 + c] = 0.2 + 0.1 * k
            imgs.append(u.reshape(1, 28, 28) * 2 - 1)
            labels.append(c)
    return torch.stack(imgs).float(), torch.tensor(labels)


def test_attributes_are_measured_against_each_classs_tertiles():
    x, y = _garments()
    cuts = cap.thresholds(x, y)
    shade, size = cap.attributes(x, y, cuts)
    # within each class the k-th image is k-th darkest and smallest: tertiles give 0, 0, 1, 1, 2, 2
    expect = torch.tensor([0, 0, 1, 1, 2, 2]).repeat(10)
    assert torch.equal(shade, expect) and torch.equal(size, expect)
    # the measured figures: mean intensity of lit pixels and their share
    mean, share = cap._measure(x[:1])
    assert abs(float(mean) - 0.2) < 1e-6 and abs(float(share) - 10 / 784) < 1e-12
    restored = cap.Thresholds.from_dict(cuts.to_dict())
    assert torch.equal(restored.shade, cuts.shade) and torch.equal(restored.size, cuts.size)
    with pytest.raises(ValueError, match="at least 3"):
        cap.thresholds(x[:20], y[:20])


def test_every_image_gets_a_caption_that_is_true_of_it():
    x, y = _garments()
    cuts = cap.thresholds(x, y)
    shade, size = cap.attributes(x, y, cuts)
    for split in ("seen", "held_out"):
        table = cap.captions(split)
        idx = cap.assign(y, shade, size, table, seed=1)
        for i, j in enumerate(idx.tolist()):
            c = table[j]
            assert c.label == y[i] and c.shade == shade[i] and c.size in (None, int(size[i]))
        assert torch.equal(idx, cap.assign(y, shade, size, table, seed=1))


def test_the_prompt_sets_ask_for_every_class_shade_and_size_once():
    from difflab.evaluate import prompt_set

    for split in ("seen", "held_out"):
        ps = prompt_set(split)
        assert sorted((p.label, p.shade, p.size) for p in ps) == [(a, b, c) for a in range(10) for b in range(3) for c in range(3)]
        assert all(p.split == split for p in ps) and [p.text for p in ps] == [p.text for p in prompt_set(split)]


def test_condition_dropout_replaces_whole_captions_by_the_null_one():
    B, L, D = 64, 5, 3
    cond = {"context": torch.randn(B, L, D), "context_mask": torch.ones(B, L, dtype=torch.bool), "pooled": torch.randn(B, D)}
    null = {"context": torch.zeros(1, L, D), "context_mask": torch.tensor([[1, 1, 0, 0, 0]], dtype=torch.bool),
            "pooled": torch.full((1, D), 7.0)}
    out = drop_labels(cond, 0.3, torch.Generator().manual_seed(0), null)
    dropped = (out["pooled"] == 7.0).all(1)
    # the same draw as label dropout's: the same examples are dropped
    labels = drop_labels({"label": torch.arange(B)}, 0.3, torch.Generator().manual_seed(0))["label"]
    assert torch.equal(dropped, labels == -1) and 0 < int(dropped.sum()) < B
    for k in cond:
        assert torch.equal(out[k][~dropped], cond[k][~dropped])
        assert torch.equal(out[k][dropped], null[k].expand_as(out[k][dropped]))


def test_guidance_with_a_one_row_null_condition():
    """D_w = D_c + w (D_c - D_u), D_u the denoiser at the empty caption (one row, given to every example)."""
    def den(x, t, context, context_mask, pooled):
        return x * 0.5 + pooled.sum(1, keepdim=True) + (context * context_mask[..., None]).sum((1, 2))[:, None]

    B, L, D = 4, 3, 2
    cond = {"context": torch.randn(B, L, D), "context_mask": torch.ones(B, L, dtype=torch.bool), "pooled": torch.randn(B, D)}
    null = {"context": torch.randn(1, L, D), "context_mask": torch.tensor([[1, 0, 0]], dtype=torch.bool), "pooled": torch.randn(1, D)}
    x, t = torch.randn(B, 2), torch.full((B,), 0.5)
    for batched in (True, False):
        g = dl.guidance.classifier_free(den, 3.0, null=null, batched=batched)(x, t, **cond)
        dc = den(x, t, **cond)
        du = den(x, t, **{k: v.expand(B, *v.shape[1:]) for k, v in null.items()})
        assert torch.allclose(g, dc + 3.0 * (dc - du), atol=1e-6)


def test_a_text_model_needs_captions_and_says_so():
    with pytest.raises(ValueError, match="needs captioned data"):
        dl.config.load_config("fashion_mnist", ["model.text_conditional=true"])
    with pytest.raises(ValueError, match="fashion_mnist"):
        dl.config.load_config("digits", ["data.captions=seen"])
    with pytest.raises(ValueError, match="data.captions"):
        dl.config.load_config("fashion_mnist", ["data.captions=all"])
    with pytest.raises(ValueError, match="diffusion run on images"):
        dl.config.load_config("fashion_mnist", ["data.captions=seen", "model.text_conditional=true", "model.kind=mlp"])


def test_a_missing_extra_is_one_clear_line(monkeypatch, tmp_path):
    from difflab import text_encoder

    monkeypatch.setenv("DIFFLAB_CACHE", str(tmp_path))
    monkeypatch.setattr(text_encoder.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'difflab\[text\]'"):
        text_encoder.model_dir()


@needs_encoder
def test_the_sentence_embedding_is_sentence_transformers():
    from difflab.text_encoder import SentenceEncoder, model_dir

    texts = ["a dark ankle boot", "footwear for jogging, black", "", "a photo of a wide white handbag"]
    enc = SentenceEncoder()
    out = enc(texts)
    assert out["context"].shape[:2] == out["mask"].shape and out["pooled"].shape == (4, 384)
    assert torch.allclose(out["pooled"].norm(dim=1), torch.ones(4), atol=1e-5)
    st = pytest.importorskip("sentence_transformers")
    ref = torch.as_tensor(st.SentenceTransformer(str(model_dir()), device="cpu").encode(texts))
    assert torch.allclose(out["pooled"], ref, atol=1e-5)
    # padding to a longer length changes neither the real tokens' states nor the sentence embedding
    longer = enc(texts, length=out["mask"].shape[1] + 4)
    L = out["mask"].shape[1]
    assert torch.allclose(longer["pooled"], out["pooled"], atol=1e-5)
    assert torch.allclose(longer["context"][:, :L] * out["mask"][..., None], out["context"], atol=1e-4)
    assert not longer["mask"][:, L:].any() and int(out["mask"][2].sum()) == 2  # "" is [CLS] [SEP]


@needs_encoder
def test_a_text_conditional_run_from_training_to_a_prompt_grid(tmp_path):
    images = dl.data.fashion_mnist("train")
    small = dl.data.ImageData(images.images[:300], images.labels[:300], images.name, images.class_names)
    data = cap.captioned(small)
    assert data.caption(0) == data.texts[int(data.caption_index[0])]
    batch = data.batch(torch.tensor([0, 5]))
    assert batch["context"].shape == (2, data.length, 384) and batch["pooled"].shape == (2, 384)
    over = ["data.captions=seen", "model.text_conditional=true", "diffusion.p_uncond=0.2", "model.kind=dit",
            "model.patch_size=4", "model.width=32", "model.depth=1", "model.heads=2", "train.steps=2", "train.batch_size=8",
            "train.checkpoint_every=2"]
    cfg = dl.config.load_config("fashion_mnist", over)
    dl.runs.train(cfg, tmp_path / "t", resume=False, progress=False, data=data)
    info = dl.runs.data_info(tmp_path / "t")
    assert info["captions"]["dim"] == 384 and info["captions"]["length"] == data.length
    out = tmp_path / "grid.png"
    res = CliRunner().invoke(app, ["sample", str(tmp_path / "t"), "--prompt", "a dark ankle boot", "--prompt",
                                          "footwear for jogging, black", "--n", "3", "--steps", "2", "--guidance", "2",
                                          "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert out.exists() and "6 samples" in res.output
    res = CliRunner().invoke(app, ["sample", str(tmp_path / "t"), "--n", "2", "--steps", "2", "--out", str(out)])
    assert res.exit_code == 2 and "--prompt" in res.output
    res = CliRunner().invoke(app, ["info", str(tmp_path / "t")])
    assert res.exit_code == 0 and "text-conditional" in res.output and "384 features" in res.output
    res = CliRunner().invoke(app, ["sample", str(tmp_path / "t"), "--prompt", "", "--n", "2", "--steps", "2",
                                   "--out", str(tmp_path / "empty.png")])
    assert res.exit_code == 0 and "an empty --prompt is the unconditional model" in res.output, res.output
    res = CliRunner().invoke(app, ["bench", "samplers", str(tmp_path / "t"), "--n", "10", "--nfe", "2"])
    assert res.exit_code == 2 and "text-conditional" in res.output and not (tmp_path / "t" / "bench_samplers.json").exists()
    from difflab.evaluate import prompt_set, run_text_metrics

    rows = run_text_metrics(tmp_path / "t", prompt_set("held_out")[:6], [0, 2], per_prompt=2, steps=2, reference=40)
    assert [r["scale"] for r in rows] == [0.0, 2.0] and rows[0]["nfe"] == 2 and rows[1]["nfe"] == 4
    for r in rows:
        assert r["n"] == 12 and all(0 <= r[k] <= 1 for k in ("class_accuracy", "shade_accuracy", "size_accuracy"))
    with pytest.raises(ValueError, match="text-conditional"):
        dl.evaluate.run_sample_metrics(tmp_path / "t", ("fid",), n=4, steps=2)


@needs_encoder
def test_a_pooled_only_text_model_reads_the_sentence_embedding_alone(tmp_path):
    """model.text_tokens = false: no cross-attention; the network, the training batch, dropout's null, the prompts and
    guidance all carry only the sentence embedding (a null with fields the model does not read would stop training),
    and the network's output moves with it."""
    with pytest.raises(ValueError, match="model.text_conditional = true"):
        dl.config.load_config("fashion_mnist", ["model.text_tokens=false"])
    images = dl.data.fashion_mnist("train")
    data = cap.captioned(dl.data.ImageData(images.images[:300], images.labels[:300], images.name, images.class_names))
    over = ["data.captions=seen", "model.text_conditional=true", "model.text_tokens=false", "diffusion.p_uncond=0.2",
            "model.channels=8", "train.steps=2", "train.batch_size=8", "train.checkpoint_every=2"]
    cfg = dl.config.load_config("fashion_mnist", over)
    assert dl.runs.text_fields(cfg) == ("pooled",)
    dl.runs.train(cfg, tmp_path / "p", resume=False, progress=False, data=data)
    net, _, _ = dl.runs.load_network(tmp_path / "p")
    assert net.context_dim is None and net.pooled is not None
    assert not any("cross" in name.lower() for name, _ in net.named_modules())
    cond = dl.runs.prompt_condition(tmp_path / "p", ["a dark ankle boot", "a wide white bag"])
    assert set(cond) == {"pooled"} and cond["pooled"].shape == (2, 384)
    x, t = torch.randn(2, 1, 28, 28), torch.full((2,), 0.5)
    torch.manual_seed(0)
    with torch.no_grad():  # away from the zero-initialised start, so every input can show in the output
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    assert not torch.allclose(net(x, t, **cond), net(x, t, pooled=cond["pooled"].flip(0)))  # it reads the embedding
    den, path, _ = dl.runs.load_guided(tmp_path / "p", scale=2.0)
    y = dl.sampling.sample_batched(den, path, 2, (1, 28, 28), seed=0, cond=cond, sampler="ddim", steps=2)
    assert y.shape == (2, 1, 28, 28) and torch.isfinite(y).all()
    res = CliRunner().invoke(app, ["sample", str(tmp_path / "p"), "--prompt", "a dark ankle boot", "--n", "2", "--steps", "2",
                                   "--guidance", "2", "--out", str(tmp_path / "g.png")])
    assert res.exit_code == 0, res.output
